"""Starting and stopping noded and masterd (and masterd's RAPI daemon) as
background processes.

Mirrors ``daemon-util start|stop`` of Ganeti: a daemon runs detached (own
session, stdin from /dev/null, output appended to its log file), is tracked
by its pid file ``paths.pid_file(name)``, and is only considered started
once it answers (noded: TCP connect; masterd: a client API call). Several
nodes may share a machine, so before signalling a pid we check in
``/proc/<pid>/cmdline`` that it really is that daemon *for this state root*.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from corral import errors
from corral.paths import ENV_ROOT, Paths

NODED = "noded"
MASTERD = "masterd"
# Started, supervised and stopped by masterd (corral.masterd.rapisup).
RAPI = "rapi"
DAEMONS = (NODED, MASTERD, RAPI)
_MODULES = {NODED: "corral.noded.main", MASTERD: "corral.masterd.main",
            RAPI: "corral.rapi.main"}
_SCRIPTS = {NODED: "corral-noded", MASTERD: "corral-masterd", RAPI: "corral-rapi"}

START_TIMEOUT = 30.0        # seconds until a daemon must answer
LOG_TAIL_LINES = 30

# Processes started by this process, so they can be reaped after they exit.
_children: dict[int, subprocess.Popen[bytes]] = {}


# -- pid files and process identity ---------------------------------------------------

def read_pid(paths: Paths, name: str) -> int | None:
    """The pid in the daemon's pid file, or None (missing or garbage)."""
    try:
        pid = int(paths.pid_file(name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid > 0 else None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _proc_root(pid: int, argv: list[str]) -> str | None:
    """The state root a daemon process was started with (``--root`` or env)."""
    for i, arg in enumerate(argv):
        if arg == "--root" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--root="):
            return arg.split("=", 1)[1]
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    prefix = f"{ENV_ROOT}=".encode()
    for item in env:
        if item.startswith(prefix):
            return item[len(prefix):].decode("utf-8", "replace") or "/"
    return "/"


def _same_path(a: str, b: str | os.PathLike[str]) -> bool:
    return os.path.realpath(a) == os.path.realpath(os.fspath(b))


def is_our_daemon(pid: int, paths: Paths, name: str) -> bool:
    """True when ``pid`` is a live ``name`` daemon working on ``paths.root``."""
    if not _alive(pid):
        return False
    argv = _cmdline(pid)
    if not any(_MODULES[name] in a or a.endswith(_SCRIPTS[name]) for a in argv):
        return False
    root = _proc_root(pid, argv)
    return root is not None and _same_path(root, paths.root)


def _alive(pid: int) -> bool:
    """True for a running (not zombie) process; reaps our own exited children."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3, after the parenthesised command name (which may hold spaces).
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def daemon_pid(paths: Paths, name: str) -> int | None:
    """The pid of the running ``name`` daemon of this root, or None."""
    pid = read_pid(paths, name)
    if pid is not None and is_our_daemon(pid, paths, name):
        return pid
    return None


def remove_own_pid_file(path: Path) -> None:
    """Remove the pid file ``path`` if it holds this process's pid (a file
    already taken over by a successor stays)."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()


def all_daemon_pids(paths: Paths, name: str) -> list[int]:
    """Pids of every running ``name`` process of this root, found in /proc
    (masterd runs several RAPI processes; only one has the pid file)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_our_daemon(int(entry.name), paths, name):
            pids.append(int(entry.name))
    return sorted(pids)


def daemon_running(paths: Paths, name: str) -> bool:
    """True when the ``name`` daemon (``noded``/``masterd``) of this root runs."""
    return daemon_pid(paths, name) is not None


# -- starting -----------------------------------------------------------------------

def log_tail(paths: Paths, name: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of the daemon's log file ("" if none)."""
    try:
        with open(paths.daemon_log(name), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _spawn(paths: Paths, name: str, args: list[str],
           env_extra: dict[str, str] | None = None,
           pass_fds: tuple[int, ...] = (), check_running: bool = True
           ) -> subprocess.Popen[bytes]:
    """Start the daemon detached (with the inherited descriptors
    ``pass_fds``); it writes its own pid file."""
    if check_running and daemon_running(paths, name):
        raise errors.CorralError(f"{name} is already running for {paths.root} "
                                 f"(pid {read_pid(paths, name)})", errors.ECODE_STATE)
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", _MODULES[name], "--root", str(paths.root), *args]
    env = dict(os.environ)
    env[ENV_ROOT] = str(paths.root)
    env.update(env_extra or {})
    with open(paths.daemon_log(name), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True, cwd="/", env=env,
                                pass_fds=pass_fds)
    _children[proc.pid] = proc
    return proc


def _wait_ready(paths: Paths, name: str, proc: subprocess.Popen[bytes],
                ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            _children.pop(proc.pid, None)
            raise errors.CorralError(
                f"{name} exited with code {code} while starting; last log lines:\n"
                f"{log_tail(paths, name)}", errors.ECODE_ENVIRON)
        if ready():
            return
        if time.monotonic() > deadline:
            kill_pid(proc.pid, timeout=5)
            _children.pop(proc.pid, None)
            raise errors.CorralError(
                f"{name} did not answer within {timeout:.0f}s; last log lines:\n"
                f"{log_tail(paths, name)}", errors.ECODE_ENVIRON)
        time.sleep(0.1)


def _tcp_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def start_noded(paths: Paths, bind: str, port: int, join_token: str | None = None,
                timeout: float = START_TIMEOUT) -> int:
    """Start corral-noded for this root on ``bind``:``port``; returns its pid.

    With ``join_token`` the (unjoined) node waits to be added with that token
    (stored in the node's state file, never on the command line). Raises
    ``CorralError`` ECODE_STATE if it already runs or the address is taken,
    ECODE_ENVIRON (with the log tail) if it does not come up.
    """
    if _tcp_answers(bind, port):
        raise errors.CorralError(f"Something already listens on {bind}:{port}",
                                 errors.ECODE_STATE)
    env = {}
    if join_token is not None:
        from corral.crypto import parse_join_token
        from corral.noded.main import ENV_JOIN_TOKEN

        parse_join_token(join_token)
        env[ENV_JOIN_TOKEN] = join_token
    proc = _spawn(paths, NODED, ["--bind", bind, "--port", str(port)], env)
    _wait_ready(paths, NODED, proc, lambda: _tcp_answers(bind, port), timeout)
    return proc.pid


def masterd_answers(paths: Paths) -> bool:
    """True when masterd's client API answers on this root's socket."""
    from corral.masterd.client import MasterClient

    if not paths.master_socket.exists():
        return False
    try:
        with MasterClient(paths, timeout=5) as client:
            client.query_config_values(["cluster_name"])
    except errors.CorralError:
        return False
    return True


def start_masterd(paths: Paths, extra_args: list[str] | None = None,
                  timeout: float = START_TIMEOUT) -> int:
    """Start corral-masterd for this root; returns its pid once its socket answers.

    ``extra_args`` go to ``corral-masterd`` (e.g. ``["--no-rapi"]``). Raises
    ``CorralError`` as :func:`start_noded`.
    """
    proc = _spawn(paths, MASTERD, list(extra_args or []))
    _wait_ready(paths, MASTERD, proc, lambda: masterd_answers(paths), timeout)
    return proc.pid


def spawn_rapi(paths: Paths, listen_fd: int, worker: int = 0,
               debug: bool = False) -> subprocess.Popen[bytes]:
    """Start RAPI process number ``worker`` serving the listening socket
    ``listen_fd`` for this process (its supervisor: the calling thread must
    outlive it, see :mod:`corral.rapi.main`); returns at once. Worker 0
    writes the pid file. Raises ``CorralError`` ECODE_STATE if worker 0 is
    started while a RAPI daemon of this root runs already."""
    args = ["--fd", str(listen_fd), "--supervisor-pid", str(os.getpid()),
            "--worker", str(worker)] + (["--debug"] if debug else [])
    if worker:
        return _spawn(paths, RAPI, args, pass_fds=(listen_fd,), check_running=False)
    return _spawn(paths, RAPI, args, pass_fds=(listen_fd,))


# -- stopping -----------------------------------------------------------------------

def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def kill_pid(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM ``pid``, SIGKILL after ``timeout`` s; True once it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return _wait_gone(pid, 5.0)


def stop_daemon(paths: Paths, name: str, timeout: float = 10.0) -> bool:
    """Stop the ``name`` daemon of this root (SIGTERM, SIGKILL after ``timeout`` s).

    Returns True if a daemon was running. A stale pid file (dead process, or
    a pid now used by something else) is removed without signalling anything.
    Raises ``CorralError`` (ECODE_ENVIRON) if the process survives SIGKILL.
    """
    pid = read_pid(paths, name)
    if pid is None:
        return False
    was_running = is_our_daemon(pid, paths, name)
    if was_running and not kill_pid(pid, timeout):
        raise errors.CorralError(f"Could not stop {name} (pid {pid})", errors.ECODE_ENVIRON)
    _children.pop(pid, None)
    with contextlib.suppress(FileNotFoundError):
        if read_pid(paths, name) == pid:
            paths.pid_file(name).unlink()
    if name == MASTERD:
        with contextlib.suppress(FileNotFoundError):
            if not _socket_answers(paths.master_socket):
                paths.master_socket.unlink()
    return was_running


def _socket_answers(path: Path) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        sock.close()
