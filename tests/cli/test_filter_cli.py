"""Job filter rules end to end on a real dev cluster: ``gnt-filter``, the
scheduler obeying them, and ``/2/filters`` (Ganeti 2.13's job filters)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from corral import constants as C

pytestmark = pytest.mark.integration

USER, PASSWORD = "fwriter", "fsecret"
DELAY_IS = '[["opcode", ["=", "OP_ID", "OP_TEST_DELAY"]]]'


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any, rapi_users: Any) -> Any:
    c = module_dev_cluster(1)
    rapi_users(c, f"{USER} {PASSWORD} write\n")
    return c


@pytest.fixture
def client(cluster: Any, master_client: Any) -> Any:
    cl = master_client(cluster)
    yield cl
    for (uuid,) in cl.query_filters(None, ["uuid"]):
        cl.delete_filter(uuid)


def _ok(run_cli: Any, cluster: Any, *args: str) -> str:
    res = run_cli(list(args), cluster, timeout=120)
    assert res.returncode == 0, f"{args}: {res.stdout}{res.stderr}"
    return res.stdout


def _status(client: Any, job_id: int) -> str:
    return client.query_jobs([job_id], ["status"])[0][0]


def _delay(client: Any, seconds: float, reason: str | None = None) -> int:
    op: dict[str, Any] = {"OP_ID": "OP_TEST_DELAY", "duration": seconds}
    if reason:
        op["reason"] = [["gnt:user", reason, time.time_ns()]]
    return client.submit_job([op])


def _wait_status(client: Any, job_id: int, wanted: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status(client, job_id)
        if status in wanted:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stayed {status}, wanted {wanted}")


def test_reject_pause_and_delete(cluster: Any, run_cli: Any, client: Any) -> None:
    reject = _ok(run_cli, cluster, "gnt-filter", "add", "--predicates", DELAY_IS,
                 "--action", "REJECT", "--reason", "no delays today").strip()
    job_id = _delay(client, 0)
    assert _wait_status(client, job_id, set(C.JOBS_FINALIZED)) == C.JOB_STATUS_CANCELED
    opresult = client.query_jobs([job_id], ["opresult"])[0][0]
    assert "rejected by a job filter rule" in str(opresult)
    # Other jobs are not affected.
    other = client.submit_job([{"OP_ID": "OP_TEST_JQUEUE"}])
    assert _wait_status(client, other, set(C.JOBS_FINALIZED)) == C.JOB_STATUS_SUCCESS
    _ok(run_cli, cluster, "gnt-filter", "replace", "--predicates", DELAY_IS, "--action",
        "PAUSE", reject)
    paused = _delay(client, 0)
    time.sleep(1)
    assert _status(client, paused) == C.JOB_STATUS_QUEUED
    out = _ok(run_cli, cluster, "gnt-filter", "info", reject)
    assert f"UUID: {reject}" in out and "Action: PAUSE" in out
    assert "Reason trail: []" in out     # replace without --reason
    _ok(run_cli, cluster, "gnt-filter", "delete", reject)
    assert _wait_status(client, paused, set(C.JOBS_FINALIZED)) == C.JOB_STATUS_SUCCESS
    assert _ok(run_cli, cluster, "gnt-filter", "list", "--no-headers").strip() == ""


def test_reject_cancels_queued_jobs(cluster: Any, run_cli: Any, client: Any) -> None:
    pause = _ok(run_cli, cluster, "gnt-filter", "add", "--priority", "1", "--action",
                "PAUSE").strip()
    queued = _delay(client, 0)
    time.sleep(0.5)
    assert _status(client, queued) == C.JOB_STATUS_QUEUED
    # Tried before the pause rule (lower priority number): cancels the queued job.
    _ok(run_cli, cluster, "gnt-filter", "add", "--priority", "0", "--predicates", DELAY_IS,
        "--action", "REJECT")
    assert _wait_status(client, queued, set(C.JOBS_FINALIZED)) == C.JOB_STATUS_CANCELED
    _ok(run_cli, cluster, "gnt-filter", "delete", pause)


def test_rate_limit(cluster: Any, run_cli: Any, client: Any) -> None:
    _ok(run_cli, cluster, "gnt-filter", "add", "--predicates", DELAY_IS, "--action",
        "RATE_LIMIT 1")
    first, second = _delay(client, 1.5), _delay(client, 1.5)
    _wait_status(client, first, {C.JOB_STATUS_RUNNING, C.JOB_STATUS_WAITING})
    time.sleep(0.5)
    assert _status(client, second) == C.JOB_STATUS_QUEUED
    _wait_status(client, second, set(C.JOBS_FINALIZED))
    (start1, end1), (start2, _end2) = client.query_jobs([first, second],
                                                        ["start_ts", "end_ts"])
    assert tuple(start2) >= tuple(end1)


def test_rate_limit_bucket_from_reason(cluster: Any, client: Any) -> None:
    first = _delay(client, 1.5, "rate-limit:1:maintenance")
    second = _delay(client, 0, "rate-limit:1:maintenance")
    free = _delay(client, 0)
    assert _wait_status(client, free, set(C.JOBS_FINALIZED)) == C.JOB_STATUS_SUCCESS
    assert _status(client, second) == C.JOB_STATUS_QUEUED
    assert _wait_status(client, second, set(C.JOBS_FINALIZED)) == C.JOB_STATUS_SUCCESS
    assert _status(client, first) == C.JOB_STATUS_SUCCESS


def test_cli_refusals(cluster: Any, run_cli: Any, client: Any) -> None:
    res = run_cli(["gnt-filter", "add", "--action", "DROP"], cluster)
    assert res.returncode != 0 and "action 'DROP' is not one of" in res.stderr
    res = run_cli(["gnt-filter", "add", "--predicates", "[[\"opcode\""], cluster)
    assert res.returncode != 0 and "--predicates must be a JSON list" in res.stderr
    res = run_cli(["gnt-filter", "delete", "no-such-rule"], cluster)
    assert res.returncode != 0 and "not found" in res.stderr
    assert client.query_filters(None, ["uuid"]) == []


def test_rapi(cluster: Any, client: Any) -> None:
    base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
    body = {"priority": 5, "predicates": [["jobid", [">", "id", "watermark"]]],
            "action": ["RATE_LIMIT", 3], "reason": [["gnt:user", "rapi test", 1]]}
    with httpx.Client(verify=False, timeout=30, auth=(USER, PASSWORD)) as http:
        assert http.post(f"{base}/2/filters", json=body, auth=None).status_code == 401
        r = http.post(f"{base}/2/filters", json={**body, "owner": "me"})
        assert r.status_code == 400 and "owner" in r.json()["message"]
        assert http.post(f"{base}/2/filters?dry-run=1", json=body).json() is None
        assert http.get(f"{base}/2/filters").json() == []
        uuid = http.post(f"{base}/2/filters", json=body).json()
        assert http.get(f"{base}/2/filters").json() == [
            {"uuid": uuid, "uri": f"/2/filters/{uuid}"}]
        got = http.get(f"{base}/2/filters/{uuid}").json()
        assert got["priority"] == 5 and got["action"] == ["RATE_LIMIT", 3]
        assert got["watermark"] >= 1 and got["reason_trail"] == body["reason"]
        assert http.put(f"{base}/2/filters/{uuid}", json={"action": "ACCEPT"}).json() == uuid
        [bulk] = http.get(f"{base}/2/filters?bulk=1").json()
        assert bulk["action"] == "ACCEPT" and bulk["priority"] == 0
        q = http.get(f"{base}/2/query/filter?fields=uuid,action").json()
        assert q["data"] == [[[0, uuid], [0, "ACCEPT"]]]
        assert http.delete(f"{base}/2/filters/{uuid}").status_code == 200
        assert http.get(f"{base}/2/filters/{uuid}").status_code == 404
        assert http.delete(f"{base}/2/filters/{uuid}").status_code == 404
    assert json.dumps(client.query_filters(None, ["uuid"])) == "[]"
