"""Live migration between two node state roots on this machine, over 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.hypervisor.kvm import KVMHypervisor
from corral.hypervisor.kvm.console import SerialReader
from corral.objects import Instance, MigrationStatus
from corral.paths import Paths

from .kvm_guest_image import LOGIN_PROMPT
from .kvm_helpers import Booted, block_devices, kill_leftovers

pytestmark = pytest.mark.kvm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def target_hv() -> Iterator[KVMHypervisor]:
    root = Path(tempfile.mkdtemp(prefix="ckt", dir="/tmp"))
    hyp = KVMHypervisor(Paths.from_env(root))
    yield hyp
    kill_leftovers(hyp)
    shutil.rmtree(root, ignore_errors=True)


def wait_migration(hv: KVMHypervisor, inst: Instance, timeout: float = 60) -> MigrationStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = hv.get_migration_status(inst)
        if status.status != "active":
            return status
        time.sleep(0.2)
    pytest.fail("migration did not finish")


def test_live_migration_moves_running_guest(hv: KVMHypervisor, target_hv: KVMHypervisor,
                                            make_instance: Callable, disk_copy: Path,
                                            boot: Callable) -> None:
    inst = make_instance(hvparams={"migration_port": free_port(), "migration_bandwidth": 1000,
                                   "migration_downtime": 100})
    b: Booted = boot(hv, inst, block_devices(disk_copy))
    b.run("echo before-migration > /tmp/state")
    info = hv.migration_info(inst)
    target_hv.accept_instance(inst, info, "127.0.0.1")
    assert target_hv.list_instances() == [inst.name]
    hv.migrate_instance("cluster", inst, "127.0.0.1", live=True)
    status = wait_migration(hv, inst)
    assert status.status == "completed"
    assert status.total_ram > 0 and status.transferred_ram > 0
    assert status.downtime_ms is not None and status.downtime_ms >= 0
    target_hv.finalize_migration_dst(inst, info, success=True)
    hv.finalize_migration_source(inst, success=True, live=True)
    assert hv.list_instances() == [] and target_hv.list_instances() == [inst.name]
    assert target_hv.instance_status(inst.name) == "running"
    # The guest really runs on the target (QMP 'completed' is not enough).
    with SerialReader(target_hv.dirs.serial_socket(inst.name)) as serial:
        serial.send("cat /tmp/state\n")
        serial.wait_for("before-migration\r?\n.*CMD-DONE", 30)
    assert target_hv.migration_info(inst) == info
    target_hv.stop_instance(inst, timeout=60)
    assert target_hv.list_instances() == []


def test_failed_migration_keeps_guest_on_source(hv: KVMHypervisor, target_hv: KVMHypervisor,
                                                make_instance: Callable, disk_copy: Path,
                                                boot: Callable) -> None:
    # Nobody listens on the port: the migration fails at once.
    inst = make_instance(hvparams={"migration_port": free_port()})
    b: Booted = boot(hv, inst, block_devices(disk_copy))
    hv.migrate_instance("cluster", inst, "127.0.0.1", live=False)
    assert wait_migration(hv, inst).status == "failed"
    hv.finalize_migration_source(inst, success=False, live=False)
    target_hv.finalize_migration_dst(inst, "", success=False)
    assert hv.list_instances() == [inst.name]
    assert hv.instance_status(inst.name) == "running"
    assert b.run("echo still-here") == "still-here"
    assert LOGIN_PROMPT in b.serial.text()


def test_accept_twice_fails_and_failed_dst_is_cleaned(
        hv: KVMHypervisor, target_hv: KVMHypervisor, make_instance: Callable,
        disk_copy: Path) -> None:
    inst = make_instance(hvparams={"migration_port": free_port()})
    hv.start_instance(inst, block_devices(disk_copy), startup_paused=True)
    info = hv.migration_info(inst)
    target_hv.accept_instance(inst, info, "127.0.0.1")
    with pytest.raises(Exception, match="already running"):
        target_hv.accept_instance(inst, info, "127.0.0.1")
    assert target_hv.instance_status(inst.name) == "inmigrate"
    target_hv.finalize_migration_dst(inst, info, success=False)
    assert target_hv.list_instances() == []
    assert not target_hv.dirs.runtime_file(inst.name).exists()
    assert KVMHypervisor.versions_safe_for_migration([7, 2], [8, 0])
