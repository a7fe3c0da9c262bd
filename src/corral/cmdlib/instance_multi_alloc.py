"""Allocating several instances at once (OP_INSTANCE_MULTI_ALLOC).

Mirrors ``ganeti.cmdlib.instance.LUInstanceMultiAlloc``: the LU checks the
batch as a whole (no duplicate names, nodes given for all instances or for
none, no per-instance iallocator) and submits one OP_INSTANCE_CREATE job per
instance. Its result is ``{"allocatable": [names], "failed": [names],
"jobs": [[ok, job_id_or_error], ...]}``.

Placement by an iallocator (when no instance names its nodes) needs the
allocator of issue 12 and is refused with ECODE_INVAL until it exists.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, NoHooksLU, ResultWithJobs

ALLOCATABLE_KEY = "allocatable"
FAILED_KEY = "failed"
JOB_IDS_KEY = "jobs"


class LUInstanceMultiAlloc(NoHooksLU):
    """Check a batch of instance creations and submit one job per instance."""

    REQ_BGL = False

    def check_arguments(self) -> None:
        op = self.op
        has_nodes: list[bool] = []
        for inst in op.instances:
            if inst.iallocator is not None:
                raise errors.OpPrereqError("iallocator are not allowed to be set on instance "
                                           "objects", errors.ECODE_INVAL)
            has_nodes.append(bool(inst.pnode))
            if inst.disk_template in C.DTS_INT_MIRROR:
                has_nodes.append(bool(inst.snode))
        if any(has_nodes) != all(has_nodes):
            raise errors.OpPrereqError("There are instance objects providing pnode/snode "
                                       "while others do not", errors.ECODE_INVAL)
        if not any(has_nodes):
            allocator = op.iallocator or self.cfg.get_cluster().default_iallocator
            if not allocator:
                raise errors.OpPrereqError(
                    "No iallocator or nodes on the instances given and no cluster-wide "
                    "default iallocator found; please specify either an iallocator or nodes "
                    "on the instances or set a cluster-wide default iallocator",
                    errors.ECODE_INVAL)
            raise errors.OpPrereqError(f"Placement by iallocator ('{allocator}') is not "
                                       "implemented yet; give the nodes of every instance",
                                       errors.ECODE_INVAL)
        dups = sorted(name for name, n in Counter(op.instance_names).items() if n > 1)
        if dups:
            raise errors.OpPrereqError(f"There are duplicate instance names: "
                                       f"{', '.join(dups)}", errors.ECODE_INVAL)

    def expand_names(self) -> None:
        node_uuids: list[str] = []
        for inst in self.op.instances:
            for attr in ("pnode", "snode"):
                name = getattr(inst, attr)
                if name:
                    node = self.cfg.expand_node(name)
                    setattr(inst, attr, node.name)
                    setattr(inst, f"{attr}_uuid", node.uuid)
                    node_uuids.append(node.uuid)
        unique = list(dict.fromkeys(node_uuids))
        self.share_locks = dict.fromkeys(C.LEVELS, 1)
        self.needed_locks = {C.LEVEL_NODE: unique, C.LEVEL_NODE_RES: list(unique)}

    def check_prereq(self) -> None:
        if self.op.dry_run:
            self.dry_run_result = {ALLOCATABLE_KEY: self.op.instance_names, FAILED_KEY: [],
                                   JOB_IDS_KEY: []}

    def exec(self, feedback_fn: FeedbackFn) -> Any:
        jobs = [[inst.model_copy(update={"priority": self.op.priority})]
                for inst in self.op.instances]
        return ResultWithJobs(jobs, **{ALLOCATABLE_KEY: self.op.instance_names,
                                       FAILED_KEY: []})
