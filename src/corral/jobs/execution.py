"""Running jobs: the scheduler thread, worker threads and opcode callbacks.

Part of :class:`corral.jobs.queue.JobQueue` (a mixin, split out to keep files
small). Mirrors Ganeti's ``jqueue._JobProcessor`` (opcode by opcode
execution, dependency checks of ``_JobDependencyManager``) and
``_OpExecCallbacks``. All methods expect the state of the queue described in
``JobQueue.__init__``; those not ending in ``_loop``/``_job`` hold the queue
lock while touching it.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from corral import constants as C
from corral import errors, opcodes
from corral.jobs import filters as job_filters
from corral.jobs.context import OpContext
from corral.jobs.model import QueuedJob, QueuedOpcode, now_ts
from corral.jobs.store import JobStore

log = logging.getLogger(__name__)

CANCELED_MSG = "Job canceled by request"
REJECTED_MSG = "Job rejected by a job filter rule"


def _job_outcome(job: QueuedJob) -> str:
    """``status`` of a job for its end line, with the failed opcode's error
    (``error: OP_X failed: OpPrereqError: message (ecode)``)."""
    status = job.calc_status()
    for op in job.ops:
        if op.status in (C.OP_STATUS_ERROR, C.OP_STATUS_CANCELED):
            if isinstance(op.result, str):          # a cancel reason
                why = op.result
            else:
                err = errors.decode_exception(op.result)
                why = f"{type(err).__name__}: {err.message} ({err.ecode})"
            return f"{status}: {op.summary} {op.status}: {why}"
    return status


class JobExecutionMixin:
    """Scheduler and workers of the job queue."""

    _lock: threading.RLock
    _sched_cond: threading.Condition
    _store: JobStore
    _run_opcode: Callable[[opcodes.OpCode, OpContext], Any]
    _max_running: int
    _stopping: bool
    _active: dict[int, QueuedJob]
    _pending: set[int]
    _heap: list[tuple[int, int]]
    _running: dict[int, threading.Thread]
    _cache: dict[int, QueuedJob]
    _filter_rules: Callable[[], list[dict[str, Any]]]

    # Provided by JobQueue.
    def _commit(self, job: QueuedJob, op_indexes: list[int] | range,
                durable: bool = True) -> None:
        raise NotImplementedError

    def _stage(self, job: QueuedJob, op_indexes: list[int] | range) -> int:
        raise NotImplementedError

    def _publish(self, job: QueuedJob) -> None:
        raise NotImplementedError

    def _finish(self, job: QueuedJob, idx: int, status: str, result: Any) -> None:
        raise NotImplementedError

    def _notify_job(self, job_id: int) -> None:
        raise NotImplementedError

    @staticmethod
    def _first_unfinished(job: QueuedJob) -> int:
        for idx, op in enumerate(job.ops):
            if op.status not in C.JOBS_FINALIZED:
                return idx
        return len(job.ops)

    def _mark_waiting(self, job: QueuedJob, idx: int) -> None:
        op = job.ops[idx]
        if op.status != C.OP_STATUS_QUEUED:
            return
        now = now_ts()
        op.status, op.start_ts = C.OP_STATUS_WAITING, now
        if job.start_ts is None:
            job.start_ts = now
        # Not durable: a crash before the next write leaves it queued, and
        # recovery requeues a waiting job that never ran all the same.
        self._commit(job, [idx], durable=False)

    # ------------------------------------------------------------ scheduler

    def _scheduler_loop(self) -> None:
        with self._lock:
            while not self._stopping:
                self._schedule()
                self._sched_cond.wait()

    def _schedule(self) -> None:
        """Start pending jobs in (priority, id) order while slots are free and
        the job filter rules let them (held jobs stay pending)."""
        rules = self._filter_rules()
        held: list[tuple[int, int]] = []
        while self._heap and len(self._running) < self._max_running:
            prio, job_id = heapq.heappop(self._heap)
            job = self._active.get(job_id)
            if job_id not in self._pending or job is None or job.calc_priority() != prio:
                continue  # stale heap entry
            running = [self._active[j] for j in self._running if j in self._active]
            decision = job_filters.decide(rules, job, running)
            if decision == job_filters.WAIT:
                held.append((prio, job_id))
                continue
            self._pending.discard(job_id)
            if decision == job_filters.REJECT:
                self._finish(job, self._first_unfinished(job), C.OP_STATUS_CANCELED,
                             REJECTED_MSG)
                continue
            self._mark_waiting(job, self._first_unfinished(job))
            worker = threading.Thread(target=self._run_job, args=(job,),
                                      name=f"job-{job_id}", daemon=True)
            self._running[job_id] = worker
            worker.start()
        for entry in held:
            heapq.heappush(self._heap, entry)

    # --------------------------------------------------------------- worker

    def _run_job(self, job: QueuedJob) -> None:
        started = time.monotonic()
        log.info("Job %s started: %s", job.id, ", ".join(op.summary for op in job.ops))
        try:
            for idx in range(len(job.ops)):
                if not self._run_op(job, idx):
                    break
        except BaseException as exc:  # an internal failure must still end the job
            log.exception("Internal error while running job %s", job.id)
            with self._lock:
                if not job.is_finalized():
                    self._finish(job, self._first_unfinished(job), C.OP_STATUS_ERROR,
                                 errors.encode_exception(exc))
        finally:
            with self._lock:
                outcome = _job_outcome(job)
                self._running.pop(job.id, None)
                self._sched_cond.notify()
            log.info("Job %s ended after %.3f s: %s", job.id, time.monotonic() - started,
                     outcome)

    def _run_op(self, job: QueuedJob, idx: int) -> bool:
        """Run opcode ``idx``; False when the job has ended."""
        with self._lock:
            op = job.ops[idx]
            if op.status in C.JOBS_FINALIZED:
                return True
            if job.calc_status() == C.JOB_STATUS_CANCELING:
                self._finish(job, idx, C.OP_STATUS_CANCELED, CANCELED_MSG)
                return False
            self._mark_waiting(job, idx)
            verdict, message = self._check_dependencies(job, op)
            if verdict == C.OP_STATUS_CANCELED:
                self._finish(job, idx, C.OP_STATUS_CANCELED, message)
                return False
            if verdict == C.OP_STATUS_ERROR:
                self._finish(job, idx, C.OP_STATUS_ERROR,
                             errors.encode_exception(errors.OpExecError(message)))
                return False
            opcode = op.opcode
        try:
            if opcode is None:
                opcode = opcodes.op_from_dict(op.input)
            result = self._run_opcode(opcode, OpContext(self, job, idx))
            try:
                result = json.loads(json.dumps(result))
            except (TypeError, ValueError) as exc:
                raise errors.OpResultError(
                    f"Result of {op.summary} is not JSON-serializable: {exc}") from None
        except errors.JobCanceled:
            with self._lock:
                self._finish(job, idx, C.OP_STATUS_CANCELED, CANCELED_MSG)
            return False
        except BaseException as exc:  # the opcode failed: record why
            if not isinstance(exc, errors.CorralError):
                log.exception("Opcode %s of job %s failed unexpectedly", op.summary, job.id)
            with self._lock:
                self._finish(job, idx, C.OP_STATUS_ERROR, errors.encode_exception(exc))
            return False
        with self._lock:
            now = now_ts()
            op.status, op.result, op.end_ts = C.OP_STATUS_SUCCESS, result, now
            changed = [idx]
            nxt = idx + 1
            if nxt < len(job.ops) and job.ops[nxt].status == C.OP_STATUS_QUEUED:
                # Hand over in the same write, so the job never looks queued.
                job.ops[nxt].status, job.ops[nxt].start_ts = C.OP_STATUS_WAITING, now
                changed.append(nxt)
            elif nxt >= len(job.ops):
                job.end_ts = now
            ticket = self._stage(job, changed)
        self._sync_and_publish(job, ticket)
        return True

    def _sync_and_publish(self, job: QueuedJob, ticket: int) -> None:
        """Wait, without the queue lock, until the staged change is durable
        (group commit with other jobs), then make it visible. Readers that
        come meanwhile wait for it too (``JobQueue._settle``)."""
        self._store.sync(ticket)
        with self._lock:
            self._publish(job)

    def _check_dependencies(self, job: QueuedJob, op: QueuedOpcode) -> tuple[str | None, str]:
        """``(None, "")`` if the opcode may run, else ``(canceled|error, why)``."""
        for dep_id, statuses in op.input.get("depends") or ():
            dep_id = int(dep_id)
            if dep_id >= job.id:
                return C.OP_STATUS_ERROR, (f"Job {job.id} cannot depend on job {dep_id}:"
                                           " only earlier jobs can be dependencies")
            dep = self._active.get(dep_id)
            if dep is not None:
                status = dep.calc_status()
            else:
                cached = self._cache.get(dep_id)
                state = (cached.calc_status(), False) if cached else \
                    self._store.job_state(dep_id)
                if state is None:
                    return C.OP_STATUS_ERROR, f"Dependency job {dep_id} not found"
                status = state[0]
            if status not in C.JOBS_FINALIZED:
                return C.OP_STATUS_ERROR, f"Dependency job {dep_id} has not finished"
            if not statuses or status in statuses:
                continue
            if status == C.JOB_STATUS_CANCELED:
                return C.OP_STATUS_CANCELED, f"Dependency job {dep_id} was canceled"
            return C.OP_STATUS_ERROR, (f"Dependency job {dep_id} ended in status {status},"
                                       f" not one of {', '.join(statuses)}")
        return None, ""

    # ------------------------------------------------- OpContext callbacks

    def _append_log(self, job: QueuedJob, idx: int, log_type: str, message: Any) -> None:
        """Add a log entry, visible at once; written without fsync and outside
        the queue lock, together with the entries of other jobs (it becomes
        power-loss safe with the next durable write)."""
        try:
            message = json.loads(json.dumps(message))
        except (TypeError, ValueError):
            message = str(message)
        with self._lock:
            entry = [job.log_serial + 1, now_ts(), log_type, message]
            job.log_serial = entry[0]
            job.ops[idx].log.append(entry)
            self._store.stage_log(job.id, idx, entry)
            self._notify_job(job.id)
        self._store.write_logs()

    def _notify_running(self, job: QueuedJob, idx: int) -> None:
        with self._lock:
            op = job.ops[idx]
            if op.status == C.OP_STATUS_CANCELING:
                raise errors.JobCanceled(f"Job {job.id} canceled while waiting")
            if op.status != C.OP_STATUS_WAITING:
                return
            op.status, op.exec_ts = C.OP_STATUS_RUNNING, now_ts()
            ticket = self._stage(job, [idx])
        # Durable before the LU changes anything: recovery must see it running.
        self._sync_and_publish(job, ticket)

    def _check_canceled(self, job: QueuedJob) -> None:
        with self._lock:
            if job.calc_status() == C.JOB_STATUS_CANCELING:
                raise errors.JobCanceled(f"Job {job.id} canceled while waiting")
