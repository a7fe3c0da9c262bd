"""Joining a node to a cluster: the master side (:func:`join_node`) and the
checks and writes of the node side (:func:`check_join`, :func:`apply_join`).

Ganeti adds nodes over SSH (``gnt-node add`` copies ``server.pem`` etc.).
Corral uses a one-time join token instead:

1. an admin creates a token on the master (:class:`corral.crypto.JoinTokenStore`)
   and starts the new node's noded with ``--join-token <id>.<secret>``; the
   unjoined noded serves HTTPS with a self-signed certificate;
2. the master connects (no verification), takes the fingerprint ``fp`` of the
   certificate of that very TLS session, and asks ``GET /join_info``; the node
   answers its token id and ``proof = HMAC(secret, fp)``. The master checks
   the proof before anything secret is sent: only a holder of the secret,
   owning the certificate's key, can produce it;
3. on the same session the master sends ``POST /join`` with
   ``hmac = HMAC(secret, fp, node_name, cluster_name)``, the CA certificate,
   the node's freshly issued server and client certificates, ssconf values
   and the allowed file storage paths; the node checks the HMAC against its
   own certificate (a relayed request from a man in the middle carries the
   wrong ``fp``), installs everything, forgets the token and restarts in
   joined mode;
4. the master consumes the token and waits until the node answers
   ``version`` over mutual TLS.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, ConfigDict, Field

from corral import constants as C
from corral import crypto, errors
from corral.backend import files
from corral.netutils import check_normalized_hostname
from corral.noded import state as noded_state
from corral.paths import Paths
from corral.rpc.client import NodeClient

log = logging.getLogger(__name__)

_UUID_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
MAX_JOIN_BODY = 1024 * 1024


# -- the wire format --------------------------------------------------------------------

class JoinRequest(BaseModel):
    """Body of ``POST /join`` (certificate fields are PEM: cert, or cert + key)."""

    model_config = ConfigDict(extra="forbid")

    token_id: str = Field(max_length=64)
    hmac: str = Field(max_length=128)
    cluster_name: str = Field(max_length=253)
    node_name: str = Field(max_length=253)
    node_uuid: str = Field(max_length=64)
    ca_cert_pem: str = Field(max_length=16384)
    server_pem: str = Field(max_length=16384)
    client_pem: str = Field(max_length=16384)
    ssconf: dict[str, str] = Field(default_factory=dict)

    def __repr__(self) -> str:  # never show keys or the HMAC
        return f"JoinRequest(node_name={self.node_name!r}, cluster_name={self.cluster_name!r})"

    __str__ = __repr__


class JoinRefused(Exception):
    """Wrong or missing token or proof (HTTP 403). The message says nothing secret."""


class JoinInvalid(Exception):
    """The join request is malformed (HTTP 400)."""


def join_info(token: str | None, server_cert_fingerprint: str) -> dict[str, Any]:
    """Node side answer of ``GET /join_info``."""
    if token is None:
        return {"token_id": None, "protocol_version": C.PROTOCOL_VERSION, "proof": None}
    token_id, secret = crypto.parse_join_token(token)
    return {"token_id": token_id, "protocol_version": C.PROTOCOL_VERSION,
            "proof": crypto.join_node_proof(secret, server_cert_fingerprint)}


# -- node side --------------------------------------------------------------------------

def check_join(req: JoinRequest, token: str | None, server_cert_fingerprint: str) -> None:
    """Check token id and HMAC (constant time). Raises :class:`JoinRefused`."""
    if token is None:
        raise JoinRefused("This node accepts no join: it was not started with a join token")
    token_id, secret = crypto.parse_join_token(token)
    expected = crypto.join_hmac(secret, server_cert_fingerprint, req.node_name,
                                req.cluster_name)
    id_ok = crypto.hmac_equal(req.token_id, token_id)
    mac_ok = crypto.hmac_equal(req.hmac.lower(), expected)
    if not (id_ok and mac_ok):
        raise JoinRefused("Join refused: wrong join token or proof")


def _check_cert_and_key(label: str, pem: str, ca_cert_pem: str) -> None:
    cert_pem, key_pem = crypto.split_pem(pem)
    if key_pem is None:
        raise JoinInvalid(f"{label} holds no private key")
    if not crypto.verify_issued_by(cert_pem, ca_cert_pem):
        raise JoinInvalid(f"{label} is not signed by the cluster CA")
    cert = crypto.load_certificate(cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
    except (ValueError, TypeError) as err:
        raise JoinInvalid(f"{label}: invalid private key ({err})") from None
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*fmt) != cert.public_key().public_bytes(*fmt):
        raise JoinInvalid(f"{label}: private key does not match the certificate")


def validate_join(req: JoinRequest) -> None:
    """Check names, certificates (signed by the CA, keys matching), ssconf
    keys. Raises :class:`JoinInvalid`."""
    for label, value in (("cluster name", req.cluster_name), ("node name", req.node_name)):
        try:
            check_normalized_hostname(value, label)
        except errors.OpPrereqError as err:
            raise JoinInvalid(str(err)) from None
    if not _UUID_RE.match(req.node_uuid):
        raise JoinInvalid(f"Invalid node UUID {req.node_uuid!r}")
    try:
        ca = crypto.load_certificate(req.ca_cert_pem)
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not bc.ca:
            raise JoinInvalid("ca_cert_pem is not a CA certificate")
        _check_cert_and_key("server_pem", req.server_pem, req.ca_cert_pem)
        _check_cert_and_key("client_pem", req.client_pem, req.ca_cert_pem)
    except x509.ExtensionNotFound:
        raise JoinInvalid("ca_cert_pem is not a CA certificate") from None
    except errors.CorralError as err:
        raise JoinInvalid(str(err)) from None
    for key in req.ssconf:
        if not re.match(r"^[a-z_]+$", key):
            raise JoinInvalid(f"Invalid ssconf key {key!r}")


def apply_join(paths: Paths, req: JoinRequest) -> None:
    """Install what the master sent. noded's server certificate is written
    last: only then does the node count as joined. Raises ``OSError`` or
    :class:`errors.RPCFail` when a file cannot be written."""
    paths.ensure_dirs()
    files.write_ssconf_files(paths, req.ssconf)
    noded_state.record_joined(paths, req.cluster_name, req.node_name, req.node_uuid)
    crypto.install_node_certs(paths, req.ca_cert_pem,
                              crypto.NodeCerts(req.server_pem, req.client_pem))


# -- master side --------------------------------------------------------------------------

def _fail(msg: str, ecode: str = errors.ECODE_ENVIRON) -> errors.OpPrereqError:
    return errors.OpPrereqError(msg, ecode)


def _read_json(resp: http.client.HTTPResponse) -> Any:
    body = resp.read(MAX_JOIN_BODY)
    try:
        return json.loads(body)
    except ValueError:
        return None


def _detail(data: Any, status: int) -> str:
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        return data["detail"]
    return f"HTTP {status}"


def _already_member(master_paths: Paths, host: str, port: int, node_name: str) -> bool:
    with NodeClient(host, port, master_paths, name=node_name) as client:
        return not client.call("version", timeout=5).failed


def join_node(master_paths: Paths, host: str, port: int, token_store: crypto.JoinTokenStore,
              node_name: str, node_uuid: str, cluster_name: str, ca_cert_pem: str,
              ca_key_pem: str, ssconf: dict[str, str], timeout: float = 30) -> None:
    """Make the unjoined noded at ``host:port`` a member of the cluster.

    Issues the node's certificates with the CA, sends them with ``ssconf``
    (the node's allowed file storage paths stay its own), consumes the token and waits
    (``timeout`` s in all) until the node answers ``version`` over mutual
    TLS with this master's client certificate. Raises
    :class:`errors.OpPrereqError` (``ECODE_ENVIRON``) when the node is
    unreachable, has no or a different token, refuses, or does not come back.
    """
    deadline = time.monotonic() + timeout
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    ctx = crypto.client_ssl_context(None)  # only to read the certificate; it is checked below
    conn = http.client.HTTPSConnection(host, port, timeout=max(1.0, min(10.0, timeout)),
                                       context=ctx)
    try:
        try:
            conn.connect()
            der = conn.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
            fp = crypto.fingerprint(der)
            conn.request("GET", "/join_info")
            resp = conn.getresponse()
            info = _read_json(resp)
        except (OSError, http.client.HTTPException) as err:
            if _already_member(master_paths, host, port, node_name):
                raise _fail(f"Node {node_name} at {addr} is already a member of this cluster",
                            errors.ECODE_EXISTS) from None
            raise _fail(f"Cannot reach the node daemon of {node_name} at {addr}: {err} "
                        f"(is corral-noded running there, not yet joined?)") from None
        if resp.status != 200 or not isinstance(info, dict):
            raise _fail(f"Node {node_name} at {addr} did not answer join_info: "
                        f"{_detail(info, resp.status)}")
        if info.get("protocol_version") != C.PROTOCOL_VERSION:
            raise _fail(f"Node {node_name} speaks protocol {info.get('protocol_version')}, "
                        f"this master {C.PROTOCOL_VERSION}")
        token_id = info.get("token_id")
        if not token_id:
            raise _fail(f"Node {node_name} at {addr} was started without a join token "
                        f"(restart corral-noded with --join-token)")
        secret = token_store.get_secret(str(token_id))
        if secret is None:
            raise _fail(f"Join token {token_id} of node {node_name} is unknown, expired or "
                        f"already used on this master")
        if not crypto.hmac_equal(str(info.get("proof") or ""),
                                 crypto.join_node_proof(secret, fp)):
            raise _fail(f"Node {node_name} at {addr} cannot prove it holds join token "
                        f"{token_id} (wrong token, or someone in the middle)")
        certs = crypto.issue_node_certs(ca_cert_pem, ca_key_pem, node_name)
        body = JoinRequest(
            token_id=str(token_id), hmac=crypto.join_hmac(secret, fp, node_name, cluster_name),
            cluster_name=cluster_name, node_name=node_name, node_uuid=node_uuid,
            ca_cert_pem=crypto.split_pem(ca_cert_pem)[0], server_pem=certs.server_pem,
            client_pem=certs.client_pem, ssconf=dict(ssconf))
        try:
            conn.request("POST", "/join", body=body.model_dump_json().encode("utf-8"),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = _read_json(resp)
        except (OSError, http.client.HTTPException) as err:
            raise _fail(f"Join of node {node_name} at {addr} failed: {err}") from None
        if resp.status != 200:
            raise _fail(f"Node {node_name} at {addr} refused to join: "
                        f"{_detail(answer, resp.status)}")
    finally:
        conn.close()
    token_store.consume(str(token_id))
    log.info("node %s (%s) accepted the join; waiting for it over mutual TLS", node_name, addr)

    last = "no answer"
    with NodeClient(host, port, master_paths, name=node_name) as client:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            res = client.call("version", timeout=max(1.0, min(5.0, remaining)))
            if not res.failed:
                if res.payload != C.PROTOCOL_VERSION:
                    raise _fail(f"Node {node_name} answers protocol version {res.payload}, "
                                f"expected {C.PROTOCOL_VERSION}")
                return
            last = res.fail_msg or last
            client.close()  # new connection (and TLS session) on the next try
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    raise _fail(f"Node {node_name} joined but does not answer over mutual TLS within "
                f"{timeout:g} s: {last}")

