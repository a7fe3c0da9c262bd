"""What a running opcode sees of its job: :class:`OpContext`.

Mirrors Ganeti's ``jqueue._OpExecCallbacks`` (``NotifyStart``, ``Feedback``,
``CheckCancel``, ``SubmitManyJobs``, ``CurrentPriority``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral import constants as C

if TYPE_CHECKING:
    from corral.jobs.model import QueuedJob
    from corral.jobs.queue import JobQueue
    from corral.opcodes import OpCode


class OpContext:
    """Callbacks for one opcode of one job, passed to ``run_opcode``.

    Attributes:
      job_id: id of the job.
      op_index: position of the opcode in the job (0-based).
    """

    def __init__(self, queue: JobQueue, job: QueuedJob, op_index: int) -> None:
        self._queue = queue
        self._job = job
        self.job_id = job.id
        self.op_index = op_index

    @property
    def priority(self) -> int:
        """Current priority of the opcode (may change while it waits)."""
        return self._job.ops[self.op_index].priority

    def feedback(self, message: Any, log_type: str = C.ELOG_MESSAGE) -> None:
        """Append a log entry to the opcode and wake clients waiting on the job.

        ``message`` must be JSON-serializable (usually a string).
        """
        self._queue._append_log(self._job, self.op_index, log_type, message)

    def notify_running(self) -> None:
        """Mark the opcode ``running`` (locks are held, work starts).

        Raises:
          errors.JobCanceled: a cancel was requested while the opcode waited.
        """
        self._queue._notify_running(self._job, self.op_index)

    def check_canceled(self) -> None:
        """Raise :class:`errors.JobCanceled` if a cancel was requested."""
        self._queue._check_canceled(self._job)

    def submit_jobs(self, jobs: list[list[OpCode]]) -> list[list[Any]]:
        """Submit follow-up jobs (negative dependencies are relative).

        Returns ``[[True, job_id] | [False, error message], ...]`` in order.
        """
        results = self._queue.submit_many([[op.to_dict() for op in ops] for ops in jobs])
        return [[ok, value] for ok, value in results]
