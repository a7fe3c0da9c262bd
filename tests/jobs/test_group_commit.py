"""JobStore group commit (stage_job/sync), log entries written without a
durable transaction, and the queue's promise that a state is stored before
anyone sees it; each checked through a second connection to the database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobqueue_helpers import jq, wait_final, wait_status

from corral import constants as C
from corral import errors
from corral.jobs.model import QueuedJob, QueuedOpcode, now_ts
from corral.jobs.store import JobStore


def _job(store: JobStore) -> QueuedJob:
    (job_id,) = store.allocate_ids(1)
    job = QueuedJob(job_id, [QueuedOpcode(input={"OP_ID": "OP_TEST_JQUEUE"},
                                          summary="TEST_JQUEUE", priority=0)],
                    received_ts=now_ts())
    store.insert_job(job)
    return job


def _stored_status(path: Path, job_id: int) -> str:
    other = JobStore(path, durable=False)
    try:
        state = other.job_state(job_id)
        assert state is not None
        return state[0]
    finally:
        other.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    """A durable (fsync'ed) store at ``tmp_path/q.db``."""
    opened = JobStore(tmp_path / "q.db", durable=True)
    yield opened
    opened.close()


def _run(job: QueuedJob, status: str = C.OP_STATUS_RUNNING) -> None:
    job.ops[0].status = status


def test_staged_changes_are_stored_by_one_sync_in_order(store: JobStore) -> None:
    path = store.path
    first, second = _job(store), _job(store)
    _run(first)
    t1 = store.stage_job(first, [0])
    _run(second)
    t2 = store.stage_job(second, [0])
    _run(first, C.OP_STATUS_SUCCESS)
    t3 = store.stage_job(first, [0])
    assert t1 < t2 < t3 and not store.is_durable(t1)
    assert _stored_status(path, first.id) == "queued"   # staged only
    store.sync(t2)               # writes everything staged so far
    assert all(store.is_durable(t) for t in (t1, t2, t3))
    assert _stored_status(path, first.id) == "success"  # the later change won
    assert _stored_status(path, second.id) == "running"


def test_concurrent_syncs_all_return_durable(store: JobStore) -> None:
    path = store.path
    jobs = [_job(store) for _ in range(8)]
    start = threading.Barrier(len(jobs))
    failures: list[str] = []

    def worker(job: QueuedJob) -> None:
        start.wait(5)
        _run(job, C.OP_STATUS_SUCCESS)
        ticket = store.stage_job(job, [0])
        store.sync(ticket)
        if not store.is_durable(ticket):
            failures.append(f"job {job.id}")

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert failures == []
    assert {_stored_status(path, job.id) for job in jobs} == {"success"}


def test_failed_transaction_keeps_staged_changes(store: JobStore) -> None:
    path = store.path
    job = _job(store)
    _run(job)
    ticket = store.stage_job(job, [0])
    with pytest.raises(RuntimeError):
        with store.transaction():
            raise RuntimeError("boom")
    assert not store.is_durable(ticket)
    assert _stored_status(path, job.id) == "queued"
    with store.transaction():
        with pytest.raises(errors.ProgrammerError):
            store.sync(ticket)
    assert store.is_durable(ticket)
    assert _stored_status(path, job.id) == "running"


def test_log_entries_are_stored_without_a_state_change(store: JobStore) -> None:
    path = store.path
    job = _job(store)
    store.stage_log(job.id, 0, [1, now_ts(), C.ELOG_MESSAGE, "one"])
    store.write_logs()
    store.stage_log(job.id, 0, [2, now_ts(), C.ELOG_MESSAGE, "two"])
    other = JobStore(path, durable=False)
    try:
        loaded = other.load_job(job.id)
        assert loaded is not None
        assert [e[3] for e in loaded.ops[0].log] == ["one"]   # "two" only staged
    finally:
        other.close()
    with store.transaction():      # the next transaction takes staged entries along
        pass
    loaded = store.load_job(job.id)
    assert loaded is not None and [e[3] for e in loaded.ops[0].log] == ["one", "two"]


def test_queue_stores_a_state_before_it_is_seen(make_queue, runner, tmp_path: Path) -> None:
    queue = make_queue()
    path = tmp_path / "queue.db"
    job_id = queue.submit_job([jq(log_messages=["a", "b"], comment="run:gate")])
    assert wait_status(queue, job_id, "running") == "running"
    assert _stored_status(path, job_id) == "running"
    runner.release("gate")
    assert wait_final(queue, job_id) == "success"
    assert _stored_status(path, job_id) == "success"
    other = JobStore(path, durable=False)
    try:
        loaded = other.load_job(job_id)
        assert loaded is not None and [e[3] for e in loaded.ops[0].log] == ["a", "b"]
    finally:
        other.close()


def test_wait_for_job_change_answers_a_burst_at_once(queue, runner) -> None:
    job_id = queue.submit_job([jq(log_messages=["a", "b", "c"], comment="run:gate")])
    assert wait_status(queue, job_id, "running") == "running"
    info, entries = queue.wait_for_job_change(job_id, ["status"], ["running"], None, 5)
    # Three log entries made in a row come in one answer, not one each.
    assert info == ["running"] and [e[3] for e in entries] == ["a", "b", "c"]
    runner.release("gate")
    assert wait_final(queue, job_id) == "success"
