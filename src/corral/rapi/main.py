"""``corral-rapi``: the RAPI daemon (Ganeti's ``ganeti-rapi``).

Started and supervised by masterd on the master node
(:mod:`corral.masterd.rapisup`), never by hand: masterd binds the RAPI port
(so a taken port fails masterd's start, and connections wait in the listen
backlog while a RAPI process restarts) and hands the listening socket down
as ``--fd``. This process serves RAPI v2 over HTTPS on it with its own
interpreter, so reads never compete with masterd's job executor for one
GIL: queries are answered from its own view of the configuration and of the
job queue, jobs are submitted to masterd (:mod:`corral.rapi.readmaster`).

masterd may run several RAPI processes on the one socket (``--worker K``,
the kernel hands each connection to one of them); they log to
``paths.daemon_log("rapi")`` (the access log included) and worker 0 writes
``paths.pid_file("rapi")``. Each stops on SIGTERM/SIGINT (open requests get
:data:`GRACEFUL_SHUTDOWN` seconds) and gets SIGTERM when the masterd thread
that started it dies (``PR_SET_PDEATHSIG``), so a killed masterd leaves no
RAPI process holding the port.

Usage: ``python -m corral.rapi.main --root DIR --fd N --supervisor-pid PID
[--worker K] [-d]``
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from corral import errors
from corral.daemon_log import setup_daemon_logging
from corral.daemons import remove_own_pid_file
from corral.fileio import write_file_atomic
from corral.masterd.main import GRACEFUL_SHUTDOWN, LOG_FORMAT  # as masterd's
from corral.paths import Paths

log = logging.getLogger("corral.rapi.daemon")

DAEMON_NAME = "rapi"
_PR_SET_PDEATHSIG = 1


class _Server(uvicorn.Server):
    """uvicorn's server, except that a stopping signal only stops serving:
    uvicorn re-raises it once the server is done, which would kill the
    process before it removes its pid file and closes its databases."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        stop_signals = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in stop_signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def die_with_supervisor(supervisor_pid: int) -> None:
    """Get SIGTERM when the supervising thread dies; exit now if it is gone
    already. Raises ``CorralError`` (ECODE_ENVIRON)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise errors.CorralError(f"prctl(PR_SET_PDEATHSIG) failed: "
                                 f"{os.strerror(ctypes.get_errno())}", errors.ECODE_ENVIRON)
    if os.getppid() != supervisor_pid:
        raise errors.CorralError(f"Supervisor {supervisor_pid} is gone", errors.ECODE_ENVIRON)


def serve(paths: Paths, sock: socket.socket) -> None:
    """Serve RAPI on the listening ``sock`` until SIGTERM/SIGINT."""
    from corral.masterd.gcfreeze import tune
    from corral.rapi.readmaster import RapiMaster
    from corral.rapi.server import create_app

    master = RapiMaster(paths)
    tune()              # the loaded configuration: out of the collector's way
    config = uvicorn.Config(create_app(master, paths), ssl_certfile=str(paths.rapi_cert),
                            ssl_keyfile=str(paths.rapi_cert), log_config=None,
                            access_log=False, lifespan="on",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN)
    host, port = sock.getsockname()[:2]
    log.info("RAPI on https://%s:%d", host, port)
    try:
        _Server(config).run(sockets=[sock])
    finally:
        master.close()


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="corral-rapi",
                                     description="Corral RAPI daemon (started by masterd)")
    parser.add_argument("--root", default=None,
                        help="state root of this node (default: $CORRAL_ROOT or /)")
    parser.add_argument("--fd", type=int, required=True,
                        help="file descriptor of the listening RAPI socket")
    parser.add_argument("--supervisor-pid", type=int, required=True,
                        help="pid of the masterd that started this process")
    parser.add_argument("--worker", type=int, default=0,
                        help="number of this RAPI process (0 writes the pid file)")
    parser.add_argument("-d", "--debug", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths = Paths.from_env(args.root)
    setup_daemon_logging(paths.daemon_log(DAEMON_NAME), LOG_FORMAT, args.debug)
    pid_file = paths.pid_file(DAEMON_NAME)
    # Stopped while starting (before uvicorn handles signals): still clean up.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        die_with_supervisor(args.supervisor_pid)
        sock = socket.socket(fileno=args.fd)
        if args.worker == 0:
            write_file_atomic(pid_file, f"{os.getpid()}\n", mode=0o644, durable=False)
        log.info("RAPI daemon starting (root %s)", paths.root)
        serve(paths, sock)
    except errors.CorralError as err:
        log.error("RAPI daemon failed: %s", err)
        print(f"corral-rapi: {err}", file=sys.stderr)
        return 1
    except Exception:
        log.exception("RAPI daemon failed")
        raise
    finally:
        remove_own_pid_file(pid_file)
    log.info("RAPI daemon stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
