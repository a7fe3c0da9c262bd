"""Client of noded's console WebSocket (:mod:`corral.noded.console`).

Connects to ``wss://<node>:<noded port>/console/<instance>`` with this
node's client certificate and the cluster CA (the same files as
:class:`corral.rpc.RpcRunner`), so it works from the master and from any
other node of the cluster. Three uses:

* :func:`attach`: an interactive session, as ``virsh console`` or Ganeti's
  ``socat`` wrapper: a terminal on ``stdin`` is put in raw mode and restored
  afterwards, Ctrl-] (:data:`ESCAPE_CHAR`) detaches; with piped input the
  session ends once the input is sent and the console stayed quiet for
  ``linger`` seconds;
* :func:`tail`: the last lines of the console output (the node's console
  log, also filled while nobody is attached);
* :func:`wait_for`: copy the output until a regular expression matches
  (scripts, tests, ``gnt-instance console --until``).

The WebSocket runs on a private asyncio event loop in the calling thread:
one thread uses the TLS connection, because OpenSSL connections must not be
read and written from two threads at once (a thread-based client lost its
first request now and then when TLS 1.3 session tickets arrived meanwhile).
Only reading ``stdin`` happens in a helper thread. Failures raise
:class:`ConsoleError` (an :class:`errors.OpExecError`).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import re
import select
import ssl
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Coroutine
from typing import Any, BinaryIO, Self, TypeVar
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from corral import constants as C
from corral import crypto, errors
from corral.noded.console import CLOSE_DONE, CLOSE_ENDED, CLOSE_INVALID, MAX_HISTORY_LINES
from corral.paths import Paths

ESCAPE_CHAR = b"\x1d"           # Ctrl-], as telnet, virsh and Ganeti's socat wrapper
CONNECT_TIMEOUT = 10.0          # seconds, TCP + TLS + WebSocket handshake
PIPE_LINGER = 2.0               # seconds of quiet output after piped input ended
MAX_FRAME = 4 * 1024 * 1024     # bytes; history frames are at most 1 MiB
MATCH_WINDOW = 1024 * 1024      # characters of recent output :func:`wait_for` searches
POLL = 0.1                      # seconds

T = TypeVar("T")


class ConsoleError(errors.OpExecError):
    """The console cannot be reached, or the node refused or ended the session."""


class ConsoleClosed(Exception):
    """The node closed the session: ``code`` and ``reason`` of its close frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def console_uri(host: str, port: int, instance: str, history: int = 0,
                follow: bool = True) -> str:
    """The WebSocket URI of ``instance``'s console on node ``host:port``."""
    return (f"wss://{format_address(host, port)}/console/{quote(instance, safe='')}"
            f"?history={int(history)}&follow={int(follow)}")


def ssl_context(paths: Paths) -> ssl.SSLContext:
    """Client TLS context: this node's client certificate, the cluster CA.

    Raises :class:`errors.ConfigurationError` without cluster certificates.
    """
    return crypto.client_ssl_context(crypto.load_ca_cert_pem(paths), paths.client_cert)


def _closed(err: ConnectionClosed) -> ConsoleClosed:
    frame = err.rcvd
    return ConsoleClosed(frame.code if frame else 1006,
                         frame.reason if frame else "connection lost")


class ConsoleSession:
    """One open console WebSocket on a private event loop of the calling thread.

    The ``a*`` methods are coroutines for that loop (see :meth:`run`); the
    plain ones run it until they are done. Use as a context manager or call
    :meth:`close`. Raises :class:`ConsoleError` when it cannot connect.
    """

    def __init__(self, host: str, port: int, paths: Paths | None, instance: str, *,
                 history: int = 0, follow: bool = True,
                 context: ssl.SSLContext | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.instance = instance
        self.address = format_address(host, port)
        if context is None:
            if paths is None:
                raise errors.ProgrammerError("ConsoleSession needs paths or an SSL context")
            context = ssl_context(paths)
        self.hello: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()
        try:
            self.conn: ClientConnection = self.run(self._open(
                console_uri(host, port, instance, history, follow), context, connect_timeout))
        except BaseException:
            self._loop.close()
            raise

    async def _open(self, uri: str, context: ssl.SSLContext,
                    connect_timeout: float) -> ClientConnection:
        try:
            return await connect(uri, ssl=context, proxy=None, open_timeout=connect_timeout,
                                 max_size=MAX_FRAME,
                                 user_agent_header=f"corral/{C.RELEASE_VERSION}")
        except InvalidStatus as err:
            raise ConsoleError(f"Node {self.address} does not serve consoles (HTTP "
                               f"{err.response.status_code}); is its noded joined and "
                               "up to date?") from None
        except ConnectionClosed:
            # TLS 1.3: a refused client certificate shows after the handshake.
            raise ConsoleError(f"Cannot connect to the console service of node "
                               f"{self.address}: the node closed the connection during the "
                               "handshake (client certificate not of this cluster?)") from None
        except (OSError, InvalidHandshake, TimeoutError) as err:
            raise ConsoleError(f"Cannot connect to the console service of node "
                               f"{self.address}: {err or type(err).__name__}") from None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the session's event loop until it is done."""
        return self._loop.run_until_complete(coro)

    async def arecv(self, timeout: float | None = None) -> bytes | dict[str, Any] | None:
        """Next item: console bytes, a status dict, or None after ``timeout`` s.

        Raises :class:`ConsoleClosed` once the node closed the session.
        """
        try:
            msg = await asyncio.wait_for(self.conn.recv(), timeout)
        except TimeoutError:
            return None
        except ConnectionClosed as err:
            raise _closed(err) from None
        if isinstance(msg, bytes):
            return msg
        try:
            info = json.loads(msg)
        except ValueError:
            return {}
        if not isinstance(info, dict):
            return {}
        if "instance" in info and not self.hello:
            self.hello = info
        return info

    async def asend(self, data: bytes) -> None:
        """Type ``data`` on the console. Raises :class:`ConsoleClosed`."""
        try:
            await self.conn.send(data)
        except ConnectionClosed as err:
            raise _closed(err) from None

    def recv(self, timeout: float | None = None) -> bytes | dict[str, Any] | None:
        return self.run(self.arecv(timeout))

    def send(self, data: bytes) -> None:
        self.run(self.asend(data))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self.run(self.conn.close())
        finally:
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raise_for_close(closed: ConsoleClosed, instance: str) -> None:
    """Turn a refusal or failure of the node into :class:`ConsoleError`;
    a normal end (:data:`CLOSE_DONE`, :data:`CLOSE_ENDED`) returns."""
    if closed.code in (CLOSE_DONE, CLOSE_ENDED):
        return
    if closed.code == CLOSE_INVALID:
        raise ConsoleError(closed.reason, errors.ECODE_INVAL)
    raise ConsoleError(f"Console of {instance}: {closed.reason or f'closed ({closed.code})'}",
                       errors.ECODE_ENVIRON)


def _write(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


# -- the three uses -----------------------------------------------------------------------

def tail(host: str, port: int, paths: Paths, instance: str, lines: int) -> bytes:
    """The last ``lines`` lines of ``instance``'s console output on node ``host``.

    Raises :class:`ConsoleError`.
    """
    out = bytearray()
    with ConsoleSession(host, port, paths, instance, history=lines, follow=False) as sess:
        while True:
            try:
                item = sess.recv(CONNECT_TIMEOUT + 20)
            except ConsoleClosed as closed:
                raise_for_close(closed, instance)
                return bytes(out)
            if item is None:
                raise ConsoleError(f"Timeout reading the console history of {instance}")
            if isinstance(item, bytes):
                out += item


def wait_for(host: str, port: int, paths: Paths, instance: str, pattern: str,
             timeout: float, out: BinaryIO | None = None, send: bytes | None = None,
             ) -> re.Match[str] | None:
    """Copy console output to ``out`` until ``pattern`` matches it.

    Without ``send`` the output since the instance started (the console
    log) counts too; with ``send`` the text is typed first and only the
    output after it counts. Returns the match, or None after ``timeout``
    seconds. Raises :class:`ConsoleError` (also when the console closes
    before a match), ``re.error`` for a bad pattern.
    """
    regex = re.compile(pattern)
    history = 0 if send is not None else MAX_HISTORY_LINES
    with ConsoleSession(host, port, paths, instance, history=history) as sess:
        return sess.run(_wait_for(sess, regex, timeout, out, send))


async def _wait_for(sess: ConsoleSession, regex: re.Pattern[str], timeout: float,
                    out: BinaryIO | None, send: bytes | None) -> re.Match[str] | None:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = ""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            item = await sess.arecv(left)
        except ConsoleClosed as closed:
            raise_for_close(closed, sess.instance)
            raise ConsoleError(f"The console of {sess.instance} closed before "
                               f"{regex.pattern!r} was seen: {closed.reason}") from None
        if item is None:
            return None
        if isinstance(item, dict):
            if item.get("attached") and send is not None:
                await sess.asend(send)
            continue
        if out is not None:
            _write(out, item)
        text = (text + decoder.decode(item))[-MATCH_WINDOW:]
        m = regex.search(text)
        if m:
            return m


class _InputReader(threading.Thread):
    """Reads ``fd`` (terminal, pipe or file) into an asyncio queue; ``b""`` = end."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop,
                 queue: asyncio.Queue[bytes]) -> None:
        super().__init__(name="corral-console-in", daemon=True)
        self.fd, self.loop, self.queue = fd, loop, queue
        self.stop = threading.Event()

    def _put(self, data: bytes) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, data)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                ready, _, _ = select.select([self.fd], [], [], POLL)
                data = os.read(self.fd, 4096) if ready else None
            except (OSError, ValueError):
                data = b""
            if data is None:
                continue
            try:
                self._put(data)
            except RuntimeError:        # the loop closed meanwhile
                return
            if not data:
                return


class _Attached:
    """State of one :func:`attach` session on the session's event loop."""

    def __init__(self, sess: ConsoleSession, out: BinaryIO,
                 on_status: Callable[[dict[str, Any]], None] | None) -> None:
        self.sess, self.out, self.on_status = sess, out, on_status
        self.last_output = time.monotonic()
        self.attached = asyncio.Event()
        self.closed: ConsoleClosed | None = None
        self.output_error: OSError | None = None

    async def pump_output(self) -> None:
        """Copy output to ``out`` until the node ends the session or ``out``
        cannot be written any more (e.g. a closed pipe)."""
        try:
            while True:
                item = await self.sess.arecv()
                if isinstance(item, bytes):
                    _write(self.out, item)
                    self.last_output = time.monotonic()
                elif isinstance(item, dict):
                    if item.get("attached"):
                        self.attached.set()
                    if self.on_status is not None:
                        self.on_status(item)
        except ConsoleClosed as closed:
            self.closed = closed
        except OSError as err:
            self.output_error = err

    async def run(self, inq: asyncio.Queue[bytes], is_tty: bool, timeout: float | None,
                  linger: float) -> str:
        """Forward input until the session ends; returns why ("" = node closed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pump = asyncio.create_task(self.pump_output())
        input_open = True
        try:
            while not pump.done():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return "timeout"
                if not self.attached.is_set():
                    # Input only once the node relays it.
                    await asyncio.wait([pump], timeout=POLL)
                    continue
                if not input_open:
                    if now - self.last_output >= linger:
                        return "input ended"
                    await asyncio.wait([pump], timeout=POLL)
                    continue
                try:
                    data = await asyncio.wait_for(inq.get(), POLL)
                except TimeoutError:
                    continue
                if not data:
                    input_open = False
                    self.last_output = max(self.last_output, time.monotonic())
                    continue
                escape = ESCAPE_CHAR in data
                data = data.split(ESCAPE_CHAR, 1)[0]
                if data:
                    await self.sess.asend(data)
                    if not is_tty:
                        self.last_output = max(self.last_output, time.monotonic())
                if escape:
                    return "escape"
            return "output closed" if self.output_error is not None else ""
        except ConsoleClosed as closed:
            self.closed = self.closed or closed
            return ""
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)


def attach(host: str, port: int, paths: Paths, instance: str, stdin: BinaryIO,
           stdout: BinaryIO, *, timeout: float | None = None, linger: float = PIPE_LINGER,
           on_status: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Connect ``stdin``/``stdout`` to ``instance``'s serial console.

    Ends on Ctrl-] in the input (returns ``"escape"``), after ``timeout``
    seconds if given (``"timeout"``), for input that is not a terminal once
    it is exhausted and the output stayed quiet for ``linger`` seconds
    (``"input ended"``), when ``stdout`` cannot be written any more
    (``"output closed"``), or when the node closes the console because the
    instance stopped (returns the node's reason). A terminal is in raw mode
    meanwhile and restored even on errors. ``on_status`` receives the node's
    status messages. Raises :class:`ConsoleError`.
    """
    in_fd = stdin.fileno()
    is_tty = os.isatty(in_fd)
    with ConsoleSession(host, port, paths, instance) as sess:
        state = _Attached(sess, stdout, on_status)
        inq: asyncio.Queue[bytes] = asyncio.Queue()
        reader = _InputReader(in_fd, sess.loop, inq)
        saved = termios.tcgetattr(in_fd) if is_tty else None
        try:
            if saved is not None:
                tty.setraw(in_fd)
            reader.start()
            why = sess.run(state.run(inq, is_tty, timeout, linger))
        finally:
            reader.stop.set()
            if saved is not None:
                termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
        reader.join(1)
    if why:
        return why
    closed = state.closed or ConsoleClosed(1006, "connection lost")
    raise_for_close(closed, instance)
    return closed.reason or "console closed"


def decode_escapes(text: str) -> bytes:
    r"""``--send`` text to bytes: ``\n``, ``\r``, ``\t``, ``\\`` and ``\xHH``
    are decoded, everything else is UTF-8."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE_RE.finditer(text):
        out += text[pos:m.start()].encode("utf-8")
        esc = m.group(1)
        out += bytes([int(esc[1:], 16)]) if esc.startswith("x") else _ESCAPES[esc]
        pos = m.end()
    out += text[pos:].encode("utf-8")
    return bytes(out)


_ESCAPE_RE = re.compile(r"\\(n|r|t|\\|x[0-9a-fA-F]{2})")
_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\"}


def stdio() -> tuple[BinaryIO, BinaryIO]:
    """The process's binary stdin and stdout."""
    return sys.stdin.buffer, sys.stdout.buffer
