"""Keep-alive HTTPS/1.1 connections from the master to node daemons.

What :mod:`corral.rpc.client` needs of HTTP and nothing more: ``POST`` a
JSON body, read a status and a body (``Content-Length``, chunked, or up to
the end of the connection). It replaces httpx for node RPC because httpx
costs several times more CPU per call and serializes every thread of the
master on its pool's one lock; here each thread owns the connection it
uses, and a lock is held only to take an idle connection from, or give it
back to, a node's list.

Connections are verified with the caller's :class:`ssl.SSLContext` (the
cluster CA and client certificate), so node daemons keep accepting only
the cluster's certificates. Like httpcore, a connection is reused only if
it is idle for less than :data:`IDLE_TIMEOUT` and has nothing to read
(a node daemon that closed it, e.g. on restart, makes it readable).

A node daemon can still close an idle connection just after that check,
while the request is on its way (it goes back to unjoined mode, restarts,
or its keep-alive expires). It then closes without answering anything, and
without having read the request: uvicorn closes only idle connections, and
answers every request it reads. So a request that got no byte of answer on
a *reused* connection is sent once more on a new one, as HTTP clients
do for keep-alive races. A new connection is never retried.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO

#: Seconds an idle connection is kept; below noded's keep-alive (30 s).
IDLE_TIMEOUT = 20.0
#: Idle connections kept per node (more are closed after use).
MAX_IDLE_PER_NODE = 32
_MAX_LINE = 65536
_MAX_HEADERS = 100


class HttpError(Exception):
    """A transport failure (the message says what happened)."""


class ConnectError(HttpError):
    """The connection or the TLS handshake failed (nothing was sent)."""


class ConnectTimeout(ConnectError):
    """The connection or the TLS handshake timed out (nothing was sent)."""


class ReadTimeout(HttpError):
    """The node did not answer within the timeout."""


@dataclass
class Response:
    """Status code and body of one answer."""

    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _Conn:
    __slots__ = ("idle_since", "rfile", "sock")

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.rfile: BinaryIO = sock.makefile("rb")
        self.idle_since = 0.0

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()

    def reusable(self, now: float) -> bool:
        """Idle not too long and nothing to read (a closed or confused peer)."""
        if now - self.idle_since > IDLE_TIMEOUT or self.sock.pending():
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable


class _Closed(Exception):
    """The server closed the connection before answering (the cause attached)."""


class ConnectionPool:
    """Keep-alive HTTPS connections per ``(host, port)``, thread-safe.

    ``ssl_context`` verifies the servers (and presents the client
    certificate); host names are not checked, the CA is pinned.
    """

    def __init__(self, ssl_context: ssl.SSLContext,
                 headers: dict[str, str] | None = None) -> None:
        self._ctx = ssl_context
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._extra_headers = extra
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def post(self, host: str, port: int, path: str, body: bytes, timeout: float,
             connect_timeout: float) -> Response:
        """``POST https://host:port/path`` with ``body``; timeouts in seconds
        (``timeout`` per read of the answer).

        Raises :class:`ConnectError` / :class:`ConnectTimeout` (nothing sent),
        :class:`ReadTimeout`, or :class:`HttpError` for any other failure.
        """
        key = (host, port)
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = (f"POST {path} HTTP/1.1\r\nHost: {netloc}\r\n{self._extra_headers}"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        conn = self._checkout(key)
        if conn is not None:
            try:
                return self._exchange(key, conn, head + body, timeout)
            except _Closed:
                pass            # closed while idle: once more on a new connection
        conn = self._connect(host, port, connect_timeout)
        try:
            return self._exchange(key, conn, head + body, timeout)
        except _Closed as err:
            raise HttpError(str(err.__cause__)) from None

    def _exchange(self, key: tuple[str, int], conn: _Conn, request: bytes,
                  timeout: float) -> Response:
        """Send ``request`` on ``conn`` and read the answer; :class:`_Closed`
        when the server closed it before any byte of answer."""
        try:
            conn.sock.settimeout(timeout)
            try:
                conn.sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError) as err:
                raise _NoAnswer(str(err) or type(err).__name__) from None
            status, resp_body, keep = _read_response(conn.rfile)
        except _NoAnswer as err:
            conn.close()
            raise _Closed() from err
        except TimeoutError:
            conn.close()
            raise ReadTimeout(f"timed out after {timeout:g} s") from None
        except (OSError, ValueError) as err:
            conn.close()
            raise HttpError(str(err) or type(err).__name__) from None
        if keep:
            self._checkin(key, conn)
        else:
            conn.close()
        return Response(status, resp_body)

    def close(self) -> None:
        """Close every idle connection; connections in use close after their call."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _checkout(self, key: tuple[str, int]) -> _Conn | None:
        now = time.monotonic()
        while True:
            with self._lock:
                conns = self._idle.get(key)
                if not conns:
                    return None
                conn = conns.pop()
            if conn.reusable(now):
                return conn
            conn.close()

    def _checkin(self, key: tuple[str, int], conn: _Conn) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            conns = self._idle.setdefault(key, [])
            if not self._closed and len(conns) < MAX_IDLE_PER_NODE:
                conns.append(conn)
                return
        conn.close()

    def _connect(self, host: str, port: int, timeout: float) -> _Conn:
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError:
            raise ConnectTimeout(f"connection timed out after {timeout:g} s") from None
        except OSError as err:
            raise ConnectError(str(err) or type(err).__name__) from None
        try:
            # Small requests: do not let Nagle wait for the server's delayed ACK.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = self._ctx.wrap_socket(raw, server_hostname=host)
        except TimeoutError:
            raw.close()
            raise ConnectTimeout(f"TLS handshake timed out after {timeout:g} s") from None
        except OSError as err:     # ssl.SSLError is an OSError
            raw.close()
            raise ConnectError(str(err) or type(err).__name__) from None
        return _Conn(sock)


class _NoAnswer(ConnectionError):
    """The server closed the connection before sending any byte of answer."""


def _readline(rfile: BinaryIO) -> bytes:
    line = rfile.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise ValueError("HTTP line too long")
    if not line:
        raise ConnectionError("Server closed the connection in the middle of the answer")
    return line


def _read_exact(rfile: BinaryIO, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) != size:
        raise ConnectionError("Server closed the connection in the middle of the answer")
    return data


def _read_response(rfile: BinaryIO) -> tuple[int, bytes, bool]:
    """``(status, body, keep_alive)`` of one answer. Raises ``ValueError`` for
    a malformed answer, ``OSError`` for a broken connection."""
    try:
        first = rfile.readline(_MAX_LINE + 1)
    except ConnectionResetError:
        first = b""
    if not first:
        raise _NoAnswer("Server closed the connection without answering")
    if len(first) > _MAX_LINE:
        raise ValueError("HTTP line too long")
    version, _, rest = first.decode("latin-1").partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"Not an HTTP/1.x answer: {version[:40]!r}")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS + 1):
        line = _readline(rfile)
        if line in (b"\r\n", b"\n"):
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ValueError(f"Malformed header line {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    else:
        raise ValueError("Too many header lines")
    keep = version != "HTTP/1.0" and headers.get("connection", "").lower() != "close"
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _read_chunked(rfile)
    elif "content-length" in headers:
        body = _read_exact(rfile, int(headers["content-length"]))
    else:
        body, keep = rfile.read(), False
    return status, body, keep


def _read_chunked(rfile: BinaryIO) -> bytes:
    parts = []
    while True:
        size = int(_readline(rfile).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while _readline(rfile) not in (b"\r\n", b"\n"):
                pass                       # trailers
            return b"".join(parts)
        parts.append(_read_exact(rfile, size))
        _readline(rfile)                   # the CRLF after the chunk
