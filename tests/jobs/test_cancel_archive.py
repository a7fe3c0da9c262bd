"""JobQueue cancel (each state), archive and auto-archive."""

from __future__ import annotations

from jobqueue_helpers import delay, field, jq, wait_final, wait_status

from corral import constants as C


def test_cancel_queued(make_queue, runner):
    q = make_queue(max_running=1)
    blocker = q.submit_job([jq(comment="run:gate")])
    wait_status(q, blocker, "running")
    job_id = q.submit_job([delay(0), delay(0)])
    assert q.cancel_job(job_id) == (True, f"Job {job_id} canceled")
    opstatus, opresult, end = q.query_jobs([job_id], ["opstatus", "opresult", "end_ts"])[0]
    assert opstatus == ["canceled", "canceled"]
    assert opresult == ["Job canceled by request"] * 2
    assert end is not None
    runner.release("gate")
    wait_final(q, blocker)
    assert (job_id, 0) not in runner.started


def test_cancel_waiting(queue, runner):
    job_id = queue.submit_job([jq(comment="wait:locks"), delay(0)])
    wait_status(queue, job_id, "waiting")
    assert queue.cancel_job(job_id) == (True, f"Job {job_id} will be canceled")
    assert wait_final(queue, job_id) == "canceled"
    assert field(queue, job_id, "opstatus") == ["canceled", "canceled"]
    assert field(queue, job_id, "opresult") == ["Job canceled by request"] * 2


def test_cancel_running_refused(queue, runner):
    job_id = queue.submit_job([jq(comment="run:gate")])
    wait_status(queue, job_id, "running")
    assert queue.cancel_job(job_id) == (False, "Job no longer waiting, can't cancel")
    ok, msg = queue.cancel_job(job_id, kill=True)
    assert not ok and "not supported" in msg
    runner.release("gate")
    assert wait_final(queue, job_id) == "success"


def test_cancel_finished_and_unknown(queue):
    job_id = queue.submit_job([delay(0)])
    wait_final(queue, job_id)
    assert queue.cancel_job(job_id) == (False, "Job no longer waiting, can't cancel")
    assert queue.cancel_job(999) == (False, "Job 999 not found")


def test_cancel_job_parked_on_dependency(queue, runner):
    gate = queue.submit_job([jq(comment="run:gate")])
    wait_status(queue, gate, "running")
    dep = queue.submit_job([delay(0, depends=[[gate, []]])])
    wait_status(queue, dep, "waiting")
    assert queue.cancel_job(dep) == (True, f"Job {dep} canceled")
    assert field(queue, dep, "status") == "canceled"
    runner.release("gate")
    wait_final(queue, gate)
    assert (dep, 0) not in runner.started


def test_cancel_between_opcodes_cancels_the_rest(queue, runner):
    job_id = queue.submit_job([jq(comment="wait:first"), jq(comment="wait:second")])
    wait_status(queue, job_id, "waiting")
    assert queue.cancel_job(job_id)[0]
    # the first opcode does not check for cancel and succeeds; the rest is canceled
    runner.release("first")
    assert wait_final(queue, job_id) == "canceled"
    assert field(queue, job_id, "opstatus") in (["canceled", "canceled"],
                                               ["success", "canceled"])


def test_archive(queue, runner):
    done = queue.submit_job([delay(0)])
    running = queue.submit_job([jq(comment="run:gate")])
    wait_final(queue, done)
    wait_status(queue, running, "running")
    assert queue.archive_job(running) is False  # not finished
    assert queue.archive_job(done) is True
    assert queue.archive_job(done) is False  # already archived
    assert queue.archive_job(12345) is False
    assert [r[0] for r in queue.query_jobs(None, ["id"])] == [running]
    assert queue.query_jobs(None, ["id", "archived"], archived=True) == [
        [done, True], [running, False]]
    # explicit ids find archived jobs too
    assert queue.get_job_info(done)["status"] == "success"
    runner.release("gate")
    wait_final(queue, running)


def test_auto_archive(queue):
    ids = [queue.submit_job([delay(0)]) for _ in range(5)]
    for job_id in ids:
        wait_final(queue, job_id)
    assert queue.auto_archive(3600, 10) == (0, 0)  # all too young
    assert queue.auto_archive(-1, 10) == (5, 0)
    assert queue.query_jobs(None, ["id"]) == []
    assert len(queue.query_jobs(None, ["id"], archived=True)) == 5
    assert queue.auto_archive(-1, 10) == (0, 0)


def test_auto_archive_timeout_reports_remaining(queue):
    ids = [queue.submit_job([delay(0)]) for _ in range(3)]
    for job_id in ids:
        wait_final(queue, job_id)
    archived, remaining = queue.auto_archive(-1, -1)
    assert (archived, remaining) == (0, 3)


def test_finished_job_priority_is_default(queue):
    job_id = queue.submit_job([delay(0, priority=C.OP_PRIO_HIGH)])
    wait_final(queue, job_id)
    assert queue.query_jobs([job_id], ["priority", "oppriority"])[0] == [0, [-10]]
