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

Every write touches only the rows of the job that changed, inside one
transaction. The class is thread-safe (one connection behind a lock).
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


class JobStore:
    """The job queue database at ``path`` (created if missing).

    Raises:
      errors.JobQueueError: the database has an unknown schema version.
    """

    def __init__(self, path: str | Path, durable: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(str(self.path), isolation_level=None,
                                     check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a job acknowledged to a client survives a power loss too.
        self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        with self.transaction():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._conn.execute(stmt)
            version = self.get_meta("version")
            if version is None:
                self.set_meta("version", str(SCHEMA_VERSION))
                self.set_meta("serial", "0")
                self.set_meta("drained", "0")
            elif int(version) != SCHEMA_VERSION:
                raise errors.JobQueueError(
                    f"Job queue {self.path} has schema version {version},"
                    f" expected {SCHEMA_VERSION}", errors.ECODE_ENVIRON)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested uses join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._conn.execute("ROLLBACK")
                raise
            self._depth = 0
            self._conn.execute("COMMIT")

    # ---------------------------------------------------------------- meta

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._conn.execute(
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
            self._conn.execute(
                "INSERT INTO jobs (id, status, priority, received_ts, start_ts, end_ts,"
                " archived) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.calc_status(), job.calc_priority(), _dump(job.received_ts),
                 _dump(job.start_ts), _dump(job.end_ts), int(job.archived)))
            self._conn.executemany(
                "INSERT INTO opcodes (job_id, idx, input, summary, status, result, priority,"
                " start_ts, exec_ts, end_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(job.id, idx, _dump(op.input), op.summary, op.status, _dump(op.result),
                  op.priority, _dump(op.start_ts), _dump(op.exec_ts), _dump(op.end_ts))
                 for idx, op in enumerate(job.ops)])

    def update_job(self, job: QueuedJob, op_indexes: Iterable[int] = ()) -> None:
        """Write the job row and the rows of the opcodes ``op_indexes``."""
        with self.transaction():
            self._conn.execute(
                "UPDATE jobs SET status = ?, priority = ?, start_ts = ?, end_ts = ?"
                " WHERE id = ?",
                (job.calc_status(), job.calc_priority(), _dump(job.start_ts),
                 _dump(job.end_ts), job.id))
            self._conn.executemany(
                "UPDATE opcodes SET status = ?, result = ?, priority = ?, start_ts = ?,"
                " exec_ts = ?, end_ts = ? WHERE job_id = ? AND idx = ?",
                [(op.status, _dump(op.result), op.priority, _dump(op.start_ts),
                  _dump(op.exec_ts), _dump(op.end_ts), job.id, idx)
                 for idx in op_indexes for op in (job.ops[idx],)])

    def add_log(self, job_id: int, op_idx: int, entry: LogEntry) -> None:
        """Append one ``[serial, ts, type, message]`` entry of opcode ``op_idx``."""
        serial, ts, log_type, message = entry
        with self.transaction():
            self._conn.execute(
                "INSERT INTO log (job_id, serial, op_idx, ts, type, message)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, serial, op_idx, _dump(ts), log_type, _dump(message)))

    def set_archived(self, job_ids: Iterable[int]) -> None:
        with self.transaction():
            self._conn.executemany("UPDATE jobs SET archived = 1 WHERE id = ?",
                                   [(i,) for i in job_ids])

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
