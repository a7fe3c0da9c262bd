"""corral.crypto: cluster CA, node certificates, TLS contexts, join tokens."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given
from hypothesis import strategies as st

from corral import crypto, errors
from corral.paths import Paths


@pytest.fixture(scope="module")
def ca() -> tuple[str, str]:
    return crypto.create_cluster_ca("cluster.test")


def _eku(pem: str) -> list:
    cert = crypto.load_certificate(pem)
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_cluster_ca(ca) -> None:
    cert_pem, key_pem = ca
    cert = crypto.load_certificate(cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc.year - cert.not_valid_before_utc.year >= 9
    assert "PRIVATE KEY" in key_pem and "PRIVATE KEY" not in cert_pem
    assert crypto.verify_issued_by(cert_pem, cert_pem)      # self-signed


def test_issue_node_certs(ca) -> None:
    ca_cert, ca_key = ca
    certs = crypto.issue_node_certs(ca_cert, ca_key, "node1.test")
    for pem, eku in ((certs.server_pem, ExtendedKeyUsageOID.SERVER_AUTH),
                     (certs.client_pem, ExtendedKeyUsageOID.CLIENT_AUTH)):
        cert_pem, key_pem = crypto.split_pem(pem)
        assert key_pem is not None
        assert crypto.verify_issued_by(cert_pem, ca_cert)
        assert _eku(pem) == [eku]
        cert = crypto.load_certificate(pem)
        assert cert.subject.rfc4514_string() == "CN=node1.test"
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    other_ca, _ = crypto.create_cluster_ca("other")
    assert not crypto.verify_issued_by(certs.server_pem, other_ca)


def test_fingerprint_forms(ca) -> None:
    cert_pem, _ = ca
    der = crypto.load_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    fp = crypto.fingerprint(cert_pem)
    assert len(fp) == 64 and fp == fp.lower()
    assert crypto.fingerprint(der) == fp == crypto.fingerprint(cert_pem.encode())
    with pytest.raises(errors.OpPrereqError):
        crypto.fingerprint("no certificate here")
    with pytest.raises(errors.OpPrereqError):
        crypto.fingerprint(b"\x30\x03garbage")


def test_write_pem_atomic_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.pem"
    crypto.write_pem(target, "one")
    crypto.write_pem(target, b"two")
    assert target.read_text() == "two"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["x.pem"]


def test_init_and_remove_cluster_certs(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    assert not crypto.node_certs_present(paths)
    crypto.init_cluster_certs(paths, "cluster.test", "master.test")
    assert crypto.node_certs_present(paths)
    ca_cert, ca_key = crypto.read_cluster_ca(paths)
    assert crypto.load_ca_cert_pem(paths) == ca_cert
    assert crypto.verify_issued_by(paths.client_cert.read_text(), ca_cert)
    for p in (paths.cluster_cert, paths.client_cert, crypto.ca_cert_path(paths),
              crypto.node_server_cert_path(paths)):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    crypto.remove_node_certs(paths)
    assert not crypto.node_certs_present(paths)
    with pytest.raises(errors.ConfigurationError):
        crypto.load_ca_cert_pem(paths)
    with pytest.raises(errors.ConfigurationError):
        crypto.read_cluster_ca(paths)


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str | None:
    """Run one TLS exchange on loopback; None on success, else the error text."""
    listener = socket.create_server(("127.0.1.51", 0))
    port = listener.getsockname()[1]
    server_error: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(10)
                tls.sendall(b"pong")
        except (ssl.SSLError, OSError) as err:
            server_error.append(str(err))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.1.51", port), timeout=5) as raw:
            with client_ctx.wrap_socket(raw) as tls:
                tls.sendall(b"ping")
                if tls.recv(10) != b"pong":
                    return "no answer"
    except (ssl.SSLError, OSError) as err:
        return str(err) or "closed"
    finally:
        thread.join(5)
        listener.close()
    return server_error[0] if server_error else None


def test_tls_contexts(tmp_path: Path) -> None:
    master = Paths(tmp_path / "m")
    crypto.init_cluster_certs(master, "cluster.test", "master.test")
    ca_pem = crypto.load_ca_cert_pem(master)
    server = crypto.server_ssl_context(crypto.node_server_cert_path(master), ca_pem)
    assert _handshake(server, crypto.client_ssl_context(ca_pem, master.client_cert)) is None
    assert _handshake(server, crypto.client_ssl_context(ca_pem)) is not None
    other = Paths(tmp_path / "o")
    crypto.init_cluster_certs(other, "other.test", "x")
    assert _handshake(server, crypto.client_ssl_context(ca_pem, other.client_cert)) is not None
    # The client refuses a server of another CA.
    other_server = crypto.server_ssl_context(crypto.node_server_cert_path(other), None)
    assert _handshake(other_server, crypto.client_ssl_context(ca_pem)) is not None
    # Self-signed (unjoined) server: no client certificate needed, clients don't verify.
    path = tmp_path / "self.pem"
    crypto.write_pem(path, crypto.create_self_signed("unjoined"))
    assert _handshake(crypto.server_ssl_context(path, None),
                      crypto.client_ssl_context(None)) is None


def test_join_token_format() -> None:
    token_id, secret = crypto.parse_join_token("0123abcd." + "A" * 43)
    assert (token_id, secret) == ("0123abcd", "A" * 43)
    for bad in ("", "0123abcd", "0123abcd.", "0123ABCD." + "A" * 43, "0123abc." + "A" * 43,
                "0123abcd." + "A" * 10, "0123abcd." + "A/" * 30):
        with pytest.raises(errors.OpPrereqError):
            crypto.parse_join_token(bad)


def test_join_token_store(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    store = crypto.JoinTokenStore(paths)
    token = store.create()
    token_id, secret = crypto.parse_join_token(token)
    assert store.get_secret(token_id) == secret
    assert stat.S_IMODE(os.stat(paths.join_tokens).st_mode) == 0o600
    # A second store object (another process) sees the same tokens.
    assert crypto.JoinTokenStore(paths).get_secret(token_id) == secret
    short = store.create(ttl_s=0.2)
    assert store.list_ids() == sorted([token_id, crypto.parse_join_token(short)[0]])
    assert store.consume(token_id) is True
    assert store.consume(token_id) is False
    assert store.get_secret(token_id) is None
    time.sleep(0.3)
    assert store.get_secret(crypto.parse_join_token(short)[0]) is None
    store.create()    # expired tokens are dropped on write
    assert len(json.loads(paths.join_tokens.read_text())) == 1


def test_join_token_store_concurrent_creates(tmp_path: Path) -> None:
    store = crypto.JoinTokenStore(Paths(tmp_path))
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda: tokens.append(store.create()))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(store.list_ids()) == sorted(crypto.parse_join_token(t)[0] for t in tokens)


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_join_hmac_binds_every_input(node: str, cluster: str) -> None:
    secret, fp = "s" * 43, "ab" * 32
    mac = crypto.join_hmac(secret, fp, node, cluster)
    assert mac == crypto.join_hmac(secret, fp.upper(), node, cluster)
    assert mac != crypto.join_hmac("t" * 43, fp, node, cluster)
    assert mac != crypto.join_hmac(secret, "cd" * 32, node, cluster)
    assert mac != crypto.join_hmac(secret, fp, node + "x", cluster)
    assert mac != crypto.join_hmac(secret, fp, node, cluster + "x")
    assert mac != crypto.join_node_proof(secret, fp)
    flipped = mac[:-1] + ("1" if mac[-1] == "0" else "0")
    assert crypto.hmac_equal(mac, mac) and not crypto.hmac_equal(mac, flipped)
