"""Finding 1 of issue 8: hostile names are refused at the edge and on the node.

A name such as ``/var/x`` or ``../../etc`` used to be accepted by RAPI and
LUXI; noded (root) then created the instance's runtime files at that path,
outside the node's state root. Names now follow Ganeti's host name rule in
every opcode (400 / ``ECODE_INVAL``, nothing queued), and noded refuses such
names itself when called directly over mutual TLS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral import constants as C
from corral import errors
from corral.objects import NIC, Disk, Instance
from corral.rpc import NodeClient

pytestmark = pytest.mark.integration

HOSTILE = ["/var/x", "../../etc", "a/b", "$(id)", "..", "evil\nname", "../"]
NOOP = "noop"


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any, ganeti_os_noop: Path) -> Any:
    return module_dev_cluster(1)


@pytest.fixture(scope="module")
def client(cluster: Any) -> Any:
    c = cluster.client()
    yield c
    c.close()


def _create_op(name: str, **extra: Any) -> dict[str, Any]:
    op = {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
          "disk_template": C.DT_DISKLESS, "os_type": NOOP, "pnode": "node1", "disks": [],
          "nics": [], "name_check": False, "ip_check": False,
          "beparams": {"maxmem": 64, "minmem": 64}}
    op.update(extra)
    return op


def _job_ids(client: Any) -> list[int]:
    return sorted(row[0] for row in client.query_jobs(None, ["id"]) if row)


def _instances(client: Any) -> set[str]:
    return {row[0][1] for row in client.query("instance", ["name"])["data"]}


def _snapshot(root: Path) -> set[str]:
    """Every path below ``root`` (to prove nothing new appeared)."""
    return {os.path.relpath(os.path.join(d, f), root)
            for d, dirs, files in os.walk(root) for f in dirs + files}


def test_rapi_luxi_and_cli_refuse_hostile_names(cluster: Any, client: Any,
                                                run_cli: Any) -> None:
    users = cluster.master_paths.rapi_users
    users.parent.mkdir(parents=True, exist_ok=True)
    users.write_text("writer secret2 write\n")
    jobs_before = _job_ids(client)
    base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
    with httpx.Client(verify=False, timeout=30, auth=("writer", "secret2")) as http:
        for name in HOSTILE:
            body = {"__version__": 1, "name": name, "mode": "create",
                    "disk_template": "diskless", "os": NOOP, "pnode": "node1", "disks": [],
                    "nics": [], "name_check": False, "ip_check": False}
            r = http.post(f"{base}/2/instances", json=body)
            assert r.status_code == 400, (name, r.status_code, r.text)
            assert "Invalid hostname" in r.json()["message"], r.text
        # A hostile primary node is refused the same way.
        body = {"__version__": 1, "name": "ok1", "mode": "create", "disk_template": "diskless",
                "os": NOOP, "pnode": "../node1", "disks": [], "nics": [], "name_check": False,
                "ip_check": False}
        r = http.post(f"{base}/2/instances", json=body)
        assert r.status_code == 400 and "pnode" in r.json()["message"], r.text
    for name in HOSTILE:
        with pytest.raises(errors.OpPrereqError) as exc:
            client.submit_job([_create_op(name)])
        assert exc.value.ecode == errors.ECODE_INVAL
    res = run_cli(["gnt-instance", "add", "-t", "diskless", "-o", NOOP, "-n", "node1",
                   "--no-name-check", "--no-ip-check", "--no-start", "/var/x"], cluster)
    assert res.returncode != 0
    assert "Invalid hostname '/var/x'" in res.stderr + res.stdout
    assert _job_ids(client) == jobs_before
    assert _instances(client) == set()


def test_rename_refuses_hostile_names_and_lowercases(cluster: Any, client: Any) -> None:
    client.wait_job(client.submit_job([_create_op("Ren1.Example", start=False)]), timeout=120)
    assert "ren1.example" in _instances(client)     # stored lowercased, found again
    jobs_before = _job_ids(client)
    for name in HOSTILE:
        with pytest.raises(errors.OpPrereqError) as exc:
            client.submit_job([{"OP_ID": "OP_INSTANCE_RENAME",
                                "instance_name": "REN1.example", "new_name": name,
                                "name_check": False, "ip_check": False}])
        assert exc.value.ecode == errors.ECODE_INVAL
    assert _job_ids(client) == jobs_before
    client.wait_job(client.submit_job([{"OP_ID": "OP_INSTANCE_REMOVE",
                                        "instance_name": "REN1.EXAMPLE"}]), timeout=120)
    assert "ren1.example" not in _instances(client)


def _hostile_instance(name: str, hypervisor: str) -> dict[str, Any]:
    inst = Instance(name=name, primary_node="node-uuid", os=NOOP, hypervisor=hypervisor,
                    disk_template=C.DT_DISKLESS, disks=[],
                    nics=[NIC(mac="aa:00:00:00:00:01",
                              nicparams={"mode": "bridged", "link": "br0", "vlan": ""})],
                    beparams={"minmem": 64, "maxmem": 64, "vcpus": 1}, hvparams={})
    data = inst.to_dict()
    data["primary_node_name"] = "node1"
    data["secondary_node_names"] = []
    return data


def test_noded_refuses_hostile_names_directly(cluster: Any, tmp_path: Path) -> None:
    """Bypass masterd: call noded over mutual TLS with the master's certificate."""
    node = cluster.node("node1")
    root = Path(node.root)
    outside = tmp_path / "outside"
    outside.mkdir()
    hostile = [str(outside / "x"), "../../../../" + str(outside / "y").lstrip("/"), "a/b",
               "..", "evil\nname"]
    before = _snapshot(root)
    reason = [["test", "hostile", 0]]
    fdisk = Disk(dev_type=C.DT_FILE, size=1, iv_name="disk/0",
                 logical_id=[C.FD_LOOP, "/srv/corral/file-storage/../../../" +
                             str(outside / "disk").lstrip("/")]).to_dict()
    with NodeClient(node.ip, node.noded_port, cluster.master_paths, name="node1") as rpc:
        assert not rpc.call("version").failed      # the channel itself works
        for name in hostile:
            for hv in (C.HT_FAKE, C.HT_KVM):
                inst = _hostile_instance(name, hv)
                for proc, args in (("instance_start", [inst, False, reason]),
                                   ("instance_shutdown", [inst, 5, reason]),
                                   ("instance_os_add", [inst, False, 0])):
                    res = rpc.call(proc, args)
                    assert res.failed and "instance name" in res.fail_msg, (proc, name, res)
            res = rpc.call("instance_info", [name, C.HT_FAKE, {}])
            assert res.failed and "instance name" in res.fail_msg, (name, res)
            res = rpc.call("instance_info", [name, C.HT_KVM, {}])
            assert res.failed and "instance name" in res.fail_msg, (name, res)
            res = rpc.call("blockdev_assemble", [fdisk, _hostile_instance(name, C.HT_FAKE),
                                                 True, 0])
            assert res.failed, (name, res)
            for proc in ("export_remove", "impexp_cleanup", "x509_cert_remove"):
                res = rpc.call(proc, [name])
                assert res.failed, (proc, name, res)
        res = rpc.call("blockdev_create", [fdisk, 1, "inst1", True, "", False])
        assert res.failed and ".." in res.fail_msg, res
        res = rpc.call("export_info", ["/srv/corral/export/../../../etc"])
        assert res.failed, res
    assert list(outside.iterdir()) == []
    assert _snapshot(root) - before <= {"var/log/corral/os"}, _snapshot(root) - before
