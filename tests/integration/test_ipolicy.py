"""Instance policies end to end on a dev cluster: ``gnt-cluster modify
--ipolicy-*``/``--specs-*``, ``show-ispecs-cmd`` (its options recreate the
policy), ``gnt-cluster info``, ``/2/info``'s filled ``ipolicy`` in Ganeti's
shape, ``PUT /2/modify`` and a create refused through RAPI."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from rapi.test_server_integration import Rapi

from corral import constants as C

pytestmark = pytest.mark.integration

SPEC_KEYS = {"memory-size", "cpu-count", "disk-count", "disk-size", "nic-count",
             "spindle-use"}
MIN = "cpu-count=1,disk-count=0,disk-size=1,memory-size=64,nic-count=0,spindle-use=0"
MAX = "cpu-count=2,disk-count=2,disk-size=1G,memory-size=512M,nic-count=2,spindle-use=2"


class Cluster:
    """A 1-node dev cluster, its CLI and its RAPI (``rapi``: with a write user)."""

    def __init__(self, dev: Any, run_cli: Any) -> None:
        self.dev = dev
        self._run_cli = run_cli
        self.rapi = Rapi(dev)
        self.http = self.rapi.http

    def cli(self, *args: str) -> Any:
        return self._run_cli(list(args), self.dev, timeout=120)

    def ok(self, *args: str) -> str:
        res = self.cli(*args)
        assert res.returncode == 0, f"{args}: {res.stdout}\n{res.stderr}"
        return res.stdout

    def policy(self) -> dict[str, Any]:
        res = self.http.get("/2/info")
        assert res.status_code == 200, res.text
        return res.json()["ipolicy"]

    def wait_job(self, job_id: Any) -> dict[str, Any]:
        return self.rapi.wait_job(job_id, timeout=120)


@pytest.fixture(scope="module")
def dev(module_dev_cluster: Any, rapi_users: Any, ganeti_os_noop: Any) -> Any:
    dev = module_dev_cluster(1)
    rapi_users(dev, "writer secret write\n")
    return dev


@pytest.fixture
def cluster(dev: Any, run_cli: Any) -> Iterator[Cluster]:
    c = Cluster(dev, run_cli)
    try:
        yield c
    finally:
        c.http.close()


def test_info_has_ganetis_shape(cluster: Cluster) -> None:
    policy = cluster.policy()
    # Exactly Ganeti 3.0's keys: its htools refuse any other (memory-ratio
    # is Corral's, shown by gnt-cluster info only).
    assert set(policy) == {"minmax", "std", "disk-templates", "vcpu-ratio", "spindle-ratio"}
    (pair,) = policy["minmax"]
    assert set(pair) == {"min", "max"}
    assert set(pair["min"]) == set(pair["max"]) == set(policy["std"]) == SPEC_KEYS
    assert all(isinstance(v, int) for v in [*pair["min"].values(), *pair["max"].values()])
    assert policy["std"] == {"memory-size": 128, "cpu-count": 1, "disk-count": 1,
                             "disk-size": 1024, "nic-count": 1, "spindle-use": 1}
    # Ganeti's default list, restricted to the enabled templates.
    assert policy["disk-templates"] == ["diskless", "file", "sharedfile"]
    assert (policy["vcpu-ratio"], policy["spindle-ratio"]) == (4.0, 32.0)


def test_modify_show_and_recreate(cluster: Cluster) -> None:
    cluster.ok("gnt-cluster", "modify", "--ipolicy-bounds-specs", f"min:{MIN}/max:{MAX}",
               "--ipolicy-std-specs", "memory-size=128,disk-size=512,nic-count=0",
               "--ipolicy-vcpu-ratio", "2", "--ipolicy-spindle-ratio", "8",
               "--ipolicy-memory-ratio", "1.5", "--ipolicy-disk-templates", "file,diskless")
    policy = cluster.policy()
    assert policy["minmax"] == [{
        "min": {"cpu-count": 1, "disk-count": 0, "disk-size": 1, "memory-size": 64,
                "nic-count": 0, "spindle-use": 0},
        "max": {"cpu-count": 2, "disk-count": 2, "disk-size": 1024, "memory-size": 512,
                "nic-count": 2, "spindle-use": 2}}]
    assert policy["std"] == {"memory-size": 128, "cpu-count": 1, "disk-count": 1,
                             "disk-size": 512, "nic-count": 0, "spindle-use": 1}
    assert policy["disk-templates"] == ["file", "diskless"]
    assert (policy["vcpu-ratio"], policy["spindle-ratio"]) == (2.0, 8.0)

    info = yaml.safe_load(cluster.ok("gnt-cluster", "info"))
    block = info["Instance policy - limits for instances"]
    assert str(block["memory-ratio"]) == "1.5"
    assert block["bounds specs"][0]["max/0"]["memory-size"] == 512
    assert block["allowed disk templates"] == "file, diskless"
    assert block["vcpu-ratio"] == "2.0"

    out = cluster.ok("gnt-cluster", "show-ispecs-cmd")
    assert out == ("gnt-cluster init --ipolicy-std-specs cpu-count=1,disk-count=1,"
                   "disk-size=512,memory-size=128,nic-count=0,spindle-use=1 "
                   "--ipolicy-bounds-specs min:cpu-count=1,disk-count=0,disk-size=1,"
                   "memory-size=64,nic-count=0,spindle-use=0/max:cpu-count=2,disk-count=2,"
                   "disk-size=1024,memory-size=512,nic-count=2,spindle-use=2 corral-dev\n")
    # The printed options recreate the specs: change them, then apply the output.
    cluster.ok("gnt-cluster", "modify", "--specs-mem-size", "max=1G,std=256",
               "--specs-nic-count", "max=4")
    changed = cluster.policy()
    assert changed["minmax"][0]["max"]["memory-size"] == 1024
    assert changed["minmax"][0]["max"]["nic-count"] == 4
    assert changed["minmax"][0]["min"] == policy["minmax"][0]["min"]
    assert changed["std"]["memory-size"] == 256
    words = shlex.split(out)
    assert words[:2] == ["gnt-cluster", "init"] and words[-1] == "corral-dev"
    cluster.ok("gnt-cluster", "modify", *words[2:-1])
    assert cluster.policy() == policy


@pytest.mark.parametrize(("args", "text"), [
    (("--ipolicy-bounds-specs", f"min:{MAX}/max:{MIN}"), "inverted"),
    (("--ipolicy-bounds-specs", f"min:{MIN}"), "Missing instance specification"),
    (("--ipolicy-std-specs", "memory-size=4G"), "std specs are not within"),
    (("--ipolicy-disk-templates", "plain"), "not enabled on the cluster: plain"),
    (("--ipolicy-vcpu-ratio", "-1"), "must be positive"),
    (("--specs-mem-size", "max=1G", "--ipolicy-std-specs", "memory-size=1"),
     "cannot be specified together"),
])
def test_bad_modify_changes_nothing(cluster: Cluster, args: tuple[str, ...],
                                    text: str) -> None:
    before = cluster.policy()
    res = cluster.cli("gnt-cluster", "modify", *args)
    assert res.returncode != 0
    assert text in res.stderr + res.stdout, res.stderr
    assert cluster.policy() == before


def _create_body(name: str, **extra: Any) -> dict[str, Any]:
    return {"__version__": 1, "name": name, "mode": "create", "disk_template": "file",
            "os": "noop", "pnode": "node1", "disks": [{"size": 64}], "nics": [],
            "name_check": False, "ip_check": False, "start": False,
            "beparams": {"maxmem": 128, "minmem": 128}, **extra}


def test_rapi_modify_and_refused_create(cluster: Cluster) -> None:
    bounds = {"min": {"cpu-count": 1, "disk-count": 1, "disk-size": 1, "memory-size": 64,
                      "nic-count": 0, "spindle-use": 0},
              "max": {"cpu-count": 2, "disk-count": 2, "disk-size": 256, "memory-size": 256,
                      "nic-count": 2, "spindle-use": 2}}
    res = cluster.http.put("/2/modify", json={"ipolicy": {
        "minmax": [bounds], "std": {"disk-size": 128}, "disk-templates": ["file"]}})
    assert res.status_code == 200, res.text
    assert cluster.wait_job(res.json())["status"] == "success"
    assert cluster.policy()["minmax"] == [bounds]

    # A create breaking the policy: the job fails with the violations
    # (OpPrereqError, wrong_input) as in Ganeti, and nothing is created.
    res = cluster.http.post("/2/instances", json=_create_body(
        "ipbig", beparams={"maxmem": 1024, "minmem": 1024}, disks=[{"size": 512}]))
    assert res.status_code == 200, res.text
    job = cluster.wait_job(res.json())
    assert job["status"] == "error"
    (opresult,) = job["opresult"]
    assert opresult[0] == "OpPrereqError"
    message, ecode = opresult[1]
    assert ecode == "wrong_input"
    assert "violates policy" in message
    assert "memory-size value 1024 is not in range [64, 256]" in message
    assert "disk-size/0 value 512 is not in range [1, 256]" in message
    assert cluster.http.get("/2/instances/ipbig").status_code == 404
    names = [i["id"] for i in cluster.http.get("/2/instances").json()]
    assert "ipbig" not in names
    disk_dir = cluster.dev.master_paths.real(C.DEFAULT_FILE_STORAGE_DIR) / "ipbig"
    assert not disk_dir.exists()

    # The same request with ignore_ipolicy is accepted.
    res = cluster.http.post("/2/instances", json=_create_body(
        "ipbig", beparams={"maxmem": 1024, "minmem": 1024}, ignore_ipolicy=True))
    job = cluster.wait_job(res.json())
    assert job["status"] == "success", job
    assert cluster.http.get("/2/instances/ipbig").json()["beparams"]["maxmem"] == 1024
    res = cluster.http.delete("/2/instances/ipbig")
    assert cluster.wait_job(res.json())["status"] == "success"


def test_cli_add_refused_unless_ignored(cluster: Cluster) -> None:
    res = cluster.http.put("/2/modify", json={"ipolicy": {"minmax": [{
        "min": {"cpu-count": 1, "disk-count": 0, "disk-size": 1, "memory-size": 64,
                "nic-count": 0, "spindle-use": 0},
        "max": {"cpu-count": 2, "disk-count": 2, "disk-size": 256, "memory-size": 256,
                "nic-count": 2, "spindle-use": 2}}], "std": {"disk-size": 128},
        "disk-templates": ["file", "diskless"]}})
    assert cluster.wait_job(res.json())["status"] == "success"
    args = ("gnt-instance", "add", "-t", "diskless", "-o", "noop", "-n", "node1",
            "--no-nics", "--no-start", "--no-name-check", "--no-ip-check",
            "-B", "maxmem=1G,minmem=1G", "ipcli")
    res = cluster.cli(*args)
    assert res.returncode != 0
    assert "violates policy: memory-size value 1024 is not in range [64, 256]" in res.stderr
    assert cluster.http.get("/2/instances/ipcli").status_code == 404
    cluster.ok(*args[:-1], "--ignore-ipolicy", "ipcli")
    assert cluster.http.get("/2/instances/ipcli").json()["beparams"]["maxmem"] == 1024
    cluster.ok("gnt-instance", "remove", "-f", "ipcli")
