"""Live migration with local disks (hypervisor/kvm/mirror.py): two state roots on
this machine, real QEMU, NBD over 127.0.0.1.

The guest keeps writing numbered blocks to its data disk while the disks are
mirrored and the memory migrates; afterwards every write the guest saw
complete must be on the target's disk, and data written before is intact.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral import errors
from corral.hypervisor.base import BlockDevice
from corral.hypervisor.kvm import KVMHypervisor, mirror
from corral.hypervisor.kvm.console import SerialReader
from corral.hypervisor.kvm.runtime import KvmRuntime
from corral.objects import Disk, Instance
from corral.paths import Paths
from corral.process import run_command

from .kvm_helpers import Booted, kill_leftovers, wait_until

pytestmark = pytest.mark.kvm

BLOCK = 4096
SLOTS = 256                 # blocks the writer cycles through
DATA_MIB = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def target_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ckm", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def target_hv(target_root: Path) -> Iterator[KVMHypervisor]:
    hyp = KVMHypervisor(Paths.from_env(target_root))
    yield hyp
    kill_leftovers(hyp)


def _raw(path: Path, size_mib: int) -> Path:
    res = run_command(["qemu-img", "create", "-f", "raw", str(path), f"{size_mib}M"],
                      timeout=30)
    assert not res.failed, res.output
    return path


def _same_size_copy_target(src: list[Path], target_root: Path) -> list[Path]:
    out = []
    for p in src:
        dest = target_root / ("t-" + p.name)
        _raw(dest, os.path.getsize(p) // (1024 * 1024))
        out.append(dest)
    return out


def _target_info(info: str, target_disks: list[Path]) -> str:
    """The source's runtime with the target's own disk paths (each node links
    its own files; on one machine both paths exist)."""
    runtime = KvmRuntime.parse(info)
    for entry, path in zip(runtime.disks, target_disks):
        entry[1] = str(path)
    return runtime.serialize()


def _wait_status(hv: KVMHypervisor, inst: Instance, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = hv.get_migration_status(inst)
        if status.status != "active":
            return status.status
        time.sleep(0.1)
    pytest.fail("migration did not finish")


def _start_writer(b: Booted) -> None:
    b.run("touch /tmp/go; echo -1 > /tmp/last")
    b.run("(j=0; while [ -e /tmp/go ]; do k=$((j % " + str(SLOTS) + ")); "
          "printf '%0" + str(BLOCK) + "d' $j | dd of=/dev/vdb bs=" + str(BLOCK) +
          " seek=$((k + 256)) count=1 conv=notrunc,fsync 2>/dev/null; "
          "echo $j > /tmp/last; j=$((j + 1)); done) >/dev/null 2>&1 &")


def _stop_writer(serial: SerialReader) -> int:
    start = len(serial.text())
    serial.send("rm -f /tmp/go; sleep 1; echo LAST=$(cat /tmp/last)\n")
    m = serial.wait_for(r"LAST=(-?\d+)\r?\nCMD-DONE", 60, start)
    return int(m.group(1))


def _check_blocks(disk: Path, last: int) -> None:
    """Every completed write (0..last) must be on ``disk`` (last one wins)."""
    with open(disk, "rb") as fh:
        for k in range(SLOTS):
            fh.seek((k + 256) * BLOCK)
            data = fh.read(BLOCK)
            candidates = [j for j in range(k, last + 1, SLOTS)]
            if not candidates:
                continue
            expected = f"{candidates[-1]:0{BLOCK}d}".encode()
            assert data == expected, f"block {k}: got {data[:20]!r}..., want write " \
                                     f"{candidates[-1]}"


def _prefix_md5(b: Booted) -> str:
    out = b.run("dd if=/dev/vdb bs=65536 count=16 2>/dev/null | md5sum")
    m = re.search(r"\b[0-9a-f]{32}\b", out)
    assert m, out
    return m.group(0)


@pytest.fixture
def mirrored_guest(hv: KVMHypervisor, make_instance: Callable, disk_copy: Path,
                   state_root: Path, boot: Callable) -> tuple[Instance, Booted, list[Path]]:
    data = _raw(state_root / "data.img", DATA_MIB * 4)
    inst = make_instance(hvparams={"migration_port": free_port(),
                                   "migration_bandwidth": 1000})
    devices = [BlockDevice(Disk(size=32), str(disk_copy)),
               BlockDevice(Disk(size=DATA_MIB * 4), str(data))]
    b: Booted = boot(hv, inst, devices)
    # 1 MiB of known data at the start of the data disk.
    b.run("dd if=/dev/urandom of=/dev/vdb bs=65536 count=16 conv=fsync 2>/dev/null")
    return inst, b, [disk_copy, data]


def test_live_migration_with_local_disks(hv: KVMHypervisor, target_hv: KVMHypervisor,
                                         target_root: Path, mirrored_guest) -> None:
    inst, b, disks = mirrored_guest
    before = _prefix_md5(b)
    tdisks = _same_size_copy_target(disks, target_root)
    info = hv.migration_info(inst)
    target_hv.accept_instance(inst, _target_info(info, tdisks), "127.0.0.1")
    _start_writer(b)

    export = mirror.start_export(target_hv.paths, inst.name, "127.0.0.1")
    assert export["exports"] == ["disk0", "disk1"] and export["host"] == "127.0.0.1"
    mirror.start_mirror(hv.paths, inst.name, "127.0.0.1", export["port"], export["exports"])
    assert wait_until(lambda: all(j["ready"] for j in mirror.mirror_status(hv.paths,
                                                                           inst.name)), 120)
    jobs = mirror.mirror_status(hv.paths, inst.name)
    assert [j["drive"] for j in jobs] == ["disk0", "disk1"]
    assert all(j["ready"] and j["len"] > 0 and j["status"] == "ready" for j in jobs)

    hv.migrate_instance("cluster", inst, "127.0.0.1", live=True)
    assert _wait_status(hv, inst) == "completed"
    mirror.finish_mirror(hv.paths, inst.name, success=True)
    mirror.stop_export(target_hv.paths, inst.name)
    target_hv.finalize_migration_dst(inst, info, success=True)
    hv.finalize_migration_source(inst, success=True, live=True)
    assert hv.list_instances() == [] and target_hv.list_instances() == [inst.name]

    serial = SerialReader(target_hv.dirs.serial_socket(inst.name))
    try:
        last = _stop_writer(serial)
        assert last >= 0
        tb = Booted(target_hv, inst, serial)
        assert _prefix_md5(tb) == before
        tb.run("sync")
    finally:
        serial.close()
    target_hv.stop_instance(inst, force=True)
    _check_blocks(tdisks[1], last)
    # Nothing of the mirror is left on the source side's QEMU (it is gone).
    assert hv.dirs.alive_pid(inst.name) is None


def test_target_killed_during_mirror_keeps_guest_on_source(
        hv: KVMHypervisor, target_hv: KVMHypervisor, target_root: Path,
        mirrored_guest) -> None:
    inst, b, disks = mirrored_guest
    before = _prefix_md5(b)
    tdisks = _same_size_copy_target(disks, target_root)
    info = hv.migration_info(inst)
    target_hv.accept_instance(inst, _target_info(info, tdisks), "127.0.0.1")
    export = mirror.start_export(target_hv.paths, inst.name, "127.0.0.1")
    mirror.start_mirror(hv.paths, inst.name, "127.0.0.1", export["port"], export["exports"])
    _start_writer(b)
    os.kill(target_hv.dirs.alive_pid(inst.name), signal.SIGKILL)
    assert wait_until(lambda: any(j["status"] == "concluded" or j["error"]
                                  for j in mirror.mirror_status(hv.paths, inst.name)), 60)
    mirror.finish_mirror(hv.paths, inst.name, success=False)
    target_hv.finalize_migration_dst(inst, info, success=False)
    hv.finalize_migration_source(inst, success=False, live=True)
    assert mirror.mirror_status(hv.paths, inst.name)[0]["status"] == "missing"
    mirror.finish_mirror(hv.paths, inst.name, success=False)      # idempotent
    assert target_hv.list_instances() == []
    assert hv.instance_status(inst.name) == "running"
    last = _stop_writer(b.serial)
    assert "still-here" in b.run("echo still-here").splitlines()
    assert _prefix_md5(b) == before
    b.run("sync")
    hv.stop_instance(inst, force=True)
    _check_blocks(disks[1], last)


def test_mismatched_exports_and_bad_disk_types(hv: KVMHypervisor, make_instance: Callable,
                                               disk_copy: Path, boot: Callable) -> None:
    inst = make_instance()
    boot(hv, inst, [BlockDevice(Disk(size=32), str(disk_copy))], wait=False)
    with pytest.raises(errors.HypervisorError, match="exports"):
        mirror.start_mirror(hv.paths, inst.name, "127.0.0.1", free_port(), ["disk7"])
    # A refused mirror leaves no job or client node behind.
    assert mirror.mirror_status(hv.paths, inst.name)[0]["status"] == "missing"
    with pytest.raises(errors.HypervisorError):
        mirror.start_mirror(hv.paths, inst.name, "127.0.0.1", free_port(), ["disk0"])
    assert mirror.mirror_status(hv.paths, inst.name)[0]["status"] == "missing"
    nodes = hv._monitor(inst.name).execute("query-named-block-nodes", {"flat": True})
    assert not [n for n in nodes if n["node-name"].startswith(mirror.PREFIX)]
    with pytest.raises(errors.HypervisorError, match="No runtime data"):
        mirror.drive_ids(hv.paths, "no-such-instance")
