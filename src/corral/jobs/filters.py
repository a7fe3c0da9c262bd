"""Job filter rules: which queued jobs run, wait, or are rejected.

Mirrors Ganeti 2.13's job filters (``doc/design-optables.rst``,
``Ganeti.JQScheduler.Filtering``). A rule has a ``uuid``, a ``watermark``
(the highest job id when it was added or replaced), a ``priority`` (>= 0,
lower first), ``predicates`` and an ``action``. Rules are tried in order of
(priority, watermark, uuid); the first whose predicates all match and whose
action is not ``CONTINUE`` applies:

- ``ACCEPT``: the job runs; ``PAUSE``: it stays queued; ``REJECT``: it is
  canceled; ``["RATE_LIMIT", n]``: it waits while n jobs this rule applies
  to are running.

Predicates are ``["jobid", expr]`` (field ``id``; the string ``watermark``
stands for the rule's watermark), ``["opcode", expr]`` (fields ``OP_ID`` and
the opcode's parameters; true if one opcode matches) and ``["reason", expr]``
(fields ``source``, ``reason``, ``timestamp`` of reason trail entries; true if
one entry of one opcode matches), each ``expr`` a query filter.

Besides the rules, a reason ``rate-limit:N:...`` in any opcode's trail puts
the job in a bucket of which at most N jobs run at once (Ganeti's ad-hoc
rate limiting). Filters apply to jobs not yet started.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from corral import errors
from corral.jobs.model import QueuedJob

ACTION_ACCEPT = "ACCEPT"
ACTION_PAUSE = "PAUSE"
ACTION_REJECT = "REJECT"
ACTION_CONTINUE = "CONTINUE"
ACTION_RATE_LIMIT = "RATE_LIMIT"
SIMPLE_ACTIONS = (ACTION_ACCEPT, ACTION_PAUSE, ACTION_REJECT, ACTION_CONTINUE)
PREDICATES = ("jobid", "opcode", "reason")
FILTER_FIELDS = ("uuid", "watermark", "priority", "predicates", "action", "reason_trail")

# Scheduling decisions.
RUN, WAIT, REJECT = "run", "wait", "reject"

_RATE_LIMIT_REASON = re.compile(r"rate-limit:(\d+):")

Predicate = Callable[[dict[str, tuple[int, Any]]], bool]


class _Row(dict):  # type: ignore[type-arg]
    """A filter row: missing fields read as unknown (status 1), not KeyError."""

    def __missing__(self, key: str) -> tuple[int, Any]:
        return (1, None)


def _row(values: dict[str, Any]) -> _Row:
    return _Row({k: (0, v) for k, v in values.items()})


def _substitute_watermark(expr: Any, watermark: int) -> Any:
    """``expr`` with every value operand ``"watermark"`` replaced."""
    if isinstance(expr, list) and len(expr) == 3 and isinstance(expr[1], str) and \
            not isinstance(expr[2], list):
        return [expr[0], expr[1], watermark if expr[2] == "watermark" else expr[2]]
    if isinstance(expr, list) and expr and isinstance(expr[0], str):
        return [expr[0]] + [_substitute_watermark(e, watermark) for e in expr[1:]]
    return expr


def _compile(expr: Any) -> Predicate:
    from corral.masterd.master import compile_predicate
    return compile_predicate(expr)


def check_filter_parameters(priority: Any, predicates: Any, action: Any,
                            reason: Any) -> tuple[int, list[Any], Any, list[Any]]:
    """Validate a rule's parameters (Ganeti's ``checkFilterParameters`` and
    more: every predicate expression must compile).

    Returns ``(priority, predicates, action, reason)`` with defaults applied
    (0, [], ``CONTINUE``, []). Raises :class:`errors.OpPrereqError`
    (ECODE_INVAL) naming the bad part.
    """
    def bad(why: str) -> errors.OpPrereqError:
        return errors.OpPrereqError(f"Invalid filter rule: {why}", errors.ECODE_INVAL)

    priority = 0 if priority is None else priority
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
        raise bad(f"priority must be a non-negative integer, not {priority!r}")
    predicates = [] if predicates is None else predicates
    if not isinstance(predicates, list):
        raise bad("predicates must be a list")
    for pred in predicates:
        if not (isinstance(pred, list) and len(pred) == 2 and pred[0] in PREDICATES):
            raise bad(f"predicate {pred!r} is not one of "
                      f"{', '.join(f'[{p!r}, expression]' for p in PREDICATES)}")
        expr = _substitute_watermark(pred[1], 0) if pred[0] == "jobid" else pred[1]
        _compile(expr)
    action = ACTION_CONTINUE if action is None else action
    if isinstance(action, list):
        if not (len(action) == 2 and action[0] == ACTION_RATE_LIMIT and
                isinstance(action[1], int) and not isinstance(action[1], bool) and
                action[1] > 0):
            raise bad(f"action {action!r} is not [\"RATE_LIMIT\", n] with n > 0")
    elif action not in SIMPLE_ACTIONS:
        raise bad(f"action {action!r} is not one of {', '.join(SIMPLE_ACTIONS)} or "
                  "[\"RATE_LIMIT\", n]")
    reason = [] if reason is None else reason
    if not isinstance(reason, list) or not all(
            isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and
            isinstance(r[1], str) and isinstance(r[2], int) for r in reason):
        raise bad("reason must be a list of [source, reason, timestamp] entries")
    return priority, predicates, action, reason


def _matches(pred: list[Any], watermark: int, job: QueuedJob) -> bool:
    kind, expr = pred
    if kind == "jobid":
        return _compile(_substitute_watermark(expr, watermark))(_row({"id": job.id}))
    test = _compile(expr)
    if kind == "opcode":
        return any(test(_row(op.input)) for op in job.ops)
    return any(test(_row({"source": entry[0], "reason": entry[1], "timestamp": entry[2]}))
               for op in job.ops for entry in _reason_trail(op.input))


def applicable_rule(rules: Iterable[dict[str, Any]], job: QueuedJob) -> dict[str, Any] | None:
    """The first rule (by priority, watermark, uuid) whose predicates all
    match ``job`` and whose action is not ``CONTINUE``; None if none."""
    for rule in sorted(rules, key=lambda r: (r["priority"], r["watermark"], r["uuid"])):
        if rule["action"] == ACTION_CONTINUE:
            continue
        if all(_matches(p, rule["watermark"], job) for p in rule["predicates"]):
            return rule
    return None


def _reason_trail(op_input: dict[str, Any]) -> list[list[Any]]:
    trail = op_input.get("reason") or []
    return [e for e in trail if isinstance(e, (list, tuple)) and len(e) == 3]


def rate_limit_buckets(job: QueuedJob) -> dict[str, int]:
    """``{reason: n}`` for every ``rate-limit:n:...`` reason in the job."""
    out: dict[str, int] = {}
    for op in job.ops:
        for entry in _reason_trail(op.input):
            m = _RATE_LIMIT_REASON.match(str(entry[1]))
            if m and int(m.group(1)) > 0:
                out[str(entry[1])] = int(m.group(1))
    return out


def decide(rules: list[dict[str, Any]], job: QueuedJob,
           running: Iterable[QueuedJob]) -> str:
    """:data:`RUN`, :data:`WAIT` or :data:`REJECT` for a queued job, given
    the rules and the jobs running now."""
    running = list(running)
    rule = applicable_rule(rules, job) if rules else None
    if rule is not None:
        action = rule["action"]
        if action == ACTION_REJECT:
            return REJECT
        if action == ACTION_PAUSE:
            return WAIT
        if isinstance(action, list):
            busy = sum(1 for other in running
                       if (applicable_rule(rules, other) or {}).get("uuid") == rule["uuid"])
            if busy >= action[1]:
                return WAIT
    for bucket, limit in rate_limit_buckets(job).items():
        if sum(1 for other in running if bucket in rate_limit_buckets(other)) >= limit:
            return WAIT
    return RUN
