"""``gnt-instance batch-create`` and ``/2/instances-multi-alloc``
(OP_INSTANCE_MULTI_ALLOC) on a real 2-node dev cluster."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral import constants as C

pytestmark = pytest.mark.integration

USER, PASSWORD = "writer", "secret"


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any, rapi_users: Any, ganeti_os_noop: Path) -> Any:
    c = module_dev_cluster(2)
    rapi_users(c, f"{USER} {PASSWORD} write\n")
    return c


def _inst(name: str, pnode: str, **extra: Any) -> dict[str, Any]:
    return {"instance_name": name, "mode": "create", "disk_template": "diskless",
            "os_type": "noop", "pnode": pnode, "disks": [], "nics": [],
            "name_check": False, "ip_check": False, **extra}


def _instances(run_cli: Any, cluster: Any) -> dict[str, str]:
    res = run_cli(["gnt-instance", "list", "-o", "name,pnode", "--no-headers"], cluster)
    assert res.returncode == 0, res.stderr
    return dict(line.split() for line in res.stdout.splitlines())


def test_batch_create(cluster: Any, run_cli: Any, tmp_path: Path) -> None:
    spec = tmp_path / "batch.json"
    spec.write_text(json.dumps([_inst("batch1", "node1"), _inst("batch2", "node2"),
                                {**_inst("batch3", "node1"), "OP_ID": "OP_INSTANCE_CREATE"}]))
    res = run_cli(["gnt-instance", "batch-create", "--dry-run", str(spec)], cluster)
    assert res.returncode == 0 and "Would create: batch1, batch2, batch3" in res.stdout
    assert not {"batch1", "batch2", "batch3"} & set(_instances(run_cli, cluster))
    res = run_cli(["gnt-instance", "batch-create", str(spec)], cluster)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("Waiting for job") == 3
    assert "All instances created successfully." in res.stdout
    got = _instances(run_cli, cluster)
    assert {k: got[k] for k in ("batch1", "batch2", "batch3")} == {
        "batch1": "node1", "batch2": "node2", "batch3": "node1"}
    # One of three already exists: the other two are created, the command fails.
    again = tmp_path / "again.json"
    again.write_text(json.dumps([_inst("batch1", "node1"), _inst("batch4", "node2")]))
    res = run_cli(["gnt-instance", "batch-create", str(again)], cluster)
    assert res.returncode == 1 and "There were 1 errors during the creation." in res.stdout
    assert "batch4" in _instances(run_cli, cluster)


@pytest.mark.parametrize(("definitions", "message"), [
    ([_inst("dup1", "node1"), _inst("dup1", "node2")], "duplicate instance names: dup1"),
    ([_inst("some1", "node1"), {**_inst("none1", "node1"), "pnode": None}],
     "providing pnode/snode while others do not"),
    ([{**_inst("noal1", "node1"), "pnode": None}], "No iallocator or nodes"),
    ([{**_inst("ial1", "node1"), "iallocator": "hail"}], "iallocator are not allowed"),
    ([{**_inst("bad1", "node1"), "no_such_param": 1}], "no_such_param"),
    ([_inst("nonode1", "nosuchnode")], "nosuchnode"),
])
def test_batch_create_refusals_create_nothing(cluster: Any, run_cli: Any, tmp_path: Path,
                                              definitions: list[Any], message: str) -> None:
    before = _instances(run_cli, cluster)
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps(definitions))
    res = run_cli(["gnt-instance", "batch-create", str(spec)], cluster)
    assert res.returncode != 0 and message in res.stderr, res.stderr
    assert _instances(run_cli, cluster) == before


def test_batch_create_bad_file(cluster: Any, run_cli: Any, tmp_path: Path) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text('{"instance_name": "x"}')
    res = run_cli(["gnt-instance", "batch-create", str(spec)], cluster)
    assert res.returncode != 0 and "not a list of dictionaries" in res.stderr


def test_rapi_multi_alloc(cluster: Any, run_cli: Any) -> None:
    base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
    body = {"instances": [{"name": "rapi-ma1", "os": "noop", "mode": "create",
                           "disk_template": "diskless", "pnode": "node2", "disks": [],
                           "nics": [], "name_check": False, "ip_check": False}]}
    with httpx.Client(verify=False, timeout=60, auth=(USER, PASSWORD)) as http:
        assert http.post(f"{base}/2/instances-multi-alloc", json=body,
                         auth=None).status_code == 401
        r = http.post(f"{base}/2/instances-multi-alloc", json={"foo": 1})
        assert r.status_code == 400 and "'instances'" in r.json()["message"]
        job_id = http.post(f"{base}/2/instances-multi-alloc?dry-run=1", json=body).json()
        job = _wait(http, base, job_id)
        assert job["opresult"][0] == {"allocatable": ["rapi-ma1"], "failed": [], "jobs": []}
        job_id = http.post(f"{base}/2/instances-multi-alloc", json=body).json()
        job = _wait(http, base, job_id)
        assert job["status"] == C.JOB_STATUS_SUCCESS
        result = job["opresult"][0]
        assert result["allocatable"] == ["rapi-ma1"] and result["failed"] == []
        [[ok, spawned]] = result["jobs"]
        assert ok and _wait(http, base, spawned)["status"] == C.JOB_STATUS_SUCCESS
    assert _instances(run_cli, cluster)["rapi-ma1"] == "node2"


def _wait(http: httpx.Client, base: str, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = http.get(f"{base}/2/jobs/{job_id}").json()
        if job["status"] in C.JOBS_FINALIZED:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")
