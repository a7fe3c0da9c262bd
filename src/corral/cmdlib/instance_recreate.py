"""Re-creating an instance's missing disks (OP_INSTANCE_RECREATE_DISKS).

Mirrors ``ganeti.cmdlib.instance_storage.LUInstanceRecreateDisks`` for the
file-based templates: the instance must be down (unless its old primary is
offline and new nodes are given); chosen disks (default all) are created
empty again, optionally with a new size or mode, on the instance's nodes or
on ``nodes`` (all disks then, and the instance moves there). A disk whose
file still exists is refused by the node (``File already exists``), so only
missing disks can be re-created. The disks are created before the
configuration changes; a failure removes what was created and changes
nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import LOCKS_APPEND, FeedbackFn, LogicalUnit
from corral.cmdlib.instance_storage import create_disks
from corral.cmdlib.instance_utils import (
    INSTANCE_NOT_RUNNING,
    check_instance_state,
    declare_instance_node_locks,
    update_instance,
)
from corral.hooks import build_instance_hook_env
from corral.objects import Instance

# Disk parameters a re-creation may change (Ganeti's _MODIFYABLE).
MODIFIABLE = frozenset({C.IDISK_SIZE, C.IDISK_MODE, C.IDISK_SPINDLES})


class LUInstanceRecreateDisks(LogicalUnit):
    """Create an instance's missing disks again (empty)."""

    HPATH = "instance-recreate-disks"
    HTYPE = C.HTYPE_INSTANCE
    REQ_BGL = False

    def check_arguments(self) -> None:
        op = self.op
        if op.disks and isinstance(op.disks[0], int):
            op.disks = [(idx, {}) for idx in sorted(set(op.disks))]
        dups = sorted(i for i, n in Counter(idx for idx, _ in op.disks).items() if n > 1)
        if dups:
            raise errors.OpPrereqError(f"Some disks have been specified more than once: "
                                       f"{', '.join(map(str, dups))}", errors.ECODE_INVAL)
        if op.iallocator:
            raise errors.OpPrereqError("Placement by iallocator is not implemented yet; "
                                       "give the nodes", errors.ECODE_INVAL)
        for idx, params in op.disks:
            unsupported = sorted(set(params) - MODIFIABLE)
            if unsupported:
                raise errors.OpPrereqError(f"Parameters for disk {idx} try to change "
                                           f"unmodifyable parameter(s): "
                                           f"{', '.join(unsupported)}", errors.ECODE_INVAL)
            size = params.get(C.IDISK_SIZE)
            if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                                     or size <= 0):
                raise errors.OpPrereqError(f"Invalid disk size {size!r} for disk {idx}",
                                           errors.ECODE_INVAL)
            mode = params.get(C.IDISK_MODE)
            if mode is not None and mode not in C.DISK_ACCESS_SET:
                raise errors.OpPrereqError(f"Invalid disk access mode '{mode}'",
                                           errors.ECODE_INVAL)

    def expand_names(self) -> None:
        self.expand_and_lock_instance()
        assert self.needed_locks is not None
        self.node_uuids = [self.cfg.expand_node(n).uuid for n in self.op.nodes]
        for level in (C.LEVEL_NODE, C.LEVEL_NODE_RES):
            self.needed_locks[level] = list(self.node_uuids)
            self.recalculate_locks[level] = LOCKS_APPEND

    def declare_locks(self, level: str) -> None:
        declare_instance_node_locks(self, level)

    def check_prereq(self) -> None:
        inst = self.get_locked_instance()
        if inst.disk_template not in (C.DT_FILE, C.DT_SHARED_FILE):
            raise errors.OpPrereqError(f"Re-creating disks of template "
                                       f"'{inst.disk_template}' is not supported",
                                       errors.ECODE_INVAL)
        if not inst.disks:
            raise errors.OpPrereqError(f"Instance '{inst.name}' has no disks",
                                       errors.ECODE_INVAL)
        if self.node_uuids and len(self.node_uuids) != len(inst.all_nodes):
            raise errors.OpPrereqError(
                f"Instance {inst.name} currently has {len(inst.all_nodes)} nodes, but "
                f"{len(self.node_uuids)} replacement nodes were specified",
                errors.ECODE_INVAL)
        self.primary = self.node_uuids[0] if self.node_uuids else inst.primary_node
        self.check_node_online(self.primary)
        old_pnode = self.cfg.get_node(inst.primary_node)
        if not (self.node_uuids and old_pnode is not None and old_pnode.offline):
            check_instance_state(self, inst, INSTANCE_NOT_RUNNING,
                                 msg="cannot recreate disks")
        self.changes = dict(self.op.disks) if self.op.disks else \
            {idx: {} for idx in range(len(inst.disks))}
        if max(self.changes) >= len(inst.disks):
            raise errors.OpPrereqError(f"Invalid disk index '{max(self.changes)}'",
                                       errors.ECODE_INVAL)
        if self.node_uuids and sorted(self.changes) != list(range(len(inst.disks))):
            raise errors.OpPrereqError("Can't recreate disks partially and change the nodes "
                                       "at the same time", errors.ECODE_INVAL)
        self.instance = inst

    def build_hooks_env(self) -> dict[str, Any]:
        return build_instance_hook_env(self.cfg, self.get_locked_instance())

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [self.master_uuid()] + list(self.instance.all_nodes)
        return nodes, nodes

    def _apply(self, inst: Instance) -> None:
        """The new disk parameters and nodes, on ``inst`` (a copy)."""
        for idx, params in self.changes.items():
            disk = inst.disks[idx]
            if C.IDISK_SIZE in params:
                disk.size = params[C.IDISK_SIZE]
            if C.IDISK_MODE in params:
                disk.mode = params[C.IDISK_MODE]
            if C.IDISK_SPINDLES in params:
                disk.spindles = params[C.IDISK_SPINDLES]
            if self.node_uuids:
                disk.nodes = list(self.node_uuids)
        if self.node_uuids:
            inst.primary_node = self.node_uuids[0]

    def exec(self, feedback_fn: FeedbackFn) -> None:
        target = self.instance.model_copy(deep=True)
        self._apply(target)
        todo = [target.disks[idx] for idx in sorted(self.changes)]
        feedback_fn(f"Re-creating disk(s) {', '.join(str(i) for i in sorted(self.changes))}"
                    f" of instance {target.name}")
        create_disks(self, target, disks=todo)
        if self.node_uuids and self.node_uuids[0] != self.instance.primary_node:
            self.log_warning("Changing the instance's nodes, you will have to remove any "
                             "disks left on the older nodes manually")
        update_instance(self, target.uuid, self._apply)
