"""Node side of disk transfers: start, watch, abort and clean up transfer processes.

Mirrors ``ganeti.backend.StartImportExportDaemon``, ``GetImportExportStatus``,
``AbortImportExport`` and ``CleanupImportExport``; the procedures
``import_start``, ``export_start``, ``impexp_status``, ``impexp_abort`` and
``impexp_cleanup`` of :mod:`corral.rpc.defs`, called as ``fn(paths, *args)``.

``opts`` (Ganeti's ``ImportExportOptions``) is a dict: ``key_name`` (None =
this node's cluster certificates; else an X509 key made by
``x509_cert_create``, then ``ca_pem`` is required), ``ca_pem`` (CA to verify
the peer; default the cluster CA), ``compress`` (``none`` or a tool of
:mod:`corral.impexp.compression`), ``magic`` (required, ``IE_MAGIC_RE``),
``expected_size`` (MiB, for progress), ``connect_timeout`` (s),
``connect_retries``, ``ipv6`` (ignored: the address decides), and the Corral
extensions ``listen_host`` (address the importer listens on; default this
node's primary IP from ssconf), ``timeout`` and ``idle_timeout`` (seconds
for the whole transfer / without data once connected, 0 = no limit; default
those of :mod:`corral.impexp.watchdog`).

I/O arguments (Ganeti's ``impexp_io``): ``["file", virtual_path]`` (below
the node's export directory), ``["raw", disk_dict]``,
``["script", disk_dict, disk_index]`` (the instance's OS import/export
script for that disk). Failures raise :class:`errors.RPCFail`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from corral import crypto, errors, osdef
from corral.backend.blockdev import device_of
from corral.backend.instance import decode_instance
from corral.impexp import (
    CA_FILE,
    COMPONENT_RE,
    DAEMON_MODULE,
    DEFAULT_CONNECT_RETRIES,
    DEFAULT_CONNECT_TIMEOUT,
    IO_FILE,
    MAGIC_RE,
    MODE_EXPORT,
    MODE_IMPORT,
    NAME_RE,
    PID_FILE,
    compression,
)
from corral.impexp.endpoints import KIND_FILE, KIND_RAW, KIND_SCRIPT, IoSpec, undo_partial
from corral.impexp.status import TransferStatus, read_status, write_status
from corral.noded import state as noded_state
from corral.paths import Paths, component_path, is_below, normalize_virtual, safe_component

log = logging.getLogger(__name__)

KILL_TIMEOUT = 10.0          # seconds between SIGTERM and SIGKILL in cleanup
_X509_KEY_FILE = "key"
_X509_CERT_FILE = "cert"

# Transfer processes started by this process (reaped when they exit).
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


class ImportExportOptions(BaseModel):
    """The ``opts`` argument (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    key_name: str | None = None
    ca_pem: str | None = None
    compress: str = compression.NONE
    magic: str | None = None
    expected_size: int | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    connect_retries: int = DEFAULT_CONNECT_RETRIES
    ipv6: bool = False
    listen_host: str | None = None
    timeout: float | None = None
    idle_timeout: float | None = None


def _fail(msg: str, ecode: str = errors.ECODE_INVAL) -> errors.RPCFail:
    return errors.RPCFail(msg, ecode)


def crypto_keys_dir(paths: Paths) -> Path:
    """Where ``x509_cert_create`` keeps per-transfer keys (``<name>/key``, ``cert``)."""
    return paths.run_dir / "crypto"


def _decode_opts(opts: Any) -> ImportExportOptions:
    if not isinstance(opts, dict):
        raise _fail("Invalid import/export options: expected a dict")
    try:
        parsed = ImportExportOptions.model_validate(opts)
    except ValidationError as err:
        first = err.errors()[0]
        raise _fail(f"Invalid import/export options: {'.'.join(map(str, first['loc']))}: "
                    f"{first['msg']}") from None
    if not parsed.magic or not MAGIC_RE.match(parsed.magic):
        raise _fail("Invalid or missing magic value for the transfer")
    if parsed.expected_size is not None and parsed.expected_size < 0:
        raise _fail("Invalid expected size")
    if parsed.connect_timeout <= 0 or parsed.connect_retries < 0:
        raise _fail("Invalid connect timeout or retries")
    if any(t is not None and not 0 <= t < 1e9 for t in (parsed.timeout, parsed.idle_timeout)):
        raise _fail("Invalid transfer timeout")
    return parsed


def _component(component: Any) -> str:
    if not isinstance(component, str) or not COMPONENT_RE.match(component):
        raise _fail(f"Invalid transfer component name {component!r}")
    return safe_component(component, "transfer component name")


# -- TLS files ---------------------------------------------------------------------------
def _tls_files(paths: Paths, opts: ImportExportOptions, mode: str,
               status_dir: Path) -> tuple[str, str, str]:
    """(key, cert, ca) files for the transfer; the CA is written to the status dir."""
    if opts.key_name:
        if not COMPONENT_RE.match(opts.key_name):
            raise _fail(f"Invalid X509 key name '{opts.key_name}'")
        if not opts.ca_pem:
            raise _fail("A CA certificate (ca_pem) is required with an X509 key")
        key_dir = component_path(crypto_keys_dir(paths), opts.key_name, what="X509 key name")
        key, cert = key_dir / _X509_KEY_FILE, key_dir / _X509_CERT_FILE
        if not key.is_file() or not cert.is_file():
            raise _fail(f"X509 key '{opts.key_name}' not found on this node",
                        errors.ECODE_NOENT)
    else:
        own = crypto.node_server_cert_path(paths) if mode == MODE_IMPORT else paths.client_cert
        if not own.is_file():
            raise _fail(f"Node certificate {own} not found (node not joined?)",
                        errors.ECODE_ENVIRON)
        key = cert = own
    try:
        ca_pem = opts.ca_pem or crypto.load_ca_cert_pem(paths)
        crypto.load_certificate(ca_pem)
        crypto.write_pem(status_dir / CA_FILE, ca_pem)
    except (errors.ConfigurationError, errors.OpPrereqError) as err:
        raise _fail(f"Invalid CA for the transfer: {err}", errors.ECODE_ENVIRON) from None
    return str(key), str(cert), str(status_dir / CA_FILE)


# -- endpoints ---------------------------------------------------------------------------
def _export_file(paths: Paths, virtual: Any, mode: str) -> Path:
    """Real path of a file strictly below the export directory (parents made for imports)."""
    if not isinstance(virtual, str):
        raise _fail("Invalid file path for the transfer")
    base = paths.virtual(paths.export_dir)
    try:
        norm = normalize_virtual(virtual)
        if norm == base or not is_below(norm, base):
            raise errors.OpPrereqError(f"'{virtual}' is not below the export directory {base}")
        real = paths.confine(norm, [base])
    except errors.OpPrereqError as err:
        raise _fail(str(err)) from None
    if mode == MODE_IMPORT:
        try:
            real.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        except OSError as err:
            raise _fail(f"Cannot create {real.parent}: {err.strerror}",
                        errors.ECODE_ENVIRON) from None
        if real.is_dir():
            raise _fail(f"'{virtual}' is a directory")
    elif not real.is_file():
        raise _fail(f"File '{virtual}' not found in the export directory", errors.ECODE_NOENT)
    return real


def _assemble(paths: Paths, disk: Any) -> tuple[str, int]:
    dev = device_of(paths, disk)
    try:
        return dev.assemble(), dev.get_size()
    except errors.BlockDeviceError as err:
        raise errors.RPCFail(f"Cannot use disk for the transfer: {err}", err.ecode) from None


def _script_spec(paths: Paths, mode: str, instance: Any, disk: Any, idx: Any,
                 component: str) -> IoSpec:
    inst = decode_instance(instance)
    if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
        raise _fail(f"Invalid disk index {idx!r}")
    dev_path, _ = _assemble(paths, disk)
    try:
        os_def = osdef.find_os(paths, inst.os)
    except errors.OSError_ as err:
        raise errors.RPCFail(str(err), err.ecode) from None
    disk_paths = [device_of(paths, d.to_dict()).dev_path for d in inst.disks]
    env = osdef.os_environment(os_def, instance, disk_paths)
    prefix = "IMPORT" if mode == MODE_IMPORT else "EXPORT"
    env[f"{prefix}_DEVICE"] = dev_path
    env[f"{prefix}_DISK_PATH"] = dev_path
    env[f"{prefix}_INDEX"] = str(idx)
    return IoSpec(kind=KIND_SCRIPT, path=dev_path, root=str(paths.root),
                  os_def=os_def.model_dump(), env=env, instance_name=inst.name,
                  os_name=inst.os, component=component)


def resolve_io(paths: Paths, mode: str, io: Any, instance: Any, component: str) -> IoSpec:
    """Turn the master's ``impexp_io`` argument into an :class:`IoSpec`. Raises RPCFail."""
    if not isinstance(io, (list, tuple)) or not io or not isinstance(io[0], str):
        raise _fail(f"Invalid transfer endpoint {io!r}")
    kind, args = io[0], list(io[1:])
    if kind == KIND_FILE and len(args) == 1:
        real = _export_file(paths, args[0], mode)
        size = real.stat().st_size if mode == MODE_EXPORT else None
        return IoSpec(kind=KIND_FILE, path=str(real), size=size, root=str(paths.root))
    if kind == KIND_RAW and len(args) == 1:
        dev_path, size = _assemble(paths, args[0])
        return IoSpec(kind=KIND_RAW, path=dev_path, size=size, root=str(paths.root))
    if kind == KIND_SCRIPT and len(args) == 2:
        return _script_spec(paths, mode, instance, args[0], args[1], component)
    raise _fail(f"Invalid transfer endpoint of kind {kind!r} with {len(args)} arguments")


def own_address(paths: Paths) -> str:
    """This node's primary IP, from its name (noded state) and ssconf."""
    name = noded_state.load_state(paths).node_name
    try:
        lines = paths.ssconf("node_primary_ips").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return parts[1]
    raise _fail("Cannot determine this node's primary IP address (no ssconf entry for "
                f"node {name!r}); pass listen_host", errors.ECODE_ENVIRON)


# -- processes -------------------------------------------------------------------------------
def _reap() -> None:
    with _children_lock:
        for pid, proc in list(_children.items()):
            if proc.poll() is not None:
                del _children[pid]


def _read_pid(status_dir: Path) -> int | None:
    try:
        pid = int((status_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def _alive(status_dir: Path) -> int | None:
    """The pid of the transfer process of ``status_dir`` if it still runs."""
    pid = _read_pid(status_dir)
    if pid is None:
        return None
    with _children_lock:
        child = _children.get(pid)
        if child is not None:
            if child.poll() is None:
                # Our own child: no /proc check (its cmdline is empty for a
                # moment after Popen returns, while exec finishes).
                return pid
            del _children[pid]
            return None
    # Started by an earlier noded process: check it is the transfer of this
    # directory before trusting (or signalling) the pid.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return None
    if DAEMON_MODULE.encode() not in argv or str(status_dir).encode() not in argv:
        return None
    return pid


def _spawn(argv: list[str], status_dir: Path, log_path: Path) -> int:
    # A detached, long-running process (like daemons.py's): run_command waits for
    # its program, so Popen it is; the process group lets abort reach its children.
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_fh:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=log_fh,
                                start_new_session=True, close_fds=True, cwd="/")
    with _children_lock:
        _children[proc.pid] = proc
    (status_dir / PID_FILE).write_text(f"{proc.pid}\n")
    return proc.pid


def _start(paths: Paths, mode: str, opts_data: Any, instance: Any, component: Any,
           io: Any, host: str | None, port: int) -> str:
    _reap()
    opts = _decode_opts(opts_data)
    component = _component(component)
    try:
        compression.argv_for(opts.compress, decompress=(mode == MODE_IMPORT))
    except errors.OpPrereqError as err:
        raise errors.RPCFail(str(err), err.ecode) from None
    spec = resolve_io(paths, mode, io, instance, component)
    if mode == MODE_IMPORT:
        host = opts.listen_host or own_address(paths)
    try:
        paths.impexp_dir.mkdir(parents=True, exist_ok=True)
        status_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-{component}-", dir=paths.impexp_dir))
    except OSError as err:
        raise _fail(f"Cannot create the transfer directory: {err.strerror}",
                    errors.ECODE_ENVIRON) from None
    name = status_dir.name
    try:
        key, cert, ca = _tls_files(paths, opts, mode, status_dir)
        crypto.write_pem(status_dir / IO_FILE, spec.model_dump_json())
        write_status(status_dir, TransferStatus(mode=mode, component=component))
        argv = [sys.executable, "-m", DAEMON_MODULE, str(status_dir), mode,
                "--key", key, "--cert", cert, "--ca", ca, "--host", str(host),
                "--port", str(int(port)), "--io", str(status_dir / IO_FILE),
                "--component", component, "--compress", opts.compress,
                "--magic", str(opts.magic), "--connect-timeout", str(opts.connect_timeout),
                "--connect-retries", str(opts.connect_retries)]
        if opts.expected_size:
            argv += ["--expected-size", str(opts.expected_size)]
        if opts.timeout is not None:
            argv += ["--timeout", str(opts.timeout)]
        if opts.idle_timeout is not None:
            argv += ["--idle-timeout", str(opts.idle_timeout)]
        inst_name = instance.get("name") if isinstance(instance, dict) else None
        os_name = instance.get("os") if isinstance(instance, dict) else None
        log_path = osdef.os_log_path(paths, mode, os_name or "none", inst_name or name,
                                     component)
        pid = _spawn(argv, status_dir, log_path)
    except BaseException:
        shutil.rmtree(status_dir, ignore_errors=True)
        raise
    log.info("started %s (pid %d, log %s)", name, pid, log_path)
    return name


def import_start(paths: Paths, opts: dict[str, Any], instance: dict[str, Any] | None,
                 component: str, dest: list[Any]) -> str:
    """Start receiving into ``dest``; returns the transfer name.

    The importer listens on ``opts.listen_host`` (default: this node's primary
    IP) on an ephemeral port, reported as ``listen_port`` by ``impexp_status``.
    """
    return _start(paths, MODE_IMPORT, opts, instance, component, dest, None, 0)


def export_start(paths: Paths, opts: dict[str, Any], host: str, port: int,
                 instance: dict[str, Any] | None, component: str, source: list[Any]) -> str:
    """Start sending ``source`` to the importer at ``host:port``; returns the name."""
    if not isinstance(host, str) or not host or not isinstance(port, int) or \
            not 0 < port < 65536:
        raise _fail(f"Invalid importer address {host!r}:{port!r}")
    return _start(paths, MODE_EXPORT, opts, instance, component, source, host, port)


def _status_dir(paths: Paths, name: Any) -> Path | None:
    """The directory of transfer ``name``, or None if there is no such transfer."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _fail(f"Invalid transfer name {name!r}")
    path = component_path(paths.impexp_dir, name, what="transfer name")
    return path if path.is_dir() and not path.is_symlink() else None


def _status_of(paths: Paths, name: str) -> dict[str, Any] | None:
    status_dir = _status_dir(paths, name)
    if status_dir is None:
        return None
    status = read_status(status_dir)
    if status is not None and status.done:
        return status.model_dump(mode="json")
    if _alive(status_dir) is not None:
        return status.model_dump(mode="json") if status is not None else \
            TransferStatus().model_dump(mode="json")
    status = read_status(status_dir) or TransferStatus()    # it may have just finished
    if not status.done:
        status.done = True
        status.exit_status = -1
        status.error_message = "The transfer process died unexpectedly"
    return status.model_dump(mode="json")


def impexp_status(paths: Paths, names: list[str]) -> list[dict[str, Any] | None]:
    """Status dict per name (see :mod:`corral.impexp.status`), None for unknown names.

    A process that died without writing its final status is reported done
    with ``exit_status`` -1.
    """
    _reap()
    if not isinstance(names, list):
        raise _fail("names must be a list")
    return [_status_of(paths, name) for name in names]


def impexp_abort(paths: Paths, name: str) -> bool:
    """SIGTERM the transfer's process group; False if it was not running."""
    status_dir = _status_dir(paths, name)
    if status_dir is None:
        raise _fail(f"Unknown transfer '{name}'", errors.ECODE_NOENT)
    pid = _alive(status_dir)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    return True


def _wait_gone(status_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(status_dir) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def impexp_cleanup(paths: Paths, name: str) -> None:
    """Stop the transfer if it runs (SIGTERM, then SIGKILL), undo a partial
    import, and remove its directory. Unknown names are not an error."""
    status_dir = _status_dir(paths, name)
    if status_dir is None:
        return
    pid = _alive(status_dir)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        if not _wait_gone(status_dir, KILL_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            if not _wait_gone(status_dir, 5.0):
                raise _fail(f"Transfer process {pid} of {name} does not exit",
                            errors.ECODE_ENVIRON)
            # Children (compressor, OS script) left behind by the killed leader.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    _reap()
    status = read_status(status_dir)
    if not (status is not None and status.done and status.exit_status == 0):
        undone = undo_partial(status_dir)
        if undone:
            log.info("removed/marked partial output %s of %s", undone, name)
    shutil.rmtree(status_dir, ignore_errors=True)


def sweep_transfers(paths: Paths) -> list[str]:
    """Clean up every transfer left by an earlier noded process (at noded start).

    Called before noded serves, so no transfer of this process exists yet:
    every entry of ``paths.impexp_dir`` is a leftover whose master can no
    longer rely on it (its status calls failed or will find it gone). A
    transfer process still running is stopped (SIGTERM, then SIGKILL), the
    partial output of an unfinished import undone, and the directory
    removed, as :func:`impexp_cleanup` does. Entries that are not transfer
    directories are left alone. Returns the names swept; each is logged.
    """
    try:
        names = sorted(os.listdir(paths.impexp_dir))
    except FileNotFoundError:
        return []
    swept = []
    for name in names:
        if not NAME_RE.match(name) or _status_dir(paths, name) is None:
            log.warning("sweep: ignoring %s in %s (not a transfer)", name, paths.impexp_dir)
            continue
        status_dir = paths.impexp_dir / name
        pid = _alive(status_dir)
        try:
            impexp_cleanup(paths, name)
        except errors.RPCFail as err:
            log.error("sweep: cannot clean up transfer %s: %s", name, err)
            continue
        log.info("sweep: removed stale transfer %s%s", name,
                 f" (stopped its process {pid})" if pid is not None else "")
        swept.append(name)
    return swept


__all__ = ["ImportExportOptions", "crypto_keys_dir", "export_start", "impexp_abort",
           "impexp_cleanup", "impexp_status", "import_start", "own_address", "resolve_io",
           "sweep_transfers"]
