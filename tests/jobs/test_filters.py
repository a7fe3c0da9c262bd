"""Job filter rules: matching and scheduling decisions (Ganeti's semantics)."""

from __future__ import annotations

from typing import Any

import pytest

from corral import errors
from corral.jobs import filters as jf
from corral.jobs.model import QueuedJob, QueuedOpcode


def job(job_id: int, *ops: dict[str, Any]) -> QueuedJob:
    return QueuedJob(id=job_id, ops=[QueuedOpcode(input=op, summary=op["OP_ID"], priority=0)
                                     for op in ops])


def rule(uuid: str, action: Any, *predicates: Any, priority: int = 0,
         watermark: int = 10) -> dict[str, Any]:
    return {"uuid": uuid, "watermark": watermark, "priority": priority,
            "predicates": list(predicates), "action": action, "reason_trail": []}


CREATE = {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "web1",
          "reason": [["gnt:user", "maintenance pink bunny", 1]]}
DELAY = {"OP_ID": "OP_TEST_DELAY", "duration": 1, "reason": []}


def test_predicates() -> None:
    by_opcode = rule("a", "REJECT", ["opcode", ["=", "OP_ID", "OP_INSTANCE_CREATE"]])
    assert jf.applicable_rule([by_opcode], job(11, DELAY, CREATE)) == by_opcode
    assert jf.applicable_rule([by_opcode], job(11, DELAY)) is None
    by_field = rule("b", "PAUSE", ["opcode", ["=", "instance_name", "web1"]])
    assert jf.applicable_rule([by_field], job(11, CREATE)) == by_field
    by_reason = rule("c", "ACCEPT", ["reason", ["=~", "reason", "pink bunny"]])
    assert jf.applicable_rule([by_reason], job(11, CREATE)) == by_reason
    assert jf.applicable_rule([by_reason], job(11, DELAY)) is None
    new_jobs = rule("d", "REJECT", ["jobid", [">", "id", "watermark"]], watermark=10)
    assert jf.applicable_rule([new_jobs], job(11, DELAY)) == new_jobs
    assert jf.applicable_rule([new_jobs], job(10, DELAY)) is None
    # Every predicate must hold; no predicate at all matches every job.
    both = rule("e", "REJECT", ["opcode", ["=", "OP_ID", "OP_TEST_DELAY"]],
                ["jobid", ["<", "id", 5]])
    assert jf.applicable_rule([both], job(11, DELAY)) is None
    assert jf.applicable_rule([rule("f", "PAUSE")], job(1, DELAY))["uuid"] == "f"


def test_order_and_continue() -> None:
    accept = rule("z", "ACCEPT", ["reason", ["=~", "reason", "bunny"]], priority=0)
    pause_all = rule("a", "PAUSE", priority=1)
    noop = rule("0", "CONTINUE", priority=0)
    rules = [pause_all, accept, noop]
    assert jf.decide(rules, job(11, CREATE), []) == jf.RUN
    assert jf.decide(rules, job(12, DELAY), []) == jf.WAIT
    # Same priority: lower watermark first, then uuid.
    first = rule("b", "REJECT", watermark=5)
    second = rule("a", "ACCEPT", watermark=7)
    assert jf.applicable_rule([second, first], job(1, DELAY)) == first


def test_rate_limits() -> None:
    limit = rule("r", ["RATE_LIMIT", 2], ["opcode", ["=", "OP_ID", "OP_TEST_DELAY"]])
    running = [job(1, DELAY), job(2, CREATE)]
    assert jf.decide([limit], job(3, DELAY), running) == jf.RUN
    running.append(job(4, DELAY))
    assert jf.decide([limit], job(5, DELAY), running) == jf.WAIT
    assert jf.decide([limit], job(6, CREATE), running) == jf.RUN
    # Ad-hoc buckets from the reason trail.
    bucket = {**DELAY, "reason": [["gnt:user", "rate-limit:1:evacuate node1", 1]]}
    assert jf.rate_limit_buckets(job(7, bucket)) == {"rate-limit:1:evacuate node1": 1}
    assert jf.decide([], job(7, bucket), [job(1, DELAY)]) == jf.RUN
    assert jf.decide([], job(8, bucket), [job(7, bucket)]) == jf.WAIT


def test_reject() -> None:
    assert jf.decide([rule("x", "REJECT")], job(1, DELAY), []) == jf.REJECT


@pytest.mark.parametrize(("params", "message"), [
    ((-1, [], "ACCEPT", []), "priority must be a non-negative integer"),
    ((True, [], "ACCEPT", []), "priority"),
    ((0, {"a": 1}, "ACCEPT", []), "predicates must be a list"),
    ((0, [["owner", ["=", "x", 1]]], "ACCEPT", []), "is not one of"),
    ((0, [["opcode", ["~~", "OP_ID", "x"]]], "ACCEPT", []), "Invalid query filter"),
    ((0, [], "DROP", []), "action 'DROP' is not one of"),
    ((0, [], ["RATE_LIMIT", 0], []), "RATE_LIMIT"),
    ((0, [], ["RATE_LIMIT", "2"], []), "RATE_LIMIT"),
    ((0, [], "ACCEPT", [["gnt:user", "why"]]), "reason must be a list"),
])
def test_invalid_rules(params: tuple[Any, ...], message: str) -> None:
    with pytest.raises(errors.OpPrereqError, match=message) as exc:
        jf.check_filter_parameters(*params)
    assert exc.value.ecode == errors.ECODE_INVAL


def test_defaults() -> None:
    assert jf.check_filter_parameters(None, None, None, None) == (0, [], "CONTINUE", [])
