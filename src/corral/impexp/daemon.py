"""The transfer process: ``python -m corral.impexp.daemon STATUS_DIR import|export ...``.

Mirrors Ganeti's ``daemons/import-export`` (options ``--key --cert --ca
--host --port --compress --magic --expected-size --connect-timeout
--connect-retries``); the endpoint comes from ``--io`` (an ``io.json``, see
:mod:`corral.impexp.endpoints`). Started detached by noded in its own
process group; SIGTERM (sent to the group by ``impexp_abort``) aborts it.
``--timeout`` and ``--idle-timeout`` (seconds, 0 = none; see
:mod:`corral.impexp.watchdog`) end it by themselves.

Data path, all in this process (plus the compression program and OS
scripts as children):

* export: source -> [compressor] -> TLS -> importer
* import: TLS -> check magic -> [decompressor] -> sink

Threads pass data through pipes; each file descriptor is closed by the one
thread that uses it, so an abort never closes a descriptor under another
thread's feet. The final status (``done``, ``exit_status``,
``error_message``) is always written before the process exits.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from corral import errors
from corral.impexp import (
    CHUNK,
    DEFAULT_CONNECT_RETRIES,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IO_TIMEOUT,
    MAGIC_RE,
    MIB,
    MODE_EXPORT,
    MODE_IMPORT,
    compression,
    transport,
)
from corral.impexp.endpoints import IoSpec, Sink, load_spec, make_sink, make_source
from corral.impexp.status import Meter, StatusWriter, TransferStatus, write_status
from corral.impexp.transport import TransferError
from corral.impexp.watchdog import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_TOTAL_TIMEOUT,
    TIMEOUT_SIGNAL,
    TimedOut,
    Watchdog,
)
from corral.process import run_command

log = logging.getLogger("corral.impexp")

CHILD_TIMEOUT = 7 * 86400.0      # compression programs end with their input, not by this
JOIN_TIMEOUT = 30.0              # seconds to wait for a helper thread after the stream


class Aborted(Exception):
    """SIGTERM/SIGINT received."""


class _SignalState:
    aborting = False
    critical = False
    signum = 0
    watchdog: Watchdog | None = None


_STATE = _SignalState()


def _pending_abort() -> BaseException:
    """The exception for the signal received (a timeout or an abort)."""
    wd = _STATE.watchdog
    if _STATE.signum == TIMEOUT_SIGNAL and wd is not None and wd.reason:
        return TimedOut(wd.reason)
    return Aborted(signal.Signals(_STATE.signum).name)


def _on_signal(signum: int, frame: Any) -> None:
    if _STATE.aborting:
        return
    if signum == TIMEOUT_SIGNAL and (_STATE.watchdog is None or not _STATE.watchdog.reason):
        return
    _STATE.aborting = True
    _STATE.signum = signum
    if not _STATE.critical:
        raise _pending_abort()


def terminate_children() -> None:
    """SIGTERM every other process of our group (compressor, OS scripts)."""
    _STATE.aborting = True          # our own handler ignores the signal from now on
    if os.getpgrp() == os.getpid():
        with contextlib.suppress(OSError):
            os.killpg(os.getpgrp(), signal.SIGTERM)


class Worker(threading.Thread):
    """A daemon thread running ``fn``; its exception is kept in ``error``."""

    def __init__(self, name: str, fn: Callable[[], Any]) -> None:
        super().__init__(name=name, daemon=True)
        self._fn = fn
        self.error: BaseException | None = None
        self.result: Any = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            self.error = err


def _pipe() -> tuple[int, int]:
    rfd, wfd = os.pipe()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, CHUNK)
    return rfd, wfd


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _pump(read_fd: int, write: Callable[[memoryview], None],
          count: Callable[[int], None] | None) -> None:
    """Copy ``read_fd`` to ``write`` until EOF (1 MiB at a time)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = os.readv(read_fd, [buf])
        if n == 0:
            return
        write(view[:n])
        if count is not None:
            count(n)


def _closer(fd: int) -> Callable[[], None]:
    """A function closing ``fd`` once, however often it is called (a second
    ``close`` could hit a descriptor reused by another thread)."""
    done = threading.Lock()

    def close() -> None:
        if done.acquire(blocking=False):
            with contextlib.suppress(OSError):
                os.close(fd)
    return close


def _run_filter(argv: list[str], stdin_fd: int, stdout_fd: int) -> None:
    """Run a (de)compression program between two pipes; closes both fds."""
    try:
        res = run_command(argv, timeout=CHILD_TIMEOUT, stdin_fd=stdin_fd, stdout_fd=stdout_fd)
    finally:
        _closer(stdin_fd)()
        _closer(stdout_fd)()
    if res.failed:
        detail = res.stderr.strip().splitlines()[-1:] or [""]
        raise TransferError(f"{os.path.basename(argv[0])} failed ({res.fail_reason()})"
                            + (f": {detail[0]}" if detail[0] else ""))


class Transfer:
    """One import or export, configured from the command line."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.status_dir = Path(args.status_dir)
        self.spec: IoSpec = load_spec(args.io)
        expected = args.expected_size * MIB if args.expected_size else None
        self.meter = Meter(expected)
        self.status = StatusWriter(self.status_dir, args.mode, args.component, self.meter)
        self.tls: ssl.SSLSocket | None = None
        self.workers: list[Worker] = []
        self.watchdog = Watchdog(args.timeout, args.idle_timeout, lambda: self.meter.bytes,
                                 self._give_up)

    # -- helpers ------------------------------------------------------------------
    def note(self, text: str) -> None:
        log.info("%s", text)
        self.status.add_output(text)

    def _give_up(self, reason: str) -> None:
        """The main thread did not stop after a timeout: record it and end
        the process group (watchdog thread)."""
        log.error("%s; the transfer did not stop by itself, killing it", reason)
        self.status.finish(1, reason)
        terminate_children()
        os._exit(1)

    def _start(self, name: str, fn: Callable[[], Any]) -> Worker:
        worker = Worker(name, fn)
        self.workers.append(worker)
        worker.start()
        return worker

    def _join_all(self, timeout: float = JOIN_TIMEOUT) -> None:
        for worker in self.workers:
            worker.join(timeout)

    def _first_error(self) -> BaseException | None:
        for worker in self.workers:
            if worker.error is not None:
                return worker.error
        return None

    def _raise_worker_errors(self) -> None:
        for worker in self.workers:
            if worker.is_alive():
                raise TransferError(f"Helper {worker.name} did not finish")
        err = self._first_error()
        if err is not None:
            if isinstance(err, TransferError):
                raise err
            raise TransferError(f"{type(err).__name__}: {err}")

    def _send(self, data: memoryview) -> None:
        assert self.tls is not None
        try:
            self.tls.sendall(data)
        except (ssl.SSLError, OSError) as err:
            raise TransferError(f"Sending data failed: {err}") from None

    def _tls_contexts(self) -> tuple[Any, Any]:
        a = self.args
        if a.mode == MODE_IMPORT:
            return transport.server_context(a.key, a.cert, a.ca), None
        return None, transport.client_context(a.key, a.cert, a.ca)

    # -- export ---------------------------------------------------------------------
    def run_export(self) -> None:
        a = self.args
        comp = compression.argv_for(a.compress, decompress=False)
        _, ctx = self._tls_contexts()
        source = make_source(self.spec)
        source.on_size = self._set_expected
        self.note(f"Exporting {self.spec.kind} {self.spec.path} to {a.host}:{a.port}"
                  f" (compression {a.compress})")
        self.tls, peer = transport.connect(a.host, a.port, ctx, a.connect_timeout,
                                           a.connect_retries, a.io_timeout,
                                           on_retry=self.note)
        self.watchdog.connected()
        self.note(f"Connected to {peer}")
        self.status.update(connected=True)
        transport.send_magic(self.tls, a.magic)
        src_fd = source.start()
        if source.expected_size is not None:
            self._set_expected(source.expected_size)
        if comp is None:
            try:
                _pump(src_fd, self._send, self.meter.add)
            finally:
                _closer(src_fd)()
        else:
            r1, w1 = _pipe()
            r2, w2 = _pipe()

            def read_source() -> None:
                try:
                    _pump(src_fd, lambda d: _write_all(w1, d), self.meter.add)
                finally:
                    _closer(w1)()
                    _closer(src_fd)()

            self._start("compress", lambda: _run_filter(comp, r1, w2))
            self._start("read-source", read_source)
            try:
                _pump(r2, self._send, None)
            finally:
                _closer(r2)()
            self._join_all()
            self._raise_worker_errors()
        source.finish(JOIN_TIMEOUT)
        self.note(f"Sent {self.meter.bytes} bytes, waiting for the importer to confirm")
        try:
            self.tls.unwrap()
        except (ssl.SSLError, OSError) as err:
            raise TransferError(f"The importer did not confirm the end of the stream: "
                                f"{err}") from None
        self.tls.close()
        self.tls = None

    def _set_expected(self, size: int) -> None:
        self.meter.expected_bytes = size

    # -- import -----------------------------------------------------------------------
    def run_import(self) -> None:
        a = self.args
        decomp = compression.argv_for(a.compress, decompress=True)
        ctx, _ = self._tls_contexts()
        sink = make_sink(self.spec, self.status_dir)
        if self.meter.expected_bytes is None and self.spec.kind == "raw":
            self.meter.expected_bytes = self.spec.size
        lsock = transport.listen(a.host, a.port)
        port = lsock.getsockname()[1]
        self.note(f"Listening on {a.host}:{port}")
        self.status.update(listen_port=port)
        try:
            wait = a.connect_timeout * (a.connect_retries + 1)
            self.tls, peer = transport.accept(lsock, ctx, wait, a.io_timeout,
                                              on_connect=self.watchdog.connected)
        finally:
            lsock.close()
        self.watchdog.activity()
        self.note(f"Connection from {peer}")
        self.status.update(connected=True)
        try:
            transport.check_magic(self.tls, a.magic, a.connect_timeout)
            self.watchdog.activity()
            sink.open()
            self._receive(sink, decomp)
            _STATE.critical = True          # from here on a signal does not interrupt
            if _STATE.aborting:
                raise _pending_abort()
            sink.finish(JOIN_TIMEOUT)
            self.tls.settimeout(JOIN_TIMEOUT)
            try:
                self.tls.unwrap()
            except (ssl.SSLError, OSError) as err:
                raise TransferError(f"Confirming the end of the stream failed: {err}") \
                    from None
        except BaseException:
            _STATE.critical = False
            terminate_children()
            transport.abort_connection(self.tls)
            self.tls = None
            self._join_all(5.0)
            sink.abort()
            raise
        self.tls.close()
        self.tls = None
        self.note(f"Received {self.meter.bytes} bytes")
        sink.committed()

    def _receive(self, sink: Sink, decomp: list[str] | None) -> None:
        if decomp is None:
            self._recv_loop(sink.write, self.meter.add)
            return
        r1, w1 = _pipe()
        r2, w2 = _pipe()

        def write_sink() -> None:
            try:
                _pump(r2, sink.write, self.meter.add)
            finally:
                _closer(r2)()

        self._start("decompress", lambda: _run_filter(decomp, r1, w2))
        self._start("write-sink", write_sink)
        close_w1 = _closer(w1)
        try:
            self._recv_loop(lambda d: _write_all(w1, d), None)
        except OSError:
            # The decompressor stopped reading: report what stopped it.
            close_w1()
            self._join_all(5.0)
            err = self._first_error()
            raise TransferError(str(err) if err is not None else
                                "The decompressor stopped reading its input") from None
        finally:
            close_w1()
        self._join_all(self.args.io_timeout)
        self._raise_worker_errors()

    def _recv_loop(self, write: Callable[[memoryview], None],
                   count: Callable[[int], None] | None) -> None:
        assert self.tls is not None
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        eof = False
        while not eof:
            filled = 0
            while filled < CHUNK:
                try:
                    n = self.tls.recv_into(view[filled:], CHUNK - filled)
                except ssl.SSLEOFError:
                    raise TransferError("The connection was closed before the end of the "
                                        "stream") from None
                except (ssl.SSLError, OSError) as err:
                    raise TransferError(f"Receiving data failed: {err}") from None
                if n == 0:
                    eof = True
                    break
                filled += n
            if filled:
                write(view[:filled])
                if count is not None:
                    count(filled)

    # -- entry ------------------------------------------------------------------------
    def run(self) -> int:
        self.status.update()
        self.status.start_reporter()
        _STATE.watchdog = self.watchdog
        self.watchdog.start()
        try:
            return self._run()
        finally:
            self.watchdog.stop()

    def _run(self) -> int:
        try:
            if self.args.mode == MODE_IMPORT:
                self.run_import()
            else:
                try:
                    self.run_export()
                except BaseException:
                    terminate_children()
                    transport.abort_connection(self.tls)
                    self.tls = None
                    raise
        except TimedOut as err:
            self.note(f"Error: {err}")
            self.status.finish(1, str(err))
            return 1
        except Aborted as err:
            self.note(f"Aborted by signal {err}")
            self.status.finish(1, f"Transfer aborted (signal {err})")
            return 1
        except (TransferError, errors.CorralError) as err:
            self.note(f"Error: {err}")
            self.status.finish(1, str(err))
            return 1
        except Exception as err:  # noqa: BLE001 - the status must say what happened
            log.exception("unexpected error")
            self.status.finish(1, f"Internal error: {type(err).__name__}: {err}")
            return 1
        self.status.finish(0, None)
        return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="corral-impexp",
                                     description="Corral disk import/export transfer")
    parser.add_argument("status_dir")
    parser.add_argument("mode", choices=(MODE_IMPORT, MODE_EXPORT))
    parser.add_argument("--key", required=True, help="private key (PEM)")
    parser.add_argument("--cert", required=True, help="certificate (PEM)")
    parser.add_argument("--ca", required=True, help="CA certificate(s) to verify the peer")
    parser.add_argument("--host", required=True,
                        help="import: address to listen on; export: importer's address")
    parser.add_argument("--port", type=int, default=0,
                        help="import: port to listen on (0 = any); export: importer's port")
    parser.add_argument("--io", required=True, help="endpoint description (io.json)")
    parser.add_argument("--component", default="")
    parser.add_argument("--compress", default=compression.NONE)
    parser.add_argument("--magic", required=True)
    parser.add_argument("--expected-size", type=int, default=None, help="MiB")
    parser.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT)
    parser.add_argument("--connect-retries", type=int, default=DEFAULT_CONNECT_RETRIES)
    parser.add_argument("--io-timeout", type=float, default=DEFAULT_IO_TIMEOUT)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TOTAL_TIMEOUT,
                        help="seconds for the whole transfer (0 = no limit)")
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT,
                        help="seconds without data once connected (0 = no limit)")
    args = parser.parse_args(argv)
    if args.timeout < 0 or args.idle_timeout < 0:
        parser.error("timeouts must not be negative")
    if not MAGIC_RE.match(args.magic):
        parser.error("invalid magic value")
    if args.mode == MODE_EXPORT and not args.port:
        parser.error("export needs --port")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s impexp[%(process)d] %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(TIMEOUT_SIGNAL, _on_signal)
    try:
        transfer = Transfer(args)
    except TransferError as err:
        log.error("%s", err)
        with contextlib.suppress(OSError):
            write_status(Path(args.status_dir), TransferStatus(
                mode=args.mode, component=args.component, done=True, exit_status=1,
                error_message=str(err)))
        return 1
    code = transfer.run()
    log.info("finished with exit status %d", code)
    return code


if __name__ == "__main__":
    sys.exit(main())
