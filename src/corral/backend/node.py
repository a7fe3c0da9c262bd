"""Node side: version, resources, verification and membership of this node.

Mirrors Ganeti's ``backend.GetNodeInfo``, ``VerifyNode``, ``BridgesExist``,
``ValidateHVParams``, ``LeaveCluster`` and ``netutils.IPAddress.Own``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from corral import constants as C
from corral import crypto, errors
from corral.backend import config_replica, files
from corral.hypervisor import get_hypervisor, get_hypervisor_class
from corral.paths import Paths, is_below, is_forbidden_file_storage_path, normalize_virtual

log = logging.getLogger(__name__)

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
NODELIST_TIMEOUT_S = 2.0
MAX_TEST_DELAY_S = 3600
_BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
# Directories never acceptable as file storage (Ganeti: _FORBIDDEN_FILE_STORAGE_PATHS).
FORBIDDEN_FILE_STORAGE_PATHS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64",
                                "/proc", "/sbin", "/sys", "/usr", "/var", "/var/lib/corral",
                                "/var/run", "/run", "/etc/corral")
FILE_STORAGE_TYPES = (C.DT_FILE, C.DT_SHARED_FILE)


def node_name(paths: Paths) -> str:
    """This node's name: from the join state, else the host name."""
    from corral.noded.state import load_state  # noded.state is a leaf module
    try:
        name = load_state(paths).node_name
    except errors.ConfigurationError:
        name = None
    return name or socket.gethostname()


def version(paths: Paths) -> int:
    """The RPC protocol version (``C.PROTOCOL_VERSION``)."""
    return C.PROTOCOL_VERSION


def _boot_id() -> str:
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as fh:
            return fh.read().strip()
    except OSError as err:
        raise errors.RPCFail(f"Cannot read boot id: {err}") from None


def statvfs_mib(real: Path) -> tuple[int, int]:
    """(size, free) in MiB of the file system holding ``real`` (or its nearest
    existing parent: the directory may not be created yet)."""
    probe = real
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return (st.f_blocks * st.f_frsize) // (1024 * 1024), \
        (st.f_bavail * st.f_frsize) // (1024 * 1024)


def _storage_info(paths: Paths, unit: Any) -> dict[str, Any]:
    if not (isinstance(unit, (list, tuple)) and len(unit) == 2):
        raise errors.RPCFail(f"Invalid storage unit {unit!r}: expected [type, name]")
    stype, name = unit
    if stype not in FILE_STORAGE_TYPES:
        raise errors.RPCFail(f"Storage type '{stype}' is not supported on this node")
    try:
        real = paths.confine(name, files.read_file_storage_paths(paths))
    except errors.OpPrereqError as err:
        raise errors.RPCFail(f"Storage unit {stype}:{name}: {err}") from None
    size, free = statvfs_mib(real)
    return {"type": stype, "name": name, "storage_size": size, "storage_free": free}


def node_info(paths: Paths, storage_units: list[Any], hv_specs: list[Any]) -> dict[str, Any]:
    """Resources of this node (Ganeti's ``GetNodeInfo``).

    ``storage_units``: ``[[type, virtual_path]]`` (file/sharedfile; the path
    must be inside the node's allowed file storage paths); ``hv_specs``:
    ``[[hv_name, hvparams]]``. Returns ``{boot_id, name, storage: [{type,
    name, storage_size, storage_free}] (MiB), hv: [hypervisor get_node_info
    dict, in hv_specs order]}``. Raises :class:`errors.RPCFail`.
    """
    storage = [_storage_info(paths, unit) for unit in storage_units or []]
    hv_info = []
    for spec in hv_specs or []:
        if not (isinstance(spec, (list, tuple)) and len(spec) == 2):
            raise errors.RPCFail(f"Invalid hypervisor spec {spec!r}: expected [name, params]")
        name, hvparams = spec
        try:
            info = get_hypervisor(name, paths).get_node_info(hvparams or {})
        except errors.CorralError as err:
            raise errors.RPCFail(f"Hypervisor {name}: {err}") from None
        hv_info.append(info)
    return {"boot_id": _boot_id(), "name": node_name(paths), "storage": storage,
            "hv": hv_info}


def _file_hash(paths: Paths, virtual: str) -> str | None:
    try:
        real = paths.real(virtual)
        with open(real, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except (OSError, errors.OpPrereqError):
        return None


def _tcp_check(target: Any) -> str | None:
    try:
        host, port = target
        with socket.create_connection((str(host), int(port)), timeout=NODELIST_TIMEOUT_S):
            return None
    except (TypeError, ValueError):
        return f"invalid address {target!r}"
    except OSError as err:
        return f"TCP connection to {target[0]}:{target[1]} failed: {err}"


def file_storage_path_problems(paths: Paths, wanted: Any) -> list[str]:
    """Problems of this node's allowed file storage paths: forbidden entries in
    its file, and directories of ``wanted`` (virtual) the file does not allow."""
    problems: list[str] = []
    allowed = files.read_file_storage_paths(paths)
    for entry in allowed:
        if entry in FORBIDDEN_FILE_STORAGE_PATHS:
            problems.append(f"Path '{entry}' in {paths.virtual(paths.file_storage_paths)} "
                            f"is not allowed as file storage")
    for want in wanted if isinstance(wanted, (list, tuple)) else []:
        try:
            norm = normalize_virtual(want)
        except errors.OpPrereqError as err:
            problems.append(str(err))
            continue
        if is_forbidden_file_storage_path(norm):
            problems.append(f"File storage directory '{norm}' is a system directory and "
                            f"never allowed as file storage")
        elif not any(is_below(norm, a) for a in allowed
                     if not is_forbidden_file_storage_path(a)):
            problems.append(f"File storage directory '{norm}' is not in the node's allowed "
                            f"file storage paths")
    return problems


def node_verify(paths: Paths, checkdict: dict[str, Any], cluster_name: str,
                all_hvparams: dict[str, Any]) -> dict[str, Any]:
    """Run the requested checks (Ganeti's ``VerifyNode``); ``{check: result}``.

    Checks: ``version`` -> ``[PROTOCOL_VERSION, RELEASE_VERSION]``;
    ``filelist`` (virtual paths) -> ``{path: sha256 hex or None}``;
    ``hypervisor`` (names) -> ``{name: error message or None}``;
    ``instancelist`` (hv names) -> running instance names;
    ``nodelist`` (``{name: [ip, port]}``) -> ``{name: error or None}`` (TCP
    connect, 2 s); ``file_storage_paths`` (directories the cluster uses) ->
    list of problems. Unknown keys are ignored.
    """
    if not isinstance(checkdict, dict):
        raise errors.RPCFail("checkdict must be a dict")
    hvparams_all = all_hvparams if isinstance(all_hvparams, dict) else {}
    result: dict[str, Any] = {}
    if "version" in checkdict:
        result["version"] = [C.PROTOCOL_VERSION, C.RELEASE_VERSION]
    if "filelist" in checkdict:
        result["filelist"] = {f: _file_hash(paths, f) for f in checkdict["filelist"] or []}
    if "hypervisor" in checkdict:
        hv_res: dict[str, str | None] = {}
        for name in checkdict["hypervisor"] or []:
            try:
                hv_res[name] = get_hypervisor(name, paths).verify(hvparams_all.get(name) or {})
            except (errors.CorralError, OSError, NotImplementedError) as err:
                hv_res[name] = f"Error while checking hypervisor {name}: {err}"
        result["hypervisor"] = hv_res
    if "instancelist" in checkdict:
        names: list[str] = []
        try:
            for hv_name in checkdict["instancelist"] or []:
                hv = get_hypervisor(hv_name, paths)
                names.extend(hv.list_instances(hvparams_all.get(hv_name) or {}))
        except errors.CorralError as err:
            raise errors.RPCFail(f"Cannot list instances: {err}") from None
        result["instancelist"] = names
    if "nodelist" in checkdict:
        targets = checkdict["nodelist"] or {}
        if not isinstance(targets, dict):
            raise errors.RPCFail("nodelist must be a dict {name: [ip, port]}")
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(targets)))) as pool:
            checks = dict(zip(targets, pool.map(_tcp_check, targets.values())))
        result["nodelist"] = checks
    if "file_storage_paths" in checkdict:
        result["file_storage_paths"] = file_storage_path_problems(
            paths, checkdict["file_storage_paths"])
    return result


def node_has_ip_address(paths: Paths, address: str) -> bool:
    """True when this machine owns ``address`` (it can bind to it)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise errors.RPCFail(f"Invalid IP address {address!r}") from None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((str(ip), 0))
        except OSError:
            return False
    return True


def test_delay(paths: Paths, duration: float) -> None:
    """Sleep ``duration`` seconds (Ganeti's ``TestDelay``)."""
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) \
            or not 0 <= duration <= MAX_TEST_DELAY_S:
        raise errors.RPCFail(f"Invalid delay {duration!r} (0 to {MAX_TEST_DELAY_S} s)")
    time.sleep(duration)


def bridges_exist(paths: Paths, bridges_list: list[str]) -> None:
    """Check that every bridge exists; RPCFail names the missing ones."""
    missing = []
    for bridge in bridges_list or []:
        if not isinstance(bridge, str) or not _BRIDGE_RE.match(bridge) or bridge in (".", ".."):
            raise errors.RPCFail(f"Invalid bridge name {bridge!r}")
        if not os.path.isdir(f"/sys/class/net/{bridge}/bridge"):
            missing.append(bridge)
    if missing:
        raise errors.RPCFail(f"Missing bridges {', '.join(missing)}")


def hypervisor_validate_params(paths: Paths, hvname: str, hvfull: dict[str, Any]) -> None:
    """Node-side checks of hypervisor parameters (Ganeti's ``ValidateHVParams``)."""
    try:
        get_hypervisor_class(hvname).validate_parameters(hvfull or {})
    except errors.CorralError as err:
        raise errors.RPCFail(f"Hypervisor parameter validation failed on node "
                             f"{node_name(paths)}: {err}") from None


def leave_cluster_files(paths: Paths) -> None:
    """Remove what ties this node to its cluster: certificates, cluster
    secrets, ssconf, config replica, noded state (not the instances' data)."""
    from corral.noded.state import clear_state
    crypto.remove_node_certs(paths)
    for path in (paths.rapi_cert, paths.rapi_users, paths.cluster_domain_secret):
        path.unlink(missing_ok=True)
    files.remove_ssconf_files(paths)
    config_replica.remove_replica(paths)
    clear_state(paths)


def node_leave_cluster(paths: Paths, modify_ssh_setup: bool) -> None:
    """Forget the cluster and make noded go back to unjoined mode (Ganeti's
    ``LeaveCluster``). ``modify_ssh_setup`` is ignored (Corral uses no SSH).

    Raises :class:`errors.QuitCorralException` after cleaning up: noded
    answers ``[true, message]`` and then switches mode.
    """
    leave_cluster_files(paths)
    log.info("node left the cluster; certificates and state removed")
    raise errors.QuitCorralException("Node left the cluster")
