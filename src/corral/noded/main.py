"""``corral-noded``: run the node daemon in the foreground.

``corral-noded --root DIR --bind ADDR [--port 1811] [--join-token TOKEN]``.
Logs to ``paths.daemon_log("noded")``, writes ``paths.pid_file("noded")``
(held locked while running, so a second noded on the same root refuses to
start), stops cleanly on SIGTERM/SIGINT. The join token may also be given in
the environment variable ``CORRAL_JOIN_TOKEN`` (not visible in ``ps``).
Exit codes: 0 stopped, 1 startup error, 2 usage error.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import sys
import threading
from typing import IO

from corral import constants as C
from corral import crypto, errors
from corral.backend import files
from corral.backend.impexp import sweep_transfers
from corral.bundled_os import install_bundled_os
from corral.daemon_log import setup_daemon_logging
from corral.noded import state as noded_state
from corral.noded.server import NodeDaemon, install_signal_handlers
from corral.paths import Paths

log = logging.getLogger("corral.noded")

ENV_JOIN_TOKEN = "CORRAL_JOIN_TOKEN"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="corral-noded",
                                     description="Corral node daemon (foreground)")
    parser.add_argument("--root", default=None,
                        help="state root of this node (default: $CORRAL_ROOT or /)")
    parser.add_argument("--bind", required=True, help="address to listen on (primary IP)")
    parser.add_argument("--port", type=int, default=C.DEFAULT_NODED_PORT)
    parser.add_argument("--join-token", default=None,
                        help=f"one-time token to accept a join (or ${ENV_JOIN_TOKEN})")
    parser.add_argument("--debug", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def setup_logging(paths: Paths, debug: bool) -> None:
    """Log to the daemon log file; uvicorn's loggers propagate there, its
    per-request access lines only at WARNING."""
    setup_daemon_logging(paths.daemon_log("noded"),
                         "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s", debug)


def acquire_pid_file(paths: Paths) -> IO[str]:
    """Open, lock and fill the pid file. Raises :class:`errors.OpPrereqError`
    (``ECODE_STATE``) when another noded of this root holds it."""
    path = paths.pid_file("noded")
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="ascii")
    try:
        fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        other = fh.read().strip()
        fh.close()
        raise errors.OpPrereqError(f"noded is already running for this root (pid {other})",
                                   errors.ECODE_STATE) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def release_pid_file(paths: Paths, fh: IO[str]) -> None:
    try:
        paths.pid_file("noded").unlink()
    except FileNotFoundError:
        pass
    fh.close()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    paths = Paths.from_env(args.root)
    token = args.join_token or os.environ.pop(ENV_JOIN_TOKEN, None) or None
    paths.ensure_dirs()
    setup_logging(paths, args.debug)
    try:
        # The node's own allowed file storage paths: the defaults on a new
        # node; afterwards only its administrator edits them (never the API).
        if files.ensure_file_storage_paths(paths, [C.DEFAULT_FILE_STORAGE_DIR,
                                                   C.DEFAULT_SHARED_FILE_STORAGE_DIR]):
            log.info("created %s with the default file storage directories",
                     paths.file_storage_paths)
    except errors.CorralError as err:
        log.error("cannot create %s: %s", paths.file_storage_paths, err)
    try:
        install_bundled_os(paths)
    except (errors.CorralError, OSError) as err:
        # The node still works without them; os diagnose reports the gap.
        log.error("cannot install the OS definitions shipped with Corral: %s", err)
    if token is not None and crypto.node_certs_present(paths):
        log.warning("this node is already joined to a cluster; the join token is ignored")
        token = None
    try:
        if token is not None:
            noded_state.set_join_token(paths, token)
        pid_fh = acquire_pid_file(paths)
    except errors.CorralError as err:
        print(f"corral-noded: {err}", file=sys.stderr)
        log.error("cannot start: %s", err)
        return 1
    # Before serving (no transfer of ours exists yet) and only once the pid
    # file is ours (never under a running noded's feet).
    try:
        swept = sweep_transfers(paths)
    except OSError as err:
        log.error("cannot sweep stale import/export transfers: %s", err)
    else:
        if swept:
            log.info("removed %d stale import/export transfer(s)", len(swept))
    daemon = NodeDaemon(paths, args.bind, args.port, token)
    install_signal_handlers(daemon)
    code = 0
    try:
        sock = daemon.bind_socket()
    except OSError as err:
        print(f"corral-noded: cannot listen on {args.bind}:{args.port}: {err}", file=sys.stderr)
        log.error("cannot listen on %s:%d: %s", args.bind, args.port, err)
        release_pid_file(paths, pid_fh)
        return 1
    try:
        log.info("corral-noded %s starting (root %s, pid %d)", C.RELEASE_VERSION, paths.root,
                 os.getpid())
        daemon.run(sock)
    except (errors.CorralError, OSError, ValueError) as err:
        print(f"corral-noded: {err}", file=sys.stderr)
        log.exception("noded failed")
        code = 1
    finally:
        sock.close()
        release_pid_file(paths, pid_fh)
        logging.shutdown()
    if threading.active_count() > 1:
        # Backend calls still running in worker threads must not keep a
        # stopped daemon alive.
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
