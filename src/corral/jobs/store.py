"""SQLite persistence of the job queue.

Replaces Ganeti's ``/var/lib/ganeti/queue`` directory (one ``job-<id>`` file
per job, the ``serial`` file, the ``drain`` flag file and ``archive/``) with
one SQLite database in WAL mode:

* ``meta``: ``serial`` (the last job id handed out, so ids are never reused),
  ``drained`` (0/1), ``version``;
* ``jobs``: one row per job (status and priority as derived from its ops,
  ``[sec, usec]`` timestamps as JSON, ``archived`` flag);
* ``opcodes``: one row per opcode (input = ``op.to_dict()``, status, result,
  priority, timestamps);
* ``log``: one row per log entry (serial increasing within a job).

Every write touches only the rows of the job that changed. Changes of
running jobs are staged and written by group commit (:meth:`JobStore.sync`):
one transaction and one fsync for the changes of all jobs staged meanwhile.
The class is thread-safe (a writer and a reader connection, each behind a
lock).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from corral import constants as C
from corral import errors
from corral.jobs.model import LogEntry, QueuedJob, QueuedOpcode

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY,
  status TEXT NOT NULL,
  priority INTEGER NOT NULL,
  received_ts TEXT,
  start_ts TEXT,
  end_ts TEXT,
  archived INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_archived ON jobs (archived, id);
CREATE TABLE IF NOT EXISTS opcodes (
  job_id INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  input TEXT NOT NULL,
  summary TEXT NOT NULL,
  status TEXT NOT NULL,
  result TEXT,
  priority INTEGER NOT NULL,
  start_ts TEXT,
  exec_ts TEXT,
  end_ts TEXT,
  PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
  job_id INTEGER NOT NULL,
  serial INTEGER NOT NULL,
  op_idx INTEGER NOT NULL,
  ts TEXT NOT NULL,
  type TEXT NOT NULL,
  message TEXT NOT NULL,
  PRIMARY KEY (job_id, serial)
) WITHOUT ROWID;
"""

_UNFINISHED = (C.JOB_STATUS_QUEUED, C.JOB_STATUS_WAITING, C.JOB_STATUS_RUNNING,
               C.JOB_STATUS_CANCELING)


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


#: What one staged change writes: the job row and opcode rows.
_Staged = tuple[tuple[Any, ...], list[tuple[Any, ...]]]


def _log_row(job_id: int, op_idx: int, entry: LogEntry) -> tuple[Any, ...]:
    serial, ts, log_type, message = entry
    return (job_id, serial, op_idx, _dump(ts), log_type, _dump(message))


def _rows(job: QueuedJob, op_indexes: Iterable[int]) -> _Staged:
    """Rows of the job and of its opcodes ``op_indexes``."""
    job_row = (job.calc_status(), job.calc_priority(), _dump(job.start_ts),
               _dump(job.end_ts), job.id)
    op_rows = [(op.status, _dump(op.result), op.priority, _dump(op.start_ts),
                _dump(op.exec_ts), _dump(op.end_ts), job.id, idx)
               for idx in op_indexes for op in (job.ops[idx],)]
    return job_row, op_rows


def _connect(path: Path, durable: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                           timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a job acknowledged to a client survives a power loss too. NORMAL
    # (in WAL mode): a commit survives a crash of this process, and the next
    # FULL commit's fsync of the log file makes it durable too.
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    return conn


class JobStore:
    """The job queue database at ``path`` (created if missing).

    Writes go through one connection in explicit transactions; reads use a
    second one and see only committed (so durable) data. Besides
    :meth:`transaction`, changes of running jobs may be *staged*
    (:meth:`stage_job`, cheap) and made durable later by :meth:`sync`: the
    first thread to sync writes everything staged so far by every thread in
    one transaction (one fsync), the others find their change already
    durable (group commit). Staged changes are written in staging order.
    Job log entries are staged apart (:meth:`stage_log`) and written by
    :meth:`write_logs` or the next transaction, whichever comes first,
    without an fsync of their own.

    Raises:
      errors.JobQueueError: the database has an unknown schema version.
    """

    def __init__(self, path: str | Path, durable: bool = True) -> None:
        self.path = Path(path)
        self._wlock = threading.RLock()     # the writer connection, transactions
        self._depth = 0
        self._wconn = _connect(self.path, durable)
        self._lconn = _connect(self.path, False)   # log rows: no fsync (see write_logs)
        self._stage_lock = threading.Lock()  # _staged, _log_rows and the tickets
        self._staged: list[_Staged] = []
        self._log_rows: list[tuple[Any, ...]] = []
        self._last_ticket = 0                # last handed out by stage_job
        self._durable_ticket = 0             # last written by a committed transaction
        with self.transaction():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._wconn.execute(stmt)
            version = self.get_meta("version")
            if version is None:
                self.set_meta("version", str(SCHEMA_VERSION))
                self.set_meta("serial", "0")
                self.set_meta("drained", "0")
        if version is not None and int(version) != SCHEMA_VERSION:
            self._wconn.close()
            raise errors.JobQueueError(
                f"Job queue {self.path} has schema version {version},"
                f" expected {SCHEMA_VERSION}", errors.ECODE_ENVIRON)
        self._lock = threading.RLock()      # the reader connection
        self._conn = _connect(self.path, durable)

    def close(self) -> None:
        """Write what is staged, then close both connections."""
        self.sync(self._last_ticket)
        with self._wlock, self._lock:
            self._wconn.close()
            self._lconn.close()
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested uses join the outer one.

        Changes staged before it starts are written in it first.
        """
        with self._wlock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._wconn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            with self._stage_lock:
                batch, self._staged = self._staged, []
                logs, self._log_rows = self._log_rows, []
                upto = self._last_ticket
            try:
                for job_row, op_rows in batch:
                    self._write_rows(job_row, op_rows, [])
                self._write_rows(None, [], logs)
                yield
                self._depth = 0
                self._wconn.execute("COMMIT")
            except BaseException:
                self._depth = 0
                if self._wconn.in_transaction:
                    self._wconn.execute("ROLLBACK")
                with self._stage_lock:      # still to be written, in order
                    self._staged[:0] = batch
                    self._log_rows[:0] = logs
                raise
            self._durable_ticket = max(self._durable_ticket, upto)

    # ---------------------------------------------------------------- meta

    def get_meta(self, key: str) -> str | None:
        with self._wlock:
            row = self._wconn.execute("SELECT value FROM meta WHERE key = ?",
                                      (key,)).fetchone()
            return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._wconn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def allocate_ids(self, count: int) -> list[int]:
        """Hand out ``count`` new job ids (persisted; never handed out again)."""
        with self.transaction():
            last = int(self.get_meta("serial") or 0)
            self.set_meta("serial", str(last + count))
            return list(range(last + 1, last + count + 1))

    # -------------------------------------------------------------- writes

    def insert_job(self, job: QueuedJob) -> None:
        """Store a new job with its opcodes."""
        with self.transaction():
            self._wconn.execute(
                "INSERT INTO jobs (id, status, priority, received_ts, start_ts, end_ts,"
                " archived) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.calc_status(), job.calc_priority(), _dump(job.received_ts),
                 _dump(job.start_ts), _dump(job.end_ts), int(job.archived)))
            self._wconn.executemany(
                "INSERT INTO opcodes (job_id, idx, input, summary, status, result, priority,"
                " start_ts, exec_ts, end_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(job.id, idx, _dump(op.input), op.summary, op.status, _dump(op.result),
                  op.priority, _dump(op.start_ts), _dump(op.exec_ts), _dump(op.end_ts))
                 for idx, op in enumerate(job.ops)])

    def update_job(self, job: QueuedJob, op_indexes: Iterable[int] = ()) -> None:
        """Write the job row and the rows of the opcodes ``op_indexes``,
        durably, now (with everything staged before)."""
        with self.transaction():
            self._write_rows(*_rows(job, op_indexes), [])

    def stage_job(self, job: QueuedJob, op_indexes: Iterable[int] = ()) -> int:
        """Stage what :meth:`update_job` writes (as of now) for the next
        transaction; returns the ticket to pass to :meth:`sync`."""
        staged = _rows(job, op_indexes)
        with self._stage_lock:
            self._staged.append(staged)
            self._last_ticket += 1
            return self._last_ticket

    def sync(self, ticket: int) -> None:
        """Return once the change staged as ``ticket`` (and every earlier one)
        is durable, writing the staged changes of all threads if needed.

        Raises :class:`errors.ProgrammerError` inside a transaction (its
        commit, not this call, would make the change durable).
        """
        if self._durable_ticket >= ticket:
            return
        with self._wlock:
            if self._durable_ticket >= ticket:
                return          # written by another thread's transaction meanwhile
            if self._depth:
                raise errors.ProgrammerError("JobStore.sync() inside a transaction")
            with self.transaction():
                pass

    def is_durable(self, ticket: int) -> bool:
        """True when the change staged as ``ticket`` is durable."""
        return self._durable_ticket >= ticket

    def add_log(self, job_id: int, op_idx: int, entry: LogEntry) -> None:
        """Append one ``[serial, ts, type, message]`` entry of opcode ``op_idx``."""
        with self.transaction():
            self._write_rows(None, [], [_log_row(job_id, op_idx, entry)])

    def stage_log(self, job_id: int, op_idx: int, entry: LogEntry) -> None:
        """Stage a log entry for :meth:`write_logs` or the next transaction."""
        row = _log_row(job_id, op_idx, entry)
        with self._stage_lock:
            self._log_rows.append(row)

    def write_logs(self) -> None:
        """Write the staged log entries of all threads in one transaction
        without fsync: they survive a crash of this process at once, and a
        power loss once the next state change is durable."""
        if not self._log_rows:
            return
        with self._wlock:
            with self._stage_lock:
                rows, self._log_rows = self._log_rows, []
            if not rows:
                return              # written by another thread meanwhile
            conn = self._lconn
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR IGNORE INTO log (job_id, serial, op_idx, ts, type, message)"
                    " VALUES (?, ?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                with self._stage_lock:
                    self._log_rows[:0] = rows
                raise

    def set_archived(self, job_ids: Iterable[int]) -> None:
        with self.transaction():
            self._wconn.executemany("UPDATE jobs SET archived = 1 WHERE id = ?",
                                    [(i,) for i in job_ids])

    def _write_rows(self, job_row: tuple[Any, ...] | None, op_rows: list[tuple[Any, ...]],
                    log_rows: list[tuple[Any, ...]]) -> None:
        """Inside a transaction: write rows made by :func:`_rows`."""
        if job_row is not None:
            self._wconn.execute(
                "UPDATE jobs SET status = ?, priority = ?, start_ts = ?, end_ts = ?"
                " WHERE id = ?", job_row)
        if op_rows:
            self._wconn.executemany(
                "UPDATE opcodes SET status = ?, result = ?, priority = ?, start_ts = ?,"
                " exec_ts = ?, end_ts = ? WHERE job_id = ? AND idx = ?", op_rows)
        if log_rows:
            # OR IGNORE: a log row staged twice (a failed transaction retried).
            self._wconn.executemany(
                "INSERT OR IGNORE INTO log (job_id, serial, op_idx, ts, type, message)"
                " VALUES (?, ?, ?, ?, ?, ?)", log_rows)

    # --------------------------------------------------------------- reads

    def job_ids(self, include_archived: bool = False) -> list[int]:
        """Ids of stored jobs in increasing order."""
        with self._lock:
            sql = "SELECT id FROM jobs" if include_archived else \
                "SELECT id FROM jobs WHERE archived = 0"
            return [r[0] for r in self._conn.execute(sql + " ORDER BY id")]

    def unfinished_ids(self) -> list[int]:
        with self._lock:
            marks = ",".join("?" * len(_UNFINISHED))
            return [r[0] for r in self._conn.execute(
                f"SELECT id FROM jobs WHERE status IN ({marks}) ORDER BY id", _UNFINISHED)]

    def job_state(self, job_id: int) -> tuple[str, bool] | None:
        """Stored ``(status, archived)`` of a job, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute("SELECT status, archived FROM jobs WHERE id = ?",
                                     (job_id,)).fetchone()
            return (row[0], bool(row[1])) if row else None

    def archive_candidates(self) -> list[tuple[int, str, Any]]:
        """``(id, status, end_ts or start_ts or received_ts)`` of unarchived jobs."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, status, coalesce(end_ts, start_ts, received_ts) FROM jobs"
                " WHERE archived = 0 ORDER BY id").fetchall()
        return [(r[0], r[1], _load(r[2])) for r in rows]

    def load_job(self, job_id: int, with_log: bool = True) -> QueuedJob | None:
        return self.load_jobs([job_id], with_log).get(job_id)

    def load_jobs(self, job_ids: list[int], with_log: bool = True) -> dict[int, QueuedJob]:
        """Load jobs by id; unknown ids are missing from the result."""
        jobs: dict[int, QueuedJob] = {}
        with self._lock:
            for start in range(0, len(job_ids), 500):
                chunk = job_ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(
                        "SELECT id, received_ts, start_ts, end_ts, archived FROM jobs"
                        f" WHERE id IN ({marks})", chunk):
                    jobs[row[0]] = QueuedJob(row[0], [], _load(row[1]), _load(row[2]),
                                             _load(row[3]), bool(row[4]))
                for row in self._conn.execute(
                        "SELECT job_id, input, summary, status, result, priority, start_ts,"
                        f" exec_ts, end_ts FROM opcodes WHERE job_id IN ({marks})"
                        " ORDER BY job_id, idx", chunk):
                    jobs[row[0]].ops.append(QueuedOpcode(
                        input=_load(row[1]), summary=row[2], status=row[3],
                        result=_load(row[4]), priority=row[5], start_ts=_load(row[6]),
                        exec_ts=_load(row[7]), end_ts=_load(row[8])))
                if not with_log:
                    continue
                for row in self._conn.execute(
                        "SELECT job_id, serial, op_idx, ts, type, message FROM log"
                        f" WHERE job_id IN ({marks}) ORDER BY job_id, serial", chunk):
                    job = jobs[row[0]]
                    job.ops[row[2]].log.append([row[1], _load(row[3]), row[4], _load(row[5])])
                    job.log_serial = max(job.log_serial, row[1])
        return jobs
