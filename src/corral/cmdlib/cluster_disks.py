"""Logical units for cluster-wide disk checks: verify-disks and repair-disk-sizes.

Mirrors ``ganeti.cmdlib.cluster.verify.LUClusterVerifyDisks``,
``ganeti.cmdlib.group.LUGroupVerifyDisks`` and
``ganeti.cmdlib.cluster.LUClusterRepairDiskSizes`` for Corral's file-based
disk templates. Node work goes through the ``file_storage_verify`` and
``blockdev_getdimensions`` RPCs; sizes are in MiB.
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral.cmdlib.base import LOCKS_REPLACE, FeedbackFn, NoHooksLU, ResultWithJobs
from corral.cmdlib.disk_checks import DiskCheck, gather
from corral.cmdlib.instance_utils import node_name, update_instance
from corral.objects import Disk, Instance
from corral.opcodes import OpGroupVerifyDisks
from corral.storage.base import DISK_OK, LINK_OK

# One disk whose real size differs from the configuration: (instance, index,
# disk, real size in MiB).
SizeMismatch = tuple[Instance, int, Disk, int]


class LUClusterVerifyDisks(NoHooksLU):
    """Submit one OP_GROUP_VERIFY_DISKS job per node group (result: job ids)."""

    REQ_BGL = False

    def expand_names(self) -> None:
        self.share_locks = dict.fromkeys(C.LEVELS, 1)
        if self.op.group_name:
            group = self.cfg.expand_nodegroup(self.op.group_name)
            self.needed_locks = {C.LEVEL_NODEGROUP: [group.uuid]}
        else:
            self.needed_locks = {C.LEVEL_NODEGROUP: None}

    def exec(self, feedback_fn: FeedbackFn) -> ResultWithJobs:
        groups = [self.cfg.get_nodegroup(u) for u in self.owned_locks(C.LEVEL_NODEGROUP)]
        names = sorted(g.name for g in groups if g is not None)
        return ResultWithJobs([[OpGroupVerifyDisks(group_name=name)] for name in names])


class LUGroupVerifyDisks(NoHooksLU):
    """Check the disks of the instances of one group with active disks.

    Returns ``[node_errors, instances, missing]`` as Ganeti: ``node_errors``
    ``{node name: message}`` for nodes that could not be asked;
    ``instances`` the names of instances whose disks are present but not
    activated on their primary (the ``instance-disks`` link is missing or
    wrong): ``gnt-cluster verify-disks`` runs activate-disks for them;
    ``missing`` ``{instance: [[node name, virtual path], ...]}`` for disk
    files that are missing or unusable (or on a node that could not be
    asked). Ganeti keys node errors by node UUID; Corral uses names.
    """

    REQ_BGL = False

    def expand_names(self) -> None:
        self.group = self.cfg.expand_nodegroup(self.op.group_name)
        node_uuids = [n.uuid for n in self.cfg.get_node_list() if n.group == self.group.uuid]
        names = sorted(i.name for i in self.cfg.get_instances().values()
                       if i.primary_node in node_uuids)
        self.needed_locks = {C.LEVEL_INSTANCE: names, C.LEVEL_NODEGROUP: [self.group.uuid],
                             C.LEVEL_NODE: node_uuids}
        self.share_locks = dict.fromkeys(C.LEVELS, 1)

    def check_prereq(self) -> None:
        owned_nodes = self.owned_locks(C.LEVEL_NODE)
        owned_insts = self.owned_locks(C.LEVEL_INSTANCE)
        # Only what is locked: objects added to the group meanwhile wait for the next run.
        self.nodes = [n for n in self.cfg.get_node_list()
                      if n.group == self.group.uuid and n.uuid in owned_nodes]
        uuids = {n.uuid for n in self.nodes}
        self.instances = [i for i in self.cfg.get_instances().values()
                          if i.name in owned_insts and i.primary_node in uuids]

    def exec(self, feedback_fn: FeedbackFn) -> list[Any]:
        node_errors: dict[str, str] = {}
        needs_activation: set[str] = set()
        missing: dict[str, list[list[str]]] = {}
        active = [i for i in self.instances if i.disks_active]
        asked = [n.uuid for n in self.nodes if not n.offline and n.vm_capable]
        for node_uuid, report in gather(self, asked, active, scan=False, links=True).items():
            name = node_name(self, node_uuid)
            res = report.result
            if res is None or res.fail_msg:
                node_errors[name] = res.fail_msg if res is not None else "no answer"
                for check in report.checks:
                    _add_missing(missing, name, check)
                continue
            for check, status in report.statuses:
                if status.get("status") != DISK_OK:
                    _add_missing(missing, name, check)
                elif status.get("link") not in (None, LINK_OK):
                    needs_activation.add(check.instance.name)
        return [node_errors, sorted(needs_activation - set(missing)), missing]


def _add_missing(missing: dict[str, list[list[str]]], node: str, check: DiskCheck) -> None:
    missing.setdefault(check.instance.name, []).append([node, check.path])


class LUClusterRepairDiskSizes(NoHooksLU):
    """Record the real size of disks whose size differs from the configuration.

    Returns ``[[instance, disk index, "size", new size (MiB)], ...]`` (Ganeti
    also reports ``"spindles"``, which file disks do not have). With
    ``dry_run`` the mismatches are reported and nothing is changed.
    Unknown instances: OpPrereqError ``ECODE_NOENT``.
    """

    REQ_BGL = False

    def expand_names(self) -> None:
        if self.op.instances:
            self.wanted_names: list[str] | None = sorted(
                {self.cfg.expand_instance(name).name for name in self.op.instances})
            self.needed_locks = {C.LEVEL_INSTANCE: self.wanted_names, C.LEVEL_NODE_RES: []}
            self.recalculate_locks[C.LEVEL_NODE_RES] = LOCKS_REPLACE
        else:
            self.wanted_names = None
            self.needed_locks = {C.LEVEL_INSTANCE: None, C.LEVEL_NODE_RES: None}
        self.share_locks = dict.fromkeys(C.LEVELS, 0)
        self.share_locks[C.LEVEL_NODE_RES] = 1

    def declare_locks(self, level: str) -> None:
        if level == C.LEVEL_NODE_RES and self.wanted_names is not None:
            self.lock_instances_nodes(level, primary_only=True)

    def check_prereq(self) -> None:
        names = self.wanted_names if self.wanted_names is not None \
            else sorted(self.owned_locks(C.LEVEL_INSTANCE))
        self.wanted = [inst for inst in map(self.cfg.get_instance_by_name, names)
                       if inst is not None]
        if self.op.dry_run:
            found = self._mismatches()
            for inst, idx, disk, size in found:
                self.log_info(f"Disk {idx} of instance {inst.name} has mismatched size: "
                              f"recorded {disk.size}, actual {size} (dry run, not corrected)")
            self.dry_run_result = [[i.name, idx, "size", size] for i, idx, _d, size in found]

    def _node_sizes(self, node_uuid: str, disks: list[Disk]) -> list[Any] | None:
        """Sizes in bytes (or None) of ``disks`` on the node; None if it failed."""
        name = node_name(self, node_uuid)
        res = self.rpc.call_one("blockdev_getdimensions", node_uuid,
                                [[d.to_dict() for d in disks]])
        if res.fail_msg:
            self.log_warning(f"Failure in blockdev_getdimensions call to node {name}, "
                             f"ignoring: {res.fail_msg}")
            return None
        if not isinstance(res.payload, list) or len(res.payload) != len(disks):
            self.log_warning(f"Invalid result from node {name}, ignoring node results")
            return None
        return [d[0] if isinstance(d, list) and d and isinstance(d[0], int)
                and not isinstance(d[0], bool) else d for d in res.payload]

    def _mismatches(self) -> list[SizeMismatch]:
        per_node: dict[str, list[tuple[Instance, int, Disk]]] = {}
        for inst in self.wanted:
            for idx, disk in enumerate(inst.disks):
                per_node.setdefault(inst.primary_node, []).append((inst, idx, disk))
        found: list[SizeMismatch] = []
        for node_uuid, entries in per_node.items():
            sizes = self._node_sizes(node_uuid, [d for _i, _x, d in entries])
            for (inst, idx, disk), size in zip(entries, sizes or []):
                if size is None:
                    self.log_warning(f"Disk {idx} of instance {inst.name} did not return "
                                     "size information, ignoring")
                elif not isinstance(size, int):
                    self.log_warning(f"Disk {idx} of instance {inst.name} did not return "
                                     "valid size information, ignoring")
                elif size >> 20 != disk.size:
                    found.append((inst, idx, disk, size >> 20))
        return sorted(found, key=lambda m: (m[0].name, m[1]))

    def exec(self, feedback_fn: FeedbackFn) -> list[list[Any]]:
        changed: list[list[Any]] = []
        for inst, idx, disk, size in self._mismatches():
            feedback_fn(f"Disk {idx} of instance {inst.name} has mismatched size, "
                        f"correcting: recorded {disk.size}, actual {size}")

            def change(i: Instance, uuid: str = disk.uuid, new: int = size) -> None:
                for d in i.disks:
                    if d.uuid == uuid:
                        d.size = new

            update_instance(self, inst.uuid, change)
            changed.append([inst.name, idx, "size", size])
        return changed
