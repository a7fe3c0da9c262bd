"""Network LUs and NICs on networks, on a real dev cluster (cmdlib/network.py,
cmdlib/instance_network.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral import errors

try:
    from .test_instance_fixtures import Env, icluster
except ImportError:
    from test_instance_fixtures import Env, icluster  # noqa: F401

pytestmark = [pytest.mark.integration]

GROUP = "default"


def _add(env: Env, name: str = "net1", network: str = "10.20.30.0/28", **kw: Any) -> None:
    env.run1({"OP_ID": "OP_NETWORK_ADD", "network_name": name, "network": network, **kw})


def _connect(env: Env, name: str = "net1", **kw: Any) -> None:
    op = {"OP_ID": "OP_NETWORK_CONNECT", "network_name": name, "group_name": GROUP,
          "network_mode": "bridged", "network_link": "br-test"}
    op.update(kw)
    env.run1(op)


def _query(env: Env, fields: list[str], names: list[str] | None = None) -> list[dict[str, Any]]:
    result = env.client.query("network", fields, names)
    return [{f: v for f, (_, v) in zip(fields, row)} for row in result["data"]]


@pytest.fixture
def nenv(icluster: Env) -> Iterator[Env]:
    """The module's cluster; instances and networks removed afterwards."""
    try:
        yield icluster
    finally:
        icluster.remove_all()
        for row in _query(icluster, ["name", "group_list"]):
            for group in row["group_list"]:
                icluster.run1({"OP_ID": "OP_NETWORK_DISCONNECT", "network_name": row["name"],
                               "group_name": group[0]})
            icluster.run1({"OP_ID": "OP_NETWORK_REMOVE", "network_name": row["name"]})


def test_add_reserves_network_broadcast_gateway(nenv: Env) -> None:
    _add(nenv, gateway="10.20.30.1", add_reserved_ips=["10.20.30.5"], tags=["a"],
         mac_prefix="AA:BB:CC", network6="2001:db8::/64")
    row = _query(nenv, ["name", "network", "gateway", "free_count", "reserved_count", "map",
                        "external_reservations", "mac_prefix", "network6", "gateway6",
                        "tags", "group_list", "inst_list"])[0]
    assert row["free_count"] == 12 and row["reserved_count"] == 4
    assert row["map"] == "XX...X.........X"
    assert row["external_reservations"] == \
        "10.20.30.0, 10.20.30.1, 10.20.30.5, 10.20.30.15"
    assert row["mac_prefix"] == "aa:bb:cc" and row["network6"] == "2001:db8::/64"
    assert row["gateway6"] is None and row["tags"] == ["a"]
    assert row["group_list"] == [] and row["inst_list"] == []
    err = nenv.fail({"OP_ID": "OP_NETWORK_ADD", "network_name": "net1",
                     "network": "10.9.0.0/24"})
    assert err.ecode == errors.ECODE_EXISTS


@pytest.mark.parametrize("params,text", [
    ({"network": "10.0.0.0/15"}, "not supported"),
    ({"network": "10.0.0.0/31"}, "too small"),
    ({"network": "10.0.0.0/24", "gateway": "10.0.1.1"}, "does not contain"),
    ({"network": "10.0.0.0/24", "add_reserved_ips": ["10.1.0.5"]}, "does not contain"),
    ({"network": "10.0.0.1/24"}, "Invalid IPv4 network"),
])
def test_add_refuses_bad_networks(nenv: Env, params: dict[str, Any], text: str) -> None:
    err = nenv.fail({"OP_ID": "OP_NETWORK_ADD", "network_name": "bad", **params})
    assert err.ecode == errors.ECODE_INVAL and text in str(err)
    assert _query(nenv, ["name"]) == []


def test_modify_rename_tags(nenv: Env) -> None:
    _add(nenv, gateway="10.20.30.1")
    nenv.run1({"OP_ID": "OP_NETWORK_SET_PARAMS", "network_name": "net1",
               "gateway": "10.20.30.14", "mac_prefix": "aa:00:01"})
    nenv.run1({"OP_ID": "OP_NETWORK_SET_PARAMS", "network_name": "net1",
               "add_reserved_ips": ["10.20.30.7"], "remove_reserved_ips": ["10.20.30.0"]})
    row = _query(nenv, ["gateway", "mac_prefix", "external_reservations"])[0]
    assert row["gateway"] == "10.20.30.14" and row["mac_prefix"] == "aa:00:01"
    assert row["external_reservations"] == "10.20.30.7, 10.20.30.14, 10.20.30.15"
    err = nenv.fail({"OP_ID": "OP_NETWORK_SET_PARAMS", "network_name": "net1",
                     "gateway": "10.20.30.2", "add_reserved_ips": ["10.20.30.3"]})
    assert err.ecode == errors.ECODE_INVAL
    assert nenv.run1({"OP_ID": "OP_NETWORK_RENAME", "network_name": "net1",
                      "new_name": "net2"}) == "net2"
    nenv.run1({"OP_ID": "OP_TAGS_SET", "kind": "network", "name": "net2", "tags": ["x"]})
    assert nenv.client.query_tags("network", "net2") == ["x"]
    err = nenv.fail({"OP_ID": "OP_NETWORK_REMOVE", "network_name": "net1"})
    assert err.ecode == errors.ECODE_NOENT


def test_instance_on_network_gets_pool_address(nenv: Env) -> None:
    _add(nenv, gateway="10.20.30.1")
    err = nenv.fail({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst-n",
                     "mode": "create", "disks": [], "disk_template": "diskless",
                     "os_type": "noop", "pnode": "node1", "name_check": False,
                     "ip_check": False, "nics": [{"network": "net1", "ip": "pool"}]})
    assert err.ecode == errors.ECODE_INVAL and "not connected" in str(err)
    _connect(nenv)
    nenv.create("inst-n", nics=[{"network": "net1", "ip": "pool"},
                                {"network": "net1", "ip": "10.20.30.9"}], start=False)
    info = nenv.info("inst-n")
    nic0, nic1 = info["nics"][0], info["nics"][1]
    assert nic0[2] == "10.20.30.2" and nic0[4] == "bridged" and nic0[5] == "br-test"
    assert nic1[2] == "10.20.30.9"
    assert nic0[8]["name"] == "net1"
    rows = nenv.client.query("instance", ["nic.networks.names", "nic.network.name/1",
                                          "nic.networks"], ["inst-n"])["data"]
    (names, second, uuids), = rows
    assert names == [0, ["net1", "net1"]] and second == [0, "net1"]
    assert uuids[1][0] == nic0[7]
    row = _query(nenv, ["free_count", "inst_list", "map", "group_list"])[0]
    assert row["inst_list"] == ["inst-n"] and row["free_count"] == 11
    assert row["map"] == "XXX......X.....X"
    assert row["group_list"] == [[GROUP, "bridged", "br-test", "-"]]

    # Taken addresses, mode with a network, pool without one, foreign address.
    for nics, code in (([{"network": "net1", "ip": "10.20.30.9"}], errors.ECODE_NOTUNIQUE),
                       ([{"network": "net1", "ip": "10.20.30.1"}], errors.ECODE_NOTUNIQUE),
                       ([{"network": "net1", "mode": "routed"}], errors.ECODE_INVAL),
                       ([{"ip": "pool"}], errors.ECODE_INVAL),
                       ([{"ip": "10.20.30.11"}], errors.ECODE_STATE)):
        err = nenv.fail({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst-x",
                         "mode": "create", "disks": [], "disk_template": "diskless",
                         "os_type": "noop", "pnode": "node1", "name_check": False,
                         "ip_check": False, "nics": nics})
        assert err.ecode == code, (nics, err)

    # Disconnect and remove are refused while the network is in use.
    err = nenv.fail({"OP_ID": "OP_NETWORK_DISCONNECT", "network_name": "net1",
                     "group_name": GROUP})
    assert err.ecode == errors.ECODE_STATE
    err = nenv.fail({"OP_ID": "OP_NETWORK_REMOVE", "network_name": "net1"})
    assert err.ecode == errors.ECODE_STATE

    nenv.run1({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "inst-n",
               "shutdown_timeout": 0})
    row = _query(nenv, ["free_count", "inst_list", "map"])[0]
    assert row["inst_list"] == [] and row["free_count"] == 13
    assert row["map"] == "XX.............X"
    nenv.run1({"OP_ID": "OP_NETWORK_DISCONNECT", "network_name": "net1",
               "group_name": GROUP})
    nenv.run1({"OP_ID": "OP_NETWORK_REMOVE", "network_name": "net1"})
    assert _query(nenv, ["name"]) == []


def test_pool_exhausted_and_failed_create_keeps_pool(nenv: Env) -> None:
    _add(nenv, network="10.20.40.0/30")
    _connect(nenv)
    nenv.create("inst-a", nics=[{"network": "net1", "ip": "pool"}], start=False)
    err = nenv.fail({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst-b",
                     "mode": "create", "disks": [], "disk_template": "diskless",
                     "os_type": "noop", "pnode": "node1", "name_check": False,
                     "ip_check": False, "nics": [{"network": "net1", "ip": "pool"},
                                                 {"network": "net1", "ip": "pool"}]})
    assert err.ecode == errors.ECODE_STATE
    row = _query(nenv, ["free_count", "inst_list"])[0]
    assert row == {"free_count": 1, "inst_list": ["inst-a"]}


def test_modify_nics_moves_addresses(nenv: Env) -> None:
    _add(nenv, gateway="10.20.30.1", mac_prefix="aa:bb:cc")
    _connect(nenv)
    nenv.create("inst-m", nics=[{}], start=False)
    mod = {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "inst-m"}
    nenv.run1({**mod, "nics": [["add", -1, {"network": "net1", "ip": "pool"}]]})
    nenv.run1({**mod, "nics": [["modify", 0, {"network": "net1", "ip": "10.20.30.7"}]]})
    nics = nenv.info("inst-m")["nics"]
    assert [(n[2], n[5]) for n in nics] == [("10.20.30.7", "br-test"),
                                          ("10.20.30.2", "br-test")]
    # A new NIC on the network gets the network's MAC prefix.
    assert nics[0][3].startswith("aa:00:00:") and nics[1][3].startswith("aa:bb:cc:")
    assert _query(nenv, ["map"])[0]["map"] == "XXX....X.......X"
    err = nenv.fail({**mod, "nics": [["modify", 1, {"ip": "10.20.30.7"}]]})
    assert err.ecode == errors.ECODE_NOTUNIQUE
    err = nenv.fail({**mod, "nics": [["modify", 1, {"link": "br9"}]]})
    assert err.ecode == errors.ECODE_INVAL
    nenv.run1({**mod, "nics": [["modify", 1, {"ip": "pool"}]]})
    nenv.run1({**mod, "nics": [["remove", 0, {}]]})
    nics = nenv.info("inst-m")["nics"]
    assert [n[2] for n in nics] == ["10.20.30.3"]
    assert _query(nenv, ["map"])[0]["map"] == "XX.X...........X"
    assert nenv.run1({"OP_ID": "OP_CLUSTER_VERIFY_CONFIG"}) is True
    nenv.run1({**mod, "nics": [["modify", 0, {"network": "none", "ip": "none"}]]})
    assert _query(nenv, ["map", "inst_list"])[0] == {"map": "XX.............X",
                                                      "inst_list": []}


def _record_hooks(env: Env, hpath: str) -> Path:
    out = Path(env.dev.directory) / f"hook-{hpath}"
    for node in env.dev.nodes:
        hook_dir = node.paths.hooks_dir / f"{hpath}-pre.d"
        hook_dir.mkdir(parents=True, exist_ok=True)
        script = hook_dir / "10-record"
        script.write_text(f"#!/bin/sh\nenv | grep ^GANETI_ | sort > {out}.{node.name}\n")
        script.chmod(0o755)
    return out


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_hook_environments(nenv: Env) -> None:
    add_out = _record_hooks(nenv, "network-add")
    conn_out = _record_hooks(nenv, "network-connect")
    inst_out = _record_hooks(nenv, "instance-add")
    try:
        _add(nenv, gateway="10.20.30.1", mac_prefix="aa:bb:cc", tags=["t1", "t2"])
        env = _read_env(Path(f"{add_out}.node1"))
        assert env["GANETI_OBJECT_TYPE"] == "NETWORK"
        assert env["GANETI_NETWORK_NAME"] == "net1"
        assert env["GANETI_NETWORK_SUBNET"] == "10.20.30.0/28"
        assert env["GANETI_NETWORK_GATEWAY"] == "10.20.30.1"
        assert env["GANETI_NETWORK_MAC_PREFIX"] == "aa:bb:cc"
        assert env["GANETI_NETWORK_TAGS"] == "t1 t2"
        _connect(nenv)
        env = _read_env(Path(f"{conn_out}.node2"))
        assert env["GANETI_GROUP_NAME"] == GROUP
        assert env["GANETI_GROUP_NETWORK_MODE"] == "bridged"
        assert env["GANETI_GROUP_NETWORK_LINK"] == "br-test"
        nenv.create("inst-h", nics=[{"network": "net1", "ip": "pool"}], start=False)
        env = _read_env(Path(f"{inst_out}.node1"))
        assert env["GANETI_INSTANCE_NIC0_IP"] == "10.20.30.2"
        assert env["GANETI_INSTANCE_NIC0_NETWORK_NAME"] == "net1"
        assert env["GANETI_INSTANCE_NIC0_NETWORK_SUBNET"] == "10.20.30.0/28"
        assert env["GANETI_INSTANCE_NIC0_NETWORK_GATEWAY"] == "10.20.30.1"
        assert env["GANETI_INSTANCE_NIC0_NETWORK_MAC_PREFIX"] == "aa:bb:cc"
        assert env["GANETI_INSTANCE_NIC0_LINK"] == "br-test"
        assert env["GANETI_INSTANCE_NIC0_MAC"].startswith("aa:bb:cc:")
    finally:
        for node in nenv.dev.nodes:
            for hpath in ("network-add", "network-connect", "instance-add"):
                (node.paths.hooks_dir / f"{hpath}-pre.d" / "10-record").unlink()
