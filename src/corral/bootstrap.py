"""Creating and destroying a cluster on its first (master) node.

Mirrors ``ganeti.bootstrap.InitCluster`` / ``FinalizeClusterDestroy``:
check every parameter, create the state directories, the cluster CA and the
master's certificates, the RAPI certificate, the cluster domain secret, the
allowed file storage paths, the ssconf files and the configuration; then
start noded and masterd and run ``OP_CLUSTER_POST_INIT`` (for the
cluster-init hooks). A failed init stops what it started and removes what it
created, leaving the state root as it found it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from corral import constants as C
from corral import crypto, daemons, errors
from corral import ipolicy as ip
from corral.objects import Cluster, Node, NodeGroup, new_uuid
from corral.paths import Paths, check_storage_dir

log = logging.getLogger(__name__)

DEFAULT_GROUP_NAME = "default"
POST_INIT_TIMEOUT = 300.0           # seconds
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$",
    re.IGNORECASE)
_MAC_PREFIX_RE = re.compile(r"^[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$")
_NETDEV_RE = re.compile(r"^[A-Za-z0-9_.:-]{0,15}$")
_MAX_SOCKET_PATH = 107              # bytes in sockaddr_un.sun_path, minus the NUL

FeedbackFn = Callable[[Any], None]


def _inval(message: str) -> errors.OpPrereqError:
    return errors.OpPrereqError(message, errors.ECODE_INVAL)


# -- validation -----------------------------------------------------------------------

def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _HOSTNAME_RE.match(name):
        raise _inval(f"Invalid {what} '{name}' (expected a host name)")
    return name.lower()


def _check_port(port: Any, what: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise _inval(f"Invalid {what} {port!r}")
    return port


def _check_local_ip(ip: Any) -> str:
    try:
        addr = ipaddress.IPv4Address(ip)
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise _inval(f"Invalid primary IP address '{ip}' (IPv4 expected)") from None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((str(addr), 0))
    except OSError as exc:
        raise _inval(f"The primary IP {addr} is not an address of this machine "
                     f"({exc.strerror})") from None
    finally:
        sock.close()
    return str(addr)


def _check_port_free(ip: str, port: int, what: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((ip, port))
    except OSError as exc:
        raise errors.OpPrereqError(f"Cannot use {what} {ip}:{port}: {exc.strerror}",
                                   errors.ECODE_STATE) from None
    finally:
        sock.close()


def _check_choices(values: Iterable[str] | None, known: Iterable[str],
                   implemented: Iterable[str], what: str) -> list[str]:
    if isinstance(values, str) or values is None:
        raise _inval(f"Enabled {what}s must be a list")
    out = list(values)
    if not out:
        raise _inval(f"At least one {what} must be enabled")
    if len(set(out)) != len(out):
        raise _inval(f"Duplicate {what}s in {out}")
    for value in out:
        if value not in known:
            raise _inval(f"Unknown {what} '{value}'")
        if value not in implemented:
            raise _inval(f"The {what} '{value}' is not supported by Corral")
    return out


def _with_guest_kernel(paths: Paths, hvparams: dict[str, dict[str, Any]] | None,
                       enabled: list[str]) -> dict[str, dict[str, Any]] | None:
    """Default kvm ``kernel_path``/``initrd_path`` to the guest kernel prepared
    on this node (``corral node prepare-guest-kernel``), if there is one and
    the caller did not choose others."""
    from corral.guestkernel import guest_kernel_paths

    if C.HT_KVM not in enabled:
        return hvparams
    if not isinstance(hvparams, dict) and hvparams is not None:
        return hvparams         # _check_hvparams reports the error
    kvm = dict((hvparams or {}).get(C.HT_KVM, {}))
    guest = guest_kernel_paths(paths)
    if "kernel_path" in kvm or not (Path(guest.kernel_path).is_file()
                                    and Path(guest.initrd_path).is_file()):
        return hvparams
    kvm["kernel_path"] = str(guest.kernel_path)
    kvm.setdefault("initrd_path", str(guest.initrd_path))
    return {**(hvparams or {}), C.HT_KVM: kvm}


def _check_hvparams(hvparams: dict[str, Any] | None,
                    enabled: list[str]) -> dict[str, dict[str, Any]]:
    from corral.cmdlib.common import check_hvparams_syntax

    if hvparams is None:
        hvparams = {}
    if not isinstance(hvparams, dict):
        raise _inval("Hypervisor parameters must be a dict per hypervisor")
    out: dict[str, dict[str, Any]] = {}
    for hv, params in hvparams.items():
        if hv not in C.HYPER_TYPES:
            raise _inval(f"Unknown hypervisor '{hv}' in hypervisor parameters")
        if not isinstance(params, dict):
            raise _inval(f"Parameters of hypervisor '{hv}' must be a dict")
        if hv not in C.HTS_IMPLEMENTED:
            raise _inval(f"The hypervisor '{hv}' is not supported by Corral")
        out[hv] = dict(params)
    for hv in enabled:
        filled = dict(C.HVC_DEFAULTS.get(hv, {}))
        filled.update(out.get(hv, {}))
        check_hvparams_syntax(hv, filled)
    return out


def _check_params(params: dict[str, Any] | None, types: dict[str, str],
                  what: str) -> dict[str, Any]:
    from corral.cmdlib.common import validate_params

    if params is None:
        return {}
    if not isinstance(params, dict):
        raise _inval(f"{what.capitalize()} parameters must be a dict")
    return {k: v for k, v in validate_params(params, types, what).items() if v is not None}


def _check_ipolicy(custom: dict[str, Any] | None, templates: list[str]) -> dict[str, Any]:
    """Ganeti's defaults filled with ``custom``, its disk templates
    restricted to the enabled ones (as Ganeti's ``InitCluster``), validated."""
    custom = ip.check_ipolicy_update(custom or {})
    full = ip.fill_ipolicy(ip.default_ipolicy(templates), custom)
    full[ip.IPOLICY_DTS] = [dt for dt in full[ip.IPOLICY_DTS] if dt in templates]
    return ip.check_ipolicy(full, check_std=True)


def _check_storage_dir(path: Any, what: str) -> str:
    if not isinstance(path, str):
        raise _inval(f"Invalid {what} {path!r}")
    return check_storage_dir(path)


def _check_storage_dirs_allowed(paths: Paths, templates: list[str], file_dir: str,
                                shared_dir: str) -> None:
    """An existing allowed file storage paths file must hold the storage dirs
    of the enabled file templates. Raises OpPrereqError ``ECODE_INVAL``."""
    from corral.backend.node import file_storage_path_problems

    if not paths.file_storage_paths.exists():
        return
    wanted = [d for t, d in ((C.DT_FILE, file_dir), (C.DT_SHARED_FILE, shared_dir))
              if t in templates]
    problems = file_storage_path_problems(paths, wanted)
    if problems:
        raise _inval(f"{'; '.join(problems)} (edit {paths.file_storage_paths} first)")


# -- rollback of created files ----------------------------------------------------------

class _Snapshot:
    """What existed below some directories before init, to undo its changes."""

    def __init__(self, dirs: Iterable[Path]) -> None:
        self.dirs = sorted({Path(d) for d in dirs})
        self.existing: set[Path] = set()
        for top in self.dirs:
            probe = top
            while True:
                if probe.exists() or probe.is_symlink():
                    self.existing.add(probe)
                if probe.parent == probe:
                    break
                probe = probe.parent
            if top.is_dir() and not top.is_symlink():
                for dirpath, dirnames, filenames in os.walk(top):
                    base = Path(dirpath)
                    self.existing.update(base / n for n in dirnames + filenames)

    def restore(self) -> None:
        """Remove every file and directory below the snapshot's directories
        (and their parents) that did not exist when it was taken."""
        for top in self.dirs:
            outermost = top
            while outermost.parent != outermost and outermost.parent not in self.existing:
                outermost = outermost.parent
            if outermost not in self.existing:
                if outermost.is_symlink() or outermost.is_file():
                    outermost.unlink(missing_ok=True)
                elif outermost.exists():
                    shutil.rmtree(outermost, ignore_errors=True)
                continue
            if not top.is_dir() or top.is_symlink():
                continue
            for dirpath, dirnames, filenames in os.walk(top, topdown=False):
                base = Path(dirpath)
                for name in filenames:
                    if base / name not in self.existing:
                        (base / name).unlink(missing_ok=True)
                for name in dirnames:
                    path = base / name
                    if path in self.existing:
                        continue
                    if path.is_symlink():
                        path.unlink(missing_ok=True)
                    else:
                        shutil.rmtree(path, ignore_errors=True)


def _state_dirs(paths: Paths) -> list[Path]:
    return [paths.data_dir, paths.run_dir, paths.log_dir, paths.conf_dir,
            paths.root / "srv/corral"]


# -- init -------------------------------------------------------------------------------

def init_cluster(paths: Paths, cluster_name: str, primary_ip: str,
                 master_name: str | None = None,
                 noded_port: int = C.DEFAULT_NODED_PORT,
                 enabled_hypervisors: Iterable[str] = (C.HT_KVM,),
                 enabled_disk_templates: Iterable[str] = C.DEFAULT_ENABLED_DISK_TEMPLATES,
                 hvparams: dict[str, dict[str, Any]] | None = None,
                 beparams: dict[str, Any] | None = None,
                 nicparams: dict[str, Any] | None = None,
                 ndparams: dict[str, Any] | None = None,
                 file_storage_dir: str = C.DEFAULT_FILE_STORAGE_DIR,
                 shared_file_storage_dir: str = C.DEFAULT_SHARED_FILE_STORAGE_DIR,
                 mac_prefix: str = C.DEFAULT_MAC_PREFIX,
                 master_netdev: str = "",
                 candidate_pool_size: int = C.DEFAULT_CANDIDATE_POOL_SIZE,
                 rapi_port: int = C.DEFAULT_RAPI_PORT,
                 ipolicy: dict[str, Any] | None = None,
                 masterd_args: list[str] | None = None,
                 feedback_fn: FeedbackFn | None = None) -> None:
    """Create a new cluster whose master is this node (``gnt-cluster init``).

    ``master_name`` defaults to the local host name; ``primary_ip`` must be an
    address of this machine (loopback is fine); noded listens on
    ``primary_ip:noded_port``, RAPI on ``primary_ip:rapi_port``. Parameter
    dicts are the customised values (validated and type-converted);
    ``ipolicy`` the instance policy's keys to change from Ganeti's defaults
    (:mod:`corral.ipolicy`; the cluster stores the complete policy, its
    disk templates restricted to the enabled ones);
    storage directories are virtual paths. ``masterd_args`` are extra
    ``corral-masterd`` options; ``feedback_fn`` receives the post-init job's
    log entries ``(timestamp, log_type, message)``.

    Raises ``OpPrereqError`` ECODE_INVAL for bad parameters, ECODE_STATE if
    a cluster already exists here or a port is taken (nothing is created
    then); on any later failure the daemons are stopped, the created files
    removed and the error re-raised.
    """
    cluster_name = _check_name(cluster_name, "cluster name")
    master_name = _check_name(master_name or socket.gethostname(), "master node name")
    primary_ip = _check_local_ip(primary_ip)
    noded_port = _check_port(noded_port, "node daemon port")
    rapi_port = _check_port(rapi_port, "RAPI port")
    if noded_port == rapi_port:
        raise _inval("The node daemon and RAPI ports must differ")
    hypervisors = _check_choices(enabled_hypervisors, C.HYPER_TYPES, C.HTS_IMPLEMENTED,
                                 "hypervisor")
    templates = _check_choices(enabled_disk_templates, C.DISK_TEMPLATES, C.DTS_IMPLEMENTED,
                               "disk template")
    hvp = _check_hvparams(_with_guest_kernel(paths, hvparams, hypervisors), hypervisors)
    bep = _check_params(beparams, C.BES_PARAMETER_TYPES, "backend")
    nicp = _check_params(nicparams, C.NICS_PARAMETER_TYPES, "nic")
    if nicp.get(C.NIC_MODE, C.NIC_MODE_BRIDGED) not in C.NIC_VALID_MODES:
        raise _inval(f"Invalid NIC mode '{nicp[C.NIC_MODE]}'")
    ndp = _check_params(ndparams, C.NDS_PARAMETER_TYPES, "node")
    full_ipolicy = _check_ipolicy(ipolicy, templates)
    file_dir = _check_storage_dir(file_storage_dir, "file storage directory")
    shared_dir = _check_storage_dir(shared_file_storage_dir,
                                    "shared file storage directory")
    if not isinstance(mac_prefix, str) or not _MAC_PREFIX_RE.match(mac_prefix.lower()):
        raise _inval(f"Invalid MAC prefix '{mac_prefix}' (expected aa:bb:cc)")
    if not isinstance(master_netdev, str) or not _NETDEV_RE.match(master_netdev):
        raise _inval(f"Invalid master network device '{master_netdev}'")
    if isinstance(candidate_pool_size, bool) or not isinstance(candidate_pool_size, int) \
            or candidate_pool_size < 1:
        raise _inval(f"Invalid candidate pool size {candidate_pool_size!r} (>= 1)")
    if len(os.fsencode(paths.master_socket)) > _MAX_SOCKET_PATH:
        raise _inval(f"The state root {paths.root} is too long: the master socket path "
                     f"must stay below {_MAX_SOCKET_PATH + 1} bytes")
    if paths.config_db.exists():
        raise errors.OpPrereqError(f"Cluster is already initialised ({paths.config_db} "
                                   "exists)", errors.ECODE_STATE)
    _check_storage_dirs_allowed(paths, templates, file_dir, shared_dir)
    for name in daemons.DAEMONS:
        if daemons.daemon_running(paths, name):
            raise errors.OpPrereqError(f"{name} is already running for {paths.root}",
                                       errors.ECODE_STATE)
    _check_port_free(primary_ip, noded_port, "node daemon address")
    _check_port_free(primary_ip, rapi_port, "RAPI address")

    group = NodeGroup(name=DEFAULT_GROUP_NAME)
    node = Node(uuid=new_uuid(), name=master_name, primary_ip=primary_ip,
                secondary_ip=primary_ip, group=group.uuid, master_candidate=True,
                noded_port=noded_port)
    cluster = Cluster(
        cluster_name=cluster_name, master_node=node.uuid, master_ip=primary_ip,
        master_netdev=master_netdev, mac_prefix=mac_prefix.lower(),
        enabled_hypervisors=hypervisors, hvparams=hvp,
        beparams={"default": bep}, nicparams={"default": nicp}, ndparams=ndp,
        enabled_disk_templates=templates, file_storage_dir=file_dir,
        shared_file_storage_dir=shared_dir, candidate_pool_size=candidate_pool_size,
        rapi_port=rapi_port, ipolicy=full_ipolicy)

    storage_dirs = [paths.real(file_dir), paths.real(shared_dir)]
    snapshot = _Snapshot([*_state_dirs(paths), *storage_dirs])
    try:
        _write_files(paths, cluster, node, group, storage_dirs)
        daemons.start_noded(paths, primary_ip, noded_port)
        daemons.start_masterd(paths, masterd_args)
        _post_init(paths, feedback_fn)
    except BaseException as exc:
        log.debug("Cluster init failed (%s); cleaning up", exc, exc_info=True)
        _stop_all(paths)
        snapshot.restore()
        raise


def _write_files(paths: Paths, cluster: Cluster, node: Node, group: NodeGroup,
                 storage_dirs: list[Path]) -> None:
    from corral.backend.files import ensure_file_storage_paths, write_ssconf_files
    from corral.cmdlib.common import build_ssconf
    from corral.config import ConfigStore
    from corral.noded.state import record_joined

    paths.ensure_dirs()
    crypto.init_cluster_certs(paths, cluster.cluster_name, node.name)
    crypto.write_pem(paths.rapi_cert, crypto.create_self_signed(cluster.cluster_name))
    crypto.write_pem(paths.cluster_domain_secret, secrets.token_hex(32) + "\n")
    for d in storage_dirs:
        d.mkdir(parents=True, exist_ok=True)
    # This node's own allowed list: made here by its administrator's init
    # when missing, left alone otherwise (checked before anything changed).
    ensure_file_storage_paths(paths, [cluster.file_storage_dir,
                                      cluster.shared_file_storage_dir])
    store = ConfigStore.create(paths.config_db, cluster, node, group)
    try:
        write_ssconf_files(paths, build_ssconf(store))
    finally:
        store.close()
    record_joined(paths, cluster.cluster_name, node.name, node.uuid)


def _post_init(paths: Paths, feedback_fn: FeedbackFn | None) -> None:
    from corral.masterd.client import MasterClient

    with MasterClient(paths) as client:
        job_id = client.submit_job([{"OP_ID": "OP_CLUSTER_POST_INIT"}])
        client.wait_job(job_id, feedback_fn, timeout=POST_INIT_TIMEOUT)


def _stop_all(paths: Paths) -> None:
    for name in (daemons.MASTERD, daemons.NODED):
        try:
            daemons.stop_daemon(paths, name)
        except errors.CorralError as err:
            log.error("Could not stop %s: %s", name, err)


# -- destroy ----------------------------------------------------------------------------

def destroy_cluster(paths: Paths) -> None:
    """Remove the cluster state of the master node (``gnt-cluster destroy``).

    Called after ``OP_CLUSTER_DESTROY`` succeeded: stops masterd and noded
    and removes the configuration, job queue, certificates, secrets, ssconf
    files, join tokens and noded state. Logs, storage directories and
    exports are kept. Idempotent.
    """
    from corral.backend.files import remove_ssconf_files

    _stop_all(paths)
    for name in (daemons.MASTERD, daemons.NODED):
        if daemons.daemon_running(paths, name):
            raise errors.CorralError(f"{name} of {paths.root} could not be stopped",
                                     errors.ECODE_ENVIRON)
    files = [paths.cluster_cert, paths.client_cert, paths.rapi_cert,
             crypto.ca_cert_path(paths), crypto.node_server_cert_path(paths),
             crypto.unjoined_cert_path(paths), paths.cluster_domain_secret,
             paths.join_tokens, paths.join_tokens.with_name(paths.join_tokens.name + ".lock"),
             paths.noded_state, paths.file_storage_paths, paths.master_socket]
    for db_path in (paths.config_db, paths.queue_db):
        files += [Path(f"{db_path}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")]
    for path in files:
        path.unlink(missing_ok=True)
    remove_ssconf_files(paths)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(paths.data_dir / "queue")


def get_join_token(paths: Paths, ttl: int = crypto.JOIN_TOKEN_TTL_S) -> str:
    """A new node join token, created through masterd (``gnt-cluster join-token``).

    Raises ``CorralError`` ECODE_ENVIRON when masterd is not reachable.
    """
    from corral.masterd.client import MasterClient

    with MasterClient(paths) as client:
        return client.create_join_token(ttl)
