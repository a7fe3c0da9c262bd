"""End to end: real gnt-* commands and RAPI requests against a real cluster.

Each test initialises a one-node cluster with ``gnt-cluster init`` on a free
loopback address, in its own state root, and destroys it at the end (with
``devcluster.down`` as the safety net, so no daemon survives a failure).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from corral import constants as C
from corral.paths import Paths
from corral.rapi.users import ha1

pytestmark = pytest.mark.integration


class Cluster:
    def __init__(self, root: Path, ip: str, run_cli: Callable[..., Any]) -> None:
        self.root = root
        self.ip = ip
        self.paths = Paths(root)
        self._run_cli = run_cli

    def run(self, *args: str, input: str | None = None) -> Any:
        return self._run_cli(list(args), self.root, input=input, timeout=300)

    def ok(self, *args: str) -> str:
        res = self.run(*args)
        assert res.returncode == 0, f"{args}: rc={res.returncode}\n{res.stdout}\n{res.stderr}"
        return res.stdout


@pytest.fixture
def cluster(loopback_base: Callable[[int], str], short_tmp: Path,
            run_cli: Callable[..., Any], ganeti_os_noop: Path) -> Iterator[Cluster]:
    from corral import devcluster

    ip = loopback_base(1) + ".1"
    root = short_tmp / "node1"
    c = Cluster(root, ip, run_cli)
    try:
        res = c.run("gnt-cluster", "init", "--primary-ip", ip, "--master-name", "node1",
                    "--enabled-hypervisors", "fake",
                    "--enabled-disk-templates", "diskless,file", "cli-test")
        assert res.returncode == 0, res.stdout + res.stderr
        yield c
    finally:
        devcluster.down(short_tmp)


def _wait_rapi_job(client: httpx.Client, job_id: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/2/jobs/{job_id}").json()
        if job["status"] in C.JOBS_FINALIZED:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_cli_end_to_end(cluster: Cluster) -> None:
    assert cluster.ok("gnt-cluster", "getmaster") == "node1\n"
    info = yaml.safe_load(cluster.ok("gnt-cluster", "info"))
    assert info["Cluster name"] == "cli-test"
    assert info["Enabled hypervisors"] == "fake"

    cluster.ok("gnt-cluster", "modify", "-C", "5")
    info = yaml.safe_load(cluster.ok("gnt-cluster", "info"))
    assert info["Cluster parameters"]["candidate pool size"] == 5
    assert cluster.ok("gnt-cluster", "queue", "info") == "The drain flag is unset\n"
    verify = cluster.run("gnt-cluster", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    lines = cluster.ok("gnt-node", "list", "-o", "name,pip", "--no-headers").split()
    assert lines == ["node1", cluster.ip]
    res = cluster.run("gnt-node", "list", "-o", "name,nosuchfield")
    assert res.returncode == 14 and "nosuchfield" in res.stderr

    out = cluster.ok("gnt-instance", "add", "-t", "diskless", "-o", "noop", "-n", "node1",
                     "--no-ip-check", "--no-name-check", "inst1")
    # The job log is followed live, each line with Ganeti's ctime stamp.
    assert out.strip(), "expected the creation job's log"
    for line in out.splitlines():
        assert re.match(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} ", line), line
    rows = cluster.ok("gnt-instance", "list", "-o", "name,pnode,status,os",
                      "--separator=|", "--no-headers").splitlines()
    assert rows == ["inst1|node1|running|noop"]

    (doc,) = yaml.safe_load(cluster.ok("gnt-instance", "info", "inst1"))
    assert doc["Instance name"] == "inst1"
    assert doc["State"] == "configured to be up, actual state is up"

    cluster.ok("gnt-instance", "shutdown", "inst1")
    rows = cluster.ok("gnt-instance", "list", "-o", "status", "--no-headers").split()
    assert rows == ["ADMIN_down"]

    # Declined confirmation (no terminal): nothing removed.
    res = cluster.run("gnt-instance", "remove", "inst1")
    assert res.returncode == 13
    assert cluster.ok("gnt-instance", "list", "-o", "name", "--no-headers").split() == \
        ["inst1"]
    cluster.ok("gnt-instance", "remove", "-f", "inst1")
    assert cluster.ok("gnt-instance", "list", "--no-headers") == ""

    res = cluster.run("gnt-instance", "remove", "-f", "inst1")
    assert res.returncode == 1
    assert "unknown_entity" in res.stderr or "not known" in res.stderr

    assert "noop" in cluster.ok("gnt-os", "list", "--no-headers").split()
    jobs = cluster.ok("gnt-job", "list", "--no-headers", "-o", "id,status,summary")
    assert "INSTANCE_CREATE(inst1)" in jobs and "INSTANCE_REMOVE(inst1)" in jobs

    cluster.ok("gnt-cluster", "destroy", "--yes-do-it")
    assert not cluster.paths.config_db.exists()
    res = cluster.run("gnt-cluster", "master-ping")
    assert res.returncode == 1


def test_rapi_end_to_end(cluster: Cluster) -> None:
    users = cluster.paths.rapi_users
    users.parent.mkdir(parents=True, exist_ok=True)
    users.write_text(f"admin {{HA1}}{ha1('admin', 'adminpw')} write\nro ropw read\n")
    base = f"https://{cluster.ip}:{C.DEFAULT_RAPI_PORT}"
    with httpx.Client(base_url=base, verify=False, timeout=60) as anon, \
            httpx.Client(base_url=base, verify=False, timeout=60,
                         auth=("ro", "ropw")) as reader, \
            httpx.Client(base_url=base, verify=False, timeout=60,
                         auth=("admin", "adminpw")) as admin:
        assert anon.get("/version").json() == 2
        assert anon.get("/2/info").json()["name"] == "cli-test"
        assert anon.get("/2/nodes").json() == [{"id": "node1", "uri": "/2/nodes/node1"}]
        (node,) = anon.get("/2/nodes?bulk=1").json()
        assert node["name"] == "node1" and node["pip"] == cluster.ip
        assert anon.get("/2/nodes/node1/role").json() == "master"
        assert anon.get("/2/nodes/node1").json()["secondary_ip"] == cluster.ip
        assert "noop" in anon.get("/2/os").json()

        body = {"__version__": 1, "name": "rinst", "os": "noop", "mode": "create",
                "disk_template": "diskless", "disks": [], "nics": [{}],
                "pnode": "node1", "ip_check": False, "name_check": False}
        resp = anon.post("/2/instances", json=body)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == 'Basic realm="Ganeti Remote API"'
        resp = reader.post("/2/instances", json=body)
        assert resp.status_code == 403
        resp = admin.post("/2/instances", json=body)
        assert resp.status_code == 200, resp.text
        job = _wait_rapi_job(anon, resp.json())
        assert job["status"] == "success", job

        (bulk,) = anon.get("/2/instances?bulk=1").json()
        assert bulk["name"] == "rinst" and bulk["disk_template"] == "diskless"
        inst = anon.get("/2/instances/rinst").json()
        assert inst["pnode"] == "node1" and inst["status"] == "running"
        assert inst["beparams"]["memory"] == inst["beparams"]["maxmem"]
        assert anon.get("/2/instances/nosuch").status_code == 404

        resp = admin.request("GET", f"/2/jobs/{job['id']}/wait",
                             json={"fields": ["status"]})
        assert resp.status_code == 200 and resp.json()["job_info"] == ["success"]
        assert reader.request("GET", f"/2/jobs/{job['id']}/wait",
                              json={"fields": ["status"]}).status_code == 403

        resp = admin.put("/2/instances/rinst/shutdown", json={"timeout": 10})
        assert _wait_rapi_job(anon, resp.json())["status"] == "success"
        resp = admin.delete("/2/instances/rinst")
        assert _wait_rapi_job(anon, resp.json())["status"] == "success"
        assert anon.get("/2/instances").json() == []

        res = reader.get("/2/query/node?fields=name,role")
        assert res.status_code == 200
        assert res.json()["data"] == [[[0, "node1"], [0, "M"]]]
