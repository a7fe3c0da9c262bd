"""The processor: runs one opcode through its logical unit.

Mirrors ``ganeti.mcpu.Processor.ExecOpCode``: the Big Corral Lock (shared,
or exclusive for LUs with ``REQ_BGL``), name expansion, locks level by level
(the opcode is ``waiting`` meanwhile and can be canceled), prerequisites,
hooks pre, execution, hooks post, follow-up jobs. All locks are released when
the opcode ends, whatever happened.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from corral import constants as C
from corral import errors
from corral.cmdlib import get_lu_class
from corral.cmdlib.base import LogicalUnit, ResultWithJobs
from corral.cmdlib.leftovers import remove_recorded
from corral.hooks import HooksMaster
from corral.opcodes import OpCode

if TYPE_CHECKING:
    from corral.jobs import OpContext
    from corral.masterd.context import MasterContext

log = logging.getLogger(__name__)

# Lock attempts wait this long before re-checking for a cancel request; each
# timeout raises the request's priority one step, as Ganeti's
# LockAttemptTimeoutStrategy does, so a long-waiting job is not starved.
_LOCK_ATTEMPT_TIMEOUTS = (1.0, 2.0, 4.0, 8.0)


class _Owner:
    """Lock owner identity of one running opcode."""

    __slots__ = ("job_id", "op_index", "thread")

    def __init__(self, job_id: int, op_index: int) -> None:
        self.job_id = job_id
        self.op_index = op_index
        self.thread = threading.get_ident()

    def __repr__(self) -> str:
        return f"job-{self.job_id}/op-{self.op_index}"


class Processor:
    """Executes opcodes for the job queue (``run_opcode`` of JobQueue)."""

    def __init__(self, context: "MasterContext") -> None:
        self.context = context

    def execute(self, op: OpCode, op_ctx: "OpContext") -> Any:
        """Run ``op``; returns its JSON-serializable result.

        Raises the LU's errors (OpPrereqError, OpExecError, HooksAbort...),
        :class:`errors.JobCanceled` when canceled while waiting for locks.
        """
        if not op.WITH_LU:
            raise errors.OpPrereqError(f"Opcode {op.OP_ID} cannot be executed",
                                       errors.ECODE_INVAL)
        lu_cls = get_lu_class(op.OP_ID)
        owner = _Owner(op_ctx.job_id, getattr(op_ctx, "op_index", 0))
        glm = self.context.glm
        priority = op.priority
        try:
            priority = self._acquire(op_ctx, owner, C.LEVEL_CLUSTER, [C.BGL],
                                     shared=not lu_cls.REQ_BGL, priority=priority)
            lu = lu_cls(self.context, op, op_ctx, owner)
            lu.expand_names()
            if lu.needed_locks is None:
                raise errors.ProgrammerError(f"{lu_cls.__name__}.expand_names did not "
                                             "set needed_locks")
            for level in C.LEVELS[1:]:
                lu.declare_locks(level)
                if level not in lu.needed_locks:
                    continue
                names = lu.needed_locks[level]
                if names is not None and not names:
                    continue
                priority = self._acquire(op_ctx, owner, level,
                                         sorted(set(names)) if names is not None else None,
                                         shared=bool(lu.share_locks.get(level)),
                                         priority=priority)
            op_ctx.notify_running()
            return self._run_lu(lu, op_ctx)
        finally:
            glm.release(owner)

    def _acquire(self, op_ctx: "OpContext", owner: _Owner, level: str,
                 names: list[str] | None, shared: bool, priority: int) -> int:
        attempt = 0
        while True:
            op_ctx.check_canceled()
            timeout = _LOCK_ATTEMPT_TIMEOUTS[min(attempt, len(_LOCK_ATTEMPT_TIMEOUTS) - 1)]
            try:
                self.context.glm.acquire(owner, level, names, shared=shared,
                                         timeout=timeout, priority=priority)
                return priority
            except errors.LockError:
                attempt += 1
                priority = max(C.OP_PRIO_HIGHEST, priority - 1)

    def _run_lu(self, lu: LogicalUnit, op_ctx: "OpContext") -> Any:
        feedback = op_ctx.feedback
        lu.check_prereq()
        hooks = HooksMaster(lu) if lu.HPATH else None
        if hooks is not None:
            hooks.run_pre()
        if lu.op.dry_run:
            return lu.dry_run_result
        # What failed jobs left on the nodes this LU holds (see cmdlib.leftovers).
        remove_recorded(lu)
        result = lu.exec(feedback)
        if hooks is not None:
            hooks.run_post(feedback)
            result = lu.hooks_callback(C.HOOKS_PHASE_POST, feedback, result)
        if isinstance(result, ResultWithJobs):
            submitted = op_ctx.submit_jobs(result.jobs)
            out = dict(result.extra)
            out["jobs"] = submitted
            return out
        return result
