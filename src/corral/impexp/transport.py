"""TLS transport of a transfer: contexts, listening, connecting, the magic line.

Mirrors the socat ``OPENSSL``/``OPENSSL-LISTEN`` options of Ganeti's
``impexpd.CommandBuilder``: both sides present a certificate and verify the
peer's against a pinned CA (``verify=1``), host names are not checked
(certificates are per node, the CA is pinned), TCP keepalive is on.

Certificates: ``key``/``cert`` are PEM files (may be the same file holding
both). The listening side's certificate must allow ``serverAuth`` and the
connecting side's ``clientAuth`` when they carry an extended key usage
(intra-cluster transfers use noded's server certificate and the node's
client certificate; inter-cluster keys must allow both).

The exporter sends ``M=<magic>\\n`` first; the importer refuses the stream
when it differs (Ganeti's ``IE_MAGIC``). The end of the stream is a TLS
``close_notify``; the importer reads with ragged EOFs reported as errors,
and answers with its own ``close_notify`` only once its output is safely
written, so an exporter whose shutdown completes knows the data arrived.
"""

from __future__ import annotations

import hmac
import socket
import ssl
import struct
import time
from typing import Callable

from corral import errors

MAGIC_PREFIX = b"M="


class TransferError(errors.CorralError):
    """The transfer failed; the message says why (reported in the status)."""

    default_ecode = errors.ECODE_ENVIRON


def server_context(key: str, cert: str, ca: str) -> ssl.SSLContext:
    """Context of the listening (importing) side: client certificates required."""
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as err:
        raise TransferError(f"Cannot load TLS key, certificate or CA: {err}") from None
    return ctx


def client_context(key: str, cert: str, ca: str) -> ssl.SSLContext:
    """Context of the connecting (exporting) side: the server is verified
    against ``ca`` (host name not checked) and our certificate is presented."""
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=ca)
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise TransferError(f"Cannot load TLS key, certificate or CA: {err}") from None
    return ctx


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)


def listen(host: str, port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0 = ephemeral). Raises TransferError."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1)
    except OSError as err:
        sock.close()
        raise TransferError(f"Cannot listen on {host}:{port}: {err.strerror or err}") \
            from None
    return sock


def peer_name(tls: ssl.SSLSocket) -> str:
    """The common name of the peer's certificate ("?" if unknown)."""
    cert = tls.getpeercert() or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "?"


def accept(lsock: socket.socket, ctx: ssl.SSLContext, timeout: float,
           io_timeout: float,
           on_connect: Callable[[], None] | None = None) -> tuple[ssl.SSLSocket, str]:
    """Accept one connection and do the TLS handshake (peer verified).

    ``on_connect`` is called once a peer connected, before the handshake.
    Returns ``(tls_socket, "address (CN)")``. Raises TransferError when no
    connection comes within ``timeout`` seconds or the handshake fails
    (e.g. a certificate not signed by our CA).
    """
    lsock.settimeout(timeout)
    try:
        raw, addr = lsock.accept()
    except TimeoutError:
        raise TransferError(f"No connection within {timeout:.0f} seconds") from None
    except OSError as err:
        raise TransferError(f"Accepting a connection failed: {err}") from None
    peer = f"{addr[0]}:{addr[1]}"
    if on_connect is not None:
        on_connect()
    _keepalive(raw)
    raw.settimeout(timeout)
    try:
        tls = ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
    except (ssl.SSLError, OSError) as err:
        raw.close()
        raise TransferError(f"TLS handshake with {peer} failed: {err}") from None
    tls.settimeout(io_timeout)
    return tls, f"{peer} ({peer_name(tls)})"


def connect(host: str, port: int, ctx: ssl.SSLContext, timeout: float, retries: int,
            io_timeout: float, on_retry: Callable[[str], None] | None = None,
            retry_delay: float = 1.0) -> tuple[ssl.SSLSocket, str]:
    """Connect to ``host:port`` (up to ``retries`` more attempts when the
    connection is refused or times out) and do the TLS handshake.

    Returns ``(tls_socket, "address (CN)")``. Raises TransferError; TLS
    failures (bad certificate) are not retried.
    """
    attempt = 0
    while True:
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
            break
        except OSError as err:
            attempt += 1
            if attempt > retries:
                raise TransferError(f"Cannot connect to {host}:{port} after {attempt} "
                                    f"attempts: {err.strerror or err}") from None
            if on_retry is not None:
                on_retry(f"Connection to {host}:{port} failed ({err.strerror or err}), "
                         f"retrying ({attempt}/{retries})")
            time.sleep(retry_delay)
    _keepalive(raw)
    raw.settimeout(timeout)
    try:
        tls = ctx.wrap_socket(raw, server_side=False, suppress_ragged_eofs=False)
    except (ssl.SSLError, OSError) as err:
        raw.close()
        raise TransferError(f"TLS handshake with {host}:{port} failed: {err}") from None
    tls.settimeout(io_timeout)
    return tls, f"{host}:{port} ({peer_name(tls)})"


def magic_line(magic: str) -> bytes:
    return MAGIC_PREFIX + magic.encode("ascii") + b"\n"


def send_magic(tls: ssl.SSLSocket, magic: str) -> None:
    try:
        tls.sendall(magic_line(magic))
    except (ssl.SSLError, OSError) as err:
        raise TransferError(f"Sending the magic value failed: {err}") from None


def check_magic(tls: ssl.SSLSocket, magic: str, timeout: float) -> None:
    """Read the magic line and compare it (constant time). Raises TransferError."""
    want = magic_line(magic)
    got = bytearray()
    old = tls.gettimeout()
    tls.settimeout(timeout)
    try:
        while len(got) < len(want):
            chunk = tls.recv(len(want) - len(got))
            if not chunk:
                break
            got += chunk
            if b"\n" in chunk:
                break
    except (ssl.SSLError, OSError) as err:
        raise TransferError(f"Reading the magic value failed: {err}") from None
    finally:
        tls.settimeout(old)
    if not hmac.compare_digest(bytes(got), want):
        raise TransferError("Magic value mismatch: the peer is not the expected exporter")


def abort_connection(sock: socket.socket | None) -> None:
    """Close ``sock`` with a TCP reset (no ``close_notify``): the peer sees
    the stream as broken, never as complete."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
