"""JobQueue recovery after a master daemon restart (and after SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from jobqueue_helpers import delay, jq, wait_final

from corral import constants as C
from corral import errors
from corral.jobs import JobQueue
from corral.jobs.model import QueuedJob, QueuedOpcode, now_ts
from corral.jobs.queue import JOB_LOST_MSG
from corral.jobs.store import JobStore
from corral.opcodes import op_from_dict

LOST = ["JobLost", [JOB_LOST_MSG, errors.ECODE_FAULT]]


def _stored_job(store: JobStore, statuses: list[str], depends=None) -> int:
    (job_id,) = store.allocate_ids(1)
    ops = []
    for status in statuses:
        op = op_from_dict(delay(0, depends=depends) if depends else delay(0))
        ops.append(QueuedOpcode(input=op.to_dict(), summary=op.summary(), priority=0,
                                status=status,
                                result={"done": True} if status == "success" else None))
    job = QueuedJob(job_id, ops, received_ts=now_ts())
    if any(s != "queued" for s in statuses):
        job.start_ts = now_ts()
    store.insert_job(job)
    return job_id


def test_recovery_of_each_status(make_queue, runner, tmp_path):
    db = tmp_path / "queue.db"
    store = JobStore(db, durable=False)
    canceling = _stored_job(store, ["success", "canceling", "canceling"])
    waiting = _stored_job(store, ["waiting", "queued"])
    running = _stored_job(store, ["success", "running", "queued"])
    partial = _stored_job(store, ["success", "waiting"])
    partial_queued = _stored_job(store, ["success", "queued"])
    queued = _stored_job(store, ["queued", "queued"])
    after_lost = _stored_job(store, ["queued"], depends=[[running, ["success"]]])
    done = _stored_job(store, ["success"])
    store.close()

    q = make_queue(path=db)
    fields = ["status", "opstatus", "opresult"]
    assert q.query_jobs([canceling], fields)[0] == [
        "canceled", ["success", "canceled", "canceled"],
        [{"done": True}, "Job canceled by request", "Job canceled by request"]]
    # Running, or partly done: lost; the finished opcode keeps its result.
    assert q.query_jobs([running], fields)[0] == [
        "error", ["success", "error", "error"], [{"done": True}, LOST, LOST]]
    for job_id in (partial, partial_queued):
        assert q.query_jobs([job_id], fields)[0] == [
            "error", ["success", "error"], [{"done": True}, LOST]]
    assert errors.decode_exception(LOST).__class__ is errors.JobLost
    assert "Unclean master daemon shutdown" in JOB_LOST_MSG
    # Never started (waiting or queued): requeued and run to success.
    assert wait_final(q, waiting) == "success"
    assert wait_final(q, queued) == "success"
    assert wait_final(q, after_lost) == "error"
    assert q.query_jobs([done], ["status"])[0] == ["success"]
    # Only the requeued jobs ran, each opcode once; nothing finished ran again.
    assert sorted(runner.started) == [(waiting, 0), (waiting, 1), (queued, 0), (queued, 1)]
    assert q.submit_job([delay(0)]) == done + 1


def test_waiting_job_is_requeued_as_never_started(tmp_path):
    """The stored job is queued again (status, timestamps) before it runs."""
    db = tmp_path / "queue.db"
    store = JobStore(db, durable=False)
    waiting = _stored_job(store, ["waiting", "queued"])
    store.close()
    release = threading.Event()
    q = JobQueue(db, lambda op, ctx: release.wait(30), max_running=0, durable=False)
    try:
        q.start()
        assert q.query_jobs([waiting], ["status", "opstatus", "opstart", "start_ts"])[0] == \
            ["queued", ["queued", "queued"], [None, None], None]
        store = JobStore(db, durable=False)
        assert store.job_state(waiting)[0] == "queued"
        store.close()
        q.set_max_running(1)
        release.set()
        assert wait_final(q, waiting) == "success"
    finally:
        release.set()
        q.stop(timeout=10)


def test_startup_jobs_see_requeued_jobs_and_run(make_queue, tmp_path):
    db = tmp_path / "queue.db"
    store = JobStore(db, durable=False)
    running = _stored_job(store, ["running"])
    waiting = _stored_job(store, ["waiting"])
    store.close()
    seen: dict[str, Any] = {}

    def startup(pending):
        seen["pending"] = [job_id for job_id, _ in pending]
        return [[delay(0, comment="cleanup")], "not a job"]

    def on_lost(lost):
        seen["lost"] = [job_id for job_id, _ in lost]

    q = JobQueue(db, lambda op, ctx: op.comment, max_running=2, durable=False)
    try:
        q.start(on_lost=on_lost, startup_jobs=startup)
        assert seen == {"lost": [running], "pending": [waiting]}
        # The refused entry takes an id but is not stored; the valid one runs.
        cleanup = waiting + 1
        assert wait_final(q, cleanup) == "success"
        assert q.query_jobs([cleanup], ["opresult"])[0] == [["cleanup"]]
        assert q.query_jobs([cleanup + 1], ["status"]) == [None]
        assert wait_final(q, waiting) == "success"
    finally:
        q.stop(timeout=10)


_CHILD = textwrap.dedent("""
    import sys, time
    from corral.jobs import JobQueue
    from corral.opcodes import OpTestDelay

    def run(op, ctx):
        if isinstance(op, OpTestDelay):
            if op.comment != "hang-waiting":
                ctx.notify_running()
                ctx.feedback("started")
            while True:  # hangs until SIGKILL
                time.sleep(1)
        return "quick"

    q = JobQueue(sys.argv[1], run, max_running=5)
    q.start()
    for i in range(30):
        ops = [{"OP_ID": "OP_TEST_DELAY", "duration": 0,
                "comment": "hang-waiting" if i % 4 == 0 else None}]
        if i % 3 == 0:
            ops.insert(0, {"OP_ID": "OP_TEST_JQUEUE"})
        q.submit_job(ops)
    while True:
        rows = q.query_jobs(None, ["status"])
        if sum(r[0] in ("running", "waiting") for r in rows) == 5 and all(
                r[0] in ("queued", "running", "waiting") for r in rows):
            break
        time.sleep(0.05)
    print("READY", flush=True)
    time.sleep(600)
""")


def test_sigkill_restart_loses_no_job(make_queue, tmp_path):
    db = tmp_path / "queue.db"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(db)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(child.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(60)
        assert line and line[0].strip() == "READY", child.stderr.read() if child.poll() \
            is not None else "child not ready"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
        child.stderr.close()

    store = JobStore(db, durable=False)
    before = {jid: [op.status for op in job.ops]
              for jid, job in store.load_jobs(store.job_ids()).items()}
    store.close()
    assert len(before) == 30
    active = {jid for jid, ops in before.items() if {"running", "waiting"} & set(ops)}
    assert len(active) == 5
    # Running, or an opcode already done: lost. Waiting for locks only: requeued.
    interrupted = {jid for jid, ops in before.items()
                   if "running" in ops or ("waiting" in ops and "success" in ops)}
    never_started = active - interrupted
    assert interrupted and never_started

    q = make_queue(max_running=5, run_opcode=lambda op, ctx: "ok", path=db)
    final = {jid: wait_final(q, jid, timeout=30) for jid in range(1, 31)}
    assert {jid for jid, st in final.items() if st == "error"} == interrupted
    assert {jid for jid, st in final.items() if st == "success"} == set(before) - interrupted
    for jid in never_started:
        assert q.query_jobs([jid], ["opresult"])[0][0][-1] == "ok"
    for jid in interrupted:
        opstatus, opresult = q.query_jobs([jid], ["opstatus", "opresult"])[0]
        assert opstatus[-1] == "error" and opresult[-1] == LOST
        if len(opstatus) == 2:  # the quick first opcode had finished before the kill
            assert opstatus[0] == "success" and opresult[0] == "quick"
    # logs written before the kill survived
    logged = [jid for jid in interrupted
              if any(op for op in q.query_jobs([jid], ["oplog"])[0][0])]
    assert logged
    assert q.submit_job([jq()]) == 31
    assert q.queue_size() <= 1
    assert C.JOB_STATUS_SUCCESS == wait_final(q, 31)


def test_store_schema_version_checked(tmp_path: Path):
    db = tmp_path / "q.db"
    store = JobStore(db, durable=False)
    store.set_meta("version", "99")
    store.close()
    with pytest.raises(errors.JobQueueError, match="schema version 99"):
        JobStore(db, durable=False)
