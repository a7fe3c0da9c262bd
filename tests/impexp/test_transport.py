"""TLS transport: mutual verification against the cluster CA, the magic line,
connection retries and timeouts (in-process, on 127.0.2.x)."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from corral import crypto
from corral.impexp import transport
from corral.impexp.transport import TransferError
from corral.paths import Paths

from .nodes import NODE2_IP, make_ca, make_node


def files(paths: Paths, server: bool) -> tuple[str, str, str]:
    own = crypto.node_server_cert_path(paths) if server else paths.client_cert
    return str(own), str(own), str(crypto.ca_cert_path(paths))


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Paths, Paths]:
    ca = make_ca()
    return make_node(tmp_path / "n1", "node1", ca), make_node(tmp_path / "n2", "node2", ca)


def serve(lsock: socket.socket, ctx: Any, result: dict[str, Any],
          magic: str | None = None) -> threading.Thread:
    def run() -> None:
        try:
            tls, peer = transport.accept(lsock, ctx, 10, 10)
            result["peer"] = peer
            if magic is not None:
                transport.check_magic(tls, magic, 5)
                result["data"] = tls.recv(100)
            tls.close()
        except TransferError as err:
            result["error"] = str(err)
        finally:
            lsock.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_mutual_tls_and_magic(pair: tuple[Paths, Paths]) -> None:
    n1, n2 = pair
    lsock = transport.listen(NODE2_IP)
    port = lsock.getsockname()[1]
    result: dict[str, Any] = {}
    thread = serve(lsock, transport.server_context(*files(n2, True)), result, "m-12345")
    tls, peer = transport.connect(NODE2_IP, port, transport.client_context(*files(n1, False)),
                                  5, 0, 10)
    assert peer == f"{NODE2_IP}:{port} (node2)"
    transport.send_magic(tls, "m-12345")
    tls.sendall(b"payload")
    thread.join(10)
    tls.close()
    assert result.get("error") is None
    assert result["peer"].endswith("(node1)")
    assert result["data"] == b"payload"


@pytest.mark.parametrize("sent", ["m-54321", "m-1234", "m-123456789"])
def test_magic_mismatch(pair: tuple[Paths, Paths], sent: str) -> None:
    n1, n2 = pair
    lsock = transport.listen(NODE2_IP)
    result: dict[str, Any] = {}
    thread = serve(lsock, transport.server_context(*files(n2, True)), result, "m-12345")
    tls, _ = transport.connect(NODE2_IP, lsock.getsockname()[1],
                               transport.client_context(*files(n1, False)), 5, 0, 10)
    transport.send_magic(tls, sent)
    thread.join(10)
    tls.close()
    assert "Magic value mismatch" in result["error"]


def test_client_from_other_ca_refused(pair: tuple[Paths, Paths], tmp_path: Path) -> None:
    _, n2 = pair
    evil = make_node(tmp_path / "evil", "evil", make_ca("other"))
    lsock = transport.listen(NODE2_IP)
    result: dict[str, Any] = {}
    thread = serve(lsock, transport.server_context(*files(n2, True)), result)
    key, cert, _ = files(evil, False)
    ctx = transport.client_context(key, cert, str(crypto.ca_cert_path(n2)))  # trusts n2
    with pytest.raises((TransferError, ssl.SSLError)):
        tls, _ = transport.connect(NODE2_IP, lsock.getsockname()[1], ctx, 5, 0, 10)
        tls.recv(1)         # TLS 1.3: the server's refusal arrives after the handshake
    thread.join(10)
    assert "TLS handshake" in result["error"] and "certificate" in result["error"]


def test_server_from_other_ca_refused(pair: tuple[Paths, Paths], tmp_path: Path) -> None:
    n1, _ = pair
    evil = make_node(tmp_path / "evil", "evil", make_ca("other"))
    lsock = transport.listen(NODE2_IP)
    result: dict[str, Any] = {}
    key, cert, _ = files(evil, True)
    thread = serve(lsock, transport.server_context(key, cert, str(crypto.ca_cert_path(n1))),
                   result)
    with pytest.raises(TransferError, match="certificate verify failed"):
        transport.connect(NODE2_IP, lsock.getsockname()[1],
                          transport.client_context(*files(n1, False)), 5, 0, 10)
    thread.join(10)


def test_connect_retries_exhausted(pair: tuple[Paths, Paths]) -> None:
    n1, _ = pair
    probe = transport.listen(NODE2_IP)
    port = probe.getsockname()[1]
    probe.close()                       # nobody listens there now
    notes: list[str] = []
    with pytest.raises(TransferError, match="after 3 attempts"):
        transport.connect(NODE2_IP, port, transport.client_context(*files(n1, False)), 2, 2,
                          10, on_retry=notes.append, retry_delay=0.01)
    assert len(notes) == 2 and "retrying (1/2)" in notes[0]


def test_accept_timeout(pair: tuple[Paths, Paths]) -> None:
    _, n2 = pair
    lsock = transport.listen(NODE2_IP)
    with pytest.raises(TransferError, match="No connection within"):
        transport.accept(lsock, transport.server_context(*files(n2, True)), 0.2, 10)
    lsock.close()


def test_bad_files_and_address(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.pem")
    with pytest.raises(TransferError, match="Cannot load TLS"):
        transport.server_context(missing, missing, missing)
    with pytest.raises(TransferError, match="Cannot load TLS"):
        transport.client_context(missing, missing, missing)
    with pytest.raises(TransferError, match="Cannot listen"):
        transport.listen("256.0.0.1")   # not an address at all
