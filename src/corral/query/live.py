"""Gathering live data for queries from the nodes through RPC."""

from __future__ import annotations

from typing import Any, Protocol

from corral import constants as C
from corral.config import ConfigStore
from corral.query.base import LiveData
from corral.query.fields import needs_live_data


class _RpcResultLike(Protocol):
    fail_msg: str | None
    payload: Any
    offline: bool


class _RpcLike(Protocol):
    def call(self, procedure: str, node_uuids: list[str], args: list[Any],
             **kwargs: Any) -> dict[str, _RpcResultLike]: ...


def _storage_units(cfg: ConfigStore) -> list[list[str]]:
    """Storage units reported by ``node_info``: one per enabled disk template
    with space to report, in the cluster's order (the first one is shown as
    dtotal/dfree)."""
    cluster = cfg.get_cluster()
    units: list[list[str]] = []
    for dt in cluster.enabled_disk_templates:
        if dt == C.DT_FILE:
            unit = [C.DT_FILE, cluster.file_storage_dir]
        elif dt == C.DT_SHARED_FILE:
            unit = [C.DT_SHARED_FILE, cluster.shared_file_storage_dir]
        elif dt in (C.DT_PLAIN, C.DT_DRBD8) and cluster.volume_group_name:
            unit = ["lvm-vg", cluster.volume_group_name]
        else:
            continue
        if unit not in units:
            units.append(unit)
    return units


def _record(live: LiveData, node_uuid: str, result: _RpcResultLike) -> Any:
    """File a failed/offline result; return the payload when it succeeded."""
    if result.offline:
        live.offline_nodes.add(node_uuid)
        return None
    if result.fail_msg:
        live.failed_nodes[node_uuid] = result.fail_msg
        return None
    if not isinstance(result.payload, dict):
        live.failed_nodes[node_uuid] = f"Invalid payload {type(result.payload).__name__}"
        return None
    return result.payload


def gather_live_data(what: str, cfg: ConfigStore, rpc: _RpcLike, fields: list[str],
                     names: list[str] | None = None) -> LiveData:
    """Ask the nodes for what the live ``fields`` need.

    Instances: ``all_instances_info(hypervisor_list, all_hvparams)`` on every
    node (or, with ``names``, the nodes of those instances). Nodes:
    ``node_info(storage_units, [[default_hv, hvparams]])`` on the vm_capable
    nodes (or those in ``names``). Nothing is called when no live field is
    asked for. Unreachable nodes end up in ``failed_nodes`` / ``offline_nodes``.
    """
    live = LiveData()
    if not needs_live_data(what, fields):
        return live
    cluster = cfg.get_cluster()
    if what == "instance":
        if names:
            insts = [cfg.expand_instance(n) for n in names]
            node_uuids = sorted({n for i in insts for n in i.all_nodes})
        else:
            node_uuids = sorted(cfg.get_nodes())
        hv_list = list(cluster.enabled_hypervisors)
        all_hvparams = {hv: cluster.get_hv_defaults(hv) for hv in hv_list}
        results = rpc.call("all_instances_info", node_uuids, [hv_list, all_hvparams])
        for node_uuid, result in results.items():
            payload = _record(live, node_uuid, result)
            for name, info in (payload or {}).items():
                _merge_instance(cfg, live, name, dict(info, node=node_uuid))
    elif what == "node":
        nodes = [cfg.expand_node(n) for n in names] if names else cfg.get_node_list()
        node_uuids = [n.uuid for n in nodes if n.vm_capable]
        hv = cluster.default_hypervisor
        args = [_storage_units(cfg), [[hv, cluster.get_hv_defaults(hv)]]]
        for node_uuid, result in rpc.call("node_info", node_uuids, args).items():
            payload = _record(live, node_uuid, result)
            if payload is not None:
                live.nodes[node_uuid] = payload
    return live


def _merge_instance(cfg: ConfigStore, live: LiveData, name: str,
                    entry: dict[str, Any]) -> None:
    """Keep the primary node's report; remember other reporters."""
    existing = live.instances.get(name)
    if existing is None:
        live.instances[name] = entry
        return
    inst = cfg.get_instance_by_name(name)
    if inst is not None and inst.primary_node == entry["node"]:
        entry["other_nodes"] = [*existing.pop("other_nodes", []), existing["node"]]
        live.instances[name] = entry
    else:
        existing.setdefault("other_nodes", []).append(entry["node"])
