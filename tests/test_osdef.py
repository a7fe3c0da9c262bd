"""OS definitions: validity rules per API version, discovery, variants,
environment, script runs (test OSes in tests/data/os and Debian's noop OS)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import errors, osdef
from corral.objects import NIC, Disk, Instance
from corral.paths import Paths

DATA = Path(__file__).parent / "data" / "os"
MIB = 1024 * 1024


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "root")
    p.os_dir.mkdir(parents=True)
    return p


def install_os(paths: Paths, name: str, as_name: str | None = None) -> Path:
    dest = paths.os_dir / (as_name or name)
    shutil.copytree(DATA / name, dest)
    return dest


def encode(inst: Instance, primary: str = "node1.example.com",
           secondaries: list[str] | None = None) -> dict[str, Any]:
    """What RpcRunner.encode_instance sends (params already filled here)."""
    data = inst.to_dict()
    data["primary_node_name"] = primary
    data["secondary_node_names"] = secondaries or []
    return data


def make_instance(os_name: str, disks: list[Disk] | None = None,
                  nics: list[NIC] | None = None, **kw: Any) -> Instance:
    return Instance(
        name="inst1.example.com", primary_node="node-uuid-1", os=os_name,
        hypervisor=C.HT_FAKE, disks=disks or [], nics=nics or [],
        beparams={"maxmem": 256, "minmem": 128, "vcpus": 1},
        hvparams={"migration_mode": "live"}, **kw)


def read_env_dump(path: Path | str) -> dict[str, str]:
    """Parse the `env | sort` text the test OSes write at the start of disk 0."""
    raw = Path(path).read_bytes().split(b"\x00", 1)[0].decode()
    env = {}
    for line in raw.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key] = value
    return env


def make_disk_file(tmp_path: Path, name: str = "disk0", size_mib: int = 1) -> Path:
    path = tmp_path / name
    with open(path, "wb") as fh:
        fh.truncate(size_mib * MIB)
    return path


# -- loading and validity rules -----------------------------------------------------
def test_load_api20(paths: Paths) -> None:
    d = install_os(paths, "corral-test20")
    osd = osdef.find_os(paths, "corral-test20+beta")
    assert osd.name == "corral-test20"
    assert osd.path == str(d)
    assert osd.api_versions == [20, 15]
    assert osd.api_version == 20
    assert osd.variants == ["alpha", "beta"]
    assert osd.supported_variants == ["alpha", "beta"]
    assert osd.parameters == [("colour", "The colour of the guest"),
                              ("size-hint", "A free-form size hint")]
    assert osd.trusted is True
    assert osd.create_script == str(d / "create")
    assert osd.verify_script == str(d / "verify")
    assert osd.script("rename") == str(d / "rename")


def test_load_api15_and_10(paths: Paths) -> None:
    install_os(paths, "corral-test15")
    d10 = install_os(paths, "corral-test10")
    o15 = osdef.find_os(paths, "corral-test15")
    assert (o15.api_version, o15.variants, o15.parameters, o15.verify_script) == \
        (15, ["wheezy", "jessie"], [], None)
    # API 10 knows no variants: a variants.list is ignored
    (d10 / "variants.list").write_text("ignored\n")
    o10 = osdef.find_os(paths, "corral-test10")
    assert (o10.api_version, o10.variants) == (10, [])
    with pytest.raises(errors.OSError_, match="has no verify script"):
        o10.script("verify")


def _mutate(d: Path, action: str) -> None:
    kind, _, target = action.partition(":")
    path = d / target
    if kind == "rm":
        path.unlink()
    elif kind == "noexec":
        path.chmod(0o644)
    elif kind == "dir":
        path.unlink()
        path.mkdir()
    elif kind == "write":
        name, _, content = target.partition("=")
        (d / name).write_text(content.replace("\\n", "\n"))


@pytest.mark.parametrize("base, actions, fragment", [
    ("corral-test20", ["rm:ganeti_api_version"], "Required file 'ganeti_api_version'"),
    ("corral-test20", ["dir:ganeti_api_version"], "is not a regular file"),
    ("corral-test20", ["write:ganeti_api_version=twenty\\n"], "can't be converted"),
    ("corral-test20", ["write:ganeti_api_version=5\\n30\\n"], "API version mismatch"),
    ("corral-test20", ["rm:verify"], "File 'verify' under path"),
    ("corral-test20", ["rm:parameters.list"], "File 'parameters.list' under path"),
    ("corral-test20", ["rm:create"], r"A create script \(trusted or untrusted\)"),
    ("corral-test20", ["noexec:create"], "File 'create' under path .* is not executable"),
    ("corral-test20", ["dir:create"], "File 'create' under path .* is not a regular file"),
    ("corral-test15", ["rm:import"], "File 'import' under path .* is missing"),
    ("corral-test15", ["rm:export"], "File 'export' under path .* is missing"),
    ("corral-test10", ["rm:rename"], "File 'rename' under path .* is missing"),
    ("corral-test10", ["noexec:export"], "File 'export' under path .* is not executable"),
    # an OS declaring 20 (and 10) must follow the API 20 rules
    ("corral-test10", ["write:ganeti_api_version=20\\n10\\n"], "File 'verify'"),
])
def test_validity_rules(paths: Paths, base: str, actions: list[str], fragment: str) -> None:
    d = install_os(paths, base, "broken")
    for action in actions:
        _mutate(d, action)
    with pytest.raises(errors.OSError_, match=fragment) as exc:
        osdef.find_os(paths, "broken")
    assert exc.value.ecode == errors.ECODE_ENVIRON
    row = [r for r in osdef.diagnose_all(paths) if r[0] == "broken"]
    assert len(row) == 1
    assert row[0][2] is False and row[0][4:7] == [[], [], []]
    assert row[0][3] == str(exc.value)


def test_valid_without_optional_files(paths: Paths) -> None:
    d = install_os(paths, "corral-test15", "plain15")
    (d / "variants.list").unlink()          # optional for API 15
    osd = osdef.find_os(paths, "plain15")
    assert osd.variants == []


def test_untrusted_only(paths: Paths) -> None:
    d = install_os(paths, "corral-test20", "untrusted")
    (d / "create").rename(d / "create_untrusted")
    osd = osdef.find_os(paths, "untrusted")
    assert osd.trusted is False
    assert osd.create_untrusted_script == str(d / "create_untrusted")
    with pytest.raises(errors.OSError_, match="has no create script"):
        osd.script("create")


def test_find_os_errors(paths: Paths) -> None:
    with pytest.raises(errors.OSError_, match="not found in search path") as exc:
        osdef.find_os(paths, "no-such-os")
    assert exc.value.ecode == errors.ECODE_NOENT
    for bad in ("../etc", ".hidden", "a/b", ""):
        with pytest.raises(errors.OSError_, match="Invalid OS name") as exc:
            osdef.find_os(paths, bad)
        assert exc.value.ecode == errors.ECODE_INVAL


def test_search_order(paths: Paths, ganeti_os_noop: Path) -> None:
    # only in the system directory
    assert osdef.find_os(paths, "noop").path == str(ganeti_os_noop)
    # Corral's own directory comes first
    d = install_os(paths, "corral-test10", "noop")
    assert osdef.find_os(paths, "noop").path == str(d)
    # ... even when the definition there is broken (first match wins)
    (d / "create").unlink()
    with pytest.raises(errors.OSError_, match="A create script"):
        osdef.find_os(paths, "noop")


def test_diagnose_all(paths: Paths, ganeti_os_noop: Path) -> None:
    install_os(paths, "corral-test20")
    install_os(paths, "corral-failing")
    broken = install_os(paths, "corral-test10", "broken")
    (broken / "ganeti_api_version").write_text("3\n")
    (paths.os_dir / ".hidden").mkdir()
    (paths.os_dir / "not-a-dir").write_text("x")
    rows = osdef.diagnose_all(paths)
    by_name: dict[str, list[Any]] = {}
    for r in rows:
        by_name.setdefault(r[0], r)
    assert ".hidden" not in by_name and "not-a-dir" not in by_name
    assert by_name["corral-test20"] == [
        "corral-test20", str(paths.os_dir / "corral-test20"), True, "", ["alpha", "beta"],
        [["colour", "The colour of the guest"], ["size-hint", "A free-form size hint"]],
        [20, 15], True]
    assert by_name["corral-failing"][2] is True
    assert by_name["broken"][2] is False
    assert "API version mismatch" in by_name["broken"][3]
    noop = by_name["noop"]
    assert noop[1] == str(ganeti_os_noop)
    assert noop[2:] == [True, "", [], [], [5, 10], True]
    for r in rows:
        assert len(r) == 8


# -- variants -----------------------------------------------------------------------
def test_select_variant(paths: Paths) -> None:
    install_os(paths, "corral-test20")
    install_os(paths, "corral-test10")
    o20 = osdef.find_os(paths, "corral-test20")
    assert osdef.select_variant(o20, "corral-test20") == "alpha"
    assert osdef.select_variant(o20, "corral-test20+beta") == "beta"
    with pytest.raises(errors.OSError_, match="does not support variant 'gamma'") as exc:
        osdef.select_variant(o20, "corral-test20+gamma")
    assert exc.value.ecode == errors.ECODE_INVAL
    assert osdef.select_variant(o20, "corral-test20+gamma", force_variant=True) == "gamma"
    o10 = osdef.find_os(paths, "corral-test10")
    assert osdef.select_variant(o10, "corral-test10") == ""
    with pytest.raises(errors.OSError_, match="does not support variants"):
        osdef.select_variant(o10, "corral-test10+x")
    assert osdef.split_os_name("a+b+c") == ("a", "b+c")


# -- environment ----------------------------------------------------------------------
def test_core_environment_per_api(paths: Paths) -> None:
    for name in ("corral-test20", "corral-test15", "corral-test10"):
        install_os(paths, name)
    params = {"colour": "red", "size-hint": "10"}
    e20 = osdef.os_core_environment(osdef.find_os(paths, "corral-test20"),
                                    "corral-test20+beta", params, debug=1)
    assert e20 == {"OS_API_VERSION": "20", "OS_NAME": "corral-test20", "OS_VARIANT": "beta",
                   "DEBUG_LEVEL": "1", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
                   "OSP_COLOUR": "red", "OSP_SIZE_HINT": "10"}
    e15 = osdef.os_core_environment(osdef.find_os(paths, "corral-test15"), "corral-test15",
                                    params)
    assert e15["OS_API_VERSION"] == "15" and e15["OS_VARIANT"] == "wheezy"
    assert not any(k.startswith("OSP_") for k in e15)
    e10 = osdef.os_core_environment(osdef.find_os(paths, "corral-test10"), "corral-test10",
                                    params)
    assert e10 == {"OS_API_VERSION": "10", "OS_NAME": "corral-test10", "DEBUG_LEVEL": "0",
                   "PATH": "/sbin:/bin:/usr/sbin:/usr/bin"}


def test_full_environment(paths: Paths) -> None:
    install_os(paths, "corral-test20")
    osd = osdef.find_os(paths, "corral-test20")
    disks = [Disk(dev_type=C.DT_FILE, logical_id=["loop", "/srv/corral/file-storage/i/d0"],
                  size=1024, name="root"),
             Disk(dev_type=C.DT_SHARED_FILE, logical_id=["blktap2", "/srv/x/d1"], size=512,
                  mode="ro")]
    nics = [NIC(mac="aa:00:00:11:22:33", ip="192.0.2.10", name="eth0",
                nicparams={"mode": "bridged", "link": "br0", "vlan": ""}),
            NIC(mac="aa:00:00:44:55:66", nicparams={"mode": "routed", "link": "rt100",
                                                    "vlan": ""})]
    inst = make_instance("corral-test20+beta", disks, nics,
                         osparams={"colour": "green"}, osparams_private={"size-hint": "7"})
    inst.hvparams.update({"disk_type": "paravirtual", "nic_type": "e1000"})
    data = encode(inst, secondaries=["node2.example.com", "node3.example.com"])
    data["nics"][1]["netinfo"] = {"name": "net1", "uuid": "net-uuid", "network": "192.0.2.0/24",
                                  "gateway": "192.0.2.1", "tags": ["a", "b"]}
    env = osdef.os_environment(osd, data, ["/real/d0", "/real/d1"], debug=1,
                               disk_uris=[None, "gluster://h/v/d1"])
    expected = {
        "OS_API_VERSION": "20", "OS_NAME": "corral-test20", "OS_VARIANT": "beta",
        "DEBUG_LEVEL": "1", "OSP_COLOUR": "green", "OSP_SIZE_HINT": "7",
        "INSTANCE_NAME": "inst1.example.com", "INSTANCE_OS": "corral-test20+beta",
        "INSTANCE_UUID": inst.uuid, "INSTANCE_CTIME": str(inst.ctime),
        "INSTANCE_MTIME": str(inst.mtime), "INSTANCE_PRIMARY_NODE": "node1.example.com",
        "INSTANCE_SECONDARY_NODES": "node2.example.com node3.example.com",
        "HYPERVISOR": "fake", "DISK_COUNT": "2", "NIC_COUNT": "2",
        "DISK_0_PATH": "/real/d0", "DISK_0_SIZE": "1024", "DISK_0_ACCESS": "rw",
        "DISK_0_UUID": disks[0].uuid, "DISK_0_NAME": "root",
        "DISK_0_FRONTEND_TYPE": "paravirtual", "DISK_0_BACKEND_TYPE": "file:loop",
        "DISK_1_PATH": "/real/d1", "DISK_1_URI": "gluster://h/v/d1", "DISK_1_SIZE": "512",
        "DISK_1_ACCESS": "ro", "DISK_1_UUID": disks[1].uuid,
        "DISK_1_FRONTEND_TYPE": "paravirtual", "DISK_1_BACKEND_TYPE": "file:blktap2",
        "NIC_0_MAC": "aa:00:00:11:22:33", "NIC_0_UUID": nics[0].uuid, "NIC_0_NAME": "eth0",
        "NIC_0_IP": "192.0.2.10", "NIC_0_MODE": "bridged", "NIC_0_BRIDGE": "br0",
        "NIC_0_LINK": "br0", "NIC_0_FRONTEND_TYPE": "e1000",
        "NIC_1_MAC": "aa:00:00:44:55:66", "NIC_1_UUID": nics[1].uuid, "NIC_1_MODE": "routed",
        "NIC_1_LINK": "rt100", "NIC_1_FRONTEND_TYPE": "e1000",
        "NIC_1_NETWORK_NAME": "net1", "NIC_1_NETWORK_UUID": "net-uuid",
        "NIC_1_NETWORK_SUBNET": "192.0.2.0/24", "NIC_1_NETWORK_GATEWAY": "192.0.2.1",
        "NIC_1_NETWORK_TAGS": "a b",
        "INSTANCE_BE_maxmem": "256", "INSTANCE_BE_minmem": "128", "INSTANCE_BE_vcpus": "1",
        "INSTANCE_HV_migration_mode": "live", "INSTANCE_HV_disk_type": "paravirtual",
        "INSTANCE_HV_nic_type": "e1000", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
    }
    assert env == expected
    with pytest.raises(errors.ProgrammerError):
        osdef.os_environment(osd, data, ["/only/one"])


def test_environment_api10_subset(paths: Paths) -> None:
    install_os(paths, "corral-test10")
    osd = osdef.find_os(paths, "corral-test10")
    inst = make_instance("corral-test10", osparams={"colour": "red"})
    env = osdef.os_environment(osd, encode(inst), [])
    assert env["OS_API_VERSION"] == "10"
    assert "OS_VARIANT" not in env
    assert not any(k.startswith("OSP_") for k in env)
    assert env["DISK_COUNT"] == "0" and env["NIC_COUNT"] == "0"
    assert env["INSTANCE_SECONDARY_NODES"] == ""


# -- running scripts ------------------------------------------------------------------
def test_run_create_script(paths: Paths, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_TEST_LEAK", "must-not-reach-the-script")
    d = install_os(paths, "corral-test20")
    osd = osdef.find_os(paths, "corral-test20")
    disk = make_disk_file(tmp_path)
    inst = make_instance("corral-test20+alpha",
                         [Disk(dev_type=C.DT_FILE, logical_id=["loop", "/x/d0"], size=1)],
                         osparams={"colour": "blue"})
    env = osdef.os_environment(osd, encode(inst), [str(disk)])
    env["INSTANCE_REINSTALL"] = "1"
    log = osdef.run_os_script(osd, "create", env, paths, inst.name, timeout=60,
                              os_name=inst.os)
    assert log.parent == paths.os_log_dir
    assert log.name.startswith("add-corral-test20+alpha-inst1.example.com-")
    assert log.name.endswith(".log")
    assert "corral-test20 create for inst1.example.com" in log.read_text()
    dumped = read_env_dump(disk)
    for key, value in env.items():
        assert dumped[key] == value, key
    assert "CORRAL_TEST_LEAK" not in dumped
    assert dumped["PWD"] == str(d)
    assert os.path.getsize(disk) == MIB       # written in place, not truncated


def test_run_script_failure_reports_log_tail(paths: Paths) -> None:
    install_os(paths, "corral-failing")
    osd = osdef.find_os(paths, "corral-failing")
    inst = make_instance("corral-failing")
    env = osdef.os_environment(osd, encode(inst), [])
    with pytest.raises(errors.OSError_) as exc:
        osdef.run_os_script(osd, "create", env, paths, inst.name, timeout=60)
    err = exc.value
    assert err.ecode == errors.ECODE_ENVIRON
    msg = str(err)
    assert "OS create script failed" in msg and "exited with code 3" in msg
    lines = msg.splitlines()
    assert lines[-1] == "failing-os: giving up"
    assert lines[-20] == "failing-os line 12"
    assert "failing-os line 11" not in lines
    logs = list(paths.os_log_dir.glob("add-corral-failing-inst1.example.com-*.log"))
    assert len(logs) == 1
    assert str(logs[0]) in msg
    assert "failing-os line 1\n" in logs[0].read_text()


def test_run_script_timeout(paths: Paths) -> None:
    d = install_os(paths, "corral-test10", "sleeper")
    (d / "create").write_text("#!/bin/sh\necho started\nexec sleep 30\n")
    osd = osdef.find_os(paths, "sleeper")
    start = time.monotonic()
    with pytest.raises(errors.OSError_, match="timed out") as exc:
        osdef.run_os_script(osd, "create", {}, paths, "inst", timeout=2)
    assert time.monotonic() - start < 20
    assert "started" in str(exc.value)


def test_import_export_with_fds(paths: Paths, tmp_path: Path) -> None:
    install_os(paths, "corral-test20")
    osd = osdef.find_os(paths, "corral-test20")
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(256 * 1024))
    dump = tmp_path / "dump"
    with open(dump, "wb") as out:
        osdef.run_os_script(osd, "export", {"EXPORT_DEVICE": str(src)}, paths, "inst",
                            timeout=60, component="disk0", stdout_fd=out.fileno())
    assert dump.read_bytes() == src.read_bytes()
    target = make_disk_file(tmp_path, "target.img")
    with open(dump, "rb") as inp:
        log = osdef.run_os_script(osd, "import", {"IMPORT_DEVICE": str(target)}, paths,
                                  "inst", timeout=60, component="disk0", stdin_fd=inp.fileno())
    assert log.name.startswith("import-corral-test20-inst-disk0-")
    assert target.read_bytes()[:256 * 1024] == src.read_bytes()
    assert os.path.getsize(target) == MIB


# -- parameter verification ----------------------------------------------------------
def test_verify_parameters(paths: Paths) -> None:
    install_os(paths, "corral-test20")
    install_os(paths, "corral-test15")
    install_os(paths, "corral-failing")
    o20 = osdef.find_os(paths, "corral-test20")
    osdef.verify_parameters(o20, "corral-test20", {"colour": "green", "size-hint": "3"},
                            ["parameters"])
    with pytest.raises(errors.OSError_, match="invalid colour: purple") as exc:
        osdef.verify_parameters(o20, "corral-test20", {"colour": "purple"}, ["parameters"])
    assert exc.value.ecode == errors.ECODE_INVAL
    with pytest.raises(errors.OSError_, match="size-hint must be numeric"):
        osdef.verify_parameters(o20, "corral-test20", {"size-hint": "big"}, ["parameters"])
    with pytest.raises(errors.OSError_, match="not supported by the OS corral-test20: flavour"):
        osdef.verify_parameters(o20, "corral-test20", {"flavour": "x"}, ["parameters"])
    with pytest.raises(errors.OSError_, match="Unknown OS validation checks"):
        osdef.verify_parameters(o20, "corral-test20", {}, ["everything"])
    # below API 20 parameters are not checked at all
    o15 = osdef.find_os(paths, "corral-test15")
    osdef.verify_parameters(o15, "corral-test15", {"anything": "goes"}, ["parameters"])
    with pytest.raises(errors.OSError_, match="verify always fails"):
        osdef.verify_parameters(osdef.find_os(paths, "corral-failing"), "corral-failing", {},
                                ["parameters"])


# -- Debian's ganeti-os-noop, unchanged -------------------------------------------------
def test_noop_os_scripts(paths: Paths, tmp_path: Path, ganeti_os_noop: Path) -> None:
    osd = osdef.find_os(paths, "noop")
    assert (osd.api_versions, osd.api_version, osd.trusted) == ([5, 10], 10, True)
    disk = make_disk_file(tmp_path)
    disk.write_bytes(b"noop-data" + bytes(MIB - 9))
    inst = make_instance("noop", [Disk(dev_type=C.DT_FILE, logical_id=["loop", "/x"],
                                       size=1)])
    env = osdef.os_environment(osd, encode(inst), [str(disk)])
    assert "OS_VARIANT" not in env
    osdef.run_os_script(osd, "create", env, paths, inst.name, timeout=60)
    osdef.run_os_script(osd, "rename", dict(env, OLD_INSTANCE_NAME="old"), paths,
                        f"old-{inst.name}", timeout=60)
    dump = tmp_path / "dump"
    size_r, size_w = os.pipe()
    try:
        with open(dump, "wb") as out:
            osdef.run_os_script(osd, "export",
                                dict(env, EXPORT_DEVICE=str(disk), EXP_SIZE_FD=str(size_w)),
                                paths, inst.name, timeout=60, stdout_fd=out.fileno(),
                                pass_fds=(size_w,))
        os.close(size_w)
        size_w = -1
        with os.fdopen(size_r, "rb") as fh:
            size_r = -1
            assert fh.read() == f"{MIB}\n".encode()   # expected size announced on the fd
    finally:
        for fd in (size_r, size_w):
            if fd >= 0:
                os.close(fd)
    assert dump.read_bytes() == disk.read_bytes()
    target = make_disk_file(tmp_path, "target")
    with open(dump, "rb") as inp:
        osdef.run_os_script(osd, "import", dict(env, IMPORT_DEVICE=str(target)), paths,
                            inst.name, timeout=60, stdin_fd=inp.fileno())
    assert target.read_bytes() == disk.read_bytes()
    osdef.verify_parameters(osd, "noop", {}, ["parameters"])   # API 10: nothing to verify
