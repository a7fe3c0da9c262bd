"""The job queue: submission, scheduling, execution, cancel, archive, waiting.

Mirrors Ganeti's ``jqueue.JobQueue`` together with the 3.0 ``luxid``
scheduler (``JQScheduler.hs``): jobs are persisted (:mod:`corral.jobs.store`)
before anything is reported, started in ``(priority, id)`` order up to
``max_running`` at a time, each in its own worker thread that runs the
opcodes through ``run_opcode(op, ctx)``.

Unfinished jobs live in memory (``_active``) and are the source of truth for
readers; finished jobs are read back from the database (a small cache keeps
the recent ones). Every change writes only the rows of the job concerned.

Jobs whose dependencies have not finished yet are parked: their first opcode
is ``waiting`` but they use no worker slot until the last dependency
finishes, so a full set of running jobs can never wait for a queued one.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral import constants as C
from corral import errors, opcodes
from corral.jobs.context import OpContext
from corral.jobs.execution import CANCELED_MSG, JobExecutionMixin
from corral.jobs.model import J_FIELDS, QueuedJob, QueuedOpcode, check_fields, now_ts
from corral.jobs.store import JobStore

log = logging.getLogger(__name__)

RunOpcode = Callable[[opcodes.OpCode, OpContext], Any]

JOB_LOST_MSG = ("Unclean master daemon shutdown: the job was interrupted by a master daemon"
                " restart while running; its outcome is unknown, check the cluster with"
                " gnt-cluster verify")
_CACHE_SIZE = 256
_WATCHED = (C.JOB_STATUS_QUEUED, C.JOB_STATUS_WAITING, C.JOB_STATUS_RUNNING)
# Seconds wait_for_job_change waits, after a change of a job that has not
# ended, for more changes to answer with.
_GATHER_S = 0.02


class JobQueue(JobExecutionMixin):
    """Persisted job queue of the master daemon.

    Args:
      db_path: SQLite database (created if missing).
      run_opcode: ``run_opcode(op, ctx) -> result`` executes one opcode in a
        worker thread; the result must be JSON-serializable.
      max_running: how many jobs run at once (Ganeti's ``max_running_jobs``).
      durable: fsync every commit (``synchronous=FULL``); tests may turn it off.

    Call :meth:`start` before use (it recovers jobs of a previous process).
    """

    def __init__(self, db_path: str | Path, run_opcode: RunOpcode,
                 max_running: int = C.DEFAULT_MAX_RUNNING_JOBS, durable: bool = True) -> None:
        self._store = JobStore(db_path, durable=durable)
        self._run_opcode = run_opcode
        self._max_running = max_running
        self._lock = threading.RLock()
        self._sched_cond = threading.Condition(self._lock)
        self._active: dict[int, QueuedJob] = {}  # unfinished jobs
        self._pending: set[int] = set()  # may be started by the scheduler
        self._heap: list[tuple[int, int]] = []  # (priority, id); stale entries skipped
        self._parked: dict[int, set[int]] = {}  # job -> unfinished dependencies
        self._dep_waiters: dict[int, set[int]] = {}  # dependency -> parked jobs
        self._running: dict[int, threading.Thread] = {}
        self._watchers: dict[int, list[Any]] = {}  # job id -> [Condition, users]
        self._cache: OrderedDict[int, QueuedJob] = OrderedDict()  # finished jobs
        self._drained = self._store.get_meta("drained") == "1"
        self._started = False
        self._stopping = False
        self._scheduler: threading.Thread | None = None
        # Job filter rules (dicts of jobs.filters.FILTER_FIELDS), read when scheduling.
        self._filter_rules: Callable[[], list[dict[str, Any]]] = list

    # ------------------------------------------------------------ lifecycle

    def start(self, on_lost: Callable[[list[tuple[int, list[dict[str, Any]]]]], None]
              | None = None,
              startup_jobs: Callable[[list[tuple[int, list[dict[str, Any]]]]],
                                     list[list[dict[str, Any]]]] | None = None) -> None:
        """Recover jobs of a previous process and start the scheduler.

        The rules are Ganeti's (``JobQueue._InspectQueue``), with one
        difference: a job is requeued only if it has done nothing yet.

        * ``queued`` jobs, and ``waiting`` jobs none of whose opcodes has
          finished, are requeued and run normally: ``waiting`` only means
          waiting for a worker, a dependency or locks, before any change (the
          opcode becomes ``running`` once its locks are held, and that is
          stored before the LU's ``check_prereq``).
        * ``running`` jobs, and jobs with an opcode already finished (a
          ``success`` followed by a ``waiting`` or ``queued`` one), get their
          unfinished opcodes ``error`` with an encoded :class:`errors.JobLost`
          ("Unclean master daemon shutdown..."); finished opcodes keep their
          result and are never run again. Ganeti requeues the second case
          (status ``waiting``); Corral does not, because the job has already
          changed the cluster and the crash may have left it in a state its
          remaining opcodes were not written for: the user decides.
        * ``canceling`` jobs become ``canceled`` (nothing of the canceled
          opcodes ran; Ganeti fails them).

        ``on_lost`` gets ``[(job_id, [opcode dicts])]`` of the jobs failed as
        lost, before any job runs (masterd reconciles the cluster with it).
        ``startup_jobs`` gets ``[(job_id, [opcode dicts])]`` of the requeued
        jobs and returns jobs to submit before the scheduler starts (masterd's
        cleanup of half-created instances; they run first if their priority
        is higher). Exceptions of both are logged, not raised; a start-up job
        the queue refuses (drained, invalid) is logged as an error.
        """
        with self._lock:
            if self._started:
                return
            lost_jobs, requeued = self._recover()
            if lost_jobs and on_lost is not None:
                try:
                    on_lost(lost_jobs)
                except Exception:  # recovery must not stop the queue
                    log.exception("Reconciling after interrupted jobs failed")
            extra: list[list[dict[str, Any]]] = []
            if startup_jobs is not None:
                try:
                    extra = startup_jobs([(j.id, [op.input for op in j.ops])
                                          for j in requeued])
                except Exception:  # recovery must not stop the queue
                    log.exception("Computing the start-up jobs failed")
            for job in sorted(requeued, key=lambda j: j.id):
                self._enqueue(job)
            self._started = True
            for ok, value in self.submit_many(extra) if extra else ():
                if ok:
                    log.warning("Submitted start-up job %s", value)
                else:
                    log.error("Could not submit a start-up job: %s", value)
            self._scheduler = threading.Thread(target=self._scheduler_loop,
                                               name="jobqueue-scheduler", daemon=True)
            self._scheduler.start()

    def _recover(self) -> tuple[list[tuple[int, list[dict[str, Any]]]], list[QueuedJob]]:
        """Apply the recovery rules of :meth:`start` to the stored unfinished jobs.

        Returns ``(lost jobs as (id, [opcode dicts]), jobs to requeue)``.
        """
        lost = errors.encode_exception(errors.JobLost(JOB_LOST_MSG))
        lost_jobs: list[tuple[int, list[dict[str, Any]]]] = []
        requeued: list[QueuedJob] = []
        for job in self._store.load_jobs(self._store.unfinished_ids()).values():
            status = job.calc_status()
            if status == C.JOB_STATUS_CANCELING:
                self._finish(job, self._first_unfinished(job), C.OP_STATUS_CANCELED,
                             CANCELED_MSG)
            elif status in (C.JOB_STATUS_QUEUED, C.JOB_STATUS_WAITING) and \
                    not any(op.status in C.JOBS_FINALIZED for op in job.ops):
                if status == C.JOB_STATUS_WAITING:
                    log.warning("Job %s was waiting at the last shutdown and had not"
                                " started; requeuing it", job.id)
                    self._requeue(job)
                requeued.append(job)
            elif status in (C.JOB_STATUS_QUEUED, C.JOB_STATUS_WAITING,
                            C.JOB_STATUS_RUNNING):
                log.warning("Job %s was %s at the last shutdown, marking it lost",
                            job.id, status)
                lost_jobs.append((job.id, [op.input for op in job.ops]))
                self._finish(job, self._first_unfinished(job), C.OP_STATUS_ERROR, lost)
            else:  # finished, only the stored status was stale
                self._store.update_job(job)
        return lost_jobs, requeued

    def _requeue(self, job: QueuedJob) -> None:
        """Turn the ``waiting`` opcodes of a job that never ran back to ``queued``."""
        changed = []
        for idx, op in enumerate(job.ops):
            if op.status == C.OP_STATUS_WAITING:
                op.status, op.start_ts = C.OP_STATUS_QUEUED, None
                changed.append(idx)
        job.start_ts = None
        self._store.update_job(job, changed)

    def stop(self, timeout: float | None = None) -> None:
        """Start no more jobs; wait up to ``timeout`` s for running ones.

        The database is closed once no worker is left.
        """
        with self._lock:
            self._stopping = True
            self._sched_cond.notify_all()
            for cond, _ in self._watchers.values():
                cond.notify_all()
            workers = list(self._running.values())
        if self._scheduler is not None:
            self._scheduler.join()
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._lock:
            if not self._running:
                self._store.close()     # writes what is still staged

    # ----------------------------------------------------------- submission

    def submit_job(self, ops: list[dict[str, Any]]) -> int:
        """Validate and queue one job; returns its id.

        Raises:
          errors.OpPrereqError: (``ECODE_INVAL``) an opcode is invalid, the
            job is empty or has a relative dependency; nothing is stored.
          errors.JobQueueDrainError: the queue is drained.
          errors.JobQueueFull: (``ECODE_TEMP_NORES``) 5000 unfinished jobs.

        Mirrors LUXI ``SubmitJob``.
        """
        validated = _validate_job(ops)
        with self._lock:
            self._check_started()
            self._check_accepting()
            with self._store.transaction():
                job_id = self._store.allocate_ids(1)[0]
                job = self._new_job(job_id, validated, [])
            self._enqueue(job)
            return job_id

    def submit_many(self, jobs: list[list[dict[str, Any]]]) -> list[tuple[bool, int | str]]:
        """Queue several jobs; negative dependency ids are relative (-1 = previous).

        Returns ``[(True, job_id) | (False, error message), ...]`` in order;
        one job failing does not stop the others. Mirrors LUXI
        ``SubmitManyJobs``.
        """
        checked: list[list[opcodes.OpCode] | str] = []
        for ops in jobs:
            try:
                checked.append(_validate_job(ops))
            except errors.CorralError as err:
                checked.append(str(err))
        results: list[tuple[bool, int | str]] = []
        with self._lock:
            self._check_started()
            added: list[QueuedJob] = []
            with self._store.transaction():
                ids = self._store.allocate_ids(len(jobs))
                for idx, (job_id, item) in enumerate(zip(ids, checked)):
                    if isinstance(item, str):
                        results.append((False, item))
                        continue
                    try:
                        self._check_accepting(extra=len(added))
                        added.append(self._new_job(job_id, item, ids[:idx]))
                    except errors.CorralError as err:
                        results.append((False, str(err)))
                        continue
                    results.append((True, job_id))
            for job in added:
                self._enqueue(job)
        return results

    # -------------------------------------------------------------- queries

    def query_jobs(self, ids: list[int] | None, fields: list[str],
                   archived: bool = False) -> list[list[Any] | None]:
        """Values of ``fields`` per job.

        ``ids=None`` lists all jobs by id (archived ones only if
        ``archived``); explicit ids are looked up anywhere, unknown ones give
        ``None``. Raises :class:`errors.OpPrereqError` for unknown fields.
        Mirrors LUXI ``QueryJobs``.
        """
        check_fields(fields)
        if ids is None:
            ids = self._store.job_ids(include_archived=archived)
        ids = [int(i) for i in ids]
        found: dict[int, list[Any]] = {}
        with self._lock:
            for job_id in ids:
                job = self._active.get(job_id) or self._cache.get(job_id)
                if job is not None:
                    self._settle(job)
                    found[job_id] = job.get_info(fields)
        # Jobs not in memory are finished; they no longer change (except the
        # archived flag), so they are read without holding the queue lock.
        missing = [i for i in ids if i not in found]
        with_log = "oplog" in fields
        for job_id, job in self._store.load_jobs(missing, with_log=with_log).items():
            found[job_id] = job.get_info(fields)
        return [found.get(i) for i in ids]

    def get_job_info(self, job_id: int) -> dict[str, Any] | None:
        """The RAPI ``J_FIELDS`` of a job as a dict, ``None`` if unknown."""
        (row,) = self.query_jobs([job_id], list(J_FIELDS))
        return None if row is None else dict(zip(J_FIELDS, row))

    def wait_for_job_change(self, job_id: int, fields: list[str], prev_job_info: Any,
                            prev_log_serial: int | None,
                            timeout: float) -> str | tuple[list[Any], list[list[Any]]]:
        """Block until the job's ``fields`` differ from ``prev_job_info`` or
        log entries newer than ``prev_log_serial`` exist.

        Returns ``(job_info, log_entries)`` or ``"nochange"`` after ``timeout``
        seconds. A job that is no longer queued/waiting/running answers at
        once; after a change of one that is, the answer waits up to 20 ms for
        more changes, so a burst of them costs the client one round trip.
        Raises :class:`errors.JobQueueError` (``ECODE_NOENT``) for an
        unknown job. Mirrors LUXI ``WaitForJobChange``.
        """
        check_fields(fields)
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            job = self._get_job(job_id)
            if job is None:
                raise errors.JobQueueError(f"Job {job_id} not found", errors.ECODE_NOENT)
            watch = self._watchers.setdefault(job_id, [threading.Condition(self._lock), 0])
            watch[1] += 1
            try:
                gather_until: float | None = None
                while True:
                    self._settle(job)
                    info = json.loads(json.dumps(job.get_info(fields)))
                    entries = job.log_entries(prev_log_serial)
                    if job.calc_status() not in _WATCHED:
                        return info, entries
                    now = time.monotonic()
                    if info != prev_job_info or entries:
                        # Changes come in bursts (log entries, then a status):
                        # answer them in one reply rather than one each.
                        if gather_until is None:
                            gather_until = min(deadline, now + _GATHER_S)
                        if now >= gather_until or self._stopping:
                            return info, entries
                        remaining = gather_until - now
                    else:
                        remaining = deadline - now
                        if remaining <= 0 or self._stopping:
                            return "nochange"
                    watch[0].wait(remaining)
            finally:
                watch[1] -= 1
                if not watch[1]:
                    del self._watchers[job_id]

    # ------------------------------------------------------------ commands

    def cancel_job(self, job_id: int, kill: bool = False) -> tuple[bool, str]:
        """Cancel a queued or waiting job. Mirrors LUXI ``CancelJob``.

        Queued (and dependency-parked) jobs are canceled at once; a job
        waiting for locks becomes ``canceling`` and its worker finishes it as
        ``canceled``. Running jobs cannot be canceled (``kill`` is not
        supported in-process: threads cannot be killed safely).
        """
        with self._lock:
            self._check_started()
            job = self._active.get(job_id)
            if job is None:
                if self._store.job_state(job_id) is None:
                    return False, f"Job {job_id} not found"
                return False, "Job no longer waiting, can't cancel"
            self._settle(job)
            status = job.calc_status()
            if status == C.JOB_STATUS_QUEUED or job_id in self._parked:
                self._finish(job, self._first_unfinished(job), C.OP_STATUS_CANCELED,
                             CANCELED_MSG)
                return True, f"Job {job_id} canceled"
            if status == C.JOB_STATUS_WAITING:
                idxs = [i for i, op in enumerate(job.ops) if op.status not in C.JOBS_FINALIZED]
                for i in idxs:
                    job.ops[i].status = C.OP_STATUS_CANCELING
                self._commit(job, idxs)
                return True, f"Job {job_id} will be canceled"
            if status == C.JOB_STATUS_CANCELING:
                return True, f"Job {job_id} will be canceled"
            if kill:
                return False, ("Job no longer waiting, can't cancel; killing a running job"
                               " is not supported")
            return False, "Job no longer waiting, can't cancel"

    def archive_job(self, job_id: int) -> bool:
        """Archive one finished job; False if unknown, unfinished or archived."""
        with self._lock:
            if job_id in self._active:
                return False
            state = self._store.job_state(job_id)
            if state is None or state[1] or state[0] not in C.JOBS_FINALIZED:
                return False
            self._mark_archived([job_id])
            return True

    def auto_archive(self, age_s: float, timeout: float) -> tuple[int, int]:
        """Archive finished jobs whose end (or start) is older than ``age_s``.

        ``age_s=-1`` archives all finished jobs. Stops after ``timeout``
        seconds. Returns ``(archived, remaining)`` where ``remaining`` is the
        number of unarchived jobs not examined. Mirrors ``AutoArchiveJobs``.
        """
        start, now = time.monotonic(), time.time()
        candidates = self._store.archive_candidates()
        examined = archived = 0
        batch: list[int] = []
        for job_id, status, ts in candidates:
            if time.monotonic() - start > timeout:
                break
            examined += 1
            if status not in C.JOBS_FINALIZED:
                continue
            if age_s != -1 and (ts is None or now - ts[0] <= age_s):
                continue
            batch.append(job_id)
            if len(batch) >= 200:
                archived += self._archive_batch(batch)
                batch = []
        archived += self._archive_batch(batch)
        return archived, len(candidates) - examined

    def set_drain_flag(self, flag: bool) -> None:
        """Refuse (True) or accept (False) new jobs; persisted."""
        with self._lock:
            self._store.set_meta("drained", "1" if flag else "0")
            self._drained = bool(flag)

    def is_drained(self) -> bool:
        with self._lock:
            return self._drained

    def change_job_priority(self, job_id: int, priority: int) -> tuple[bool, str]:
        """Change the priority of the pending opcodes of a job.

        Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``) for a priority
        outside low/normal/high. Mirrors LUXI ``ChangeJobPriority``.
        """
        if priority not in C.OP_PRIO_SUBMIT_VALID:
            allowed = ", ".join(str(p) for p in sorted(C.OP_PRIO_SUBMIT_VALID))
            raise errors.OpPrereqError(f"Invalid priority {priority}, allowed are {allowed}",
                                       errors.ECODE_INVAL)
        with self._lock:
            self._check_started()
            job = self._active.get(job_id)
            if job is None:
                if self._store.job_state(job_id) is None:
                    return False, f"Job {job_id} not found"
                return False, f"Job {job_id} is finished"
            self._settle(job)
            if job.calc_status() == C.JOB_STATUS_CANCELING:
                return False, f"Job {job_id} is cancelling"
            idxs = [i for i, op in enumerate(job.ops)
                    if op.status in (C.OP_STATUS_QUEUED, C.OP_STATUS_WAITING)]
            if not idxs:
                return False, f"Job {job_id} had no pending opcodes"
            for i in idxs:
                job.ops[i].priority = priority
            self._commit(job, idxs)
            if job_id in self._pending:
                heapq.heappush(self._heap, (job.calc_priority(), job_id))
                self._sched_cond.notify()
            return True, (f"Priorities of pending opcodes for job {job_id} have been"
                          f" changed to {priority}")

    def set_max_running(self, count: int) -> None:
        """How many jobs may run at once (0 pauses starting new ones)."""
        if count < 0:
            raise errors.OpPrereqError("max_running must not be negative", errors.ECODE_INVAL)
        with self._lock:
            self._max_running = count
            self._sched_cond.notify()

    def set_filter_rules(self, source: Callable[[], list[dict[str, Any]]]) -> None:
        """Where the scheduler reads the job filter rules from (see
        :mod:`corral.jobs.filters`); schedules again with the new rules."""
        with self._lock:
            self._filter_rules = source
            self._sched_cond.notify()

    def filters_changed(self) -> None:
        """Re-evaluate queued jobs against the (changed) filter rules: those a
        rule now rejects are canceled at once, the others are scheduled again."""
        from corral.jobs import filters as job_filters
        from corral.jobs.execution import REJECTED_MSG

        with self._lock:
            rules = self._filter_rules()
            for job_id in sorted(self._pending):
                job = self._active.get(job_id)
                if job is not None and rules and \
                        job_filters.decide(rules, job, []) == job_filters.REJECT:
                    self._pending.discard(job_id)
                    self._finish(job, self._first_unfinished(job), C.OP_STATUS_CANCELED,
                                 REJECTED_MSG)
            self._sched_cond.notify()

    def last_job_id(self) -> int:
        """The highest job id handed out so far (a filter rule's watermark)."""
        with self._lock:
            return int(self._store.get_meta("serial") or 0)

    def queue_size(self) -> int:
        """Number of unfinished jobs."""
        with self._lock:
            # A job whose end is being stored is still in _active a moment.
            return sum(1 for job in self._active.values() if not job.is_finalized())

    # ------------------------------------------------------------ internals

    def _check_started(self) -> None:
        if not self._started:
            raise errors.ProgrammerError("JobQueue.start() was not called")

    def _check_accepting(self, extra: int = 0) -> None:
        if self._drained:
            raise errors.JobQueueDrainError("Job queue is drained, refusing job")
        if len(self._active) + extra >= C.JOB_QUEUE_SIZE_HARD_LIMIT:
            raise errors.JobQueueFull(
                f"Job queue is full ({C.JOB_QUEUE_SIZE_HARD_LIMIT} unfinished jobs)")

    def _new_job(self, job_id: int, ops: list[opcodes.OpCode],
                 earlier_ids: list[int]) -> QueuedJob:
        """Build and store a job (inside a store transaction)."""
        queued = []
        for op in ops:
            if op.depends:
                op = op.model_copy(update={"depends": _resolve_deps(op.depends, earlier_ids)})
            queued.append(QueuedOpcode(input=op.to_dict(), summary=op.summary(),
                                       priority=op.priority, opcode=op))
        job = QueuedJob(job_id, queued, received_ts=now_ts())
        self._store.insert_job(job)
        return job

    def _enqueue(self, job: QueuedJob) -> None:
        """Make a stored queued job known; park it if it has to wait."""
        self._active[job.id] = job
        waiting_for = {d for d in job.dependency_ids() if d < job.id and d in self._active}
        if waiting_for:
            # Parked: waiting for its dependencies, without a worker slot.
            self._parked[job.id] = waiting_for
            for dep in waiting_for:
                self._dep_waiters.setdefault(dep, set()).add(job.id)
            self._mark_waiting(job, self._first_unfinished(job))
        else:
            self._make_pending(job)
            self._notify_job(job.id)

    def _make_pending(self, job: QueuedJob) -> None:
        self._pending.add(job.id)
        heapq.heappush(self._heap, (job.calc_priority(), job.id))
        self._sched_cond.notify()

    def _get_job(self, job_id: int) -> QueuedJob | None:
        job = self._active.get(job_id)
        if job is not None:
            return job
        job = self._cache.get(job_id)
        if job is None:
            job = self._store.load_job(job_id)
            if job is None:
                return None
        self._cache_put(job)
        return job

    def _cache_put(self, job: QueuedJob) -> None:
        self._cache[job.id] = job
        self._cache.move_to_end(job.id)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def _mark_archived(self, job_ids: list[int]) -> None:
        self._store.set_archived(job_ids)
        for job_id in job_ids:
            if job_id in self._cache:
                self._cache[job_id].archived = True

    def _archive_batch(self, job_ids: list[int]) -> int:
        if not job_ids:
            return 0
        with self._lock:
            self._mark_archived(job_ids)
        return len(job_ids)

    def _notify_job(self, job_id: int) -> None:
        watch = self._watchers.get(job_id)
        if watch is not None:
            watch[0].notify_all()

    def _commit(self, job: QueuedJob, op_indexes: list[int] | range,
                durable: bool = True) -> None:
        """Persist a changed job, then make the change visible.

        ``durable=False`` only stages the rows (written by the next group
        commit): for changes a crash may lose, e.g. ``queued`` -> ``waiting``,
        which recovery treats alike.
        """
        if durable:
            self._store.sync(self._stage(job, op_indexes))
        else:
            self._store.stage_job(job, op_indexes)
        self._publish(job)

    def _stage(self, job: QueuedJob, op_indexes: list[int] | range) -> int:
        """Stage a change that must be durable before it is seen; its ticket."""
        job.ticket = self._store.stage_job(job, op_indexes)
        return job.ticket

    def _settle(self, job: QueuedJob) -> None:
        """Before reading a job: make its last staged change durable, so
        nobody sees a state a crash could undo (usually a no-op), and publish
        it if it ended, so what the reader sees holds everywhere."""
        if not self._store.is_durable(job.ticket):
            self._store.sync(job.ticket)
        if job.id in self._active and job.is_finalized():
            self._publish(job)

    def _publish(self, job: QueuedJob) -> None:
        """Wake the job's waiters; a finished job leaves the active set and
        releases the jobs parked on it."""
        self._notify_job(job.id)
        if job.id in self._active and job.is_finalized():
            del self._active[job.id]
            self._pending.discard(job.id)
            self._parked.pop(job.id, None)
            self._cache_put(job)
            for waiter in self._dep_waiters.pop(job.id, ()):
                deps = self._parked.get(waiter)
                if deps is None:
                    continue
                deps.discard(job.id)
                if not deps:
                    del self._parked[waiter]
                    self._make_pending(self._active[waiter])
            self._sched_cond.notify()

    def _finish(self, job: QueuedJob, idx: int, status: str, result: Any) -> None:
        """Give opcode ``idx`` and all unfinished ones after it a final status."""
        now = now_ts()
        changed = []
        for i in range(idx, len(job.ops)):
            op = job.ops[i]
            if op.status in C.JOBS_FINALIZED:
                continue
            op.status, op.result = status, result
            if i == idx:
                op.end_ts = now
            changed.append(i)
        job.end_ts = now
        self._commit(job, changed)

def _validate_job(ops: Any) -> list[opcodes.OpCode]:
    """Validate the opcodes of one job (no relative dependencies resolved)."""
    if not isinstance(ops, list) or not ops:
        raise errors.OpPrereqError("A job must be a non-empty list of opcodes",
                                   errors.ECODE_INVAL)
    return [opcodes.op_from_dict(op) for op in ops]


def _resolve_deps(depends: list[Any], earlier_ids: list[int]) -> list[Any]:
    """Turn relative dependency ids (-1 = previous job) into absolute ones.

    Raises :class:`errors.OpPrereqError` if a relative id points before the
    first job of the submission.
    """
    resolved = []
    for dep_id, statuses in depends:
        if dep_id < 0:
            if -dep_id > len(earlier_ids):
                raise errors.OpPrereqError(f"Unable to resolve relative job ID {dep_id}",
                                           errors.ECODE_INVAL)
            dep_id = earlier_ids[dep_id]
        resolved.append((dep_id, list(statuses)))
    return resolved
