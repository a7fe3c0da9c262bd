"""``corral-masterd``: the master daemon process (runs in the foreground).

Mirrors ``ganeti-luxid`` + ``ganeti-wconfd``: opens the config store,
recovers and starts the job queue, and serves the client API (unix socket
``paths.master_socket``, mode 0600). RAPI (Ganeti's ``ganeti-rapi``) is a
separate process, :mod:`corral.rapi.main`: masterd binds its port (HTTPS on
the master's primary IP, port ``cluster.rapi_port``), starts it and restarts
it when it exits (:mod:`corral.masterd.rapisup`). SIGTERM/SIGINT stop the
client API server, the RAPI processes, then the queue; the socket and pid
file are removed. Jobs still running when the process dies are recovered as
failed (``JobLost``) at the next start, jobs that had not started are run,
and instances left half-created are removed (:mod:`corral.masterd.reconcile`).

Usage: ``corral-masterd --root DIR [--rapi-bind ADDR] [--rapi-port N]
[--rapi-workers N] [--no-rapi]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from corral import errors
from corral.daemon_log import setup_daemon_logging
from corral.daemons import remove_own_pid_file
from corral.masterd import api
from corral.masterd.context import MasterContext
from corral.masterd.master import Master
from corral.masterd.rapisup import DEFAULT_WORKERS, RapiSupervisor, bind_rapi_socket
from corral.paths import Paths

log = logging.getLogger("corral.masterd")

DAEMON_NAME = "masterd"
LOG_FORMAT = "%(asctime)s: %(name)s pid=%(process)d %(levelname)s %(message)s"
# Seconds the servers wait for open requests when stopping.
GRACEFUL_SHUTDOWN = 5
# Seconds the queue gets to stop its workers.
QUEUE_STOP_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`_serve_all`
    (two servers in one loop must not steal each other's handlers)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def setup_logging(paths: Paths, debug: bool) -> None:
    """Log to ``paths.daemon_log("masterd")`` (and nothing else); each job's
    start and end are logged by the queue, library chatter is not."""
    setup_daemon_logging(paths.daemon_log(DAEMON_NAME), LOG_FORMAT, debug)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_pid_file(path: Path) -> None:
    """Write our pid; refuse (ECODE_STATE) if another live process owns the file."""
    try:
        old = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        old = 0
    if old and old != os.getpid() and _pid_alive(old):
        cmdline = Path(f"/proc/{old}/cmdline")
        with contextlib.suppress(OSError):
            if b"corral.masterd" in cmdline.read_bytes() or \
                    b"corral-masterd" in cmdline.read_bytes():
                raise errors.CorralError(f"masterd already running with pid {old}",
                                         errors.ECODE_STATE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)


def bind_unix_socket(path: Path) -> socket.socket:
    """Listen on ``path`` with mode 0600 (a stale socket is replaced).

    Raises ``CorralError`` (ECODE_STATE) if a live server answers on it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if path.exists() or path.is_socket():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()           # nobody listens: stale socket
        else:
            raise errors.CorralError(f"Another daemon is listening on {path}",
                                     errors.ECODE_STATE)
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # chmod before listen(): nobody can connect during the window.
        os.chmod(path, 0o600)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def check_master(paths: Paths, cfg: Any) -> None:
    """Refuse to run on a node that is not the configured master.

    Master candidates hold a replica of the configuration at the same path;
    the node's own name comes from noded's state file (Ganeti compares the
    host name with ssconf's master). Raises ``CorralError`` ECODE_STATE.
    """
    from corral.noded.state import load_state

    me = load_state(paths).node_name
    master = cfg.get_master_node().name
    if me is not None and me != master:
        raise errors.CorralError(f"This node ({me}) is not the master node ({master})",
                                 errors.ECODE_STATE)


def _rapi_socket(cfg: Any, bind: str | None, port: int | None) -> socket.socket:
    """The listening RAPI socket (master's primary IP, cluster's RAPI port
    unless given); ``CorralError`` ECODE_ENVIRON if it cannot be bound."""
    host = bind or cfg.get_master_node().primary_ip
    port = port or cfg.get_cluster().rapi_port
    try:
        sock = bind_rapi_socket(host, port)
    except OSError as err:
        raise errors.CorralError(f"Cannot listen for RAPI on {host}:{port}: {err}",
                                 errors.ECODE_ENVIRON) from err
    log.info("RAPI on https://%s:%d", host, port)
    return sock


async def _serve_all(servers: list[tuple[uvicorn.Server, list[socket.socket] | None]]) -> bool:
    """Run all servers until a signal or until one of them fails to start.

    Returns False when a server failed.
    """
    loop = asyncio.get_running_loop()
    failed: list[uvicorn.Server] = []

    def stop_all(signame: str | None = None) -> None:
        if signame:
            log.info("Received %s, shutting down", signame)
        for server, _ in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_all, sig.name)

    async def run(server: uvicorn.Server, sockets: list[socket.socket] | None) -> None:
        try:
            await server.serve(sockets=sockets)
        except SystemExit:          # uvicorn's way of failing startup (port in use...)
            log.error("A server failed to start; stopping")
            failed.append(server)
            stop_all()

    await asyncio.gather(*(run(s, socks) for s, socks in servers))
    return not failed


def run(paths: Paths, rapi_bind: str | None, rapi_port: int | None, no_rapi: bool,
        rapi_workers: int = DEFAULT_WORKERS, debug: bool = False) -> int:
    """Wire the daemon together and serve until stopped; returns the exit code."""
    from corral.config import ConfigStore
    from corral.jobs import JobQueue
    from corral.locking import LockManager
    from corral.masterd.gcfreeze import ConfigFreezer, tune
    from corral.masterd.reconcile import incomplete_instance_jobs, reconcile_lost_jobs
    from corral.masterd.replication import ConfigReplicator
    from corral.mcpu import Processor
    from corral.rpc import RpcRunner

    if not paths.config_db.exists():
        raise errors.CorralError(f"No cluster configuration at {paths.config_db}; "
                                 "is this node the master?", errors.ECODE_ENVIRON)
    cfg = ConfigStore.open(paths.config_db)
    try:
        check_master(paths, cfg)
    except BaseException:
        cfg.close()
        raise
    rpc = RpcRunner(cfg, paths)
    context = MasterContext(paths=paths, cfg=cfg, rpc=rpc, glm=LockManager())

    def run_opcode(op: Any, op_ctx: Any) -> Any:
        return Processor(context).execute(op, op_ctx)

    queue = JobQueue(paths.queue_db, run_opcode,
                     max_running=cfg.get_cluster().max_running_jobs)
    context.queue = queue
    # Job filter rules live in the config; the scheduler reads them each pass.
    from corral.masterd.filters import rules_of
    queue.set_filter_rules(lambda: rules_of(cfg.get_cluster()))
    master = Master(context)
    replicator = ConfigReplicator(cfg, rpc)
    freezer = ConfigFreezer()
    cfg.add_listener(freezer.on_change)
    tune()              # the loaded configuration: out of the collector's way
    rapi_sock = None if no_rapi else _rapi_socket(cfg, rapi_bind, rapi_port)
    rapi: RapiSupervisor | None = None
    try:
        sock = bind_unix_socket(paths.master_socket)
    except BaseException:
        if rapi_sock is not None:
            rapi_sock.close()
        raise
    try:
        freezer.start()
        replicator.start()
        queue.start(on_lost=lambda lost: reconcile_lost_jobs(context, lost),
                    startup_jobs=lambda pending: incomplete_instance_jobs(context, pending))
        log.info("Job queue started; serving the client API on %s", paths.master_socket)
        api_config = uvicorn.Config(api.create_app(master), log_config=None,
                                    access_log=False, lifespan="on",
                                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN)
        servers: list[tuple[uvicorn.Server, list[socket.socket] | None]] = [
            (_Server(api_config), [sock])]
        if rapi_sock is not None:
            rapi = RapiSupervisor(paths, rapi_sock, workers=rapi_workers, debug=debug)
            rapi.start()
        ok = asyncio.run(_serve_all(servers))
    finally:
        if rapi is not None:
            log.info("Stopping the RAPI daemon")
            rapi.stop()
        if rapi_sock is not None:
            rapi_sock.close()
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            paths.master_socket.unlink()
        log.info("Stopping the job queue")
        queue.stop(timeout=QUEUE_STOP_TIMEOUT)
        replicator.stop()
        freezer.stop()
        close = getattr(cfg, "close", None)
        if close is not None:
            close()
    log.info("masterd stopped")
    return 0 if ok else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="corral-masterd",
                                     description="Corral master daemon (foreground)")
    parser.add_argument("--root", default=None,
                        help="state root of this node (default: $CORRAL_ROOT or /)")
    parser.add_argument("--rapi-bind", default=None,
                        help="RAPI address (default: the master's primary IP)")
    parser.add_argument("--rapi-port", type=int, default=None,
                        help="RAPI port (default: the cluster's rapi_port)")
    parser.add_argument("--rapi-workers", type=int, default=None,
                        help="RAPI processes sharing the RAPI port (default 2)")
    parser.add_argument("--no-rapi", action="store_true", help="do not serve RAPI")
    parser.add_argument("-d", "--debug", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths = Paths.from_env(args.root)
    setup_logging(paths, args.debug)
    pid_file = paths.pid_file(DAEMON_NAME)
    try:
        write_pid_file(pid_file)
    except errors.CorralError as err:
        log.error("%s", err)
        print(f"corral-masterd: {err}", file=sys.stderr)
        return 1
    log.info("masterd starting (root %s)", paths.root)
    code = 1
    try:
        code = run(paths, args.rapi_bind, args.rapi_port, args.no_rapi,
                   rapi_workers=max(1, args.rapi_workers or DEFAULT_WORKERS),
                   debug=args.debug)
        return code
    except errors.CorralError as err:
        log.error("masterd failed: %s", err)
        print(f"corral-masterd: {err}", file=sys.stderr)
        return 1
    except Exception:
        log.exception("masterd failed")
        raise
    finally:
        remove_own_pid_file(pid_file)
        if threading.active_count() > 1:
            # Job workers still inside an opcode must not keep a stopped
            # daemon alive; their jobs are recovered as lost at next start.
            logging.shutdown()
            os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
