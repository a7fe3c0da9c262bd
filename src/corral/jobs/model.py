"""In-memory job and opcode records, status rules and job query fields.

Mirrors Ganeti's ``jqueue._QueuedJob`` / ``_QueuedOpCode`` (``CalcStatus``,
``CalcPriority``, ``GetInfo``) and the job fields of ``query.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral import constants as C
from corral import errors

#: A timestamp as Ganeti stores it: ``[seconds, microseconds]``.
Timestamp = list[int]
#: A log entry: ``[serial, [sec, usec], type, message]``.
LogEntry = list[Any]


def now_ts() -> Timestamp:
    """The current time as ``[seconds, microseconds]``."""
    sec, frac = divmod(time.time(), 1)
    return [int(sec), int(frac * 1_000_000)]


@dataclass
class QueuedOpcode:
    """One opcode of a job: its input (``op.to_dict()``) and progress."""

    input: dict[str, Any]
    summary: str
    priority: int
    status: str = C.OP_STATUS_QUEUED
    result: Any = None
    start_ts: Timestamp | None = None
    exec_ts: Timestamp | None = None
    end_ts: Timestamp | None = None
    log: list[LogEntry] = field(default_factory=list)
    #: The validated opcode, kept for jobs submitted by this process (not stored).
    opcode: Any = field(default=None, repr=False, compare=False)


@dataclass
class QueuedJob:
    """A job: ordered opcodes plus timestamps; status is derived from the ops."""

    id: int
    ops: list[QueuedOpcode]
    received_ts: Timestamp | None = None
    start_ts: Timestamp | None = None
    end_ts: Timestamp | None = None
    archived: bool = False
    log_serial: int = 0
    #: Store ticket of the last change that must be durable before anyone
    #: sees it (:meth:`corral.jobs.store.JobStore.sync`; not stored).
    ticket: int = field(default=0, repr=False, compare=False)

    def calc_status(self) -> str:
        """Job status from the opcode statuses (Ganeti's ``CalcStatus``)."""
        status = C.JOB_STATUS_QUEUED
        all_success = True
        for op in self.ops:
            if op.status == C.OP_STATUS_SUCCESS:
                continue
            all_success = False
            if op.status == C.OP_STATUS_QUEUED:
                continue
            status = op.status
            if op.status in (C.OP_STATUS_CANCELING, C.OP_STATUS_CANCELED,
                             C.OP_STATUS_ERROR):
                break
        return C.JOB_STATUS_SUCCESS if all_success else status

    def calc_priority(self) -> int:
        """Minimum priority of the unfinished opcodes (default if none)."""
        prios = [op.priority for op in self.ops if op.status not in C.JOBS_FINALIZED]
        return min(prios) if prios else C.OP_PRIO_DEFAULT

    def is_finalized(self) -> bool:
        return self.calc_status() in C.JOBS_FINALIZED

    def log_entries(self, after_serial: int | None) -> list[LogEntry]:
        """Log entries of all ops with a serial above ``after_serial``, in order."""
        floor = -1 if after_serial is None else after_serial
        entries = [e for op in self.ops for e in op.log if e[0] > floor]
        entries.sort(key=lambda e: e[0])
        return entries

    def get_info(self, fields: list[str]) -> list[Any]:
        """Values of ``fields`` (see :data:`JOB_FIELDS`) in order.

        Raises:
          errors.OpPrereqError: (``ECODE_INVAL``) unknown field.
        """
        values = []
        for name in fields:
            getter = JOB_FIELDS.get(name)
            if getter is None:
                raise errors.OpPrereqError(f"Unknown job field '{name}'", errors.ECODE_INVAL)
            values.append(getter(self))
        return values

    def dependency_ids(self) -> set[int]:
        """Ids of the jobs any opcode of this job depends on."""
        deps = set()
        for op in self.ops:
            for dep in op.input.get("depends") or ():
                deps.add(int(dep[0]))
        return deps


def _ts(value: Timestamp | None) -> Timestamp | None:
    return list(value) if value is not None else None


JOB_FIELDS: dict[str, Callable[[QueuedJob], Any]] = {
    "id": lambda j: j.id,
    "status": lambda j: j.calc_status(),
    "priority": lambda j: j.calc_priority(),
    "archived": lambda j: j.archived,
    "summary": lambda j: [op.summary for op in j.ops],
    "ops": lambda j: [dict(op.input) for op in j.ops],
    "opstatus": lambda j: [op.status for op in j.ops],
    "opresult": lambda j: [op.result for op in j.ops],
    "oplog": lambda j: [[list(e) for e in op.log] for op in j.ops],
    "opstart": lambda j: [_ts(op.start_ts) for op in j.ops],
    "opexec": lambda j: [_ts(op.exec_ts) for op in j.ops],
    "opend": lambda j: [_ts(op.end_ts) for op in j.ops],
    "oppriority": lambda j: [op.priority for op in j.ops],
    "received_ts": lambda j: _ts(j.received_ts),
    "start_ts": lambda j: _ts(j.start_ts),
    "end_ts": lambda j: _ts(j.end_ts),
}
"""Job query fields (Ganeti's ``gnt-job list -o`` / ``QueryJobs`` names)."""

#: Fields of ``GET /2/jobs/<id>`` (RAPI ``J_FIELDS``).
J_FIELDS = ("id", "ops", "status", "summary", "opstatus", "opresult", "oplog",
            "received_ts", "start_ts", "end_ts")
#: Fields of ``GET /2/jobs?bulk=1`` (RAPI ``J_FIELDS_BULK``).
J_FIELDS_BULK = ("id", "ops", "status", "summary", "opstatus", "received_ts",
                 "start_ts", "end_ts")


def check_fields(fields: list[str]) -> None:
    """Raise :class:`errors.OpPrereqError` (``ECODE_INVAL``) for unknown fields."""
    unknown = [f for f in fields if f not in JOB_FIELDS]
    if unknown:
        raise errors.OpPrereqError(f"Unknown job field(s): {', '.join(unknown)}",
                                   errors.ECODE_INVAL)
