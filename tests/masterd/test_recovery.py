"""masterd process lifecycle: SIGKILL with jobs in the queue, SIGTERM, restart."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from corral import daemons, errors
from corral.masterd.client import MasterClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _delay(duration: float) -> dict[str, Any]:
    return {"OP_ID": "OP_TEST_DELAY", "duration": duration}


def _wait_status(client: MasterClient, job_id: int, status: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while client.query_jobs([job_id], ["status"])[0][0] != status:
        assert time.monotonic() < deadline, f"job {job_id} never reached {status}"
        time.sleep(0.05)


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while daemons._alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.05)


def test_sigkill_with_running_and_queued_jobs(dev_cluster: Any) -> None:
    cluster = dev_cluster(1, cluster_name="recovery-test")
    paths = cluster.master_paths
    with MasterClient(paths) as client:
        client.wait_job(client.submit_job([{"OP_ID": "OP_CLUSTER_SET_PARAMS",
                                            "max_running_jobs": 1}]), timeout=60)
        running = client.submit_job([_delay(120)])
        _wait_status(client, running, "running")
        queued = [client.submit_job([_delay(0.1)]) for _ in range(3)]
        assert [r[0] for r in client.query_jobs(queued, ["status"])] == ["queued"] * 3

    pid = daemons.daemon_pid(paths, daemons.MASTERD)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert not daemons.masterd_answers(paths)
    assert paths.master_socket.exists()           # left behind by the killed daemon

    new_pid = daemons.start_masterd(paths)
    assert new_pid != pid and daemons.daemon_pid(paths, daemons.MASTERD) == new_pid
    with MasterClient(paths) as client:
        with pytest.raises(errors.JobLost) as info:
            client.wait_job(running, timeout=30)
        assert "master daemon restart" in info.value.message
        status, opresult = client.query_jobs([running], ["status", "opresult"])[0]
        assert status == "error" and opresult[0][0] == "JobLost"
        for job_id in queued:
            assert client.wait_job(job_id, timeout=60) == [None]
        assert client.wait_job(client.submit_job([_delay(0)]), timeout=30) == [None]


def test_sigterm_stops_cleanly_and_restarts(dev_cluster: Any) -> None:
    cluster = dev_cluster(1, cluster_name="sigterm-test")
    paths = cluster.master_paths
    with MasterClient(paths) as client:
        job_id = client.submit_job([_delay(1.5)])
        _wait_status(client, job_id, "running")
    pid = daemons.daemon_pid(paths, daemons.MASTERD)
    assert pid is not None
    start = time.monotonic()
    assert daemons.stop_daemon(paths, daemons.MASTERD, timeout=30)
    assert time.monotonic() - start < 25
    assert not daemons._alive(pid)
    assert not paths.master_socket.exists()
    assert not paths.pid_file(daemons.MASTERD).exists()
    assert not daemons.daemon_running(paths, daemons.MASTERD)
    # A second stop is a no-op.
    assert daemons.stop_daemon(paths, daemons.MASTERD) is False
    with MasterClient(paths, timeout=5) as client, pytest.raises(errors.CorralError) as info:
        client.query_cluster_info()
    assert info.value.ecode == errors.ECODE_ENVIRON

    daemons.start_masterd(paths)
    with MasterClient(paths) as client:
        # The running job was allowed to finish during the shutdown.
        assert client.wait_job(job_id, timeout=30) == [None]
        assert client.query_cluster_info()["name"] == "sigterm-test"


def test_second_masterd_refuses_to_start(dev_cluster: Any) -> None:
    cluster = dev_cluster(1, cluster_name="double-test")
    paths = cluster.master_paths
    with pytest.raises(errors.CorralError) as info:
        daemons.start_masterd(paths)
    assert info.value.ecode == errors.ECODE_STATE
    # The running one is unaffected.
    assert daemons.masterd_answers(paths)


def test_stale_pid_file_is_not_trusted(dev_cluster: Any) -> None:
    """stop_daemon must not signal a process that is not this root's daemon."""
    cluster = dev_cluster(1, cluster_name="pidfile-test")
    paths = cluster.master_paths
    real_pid = daemons.daemon_pid(paths, daemons.MASTERD)
    pid_file = paths.pid_file(daemons.MASTERD)
    try:
        pid_file.write_text(f"{os.getpid()}\n")       # this pytest process
        assert daemons.stop_daemon(paths, daemons.MASTERD) is False
        assert not pid_file.exists()
    finally:
        pid_file.write_text(f"{real_pid}\n")
    assert daemons.masterd_answers(paths)
