"""OP_INSTANCE_QUERY, OP_INSTANCE_QUERY_DATA and OP_INSTANCE_CONSOLE
(cmdlib/instance_query.py) on a real dev cluster."""

from __future__ import annotations

import pytest

from corral import errors

try:
    from .test_instance_fixtures import Env, env, icluster  # noqa: F401
except ImportError:
    from test_instance_fixtures import Env, env, icluster  # noqa: F401

pytestmark = [pytest.mark.integration]


def _query(env: Env, fields: list[str], names: list[str] | None = None,
           use_locking: bool = False) -> list[list[object]]:
    return env.run1({"OP_ID": "OP_INSTANCE_QUERY", "output_fields": fields,
                     "names": names or [], "use_locking": use_locking})


def test_query_rows(env: Env) -> None:
    env.create("q1")
    env.create("q2", pnode="node2", start=False, disk_template="file", disks=[{"size": 4}])
    rows = _query(env, ["name", "pnode", "admin_state", "status", "disk_template"])
    assert rows == [["q1", "node1", "up", "running", "diskless"],
                    ["q2", "node2", "down", "ADMIN_down", "file"]]
    assert _query(env, ["name", "oper_state"], ["q2"], use_locking=True) == [["q2", False]]


def test_query_refusals(env: Env) -> None:
    env.create("q3", start=False)
    err = env.fail({"OP_ID": "OP_INSTANCE_QUERY", "output_fields": ["name"],
                    "names": ["q3", "nosuch"]})
    assert err.ecode == errors.ECODE_NOENT and "nosuch" in err.message
    err = env.fail({"OP_ID": "OP_INSTANCE_QUERY", "output_fields": ["name", "bogus_field"]})
    assert err.ecode == errors.ECODE_INVAL and "bogus_field" in err.message
    err = env.fail({"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": ["nosuch"]})
    assert err.ecode == errors.ECODE_NOENT


def test_query_data(env: Env) -> None:
    env.create("q4", disk_template="file", disks=[{"size": 4, "name": "root"}],
               nics=[{"mac": "aa:00:00:aa:bb:cc", "ip": "192.0.2.5", "name": "n0"}],
               beparams={"vcpus": 2}, tags=["web"])
    data = env.run1({"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": ["q4"],
                     "use_locking": True})
    assert list(data) == ["q4"]
    info = data["q4"]
    assert {"name", "config_state", "run_state", "pnode", "pnode_group_uuid",
            "pnode_group_name", "snodes", "snodes_group_uuids", "os", "network_port",
            "disks", "disk_template", "nics", "hypervisor", "hv_instance", "hv_actual",
            "be_instance", "be_actual", "os_instance", "os_actual", "uuid", "serial_no",
            "mtime", "ctime", "tags"} <= set(info)
    assert (info["config_state"], info["run_state"]) == ("up", "up")
    assert info["pnode"] == "node1" and info["pnode_group_name"] == "default"
    assert info["snodes"] == [] and info["tags"] == ["web"]
    assert info["be_instance"] == {"vcpus": 2} and info["be_actual"]["vcpus"] == 2
    name, _uuid, ip, mac, mode, link, vlan, network, _netinfo = info["nics"][0]
    assert (name, ip, mac, mode, link, vlan, network) == \
        ("n0", "192.0.2.5", "aa:00:00:aa:bb:cc", "bridged", "xen-br0", "", None)
    disk = info["disks"][0]
    assert (disk["iv_name"], disk["dev_type"], disk["size"], disk["mode"], disk["name"]) == \
        ("disk/0", "file", 4, "rw", "root")
    real = env.real("node1", disk["logical_id"][1])
    assert disk["pstatus"][0] == str(real)
    assert disk["pstatus"][5] is False          # not degraded
    assert disk["children"] == []
    # Static data does not ask the nodes.
    static = env.info("q4", static=True)
    assert static["run_state"] is None and static["disks"][0]["pstatus"] is None


def test_query_data_run_state_down(env: Env) -> None:
    env.create("q5", start=False)
    env.create("q6")
    # The instance is marked up but is not running on its node.
    env.fake_state("node1", "q6").unlink()
    data = env.run1({"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": []})
    assert data["q5"]["run_state"] == "down" and data["q5"]["config_state"] == "down"
    assert data["q6"]["run_state"] == "down" and data["q6"]["config_state"] == "up"


def test_console(env: Env) -> None:
    env.create("q7")
    console = env.run1({"OP_ID": "OP_INSTANCE_CONSOLE", "instance_name": "q7"})
    assert console["instance"] == "q7" and console["kind"] == "msg"
    assert "fake" in console["message"]
    env.run1({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "q7"})
    err = env.fail({"OP_ID": "OP_INSTANCE_CONSOLE", "instance_name": "q7"})
    assert err.ecode == errors.ECODE_STATE and "not running" in err.message
