"""Cluster certificates, TLS contexts and node join tokens.

Mirrors Ganeti's ``utils.x509`` / ``bootstrap`` certificate handling, with one
change of trust model: instead of one shared ``server.pem`` copied to every
node, the master holds a cluster **CA** (``paths.cluster_cert``, cert + key)
and issues every node its own server certificate (``serverAuth``) and client
certificate (``clientAuth``). noded requires a client certificate signed by
the CA; RPC clients verify noded's certificate against the CA with the host
name check off (certificates are per node, the CA is pinned).

Files of a node (all PEM, mode 0600):

* ``ca_cert_path(paths)``      the cluster CA certificate (no key)
* ``node_server_cert_path(paths)``  noded's server certificate + key
* ``paths.client_cert``        this node's client certificate + key
* ``paths.cluster_cert``       master (candidates) only: CA certificate + key

Join tokens (``"<token_id>.<secret>"``) let a new node prove to the master,
and the master prove to the node, that both were given the same secret; the
proofs are HMACs bound to the TLS certificate the node presents, so a man in
the middle cannot relay them.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import ssl
import threading
import time
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral import errors
from corral.fileio import write_file_atomic
from corral.paths import Paths

CA_VALIDITY_DAYS = 10 * 365
CERT_VALIDITY_DAYS = 10 * 365
JOIN_TOKEN_TTL_S = 3600
_TOKEN_ID_RE = re.compile(r"^[0-9a-f]{8}$")
_TOKEN_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
_PEM_CERT_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----\s*", re.DOTALL)
_PEM_KEY_RE = re.compile(
    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----\s.*?-----END (?:[A-Z]+ )?PRIVATE KEY-----\s*",
    re.DOTALL)


# -- file locations ---------------------------------------------------------------

def ca_cert_path(paths: Paths) -> Path:
    """The cluster CA certificate (no key) on every node."""
    return paths.data_dir / "ca.pem"


def node_server_cert_path(paths: Paths) -> Path:
    """noded's server certificate and key, signed by the cluster CA."""
    return paths.data_dir / "noded.pem"


def unjoined_cert_path(paths: Paths) -> Path:
    """Temporary self-signed certificate of a noded that has not joined a cluster."""
    return paths.data_dir / "noded-unjoined.pem"


# -- PEM helpers --------------------------------------------------------------------

def write_pem(path: str | os.PathLike[str], data: str | bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename) with ``mode``.

    The parent directory is created if missing. Raises ``OSError``.
    """
    write_file_atomic(path, data, mode=mode)


def split_pem(pem: str | bytes) -> tuple[str, str | None]:
    """Split a combined PEM (text or bytes) into (first certificate, private
    key or None), both as text.

    Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``) when there is no certificate.
    """
    if isinstance(pem, bytes):
        pem = pem.decode("ascii", "replace")
    cert = _PEM_CERT_RE.search(pem)
    if cert is None:
        raise errors.OpPrereqError("No certificate found in PEM data", errors.ECODE_INVAL)
    key = _PEM_KEY_RE.search(pem)
    return cert.group(0).strip() + "\n", (key.group(0).strip() + "\n") if key else None


def load_certificate(data: str | bytes) -> x509.Certificate:
    """Parse the first certificate of PEM text (str/bytes) or DER bytes.

    Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``) for unparsable data.
    """
    try:
        if isinstance(data, str):
            return x509.load_pem_x509_certificate(split_pem(data)[0].encode("ascii"))
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(
                split_pem(data.decode("ascii"))[0].encode("ascii"))
        return x509.load_der_x509_certificate(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise errors.OpPrereqError(f"Invalid certificate: {err}", errors.ECODE_INVAL) from None


def fingerprint(cert_pem_or_der: str | bytes) -> str:
    """SHA-256 of the certificate's DER form, lower-case hex without colons."""
    cert = load_certificate(cert_pem_or_der)
    return cert.fingerprint(hashes.SHA256()).hex()


def verify_issued_by(cert_pem: str, ca_cert_pem: str) -> bool:
    """True when ``cert_pem``'s certificate is signed by the CA in ``ca_cert_pem``."""
    cert = load_certificate(cert_pem)
    ca = load_certificate(ca_cert_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# -- certificate creation -----------------------------------------------------------

def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])])


def create_cluster_ca(cluster_name: str) -> tuple[str, str]:
    """A new self-signed cluster CA (EC P-256, 10 years).

    Returns ``(cert_pem, key_pem)``; store both at ``paths.cluster_cert``
    (see :func:`init_cluster_certs`).
    """
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Corral CA {cluster_name}"[:64]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corral cluster")])
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return _cert_pem(cert), _key_pem(key)


def _leaf(cn: str, issuer_name: x509.Name, signing_key: ec.EllipticCurvePrivateKey,
          key: ec.EllipticCurvePrivateKey, eku: list[x509.ObjectIdentifier],
          ca_cert: x509.Certificate | None,
          validity: datetime.timedelta = datetime.timedelta(days=CERT_VALIDITY_DAYS),
          san: bool = True) -> x509.Certificate:
    now = _now()
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn)).issuer_name(issuer_name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + validity)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=True, key_cert_sign=False,
                   crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]),
                                        critical=False)
    if ca_cert is not None:
        ca_public = ca_cert.public_key()
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public),  # type: ignore[arg-type]
            critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def create_transfer_cert(common_name: str, validity_s: int) -> tuple[str, str]:
    """A self-signed key and certificate (PEM) valid ``validity_s`` seconds,
    for both TLS roles (a transfer listens on one node and connects from the
    other). Mirrors ``utils.GenerateSelfSignedX509Cert``. Returns ``(key, cert)``.
    """
    key = _new_key()
    name = _name(common_name[:64])
    cert = _leaf(common_name[:64], name, key, key,
                 [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], None,
                 validity=datetime.timedelta(seconds=validity_s), san=False)
    return _key_pem(key), _cert_pem(cert)


class NodeCerts(NamedTuple):
    """A node's certificates, each PEM certificate + key: ``server_pem`` for
    noded (serverAuth), ``client_pem`` for its RPC calls (clientAuth)."""

    server_pem: str
    client_pem: str


def _load_ca_key(ca_key_pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(ca_key_pem.encode("ascii"), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise errors.ConfigurationError("The cluster CA key is not an EC key")
    return key


def issue_node_certs(ca_cert_pem: str, ca_key_pem: str, node_name: str) -> NodeCerts:
    """Issue server and client certificates for ``node_name``, signed by the CA."""
    ca_cert = load_certificate(ca_cert_pem)
    ca_key = _load_ca_key(ca_key_pem)
    out = []
    for eku in (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH):
        key = _new_key()
        cert = _leaf(node_name, ca_cert.subject, ca_key, key, [eku], ca_cert)
        out.append(_cert_pem(cert) + _key_pem(key))
    return NodeCerts(out[0], out[1])


def create_self_signed(cn: str) -> str:
    """A self-signed server certificate + key (PEM) for ``cn`` (unjoined noded, RAPI)."""
    key = _new_key()
    cert = _leaf(cn, _name(cn), key, key, [ExtendedKeyUsageOID.SERVER_AUTH], None)
    return _cert_pem(cert) + _key_pem(key)


# -- installing certificates on a node ----------------------------------------------

def install_node_certs(paths: Paths, ca_cert_pem: str, certs: NodeCerts) -> None:
    """Write the CA certificate and this node's certificates (mode 0600).

    noded's server certificate is written last: its presence makes noded start
    in joined mode (:func:`node_certs_present`).
    """
    write_pem(ca_cert_path(paths), split_pem(ca_cert_pem)[0])
    write_pem(paths.client_cert, certs.client_pem)
    write_pem(node_server_cert_path(paths), certs.server_pem)


def init_cluster_certs(paths: Paths, cluster_name: str, node_name: str) -> None:
    """Master at cluster init: create the CA at ``paths.cluster_cert`` and
    install certificates for the master node itself."""
    ca_cert, ca_key = create_cluster_ca(cluster_name)
    write_pem(paths.cluster_cert, ca_cert + ca_key)
    install_node_certs(paths, ca_cert, issue_node_certs(ca_cert, ca_key, node_name))


def read_cluster_ca(paths: Paths) -> tuple[str, str]:
    """Master side: ``(ca_cert_pem, ca_key_pem)`` from ``paths.cluster_cert``.

    Raises :class:`errors.ConfigurationError` when missing or without a key.
    """
    try:
        text = paths.cluster_cert.read_text(encoding="ascii")
    except FileNotFoundError:
        raise errors.ConfigurationError(
            f"Cluster CA {paths.cluster_cert} not found (is this the master?)") from None
    cert, key = split_pem(text)
    if key is None:
        raise errors.ConfigurationError(f"{paths.cluster_cert} holds no private key")
    return cert, key


def load_ca_cert_pem(paths: Paths) -> str:
    """The cluster CA certificate of this node: ``ca.pem``, else the certificate
    part of ``paths.cluster_cert``. Raises :class:`errors.ConfigurationError`."""
    for path in (ca_cert_path(paths), paths.cluster_cert):
        try:
            return split_pem(path.read_text(encoding="ascii"))[0]
        except FileNotFoundError:
            continue
    raise errors.ConfigurationError(
        f"No cluster CA certificate in {paths.data_dir} (node not joined?)")


def node_certs_present(paths: Paths) -> bool:
    """True when this node holds the cluster CA and its own certificates."""
    return ((ca_cert_path(paths).is_file() or paths.cluster_cert.is_file())
            and node_server_cert_path(paths).is_file() and paths.client_cert.is_file())


def remove_node_certs(paths: Paths) -> None:
    """Forget every cluster certificate and key on this node (leave cluster)."""
    for path in (node_server_cert_path(paths), paths.client_cert, ca_cert_path(paths),
                 paths.cluster_cert):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


# -- TLS contexts ---------------------------------------------------------------------

def server_ssl_context(cert_file: str | os.PathLike[str],
                       client_ca_pem: str | None) -> ssl.SSLContext:
    """Server context with the certificate + key in ``cert_file``.

    With ``client_ca_pem`` clients must present a certificate signed by that
    CA (``CERT_REQUIRED``); without, no client certificate is asked for.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.fspath(cert_file))
    if client_ca_pem is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=client_ca_pem)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_ssl_context(ca_pem: str | None,
                       client_cert_file: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """Client context: verify the server against ``ca_pem`` (host name check
    off: certificates are per node, the CA is pinned), or not at all when
    ``ca_pem`` is None; present ``client_cert_file`` (cert + key) if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    if ca_pem is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=ca_pem)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert_file is not None:
        ctx.load_cert_chain(os.fspath(client_cert_file))
    return ctx


# -- join tokens ----------------------------------------------------------------------

def parse_join_token(token: str) -> tuple[str, str]:
    """Split ``"<token_id>.<secret>"``. Raises :class:`errors.OpPrereqError` (ECODE_INVAL)."""
    token_id, sep, secret = (token or "").strip().partition(".")
    if not sep or not _TOKEN_ID_RE.match(token_id) or not _TOKEN_SECRET_RE.match(secret):
        raise errors.OpPrereqError("Malformed join token (expected '<8 hex>.<secret>')",
                                   errors.ECODE_INVAL)
    return token_id, secret


def join_hmac(secret: str, server_cert_fingerprint: str, node_name: str,
              cluster_name: str) -> str:
    """Master's proof (hex HMAC-SHA256) that it holds the token secret, bound
    to the certificate it saw on the node and to the node and cluster names."""
    msg = "\0".join(("corral-join-master-v1", server_cert_fingerprint.lower(), node_name,
                     cluster_name))
    return hmac.new(secret.encode("ascii"), msg.encode("utf-8"), hashlib.sha256).hexdigest()


def join_node_proof(secret: str, server_cert_fingerprint: str) -> str:
    """Node's proof (hex HMAC-SHA256, sent in ``/join_info``) that it holds the
    token secret, bound to its own server certificate. The master checks it
    before sending the node its keys."""
    msg = "\0".join(("corral-join-node-v1", server_cert_fingerprint.lower()))
    return hmac.new(secret.encode("ascii"), msg.encode("utf-8"), hashlib.sha256).hexdigest()


def hmac_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


class JoinTokenStore:
    """Master side store of outstanding join tokens at ``paths.join_tokens``.

    JSON ``{token_id: {"secret": str, "created": ts, "expires": ts}}``, mode
    0600; every change is a locked read-modify-atomic-write, so masterd and
    the CLI may use it at the same time. Expired tokens are dropped on write.
    """

    def __init__(self, paths: Paths) -> None:
        self.path = paths.join_tokens
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError) as err:
            raise errors.ConfigurationError(f"Corrupt join token file {self.path}: {err}") \
                from None
        return data if isinstance(data, dict) else {}

    def _modify(self, fn) -> object:  # type: ignore[no-untyped-def]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with self._lock, open(lock_path, "a") as lock_fh:
            fcntl.flock(lock_fh, fcntl.LOCK_EX)
            tokens = self._read()
            now = time.time()
            tokens = {k: v for k, v in tokens.items()
                      if float(v.get("expires", 0)) > now}  # type: ignore[arg-type]
            result = fn(tokens)
            write_pem(self.path, json.dumps(tokens, indent=1, sort_keys=True))
            return result

    def create(self, ttl_s: float = JOIN_TOKEN_TTL_S) -> str:
        """Create a token valid for ``ttl_s`` seconds; returns ``"<id>.<secret>"``."""
        secret = secrets.token_urlsafe(32)

        def add(tokens: dict[str, dict[str, object]]) -> str:
            while True:
                token_id = secrets.token_hex(4)
                if token_id not in tokens:
                    break
            now = time.time()
            tokens[token_id] = {"secret": secret, "created": now, "expires": now + ttl_s}
            return token_id

        token_id = self._modify(add)
        return f"{token_id}.{secret}"

    def get_secret(self, token_id: str) -> str | None:
        """The secret of an unexpired token, or None."""
        with self._lock:
            entry = self._read().get(token_id)
        if not isinstance(entry, dict) or float(entry.get("expires", 0)) <= time.time():
            return None
        secret = entry.get("secret")
        return secret if isinstance(secret, str) else None

    def consume(self, token_id: str) -> bool:
        """Remove a token (after a successful join); True if it existed."""
        return bool(self._modify(lambda tokens: tokens.pop(token_id, None) is not None))

    def list_ids(self) -> list[str]:
        """Ids of the unexpired tokens."""
        now = time.time()
        with self._lock:
            return sorted(k for k, v in self._read().items()
                          if float(v.get("expires", 0)) > now)  # type: ignore[arg-type]
