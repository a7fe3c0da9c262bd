"""Ganeti's official RAPI client, unmodified (Debian's python3-ganeti-rapi,
run with the system Python), against a real 3-node dev cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C

pytestmark = pytest.mark.integration

SYSTEM_PYTHON = "/usr/bin/python3"
DRIVER = Path(__file__).with_name("ganeti_client_driver.py")
USER, PASSWORD = "gclient", "gsecret"


def _client_available() -> bool:
    if not shutil.which(SYSTEM_PYTHON):
        return False
    res = subprocess.run([SYSTEM_PYTHON, "-c", "import ganeti.rapi.client"],
                         capture_output=True, timeout=60)
    return res.returncode == 0


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any, rapi_users: Any, ganeti_os_noop: Path) -> Any:
    if not _client_available():
        # setup.sh installs python3-ganeti-rapi; CI runs setup, so this fails there.
        pytest.fail("Ganeti's RAPI client (python3-ganeti-rapi) is not installed; "
                    "run ./scripts/setup.sh")
    c = module_dev_cluster(3)
    rapi_users(c, f"{USER} {PASSWORD} write\n")
    return c


def call(cluster: Any, *calls: tuple[str, list[Any], dict[str, Any], bool]
         ) -> list[dict[str, Any]]:
    spec = {"host": cluster.master.ip, "port": cluster.rapi_port, "user": USER,
            "password": PASSWORD, "cafile": str(cluster.master_paths.rapi_cert),
            "calls": [list(c) for c in calls]}
    res = subprocess.run([SYSTEM_PYTHON, str(DRIVER)], input=json.dumps(spec),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _ok_job(entry: dict[str, Any]) -> list[Any]:
    assert entry["ok"], entry
    assert entry["job"]["status"] == C.JOB_STATUS_SUCCESS, entry
    return entry["job"]["opresult"]


def _pnode(cluster: Any, name: str) -> str:
    [entry] = call(cluster, ("GetInstance", [name], {}, False))
    assert entry["ok"], entry
    return entry["result"]["pnode"]


def test_cluster_resources(cluster: Any) -> None:
    features, info, redist = call(
        cluster, ("GetFeatures", [], {}, False), ("GetInfo", [], {}, False),
        ("RedistributeConfig", [], {"reason": "test"}, True))
    assert {"node-migrate-reqv1", "node-evac-res1"} <= set(features["result"])
    assert info["result"]["name"] == cluster.cluster_name
    _ok_job(redist)


def test_node_storage_units(cluster: Any) -> None:
    [entry, refused] = call(
        cluster, ("GetNodeStorageUnits", ["node2", "file", "name,size,used,free,allocatable"],
                  {}, True),
        ("GetNodeStorageUnits", ["node2", "lvm-vg", "name"], {}, True))
    [[name, size, used, free, allocatable]] = _ok_job(entry)[0]
    assert name.endswith("file-storage") and allocatable is True
    assert 0 <= used and 0 <= free <= size
    assert refused["ok"] and refused["job"]["status"] == C.JOB_STATUS_ERROR


def test_instance_and_node_moves(cluster: Any) -> None:
    disks = [{"size": 64}]
    created = call(cluster, ("CreateInstance", ["create", "gc1", "sharedfile", disks, []],
                             {"os": "noop", "pnode": "node1", "name_check": False,
                              "ip_check": False}, True))
    _ok_job(created[0])
    assert _pnode(cluster, "gc1") == "node1"
    _ok_job(call(cluster, ("MigrateInstance", ["gc1"],
                           {"mode": "live", "target_node": "node2"}, True))[0])
    assert _pnode(cluster, "gc1") == "node2"
    _ok_job(call(cluster, ("FailoverInstance", ["gc1"],
                           {"target_node": "node3"}, True))[0])
    assert _pnode(cluster, "gc1") == "node3"
    # Node migrate and evacuate answer with follow-up jobs (node-*-reqv1/res1).
    result = _ok_job(call(cluster, ("MigrateNode", ["node3"],
                                    {"mode": "live", "target_node": "node1"}, True))[0])
    [[ok, job_id]] = result[0]["jobs"]
    assert ok
    _ok_job(_job_entry(cluster, job_id))
    assert _pnode(cluster, "gc1") == "node1"
    result = _ok_job(call(cluster, ("EvacuateNode", ["node1"],
                                    {"mode": "primary-only", "remote_node": "node2"},
                                    True))[0])
    [[ok, job_id]] = result[0]["jobs"]
    assert ok
    _ok_job(_job_entry(cluster, job_id))
    assert _pnode(cluster, "gc1") == "node2"


def _job_entry(cluster: Any, job_id: int) -> dict[str, Any]:
    """A finished job as a wait entry (``{"ok", "job"}``)."""
    done, status = call(cluster, ("WaitForJobCompletion", [job_id], {"period": 0.2,
                                                                     "retries": 600}, False),
                        ("GetJobStatus", [job_id], {}, False))
    assert done["ok"] and done["result"], done
    return {"ok": True, "job": {"status": status["result"]["status"],
                                "opresult": status["result"]["opresult"]}}


def test_multi_alloc(cluster: Any) -> None:
    inst = {"mode": "create", "disk_template": "diskless", "disks": [], "nics": [],
            "os": "noop", "name_check": False, "ip_check": False}
    [entry] = call(cluster, ("InstancesMultiAlloc",
                             [[{**inst, "name": "gcm1", "pnode": "node1"},
                               {**inst, "name": "gcm2", "pnode": "node2"}]], {}, True))
    result = _ok_job(entry)[0]
    assert result["allocatable"] == ["gcm1", "gcm2"] and result["failed"] == []
    for ok, job_id in result["jobs"]:
        assert ok
        _ok_job(_job_entry(cluster, job_id))
    assert _pnode(cluster, "gcm1") == "node1" and _pnode(cluster, "gcm2") == "node2"


def test_node_migrate_old_request_form(cluster: Any) -> None:
    import httpx

    base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
    with httpx.Client(verify=False, timeout=60, auth=(USER, PASSWORD)) as http:
        r = http.post(f"{base}/2/nodes/node3/migrate?live=0&mode=live")
        assert r.status_code == 400 and "Only one of 'live' and 'mode'" in r.json()["message"]
        job_id = http.post(f"{base}/2/nodes/node3/migrate?live=0",
                           json={"mode": "ignored"}).json()
        ops = http.get(f"{base}/2/jobs/{job_id}").json()["ops"]
        assert ops[0]["OP_ID"] == "OP_NODE_MIGRATE" and ops[0]["mode"] == "non-live"
