"""Networks end to end on a dev cluster: gnt-network and RAPI /2/networks,
an instance with ``--net 0:network=...,ip=pool`` (fake hypervisor)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from corral import constants as C

pytestmark = pytest.mark.integration

WRITER = ("writer", "secret")


class Net:
    """The cluster, its CLI and a RAPI client with a write user."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self._run_cli: Callable[..., Any] | None = None
        base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
        self.http = httpx.Client(base_url=base, verify=False, timeout=60, auth=WRITER)

    def run(self, *args: str) -> Any:
        assert self._run_cli is not None
        return self._run_cli(list(args), self.cluster, timeout=300)

    def ok(self, *args: str) -> str:
        res = self.run(*args)
        assert res.returncode == 0, f"{args}: rc={res.returncode}\n{res.stdout}\n{res.stderr}"
        return res.stdout

    def job(self, resp: httpx.Response, timeout: float = 120) -> dict[str, Any]:
        assert resp.status_code == 200, resp.text
        job_id = resp.json()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.http.get(f"/2/jobs/{job_id}").json()
            if job["status"] in C.JOBS_FINALIZED:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture(scope="module")
def net_cluster(module_dev_cluster: Any, rapi_users: Any, ganeti_os_noop: Any) -> Iterator[Net]:
    cluster = module_dev_cluster(1)
    rapi_users(cluster, "writer secret write\n")
    client = Net(cluster)
    try:
        yield client
    finally:
        client.http.close()


@pytest.fixture
def net(net_cluster: Net, run_cli: Callable[..., Any]) -> Net:
    net_cluster._run_cli = run_cli
    return net_cluster


def test_cli_network_lifecycle_with_pool_address(net: Net) -> None:
    net.ok("gnt-network", "add", "--network", "10.40.0.0/28", "--gateway", "10.40.0.1",
           "--add-reserved-ips", "10.40.0.5", "--tags", "lab", "net1")
    net.ok("gnt-network", "connect", "-N", "mode=bridged,link=br-lab", "net1")
    rows = net.ok("gnt-network", "list", "--no-headers", "--separator", "|", "-o",
                  "name,network,gateway,free_count,group_list,tags").strip()
    assert rows == "net1|10.40.0.0/28|10.40.0.1|12|default (bridged, br-lab, -)|lab"
    assert net.ok("gnt-network", "list-tags", "net1").split() == ["lab"]

    net.ok("gnt-instance", "add", "-t", "diskless", "-o", "noop", "-n", "node1",
           "--no-ip-check", "--no-name-check", "--net", "0:network=net1,ip=pool", "inst1")
    ips = net.ok("gnt-instance", "list", "--no-headers", "-o", "nic.ips,nic.links", "inst1")
    assert ips.split() == ["10.40.0.2", "br-lab"]
    assert "network: net1" in net.ok("gnt-instance", "info", "inst1")
    info = net.ok("gnt-network", "info", "net1")
    assert "  Free: 11 (68.75%)" in info
    assert "XXX..X.........X" in info
    assert "used by 1 instances:" in info and "    inst1: 0:10.40.0.2" in info
    assert "    default (mode:bridged link:br-lab vlan:-)" in info

    # An explicit address taken by inst1 is refused (ECODE_NOTUNIQUE, exit 1).
    res = net.run("gnt-instance", "add", "-t", "diskless", "-o", "noop", "-n", "node1",
                  "--no-ip-check", "--no-name-check", "--net",
                  "0:network=net1,ip=10.40.0.2", "inst2")
    assert res.returncode == 1 and "already in use" in res.stderr
    res = net.run("gnt-network", "disconnect", "net1")
    assert res.returncode == 1 and "Conflicting IP addresses" in res.stderr
    res = net.run("gnt-network", "remove", "net1")
    assert res.returncode == 1 and "still connected" in res.stderr

    net.ok("gnt-instance", "remove", "-f", "inst1")
    info = net.ok("gnt-network", "info", "net1")
    assert "  Free: 12 (75.00%)" in info and "not used by any instances" in info
    net.ok("gnt-network", "modify", "--remove-reserved-ips", "10.40.0.5", "net1")
    net.ok("gnt-network", "rename", "net1", "lab-net")
    net.ok("gnt-network", "disconnect", "lab-net")
    net.ok("gnt-network", "remove", "lab-net")
    assert net.ok("gnt-network", "list", "--no-headers").strip() == ""


def test_rapi_networks(net: Net) -> None:
    http = net.http
    body = {"name": "rnet", "network": "10.41.0.0/29", "gateway": "10.41.0.6"}
    job = net.job(http.post("/2/networks?dry-run=1", json=body))
    assert job["status"] == "success" and job["ops"][0]["dry_run"]
    assert http.get("/2/networks").json() == []
    assert net.job(http.post("/2/networks", json=body))["status"] == "success"
    assert http.get("/2/networks").json() == [{"name": "rnet", "uri": "/2/networks/rnet"}]
    (bulk,) = http.get("/2/networks?bulk=1").json()
    assert bulk["network"] == "10.41.0.0/29" and bulk["free_count"] == 5
    assert bulk["external_reservations"] == "10.41.0.0, 10.41.0.6, 10.41.0.7"
    one = http.get("/2/networks/rnet").json()
    assert one["gateway"] == "10.41.0.6" and one["group_list"] == []
    assert http.get("/2/networks/nosuch").status_code == 404

    conn = {"group_name": "default", "network_mode": "openvswitch", "network_link": "ovs0",
            "network_vlan": "100"}
    assert net.job(http.put("/2/networks/rnet/connect", json=conn))["status"] == "success"
    assert http.get("/2/networks/rnet").json()["group_list"] == \
        [["default", "openvswitch", "ovs0", "100"]]
    mod = {"add_reserved_ips": ["10.41.0.3"], "mac_prefix": "aa:bb:01"}
    assert net.job(http.put("/2/networks/rnet/modify", json=mod))["status"] == "success"
    assert net.job(http.put("/2/networks/rnet/tags?tag=rt"))["status"] == "success"
    assert http.get("/2/networks/rnet/tags").json() == ["rt"]
    result = http.get("/2/query/network?fields=name,free_count,mac_prefix").json()
    assert result["data"] == [[[0, "rnet"], [0, 4], [0, "aa:bb:01"]]]

    # Refusals: bad input is 400 before any job; a refused job changes nothing.
    assert http.post("/2/networks", json={"name": "x", "network": "10.0.0.1/24"}
                     ).status_code == 400
    job = net.job(http.delete("/2/networks/rnet"))
    assert job["status"] == "error" and "still connected" in str(job["opresult"])
    assert http.get("/2/networks/rnet").status_code == 200
    assert http.put("/2/networks/rnet/disconnect", json={"group_name": "default"},
                    auth=None).status_code == 401

    disc = {"group_name": "default"}
    assert net.job(http.put("/2/networks/rnet/disconnect", json=disc))["status"] == "success"
    assert net.job(http.put("/2/networks/rnet/rename", json={"new_name": "rnet2"})
                   )["status"] == "success"
    assert net.job(http.delete("/2/networks/rnet2"))["status"] == "success"
    assert http.get("/2/networks").json() == []
