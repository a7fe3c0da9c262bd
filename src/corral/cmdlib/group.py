"""Logical units for node groups: add, assign nodes, modify, remove, rename.

Mirrors ``ganeti.cmdlib.group``. Every group LU runs with the Big Corral
Lock shared (``REQ_BGL = False``) and locks the groups it touches at the
``nodegroup`` level by UUID, as Ganeti's do; node additions take the BGL
exclusively, so a group cannot lose or gain nodes behind a group LU's back
except through OP_GROUP_ASSIGN_NODES, which locks the source groups too.
Evacuation and ``change-group`` are in :mod:`corral.cmdlib.group_evacuate`.
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, LogicalUnit, NoHooksLU
from corral.cmdlib.group_params import (
    check_diskparams,
    check_ndparams,
    check_state_dict,
    update_diskparams,
)
from corral.cmdlib.instance_policy import group_ipolicy_change
from corral.cmdlib.instance_utils import get_updated_params
from corral.ipolicy import check_ipolicy_update
from corral.objects import Instance, NodeGroup, new_uuid
from corral.query import nice_sort_key


def group_instances(lu: LogicalUnit, group_uuid: str) -> list[Instance]:
    """Instances with any node in the group (Ganeti's ``GetNodeGroupInstances``)."""
    members = {n.uuid for n in lu.cfg.get_node_list() if n.group == group_uuid}
    return [i for i in lu.cfg.get_instances().values()
            if any(n in members for n in i.all_nodes)]


def check_group_instances(lu: LogicalUnit, group_uuid: str, owned: set[str]) -> None:
    """The group's instances must be those locked (``CheckNodeGroupInstances``).

    Raises OpPrereqError ECODE_STATE when they changed since the locks were
    computed (retry the operation).
    """
    wanted = {i.name for i in group_instances(lu, group_uuid)}
    if not wanted <= owned:
        raise errors.OpPrereqError(
            f"Instances in node group '{lu.op.group_name}' changed since locks were "
            f"acquired, wanted '{', '.join(sorted(wanted))}', have "
            f"'{', '.join(sorted(owned))}'; retry the operation", errors.ECODE_STATE)


class _GroupLU(LogicalUnit):
    """Hooks on the master, locks of the named group (exclusive)."""

    HTYPE = C.HTYPE_GROUP
    REQ_BGL = False

    def expand_names(self) -> None:
        group = self.cfg.expand_nodegroup(self.op.group_name)
        self.op.group_name = group.name
        self.group_uuid = group.uuid
        self.needed_locks = {C.LEVEL_NODEGROUP: [group.uuid]}

    def locked_group(self) -> NodeGroup:
        """The group re-read under its lock (ECODE_NOENT if it disappeared)."""
        group = self.cfg.get_nodegroup(self.group_uuid)
        if group is None:
            raise errors.OpPrereqError(f"Node group '{self.op.group_name}' not found",
                                       errors.ECODE_NOENT)
        return group

    def build_hooks_env(self) -> dict[str, Any]:
        return {"GROUP_NAME": self.op.group_name}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [self.master_uuid()], [self.master_uuid()]


class LUGroupAdd(_GroupLU):
    """Create a node group with its own parameters (OP_GROUP_ADD)."""

    HPATH = "group-add"

    def check_arguments(self) -> None:
        op = self.op
        op.ndparams = check_ndparams(op.ndparams)
        op.diskparams = check_diskparams(op.diskparams)
        op.hv_state = check_state_dict(op.hv_state, "hypervisor state")
        op.disk_state = check_state_dict(op.disk_state, "disk state")
        if op.ipolicy is not None:
            op.ipolicy = check_ipolicy_update(op.ipolicy, group_policy=True)

    def expand_names(self) -> None:
        # The new group's lock, taken before the group exists (Ganeti's add_locks).
        self.group_uuid = new_uuid()
        self.needed_locks = {C.LEVEL_NODEGROUP: [self.group_uuid]}

    def check_prereq(self) -> None:
        op = self.op
        existing = self.cfg.get_nodegroup_by_name(op.group_name)
        if existing is not None:
            raise errors.OpPrereqError(
                f"Desired group name '{op.group_name}' already exists as a node group "
                f"(UUID: {existing.uuid})", errors.ECODE_EXISTS)
        self.group = NodeGroup(
            uuid=self.group_uuid, name=op.group_name,
            alloc_policy=op.alloc_policy or C.ALLOC_POLICY_PREFERRED,
            ndparams={k: v for k, v in (op.ndparams or {}).items() if v is not None},
            diskparams=update_diskparams({}, op.diskparams or {}),
            ipolicy=group_ipolicy_change(self, None, op.ipolicy or {}),
            hv_state_static=dict(op.hv_state or {}),
            disk_state_static=dict(op.disk_state or {}))

    def exec(self, feedback_fn: FeedbackFn) -> None:
        self.cfg.commit(add=[self.group])


class LUGroupAssignNodes(NoHooksLU):
    """Move nodes into a group (OP_GROUP_ASSIGN_NODES)."""

    REQ_BGL = False

    def expand_names(self) -> None:
        op = self.op
        group = self.cfg.expand_nodegroup(op.group_name)
        op.group_name, self.group_uuid = group.name, group.uuid
        nodes = []
        for name in op.nodes:
            node = self.cfg.expand_node(name)
            if node.uuid not in (n.uuid for n in nodes):
                nodes.append(node)
        op.nodes = [n.name for n in nodes]
        op.node_uuids = [n.uuid for n in nodes]
        self.needed_locks = {C.LEVEL_NODEGROUP: [group.uuid], C.LEVEL_NODE: op.node_uuids}

    def _groups_of_nodes(self) -> set[str]:
        return {node.group for uuid in self.op.node_uuids
                if (node := self.cfg.get_node(uuid)) is not None}

    def declare_locks(self, level: str) -> None:
        if level == C.LEVEL_NODEGROUP:
            # The source groups, read before their locks: checked in check_prereq.
            assert self.needed_locks is not None
            self.needed_locks[level] = sorted({self.group_uuid} | self._groups_of_nodes())

    def check_prereq(self) -> None:
        op = self.op
        expected = {self.group_uuid} | self._groups_of_nodes()
        owned = self.owned_locks(C.LEVEL_NODEGROUP)
        if expected != owned:
            raise errors.OpExecError(
                f"Nodes changed groups since locks were acquired, current groups are "
                f"'{', '.join(sorted(expected))}', used to be '{', '.join(sorted(owned))}'")
        if self.cfg.get_nodegroup(self.group_uuid) is None:
            raise errors.OpPrereqError(f"Node group '{op.group_name}' not found",
                                       errors.ECODE_NOENT)
        self.changed = []
        for uuid in op.node_uuids:
            node = self.cfg.get_node(uuid)
            if node is None:
                raise errors.OpPrereqError(f"Node '{uuid}' not known", errors.ECODE_NOENT)
            if node.group != self.group_uuid:
                new = node.model_copy(deep=True)
                new.group = self.group_uuid
                self.changed.append(new)
        self._check_splits()

    def _check_splits(self) -> None:
        """Internally mirrored instances must keep all nodes in one group
        (Ganeti's ``CheckAssignmentForSplitInstances``); ``force`` only warns."""
        new_group = {n.uuid: n.group for n in self.changed}
        new_splits, old_splits = [], []
        for inst in self.cfg.get_instances().values():
            if inst.disk_template not in C.DTS_INT_MIRROR:
                continue
            groups_before = {self.cfg.get_node(u).group for u in inst.all_nodes}
            groups_after = {new_group.get(u, self.cfg.get_node(u).group)
                            for u in inst.all_nodes}
            if len(groups_after) > 1:
                (old_splits if len(groups_before) > 1 else new_splits).append(inst.name)
        if not new_splits:
            return
        names = ", ".join(sorted(new_splits, key=nice_sort_key))
        if not self.op.force:
            raise errors.OpExecError(f"The following instances get split by this change "
                                     f"and --force was not given: {names}")
        self.log_warning(f"This operation will split the following instances: {names}")
        if old_splits:
            self.log_warning("In addition, these already-split instances continue to be "
                             f"split across groups: {', '.join(sorted(old_splits))}")

    def exec(self, feedback_fn: FeedbackFn) -> None:
        if self.changed:
            self.cfg.commit(update=self.changed)


class LUGroupSetParams(_GroupLU):
    """Change a group's parameters (OP_GROUP_SET_PARAMS); returns the changes."""

    HPATH = "group-modify"

    def check_arguments(self) -> None:
        op = self.op
        if all(v is None for v in (op.ndparams, op.diskparams, op.alloc_policy,
                                   op.hv_state, op.disk_state, op.ipolicy)):
            raise errors.OpPrereqError("Please pass at least one modification",
                                       errors.ECODE_INVAL)
        op.ndparams = check_ndparams(op.ndparams)
        op.diskparams = check_diskparams(op.diskparams)
        op.hv_state = check_state_dict(op.hv_state, "hypervisor state")
        op.disk_state = check_state_dict(op.disk_state, "disk state")
        if op.ipolicy is not None:
            op.ipolicy = check_ipolicy_update(op.ipolicy, group_policy=True)

    def expand_names(self) -> None:
        super().expand_names()
        assert self.needed_locks is not None
        # The group's instances (for the policy check), computed optimistically
        # and verified once the group is locked.
        self.needed_locks[C.LEVEL_INSTANCE] = []
        self.share_locks[C.LEVEL_INSTANCE] = 1

    def declare_locks(self, level: str) -> None:
        if level == C.LEVEL_INSTANCE:
            assert self.needed_locks is not None
            self.needed_locks[level] = sorted(
                i.name for i in group_instances(self, self.group_uuid))

    def build_hooks_env(self) -> dict[str, Any]:
        return {"GROUP_NAME": self.op.group_name, "NEW_ALLOC_POLICY": self.op.alloc_policy}

    def check_prereq(self) -> None:
        op = self.op
        check_group_instances(self, self.group_uuid, self.owned_locks(C.LEVEL_INSTANCE))
        group = self.locked_group()
        new = group.model_copy(deep=True)
        changes: list[list[Any]] = []
        if op.ndparams is not None:
            new.ndparams = get_updated_params(group.ndparams, op.ndparams)
            changes.append(["ndparams", dict(new.ndparams)])
        if op.diskparams is not None:
            new.diskparams = update_diskparams(group.diskparams, op.diskparams)
            changes.append(["diskparams", dict(new.diskparams)])
        if op.alloc_policy is not None:
            new.alloc_policy = op.alloc_policy
            changes.append(["alloc_policy", op.alloc_policy])
        if op.hv_state is not None:
            new.hv_state_static = {**group.hv_state_static, **op.hv_state}
            changes.append(["hv_state", dict(new.hv_state_static)])
        if op.disk_state is not None:
            new.disk_state_static = {**group.disk_state_static, **op.disk_state}
            changes.append(["disk_state", dict(new.disk_state_static)])
        if op.ipolicy is not None:
            new.ipolicy = group_ipolicy_change(self, group, op.ipolicy)
            changes.append(["ipolicy", dict(new.ipolicy)])
        self.new_group = new
        self.changes = changes

    def exec(self, feedback_fn: FeedbackFn) -> list[list[Any]]:
        self.cfg.commit(update=[self.new_group])
        return self.changes


class LUGroupRemove(_GroupLU):
    """Remove an empty group that is not the last one (OP_GROUP_REMOVE)."""

    HPATH = "group-remove"

    def check_prereq(self) -> None:
        group = self.locked_group()
        members = sorted((n.name for n in self.cfg.get_node_list()
                          if n.group == group.uuid), key=nice_sort_key)
        if members:
            raise errors.OpPrereqError(
                f"Group '{group.name}' not empty, has the following nodes: "
                f"{', '.join(members)}", errors.ECODE_STATE)
        if len(self.cfg.get_nodegroups()) == 1:
            raise errors.OpPrereqError(
                f"Group '{group.name}' is the only group, cannot be removed",
                errors.ECODE_STATE)
        self.group = group

    def exec(self, feedback_fn: FeedbackFn) -> None:
        self.cfg.commit(remove=[self.group])


class LUGroupRename(_GroupLU):
    """Rename a group, the default one included (OP_GROUP_RENAME)."""

    HPATH = "group-rename"

    def build_hooks_env(self) -> dict[str, Any]:
        return {"OLD_NAME": self.op.group_name, "NEW_NAME": self.op.new_name}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        master = self.master_uuid()
        nodes = [master] + [n.uuid for n in self.cfg.get_node_list()
                            if n.group == self.group_uuid and n.uuid != master]
        return nodes, nodes

    def check_prereq(self) -> None:
        clash = self.cfg.get_nodegroup_by_name(self.op.new_name)
        if clash is not None:
            raise errors.OpPrereqError(
                f"Desired new name '{self.op.new_name}' clashes with existing node group "
                f"(UUID: {clash.uuid})", errors.ECODE_EXISTS)
        self.group = self.locked_group()

    def exec(self, feedback_fn: FeedbackFn) -> str:
        new = self.group.model_copy(deep=True)
        new.name = self.op.new_name
        self.cfg.commit(update=[new])
        return new.name
