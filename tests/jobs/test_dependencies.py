"""JobQueue dependencies: waiting, status checks, cancel propagation, relative ids."""

from __future__ import annotations

import time

import pytest
from jobqueue_helpers import delay, field, jq, wait_final, wait_status

from corral import errors


def test_dependency_success_waits(make_queue, runner):
    q = make_queue(max_running=1)
    first = q.submit_job([jq(comment="run:gate")])
    wait_status(q, first, "running")
    second = q.submit_job([delay(0, depends=[[first, ["success"]]])])
    # parked: waiting for the dependency, without using the only worker slot
    assert wait_status(q, second, "waiting") == "waiting"
    time.sleep(0.2)
    assert field(q, second, "status") == "waiting"
    assert (second, 0) not in runner.started
    runner.release("gate")
    assert wait_final(q, second) == "success"
    assert runner.started.index((first, 0)) < runner.started.index((second, 0))
    assert field(q, second, "opexec")[0] >= field(q, first, "end_ts")


def test_parked_jobs_do_not_block_slots(make_queue, runner):
    q = make_queue(max_running=1)
    gate = q.submit_job([jq(comment="run:gate")])
    wait_status(q, gate, "running")
    # dependents queued before the job they depend on gets a slot
    dependents = [q.submit_job([delay(0, depends=[[gate, []]])]) for _ in range(3)]
    independent = q.submit_job([delay(0)])
    for job_id in dependents:
        wait_status(q, job_id, "waiting")
    runner.release("gate")
    for job_id in dependents + [independent]:
        assert wait_final(q, job_id) == "success"


def test_dependency_wrong_status_fails(queue):
    bad = queue.submit_job([jq(fail=True)])
    dep = queue.submit_job([delay(0), delay(0, depends=[[bad, ["success"]]]), delay(0)])
    assert wait_final(queue, dep) == "error"
    opstatus, opresult = queue.query_jobs([dep], ["opstatus", "opresult"])[0]
    # the first opcode had no dependency and ran
    assert opstatus == ["success", "error", "error"]
    assert opresult[1][0] == "OpExecError"
    assert opresult[1][1][0] == (f"Dependency job {bad} ended in status error,"
                                 " not one of success")
    assert opresult[2] == opresult[1]


def test_dependency_any_final_status(queue):
    bad = queue.submit_job([jq(fail=True)])
    dep = queue.submit_job([delay(0, depends=[[bad, []]])])
    ok = queue.submit_job([delay(0, depends=[[bad, ["error", "success"]]])])
    assert wait_final(queue, dep) == "success"
    assert wait_final(queue, ok) == "success"


def test_dependency_canceled(make_queue, runner):
    q = make_queue(max_running=1)
    blocker = q.submit_job([jq(comment="run:gate")])
    wait_status(q, blocker, "running")
    victim = q.submit_job([delay(0)])
    strict = q.submit_job([delay(0, depends=[[victim, ["success"]]])])
    tolerant = q.submit_job([delay(0, depends=[[victim, ["canceled"]]])])
    anything = q.submit_job([delay(0, depends=[[victim, []]])])
    assert q.cancel_job(victim) == (True, f"Job {victim} canceled")
    runner.release("gate")
    assert wait_final(q, strict) == "canceled"
    assert field(q, strict, "opresult") == [f"Dependency job {victim} was canceled"]
    assert wait_final(q, tolerant) == "success"
    assert wait_final(q, anything) == "success"


def test_unknown_dependency(queue):
    # a failed submission consumes its id, so the id is known never to exist
    results = queue.submit_many([[{"OP_ID": "OP_BOGUS"}], [delay(0, depends=[[-1, []]])]])
    assert results[0][0] is False and "OP_BOGUS" in results[0][1]
    ok, dep_job = results[1]
    assert ok
    assert wait_final(queue, dep_job) == "error"
    missing = dep_job - 1
    assert field(queue, dep_job, "opresult")[0] == [
        "OpExecError", [f"Dependency job {missing} not found", errors.ECODE_FAULT]]
    later = queue.submit_job([delay(0, depends=[[10_000, []]])])
    assert wait_final(queue, later) == "error"
    assert "only earlier jobs" in field(queue, later, "opresult")[0][1][0]


def test_relative_dependencies_in_submit_many(make_queue, runner):
    q = make_queue(max_running=3)
    results = q.submit_many([
        [jq(comment="run:gate")],
        [delay(0, depends=[[-1, ["success"]]])],
        [delay(0, depends=[[-2, []], [-1, ["success"]]])],
        [delay(0, depends=[[-5, []]])],
    ])
    assert [ok for ok, _ in results] == [True, True, True, False]
    assert results[3][1] == "Unable to resolve relative job ID -5"
    a, b, c = (r[1] for r in results[:3])
    assert field(q, b, "ops")[0]["depends"] == [[a, ["success"]]]
    assert field(q, c, "ops")[0]["depends"] == [[a, []], [b, ["success"]]]
    wait_status(q, c, "waiting")
    runner.release("gate")
    for job_id in (a, b, c):
        assert wait_final(q, job_id) == "success"
    starts = [jid for jid, _ in runner.started]
    assert starts.index(a) < starts.index(b) < starts.index(c)


def test_relative_dependency_in_submit_job_refused(queue):
    with pytest.raises(errors.OpPrereqError):
        queue.submit_job([delay(0, depends=[[-1, []]])])
    assert queue.query_jobs(None, ["id"]) == []


def test_dependency_on_non_final_status_refused(queue):
    with pytest.raises(errors.OpPrereqError):
        queue.submit_job([delay(0, depends=[[1, ["running"]]])])
