"""Logical units that read instances: query, query-data (``gnt-instance info``)
and console.

Mirrors ``ganeti.cmdlib.instance_query`` (``LUInstanceQuery``,
``LUInstanceQueryData``) and ``LUInstanceConsole`` of
``ganeti.cmdlib.instance_operation``. Field evaluation for the query is in
:mod:`corral.query`.
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import LOCKS_REPLACE, FeedbackFn, QueryLU
from corral.cmdlib.instance_utils import instance_runtime_info, nic_list_to_tuple, node_name
from corral.hypervisor import get_hypervisor_class
from corral.objects import Disk, Instance


def _expand_instance_names(lu: QueryLU, names: list[str]) -> list[str]:
    """Full names of the given instances (OpPrereqError ECODE_NOENT if unknown)."""
    out: list[str] = []
    for name in names:
        full = lu.cfg.expand_instance(name).name
        if full not in out:
            out.append(full)
    return out


def _lock_for_query(lu: QueryLU, names: list[str] | None) -> None:
    """Shared locks on the instances (all if ``names`` is None) and their nodes."""
    lu.needed_locks = {C.LEVEL_INSTANCE: names}
    if names is None:
        lu.needed_locks[C.LEVEL_NODE] = None
    else:
        lu.needed_locks[C.LEVEL_NODE] = []
        lu.recalculate_locks[C.LEVEL_NODE] = LOCKS_REPLACE


class LUInstanceQuery(QueryLU):
    """Old-style instance list: one row of values per instance (OP_INSTANCE_QUERY)."""

    def check_arguments(self) -> None:
        from corral.query import field_definitions

        defs = field_definitions("instance")
        unknown = [f for f in self.op.output_fields if f not in defs]
        if unknown:
            raise errors.OpPrereqError(f"Unknown output fields selected: "
                                       f"{', '.join(unknown)}", errors.ECODE_INVAL)

    def expand_names(self) -> None:
        self.names = _expand_instance_names(self, self.op.names)
        if self.op.use_locking:
            _lock_for_query(self, self.names or None)
        else:
            self.needed_locks = {}

    def declare_locks(self, level: str) -> None:
        if level == C.LEVEL_NODE and level in self.recalculate_locks:
            self.lock_instances_nodes(level)

    def exec(self, feedback_fn: FeedbackFn) -> list[list[Any]]:
        from corral.query import gather_live_data, needs_live_data, query

        live = None
        if needs_live_data("instance", self.op.output_fields):
            live = gather_live_data("instance", self.cfg, self.rpc, self.op.output_fields)
        rows = query("instance", self.cfg, self.op.output_fields, self.names or None, live)
        return [[value for _status, value in row] for row in rows]


class LUInstanceQueryData(QueryLU):
    """Detailed data of instances, keyed by name (``gnt-instance info``)."""

    def expand_names(self) -> None:
        self.wanted = _expand_instance_names(self, self.op.instances) \
            if self.op.instances else None
        if self.op.use_locking:
            _lock_for_query(self, self.wanted)
        else:
            self.needed_locks = {}

    def declare_locks(self, level: str) -> None:
        if level == C.LEVEL_NODE and level in self.recalculate_locks:
            self.lock_instances_nodes(level)

    def check_prereq(self) -> None:
        if self.wanted is None:
            self.instances = sorted(self.cfg.get_instances().values(), key=lambda i: i.name)
            return
        self.instances = []
        for name in self.wanted:
            inst = self.cfg.get_instance_by_name(name)
            if inst is None:
                raise errors.OpPrereqError(f"Instance '{name}' not known", errors.ECODE_NOENT)
            self.instances.append(inst)

    def _blockdev_status(self, node_uuid: str | None, instance: Instance,
                         disk: Disk) -> list[Any] | None:
        """Ganeti's ``(dev_path, major, minor, sync_percent, estimated_time,
        is_degraded, ldisk_status)`` of a disk on a node, or None."""
        if self.op.static or not node_uuid:
            return None
        res = self.rpc.call_one("blockdev_find", node_uuid, [disk.to_dict()])
        if res.offline:
            return None
        res.raise_for(f"Can't compute disk status for {instance.name}")
        status = res.payload
        if not isinstance(status, dict):
            return None
        return [status.get("dev_path"), status.get("major"), status.get("minor"),
                status.get("sync_percent"), status.get("estimated_time"),
                bool(status.get("is_degraded", False)), status.get("ldisk_status")]

    def _disk_info(self, instance: Instance, disk: Disk, pnode: str | None) -> dict[str, Any]:
        return {
            "iv_name": disk.iv_name,
            "dev_type": disk.dev_type,
            "logical_id": list(disk.logical_id),
            "pstatus": self._blockdev_status(pnode, instance, disk),
            "sstatus": None,
            "children": [self._disk_info(instance, c, None) for c in disk.children],
            "mode": disk.mode,
            "size": disk.size,
            "spindles": disk.spindles,
            "name": disk.name,
            "uuid": disk.uuid,
        }

    def exec(self, feedback_fn: FeedbackFn) -> dict[str, dict[str, Any]]:
        cluster = self.cfg.get_cluster()
        result: dict[str, dict[str, Any]] = {}
        for inst in self.instances:
            pnode = self.cfg.get_node(inst.primary_node)
            run_state: str | None
            live_pnode: str | None = inst.primary_node
            if self.op.static or pnode is None or pnode.offline:
                run_state = None
                live_pnode = None
                if pnode is not None and pnode.offline:
                    self.log_warning(f"Primary node {pnode.name} is marked offline, returning "
                                     f"static information only for instance {inst.name}")
            elif instance_runtime_info(self, inst, prereq=False) is not None:
                run_state = "up"
            elif inst.admin_state == C.ADMINST_UP:
                run_state = "down"
            else:
                run_state = inst.admin_state
            group = self.cfg.get_nodegroup(pnode.group) if pnode is not None else None
            snodes = [self.cfg.get_node(u) for u in inst.secondary_nodes]
            snode_groups = [n.group if n else None for n in snodes]
            result[inst.name] = {
                "name": inst.name,
                "config_state": inst.admin_state,
                "run_state": run_state,
                "pnode": node_name(self, inst.primary_node),
                "pnode_group_uuid": pnode.group if pnode else None,
                "pnode_group_name": group.name if group else None,
                "snodes": [n.name for n in snodes if n],
                "snodes_group_uuids": snode_groups,
                "snodes_group_names": [
                    (g.name if (g := self.cfg.get_nodegroup(u)) else None) if u else None
                    for u in snode_groups],
                "os": inst.os,
                "nics": nic_list_to_tuple(self, inst.nics),
                "disk_template": inst.disk_template,
                "disks": [self._disk_info(inst, d, live_pnode) for d in inst.disks],
                "hypervisor": inst.hypervisor,
                "network_port": inst.network_port,
                "hv_instance": dict(inst.hvparams),
                "hv_actual": cluster.fill_hv(inst, skip_globals=True),
                "be_instance": dict(inst.beparams),
                "be_actual": cluster.fill_be(inst),
                "os_instance": dict(inst.osparams),
                "os_actual": cluster.simple_fill_os(inst.os, inst.osparams),
                "serial_no": inst.serial_no,
                "mtime": inst.mtime,
                "ctime": inst.ctime,
                "uuid": inst.uuid,
                "tags": list(inst.tags),
            }
        return result


class LUInstanceConsole(QueryLU):
    """How to reach the console of a running instance (InstanceConsole dict)."""

    def expand_names(self) -> None:
        self.expand_and_lock_instance()

    def check_prereq(self) -> None:
        self.instance = inst = self.get_locked_instance()
        self.check_node_online(inst.primary_node)
        if instance_runtime_info(self, inst) is None:
            state = {C.ADMINST_UP: C.INSTST_ERRORDOWN,
                     C.ADMINST_DOWN: C.INSTST_ADMINDOWN}.get(inst.admin_state,
                                                            C.INSTST_ADMINOFFLINE)
            raise errors.OpPrereqError(f"Instance {inst.name} is not running (state {state}), "
                                       "cannot get console", errors.ECODE_STATE)

    def exec(self, feedback_fn: FeedbackFn) -> dict[str, Any]:
        inst = self.instance
        cluster = self.cfg.get_cluster()
        pnode = self.cfg.get_node(inst.primary_node)
        assert pnode is not None
        group = self.cfg.get_nodegroup(pnode.group)
        console = get_hypervisor_class(inst.hypervisor).get_instance_console(
            inst, pnode, group, cluster.fill_hv(inst), cluster.fill_be(inst))
        return console.model_dump(mode="json")
