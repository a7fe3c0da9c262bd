"""OP_INSTANCE_SET_PARAMS (cmdlib/instance_set_params.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import errors
from corral.cmdlib.instance_set_params import add_index, find_item, upgrade_mods
from corral.objects import NIC

try:
    from .test_instance_fixtures import Env, env, file_size_mib, icluster  # noqa: F401
except ImportError:
    from test_instance_fixtures import Env, env, file_size_mib, icluster  # noqa: F401

integration = pytest.mark.integration
FILE_DIR = "/srv/corral/file-storage"


# -- SetParamsMods parsing --------------------------------------------------------------
def test_upgrade_legacy_and_new_formats() -> None:
    assert upgrade_mods("disk", []) == []
    assert upgrade_mods("disk", [["add", {"size": 1}], [0, {"mode": "ro"}]]) == \
        [("add", -1, {"size": 1}), ("modify", 0, {"mode": "ro"})]
    assert upgrade_mods("NIC", [["remove", {}]]) == [("remove", -1, {})]
    assert upgrade_mods("NIC", [["modify", "eth-a", {"ip": None}], ["add", 1, {}]]) == \
        [("modify", "eth-a", {"ip": None}), ("add", 1, {})]


@pytest.mark.parametrize("mods", [
    [["add", {}], ["remove", {}]],             # legacy: one add/remove at a time
    [["frobnicate", 0, {}]],
    [["remove", 0, {"size": 1}]],
    [["attach", -1, {}]],
    [["modify", 0, "notadict"]],
    [["modify", 1.5, {}]],
    ["add"],
])
def test_upgrade_refusals(mods: list[Any]) -> None:
    with pytest.raises(errors.OpPrereqError) as exc:
        upgrade_mods("disk", mods)
    assert exc.value.ecode == errors.ECODE_INVAL


def test_item_lookup() -> None:
    nics = [NIC(name="a"), NIC(name="b")]
    assert find_item("NIC", 0, nics) == 0
    assert find_item("NIC", -1, nics) == 1
    assert find_item("NIC", "1", nics) == 1
    assert find_item("NIC", "b", nics) == 1
    assert find_item("NIC", nics[0].uuid, nics) == 0
    assert add_index("NIC", -1, nics) == 2 and add_index("NIC", 2, nics) == 2
    for bad, code in ((2, errors.ECODE_INVAL), (-2, errors.ECODE_INVAL),
                      ("zzz", errors.ECODE_NOENT)):
        with pytest.raises(errors.OpPrereqError) as exc:
            find_item("NIC", bad, nics)
        assert exc.value.ecode == code
    with pytest.raises(errors.OpPrereqError):
        add_index("NIC", 3, nics)
    with pytest.raises(errors.OpPrereqError):
        add_index("NIC", "a", nics)


@given(st.integers(min_value=-5, max_value=10), st.integers(min_value=0, max_value=6))
def test_find_item_index_in_range(idx: int, length: int) -> None:
    items = [NIC() for _ in range(length)]
    try:
        pos = find_item("NIC", idx, items)
    except errors.OpPrereqError:
        assert idx >= length or idx < -1 or (idx == -1 and length == 0)
        return
    assert 0 <= pos < length
    assert pos == (length - 1 if idx == -1 else idx)


# -- on a cluster ------------------------------------------------------------------------
def _mod(name: str, **kw: Any) -> dict[str, Any]:
    return {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": name, **kw}


@integration
def test_beparams_and_os(env: Env) -> None:
    env.create("sp1", start=False)
    result = env.run1(_mod("sp1", beparams={"memory": 256, "vcpus": 2}))
    assert sorted(map(tuple, result)) == [("be/maxmem", 256), ("be/minmem", 256),
                                          ("be/vcpus", 2)]
    info = env.info("sp1")
    assert info["be_instance"] == {"maxmem": 256, "minmem": 256, "vcpus": 2}
    # None / "default" resets to the cluster default.
    env.run1(_mod("sp1", beparams={"vcpus": "default", "minmem": None}))
    info = env.info("sp1")
    assert info["be_instance"] == {"maxmem": 256}
    assert info["be_actual"]["vcpus"] == 1 and info["be_actual"]["minmem"] == 128
    assert env.run1(_mod("sp1", os_name="corral-marker")) == [["os_name", "corral-marker"]]
    assert env.info("sp1")["os"] == "corral-marker"


@integration
def test_parameter_refusals(env: Env) -> None:
    env.create("sp1r", start=False)
    before = env.instances()
    for kw, text in (({"hvparams": {"migration_mode": "live"}}, "global"),
                     ({"hvparams": {"no_such_param": 1}}, "no_such_param"),
                     ({"beparams": {"minmem": 4096}}, "Minimum memory"),
                     ({"beparams": {"bogus": 1}}, "bogus"),
                     ({"os_name": "no-such-os"}, "no-such-os")):
        err = env.fail(_mod("sp1r", **kw))
        assert err.ecode == errors.ECODE_INVAL and text in err.message, (kw, err)
    assert env.instances() == before


@integration
def test_runtime_memory(env: Env) -> None:
    env.create("sp2", beparams={"minmem": 64, "maxmem": 256})
    state = env.fake_state("node1", "sp2")
    assert state.read_text().split()[1] == "256"
    result = env.run1(_mod("sp2", runtime_mem=100))
    assert ["runtime_memory", 100] in result
    assert state.read_text().split()[1] == "100"
    err = env.fail(_mod("sp2", runtime_mem=1024))
    assert err.ecode == errors.ECODE_INVAL
    env.run1({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "sp2"})
    err = env.fail(_mod("sp2", runtime_mem=100))
    assert err.ecode == errors.ECODE_STATE


@integration
def test_offline_flag(env: Env) -> None:
    env.create("sp3", start=False)
    assert env.run1(_mod("sp3", offline=True)) == [["admin_state", "offline"]]
    assert env.info("sp3")["config_state"] == "offline"
    assert env.run1(_mod("sp3", offline=False)) == [["admin_state", "down"]]
    env.run1({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "sp3"})
    before = env.instances()
    err = env.fail(_mod("sp3", offline=True))
    assert err.ecode == errors.ECODE_STATE
    assert env.instances() == before


@integration
def test_nic_add_modify_remove(env: Env) -> None:
    env.create("sp4", nics=[{"name": "eth-a"}], start=False)
    result = env.run1(_mod("sp4", nics=[["add", {"mac": "aa:00:00:12:34:56", "name": "b",
                                                 "ip": "192.0.2.10"}]]))
    assert result == [["nic.1", "add:mac=aa:00:00:12:34:56,ip=192.0.2.10,mode=bridged,"
                                "link=xen-br0,network=None"]]
    result = env.run1(_mod("sp4", nics=[["modify", "eth-a", {"mac": "generate",
                                                             "link": "br1"}]]))
    assert result[0][0] == "nic.mac/0" and result[0][1].startswith("aa:00:00:")
    assert ["nic.link/0", "br1"] in result
    nics = env.info("sp4")["nics"]
    assert [(n[0], n[5]) for n in nics] == [("eth-a", "br1"), ("b", "xen-br0")]
    assert nics[1][2:4] == ["192.0.2.10", "aa:00:00:12:34:56"]
    # Setting a NIC's MAC to the one it has is no conflict.
    assert env.run1(_mod("sp4", nics=[["modify", "b", {"mac": "AA:00:00:12:34:56"}]])) == \
        [["nic.mac/1", "aa:00:00:12:34:56"]]
    assert env.run1(_mod("sp4", nics=[["remove", 0, {}]])) == [["nic/0", "remove"]]
    assert [n[0] for n in env.info("sp4")["nics"]] == ["b"]


@integration
def test_nic_refusals(env: Env) -> None:
    env.create("sp5", nics=[{"mac": "aa:00:00:00:00:01"}, {}], start=False)
    before = env.instances()
    for nics, code in (
            ([["modify", 0, {"mac": "auto"}]], errors.ECODE_INVAL),
            ([["modify", 1, {"mac": "aa:00:00:00:00:01"}]], errors.ECODE_NOTUNIQUE),
            ([["modify", 5, {"ip": "192.0.2.1"}]], errors.ECODE_INVAL),
            ([["modify", "nosuch", {"ip": "192.0.2.1"}]], errors.ECODE_NOENT),
            ([["add", {"mode": "routed"}]], errors.ECODE_INVAL),
            ([["add", -1, {"bogus": 1}]], errors.ECODE_INVAL)):
        err = env.fail(_mod("sp5", nics=nics))
        assert err.ecode == code, (nics, err)
    assert env.instances() == before


@integration
def test_disk_add_modify_remove(env: Env) -> None:
    env.create("sp6", disk_template="file", disks=[{"size": 4}, {"size": 8, "name": "data"}],
               start=False)
    old_files = [p for _, p in env.disk_files("sp6")]
    result = env.run1(_mod("sp6", disks=[["add", {"size": 12, "mode": "ro"}]]))
    assert result == [["disk/2", "add:size=12,mode=ro"]]
    files = [p for _, p in env.disk_files("sp6")]
    assert files[:2] == old_files and file_size_mib(files[2]) == 12
    assert files[2].name.endswith(".file.disk2")

    result = env.run1(_mod("sp6", disks=[["modify", "data", {"mode": "ro", "name": "db"}]]))
    assert result == [["disk.mode/1", "ro"], ["disk.name/1", "db"]]
    result = env.run1(_mod("sp6", disks=[["remove", 0, {}]]))
    assert result == [["disk/0", "remove"]]
    assert not old_files[0].exists()
    info = env.info("sp6")
    assert [(d["iv_name"], d["size"], d["name"]) for d in info["disks"]] == \
        [("disk/0", 8, "db"), ("disk/1", 12, None)]
    # The instance still starts with its remaining disks.
    env.run1({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "sp6"})
    assert env.fake_state("node1", "sp6").exists()


@integration
def test_disk_refusals(env: Env) -> None:
    env.create("sp7", disk_template="file", disks=[{"size": 4}])
    env.create("sp7d", start=False)
    before = env.instances()
    files_before = sorted(env.real("node1", f"{FILE_DIR}/sp7").iterdir())
    cases = [
        ("sp7", [["add", {"size": 4}]], errors.ECODE_STATE),          # running
        ("sp7", [["modify", 0, {"size": 8}]], errors.ECODE_INVAL),     # use grow-disk
        ("sp7d", [["add", {"size": 4}]], errors.ECODE_INVAL),          # diskless
        ("sp7", [["add", {"size": -4}]], errors.ECODE_INVAL),
    ]
    for name, disks, code in cases:
        err = env.fail(_mod(name, disks=disks))
        assert err.ecode == code, (disks, err)
    env.run1({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "sp7"})
    before = env.instances()
    err = env.fail(_mod("sp7", disks=[["remove", 0, {}]]))
    assert err.ecode == errors.ECODE_INVAL and "last disk" in err.message
    err = env.fail(_mod("sp7"))
    assert err.ecode == errors.ECODE_INVAL and "No changes" in err.message
    err = env.fail(_mod("sp7", disk_template="plain"))
    assert err.ecode == errors.ECODE_INVAL and "not implemented" in err.message
    assert env.instances() == before
    assert sorted(env.real("node1", f"{FILE_DIR}/sp7").iterdir()) == files_before


@integration
def test_modify_hooks_environment(env: Env) -> None:
    env.create("sp8", start=False)
    hook_dir = env.node("node1").paths.hooks_dir / "instance-modify-pre.d"
    hook_dir.mkdir(parents=True, exist_ok=True)
    out = env.node("node1").paths.root / "modify-pre.env"
    script = hook_dir / "10-record"
    script.write_text(f"#!/bin/sh\nenv > {out}\n")
    script.chmod(0o755)
    try:
        env.run1(_mod("sp8", beparams={"maxmem": 512}))
        text = out.read_text()
    finally:
        script.unlink()
        out.unlink(missing_ok=True)
    assert "GANETI_INSTANCE_MAXMEM=512" in text           # the new values
    assert "GANETI_HOOKS_PATH=instance-modify" in text
