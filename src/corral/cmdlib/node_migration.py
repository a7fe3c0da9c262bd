"""Moving every instance off a node: LUNodeMigrate and LUNodeEvacuate.

Mirrors ``ganeti.cmdlib.node`` (``LUNodeMigrate``, ``LUNodeEvacuate``): both
LUs only decide what to move and return one follow-up job per instance
(:class:`ResultWithJobs`); the instance LUs of
:mod:`corral.cmdlib.instance_migration` do the work, each under its own locks.
Corral has neither DRBD (so no secondary instances) nor an instance
allocator, so evacuation moves primary instances to ``remote_node``.
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, LogicalUnit, NoHooksLU, ResultWithJobs
from corral.cmdlib.instance_migration import check_iallocator_or_node, check_live_and_mode
from corral.objects import Instance
from corral.opcodes import OpInstanceMigrate

EVAC_PRIMARY = "primary-only"
EVAC_SECONDARY = "secondary-only"
EVAC_ALL = "all"


def _expand_node(lu: LogicalUnit, name: str | None, uuid: str | None) -> tuple[str, str]:
    node = lu.cfg.expand_node(name or uuid or "")
    return node.name, node.uuid


class LUNodeMigrate(LogicalUnit):
    """Submit one OP_INSTANCE_MIGRATE job per primary instance of a node."""

    HPATH = "node-migrate"
    HTYPE = C.HTYPE_NODE
    REQ_BGL = False

    def check_arguments(self) -> None:
        check_live_and_mode(self.op)

    def expand_names(self) -> None:
        op = self.op
        op.node_name, op.node_uuid = _expand_node(self, op.node_name, op.node_uuid)
        if op.target_node or op.target_node_uuid:
            op.target_node, op.target_node_uuid = _expand_node(self, op.target_node,
                                                               op.target_node_uuid)
            if op.target_node_uuid == op.node_uuid:
                raise errors.OpPrereqError(f"Cannot migrate the instances of node "
                                           f"{op.node_name} to the node itself",
                                           errors.ECODE_INVAL)
        self.share_locks = dict.fromkeys(C.LEVELS, 1)
        self.needed_locks = {C.LEVEL_NODE: [op.node_uuid]}

    def build_hooks_env(self) -> dict[str, Any]:
        return {"NODE_NAME": self.op.node_name,
                "ALLOW_RUNTIME_CHANGES": self.op.allow_runtime_changes}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [self.master_uuid()]
        return nodes, nodes

    def check_prereq(self) -> None:
        self.instances = self.cfg.get_node_instances(self.op.node_uuid)[0]

    def exec(self, feedback_fn: FeedbackFn) -> ResultWithJobs:
        op = self.op
        jobs = [[OpInstanceMigrate(
            instance_name=inst.name, mode=op.mode, live=op.live, iallocator=op.iallocator,
            target_node=op.target_node, allow_runtime_changes=op.allow_runtime_changes,
            ignore_ipolicy=op.ignore_ipolicy)]
            for inst in self.instances]
        if not jobs:
            feedback_fn(f"No primary instances on node {op.node_name}, nothing to do")
        else:
            feedback_fn(f"Submitting {len(jobs)} migration job(s) for the primary "
                        f"instances of node {op.node_name}")
        return ResultWithJobs(jobs)


class LUNodeEvacuate(NoHooksLU):
    """Move the primary instances of a node to ``remote_node``, one
    migrate-or-failover job per instance."""

    REQ_BGL = False

    def expand_names(self) -> None:
        op = self.op
        op.node_name, op.node_uuid = _expand_node(self, op.node_name, op.node_uuid)
        nodes = [op.node_uuid]
        if op.remote_node or op.remote_node_uuid:
            op.remote_node, op.remote_node_uuid = _expand_node(self, op.remote_node,
                                                               op.remote_node_uuid)
            if op.remote_node_uuid == op.node_uuid:
                raise errors.OpPrereqError("Can not use evacuated node as the remote node",
                                           errors.ECODE_INVAL)
            nodes.append(op.remote_node_uuid)
        self.share_locks = dict.fromkeys(C.LEVELS, 1)
        self.needed_locks = {C.LEVEL_INSTANCE: [], C.LEVEL_NODE: nodes}

    def _wanted(self) -> tuple[list[Instance], list[Instance]]:
        """(primary, secondary) instances of the node the mode asks to move."""
        primary, secondary = self.cfg.get_node_instances(self.op.node_uuid)
        mode = self.op.mode
        return ((primary if mode in (EVAC_PRIMARY, EVAC_ALL) else []),
                (secondary if mode in (EVAC_SECONDARY, EVAC_ALL) else []))

    def declare_locks(self, level: str) -> None:
        if level == C.LEVEL_INSTANCE:
            primary, secondary = self._wanted()
            assert self.needed_locks is not None
            self.needed_locks[C.LEVEL_INSTANCE] = sorted(i.name for i in primary + secondary)

    def check_prereq(self) -> None:
        op = self.op
        primary, secondary = self._wanted()
        owned = self.owned_locks(C.LEVEL_INSTANCE)
        wanted = {i.name for i in primary + secondary}
        if owned != wanted:
            raise errors.OpPrereqError(
                f"Instances on node '{op.node_name}' changed since locks were acquired, "
                f"wanted '{', '.join(sorted(wanted))}', have '{', '.join(sorted(owned))}'; "
                "retry the operation", errors.ECODE_STATE)
        if op.mode != EVAC_PRIMARY and (primary or secondary):
            raise errors.OpPrereqError(
                f"Evacuation mode '{op.mode}' is not supported: Corral has no DRBD yet, so "
                "instances can only change their primary node; use mode "
                f"'{EVAC_PRIMARY}'", errors.ECODE_INVAL)
        if primary:
            check_iallocator_or_node(self, op.iallocator, op.remote_node_uuid, "remote node")
        self.instances = primary

    def exec(self, feedback_fn: FeedbackFn) -> ResultWithJobs:
        op = self.op
        jobs = [[OpInstanceMigrate(instance_name=inst.name, target_node=op.remote_node,
                                   allow_failover=True)]
                for inst in self.instances]
        if not jobs:
            feedback_fn(f"No instances to evacuate from node {op.node_name}")
        else:
            feedback_fn(f"Submitting {len(jobs)} job(s) moving the primary instances of "
                        f"node {op.node_name} to {op.remote_node}")
        return ResultWithJobs(jobs)
