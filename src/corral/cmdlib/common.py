"""Helpers shared by logical units of several areas.

Mirrors parts of ``ganeti.cmdlib.common``: parameter type checks, the
ssconf values and distribution of cluster files to nodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral import constants as C
from corral import errors
from corral.config import ConfigStore
from corral.hypervisor import get_hypervisor_class
from corral.values import parse_size

if TYPE_CHECKING:
    from corral.cmdlib.base import LogicalUnit

# The virtual path of each node's own allowed file storage directories.
FILE_STORAGE_PATHS_FILE = "/etc/corral/file-storage-paths"

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _convert(key: str, value: Any, kind: str, what: str) -> Any:
    if value is None:
        return None
    try:
        if kind == "size":
            return parse_size(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if kind == "string":
            if not isinstance(value, str):
                raise ValueError
            return value
    except (ValueError, TypeError):
        pass
    except errors.OpPrereqError:
        pass
    raise errors.OpPrereqError(f"Invalid value {value!r} for {what} parameter '{key}' "
                               f"(expected {kind})", errors.ECODE_INVAL)


def validate_params(params: dict[str, Any], types: dict[str, str], what: str) -> dict[str, Any]:
    """Check keys against ``types`` and convert values (``ganeti.utils.ForceDictType``).

    ``None`` values are kept (they mean "back to the default"). Raises
    OpPrereqError ECODE_INVAL for unknown keys or values of the wrong type.
    """
    unknown = set(params) - set(types)
    if unknown:
        raise errors.OpPrereqError(
            f"Unknown {what} parameter(s): {', '.join(sorted(unknown))}", errors.ECODE_INVAL)
    return {k: _convert(k, v, types[k], what) for k, v in params.items()}


def check_hvparams_syntax(hv_name: str, hvparams: dict[str, Any]) -> None:
    """Master-side syntax check of complete hvparams for ``hv_name``."""
    get_hypervisor_class(hv_name).check_parameter_syntax(hvparams)


def build_ssconf(cfg: ConfigStore) -> dict[str, str]:
    """The ssconf values every node keeps (``ssconf_<key>`` files)."""
    cluster = cfg.get_cluster()
    nodes = cfg.get_node_list()
    master = cfg.get_node(cluster.master_node)
    return {
        "cluster_name": cluster.cluster_name,
        "master_node": master.name if master else "",
        "master_ip": master.primary_ip if master else "",
        "node_list": "\n".join(n.name for n in nodes),
        "node_primary_ips": "\n".join(f"{n.name} {n.primary_ip}" for n in nodes),
        "master_candidates": "\n".join(n.name for n in nodes if n.master_candidate),
        "online_nodes": "\n".join(n.name for n in nodes if not n.offline),
        "file_storage_dir": cluster.file_storage_dir,
        "shared_file_storage_dir": cluster.shared_file_storage_dir,
        "enabled_hypervisors": "\n".join(cluster.enabled_hypervisors),
        "release_version": C.RELEASE_VERSION,
    }


def distribute_cluster_files(lu: "LogicalUnit", only_online: bool = True,
                             full_config: bool = False,
                             node_uuids: list[str] | None = None) -> None:
    """Push ssconf values to nodes (never the allowed file storage paths: those
    are node-local, see :func:`check_storage_dirs_accepted`).

    With ``full_config`` also push a full config replica to master
    candidates (other than the master). Failures are warnings: the node is
    then reported by ``gnt-cluster verify``.
    """
    cfg = lu.cfg
    nodes = [cfg.get_node(u) for u in node_uuids] if node_uuids else cfg.get_node_list()
    targets = [n.uuid for n in nodes if n is not None and not (only_online and n.offline)]
    if not targets:
        return
    for uuid, res in lu.rpc.call("write_ssconf_files", targets, [build_ssconf(cfg)]).items():
        if res.fail_msg:
            node = cfg.get_node(uuid)
            lu.log_warning(f"Could not update write_ssconf_files on node "
                           f"{node.name if node else uuid}: {res.fail_msg}")
    if full_config:
        master_uuid = cfg.get_cluster().master_node
        mcs = [n.uuid for n in nodes if n is not None and n.master_candidate
               and not n.offline and n.uuid != master_uuid]
        if mcs:
            snapshot = cfg.export_all().model_dump(mode="json")
            for uuid, res in lu.rpc.call("config_update", mcs, [snapshot]).items():
                if res.fail_msg:
                    lu.log_warning(f"Could not replicate the configuration to "
                                   f"{cfg.get_node(uuid).name}: {res.fail_msg}")


def file_storage_dirs_in_use(cluster: Any) -> list[str]:
    """The cluster's file storage directories of enabled templates (virtual paths)."""
    dirs = []
    if C.DT_FILE in cluster.enabled_disk_templates:
        dirs.append(cluster.file_storage_dir)
    if C.DT_SHARED_FILE in cluster.enabled_disk_templates:
        dirs.append(cluster.shared_file_storage_dir)
    return dirs


def storage_dir_problems(lu: "LogicalUnit", dirs: list[str],
                         node_uuids: list[str]) -> dict[str, str | list[str]]:
    """Ask nodes whether their own allowed file storage paths accept ``dirs``.

    Mirrors Ganeti's ``NV_FILE_STORAGE_PATH`` check (node_verify RPC, key
    ``file_storage_paths``). Returns ``{node_uuid: problems}`` for nodes that
    refuse (a list of messages) or cannot be asked (the RPC error, a str).
    """
    if not dirs or not node_uuids:
        return {}
    cluster_name = lu.cfg.get_cluster().cluster_name
    results = lu.rpc.call("node_verify", node_uuids,
                          [{"file_storage_paths": list(dirs)}, cluster_name, {}])
    out: dict[str, str | list[str]] = {}
    for uuid, res in results.items():
        if res.fail_msg:
            out[uuid] = res.fail_msg
        elif (res.payload or {}).get("file_storage_paths"):
            out[uuid] = list(res.payload["file_storage_paths"])
    return out


def check_storage_dirs_accepted(lu: "LogicalUnit", dirs: list[str],
                                node_uuids: list[str]) -> None:
    """Refuse file storage directories a node's administrator has not allowed.

    The allowed list (``/etc/corral/file-storage-paths``) is node-local and
    never written through the API, so a cluster setting must lie inside it on
    every node in ``node_uuids``. Raises :class:`errors.OpPrereqError`:
    ``ECODE_INVAL`` naming the refusing node, ``ECODE_ENVIRON`` when a node
    cannot be asked.
    """
    for uuid, problems in sorted(storage_dir_problems(lu, dirs, node_uuids).items()):
        node = lu.cfg.get_node(uuid)
        name = node.name if node else uuid
        if isinstance(problems, str):
            raise errors.OpPrereqError(
                f"Cannot check the allowed file storage paths of node {name}: {problems}",
                errors.ECODE_ENVIRON)
        raise errors.OpPrereqError(
            f"Node {name} does not accept the file storage directory: "
            f"{'; '.join(problems)} (its administrator must list it in "
            f"{FILE_STORAGE_PATHS_FILE} on that node)", errors.ECODE_INVAL)
