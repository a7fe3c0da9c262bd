"""Node-side instance procedures with the fake hypervisor, real file disks and
real OS scripts (tests/data/os)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import errors
from corral.backend import blockdev as bd
from corral.backend import instance as bi
from corral.hypervisor.fake import FakeHypervisor
from corral.objects import NIC, Disk, Instance, Node
from corral.paths import Paths

DATA = Path(__file__).resolve().parent.parent / "data" / "os"
FS = "/srv/corral/file-storage"
MIB = 1024 * 1024


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "root")
    p.ensure_dirs()
    p.file_storage_paths.write_text(f"{FS}\n")
    return p


def install_os(paths: Paths, name: str) -> None:
    shutil.copytree(DATA / name, paths.os_dir / name)


def make_instance(name: str = "inst1.example.com", ndisks: int = 1, os_name: str = "",
                  minmem: int = 64, maxmem: int = 128) -> Instance:
    disks = [Disk(dev_type=C.DT_FILE, logical_id=[C.FD_LOOP, f"{FS}/{name}/d{i}"], size=1,
                  iv_name=f"disk/{i}") for i in range(ndisks)]
    return Instance(name=name, primary_node="node-uuid", os=os_name, hypervisor=C.HT_FAKE,
                    disk_template=C.DT_FILE if ndisks else C.DT_DISKLESS, disks=disks,
                    nics=[NIC(mac="aa:00:00:00:00:01",
                              nicparams={"mode": "bridged", "link": "br0", "vlan": ""})],
                    beparams={"minmem": minmem, "maxmem": maxmem, "vcpus": 1,
                              "auto_balance": True, "always_failover": False,
                              "spindle_use": 1},
                    hvparams={"migration_mode": "live"})


def encode(inst: Instance) -> dict[str, Any]:
    data = inst.to_dict()
    data["primary_node_name"] = "node1.example.com"
    data["secondary_node_names"] = []
    data["nics"][0]["netinfo"] = None      # extra keys must be tolerated
    return data


def activate_disks(paths: Paths, inst: Instance) -> list[str]:
    links = []
    for idx, disk in enumerate(inst.disks):
        bd.blockdev_create(paths, disk.to_dict(), disk.size, inst.name, True, "", False)
        links.append(bd.blockdev_assemble(paths, disk.to_dict(), encode(inst), True, idx)[0])
    return links


def fake_state(paths: Paths, name: str) -> Path:
    return paths.hypervisor_run_dir("fake") / name


def reason_trail(paths: Paths, name: str) -> list[list[Any]]:
    return json.loads((paths.instance_reason_dir / name).read_text())


def test_decode_instance() -> None:
    inst = make_instance()
    data = encode(inst)
    data["disks"][0]["future_field"] = 1
    decoded = bi.decode_instance(data)
    assert decoded.name == inst.name and decoded.disks[0].uuid == inst.disks[0].uuid
    with pytest.raises(errors.RPCFail, match="Invalid instance data"):
        bi.decode_instance({"name": "x"})
    with pytest.raises(errors.RPCFail, match="Invalid instance data"):
        bi.decode_instance("x")


def test_start_query_shutdown(paths: Paths) -> None:
    inst = make_instance(ndisks=2)
    links = activate_disks(paths, inst)
    reason = [["gnt:client:gnt-instance", "user request", 1]]
    bi.instance_start(paths, encode(inst), False, reason)

    assert fake_state(paths, inst.name).read_text() == "0\n128\n1\n"
    for idx, link in enumerate(links):
        assert os.readlink(link) == str(paths.real(f"{FS}/{inst.name}/d{idx}"))
    trail = reason_trail(paths, inst.name)
    assert trail[0] == reason[0]
    assert trail[1][:2] == ["gnt:daemon:noded:start", ""] and trail[1][2] > 0

    assert bi.instance_list(paths, [C.HT_FAKE], {C.HT_FAKE: {}}) == [inst.name]
    assert bi.instance_info(paths, inst.name, C.HT_FAKE, {}) == \
        {"memory": 128, "vcpus": 1, "state": C.HV_STATE_RUNNING, "time": 0.0}
    assert bi.instance_info(paths, "other", C.HT_FAKE, {}) is None
    assert bi.all_instances_info(paths, [C.HT_FAKE], None) == \
        {inst.name: {"memory": 128, "vcpus": 1, "state": 0, "time": 0.0}}

    bi.instance_start(paths, encode(inst), False, [])      # already running: no-op
    assert fake_state(paths, inst.name).read_text() == "0\n128\n1\n"

    bi.instance_shutdown(paths, encode(inst), 10, [])
    assert not fake_state(paths, inst.name).exists()
    assert not any(os.path.lexists(link) for link in links)
    assert reason_trail(paths, inst.name)[-1][0] == "gnt:daemon:noded:shutdown"
    assert bi.instance_list(paths, [C.HT_FAKE], {}) == []
    # disks are still there, only the links went
    assert all(bd.blockdev_find(paths, d.to_dict()) for d in inst.disks)
    bi.instance_shutdown(paths, encode(inst), 10, [])      # not running: no-op


def test_start_without_assembled_disks(paths: Paths) -> None:
    inst = make_instance()
    with pytest.raises(errors.RPCFail, match="Cannot access block device 0") as exc:
        bi.instance_start(paths, encode(inst), False, [])
    assert exc.value.ecode == errors.ECODE_STATE
    assert not fake_state(paths, inst.name).exists()


def test_start_hypervisor_error_removes_links(paths: Paths) -> None:
    inst = make_instance(minmem=10 ** 9, maxmem=10 ** 9)   # 1 PiB: never available
    links = activate_disks(paths, inst)
    with pytest.raises(errors.RPCFail, match="Hypervisor error: Not enough memory"):
        bi.instance_start(paths, encode(inst), False, [])
    assert not os.path.lexists(links[0])
    assert not fake_state(paths, inst.name).exists()


def test_diskless_start(paths: Paths) -> None:
    inst = make_instance(ndisks=0)
    bi.instance_start(paths, encode(inst), True, None)
    assert fake_state(paths, inst.name).exists()


def test_unknown_hypervisor(paths: Paths) -> None:
    with pytest.raises(errors.RPCFail, match="not supported"):
        bi.instance_list(paths, ["xen-pvm"], {})
    data = encode(make_instance(ndisks=0))
    data["hypervisor"] = "chroot"
    with pytest.raises(errors.RPCFail, match="not supported"):
        bi.instance_start(paths, data, False, [])


def test_reboot(paths: Paths) -> None:
    inst = make_instance()
    activate_disks(paths, inst)
    with pytest.raises(errors.RPCFail, match="not running") as exc:
        bi.instance_reboot(paths, encode(inst), C.INSTANCE_REBOOT_SOFT, 10, [])
    assert exc.value.ecode == errors.ECODE_STATE
    bi.instance_start(paths, encode(inst), False, [])
    bi.instance_reboot(paths, encode(inst), C.INSTANCE_REBOOT_SOFT, 10, [])
    assert reason_trail(paths, inst.name)[-1][0] == "gnt:daemon:noded:reboot"
    bi.instance_balloon_memory(paths, encode(inst), 100)
    assert bi.instance_info(paths, inst.name, C.HT_FAKE, {})["memory"] == 100  # type: ignore[index]
    # a hard reboot restarts: the memory is maxmem again
    bi.instance_reboot(paths, encode(inst), C.INSTANCE_REBOOT_HARD, 10, [])
    assert bi.instance_info(paths, inst.name, C.HT_FAKE, {})["memory"] == 128  # type: ignore[index]
    assert os.path.lexists(paths.instance_disks_dir / f"{inst.name}:0")
    with pytest.raises(errors.RPCFail, match="Invalid reboot_type"):
        bi.instance_reboot(paths, encode(inst), "sideways", 10, [])


def test_balloon_not_running_is_noop(paths: Paths) -> None:
    bi.instance_balloon_memory(paths, encode(make_instance(ndisks=0)), 64)
    assert not fake_state(paths, "inst1.example.com").exists()


class StubbornFake(FakeHypervisor):
    """A guest that ignores graceful shutdown requests (an ACPI-deaf OS)."""

    calls: list[tuple[bool, bool]] = []

    def stop_instance(self, instance: Instance | None, force: bool = False,
                      retry: bool = False, name: str | None = None,
                      timeout: int | None = None) -> None:
        StubbornFake.calls.append((force, retry))
        if force:
            super().stop_instance(instance, force, retry, name, timeout)


@pytest.mark.parametrize("timeout, graceful_calls", [(0, 1), (0.3, 1)])
def test_shutdown_forces_after_timeout(paths: Paths, monkeypatch: pytest.MonkeyPatch,
                                       timeout: float, graceful_calls: int) -> None:
    monkeypatch.setattr(bi, "get_hypervisor", lambda name, p: StubbornFake(p))
    monkeypatch.setattr(StubbornFake, "calls", [])
    inst = make_instance(ndisks=0)
    bi.instance_start(paths, encode(inst), False, [])
    bi.instance_shutdown(paths, encode(inst), timeout, [])
    assert not fake_state(paths, inst.name).exists()
    assert StubbornFake.calls == [(False, False)] * graceful_calls + [(True, False)]


def test_console_info(paths: Paths) -> None:
    inst = make_instance(ndisks=0)
    node = Node(name="node1.example.com", primary_ip="127.0.1.1").to_dict()
    cons = bi.instance_console_info(paths, encode(inst), node, None, {}, {})
    assert cons["kind"] == C.CONS_MESSAGE
    assert cons["instance"] == inst.name
    assert cons["message"] == "Console not available for fake hypervisor"


def test_os_add(paths: Paths) -> None:
    install_os(paths, "corral-test20")
    inst = make_instance(os_name="corral-test20+beta")
    inst.osparams = {"colour": "red"}
    activate_disks(paths, inst)
    bi.instance_os_add(paths, encode(inst), False, 0)
    disk0 = paths.real(f"{FS}/{inst.name}/d0")
    env = _env_dump(disk0)
    assert env["OS_VARIANT"] == "beta" and env["OSP_COLOUR"] == "red"
    assert env["DISK_0_PATH"] == str(disk0)
    assert env["INSTANCE_PRIMARY_NODE"] == "node1.example.com"
    assert env["NIC_0_BRIDGE"] == "br0"
    assert "INSTANCE_REINSTALL" not in env
    logs = list(paths.os_log_dir.glob(f"add-corral-test20+beta-{inst.name}-*.log"))
    assert len(logs) == 1
    bi.instance_os_add(paths, encode(inst), True, 1)
    env = _env_dump(disk0)
    assert env["INSTANCE_REINSTALL"] == "1" and env["DEBUG_LEVEL"] == "1"


def test_os_add_failures(paths: Paths) -> None:
    install_os(paths, "corral-failing")
    inst = make_instance(os_name="corral-failing")
    with pytest.raises(errors.RPCFail, match="Cannot access block device 0"):
        bi.instance_os_add(paths, encode(inst), False, 0)
    activate_disks(paths, inst)
    with pytest.raises(errors.RPCFail) as exc:
        bi.instance_os_add(paths, encode(inst), False, 0)
    assert "OS create script failed" in str(exc.value)
    assert str(exc.value).splitlines()[-1] == "failing-os: giving up"
    assert exc.value.ecode == errors.ECODE_ENVIRON
    missing = make_instance(os_name="no-such-os")
    with pytest.raises(errors.RPCFail, match="not found in search path"):
        bi.instance_os_add(paths, encode(missing), False, 0)


def test_os_add_untrusted_refused(paths: Paths) -> None:
    install_os(paths, "corral-test20")
    d = paths.os_dir / "corral-test20"
    (d / "create").rename(d / "create_untrusted")
    inst = make_instance(os_name="corral-test20", ndisks=0)
    with pytest.raises(errors.RPCFail, match="untrusted"):
        bi.instance_os_add(paths, encode(inst), False, 0)


def test_run_rename(paths: Paths) -> None:
    install_os(paths, "corral-test20")
    inst = make_instance(name="new.example.com", os_name="corral-test20")
    activate_disks(paths, inst)
    bi.instance_run_rename(paths, encode(inst), "old.example.com", 0)
    env = _env_dump(paths.real(f"{FS}/new.example.com/d0"))
    assert env["OLD_INSTANCE_NAME"] == "old.example.com"
    assert env["INSTANCE_NAME"] == "new.example.com"
    assert list(paths.os_log_dir.glob(
        "rename-corral-test20-old.example.com-new.example.com-*.log"))


def test_migration(tmp_path: Path) -> None:
    src = Paths(tmp_path / "src")
    dst = Paths(tmp_path / "dst")
    inst = make_instance(ndisks=0)
    data = encode(inst)
    bi.instance_start(src, data, False, [])
    info = bi.migration_info(src, data)
    bi.accept_instance(dst, data, info, "127.0.1.2")
    bi.instance_migrate(src, "cluster", data, "127.0.1.2", True)
    assert bi.instance_get_migration_status(src, data)["status"] == "completed"
    bi.instance_finalize_migration_dst(dst, data, info, True)
    bi.instance_finalize_migration_src(src, data, True, True)
    assert bi.instance_list(src, [C.HT_FAKE], {}) == []
    assert bi.instance_list(dst, [C.HT_FAKE], {}) == [inst.name]
    with pytest.raises(errors.RPCFail, match="already running"):
        bi.accept_instance(dst, data, info, "127.0.1.2")
    with pytest.raises(errors.RPCFail, match="not running"):
        bi.instance_migrate(src, "cluster", data, "127.0.1.2", True)


def _env_dump(path: Path) -> dict[str, str]:
    raw = path.read_bytes().split(b"\x00", 1)[0].decode()
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


@pytest.mark.parametrize("name", ["/var/x", "../../etc", "a/b", "..", "a\nb"])
def test_hostile_names_are_refused_before_any_file_is_made(paths: Paths, tmp_path: Path,
                                                           name: str) -> None:
    data = encode(make_instance("inst1", ndisks=0))
    data["name"] = name
    with pytest.raises(errors.OpPrereqError, match="instance name"):
        bi.decode_instance(data)
    with pytest.raises(errors.OpPrereqError, match="instance name"):
        bi.instance_shutdown(paths, data, 1, [])
    # The reason trail writer confines the name itself too.
    with pytest.raises(errors.OpPrereqError, match="instance name"):
        bi.store_reason_trail(paths, name, [])
    with pytest.raises(errors.HypervisorError, match="nstance name"):
        FakeHypervisor(paths).get_instance_info(name)
    assert list(paths.instance_reason_dir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
