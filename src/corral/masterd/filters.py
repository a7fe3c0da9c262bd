"""Managing job filter rules: LUXI ``ReplaceFilter``, ``DeleteFilter`` and the
``filter`` query.

As in Ganeti (``doc/design-optables.rst``), changing the rules does not go
through the job queue (a rule pausing every job must not lock itself out):
the master validates the rule, stores it in ``Cluster.filters`` with a
watermark (the highest job id so far) and re-evaluates the queued jobs.
Semantics of the rules: :mod:`corral.jobs.filters`.
"""

from __future__ import annotations

import uuid as uuid_mod
from typing import Any

from corral import errors
from corral.jobs import filters as job_filters
from corral.objects import Cluster, FilterRule

RS_NORMAL, RS_UNKNOWN = 0, 1

FILTER_FIELD_DEFS: dict[str, dict[str, Any]] = {
    name: {"name": name, "title": title, "kind": kind, "doc": doc}
    for name, title, kind, doc in [
        ("uuid", "UUID", "text", "Filter UUID"),
        ("watermark", "Watermark", "number", "Highest job ID used at the time when the "
                                             "filter was added"),
        ("priority", "Priority", "number", "Filter priority (lower numbers first)"),
        ("predicates", "Predicates", "other", "List of filter predicates"),
        ("action", "Action", "other", "Action to take when the filter matches"),
        ("reason_trail", "ReasonTrail", "other", "Reason why this filter was added"),
    ]}

_UUID_MAX = 64


def rules_of(cluster: Cluster) -> list[dict[str, Any]]:
    """The cluster's filter rules as dicts (what the scheduler evaluates)."""
    return [rule.model_dump() for rule in cluster.filters.values()]


def _check_uuid(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _UUID_MAX or \
            not all(c.isalnum() or c == "-" for c in value):
        raise errors.OpPrereqError(f"Invalid filter UUID {str(value)[:80]!r}",
                                   errors.ECODE_INVAL)
    return value


def replace_filter(cfg: Any, queue: Any, uuid: str | None, priority: Any, predicates: Any,
                   action: Any, reason: Any) -> str:
    """Add (``uuid`` None) or replace a rule; returns its UUID.

    A replaced rule gets a new watermark. Raises :class:`errors.OpPrereqError`
    (ECODE_INVAL) for invalid parameters, before anything changes.
    """
    priority, predicates, action, reason = job_filters.check_filter_parameters(
        priority, predicates, action, reason)
    rule_uuid = str(uuid_mod.uuid4()) if uuid is None else _check_uuid(uuid)
    rule = FilterRule(uuid=rule_uuid, watermark=queue.last_job_id(), priority=priority,
                      predicates=predicates, action=action, reason_trail=reason)

    def change(cluster: Cluster) -> None:
        cluster.filters[rule_uuid] = rule

    cfg.update_cluster(change)
    queue.filters_changed()
    return rule_uuid


def delete_filter(cfg: Any, queue: Any, uuid: str) -> None:
    """Remove a rule; :class:`errors.OpPrereqError` (ECODE_NOENT) if unknown."""
    _check_uuid(uuid)

    def change(cluster: Cluster) -> None:
        if cluster.filters.pop(uuid, None) is None:
            raise errors.OpPrereqError(f"Filter rule '{uuid}' not found",
                                       errors.ECODE_NOENT)

    cfg.update_cluster(change)
    queue.filters_changed()


def filter_rows(cluster: Cluster, fields: list[str], uuids: list[str] | None
                ) -> list[list[tuple[int, Any]]]:
    """Query rows of the rules (sorted by priority, watermark, uuid); unknown
    UUIDs raise :class:`errors.OpPrereqError` (ECODE_NOENT)."""
    rules = cluster.filters
    if uuids:
        missing = [u for u in uuids if u not in rules]
        if missing:
            raise errors.OpPrereqError(f"Filter rule '{missing[0]}' not found",
                                       errors.ECODE_NOENT)
        selected = [rules[u] for u in dict.fromkeys(uuids)]
    else:
        selected = sorted(rules.values(), key=lambda r: (r.priority, r.watermark, r.uuid))
    out = []
    for rule in selected:
        values = rule.model_dump()
        out.append([(RS_NORMAL, values[f]) if f in values else (RS_UNKNOWN, None)
                    for f in fields])
    return out
