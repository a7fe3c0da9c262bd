"""The master's request boundary: the LUXI methods as Python calls.

Mirrors the request handlers of Ganeti's ``luxid`` (``Ganeti.Query.Server``)
and of the 2.x Python ``masterd`` (``ClientOps``): job submission and
control go to the job queue, queries are answered from the config store (and
the nodes, for live data). Both the client API (:mod:`corral.masterd.api`)
and RAPI call this class in-process; errors are :mod:`corral.errors`
classes, encoded on the wire by the callers.
"""

from __future__ import annotations

import logging
import operator
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral import constants as C
from corral import errors
from corral.masterd.livecache import LIVE_DATA_TTL, LiveDataCache

if TYPE_CHECKING:
    from corral.jobs import JobQueue
    from corral.masterd.context import MasterContext

log = logging.getLogger(__name__)

# WaitForJobChange blocks a server thread; never longer than this (seconds).
MAX_WAIT_FOR_JOB_CHANGE = 30.0
# Query results kept for reuse (see Master._rows), in cells (rows x fields)
# over all entries: room for lists of 10,000 instances, not for a
# 35-field RAPI bulk result of that size (~30 MiB that could only be reused
# within the live data's quarter of a second).
ROWS_CACHE_CELLS = 250_000
# Default lifetime of a node join token (seconds).
DEFAULT_JOIN_TOKEN_TTL = 3600

# Resources of Query/QueryFields (Ganeti's QR_* names) that Corral answers.
QR_INSTANCE = "instance"
QR_NODE = "node"
QR_GROUP = "group"
QR_OS = "os"
QR_JOB = "job"
QR_LOCK = "lock"
QR_FILTER = "filter"
QR_EXPORT = "export"

# Keys of QueryConfigValues (``LUClusterConfigQuery`` in Ganeti).
CONFIG_VALUE_FIELDS = ("cluster_name", "master_node", "drain_flag", "watcher_pause",
                       "volume_group_name", "master_ip", "rapi_port")

TAG_KINDS = (C.TAG_CLUSTER, C.TAG_NODEGROUP, C.TAG_NODE, C.TAG_INSTANCE, C.TAG_NETWORK)


def _check_list_of_str(value: Any, what: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise errors.OpPrereqError(f"{what} must be a list of strings", errors.ECODE_INVAL)
    return list(value)


def _job_id(value: Any) -> int:
    """A job id from an int or a digit string; ``OpPrereqError`` ECODE_INVAL otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise errors.OpPrereqError(f"Invalid job id {value!r}", errors.ECODE_INVAL)
    try:
        return int(value)
    except ValueError:
        raise errors.OpPrereqError(f"Invalid job id {value!r}", errors.ECODE_INVAL) from None


def _number(value: Any, what: str, kind: type = int) -> Any:
    """``value`` as ``kind`` (int/float); ``OpPrereqError`` ECODE_INVAL otherwise."""
    if isinstance(value, bool):
        raise errors.OpPrereqError(f"Invalid {what} {value!r}", errors.ECODE_INVAL)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise errors.OpPrereqError(f"Invalid {what} {value!r}", errors.ECODE_INVAL) from None


def _check_names(names: Any) -> list[str] | None:
    """``None`` or an empty list means "all"; otherwise a list of names."""
    if names is None:
        return None
    names = _check_list_of_str(names, "Names")
    return names or None


# Result statuses of new-style queries (Ganeti's RS_*).
RS_NORMAL = 0
RS_UNKNOWN = 1

# The field that names an object of each resource (for name lists and filters).
_NAME_FIELD = {QR_JOB: "id", QR_FILTER: "uuid", QR_EXPORT: "node"}


def _field(name: str, title: str, kind: str, doc: str = "") -> dict[str, Any]:
    return {"name": name, "title": title, "kind": kind, "doc": doc}


def _unknown_field(name: str) -> dict[str, Any]:
    return _field(name, name, "unknown", f"Unknown field '{name}'")


_JOB_FIELD_DEFS = {
    "id": _field("id", "ID", "number", "Job ID"),
    "status": _field("status", "Status", "text", "Job status"),
    "priority": _field("priority", "Prio", "number", "Current job priority"),
    "summary": _field("summary", "Summary", "other", "List of opcode summaries"),
    "ops": _field("ops", "OpCodes", "other", "List of all opcodes"),
    "opstatus": _field("opstatus", "OpCode_status", "other", "List of opcode statuses"),
    "opresult": _field("opresult", "OpCode_result", "other", "List of opcode results"),
    "oplog": _field("oplog", "OpCode_log", "other", "List of opcode output logs"),
    "received_ts": _field("received_ts", "Received", "other", "Timestamp of job submission"),
    "start_ts": _field("start_ts", "Start", "other", "Timestamp of job start"),
    "end_ts": _field("end_ts", "End", "other", "Timestamp of job end"),
}
_LOCK_FIELD_DEFS = {
    "name": _field("name", "Name", "text", "Lock name"),
    "mode": _field("mode", "Mode", "other", "Mode in which the lock is currently acquired"),
    "owner": _field("owner", "Owner", "other", "Current lock owner(s)"),
    "pending": _field("pending", "Pending", "other", "Jobs waiting for the lock"),
}

_FILTER_LOGIC = frozenset({"|", "&"})
_FILTER_BINARY = frozenset({"=", "!=", "==", "=~", "<", ">", "<=", ">=", "=[]"})
_FILTER_OPS = _FILTER_LOGIC | _FILTER_BINARY | {"!", "?"}

Predicate = Callable[[dict[str, tuple[int, Any]]], bool]


def _bad_filter(qfilter: Any, why: str) -> errors.OpPrereqError:
    return errors.OpPrereqError(f"Invalid query filter {qfilter!r}: {why}", errors.ECODE_INVAL)


def _simple_names(qfilter: list[Any], name_field: str) -> list[str] | None:
    """Names of a filter that only selects by name (``qlang.MakeSimpleFilter``)."""
    def one(f: Any) -> str | None:
        if isinstance(f, list) and len(f) == 3 and f[0] in ("=", "==") \
                and f[1] == name_field and isinstance(f[2], (str, int)):
            return str(f[2])
        return None

    if qfilter and qfilter[0] == "|":
        names = [one(f) for f in qfilter[1:]]
        return names if names and all(n is not None for n in names) else None  # type: ignore[return-value]
    name = one(qfilter)
    return None if name is None else [name]


def compile_filter(qfilter: Any, name_field: str = "name"
                   ) -> tuple[list[str] | None, Predicate | None, list[str]]:
    """Turn a LUXI query filter into ``(names, predicate, fields_used)``.

    ``None`` selects everything; a list of names (strings not starting with
    an operator) or a filter that only selects by name yields ``names``;
    any other filter yields a predicate over ``{field: (status, value)}``
    and the fields it reads. Mirrors ``ganeti.qlang``/``query._CompileFilter``.
    Raises ``OpPrereqError`` (ECODE_INVAL) for a malformed filter.
    """
    if qfilter is None or qfilter == []:
        return None, None, []
    if not isinstance(qfilter, list):
        raise _bad_filter(qfilter, "not a list")
    if not isinstance(qfilter[0], str) or qfilter[0] not in _FILTER_OPS:
        # A plain list of names (or of job ids).
        if all(isinstance(n, str) for n in qfilter) or \
                all(isinstance(n, int) and not isinstance(n, bool) for n in qfilter):
            return [str(n) for n in qfilter], None, []
        raise _bad_filter(qfilter, f"unknown operator {qfilter[0]!r}")
    names = _simple_names(qfilter, name_field)
    if names is not None:
        return names, None, []
    used: list[str] = []
    predicate = _compile(qfilter, used)
    return None, predicate, used


def compile_predicate(qfilter: Any) -> Predicate:
    """A query filter expression as a predicate over ``{field: (status,
    value)}`` (job filter rules); ``OpPrereqError`` (ECODE_INVAL) if malformed."""
    return _compile(qfilter, [])


def _compile(f: Any, used: list[str]) -> Predicate:
    if not isinstance(f, list) or not f or not isinstance(f[0], str) \
            or f[0] not in _FILTER_OPS:
        raise _bad_filter(f, "expected [operator, ...]")
    op = f[0]
    if op in _FILTER_LOGIC:
        subs = [_compile(sub, used) for sub in f[1:]]
        if op == "|":
            return lambda row: any(s(row) for s in subs)
        return lambda row: all(s(row) for s in subs)
    if op == "!":
        if len(f) != 2:
            raise _bad_filter(f, "'!' takes one operand")
        sub = _compile(f[1], used)
        return lambda row: not sub(row)
    if len(f) != (2 if op == "?" else 3) or not isinstance(f[1], str):
        raise _bad_filter(f, f"bad operands for {op!r}")
    field_name = f[1]
    if field_name not in used:
        used.append(field_name)
    if op == "?":
        return lambda row: row[field_name][0] == RS_NORMAL and bool(row[field_name][1])
    operand = f[2]
    if op == "=~":
        try:
            regex = re.compile(str(operand))
        except re.error as exc:
            raise _bad_filter(f, f"bad regular expression: {exc}") from None
        test: Callable[[Any], bool] = lambda v: v is not None and bool(regex.search(str(v)))
    elif op == "=[]":
        test = lambda v: isinstance(v, list) and operand in v
    else:
        compare = {"=": operator.eq, "==": operator.eq, "!=": operator.ne,
                   "<": operator.lt, ">": operator.gt, "<=": operator.le,
                   ">=": operator.ge}[op]

        def test(v: Any) -> bool:
            try:
                return bool(compare(v, operand))
            except TypeError:
                return False

    return lambda row: row[field_name][0] == RS_NORMAL and test(row[field_name][1])


class _RowsCache:
    """Query rows by (resource, fields, names), valid for one config serial
    and one live data snapshot, bounded by ``max_cells`` in all.

    Entries of another serial, and entries with live data older than the
    live cache's TTL (a new snapshot is gathered then, so they cannot match
    again), are dropped at every access; the oldest go first when full.
    """

    def __init__(self, max_cells: int) -> None:
        self.max_cells = max_cells
        self._lock = threading.Lock()
        # key -> (serial, live data or None, rows, cells, monotonic time stored)
        self._entries: dict[tuple[Any, ...], tuple[int, Any, list[Any], int, float]] = {}
        self._cells = 0

    def _prune(self, serial: int) -> None:
        too_old = time.monotonic() - LIVE_DATA_TTL
        for key, (e_serial, live, _rows, cells, stored) in list(self._entries.items()):
            if e_serial != serial or (live is not None and stored < too_old):
                del self._entries[key]
                self._cells -= cells

    def get(self, key: tuple[Any, ...], serial: int, live: Any) -> list[Any] | None:
        with self._lock:
            self._prune(serial)
            entry = self._entries.get(key)
        if entry is not None and entry[1] is live:
            return entry[2]
        return None

    def put(self, key: tuple[Any, ...], serial: int, live: Any, rows: list[Any],
            cells: int) -> None:
        if cells > self.max_cells:
            return
        with self._lock:
            self._prune(serial)
            old = self._entries.pop(key, None)
            if old is not None:
                self._cells -= old[3]
            while self._entries and self._cells + cells > self.max_cells:
                oldest = next(iter(self._entries))
                self._cells -= self._entries.pop(oldest)[3]
            # The entry holds ``live`` itself, so its identity cannot be reused.
            self._entries[key] = (serial, live, rows, cells, time.monotonic())
            self._cells += cells

    @property
    def cells(self) -> int:
        """Cells held now."""
        return self._cells


class Master:
    """The LUXI-equivalent operations of masterd (all methods are thread-safe
    and may block, so servers call them from a thread pool)."""

    def __init__(self, context: MasterContext) -> None:
        self.context = context
        self._live = LiveDataCache()
        self._field_defs_cache: dict[str, dict[str, dict[str, Any]]] = {}
        self._rows_cache = _RowsCache(ROWS_CACHE_CELLS)
        from corral.query import FilledParams
        self._params = FilledParams()

    # -- helpers ------------------------------------------------------------------
    @property
    def queue(self) -> JobQueue:
        queue = self.context.queue
        if queue is None:
            raise errors.ProgrammerError("The job queue is not set up")
        return queue

    @property
    def cfg(self):
        return self.context.cfg

    # -- jobs -----------------------------------------------------------------------
    def submit_job(self, ops: list[dict[str, Any]]) -> int:
        """Queue one job of opcodes (``SubmitJob``) and return its id.

        Raises ``OpPrereqError`` (ECODE_INVAL) for invalid opcodes,
        ``JobQueueDrainError`` when drained, ``JobQueueFull`` when full.
        """
        if not isinstance(ops, list) or not ops:
            raise errors.OpPrereqError("A job needs a non-empty list of opcodes",
                                       errors.ECODE_INVAL)
        return self.queue.submit_job(ops)

    def submit_many(self, jobs: list[list[dict[str, Any]]]) -> list[tuple[bool, int | str]]:
        """Queue several jobs (``SubmitManyJobs``): ``[(ok, job_id or error)]``.

        Negative ids in ``depends`` are relative to this submission.
        """
        if not isinstance(jobs, list):
            raise errors.OpPrereqError("SubmitManyJobs needs a list of jobs",
                                       errors.ECODE_INVAL)
        return self.queue.submit_many(jobs)

    def wait_for_job_change(self, job_id: int, fields: list[str], prev_job_info: Any,
                            prev_log_serial: int | None, timeout: float
                            ) -> str | tuple[list[Any], list[Any]]:
        """Block until ``fields`` or the log of a job change (``WaitForJobChange``).

        ``timeout`` (seconds) is capped at :data:`MAX_WAIT_FOR_JOB_CHANGE`.
        Returns ``"nochange"`` or ``(job_info, new_log_entries)``; log
        entries are ``[serial, [sec, usec], type, message]``.
        """
        fields = _check_list_of_str(fields, "Fields")
        timeout = max(0.0, min(_number(timeout, "timeout", float), MAX_WAIT_FOR_JOB_CHANGE))
        return self.queue.wait_for_job_change(_job_id(job_id), fields, prev_job_info,
                                              prev_log_serial, timeout)

    def cancel_job(self, job_id: int, kill: bool = False) -> tuple[bool, str]:
        """Cancel a queued or waiting job (``CancelJob``): ``(success, message)``."""
        return self.queue.cancel_job(_job_id(job_id), kill=bool(kill))

    def archive_job(self, job_id: int) -> bool:
        """Archive a finished job (``ArchiveJob``)."""
        return self.queue.archive_job(_job_id(job_id))

    def auto_archive(self, age: int, timeout: float) -> tuple[int, int]:
        """Archive finished jobs older than ``age`` seconds (-1: all) within
        ``timeout`` seconds (``AutoArchiveJobs``): ``(archived, remaining)``."""
        return self.queue.auto_archive(_number(age, "age"), _number(timeout, "timeout", float))

    def change_job_priority(self, job_id: int, priority: int) -> tuple[bool, str]:
        """Change the priority of a queued or waiting job (``ChangeJobPriority``)."""
        return self.queue.change_job_priority(_job_id(job_id), _number(priority, "priority"))

    def set_drain_flag(self, flag: bool) -> bool:
        """Drain (True) or undrain the queue (``SetDrainFlag``)."""
        self.queue.set_drain_flag(bool(flag))
        return True

    def query_jobs(self, job_ids: list[int] | None, fields: list[str],
                   archived: bool = False) -> list[list[Any] | None]:
        """Field values of jobs (``QueryJobs``); ``None`` rows for unknown ids."""
        fields = _check_list_of_str(fields, "Fields")
        ids = None if not job_ids else [_job_id(j) for j in job_ids]
        return self.queue.query_jobs(ids, fields, archived=bool(archived))

    def get_job_info(self, job_id: int) -> dict[str, Any] | None:
        """RAPI's ``J_FIELDS`` dict of one job, ``None`` if unknown."""
        return self.queue.get_job_info(_job_id(job_id))

    # -- queries ------------------------------------------------------------------
    def query(self, what: str, fields: list[str], qfilter: Any = None) -> dict[str, Any]:
        """New-style query (``Query``): ``{"fields": [field defs], "data":
        [[[status, value], ...], ...]}`` (one row per object, Ganeti's RS_*
        statuses; unknown fields get kind ``unknown`` and status 1).

        ``what``: ``instance``, ``node``, ``group``, ``job`` or ``lock``.
        ``qfilter``: ``None`` (everything), a list of names, or a Ganeti
        query filter (``["|", ["=", "name", "a"], ...]``, operators
        ``| & ! ? = != =~ < > <= >= =[]``). Names given as a list or as a
        simple name filter must exist (``OpPrereqError`` ECODE_NOENT).
        Raises ``OpPrereqError`` (ECODE_INVAL) for an unknown resource or a
        malformed filter.
        """
        fields = _check_list_of_str(fields, "Fields")
        name_field = _NAME_FIELD.get(what, "name")
        names, predicate, filter_fields = compile_filter(qfilter, name_field)
        wanted = fields + [f for f in filter_fields if f not in fields]
        defs = self._field_defs(what)
        unknown = [f for f in filter_fields if f not in defs]
        if unknown:
            raise errors.OpPrereqError(f"Unknown field(s) in query filter: {', '.join(unknown)}",
                                       errors.ECODE_INVAL)
        rows = self._rows(what, wanted, names)
        if predicate is not None:
            rows = [row for row in rows if predicate(dict(zip(wanted, row)))]
        # Cells are (status, value) tuples (JSON arrays); rows may be shared
        # with the rows cache and other readers: read-only.
        n = len(fields)
        if n < len(wanted):
            rows = [row[:n] for row in rows]
        return {"fields": [defs.get(f) or _unknown_field(f) for f in fields], "data": rows}

    def query_fields(self, what: str, fields: list[str] | None = None) -> dict[str, Any]:
        """Field definitions (``QueryFields``): ``{"fields": [{name, title,
        kind, doc}]}``; all fields sorted by name when ``fields`` is empty."""
        defs = self._field_defs(what)
        if not fields:
            return {"fields": [defs[name] for name in sorted(defs)]}
        names = _check_list_of_str(fields, "Fields")
        return {"fields": [defs.get(f) or _unknown_field(f) for f in names]}

    def _field_defs(self, what: str) -> dict[str, dict[str, Any]]:
        if what == QR_JOB:
            from corral.jobs import JOB_FIELDS
            return {name: _JOB_FIELD_DEFS.get(name, _field(name, name.capitalize(), "other"))
                    for name in JOB_FIELDS}
        if what == QR_LOCK:
            return dict(_LOCK_FIELD_DEFS)
        if what == QR_FILTER:
            from corral.masterd.filters import FILTER_FIELD_DEFS
            return dict(FILTER_FIELD_DEFS)
        if what == QR_EXPORT:
            from corral.masterd.export_query import EXPORT_FIELD_DEFS
            return dict(EXPORT_FIELD_DEFS)
        # Field definitions never change while the daemon runs: dump them once.
        defs = self._field_defs_cache.get(what)
        if defs is None:
            from corral import query as q
            defs = {name: f.model_dump() for name, f in q.field_definitions(what).items()}
            self._field_defs_cache[what] = defs
        return defs

    def _rows(self, what: str, fields: list[str], names: list[str] | None
              ) -> list[list[tuple[int, Any]]]:
        if what == QR_JOB:
            return self._job_rows(fields, names)
        if what == QR_LOCK:
            return self._lock_rows(fields, names)
        if what == QR_FILTER:
            from corral.masterd.filters import filter_rows
            return filter_rows(self.cfg.get_cluster(), fields, names)
        if what == QR_EXPORT:
            from corral.masterd.export_query import export_rows
            return export_rows(self.cfg, self.context.rpc, fields, names)
        from corral import query as q
        serial = self.cfg.serial_no
        live = None
        if q.needs_live_data(what, fields):
            # Concurrent queries share one RPC round. Instances: every node
            # reports all its instances anyway, so one round of all nodes
            # serves the queries of any instance names (unknown names are
            # refused by the query itself).
            live_names = None if what == QR_INSTANCE else names
            live = self._live.get((what, tuple(live_names) if live_names else None),
                                  serial,
                                  lambda: q.gather_live_data(what, self.cfg, self.context.rpc,
                                                             fields, live_names))
        # The rows only depend on the config (serial) and the live data: many
        # readers asking the same between two commits share one evaluation.
        key = (what, tuple(fields), tuple(names) if names else None)
        rows = self._rows_cache.get(key, serial, live)
        if rows is None:
            rows = q.query(what, self.cfg, fields, names, live, self._params)
            self._rows_cache.put(key, serial, live, rows, len(rows) * len(fields))
        return rows

    def _job_rows(self, fields: list[str], names: list[str] | None
                  ) -> list[list[tuple[int, Any]]]:
        from corral.jobs import JOB_FIELDS
        ids = None
        if names:
            try:
                ids = [int(n) for n in names]
            except ValueError:
                raise errors.OpPrereqError(f"Invalid job id in {names}",
                                           errors.ECODE_INVAL) from None
        known = [f for f in fields if f in JOB_FIELDS]
        out = []
        for row in self.queue.query_jobs(ids, known or ["id"]):
            if row is None:
                continue
            values = dict(zip(known, row))
            out.append([(RS_NORMAL, values[f]) if f in values else (RS_UNKNOWN, None)
                        for f in fields])
        return out

    def _lock_rows(self, fields: list[str], names: list[str] | None
                   ) -> list[list[tuple[int, Any]]]:
        out = []
        for lock in self.context.glm.info():
            if names and lock["name"] not in names:
                continue
            values = {"name": lock["name"], "mode": lock["mode"],
                      "owner": lock["owners"], "pending": lock["pending"]}
            out.append([(RS_NORMAL, values[f]) if f in values else (RS_UNKNOWN, None)
                        for f in fields])
        return out

    def _old_style(self, what: str, names: Any, fields: list[str]) -> list[list[Any]]:
        """Rows of plain values for the legacy Query{Instances,Nodes,Groups};
        unknown fields raise ``OpPrereqError`` (ECODE_INVAL) as in Ganeti."""
        fields = _check_list_of_str(fields, "Fields")
        defs = self._field_defs(what)
        unknown = [f for f in fields if f not in defs]
        if unknown:
            raise errors.OpPrereqError(f"Unknown output fields: {', '.join(unknown)}",
                                       errors.ECODE_INVAL)
        rows = self._rows(what, fields, _check_names(names))
        return [[value for (_status, value) in row] for row in rows]

    def query_instances(self, names: list[str] | None, fields: list[str],
                        use_locking: bool = False) -> list[list[Any]]:
        """``QueryInstances``: one row of values per instance (all if no names).

        ``use_locking`` is accepted for compatibility; answers always come
        from a consistent config snapshot.
        """
        return self._old_style(QR_INSTANCE, names, fields)

    def query_nodes(self, names: list[str] | None, fields: list[str],
                    use_locking: bool = False) -> list[list[Any]]:
        """``QueryNodes``: one row of values per node."""
        return self._old_style(QR_NODE, names, fields)

    def query_groups(self, names: list[str] | None, fields: list[str],
                     use_locking: bool = False) -> list[list[Any]]:
        """``QueryGroups``: one row of values per node group."""
        return self._old_style(QR_GROUP, names, fields)

    def query_filters(self, uuids: list[str] | None, fields: list[str]) -> list[list[Any]]:
        """``QueryFilters``: one row of values per job filter rule."""
        return self._old_style(QR_FILTER, uuids, fields)

    def replace_filter(self, uuid: str | None, priority: Any, predicates: Any, action: Any,
                       reason: Any) -> str:
        """``ReplaceFilter``: add (``uuid`` None) or replace a job filter rule;
        returns its UUID (see :mod:`corral.masterd.filters`)."""
        from corral.masterd.filters import replace_filter
        return replace_filter(self.cfg, self.queue, uuid, priority, predicates, action,
                              reason)

    def delete_filter(self, uuid: str) -> None:
        """``DeleteFilter``: remove a job filter rule (ECODE_NOENT if unknown)."""
        from corral.masterd.filters import delete_filter
        delete_filter(self.cfg, self.queue, uuid)

    def query_cluster_info(self) -> dict[str, Any]:
        """The cluster description of ``QueryClusterInfo`` / RAPI ``/2/info``.

        Keys as in Ganeti (rapi.md §5) for everything Corral's cluster has;
        ``hvparams`` are filled per enabled hypervisor, ``beparams`` and
        ``nicparams`` are ``{"default": filled}``; ``vg_name`` and
        ``drbd_helper`` are RAPI's aliases.
        """
        from corral.cmdlib.cluster import build_cluster_info

        return build_cluster_info(self.cfg)

    def query_config_values(self, fields: list[str]) -> list[Any]:
        """Values of a few cluster settings (``QueryConfigValues``), in order.

        Known fields: see :data:`CONFIG_VALUE_FIELDS`; others raise
        ``OpPrereqError`` (ECODE_INVAL).
        """
        fields = _check_list_of_str(fields, "Fields")
        cluster = self.cfg.get_cluster()
        values: list[Any] = []
        for name in fields:
            if name == "cluster_name":
                values.append(cluster.cluster_name)
            elif name == "master_node":
                master = self.cfg.get_node(cluster.master_node)
                values.append(master.name if master is not None else None)
            elif name == "drain_flag":
                values.append(self._drain_flag())
            elif name == "watcher_pause":
                values.append(None)     # no watcher yet: never paused
            elif name == "volume_group_name":
                values.append(cluster.volume_group_name or None)
            elif name == "master_ip":
                values.append(cluster.master_ip)
            elif name == "rapi_port":
                values.append(cluster.rapi_port)
            else:
                raise errors.OpPrereqError(f"Unknown config value field '{name}'",
                                           errors.ECODE_INVAL)
        return values

    def _drain_flag(self) -> bool:
        return self.queue.is_drained()

    def query_tags(self, kind: str, name: str | None) -> list[str]:
        """Tags of an object (``QueryTags``); ``name`` is ignored for the cluster.

        Raises ``OpPrereqError`` ECODE_INVAL for an unknown kind, ECODE_NOENT
        for an unknown object.
        """
        if kind not in TAG_KINDS:
            raise errors.OpPrereqError(f"Invalid tag kind '{kind}'", errors.ECODE_INVAL)
        if kind == C.TAG_CLUSTER:
            return list(self.cfg.get_cluster().tags)
        if not isinstance(name, str) or not name:
            raise errors.OpPrereqError(f"Tags of a {kind} need its name", errors.ECODE_INVAL)
        if kind == C.TAG_INSTANCE:
            return list(self.cfg.expand_instance(name).tags)
        if kind == C.TAG_NODE:
            return list(self.cfg.expand_node(name).tags)
        if kind == C.TAG_NODEGROUP:
            return list(self.cfg.expand_nodegroup(name).tags)
        return list(self.cfg.expand_network(name).tags)

    # -- Corral extensions --------------------------------------------------------
    def create_join_token(self, ttl: int = DEFAULT_JOIN_TOKEN_TTL) -> str:
        """A new single-use token allowing a node daemon to join (``ttl`` seconds)."""
        from corral import crypto

        ttl = _number(ttl, "TTL")
        if ttl <= 0:
            raise errors.OpPrereqError("TTL must be positive", errors.ECODE_INVAL)
        return crypto.JoinTokenStore(self.context.paths).create(ttl)
