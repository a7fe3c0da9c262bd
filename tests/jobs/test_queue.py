"""JobQueue: lifecycle, results, logs, waiting, priorities, limits, validation."""

from __future__ import annotations

import threading
import time

import pytest
from jobqueue_helpers import delay, field, jq, wait_final, wait_status

from corral import constants as C
from corral import errors
from corral.jobs import J_FIELDS, JobQueue


def test_lifecycle_success(queue):
    job_id = queue.submit_job([delay(0), jq(log_messages=["one", "two"])])
    assert wait_final(queue, job_id) == "success"
    (row,) = queue.query_jobs([job_id], ["id", "status", "summary", "ops", "opstatus",
                                         "opresult", "received_ts", "start_ts", "end_ts",
                                         "opstart", "opexec", "opend", "oppriority",
                                         "priority"])
    (jid, status, summary, ops, opstatus, opresult, received, start, end,
     opstart, opexec, opend, oppriority, priority) = row
    assert jid == job_id and status == "success"
    assert summary == ["TEST_DELAY(0.0)", "TEST_JQUEUE"]
    assert [op["OP_ID"] for op in ops] == ["OP_TEST_DELAY", "OP_TEST_JQUEUE"]
    assert ops[1]["log_messages"] == ["one", "two"]
    assert opstatus == ["success", "success"]
    assert opresult == [{"job": job_id, "op": 0}, {"job": job_id, "op": 1}]
    assert received <= start <= end
    assert all(len(ts) == 2 and all(isinstance(x, int) for x in ts) for ts in opstart)
    for s, e, x in zip(opstart, opend, opexec):
        assert start <= s <= x <= e <= end
    assert oppriority == [0, 0] and priority == 0


def test_status_transitions(queue, runner):
    job_id = queue.submit_job([jq(comment="wait:locks"), jq(comment="run:work")])
    assert wait_status(queue, job_id, "waiting") == "waiting"
    assert field(queue, job_id, "opstatus") == ["waiting", "queued"]
    runner.release("locks")
    seen = []
    prev = None
    deadline = time.monotonic() + 10
    while prev != [["success", "running"]] and time.monotonic() < deadline:
        res = queue.wait_for_job_change(job_id, ["opstatus"], prev, None, 1)
        if res != "nochange":
            prev = res[0]
            seen.append(prev[0])
    assert seen[-1] == ["success", "running"]
    assert field(queue, job_id, "status") == "running"
    runner.release("work")
    assert wait_final(queue, job_id) == "success"
    assert queue.queue_size() == 0


def test_error_marks_following_ops(queue):
    job_id = queue.submit_job([delay(0), jq(fail=True), delay(0), delay(0)])
    assert wait_final(queue, job_id) == "error"
    opstatus, opresult = queue.query_jobs([job_id], ["opstatus", "opresult"])[0]
    assert opstatus == ["success", "error", "error", "error"]
    encoded = ["OpExecError", ["Opcode failure was requested", errors.ECODE_STATE]]
    assert opresult[1:] == [encoded, encoded, encoded]
    err = errors.decode_exception(opresult[1])
    assert isinstance(err, errors.OpExecError) and err.ecode == errors.ECODE_STATE


def test_unserializable_result_is_an_error(queue):
    job_id = queue.submit_job([jq(comment="unserializable")])
    assert wait_final(queue, job_id) == "error"
    result = field(queue, job_id, "opresult")[0]
    assert result[0] == "OpResultError"
    assert "not JSON-serializable" in result[1][0]


def test_unexpected_exception_is_encoded(make_queue):
    def boom(op, ctx):
        raise KeyError("missing")

    q = make_queue(run_opcode=boom)
    job_id = q.submit_job([delay(0)])
    assert wait_final(q, job_id) == "error"
    assert field(q, job_id, "opresult") == [
        ["OpExecError", ["KeyError: 'missing'", errors.ECODE_FAULT]]]


def test_logs_and_wait_for_job_change(queue, runner):
    job_id = queue.submit_job([jq(log_messages=["a", "b"], comment="run:gate"),
                               jq(log_messages=["c"])])
    info, entries = queue.wait_for_job_change(job_id, ["status"], None, None, 5)
    seen = []
    prev_serial = None
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        res = queue.wait_for_job_change(job_id, ["status"], info, prev_serial, 5)
        if res == "nochange":
            continue
        info, entries = res
        seen.extend(entries)
        if entries:
            prev_serial = entries[-1][0]
    assert [e[0] for e in seen] == [1, 2]
    assert [e[2:] for e in seen] == [["message", "a"], ["message", "b"]]
    assert all(len(e[1]) == 2 for e in seen)
    # blocked while running: nothing changes until the timeout
    start = time.monotonic()
    assert queue.wait_for_job_change(job_id, ["status"], ["running"], 2, 0.3) == "nochange"
    assert time.monotonic() - start >= 0.29
    runner.release("gate")
    assert wait_final(queue, job_id) == "success"
    oplog = field(queue, job_id, "oplog")
    assert [[e[0] for e in op] for op in oplog] == [[1, 2], [3]]
    assert oplog[1][0][3] == "c"
    # a finished job answers at once, even without changes
    res = queue.wait_for_job_change(job_id, ["status"], ["success"], 3, 30)
    assert res == (["success"], [])
    # log entries newer than a given serial
    assert [e[0] for e in queue.wait_for_job_change(job_id, ["id"], None, 1, 1)[1]] == [2, 3]


def test_wait_wakes_on_change(queue, runner):
    job_id = queue.submit_job([jq(comment="run:gate")])
    wait_status(queue, job_id, "running")
    result = []

    def waiter():
        result.append(queue.wait_for_job_change(job_id, ["status"], ["running"], None, 20))

    t = threading.Thread(target=waiter)
    start = time.monotonic()
    t.start()
    time.sleep(0.2)
    runner.release("gate")
    t.join(10)
    assert result and result[0] != "nochange" and result[0][0] == ["success"]
    assert time.monotonic() - start < 5


def test_wait_unknown_job(queue):
    with pytest.raises(errors.JobQueueError) as exc_info:
        queue.wait_for_job_change(4242, ["status"], None, None, 1)
    assert exc_info.value.ecode == errors.ECODE_NOENT


def test_priority_ordering(make_queue, runner):
    q = make_queue(max_running=1)
    blocker = q.submit_job([jq(comment="run:gate")])
    wait_status(q, blocker, "running")
    low = q.submit_job([delay(0, priority=C.OP_PRIO_LOW)])
    normal1 = q.submit_job([delay(0)])
    high = q.submit_job([delay(0, priority=C.OP_PRIO_HIGH)])
    normal2 = q.submit_job([delay(0)])
    mixed = q.submit_job([delay(0, priority=C.OP_PRIO_LOW), delay(0, priority=C.OP_PRIO_HIGH)])
    assert field(q, mixed, "priority") == C.OP_PRIO_HIGH  # min of unfinished ops
    runner.release("gate")
    for job_id in (low, normal1, high, normal2, mixed):
        assert wait_final(q, job_id) == "success"
    order = [jid for jid, idx in runner.started if idx == 0]
    assert order == [blocker, high, mixed, normal1, normal2, low]


def test_change_job_priority(make_queue, runner):
    q = make_queue(max_running=1)
    blocker = q.submit_job([jq(comment="run:gate")])
    wait_status(q, blocker, "running")
    first = q.submit_job([delay(0)])
    second = q.submit_job([delay(0), delay(0)])
    ok, msg = q.change_job_priority(second, C.OP_PRIO_HIGH)
    assert ok and "changed to -10" in msg
    assert q.query_jobs([second], ["priority", "oppriority"])[0] == [-10, [-10, -10]]
    # the opcode input is unchanged, as in Ganeti
    assert field(q, second, "ops")[0]["priority"] == 0
    assert q.change_job_priority(blocker, C.OP_PRIO_LOW) == (
        False, f"Job {blocker} had no pending opcodes")
    with pytest.raises(errors.OpPrereqError):
        q.change_job_priority(first, 7)
    runner.release("gate")
    wait_final(q, first)
    wait_final(q, second)
    assert [jid for jid, idx in runner.started if idx == 0] == [blocker, second, first]
    assert runner.priorities[second] == C.OP_PRIO_HIGH
    assert q.change_job_priority(first, C.OP_PRIO_HIGH) == (False, f"Job {first} is finished")
    assert q.change_job_priority(999, C.OP_PRIO_HIGH) == (False, "Job 999 not found")


def test_max_running_respected(make_queue, runner):
    q = make_queue(max_running=2)
    ids = [q.submit_job([delay(0.15)]) for _ in range(6)]
    for job_id in ids:
        assert wait_final(q, job_id) == "success"
    assert runner.max_running == 2
    q.set_max_running(0)
    paused = q.submit_job([delay(0)])
    time.sleep(0.3)
    assert field(q, paused, "status") == "queued"
    q.set_max_running(4)
    assert wait_final(q, paused) == "success"
    with pytest.raises(errors.OpPrereqError):
        q.set_max_running(-1)


def test_invalid_opcode_refused_nothing_stored(queue):
    with pytest.raises(errors.OpPrereqError) as exc_info:
        queue.submit_job([delay(0), {"OP_ID": "OP_TEST_DELAY", "duration": "long"}])
    assert exc_info.value.ecode == errors.ECODE_INVAL
    with pytest.raises(errors.OpPrereqError):
        queue.submit_job([{"OP_ID": "OP_NO_SUCH_THING"}])
    with pytest.raises(errors.OpPrereqError):
        queue.submit_job([delay(0, bogus_param=1)])
    with pytest.raises(errors.OpPrereqError):
        queue.submit_job([])
    assert queue.query_jobs(None, ["id"]) == []
    # the id counter did not move either
    assert queue.submit_job([delay(0)]) == 1


def test_ids_monotonic_across_restart(make_queue, tmp_path):
    q1 = make_queue()
    ids = [q1.submit_job([delay(0)]) for _ in range(3)]
    assert ids == [1, 2, 3]
    for job_id in ids:
        wait_final(q1, job_id)
    assert q1.archive_job(3)
    q1.stop(timeout=5)
    q2 = make_queue()
    assert q2.submit_job([delay(0)]) == 4
    assert q2.submit_many([[delay(0)], [delay(0)]]) == [(True, 5), (True, 6)]


def test_drain_flag(make_queue, tmp_path):
    q = make_queue()
    q.set_drain_flag(True)
    with pytest.raises(errors.JobQueueDrainError):
        q.submit_job([delay(0)])
    results = q.submit_many([[delay(0)], [delay(0)]])
    assert [ok for ok, _ in results] == [False, False]
    assert "drained" in results[0][1]
    q.stop(timeout=5)
    q2 = make_queue()  # the flag is persisted
    assert q2.is_drained()
    with pytest.raises(errors.JobQueueDrainError):
        q2.submit_job([delay(0)])
    q2.set_drain_flag(False)
    assert wait_final(q2, q2.submit_job([delay(0)])) == "success"
    assert len(q2.query_jobs(None, ["id"])) == 1


def test_queue_full(make_queue, monkeypatch):
    monkeypatch.setattr(C, "JOB_QUEUE_SIZE_HARD_LIMIT", 3)
    q = make_queue(max_running=0)
    for _ in range(3):
        q.submit_job([delay(0)])
    with pytest.raises(errors.JobQueueFull) as exc_info:
        q.submit_job([delay(0)])
    assert exc_info.value.ecode == errors.ECODE_TEMP_NORES
    assert q.queue_size() == 3
    q.set_max_running(3)
    for job_id in (1, 2, 3):
        wait_final(q, job_id)
    results = q.submit_many([[delay(0)]] * 4)
    assert [ok for ok, _ in results] == [True, True, True, False]


def test_query_fields_and_job_info(queue):
    job_id = queue.submit_job([delay(0)])
    wait_final(queue, job_id)
    info = queue.get_job_info(job_id)
    assert set(info) == set(J_FIELDS)
    assert info["id"] == job_id and info["status"] == "success"
    assert info["oplog"] == [[]]
    assert queue.get_job_info(777) is None
    assert queue.query_jobs([job_id, 777], ["id"]) == [[job_id], None]
    with pytest.raises(errors.OpPrereqError):
        queue.query_jobs(None, ["id", "nonsense"])


def test_submit_jobs_from_context(queue):
    job_id = queue.submit_job([jq(comment="submit")])
    assert wait_final(queue, job_id) == "success"
    (result,) = field(queue, job_id, "opresult")
    assert result == [[True, job_id + 1]]
    assert wait_final(queue, job_id + 1) == "success"


def test_submit_is_concurrent_safe(queue):
    ids: list[int] = []
    lock = threading.Lock()

    def submitter():
        for _ in range(20):
            job_id = queue.submit_job([delay(0)])
            with lock:
                ids.append(job_id)

    threads = [threading.Thread(target=submitter) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(ids) == list(range(1, 81))
    for job_id in ids:
        assert wait_final(queue, job_id) == "success"


def test_not_started_queue_refuses(tmp_path, runner):
    q = JobQueue(tmp_path / "q.db", runner, durable=False)
    try:
        with pytest.raises(errors.ProgrammerError):
            q.submit_job([delay(0)])
    finally:
        q.stop()
