"""Node groups end to end on a dev cluster: ``gnt-group`` commands, ``gnt-node
add -g``, ``gnt-instance change-group``, the ``/2/groups`` RAPI resources over
HTTPS and Ganeti's own RAPI client (Debian's ``python3-ganeti-rapi``, run
unmodified with the system Python)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from corral import constants as C
from corral import daemons
from corral.devcluster import DevNode
from corral.rapi.users import ha1

pytestmark = pytest.mark.integration

SYSTEM_PYTHON = "/usr/bin/python3"
GANETI_CLIENT = Path("/usr/lib/python3/dist-packages/ganeti/rapi/client.py")


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any, rapi_users: Any, ganeti_os_noop: Path) -> Any:
    dev = module_dev_cluster(2)
    rapi_users(dev, f"admin {{HA1}}{ha1('admin', 'adminpw')} write\nro ropw read\n")
    return dev


@pytest.fixture
def gnt(cluster: Any, run_cli: Callable[..., Any]) -> Callable[..., Any]:
    """``gnt(*args, rc=0)``: run a gnt-* command on the master, check its exit code."""
    def run(*args: str, rc: int = 0) -> subprocess.CompletedProcess[str]:
        res = run_cli(list(args), cluster, timeout=300)
        assert res.returncode == rc, f"{args}: rc={res.returncode}\n{res.stdout}\n{res.stderr}"
        return res
    return run


def _rows(gnt: Callable[..., Any], *args: str) -> list[list[str]]:
    out = gnt(*args, "--no-headers", "--separator=|").stdout
    return [line.split("|") for line in out.splitlines()]


def test_group_commands(gnt: Callable[..., Any], cluster: Any) -> None:
    gnt("gnt-group", "add", "--alloc-policy", "last_resort",
        "--node-parameters", "spindle_count=3", "--ipolicy-vcpu-ratio", "3.5", "rack1")
    assert _rows(gnt, "gnt-group", "list") == [
        ["default", "2", "0", "preferred", _rows(gnt, "gnt-group", "list", "-o",
                                                  "ndparams", "default")[0][0]],
        ["rack1", "0", "0", "last_resort", _rows(gnt, "gnt-group", "list", "-o",
                                                  "ndparams", "rack1")[0][0]]]
    res = gnt("gnt-group", "add", "rack1", rc=1)
    assert "already exists" in res.stderr

    gnt("gnt-group", "assign-nodes", "rack1", "node2")
    assert _rows(gnt, "gnt-node", "list", "-o", "name,group") == [["node1", "default"],
                                                                ["node2", "rack1"]]
    assert _rows(gnt, "gnt-group", "list", "-o", "name,node_list,node_cnt") == [
        ["default", "node1", "1"], ["rack1", "node2", "1"]]

    out = gnt("gnt-group", "modify", "--alloc-policy", "preferred",
              "--node-parameters", "-spindle_count,ssh_port=2200", "rack1").stdout
    assert "Modified node group rack1" in out
    (doc,) = yaml.safe_load(gnt("gnt-group", "info", "rack1").stdout)
    assert doc["Node group"] == "rack1" and doc["Allocation policy"] == "preferred"
    assert doc["Nodes"] == ["node2"]
    assert doc["Node parameters"]["ssh_port"] == 2200
    assert doc["Node parameters"]["spindle_count"] == "default (1)"
    assert doc["Instance policy"]["vcpu-ratio"] == 3.5
    res = gnt("gnt-group", "modify", "rack1", rc=1)
    assert "at least one" in res.stderr

    fields = gnt("gnt-group", "list-fields", "--no-headers").stdout.split()
    for name in ("name", "uuid", "alloc_policy", "node_cnt", "node_list", "pinst_cnt",
                 "pinst_list", "ndparams", "diskparams", "ipolicy", "tags", "serial_no"):
        assert name in fields

    gnt("gnt-group", "add-tags", "rack1", "row:a", "cool")
    assert gnt("gnt-group", "list-tags", "rack1").stdout.split() == ["cool", "row:a"]
    gnt("gnt-group", "remove-tags", "rack1", "cool")
    assert gnt("gnt-group", "list-tags", "rack1").stdout.split() == ["row:a"]

    res = gnt("gnt-group", "remove", "rack1", rc=1)
    assert "not empty" in res.stderr and "node2" in res.stderr
    gnt("gnt-group", "rename", "default", "main")
    assert _rows(gnt, "gnt-node", "list", "-o", "name,group") == [["node1", "main"],
                                                                ["node2", "rack1"]]
    res = gnt("gnt-cluster", "verify")
    assert "Verifying node group main" in res.stdout
    assert "Verifying node group rack1" in res.stdout


def test_node_add_into_group(gnt: Callable[..., Any], cluster: Any) -> None:
    base = cluster.master.ip.rsplit(".", 1)[0]
    node = DevNode(name="node3", ip=f"{base}.3", root=str(Path(cluster.directory) / "node3"),
                   noded_port=cluster.master.noded_port)
    cluster.nodes.append(node)
    cluster.save()              # so that the fixture's teardown stops it too
    with cluster.client() as client:
        token = client.create_join_token(600)
    node.paths.ensure_dirs()
    daemons.start_noded(node.paths, node.ip, node.noded_port, join_token=token)
    args = ["--primary-ip", node.ip, "--noded-port", str(node.noded_port), "node3"]
    # Several groups: Ganeti wants the group named.
    res = gnt("gnt-node", "add", *args, rc=1)
    assert "More than one node group" in res.stderr
    gnt("gnt-node", "add", "-g", "rack1", *args)
    assert ["node3", "rack1"] in _rows(gnt, "gnt-node", "list", "-o", "name,group")
    assert _rows(gnt, "gnt-group", "list", "-o", "name,node_list", "rack1") == [
        ["rack1", "node2,node3"]]


def test_change_group_and_evacuate(gnt: Callable[..., Any], cluster: Any) -> None:
    gnt("gnt-instance", "add", "-t", "sharedfile", "-o", "noop", "-n", "node1",
        "--disk", "0:size=16", "--no-ip-check", "--no-name-check", "-B", "maxmem=64,minmem=64",
        "cg1")
    res = gnt("gnt-instance", "change-group", "-I", "hail", "cg1", rc=1)
    assert "allocators are not implemented" in res.stderr
    gnt("gnt-instance", "change-group", "--to", "rack1", "cg1")
    # Both rack1 nodes are empty: the first by name is chosen.
    assert _rows(gnt, "gnt-instance", "list", "-o", "pnode", "cg1") == [["node2"]]
    out = gnt("gnt-group", "evacuate", "--to", "main", "rack1").stdout
    assert "All instances evacuated successfully." in out
    assert _rows(gnt, "gnt-instance", "list", "-o", "name,pnode,status") == [
        ["cg1", "node1", "running"]]
    gnt("gnt-instance", "remove", "-f", "cg1")


def _wait_job(client: httpx.Client, job_id: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/2/jobs/{job_id}").json()
        if job["status"] in C.JOBS_FINALIZED:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_rapi_groups(cluster: Any) -> None:
    base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
    with httpx.Client(base_url=base, verify=False, timeout=60) as anon, \
            httpx.Client(base_url=base, verify=False, timeout=60,
                         auth=("ro", "ropw")) as reader, \
            httpx.Client(base_url=base, verify=False, timeout=60,
                         auth=("admin", "adminpw")) as admin:
        names = [g["name"] for g in anon.get("/2/groups").json()]
        assert "rack1" in names
        assert {"name": "rack1", "uri": "/2/groups/rack1"} in anon.get("/2/groups").json()
        bulk = {g["name"]: g for g in anon.get("/2/groups?bulk=1").json()}
        assert bulk["rack1"]["node_cnt"] >= 1 and bulk["rack1"]["alloc_policy"] == "preferred"
        assert set(bulk["rack1"]) >= {"uuid", "ipolicy", "custom_ndparams", "tags",
                                      "serial_no", "diskparams"}
        assert anon.get("/2/groups/nosuch").status_code == 404

        body = {"name": "rapig", "alloc_policy": "unallocable"}
        assert reader.post("/2/groups", json=body).status_code == 403
        resp = admin.post("/2/groups?dry-run=1", json=body)
        assert _wait_job(anon, resp.json())["status"] == "success"
        assert anon.get("/2/groups/rapig").status_code == 404
        resp = admin.post("/2/groups", json=body)
        assert _wait_job(anon, resp.json())["status"] == "success"
        assert anon.get("/2/groups/rapig").json()["alloc_policy"] == "unallocable"

        resp = admin.put("/2/groups/rapig/modify",
                         json={"custom_ndparams": {"ssh_port": 2022}})
        assert _wait_job(anon, resp.json())["status"] == "success"
        assert anon.get("/2/groups/rapig").json()["custom_ndparams"] == {"ssh_port": 2022}
        resp = admin.put("/2/groups/rapig/modify", json={"alloc_policy": "bogus"})
        assert resp.status_code == 400

        resp = admin.put("/2/groups/rapig/tags?tag=t1&tag=t2")
        assert _wait_job(anon, resp.json())["status"] == "success"
        assert sorted(anon.get("/2/groups/rapig/tags").json()) == ["t1", "t2"]

        resp = admin.put("/2/groups/rapig/rename", json={"new_name": "rapig2"})
        assert _wait_job(anon, resp.json())["status"] == "success"
        resp = admin.put("/2/groups/rapig2/assign-nodes", json={"nodes": ["node3"]})
        assert _wait_job(anon, resp.json())["status"] == "success"
        resp = admin.delete("/2/groups/rapig2")
        job = _wait_job(anon, resp.json())
        assert job["status"] == "error" and "not empty" in json.dumps(job["opresult"])
        resp = admin.put("/2/groups/rack1/assign-nodes", json={"nodes": ["node3"]})
        assert _wait_job(anon, resp.json())["status"] == "success"
        resp = admin.delete("/2/groups/rapig2")
        assert _wait_job(anon, resp.json())["status"] == "success"

        res = reader.get("/2/query/group?fields=name,node_cnt")
        assert res.status_code == 200
        assert [[0, "rack1"], [0, 2]] in res.json()["data"]


_OFFICIAL_SCRIPT = """
import json, sys
from ganeti.rapi import client as rc
host, port = sys.argv[1], int(sys.argv[2])
cl = rc.GanetiRapiClient(host, port=port, username="admin", password="adminpw")
out = {"before": sorted(cl.GetGroups())}
job = cl.CreateGroup("official", alloc_policy="last_resort")
out["create"] = cl.WaitForJobCompletion(job, period=1, retries=120)
out["group"] = cl.GetGroup("official")
out["bulk"] = sorted(g["name"] for g in cl.GetGroups(bulk=True))
job = cl.DeleteGroup("official")
out["delete"] = cl.WaitForJobCompletion(job, period=1, retries=120)
out["after"] = sorted(cl.GetGroups())
print(json.dumps(out))
"""


@pytest.mark.skipif(not GANETI_CLIENT.exists(),
                    reason="Debian package python3-ganeti-rapi not installed "
                           "(scripts/setup.sh installs it)")
def test_official_rapi_client(cluster: Any) -> None:
    res = subprocess.run([SYSTEM_PYTHON, "-c", _OFFICIAL_SCRIPT, cluster.master.ip,
                          str(cluster.rapi_port)], capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert "official" not in out["before"]
    assert out["create"] is True and out["delete"] is True
    assert out["group"]["name"] == "official"
    assert out["group"]["alloc_policy"] == "last_resort"
    assert "official" in out["bulk"]
    assert out["after"] == out["before"]
