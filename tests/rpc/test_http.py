"""corral.rpc.http against a real TLS server on loopback: keep-alive reuse,
connections the server closed, answer framings, timeouts, and certificates
of another cluster refused on both sides."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral import crypto
from corral.rpc.http import ConnectError, ConnectionPool, HttpError, ReadTimeout

ADDR = "127.0.1.41"

Handler = Callable[[bytes], bytes | None]


class TlsServer:
    """Answers each request with ``handler(request head + body)`` (None:
    close without answering); counts accepted connections."""

    def __init__(self, ctx: ssl.SSLContext, handler: Handler) -> None:
        self.ctx = ctx
        self.handler = handler
        self.sock = socket.create_server((ADDR, 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.conns: list[ssl.SSLSocket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        self.conns.append(conn)
        rfile = conn.makefile("rb")
        try:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = rfile.readline()
                    if not line:
                        return
                    head += line
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                answer = self.handler(head + rfile.read(length))
                if answer is None:
                    return
                conn.sendall(answer)
        except (OSError, ValueError):
            return
        finally:
            rfile.close()
            conn.close()

    def drop_connections(self) -> None:
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self.drop_connections()


def ok(body: bytes = b'[true, "pong"]', extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n{extra}\r\n").encode() + body


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A cluster CA with a node's server and client certificates, and a
    client certificate of another cluster."""
    top = tmp_path_factory.mktemp("certs")
    ca_cert, ca_key = crypto.create_cluster_ca("cluster.test")
    node = crypto.issue_node_certs(ca_cert, ca_key, "node1")
    other_ca, other_key = crypto.create_cluster_ca("other.test")
    other = crypto.issue_node_certs(other_ca, other_key, "intruder")
    files = {"server": node.server_pem, "client": node.client_pem, "other": other.client_pem}
    out: dict[str, Path | str] = {"ca": ca_cert, "other_ca": other_ca}
    for name, pem in files.items():
        path = top / f"{name}.pem"
        crypto.write_pem(path, pem)
        out[name] = path
    return out


@pytest.fixture
def serve(certs) -> Iterator[Callable[[Handler], TlsServer]]:
    servers: list[TlsServer] = []

    def start(handler: Handler) -> TlsServer:
        ctx = crypto.server_ssl_context(certs["server"], str(certs["ca"]))
        servers.append(TlsServer(ctx, handler))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _pool(certs, client: str = "client", ca: str = "ca") -> ConnectionPool:
    return ConnectionPool(crypto.client_ssl_context(str(certs[ca]), certs[client]),
                          headers={"Content-Type": "application/json"})


def test_keep_alive_reuses_one_connection(certs, serve) -> None:
    seen: list[bytes] = []
    server = serve(lambda req: (seen.append(req), ok())[1])
    pool = _pool(certs)
    try:
        for i in range(5):
            resp = pool.post(ADDR, server.port, "/version", b"[%d]" % i, 5, 5)
            assert (resp.status, resp.body) == (200, b'[true, "pong"]')
        assert server.accepted == 1
        assert seen[0].startswith(b"POST /version HTTP/1.1\r\n")
        assert b"Content-Type: application/json\r\n" in seen[0]
        assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in seen] == [b"[%d]" % i for i in range(5)]
    finally:
        pool.close()


def test_threads_use_their_own_connections(certs, serve) -> None:
    gate = threading.Barrier(4)

    def handler(req: bytes) -> bytes:
        gate.wait(5)          # all four requests are in flight at once
        return ok()

    server = serve(handler)
    pool = _pool(certs)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(
        pool.post(ADDR, server.port, "/x", b"[]", 5, 5).status)) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == [200] * 4 and server.accepted == 4
    finally:
        pool.close()


def test_connection_closed_by_server_is_not_reused(certs, serve) -> None:
    server = serve(lambda req: ok())
    pool = _pool(certs)
    try:
        assert pool.post(ADDR, server.port, "/a", b"[]", 5, 5).status == 200
        server.drop_connections()         # e.g. noded restarted
        threading.Event().wait(0.2)
        assert pool.post(ADDR, server.port, "/a", b"[]", 5, 5).status == 200
        assert server.accepted == 2
    finally:
        pool.close()


def test_reused_connection_closed_before_answering_is_retried_once(certs, serve) -> None:
    # The server closes the kept connection as the request arrives (noded
    # leaving the cluster, restarting): sent once more on a new connection.
    answers = iter([ok(), None, ok(b'[true, "second"]')])
    server = serve(lambda req: next(answers))
    pool = _pool(certs)
    try:
        assert pool.post(ADDR, server.port, "/a", b"[]", 5, 5).status == 200
        assert pool.post(ADDR, server.port, "/a", b"[]", 5, 5).body == b'[true, "second"]'
        assert server.accepted == 2
    finally:
        pool.close()
    # A new connection closed without an answer is not retried.
    answers = iter([None, ok()])
    server = serve(lambda req: next(answers))
    pool = _pool(certs)
    try:
        with pytest.raises(HttpError, match="closed the connection without answering"):
            pool.post(ADDR, server.port, "/a", b"[]", 5, 5)
        assert server.accepted == 1
    finally:
        pool.close()


def test_framings_and_connection_close(certs, serve) -> None:
    answers = iter([
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"4\r\n[tru\r\n5\r\ne, 1]\r\n0\r\n\r\n",
        ok(b'{"detail": "no"}', "connection: close\r\n").replace(b"200 OK", b"404 Not Found"),
        ok(),
    ])
    server = serve(lambda req: next(answers))
    pool = _pool(certs)
    try:
        assert pool.post(ADDR, server.port, "/a", b"[]", 5, 5).body == b"[true, 1]"
        resp = pool.post(ADDR, server.port, "/a", b"[]", 5, 5)
        assert (resp.status, resp.text) == (404, '{"detail": "no"}')
        assert pool.post(ADDR, server.port, "/a", b"[]", 5, 5).status == 200
        assert server.accepted == 2       # a new connection after "connection: close"
    finally:
        pool.close()


def test_failures(certs, serve) -> None:
    slow = threading.Event()
    server = serve(lambda req: None if b"/hangup" in req else (slow.wait(2), ok())[1])
    pool = _pool(certs)
    try:
        with pytest.raises(ReadTimeout):
            pool.post(ADDR, server.port, "/slow", b"[]", 0.3, 5)
        with pytest.raises(HttpError, match="closed the connection without answering"):
            pool.post(ADDR, server.port, "/hangup", b"[]", 5, 5)
        free = socket.create_server((ADDR, 0))
        port = free.getsockname()[1]
        free.close()
        with pytest.raises(ConnectError):
            pool.post(ADDR, port, "/a", b"[]", 5, 5)
    finally:
        slow.set()
        pool.close()


def test_other_clusters_certificates_are_refused(certs, serve) -> None:
    server = serve(lambda req: ok())
    # A client of another cluster: the server refuses its certificate.
    intruder = _pool(certs, client="other", ca="ca")
    # A server not signed by our CA: the client refuses it.
    wrong_ca = _pool(certs, client="client", ca="other_ca")
    try:
        with pytest.raises(HttpError):
            intruder.post(ADDR, server.port, "/a", b"[]", 5, 5)
        with pytest.raises(ConnectError):
            wrong_ca.post(ADDR, server.port, "/a", b"[]", 5, 5)
    finally:
        intruder.close()
        wrong_ca.close()
