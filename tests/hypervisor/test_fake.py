"""The fake hypervisor: state files, memory accounting, migration steps."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from corral import constants as C
from corral import errors
from corral.hypervisor import get_hypervisor
from corral.hypervisor.fake import FakeHypervisor
from corral.objects import Instance, Node
from corral.paths import Paths

MEMINFO = """MemTotal:        8388608 kB
MemFree:         4194304 kB
Buffers:               0 kB
Cached:          1048576 kB
"""  # 8192 MiB total, 5120 MiB free


def make_instance(name: str = "inst1.example.com", minmem: int = 128, maxmem: int = 256,
                  vcpus: int = 2) -> Instance:
    return Instance(name=name, primary_node="node-uuid", hypervisor=C.HT_FAKE,
                    beparams={C.BE_MINMEM: minmem, C.BE_MAXMEM: maxmem, C.BE_VCPUS: vcpus})


@pytest.fixture
def hv(tmp_path: Path) -> FakeHypervisor:
    h = get_hypervisor(C.HT_FAKE, Paths(tmp_path))
    assert isinstance(h, FakeHypervisor)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    h.meminfo_path = str(meminfo)
    return h


def state_file(hv: FakeHypervisor, name: str) -> Path:
    return hv.paths.hypervisor_run_dir("fake") / name


def test_class_attributes() -> None:
    assert FakeHypervisor.NAME == "fake"
    assert FakeHypervisor.CAN_MIGRATE is True
    assert set(FakeHypervisor.PARAMETERS) == {"migration_mode"}
    FakeHypervisor.check_parameter_syntax({"migration_mode": "live"})
    with pytest.raises(errors.OpPrereqError, match="migration_mode"):
        FakeHypervisor.check_parameter_syntax({"migration_mode": "teleport"})
    with pytest.raises(errors.OpPrereqError, match="Unknown hypervisor parameters"):
        FakeHypervisor.check_parameter_syntax({"migration_mode": "live", "kvm_path": "/x"})


def test_lifecycle(hv: FakeHypervisor) -> None:
    inst = make_instance()
    assert hv.list_instances() == []
    assert hv.get_instance_info(inst.name) is None

    hv.start_instance(inst, [], False)
    assert state_file(hv, inst.name).read_text() == "0\n256\n2\n"
    assert hv.list_instances() == [inst.name]
    info = hv.get_instance_info(inst.name)
    assert info is not None
    assert (info.name, info.id, info.memory, info.vcpus, info.state) == \
        (inst.name, 0, 256, 2, C.HV_STATE_RUNNING)
    assert [i.name for i in hv.get_all_instances_info()] == [inst.name]

    hv.reboot_instance(inst)                  # no-op while running
    assert state_file(hv, inst.name).exists()

    hv.stop_instance(inst)
    assert not state_file(hv, inst.name).exists()
    assert hv.list_instances() == []
    # no temporary or lock files are reported as instances
    assert hv.get_all_instances_info() == []


def test_start_twice_fails(hv: FakeHypervisor) -> None:
    inst = make_instance()
    hv.start_instance(inst, [], False)
    with pytest.raises(errors.HypervisorError, match="already running"):
        hv.start_instance(inst, [], False)
    assert state_file(hv, inst.name).read_text() == "0\n256\n2\n"


def test_stop_and_reboot_not_running(hv: FakeHypervisor) -> None:
    inst = make_instance()
    with pytest.raises(errors.HypervisorError, match="not running"):
        hv.stop_instance(inst)
    with pytest.raises(errors.HypervisorError, match="not running"):
        hv.stop_instance(inst, force=True)
    with pytest.raises(errors.HypervisorError, match="not running"):
        hv.reboot_instance(inst)
    with pytest.raises(errors.HypervisorError, match="not running"):
        hv.balloon_instance_memory(inst, 128)
    # forced stop by name of something not running: cleanup, no error
    hv.stop_instance(None, force=True, name=inst.name)


def test_stop_by_name(hv: FakeHypervisor) -> None:
    inst = make_instance()
    hv.start_instance(inst, [], False)
    hv.stop_instance(None, force=True, name=inst.name)
    assert hv.list_instances() == []


def test_invalid_names_refused(hv: FakeHypervisor) -> None:
    for bad in ("../escape", ".hidden", "a/b"):
        with pytest.raises(errors.HypervisorError, match="Invalid instance name"):
            hv.start_instance(make_instance(name=bad), [], False)
    assert not (hv.paths.run_dir / "escape").exists()


def test_node_info_subtracts_running_memory(hv: FakeHypervisor) -> None:
    before = hv.get_node_info()
    assert before["memory_total"] == 8192
    assert before["memory_free"] == 5120
    hv.start_instance(make_instance("a", 512, 1024), [], False)
    hv.start_instance(make_instance("b", 512, 2048), [], False)
    after = hv.get_node_info()
    assert after["memory_free"] == 5120 - 1024 - 2048
    assert after["memory_total"] == 8192
    assert after["cpu_total"] >= 1


def test_start_refused_without_memory(hv: FakeHypervisor) -> None:
    hv.start_instance(make_instance("big", 4096, 4096), [], False)
    with pytest.raises(errors.HypervisorError) as exc:
        hv.start_instance(make_instance("second", 2048, 2048), [], False)
    msg = str(exc.value)
    assert "Not enough memory to start instance second" in msg
    assert "1024 MiB free" in msg and "2048 MiB needed" in msg
    assert not state_file(hv, "second").exists()


def test_start_with_less_than_maxmem(hv: FakeHypervisor) -> None:
    """Ganeti starts with min(maxmem, free) when that is still >= minmem."""
    hv.start_instance(make_instance("big", 4096, 4096), [], False)
    hv.start_instance(make_instance("elastic", 512, 4096), [], False)
    info = hv.get_instance_info("elastic")
    assert info is not None and info.memory == 1024
    assert hv.get_node_info()["memory_free"] == 0


def test_real_proc_memory_refusal(tmp_path: Path) -> None:
    """With the machine's real /proc data: an instance needing more than the
    free memory is refused; accounted instances reduce what is left."""
    hv = FakeHypervisor(Paths(tmp_path))
    free = hv.get_node_info()["memory_free"]
    assert free > 0
    with pytest.raises(errors.HypervisorError, match="Not enough memory"):
        hv.start_instance(make_instance("huge", free * 2, free * 2), [], False)
    share = int(free * 0.6)
    hv.start_instance(make_instance("first", share, share), [], False)
    with pytest.raises(errors.HypervisorError, match="Not enough memory"):
        hv.start_instance(make_instance("second", share, share), [], False)
    assert hv.list_instances() == ["first"]


def test_concurrent_starts_do_not_overcommit(hv: FakeHypervisor) -> None:
    results: list[str] = []

    def start(name: str) -> None:
        try:
            hv.start_instance(make_instance(name, 3000, 3000), [], False)
            results.append("ok")
        except errors.HypervisorError:
            results.append("refused")

    threads = [threading.Thread(target=start, args=(f"c{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok", "refused", "refused", "refused"]
    assert len(hv.list_instances()) == 1


def test_balloon(hv: FakeHypervisor) -> None:
    inst = make_instance()
    hv.start_instance(inst, [], False)
    hv.balloon_instance_memory(inst, 200)
    assert state_file(hv, inst.name).read_text() == "0\n200\n2\n"
    info = hv.get_instance_info(inst.name)
    assert info is not None and info.memory == 200


def test_console(hv: FakeHypervisor) -> None:
    inst = make_instance()
    node = Node(name="node1", primary_ip="127.0.1.1")
    cons = FakeHypervisor.get_instance_console(inst, node, None, {}, {})
    assert cons.kind == C.CONS_MESSAGE
    assert cons.message == "Console not available for fake hypervisor"
    assert cons.instance == inst.name


def test_verify(hv: FakeHypervisor, tmp_path: Path) -> None:
    assert hv.verify() is None
    assert hv.paths.hypervisor_run_dir("fake").is_dir()
    # a state "directory" that is a file cannot be used
    blocked = FakeHypervisor(Paths(tmp_path / "other"))
    blocked.paths.run_dir.mkdir(parents=True)
    blocked.paths.hypervisor_run_dir("fake").write_text("not a dir")
    msg = blocked.verify()
    assert msg is not None and "not writable" in msg


def test_migration(tmp_path: Path) -> None:
    src = FakeHypervisor(Paths(tmp_path / "src"))
    dst = FakeHypervisor(Paths(tmp_path / "dst"))
    inst = make_instance(minmem=64, maxmem=64)
    src.start_instance(inst, [], False)

    info = src.migration_info(inst)
    dst.accept_instance(inst, info, "127.0.1.2")
    src.migrate_instance("cluster", inst, "127.0.1.2", True)
    assert src.get_migration_status(inst).status == "completed"
    dst.finalize_migration_dst(inst, info, True)
    src.finalize_migration_source(inst, True, True)
    assert src.list_instances() == []
    assert dst.list_instances() == [inst.name]
    assert dst.get_instance_info(inst.name).memory == 64  # type: ignore[union-attr]

    # accepting an instance that already runs on the target fails
    with pytest.raises(errors.HypervisorError, match="already running"):
        dst.accept_instance(inst, info, "127.0.1.2")
    # migrating an instance that does not run fails
    with pytest.raises(errors.HypervisorError, match="not running"):
        src.migrate_instance("cluster", inst, "127.0.1.3", True)


def test_failed_migration(tmp_path: Path) -> None:
    src = FakeHypervisor(Paths(tmp_path / "src"))
    dst = FakeHypervisor(Paths(tmp_path / "dst"))
    inst = make_instance(minmem=64, maxmem=64)
    src.start_instance(inst, [], False)
    dst.accept_instance(inst, "", "127.0.1.2")
    dst.finalize_migration_dst(inst, "", False)
    src.finalize_migration_source(inst, False, True)
    assert src.list_instances() == [inst.name]
    assert dst.list_instances() == []
    # a stale target file is removed on failure
    dst.finalize_migration_dst(inst, "", True)
    dst.finalize_migration_dst(inst, "", False)
    assert dst.list_instances() == []


def test_versions_safe_for_migration() -> None:
    assert FakeHypervisor.versions_safe_for_migration([1], [2]) is True


def test_node_info_reads_no_state_file(hv: FakeHypervisor,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """get_node_info is O(1): it reads the running total, not the state files."""
    for i in range(5):
        hv.start_instance(make_instance(f"n{i}", 100, 100), [], False)
    hv.stop_instance(make_instance("n0"))

    def no_read(self: FakeHypervisor, name: str) -> None:
        raise AssertionError(f"state file of {name} read")

    monkeypatch.setattr(FakeHypervisor, "_read_state", no_read)
    assert hv.get_node_info()["memory_free"] == 5120 - 400


def test_memory_total_follows_balloon_and_migration(tmp_path: Path) -> None:
    src, dst = (FakeHypervisor(Paths(tmp_path / n)) for n in ("src", "dst"))
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    src.meminfo_path = dst.meminfo_path = str(meminfo)
    inst = make_instance("m", 256, 1024)
    src.start_instance(inst, [], False)
    src.balloon_instance_memory(inst, 600)
    assert src.get_node_info()["memory_free"] == 5120 - 600
    dst.finalize_migration_dst(inst, "", True)
    src.finalize_migration_source(inst, True, True)
    assert src.get_node_info()["memory_free"] == 5120
    assert dst.get_node_info()["memory_free"] == 5120 - 1024
    dst.finalize_migration_dst(inst, "", True)        # rewrite: replaces, not adds
    assert dst.get_node_info()["memory_free"] == 5120 - 1024


def test_memory_total_recounted_by_a_new_process(hv: FakeHypervisor,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A total left stale (crash between state file and total) heals when a new
    process (a restarted noded) first uses the directory; a lost total too."""
    from corral.hypervisor import fake

    hv.start_instance(make_instance("a", 512, 512), [], False)
    total = hv.paths.hypervisor_run_dir("fake") / ".memory-used"
    assert total.read_text() == "512\n"
    total.write_text("4000\n")                        # stale
    assert hv.get_node_info()["memory_free"] == 5120 - 4000
    monkeypatch.setattr(fake, "_recounted", set())    # as in a restarted noded
    assert hv.get_node_info()["memory_free"] == 5120 - 512
    assert total.read_text() == "512\n"
    total.unlink()                                    # lost
    assert hv.get_node_info()["memory_free"] == 5120 - 512
    hv.start_instance(make_instance("b", 256, 256), [], False)
    assert total.read_text() == "768\n"
    assert hv.list_instances() == ["a", "b"]          # the total is no instance
