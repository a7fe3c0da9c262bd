"""Boot time of the busybox test guest: through KVMHypervisor vs bare QEMU.

Prints, for each path, the median time from "start" to the guest's boot
marker on the serial console, and their ratio (the overhead of Corral's
start: runtime files, QMP handshake, paused start + cont).

    .venv/bin/python bench/kvm_boot.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests/hypervisor/kvm"))

from kvm_guest_image import BOOT_MARKER, build_root_disk

from corral.guestkernel import GuestKernel, prepare_guest_kernel
from corral.hypervisor.base import BlockDevice
from corral.hypervisor.kvm import KVMHypervisor
from corral.hypervisor.kvm.console import SerialReader
from corral.objects import Disk, Instance
from corral.paths import Paths

GUEST_CACHE = Path(os.environ.get("CORRAL_TEST_GUEST_ROOT", "/var/tmp/corral-test-guest"))


def via_hypervisor(gk: GuestKernel, disk: Path, root: Path, run: int) -> float:
    hv = KVMHypervisor(Paths.from_env(root))
    inst = Instance(name=f"bench{run}", primary_node="n", hypervisor="kvm",
                    hvparams={"kernel_path": str(gk.kernel_path),
                              "initrd_path": str(gk.initrd_path), "kernel_args": "ro quiet"},
                    beparams={"maxmem": 128, "vcpus": 1})
    start = time.monotonic()
    hv.start_instance(inst, [BlockDevice(Disk(size=32), str(disk))], startup_paused=True)
    with SerialReader(hv.dirs.serial_socket(inst.name)) as serial:
        hv._monitor(inst.name).cont()
        serial.wait_for(BOOT_MARKER, 120)
        elapsed = time.monotonic() - start
    hv.stop_instance(inst, force=True)
    return elapsed


def bare_qemu(gk: GuestKernel, disk: Path) -> float:
    argv = ["qemu-system-x86_64", "-nodefaults", "-display", "none", "-machine", "pc",
            "-accel", "tcg", "-m", "128", "-smp", "1", "-kernel", str(gk.kernel_path),
            "-initrd", str(gk.initrd_path),
            "-append", "root=/dev/vda ro quiet console=ttyS0,38400",
            "-drive", f"file={disk},format=raw,if=virtio", "-serial", "stdio", "-nic", "none"]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    buf = b""
    try:
        while BOOT_MARKER.encode() not in buf:
            ready, _, _ = select.select([proc.stdout], [], [], 120)
            if not ready:
                raise TimeoutError("bare qemu: no boot marker")
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError("bare qemu exited")
            buf += chunk
        return time.monotonic() - start
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    gk = prepare_guest_kernel(Paths.from_env(GUEST_CACHE))
    tmp = Path(tempfile.mkdtemp(prefix="ckb", dir="/tmp"))
    try:
        disk = build_root_disk(tmp / "root.img")
        corral_times, bare_times = [], []
        for run in range(args.runs):
            bare_times.append(bare_qemu(gk, disk))
            corral_times.append(via_hypervisor(gk, disk, tmp / "root", run))
        corral, bare = statistics.median(corral_times), statistics.median(bare_times)
        accel = KVMHypervisor.acceleration()
        print(f"guest kernel {gk.version}, acceleration {accel}, {args.runs} runs each")
        print(f"bare qemu       create-to-marker median {bare:6.3f} s  "
              f"(runs: {', '.join(f'{t:.3f}' for t in bare_times)})")
        print(f"KVMHypervisor   create-to-marker median {corral:6.3f} s  "
              f"(runs: {', '.join(f'{t:.3f}' for t in corral_times)})")
        print(f"ratio KVMHypervisor / bare qemu: {corral / bare:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
