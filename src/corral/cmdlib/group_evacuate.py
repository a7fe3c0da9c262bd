"""Moving instances to other node groups: group evacuate and instance change-group.

Mirrors ``LUGroupEvacuate`` (``ganeti.cmdlib.group``) and
``LUInstanceChangeGroup`` (``ganeti.cmdlib.instance``): both LUs only decide
where each instance goes and return one follow-up job per instance
(:class:`ResultWithJobs`); OP_INSTANCE_MIGRATE (or OP_INSTANCE_FAILOVER with
``force_failover``) does the move under its own locks.

Ganeti asks an instance allocator (``hail``, mode ``change-group``) for the
plan. Corral has no allocator yet, so an ``iallocator`` parameter is refused
(``ECODE_INVAL``) and Corral places instances itself, simply and
predictably (:func:`plan_group_change`):

* target groups: those given, else every other group; ``unallocable`` groups
  are never used, ``preferred`` groups are used before ``last_resort`` ones;
* target nodes: online, not drained, ``vm_capable`` nodes of the first
  policy tier that has any; each instance (in name order) goes to the node
  with the fewest primary instances, counting the ones already planned,
  ties broken by node name. Memory and policy checks are the move jobs' own;
* only templates whose disks any node can reach (``diskless``,
  ``sharedfile``: Ganeti's ``DTS_EXT_MIRROR``) can change group without
  copying data, as with hail; other instances are refused (``ECODE_INVAL``)
  and can be copied with ``gnt-instance move``.
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import LOCKS_APPEND, FeedbackFn, LogicalUnit, ResultWithJobs
from corral.cmdlib.group import check_group_instances, group_instances
from corral.config import ConfigStore
from corral.hooks import build_instance_hook_env
from corral.objects import Instance, Node, NodeGroup
from corral.opcodes import OpCode, OpInstanceFailover, OpInstanceMigrate
from corral.query import nice_sort_key

_POLICY_TIERS = (C.ALLOC_POLICY_PREFERRED, C.ALLOC_POLICY_LAST_RESORT)


def refuse_iallocator(iallocator: str | None) -> None:
    """Corral has no instance allocator: ECODE_INVAL when one is named."""
    if iallocator:
        raise errors.OpPrereqError(
            f"Instance allocators are not implemented in Corral (iallocator '{iallocator}' "
            "given); leave it out to let Corral choose the target nodes in the target "
            "groups", errors.ECODE_INVAL)


def plan_group_change(cfg: ConfigStore, instances: list[Instance],
                      targets: list[NodeGroup]) -> list[tuple[Instance, Node]]:
    """(instance, target node) for each instance, by the rules of this module.

    Raises OpPrereqError ECODE_INVAL for instances whose disks cannot follow
    them without a copy or when no target group can take instances, and
    ECODE_NORES when the usable target groups have no usable node.
    """
    local = sorted(i.name for i in instances if i.disk_template not in C.DTS_EXT_MIRROR)
    if local:
        raise errors.OpPrereqError(
            f"Instance(s) {', '.join(local)} keep their disks on their own node; Corral "
            "changes the group of instances with shared or diskless storage only (copy "
            "the others with 'gnt-instance move')", errors.ECODE_INVAL)
    usable = [g for g in targets if g.alloc_policy in _POLICY_TIERS]
    if not usable:
        raise errors.OpPrereqError(
            "There are no possible target groups (all are unallocable)", errors.ECODE_INVAL)
    candidates: list[Node] = []
    for tier in _POLICY_TIERS:
        uuids = {g.uuid for g in usable if g.alloc_policy == tier}
        candidates = [n for n in cfg.get_node_list() if n.group in uuids and
                      not n.offline and not n.drained and n.vm_capable]
        if candidates:
            break
    if not candidates and instances:
        raise errors.OpPrereqError(
            "No online, undrained, vm_capable node in the target groups "
            f"{', '.join(sorted(g.name for g in usable))}", errors.ECODE_NORES)
    load = {n.uuid: cfg.count_node_instances(n.uuid)[0] for n in candidates}
    plan = []
    for inst in sorted(instances, key=lambda i: nice_sort_key(i.name)):
        node = min(candidates, key=lambda n: (load[n.uuid], nice_sort_key(n.name)))
        load[node.uuid] += 1
        plan.append((inst, node))
    return plan


def move_op(inst: Instance, node: Node, force_failover: bool) -> OpCode:
    """The opcode moving ``inst`` to ``node`` (Ganeti's hail emits a migrate
    allowing failover; ``force_failover`` makes it a failover)."""
    if force_failover:
        return OpInstanceFailover(instance_name=inst.name, target_node=node.name)
    return OpInstanceMigrate(instance_name=inst.name, target_node=node.name,
                             allow_failover=True)


def _expand_groups(lu: LogicalUnit, names: list[str] | None) -> list[str]:
    return [lu.cfg.expand_nodegroup(name).uuid for name in names or []]


def _group_names(lu: LogicalUnit, uuids: list[str] | set[str]) -> str:
    return ", ".join(sorted(g.name if (g := lu.cfg.get_nodegroup(u)) else u for u in uuids))


class _GroupChangeLU(LogicalUnit):
    """Shared locking of the two LUs: instances, groups, then nodes (all shared)."""

    REQ_BGL = False

    def check_arguments(self) -> None:
        refuse_iallocator(self.op.iallocator)

    def _source_groups(self) -> set[str]:
        """Groups of the locked instances (read before their locks: the LUs
        check them again in check_prereq)."""
        groups: set[str] = set()
        for name in self.owned_locks(C.LEVEL_INSTANCE):
            inst = self.cfg.get_instance_by_name(name)
            if inst is not None:
                groups |= self._instance_groups(inst)
        return groups

    def declare_locks(self, level: str) -> None:
        assert self.needed_locks is not None
        if level == C.LEVEL_NODEGROUP:
            # Without explicit targets every group may be one: lock them all.
            self.needed_locks[level] = sorted(
                self._source_groups() | set(self.req_target_uuids)) \
                if self.req_target_uuids else None
        elif level == C.LEVEL_NODE:
            self._lock_nodes()

    def _lock_nodes(self) -> None:
        """Nodes of the locked instances plus every node of the locked groups."""
        assert self.needed_locks is not None
        self.recalculate_locks[C.LEVEL_NODE] = LOCKS_APPEND
        self.lock_instances_nodes(C.LEVEL_NODE)
        groups = self.owned_locks(C.LEVEL_NODEGROUP)
        members = [n.uuid for n in self.cfg.get_node_list() if n.group in groups]
        current = list(self.needed_locks.get(C.LEVEL_NODE) or [])
        self.needed_locks[C.LEVEL_NODE] = current + [u for u in members if u not in current]

    def _instance_groups(self, inst: Instance) -> set[str]:
        return {node.group for u in inst.all_nodes if (node := self.cfg.get_node(u))}

    def _jobs(self, feedback_fn: FeedbackFn, plan: list[tuple[Instance, Node]],
              force_failover: bool = False, sequential: bool = False) -> ResultWithJobs:
        jobs: list[list[OpCode]] = []
        for inst, node in plan:
            op = move_op(inst, node, force_failover)
            if sequential and jobs:
                op.depends = [(-1, [C.JOB_STATUS_ERROR, C.JOB_STATUS_SUCCESS])]
            feedback_fn(f"Instance {inst.name} goes to node {node.name}")
            jobs.append([op])
        return ResultWithJobs(jobs)


class LUGroupEvacuate(_GroupChangeLU):
    """Move every instance of a group to other groups (OP_GROUP_EVACUATE)."""

    HPATH = "group-evacuate"
    HTYPE = C.HTYPE_GROUP

    def expand_names(self) -> None:
        op = self.op
        group = self.cfg.expand_nodegroup(op.group_name)
        op.group_name, self.group_uuid = group.name, group.uuid
        self.req_target_uuids = _expand_groups(self, op.target_groups)
        if self.group_uuid in self.req_target_uuids:
            raise errors.OpPrereqError(
                f"Group to be evacuated ({group.name}) can not be used as a target group "
                f"(targets are {_group_names(self, self.req_target_uuids)})",
                errors.ECODE_INVAL)
        self.share_locks = dict.fromkeys(C.LEVELS, 1)
        self.needed_locks = {C.LEVEL_INSTANCE: [], C.LEVEL_NODEGROUP: [], C.LEVEL_NODE: []}

    def declare_locks(self, level: str) -> None:
        assert self.needed_locks is not None
        if level == C.LEVEL_INSTANCE:
            # Optimistic: verified in check_prereq once the groups are locked.
            self.needed_locks[level] = sorted(
                i.name for i in group_instances(self, self.group_uuid))
        else:
            super().declare_locks(level)

    def _source_groups(self) -> set[str]:
        return {self.group_uuid, *super()._source_groups()}

    def check_prereq(self) -> None:
        owned_instances = self.owned_locks(C.LEVEL_INSTANCE)
        owned_groups = self.owned_locks(C.LEVEL_NODEGROUP)
        check_group_instances(self, self.group_uuid, owned_instances)
        self.instances = [i for n in sorted(owned_instances)
                          if (i := self.cfg.get_instance_by_name(n)) is not None]
        for inst in self.instances:
            outside = self._instance_groups(inst) - owned_groups
            if outside:
                raise errors.OpPrereqError(
                    f"Instance '{inst.name}' changed groups since locks were acquired "
                    f"(now in {_group_names(self, outside)}); retry the operation",
                    errors.ECODE_STATE)
        if self.req_target_uuids:
            self.target_uuids = list(self.req_target_uuids)
        else:
            self.target_uuids = sorted(u for u in owned_groups if u != self.group_uuid)
        if not self.target_uuids:
            raise errors.OpPrereqError("There are no possible target groups",
                                       errors.ECODE_INVAL)
        targets = [g for u in self.target_uuids if (g := self.cfg.get_nodegroup(u))]
        self.plan = plan_group_change(self.cfg, self.instances, targets)

    def build_hooks_env(self) -> dict[str, Any]:
        return {"GROUP_NAME": self.op.group_name,
                "TARGET_GROUPS": " ".join(self.target_uuids)}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        master = self.master_uuid()
        nodes = [master] + [n.uuid for n in self.cfg.get_node_list()
                            if n.group == self.group_uuid and n.uuid != master]
        return nodes, nodes

    def exec(self, feedback_fn: FeedbackFn) -> ResultWithJobs:
        op = self.op
        feedback_fn(f"Evacuating node group {op.group_name}: {len(self.plan)} instance(s) "
                    f"to group(s) {_group_names(self, self.target_uuids)}")
        if op.force_failover:
            feedback_fn("Will insist on failovers")
        if op.sequential:
            feedback_fn("Jobs will be submitted to run sequentially")
        return self._jobs(feedback_fn, self.plan, op.force_failover, op.sequential)


class LUInstanceChangeGroup(_GroupChangeLU):
    """Move one instance to another group (OP_INSTANCE_CHANGE_GROUP)."""

    HPATH = "instance-change-group"
    HTYPE = C.HTYPE_INSTANCE

    def expand_names(self) -> None:
        self.share_locks = dict.fromkeys(C.LEVELS, 1)
        self.needed_locks = {C.LEVEL_NODEGROUP: [], C.LEVEL_NODE: []}
        self.expand_and_lock_instance()
        self.req_target_uuids = _expand_groups(self, self.op.target_groups)

    def check_prereq(self) -> None:
        inst = self.get_locked_instance()
        owned_groups = self.owned_locks(C.LEVEL_NODEGROUP)
        inst_groups = self._instance_groups(inst)
        if not inst_groups <= owned_groups:
            raise errors.OpPrereqError(
                f"Instance '{inst.name}' changed groups since locks were acquired; retry "
                "the operation", errors.ECODE_STATE)
        if self.req_target_uuids:
            used = inst_groups & set(self.req_target_uuids)
            if used:
                raise errors.OpPrereqError(
                    f"Can't use group(s) '{_group_names(self, used)}' as targets, they are "
                    f"used by the instance '{inst.name}'", errors.ECODE_INVAL)
            self.target_uuids = list(self.req_target_uuids)
        else:
            self.target_uuids = sorted(owned_groups - inst_groups)
        if not self.target_uuids:
            raise errors.OpPrereqError("There are no possible target groups",
                                       errors.ECODE_INVAL)
        targets = [g for u in self.target_uuids if (g := self.cfg.get_nodegroup(u))]
        self.instance = inst
        self.plan = plan_group_change(self.cfg, [inst], targets)

    def build_hooks_env(self) -> dict[str, Any]:
        env: dict[str, Any] = {"TARGET_GROUPS": " ".join(self.target_uuids)}
        env.update(build_instance_hook_env(self.cfg, self.instance))
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [self.master_uuid()], [self.master_uuid()]

    def exec(self, feedback_fn: FeedbackFn) -> ResultWithJobs:
        return self._jobs(feedback_fn, self.plan)
