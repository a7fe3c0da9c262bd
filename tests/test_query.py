"""Query fields and evaluation: every instance status, node roles and live
fields, group counts, unit fields, and live data gathering through RPC."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import errors
from corral.config import ConfigStore
from corral.objects import NIC, Cluster, Disk, Instance, Node, NodeGroup
from corral.query import (
    RS_NODATA,
    RS_NORMAL,
    RS_OFFLINE,
    RS_UNAVAIL,
    RS_UNKNOWN,
    LiveData,
    field_definitions,
    gather_live_data,
    needs_live_data,
    query,
)

FILE_DIR = "/srv/corral/file-storage"


@dataclass
class Env:
    cfg: ConfigStore
    group: NodeGroup
    group2: NodeGroup
    nodes: dict[str, Node]           # by name
    insts: dict[str, Instance]       # by name


def _inst(name: str, pnode: Node, admin: str = C.ADMINST_DOWN, **kw: Any) -> Instance:
    disks = kw.pop("disks", [Disk(iv_name="disk/0", size=1024, nodes=[pnode.uuid],
                                  logical_id=[C.FD_LOOP, f"{FILE_DIR}/{name}/disk0"])])
    kw.setdefault("disk_template", C.DT_FILE if disks else C.DT_DISKLESS)
    return Instance(name=name, primary_node=pnode.uuid, os="debootstrap+default",
                    admin_state=admin, disks=disks, **kw)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    group = NodeGroup(name="default", ndparams={C.ND_SPINDLE_COUNT: 4},
                      ipolicy={"vcpu-ratio": 2.0})
    group2 = NodeGroup(name="second")
    n1 = Node(name="node1", primary_ip="127.0.1.1", group=group.uuid)
    cluster = Cluster(cluster_name="cluster", master_node=n1.uuid,
                      enabled_hypervisors=[C.HT_FAKE, C.HT_KVM],
                      beparams={"default": {C.BE_MAXMEM: 512, C.BE_MINMEM: 256}},
                      nicparams={"default": {C.NIC_LINK: "br0"}},
                      ipolicy={"vcpu-ratio": 4.0, "spindle-ratio": 32.0},
                      hvparams={C.HT_KVM: {"kernel_path": "/boot/vmlinuz"}})
    cfg = ConfigStore.create(tmp_path / "config.db", cluster, n1, group)
    nodes = {
        "node2": Node(name="node2", primary_ip="127.0.1.2", group=group.uuid,
                      master_candidate=True, secondary_ip="10.0.0.2"),
        "node10": Node(name="node10", primary_ip="127.0.1.10", group=group.uuid,
                       master_candidate=False),
        "node3": Node(name="node3", primary_ip="127.0.1.3", group=group2.uuid,
                      master_candidate=False, offline=True),
        "node4": Node(name="node4", primary_ip="127.0.1.4", group=group2.uuid,
                      master_candidate=False, drained=True, vm_capable=False),
    }
    cfg.commit(add=[group2, *nodes.values()])
    nodes["node1"] = n1
    insts = [
        _inst("running", n1, C.ADMINST_UP, tags=["web"], network_port=11001,
              nics=[NIC(mac="aa:00:00:00:00:01", ip="192.0.2.1", name="eth0"),
                    NIC(mac="aa:00:00:00:00:02",
                        nicparams={C.NIC_MODE: C.NIC_MODE_ROUTED, C.NIC_LINK: "rt"})],
              beparams={C.BE_VCPUS: 2}, hvparams={"kernel_args": "quiet"},
              hypervisor=C.HT_KVM),
        _inst("errup", n1, C.ADMINST_DOWN),
        _inst("errdown", n1, C.ADMINST_UP),
        _inst("admdown", n1, C.ADMINST_DOWN, disks=[]),
        _inst("userdown", n1, C.ADMINST_DOWN, admin_state_source=C.USER_SOURCE),
        _inst("offl", n1, C.ADMINST_OFFLINE),
        _inst("onoffline", nodes["node3"], C.ADMINST_UP),
        _inst("ondown", nodes["node2"], C.ADMINST_UP),
        _inst("wrong", n1, C.ADMINST_UP),
        _inst("stopped-up", n1, C.ADMINST_UP),
        _inst("stopped-down", n1, C.ADMINST_DOWN),
        _inst("mirrored", nodes["node10"], C.ADMINST_UP, disk_template=C.DT_DRBD8,
              disks=[Disk(iv_name="disk/0", size=2048, nodes=[nodes["node10"].uuid,
                                                                n1.uuid], spindles=2),
                     Disk(iv_name="disk/1", size=100, name="data",
                          nodes=[nodes["node10"].uuid, n1.uuid])]),
    ]
    cfg.commit(add=insts)
    yield Env(cfg, group, group2, nodes, {i.name: i for i in insts})
    cfg.close()


def _live(env: Env) -> LiveData:
    n = env.nodes
    running = {"memory": 512, "vcpus": 2, "state": C.HV_STATE_RUNNING, "time": 10.0}
    shutdown = dict(running, state=C.HV_STATE_SHUTDOWN)
    return LiveData(
        instances={
            "running": dict(running, node=n["node1"].uuid),
            "errup": dict(running, node=n["node1"].uuid),
            "wrong": dict(running, node=n["node10"].uuid),
            "stopped-up": dict(shutdown, node=n["node1"].uuid),
            "stopped-down": dict(shutdown, node=n["node1"].uuid),
            "mirrored": {"memory": 128, "state": C.HV_STATE_RUNNING,
                         "node": n["node10"].uuid},
        },
        nodes={
            n["node1"].uuid: {"boot_id": "boot-1", "name": "node1",
                              "storage": [{"type": "file", "name": FILE_DIR,
                                           "storage_size": 100000, "storage_free": 40000}],
                              "hv": [{"memory_total": 8192, "memory_free": 6000,
                                      "memory_dom0": 1024, "cpu_total": 8, "cpu_dom0": 8,
                                      "cpu_nodes": 1, "cpu_sockets": 2}]},
            n["node10"].uuid: {"boot_id": "boot-10", "hv": [{"memory_total": "oops"}]},
        },
        failed_nodes={n["node2"].uuid: "Connection refused"},
        offline_nodes={n["node3"].uuid},
    )


def _col(rows: list[list[tuple[int, Any]]], idx: int = 0) -> list[tuple[int, Any]]:
    return [r[idx] for r in rows]


def _by_name(env: Env, what: str, field: str, live: LiveData | None) -> dict[str, Any]:
    rows = query(what, env.cfg, ["name", field], None, live)
    return {r[0][1]: r[1] for r in rows}


# -- instances ------------------------------------------------------------------------------
def test_instance_status_every_value(env: Env) -> None:
    got = _by_name(env, "instance", "status", _live(env))
    assert got == {
        "running": (RS_NORMAL, C.INSTST_RUNNING),
        "errup": (RS_NORMAL, C.INSTST_ERRORUP),
        "errdown": (RS_NORMAL, C.INSTST_ERRORDOWN),
        "admdown": (RS_NORMAL, C.INSTST_ADMINDOWN),
        "userdown": (RS_NORMAL, C.INSTST_USERDOWN),
        "offl": (RS_NORMAL, C.INSTST_ADMINOFFLINE),
        "onoffline": (RS_NORMAL, C.INSTST_NODEOFFLINE),
        "ondown": (RS_NORMAL, C.INSTST_NODEDOWN),
        "wrong": (RS_NORMAL, C.INSTST_WRONGNODE),
        "stopped-up": (RS_NORMAL, C.INSTST_ERRORDOWN),
        "stopped-down": (RS_NORMAL, C.INSTST_ADMINDOWN),
        "mirrored": (RS_NORMAL, C.INSTST_RUNNING),
    }


def test_user_shutdown_reported_when_enabled(env: Env) -> None:
    cluster = env.cfg.get_cluster().model_copy(deep=True)
    cluster.enabled_user_shutdown = True
    env.cfg.commit(update=[cluster])
    live = _live(env)
    kvm = _inst("kvm-stopped", env.nodes["node1"], C.ADMINST_UP, hypervisor=C.HT_KVM)
    kvm_user = _inst("kvm-user", env.nodes["node1"], C.ADMINST_UP, hypervisor=C.HT_KVM,
                     hvparams={"user_shutdown": True})
    env.cfg.commit(add=[kvm, kvm_user])
    for name in ("kvm-stopped", "kvm-user"):
        live.instances[name] = {"state": C.HV_STATE_SHUTDOWN, "node": kvm.primary_node}
    got = _by_name(env, "instance", "status", live)
    assert got["stopped-up"] == (RS_NORMAL, C.INSTST_USERDOWN)      # fake hv: allowed
    assert got["kvm-stopped"] == (RS_NORMAL, C.INSTST_ERRORDOWN)    # kvm needs the hvparam
    assert got["kvm-user"] == (RS_NORMAL, C.INSTST_USERDOWN)
    assert got["stopped-down"] == (RS_NORMAL, C.INSTST_ADMINDOWN)


def test_running_on_primary_and_elsewhere_is_wrongnode(env: Env) -> None:
    live = _live(env)
    live.instances["running"]["other_nodes"] = [env.nodes["node10"].uuid]
    got = _by_name(env, "instance", "status", live)
    assert got["running"] == (RS_NORMAL, C.INSTST_WRONGNODE)


def test_instance_oper_fields(env: Env) -> None:
    live = _live(env)
    rows = query("instance", env.cfg, ["name", "oper_state", "oper_ram", "oper_vcpus"],
                 None, live)
    got = {r[0][1]: r[1:] for r in rows}
    assert got["running"] == [(RS_NORMAL, True), (RS_NORMAL, 512), (RS_NORMAL, 2)]
    assert got["errdown"] == [(RS_NORMAL, False), (RS_UNAVAIL, None), (RS_UNAVAIL, None)]
    # Running on the wrong node: not "running" here, no values.
    assert got["wrong"] == [(RS_NORMAL, False), (RS_UNAVAIL, None), (RS_UNAVAIL, None)]
    # Primary offline or unreachable: we don't know.
    for name in ("onoffline", "ondown"):
        assert got[name] == [(RS_NODATA, None)] * 3
    # A key missing in the live data.
    assert got["mirrored"] == [(RS_NORMAL, True), (RS_NORMAL, 128), (RS_UNAVAIL, None)]


def test_live_fields_without_live_data(env: Env) -> None:
    rows = query("instance", env.cfg, ["status", "oper_state", "oper_ram", "name"],
                 ["running"], None)
    assert rows == [[(RS_NODATA, None)] * 3 + [(RS_NORMAL, "running")]]


def test_instance_config_fields(env: Env) -> None:
    n1, n10 = env.nodes["node1"], env.nodes["node10"]
    fields = ["name", "uuid", "os", "pnode", "snodes", "admin_state", "admin_state_source",
              "admin_up", "disk_template", "hypervisor", "network_port", "tags",
              "serial_no", "ctime", "mtime", "pnode.group", "snodes.group.uuid"]
    [running, mirrored] = query("instance", env.cfg, fields, ["running", "mirrored"])
    inst = env.cfg.get_instance_by_name("running")
    assert running == [(RS_NORMAL, v) for v in [
        "running", inst.uuid, "debootstrap+default", "node1", [], C.ADMINST_UP,
        C.ADMIN_SOURCE, True, C.DT_FILE, C.HT_KVM, 11001, ["web"], 1, inst.ctime,
        inst.mtime, "default", []]]
    assert mirrored[3:5] == [(RS_NORMAL, "node10"), (RS_NORMAL, ["node1"])]
    assert mirrored[-1] == (RS_NORMAL, [env.group.uuid])
    assert n10.name == "node10" and n1.name == "node1"


def test_instance_disk_and_unit_fields(env: Env) -> None:
    fields = ["disk_usage", "disk.count", "disk.sizes", "disk.spindles", "disk.names",
              "disk.size/0", "disk.size/1", "disk.size/5", "disk.name/0", "disk.name/1",
              "disk.spindles/0", "sda_size", "sdb_size"]
    rows = query("instance", env.cfg, fields, ["mirrored", "admdown", "errup"])
    mirrored, diskless, plain = rows
    assert mirrored == [
        (RS_NORMAL, 2048 + 128 + 100 + 128), (RS_NORMAL, 2), (RS_NORMAL, [2048, 100]),
        (RS_NORMAL, [2, None]), (RS_NORMAL, [None, "data"]), (RS_NORMAL, 2048),
        (RS_NORMAL, 100), (RS_UNAVAIL, None), (RS_UNAVAIL, None), (RS_NORMAL, "data"),
        (RS_NORMAL, 2), (RS_NORMAL, 2048), (RS_NORMAL, 100)]
    assert diskless[:3] == [(RS_NORMAL, 0), (RS_NORMAL, 0), (RS_NORMAL, [])]
    assert plain[0] == (RS_NORMAL, 1024)
    uuids = query("instance", env.cfg, ["disk.uuids", "disk.uuid/1"], ["mirrored"])[0]
    disks = env.cfg.get_instance_by_name("mirrored").disks
    assert uuids == [(RS_NORMAL, [d.uuid for d in disks]), (RS_NORMAL, disks[1].uuid)]


def test_instance_nic_fields(env: Env) -> None:
    fields = ["nic.count", "nic.macs", "nic.ips", "nic.modes", "nic.links", "nic.bridges",
              "nic.names", "nic.networks", "nic.vlans", "nic.mac/0", "nic.ip/1",
              "nic.bridge/0", "nic.bridge/1", "nic.mode/1", "nic.link/1", "nic.mac/2",
              "ip", "mac", "bridge", "nic_mode", "nic_link", "custom_nicparams"]
    [row] = query("instance", env.cfg, fields, ["running"])
    values = dict(zip(fields, row, strict=True))
    n = RS_NORMAL
    assert values["nic.count"] == (n, 2)
    assert values["nic.macs"] == (n, ["aa:00:00:00:00:01", "aa:00:00:00:00:02"])
    assert values["nic.ips"] == (n, ["192.0.2.1", None])
    assert values["nic.modes"] == (n, [C.NIC_MODE_BRIDGED, C.NIC_MODE_ROUTED])
    assert values["nic.links"] == (n, ["br0", "rt"])
    assert values["nic.bridges"] == (n, ["br0", None])
    assert values["nic.names"] == (n, ["eth0", None])
    assert values["nic.networks"] == (n, [None, None])
    assert values["nic.vlans"] == (n, ["", ""])
    assert values["nic.mac/0"] == (n, "aa:00:00:00:00:01")
    assert values["nic.ip/1"] == (RS_UNAVAIL, None)
    assert values["nic.bridge/0"] == (n, "br0")
    assert values["nic.bridge/1"] == (RS_UNAVAIL, None)          # routed: no bridge
    assert values["nic.mode/1"] == (n, C.NIC_MODE_ROUTED)
    assert values["nic.link/1"] == (n, "rt")
    assert values["nic.mac/2"] == (RS_UNAVAIL, None)
    assert values["ip"] == (n, "192.0.2.1") and values["mac"] == (n, "aa:00:00:00:00:01")
    assert values["bridge"] == (n, "br0") and values["nic_mode"] == (n, "bridged")
    assert values["nic_link"] == (n, "br0")
    assert values["custom_nicparams"] == (n, [{}, {"mode": "routed", "link": "rt"}])


def test_instance_param_fields(env: Env) -> None:
    fields = ["beparams", "custom_beparams", "be/maxmem", "be/memory", "be/vcpus", "vcpus",
              "hvparams", "custom_hvparams", "hv/kernel_path", "hv/kernel_args",
              "hv/migration_port", "osparams", "custom_osparams"]
    [kvm, fake] = query("instance", env.cfg, fields, ["running", "errup"])
    values = dict(zip(fields, kvm, strict=True))
    assert values["beparams"] == (RS_NORMAL, {**C.BEC_DEFAULTS, C.BE_MAXMEM: 512,
                                              C.BE_MINMEM: 256, C.BE_VCPUS: 2})
    assert values["custom_beparams"] == (RS_NORMAL, {C.BE_VCPUS: 2})
    assert values["be/maxmem"] == values["be/memory"] == (RS_NORMAL, 512)
    assert values["be/vcpus"] == values["vcpus"] == (RS_NORMAL, 2)
    hvp = values["hvparams"][1]
    assert hvp["kernel_path"] == "/boot/vmlinuz" and hvp["kernel_args"] == "quiet"
    assert "migration_port" not in hvp                        # cluster-wide: skipped
    assert values["custom_hvparams"] == (RS_NORMAL, {"kernel_args": "quiet"})
    assert values["hv/kernel_path"] == (RS_NORMAL, "/boot/vmlinuz")
    assert values["hv/kernel_args"] == (RS_NORMAL, "quiet")
    assert values["hv/migration_port"] == (RS_UNKNOWN, None)  # globals are no fields
    assert values["osparams"] == values["custom_osparams"] == (RS_NORMAL, {})
    fake_values = dict(zip(fields, fake, strict=True))
    assert fake_values["hv/kernel_path"] == (RS_UNAVAIL, None)
    assert fake_values["be/vcpus"] == (RS_NORMAL, 1)


def test_values_are_copies(env: Env) -> None:
    [[(_, custom), (_, tags)]] = query("instance", env.cfg, ["custom_hvparams", "tags"],
                                       ["running"])
    custom["kernel_args"] = "changed"
    tags.append("mutated")
    inst = env.cfg.get_instance_by_name("running")
    assert inst.hvparams == {"kernel_args": "quiet"} and inst.tags == ["web"]


def test_unknown_fields_and_names(env: Env) -> None:
    rows = query("instance", env.cfg, ["name", "no_such_field"], None)
    assert len(rows) == len(env.insts)
    assert all(r[1] == (RS_UNKNOWN, None) for r in rows)
    with pytest.raises(errors.OpPrereqError) as exc:
        query("instance", env.cfg, ["name"], ["running", "ghost"])
    assert exc.value.ecode == errors.ECODE_NOENT
    assert str(exc.value) == "Instance 'ghost' not known"
    with pytest.raises(errors.OpPrereqError) as exc:
        query("cluster", env.cfg, ["name"], None)
    assert exc.value.ecode == errors.ECODE_INVAL
    with pytest.raises(errors.OpPrereqError):
        field_definitions("filter")


def test_row_order(env: Env) -> None:
    rows = query("node", env.cfg, ["name"], None)
    assert [r[0][1] for r in rows] == ["node1", "node2", "node3", "node4", "node10"]
    rows = query("instance", env.cfg, ["name"], ["wrong", "running", "wrong",
                                                 env.insts["errup"].uuid])
    assert [r[0][1] for r in rows] == ["wrong", "running", "errup"]
    assert query("instance", env.cfg, ["name"], []) == query("instance", env.cfg, ["name"])


# -- nodes ----------------------------------------------------------------------------------
def test_node_config_fields(env: Env) -> None:
    fields = ["name", "role", "master", "offline", "drained", "master_candidate",
              "vm_capable", "pip", "sip", "group", "group.uuid", "pinst_cnt", "sinst_cnt",
              "pinst_list", "sinst_list"]
    got = {r[0][1]: [v for _, v in r[1:]] for r in query("node", env.cfg, fields, None)}
    g1, g2 = env.group.uuid, env.group2.uuid
    assert got["node1"] == ["M", True, False, False, True, True, "127.0.1.1", "127.0.1.1",
                            "default", g1, 9, 1,
                            ["admdown", "errdown", "errup", "offl", "running",
                             "stopped-down", "stopped-up", "userdown", "wrong"],
                            ["mirrored"]]
    assert got["node2"][:9] == ["C", False, False, False, True, True, "127.0.1.2",
                                "10.0.0.2", "default"]
    assert got["node2"][10:] == [1, 0, ["ondown"], []]
    assert got["node10"][0] == "R" and got["node10"][10:] == [1, 0, ["mirrored"], []]
    assert got["node3"][0] == "O" and got["node3"][8:10] == ["second", g2]
    assert got["node4"][0] == "D"


def test_node_params_and_common(env: Env) -> None:
    [row] = query("node", env.cfg, ["ndparams", "custom_ndparams", "powered", "tags",
                                    "serial_no", "uuid"], ["node1"])
    assert row[0] == (RS_NORMAL, {**C.NDC_DEFAULTS, C.ND_SPINDLE_COUNT: 4})
    assert row[1:5] == [(RS_NORMAL, {}), (RS_NORMAL, True), (RS_NORMAL, []),
                        (RS_NORMAL, 1)]
    assert row[5] == (RS_NORMAL, env.nodes["node1"].uuid)


def test_node_live_fields(env: Env) -> None:
    fields = ["mtotal", "mnode", "mfree", "dtotal", "dfree", "ctotal", "cnos", "cnodes",
              "csockets", "bootid", "spfree"]
    got = {r[0][1]: r[1:] for r in query("node", env.cfg, ["name", *fields], None,
                                          _live(env))}
    n = RS_NORMAL
    assert got["node1"] == [(n, 8192), (n, 1024), (n, 6000), (n, 100000), (n, 40000),
                            (n, 8), (n, 8), (n, 1), (n, 2), (n, "boot-1"),
                            (RS_UNAVAIL, None)]
    assert got["node2"] == [(RS_NODATA, None)] * len(fields)        # RPC failed
    assert got["node3"] == [(RS_OFFLINE, None)] * len(fields)       # offline
    assert got["node4"] == [(RS_UNAVAIL, None)] * len(fields)       # not vm_capable
    # Bad number, missing keys.
    assert got["node10"][0] == (RS_UNAVAIL, None)
    assert got["node10"][3] == (RS_UNAVAIL, None)
    assert got["node10"][9] == (n, "boot-10")
    without = query("node", env.cfg, ["mtotal"], ["node1"], None)
    assert without == [[(RS_NODATA, None)]]


def test_node_live_flat_payload(env: Env) -> None:
    live = LiveData(nodes={env.nodes["node1"].uuid: {"memory_total": 100, "bootid": "x"}})
    assert query("node", env.cfg, ["mtotal", "bootid"], ["node1"], live) == [
        [(RS_NORMAL, 100), (RS_NORMAL, "x")]]


# -- groups ---------------------------------------------------------------------------------
def test_group_fields(env: Env) -> None:
    fields = ["name", "node_cnt", "node_list", "pinst_cnt", "pinst_list", "alloc_policy",
              "ndparams", "custom_ndparams", "ipolicy", "custom_ipolicy", "diskparams",
              "custom_diskparams", "uuid"]
    default, second = query("group", env.cfg, fields, None)
    assert [v for _, v in default[:4]] == ["default", 3, ["node1", "node2", "node10"], 11]
    assert default[4] == (RS_NORMAL, sorted(env.insts.keys() - {"onoffline"}))
    assert default[5] == (RS_NORMAL, "preferred")
    assert default[6] == (RS_NORMAL, {**C.NDC_DEFAULTS, C.ND_SPINDLE_COUNT: 4})
    assert default[7] == (RS_NORMAL, {C.ND_SPINDLE_COUNT: 4})
    # The group's filled policy: its own vcpu-ratio over the cluster's complete one.
    status, policy = default[8]
    assert status == RS_NORMAL and (policy["vcpu-ratio"], policy["spindle-ratio"]) == (2.0, 32.0)
    assert {"minmax", "std", "disk-templates"} <= set(policy)
    assert default[9] == (RS_NORMAL, {"vcpu-ratio": 2.0})
    assert set(default[10][1]) == set(C.DISK_TEMPLATES)
    assert default[11] == (RS_NORMAL, {})
    assert [v for _, v in second[:5]] == ["second", 2, ["node3", "node4"], 1, ["onoffline"]]
    assert second[12] == (RS_NORMAL, env.group2.uuid)


# -- definitions ----------------------------------------------------------------------------
# The RAPI bulk field lists (rapi.md §6), minus "console".
I_FIELDS = ["name", "admin_state", "os", "pnode", "snodes", "disk_template", "nic.ips",
            "nic.macs", "nic.modes", "nic.uuids", "nic.names", "nic.links", "nic.networks",
            "nic.networks.names", "nic.bridges", "network_port", "disk.sizes",
            "disk.spindles", "disk_usage", "disk.uuids", "disk.names", "beparams",
            "hvparams", "oper_state", "oper_ram", "oper_vcpus", "status", "custom_hvparams",
            "custom_beparams", "custom_nicparams", "ctime", "mtime", "uuid", "serial_no",
            "tags"]
N_FIELDS = ["name", "offline", "master_candidate", "drained", "dtotal", "dfree", "sptotal",
            "spfree", "mtotal", "mnode", "mfree", "pinst_cnt", "sinst_cnt", "ctotal", "cnos",
            "cnodes", "csockets", "pip", "sip", "role", "pinst_list", "sinst_list",
            "master_capable", "vm_capable", "ndparams", "group.uuid", "ctime", "mtime",
            "uuid", "serial_no", "tags"]
G_FIELDS = ["alloc_policy", "name", "node_cnt", "node_list", "ipolicy", "custom_ipolicy",
            "diskparams", "custom_diskparams", "ndparams", "custom_ndparams", "ctime",
            "mtime", "uuid", "serial_no", "tags"]
# Default list columns (cli.md).
CLI_DEFAULTS = {"node": ["name", "dtotal", "dfree", "mtotal", "mnode", "mfree", "pinst_cnt",
                         "sinst_cnt"],
                "instance": ["name", "hypervisor", "os", "pnode", "status", "oper_ram"],
                "group": ["name", "node_cnt", "pinst_cnt", "alloc_policy", "ndparams"]}


@pytest.mark.parametrize("what,fields", [("instance", I_FIELDS), ("node", N_FIELDS),
                                         ("group", G_FIELDS)])
def test_definitions_cover_rapi_and_cli_fields(env: Env, what: str, fields: list[str]) -> None:
    defs = field_definitions(what)
    assert set(fields) <= set(defs)
    assert set(CLI_DEFAULTS[what]) <= set(defs)
    for name, fdef in defs.items():
        assert fdef.name == name and fdef.title and fdef.doc
    # Every field evaluates without error on every object.
    rows = query(what, env.cfg, list(defs), None, _live(env))
    assert all(status in (RS_NORMAL, RS_NODATA, RS_UNAVAIL, RS_OFFLINE)
               for row in rows for status, _ in row)


def test_field_kinds(env: Env) -> None:
    inst, node, group = (field_definitions(w) for w in ("instance", "node", "group"))
    assert {inst[f].kind for f in ("oper_ram", "disk_usage", "be/maxmem",
                                   "disk.size/0")} == {"unit"}
    assert {node[f].kind for f in ("mtotal", "mfree", "mnode", "dtotal", "dfree")} == {"unit"}
    assert inst["ctime"].kind == node["mtime"].kind == "timestamp"
    assert inst["status"].kind == "text" and inst["oper_state"].kind == "bool"
    assert node["ctotal"].kind == "number" and group["node_cnt"].kind == "number"
    assert inst["hv/acpi"].kind == "bool" and inst["hv/acpi"].title == "ACPI"
    assert inst["be/memory"].title == inst["be/maxmem"].title == "ConfigMaxMem"
    assert inst["status"].title == "Status" and node["role"].title == "Role"


def test_needs_live_data() -> None:
    assert needs_live_data("instance", ["name", "status"])
    assert needs_live_data("instance", ["oper_ram"])
    assert not needs_live_data("instance", ["name", "pnode", "no_such_field"])
    assert needs_live_data("node", ["name", "mfree"])
    assert not needs_live_data("node", ["name", "pinst_cnt", "role"])
    assert not needs_live_data("group", ["name", "node_cnt"])


def test_no_config_scans_per_row(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {}
    for meth in ("get_nodes", "get_instances", "get_nodegroups", "get_node_list"):
        orig = getattr(env.cfg, meth)

        def counted(*a: Any, _orig: Any = orig, _m: str = meth) -> Any:
            calls[_m] = calls.get(_m, 0) + 1
            return _orig(*a)
        monkeypatch.setattr(env.cfg, meth, counted)
    for what in ("instance", "node", "group"):
        calls.clear()
        query(what, env.cfg, list(field_definitions(what)), None, _live(env))
        assert all(count <= 1 for count in calls.values()), (what, calls)


# -- gathering live data --------------------------------------------------------------------
@dataclass
class FakeResult:
    """Stand-in for our RpcResult (only the attributes query uses)."""

    payload: Any = None
    fail_msg: str | None = None
    offline: bool = False


class FakeRpc:
    def __init__(self, results: dict[str, FakeResult]) -> None:
        self.results = results
        self.calls: list[tuple[str, list[str], list[Any]]] = []

    def call(self, procedure: str, node_uuids: list[str], args: list[Any],
             **kwargs: Any) -> dict[str, FakeResult]:
        self.calls.append((procedure, list(node_uuids), args))
        return {u: self.results.get(u, FakeResult(payload={})) for u in node_uuids}


def test_gather_instances(env: Env) -> None:
    n = env.nodes
    info = {"memory": 128, "vcpus": 1, "state": 0, "time": 1.0}
    rpc = FakeRpc({
        n["node1"].uuid: FakeResult(payload={"running": info}),
        n["node10"].uuid: FakeResult(payload={"running": info, "mirrored": info,
                                              "wrong": info}),
        n["node2"].uuid: FakeResult(fail_msg="Connection refused"),
        n["node3"].uuid: FakeResult(fail_msg="Node is marked offline", offline=True),
        n["node4"].uuid: FakeResult(payload=None),
    })
    live = gather_live_data("instance", env.cfg, rpc, ["name", "status"])
    [(proc, node_uuids, args)] = rpc.calls
    assert proc == "all_instances_info"
    assert sorted(node_uuids) == sorted(node.uuid for node in n.values())
    assert args[0] == [C.HT_FAKE, C.HT_KVM]
    assert args[1][C.HT_KVM]["kernel_path"] == "/boot/vmlinuz"
    assert args[1][C.HT_KVM]["kvm_path"] == C.HV_KVM_DEFAULTS["kvm_path"]
    assert live.failed_nodes == {n["node2"].uuid: "Connection refused",
                                 n["node4"].uuid: "Invalid payload NoneType"}
    assert live.offline_nodes == {n["node3"].uuid}
    # "running" is reported by its primary and by node10: primary's report wins.
    assert live.instances["running"]["node"] == n["node1"].uuid
    assert live.instances["running"]["other_nodes"] == [n["node10"].uuid]
    assert live.instances["mirrored"] == dict(info, node=n["node10"].uuid)
    got = _by_name(env, "instance", "status", live)
    assert got["running"] == (RS_NORMAL, C.INSTST_WRONGNODE)
    assert got["wrong"] == (RS_NORMAL, C.INSTST_WRONGNODE)    # only node10 reports it
    assert got["mirrored"] == (RS_NORMAL, C.INSTST_RUNNING)
    assert got["ondown"] == (RS_NORMAL, C.INSTST_NODEDOWN)
    assert got["onoffline"] == (RS_NORMAL, C.INSTST_NODEOFFLINE)
    assert got["errdown"] == (RS_NORMAL, C.INSTST_ERRORDOWN)


def test_gather_instances_for_names_and_primary_reported_second(env: Env) -> None:
    n = env.nodes
    info = {"memory": 64, "vcpus": 1, "state": 0}
    # node10 (the primary of "mirrored") answers after node1 (its secondary).
    rpc = FakeRpc({n["node1"].uuid: FakeResult(payload={"mirrored": info}),
                   n["node10"].uuid: FakeResult(payload={"mirrored": info})})
    live = gather_live_data("instance", env.cfg, rpc, ["oper_ram"], names=["mirrored"])
    [(_, node_uuids, _)] = rpc.calls
    assert sorted(node_uuids) == sorted([n["node1"].uuid, n["node10"].uuid])
    assert live.instances["mirrored"]["node"] == n["node10"].uuid
    assert live.instances["mirrored"]["other_nodes"] == [n["node1"].uuid]


def test_gather_nodes(env: Env) -> None:
    n = env.nodes
    payload = {"boot_id": "b", "storage": [{"type": "file", "name": FILE_DIR,
                                            "storage_size": 10, "storage_free": 5}],
               "hv": [{"memory_total": 2048}]}
    rpc = FakeRpc({n["node1"].uuid: FakeResult(payload=payload),
                   n["node3"].uuid: FakeResult(fail_msg="Node is marked offline",
                                               offline=True),
                   n["node2"].uuid: FakeResult(fail_msg="timed out")})
    live = gather_live_data("node", env.cfg, rpc, ["name", "mtotal", "dfree"])
    [(proc, node_uuids, args)] = rpc.calls
    assert proc == "node_info"
    assert n["node4"].uuid not in node_uuids                  # not vm_capable
    cluster = env.cfg.get_cluster()
    assert args[0] == [[C.DT_FILE, cluster.file_storage_dir],
                       [C.DT_SHARED_FILE, cluster.shared_file_storage_dir]]
    assert args[1] == [[C.HT_FAKE, cluster.get_hv_defaults(C.HT_FAKE)]]
    assert live.nodes[n["node1"].uuid] == payload
    assert live.failed_nodes == {n["node2"].uuid: "timed out"}
    got = {r[0][1]: r[1:] for r in query("node", env.cfg, ["name", "mtotal", "dfree"],
                                          None, live)}
    assert got["node1"] == [(RS_NORMAL, 2048), (RS_NORMAL, 5)]
    assert got["node2"] == [(RS_NODATA, None)] * 2
    assert got["node3"] == [(RS_OFFLINE, None)] * 2


def test_gather_nothing_without_live_fields(env: Env) -> None:
    rpc = FakeRpc({})
    for what, fields in (("instance", ["name", "pnode"]), ("node", ["name", "role"]),
                         ("group", ["name"])):
        live = gather_live_data(what, env.cfg, rpc, fields)
        assert live == LiveData()
    assert rpc.calls == []
