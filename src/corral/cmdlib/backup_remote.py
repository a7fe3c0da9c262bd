"""Inter-cluster (remote) import/export: the protocol and one-sided transfers.

Mirrors the "RIE" parts of ``ganeti.masterd.instance``
(``ComputeRemoteExportHandshake``, ``CheckRemoteExportHandshake``,
``ComputeRemoteImportDiskInfo``, ``CheckRemoteExportDiskInfo``,
``_GetInstDiskMagic``) and of ``ganeti.utils.x509``
(``SignX509Certificate``, ``LoadSignedX509Certificate``), with the same
texts, salts and SHA1 HMACs, so a Corral cluster and a Ganeti cluster that
share a cluster domain secret could exchange these values:

* every HMAC is ``hmac_sha1(key=cluster domain secret, salt + text)`` in hex;
* handshake ``[0, hmac("0:Hi, I'm Ganeti"), salt]``;
* key name ``[name, hmac(name), salt]``;
* per-disk destination ``[host, port, magic, hmac("<idx>:<host>:<port>:<magic>"), salt]``;
* a signed certificate is ``"X-Ganeti-Signature: <salt>/<hmac(cert_pem)>\\n\\n<cert_pem>"``.

The cluster domain secret is the first line of ``paths.cluster_domain_secret``
on the master (made by ``cluster init``). Two clusters can only move
instances between them when they share it: :func:`write_cluster_domain_secret`
(``corral backup set-domain-secret``) installs a given secret on a master.

:class:`SideTransfers` runs the transfers of which only one side is in
this cluster: the imports of a remote import (destination) or the exports
of a remote export (source), started, polled, aborted and cleaned up like
:func:`corral.impexp.master.transfer_disks` does for both sides.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from corral import crypto, errors
from corral.cmdlib.leftovers import KIND_TRANSFER, remove_or_record
from corral.impexp.master import format_progress
from corral.objects import Node
from corral.paths import Paths

if TYPE_CHECKING:
    from corral.cmdlib.base import LogicalUnit

RIE_VERSION = 0
RIE_HANDSHAKE = "Hi, I'm Ganeti"
RIE_CERT_VALIDITY = 24 * 60 * 60          # seconds
RIE_CONNECT_TIMEOUT = 180                 # seconds an importer waits for the source
X509_SIGNATURE_HEADER = "X-Ganeti-Signature"
_SIGNATURE_RE = re.compile(rf"^{re.escape(X509_SIGNATURE_HEADER)}:\s*(?P<salt>[0-9a-f]+)/"
                           r"(?P<sign>[0-9a-f]+)$", re.I)
_SALT_RE = re.compile(r"^[a-zA-Z0-9]+$")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$")
MIN_DOMAIN_SECRET_LEN = 16

FeedbackFn = Callable[[str], None]


# -- cluster domain secret ---------------------------------------------------------------

def read_cluster_domain_secret(paths: Paths) -> str:
    """The cluster domain secret (first line of the master's secret file).

    Raises :class:`errors.OpPrereqError` ``ECODE_ENVIRON`` when the file is
    missing or empty. Mirrors ``GetClusterDomainSecret``.
    """
    try:
        lines = paths.cluster_domain_secret.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise errors.OpPrereqError(f"Cannot read the cluster domain secret: "
                                   f"{err.strerror or err}", errors.ECODE_ENVIRON) from None
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise errors.OpPrereqError("The cluster domain secret is empty",
                                   errors.ECODE_ENVIRON)
    return secret


def write_cluster_domain_secret(paths: Paths, secret: str | None = None) -> str:
    """Install ``secret`` (or a new random one) as this master's domain secret.

    Clusters that should exchange instances (remote import/export) must
    share it; like Ganeti's ``gnt-cluster renew-crypto
    --cluster-domain-secret=FILE``. Returns the secret. Raises OpPrereqError
    ``ECODE_INVAL`` for a secret shorter than 16 characters or with spaces.
    """
    if secret is None:
        secret = secrets.token_hex(32)
    secret = secret.strip().splitlines()[0].strip() if secret.strip() else ""
    if len(secret) < MIN_DOMAIN_SECRET_LEN or any(c.isspace() for c in secret):
        raise errors.OpPrereqError("A cluster domain secret must have at least "
                                   f"{MIN_DOMAIN_SECRET_LEN} characters and no spaces",
                                   errors.ECODE_INVAL)
    crypto.write_pem(paths.cluster_domain_secret, secret + "\n", mode=0o400)
    return secret


# -- HMACs -------------------------------------------------------------------------------

def generate_secret(numbytes: int = 20) -> str:
    """Random hex text of ``2 * numbytes`` characters (``utils.GenerateSecret``)."""
    return secrets.token_hex(numbytes)


def sha1_hmac(key: str, text: str, salt: str | None = None) -> str:
    """Hex HMAC-SHA1 of ``salt + text`` keyed with ``key`` (``utils.Sha1Hmac``)."""
    data = (salt or "") + text
    return hmac.new(key.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).hexdigest()


def verify_sha1_hmac(key: str, text: str, digest: Any, salt: Any = None) -> bool:
    """Constant-time check of a :func:`sha1_hmac` digest (``utils.VerifySha1Hmac``)."""
    if not isinstance(digest, str) or (salt is not None and not isinstance(salt, str)):
        return False
    return hmac.compare_digest(digest.lower(), sha1_hmac(key, text, salt))


def sign_x509_certificate(cert_pem: str, key: str, salt: str) -> str:
    """``cert_pem`` with an ``X-Ganeti-Signature`` header (HMAC of the PEM text)."""
    if not _SALT_RE.match(salt):
        raise errors.ProgrammerError(f"Invalid salt {salt!r}")
    pem = _canonical_pem(cert_pem)
    return f"{X509_SIGNATURE_HEADER}: {salt}/{sha1_hmac(key, pem, salt)}\n\n{pem}"


def _canonical_pem(cert_pem: str) -> str:
    from cryptography.hazmat.primitives import serialization

    cert = crypto.load_certificate(cert_pem)
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_signed_x509_certificate(signed_pem: Any, key: str, what: str) -> str:
    """Check a certificate signed with :func:`sign_x509_certificate` and its
    validity period; returns the certificate's PEM.

    Raises :class:`errors.OpPrereqError` ``ECODE_INVAL`` (message names
    ``what``) for a missing or wrong signature, unparsable or expired
    certificates. Mirrors ``LoadSignedX509Certificate`` +
    ``VerifyX509Certificate``.
    """
    if not isinstance(signed_pem, str) or not signed_pem.strip():
        raise errors.OpPrereqError(f"Missing {what}", errors.ECODE_INVAL)
    salt = sign = None
    for line in signed_pem.splitlines():
        if line.startswith("---"):
            break
        m = _SIGNATURE_RE.match(line.strip())
        if m:
            salt, sign = m.group("salt"), m.group("sign")
            break
    if salt is None or sign is None:
        raise errors.OpPrereqError(f"Unable to load {what}: the X509 certificate signature "
                                   "is missing", errors.ECODE_INVAL)
    try:
        pem = _canonical_pem(signed_pem)
        cert = crypto.load_certificate(pem)
    except errors.OpPrereqError as err:
        raise errors.OpPrereqError(f"Unable to load {what} ({err})", errors.ECODE_INVAL) \
            from None
    if not verify_sha1_hmac(key, pem, sign, salt):
        raise errors.OpPrereqError(f"Unable to load {what}: the X509 certificate signature "
                                   "is invalid (do the clusters share the cluster domain "
                                   "secret?)", errors.ECODE_INVAL)
    now = datetime.datetime.now(datetime.timezone.utc)
    if cert.not_valid_before_utc > now + datetime.timedelta(minutes=5):
        raise errors.OpPrereqError(f"Invalid {what} (the certificate is not yet valid)",
                                   errors.ECODE_INVAL)
    if cert.not_valid_after_utc < now:
        raise errors.OpPrereqError(f"Invalid {what} (the certificate expired)",
                                   errors.ECODE_INVAL)
    return pem


# -- handshake, key name, disk information -----------------------------------------------------

def _handshake_message(version: Any) -> str:
    return f"{version}:{RIE_HANDSHAKE}"


def compute_remote_export_handshake(cds: str) -> list[Any]:
    """``[RIE_VERSION, hmac, salt]`` for OP_BACKUP_PREPARE."""
    salt = generate_secret(8)
    return [RIE_VERSION, sha1_hmac(cds, _handshake_message(RIE_VERSION), salt), salt]


def check_remote_export_handshake(cds: str, handshake: Any) -> str | None:
    """None if ``handshake`` is valid, else why not."""
    try:
        version, digest, salt = handshake
    except (TypeError, ValueError) as err:
        return f"Invalid data: {err}"
    if not verify_sha1_hmac(cds, _handshake_message(version), digest, salt):
        return "Hash didn't match, clusters don't share the same domain secret"
    if version != RIE_VERSION:
        return (f"Clusters don't have the same remote import/export protocol "
                f"(local={RIE_VERSION}, remote={version})")
    return None


def compute_x509_key_name(cds: str, name: str) -> list[str]:
    salt = generate_secret(8)
    return [name, sha1_hmac(cds, name, salt), salt]


def check_x509_key_name(cds: str, key_name: Any) -> str:
    """The key name of a signed ``[name, hmac, salt]``; OpPrereqError ECODE_INVAL."""
    try:
        name, digest, salt = key_name
    except (TypeError, ValueError) as err:
        raise errors.OpPrereqError(f"Invalid data for X509 key name: {err}",
                                   errors.ECODE_INVAL) from None
    if not isinstance(name, str) or not verify_sha1_hmac(cds, name, digest, salt):
        raise errors.OpPrereqError("HMAC for X509 key name is wrong", errors.ECODE_INVAL)
    return name


def _disk_info_message(idx: int, host: str, port: Any, magic: str) -> str:
    return f"{idx}:{host}:{port}:{magic}"


def compute_remote_import_disk_info(cds: str, salt: str, idx: int, host: str, port: int,
                                    magic: str) -> list[Any]:
    """``[host, port, magic, hmac, salt]`` for disk ``idx`` of a remote import."""
    return [host, port, magic, sha1_hmac(cds, _disk_info_message(idx, host, port, magic), salt),
            salt]


def check_remote_export_disk_info(cds: str, idx: int, disk_info: Any) -> tuple[str, int, str]:
    """Verify one ``[host, port, magic, hmac, salt]``; returns ``(host, port, magic)``.

    Raises :class:`errors.OpPrereqError` ``ECODE_INVAL``.
    """
    try:
        host, port, magic, digest, salt = disk_info
    except (TypeError, ValueError) as err:
        raise errors.OpPrereqError(f"Target info for disk {idx}: Invalid data: {err}",
                                   errors.ECODE_INVAL) from None
    if not (host and port and magic):
        raise errors.OpPrereqError(f"Target info for disk {idx}: Missing destination host, "
                                   "port or magic", errors.ECODE_INVAL)
    if not verify_sha1_hmac(cds, _disk_info_message(idx, host, port, magic), digest, salt):
        raise errors.OpPrereqError(f"Target info for disk {idx}: HMAC is wrong",
                                   errors.ECODE_INVAL)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise errors.OpPrereqError(f"Target info for disk {idx}: invalid port {port!r}",
                                   errors.ECODE_INVAL)
    if not isinstance(host, str) or not (_is_ip(host) or _HOST_RE.match(host)):
        raise errors.OpPrereqError(f"Target info for disk {idx}: invalid host {host!r}",
                                   errors.ECODE_INVAL)
    if not isinstance(magic, str) or not re.match(r"^[-_.a-zA-Z0-9]{5,100}$", magic):
        raise errors.OpPrereqError(f"Target info for disk {idx}: invalid magic",
                                   errors.ECODE_INVAL)
    return host, port, magic


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def disk_magic(base: str, instance_name: str, idx: int) -> str:
    """The magic of disk ``idx`` (``_GetInstDiskMagic``)."""
    h = hashlib.sha1()
    for part in (str(RIE_VERSION), base, instance_name, str(idx)):
        h.update(part.encode("utf-8"))
    return h.hexdigest()


# -- one-sided transfers -------------------------------------------------------------------

class TransferFailed(errors.OpExecError):
    """A transfer could not be started or did not listen in time."""


@dataclass
class _Side:
    idx: int
    label: str
    name: str | None = None
    port: int | None = None
    connected: bool = False
    done: bool = False
    ok: bool = False
    last_report: float = 0.0


class SideTransfers:
    """The transfers of one node whose peers are in another cluster.

    ``start_import``/``start_export`` start one transfer per disk (RPC
    ``import_start``/``export_start``); :meth:`wait_listening` returns the
    importers' ports; :meth:`wait` polls ``impexp_status`` until every
    transfer ended and returns one bool per disk. :meth:`finish` aborts what
    still runs and cleans up every transfer; call it in ``finally``.
    Progress (MiB, MiB/s, ETA) goes to ``feedback_fn``; job cancels are
    honoured (:class:`errors.JobCanceled` after aborting).
    """

    def __init__(self, lu: "LogicalUnit", node: Node, feedback_fn: FeedbackFn,
                 poll_interval: float = 1.0, progress_interval: float = 5.0,
                 status_failures: int = 30) -> None:
        self.lu = lu
        self.node = node
        self.feedback_fn = feedback_fn
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self.status_failures = status_failures
        self.sides: list[_Side] = []

    def _start(self, proc: str, idx: int, args: list[Any]) -> None:
        side = _Side(idx, f"disk/{idx}")
        self.sides.append(side)
        res = self.lu.rpc.call_one(proc, self.node.uuid, args)
        if res.fail_msg:
            side.done = True
            raise TransferFailed(f"{side.label}: could not start the transfer on node "
                                 f"{self.node.name}: {res.fail_msg}")
        side.name = res.payload

    def start_import(self, idx: int, opts: dict[str, Any], instance: dict[str, Any],
                     dest_io: list[Any]) -> None:
        self._start("import_start", idx, [opts, instance, f"disk{idx}", dest_io])

    def start_export(self, idx: int, opts: dict[str, Any], host: str, port: int,
                     instance: dict[str, Any], source_io: list[Any]) -> None:
        self.feedback_fn(f"disk/{idx}: sending to {host}:{port} (compression "
                         f"{opts.get('compress')})")
        self._start("export_start", idx, [opts, host, port, instance, f"disk{idx}", source_io])

    def _check_canceled(self) -> None:
        check = getattr(getattr(self.lu, "op_ctx", None), "check_canceled", None)
        if check is not None:
            check()

    def _poll(self, failures: list[int]) -> list[tuple[_Side, dict[str, Any]]]:
        running = [s for s in self.sides if not s.done and s.name]
        if not running:
            return []
        res = self.lu.rpc.call_one("impexp_status", self.node.uuid,
                                   [[s.name for s in running]])
        if res.fail_msg:
            failures[0] += 1
            if failures[0] >= self.status_failures:
                raise TransferFailed(f"Cannot get the transfer status from node "
                                     f"{self.node.name}: {res.fail_msg}")
            return []
        failures[0] = 0
        payload = res.payload if isinstance(res.payload, list) else []
        out = []
        for side, status in zip(running, payload + [None] * len(running)):
            if status is None:
                side.done = True
                self.lu.log_warning(f"{side.label}: the transfer vanished from node "
                                    f"{self.node.name}")
                continue
            out.append((side, status))
        return out

    def _finished(self, side: _Side, status: dict[str, Any]) -> None:
        side.done = True
        side.ok = status.get("exit_status") == 0
        if side.ok:
            mib = (status.get("progress_bytes") or 0) / (1024 * 1024)
            self.feedback_fn(f"{side.label}: transfer complete ({mib:.0f} MiB)")
        else:
            self.lu.log_warning(f"{side.label}: the transfer on node {self.node.name} "
                                f"failed: {status.get('error_message') or 'unknown error'}")

    def wait_listening(self, timeout: float) -> dict[int, int]:
        """Ports of every importer (idx -> port); TransferFailed if one ended or
        did not listen within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        failures = [0]
        while True:
            for side, status in self._poll(failures):
                if status.get("done"):
                    self._finished(side, status)
                elif status.get("listen_port") and side.port is None:
                    side.port = int(status["listen_port"])
                    self.feedback_fn(f"{side.label} is now listening on port {side.port}")
            if any(s.done for s in self.sides):
                raise TransferFailed("An import ended before the source connected")
            if all(s.port is not None for s in self.sides):
                return {s.idx: s.port for s in self.sides if s.port is not None}
            if time.monotonic() > deadline:
                raise TransferFailed(f"The imports on node {self.node.name} did not start "
                                     f"listening within {timeout:.0f} s")
            self._check_canceled()
            time.sleep(min(0.2, self.poll_interval))

    def wait(self, connect_timeout: float) -> list[bool]:
        """Poll until every transfer ended; one that is not connected after
        ``connect_timeout`` seconds is aborted. Returns success per disk."""
        started = time.monotonic()
        failures = [0]
        while not all(s.done for s in self.sides):
            self._check_canceled()
            time.sleep(self.poll_interval)
            now = time.monotonic()
            for side, status in self._poll(failures):
                if status.get("done"):
                    self._finished(side, status)
                    continue
                if status.get("connected") and not side.connected:
                    side.connected = True
                    side.last_report = now
                    self.feedback_fn(f"{side.label}: connected, data is flowing")
                elif not side.connected and now - started > connect_timeout:
                    self.lu.log_warning(f"{side.label}: no connection within "
                                        f"{connect_timeout:.0f} s")
                    self._abort(side)
                    side.done = True
                elif side.connected and now - side.last_report >= self.progress_interval:
                    side.last_report = now
                    self.feedback_fn(format_progress(side.label, status))
        return [s.ok for s in sorted(self.sides, key=lambda s: s.idx)]

    def _abort(self, side: _Side) -> None:
        if side.name is None:
            return
        res = self.lu.rpc.call_one("impexp_abort", self.node.uuid, [side.name])
        if res.fail_msg:
            self.lu.log_warning(f"{side.label}: could not abort {side.name}: {res.fail_msg}")

    def finish(self) -> None:
        """Abort running transfers and clean up all of them (never raises)."""
        for side in self.sides:
            if side.name is None:
                continue
            if not side.done:
                self._abort(side)
            remove_or_record(self.lu, self.node.uuid, KIND_TRANSFER, side.name)
            side.name = None


__all__ = ["RIE_CERT_VALIDITY", "RIE_CONNECT_TIMEOUT", "RIE_VERSION", "SideTransfers",
           "TransferFailed", "check_remote_export_disk_info", "check_remote_export_handshake",
           "check_x509_key_name", "compute_remote_export_handshake",
           "compute_remote_import_disk_info", "compute_x509_key_name", "disk_magic",
           "generate_secret", "load_signed_x509_certificate", "read_cluster_domain_secret",
           "sha1_hmac", "sign_x509_certificate", "verify_sha1_hmac",
           "write_cluster_domain_secret"]
