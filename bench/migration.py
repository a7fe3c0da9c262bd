"""Live migration through Corral vs a bare QEMU-to-QEMU migration on this machine.

For each guest size (default 128 MiB and 1 GiB of RAM, half of it filled
with non-zero data in a tmpfs so the pages really travel), prints the median
total time and downtime of

* Corral: ``OP_INSTANCE_MIGRATE`` on a 2-node KVM dev cluster (loopback),
  timed from job submission to job success (locks, checks, hooks, target
  QEMU start, memory transfer polled every 0.5 s, finalization, config);
* bare: the same guest disk and kernel in hand-started QEMUs, timed from
  starting the target QEMU until QMP reports ``completed`` (polled every
  50 ms),

and the ratio Corral/bare. Both use the same bandwidth and downtime limits.

    .venv/bin/python bench/migration.py [--sizes 128,1024] [--runs 3]
        [--bandwidth 1000] [--fill 0.5]
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


from corral import constants as C
from corral import devcluster
from corral.guestkernel import GuestKernel, guest_kernel_paths
from corral.hypervisor.kvm.console import SerialReader
from corral.hypervisor.kvm.monitor import MonitorError, QmpMonitor

BOOT_TIMEOUT = 300
DOWNTIME_MS = 30


# -- the guest's console ----------------------------------------------------------------
def login_and_fill(serial: SerialReader, fill_mib: int) -> None:
    """Log in as root on the busybox guest and fill ``fill_mib`` MiB of tmpfs."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        start = len(serial.text())
        try:
            serial.wait_for("login:", 5, max(start - 200, 0))
            break
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
            serial.send("\n")
    start = len(serial.text())
    serial.send("root\n")
    serial.wait_for(r"# ", 60, start)           # the shell, ready for input
    start = len(serial.text())
    serial.send("mount -o remount,size=95% /tmp; yes corral-fill | head -c "
                f"{fill_mib * 1024 * 1024} > /tmp/fill; echo FILL''ED=$(du -m /tmp/fill)\n")
    serial.wait_for(r"FILLED=\d+", 600, start)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# -- through Corral ----------------------------------------------------------------------
class CorralBench:
    def __init__(self, directory: Path, bandwidth: int) -> None:
        self.cluster = devcluster.up(2, directory, hypervisors=(C.HT_KVM,),
                                     base=devcluster.free_base(2))
        self.client = self.cluster.client(timeout=600)
        self.run_op({"OP_ID": "OP_CLUSTER_SET_PARAMS", "hvparams": {C.HT_KVM: {
            "migration_bandwidth": bandwidth, "migration_downtime": DOWNTIME_MS}}})

    def run_op(self, op: dict[str, Any], log: list[str] | None = None) -> Any:
        job = self.client.submit_job([op])
        return self.client.wait_job(job, timeout=1800, feedback_fn=(
            (lambda e: log.append(str(e[2]))) if log is not None else None))

    def serial(self, node: str, name: str) -> SerialReader:
        sock = self.cluster.node(node).paths.hypervisor_run_dir(C.HT_KVM) / "ctrl" / \
            f"{name}.serial"
        return SerialReader(sock, connect_timeout=60)

    def measure(self, size: int, runs: int, fill: int) -> tuple[list[float], list[float],
                                                                 Path]:
        name = f"bm{size}"
        self.run_op({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
                     "disk_template": "sharedfile", "os_type": "busybox+default",
                     "pnode": "node1", "disks": [{"size": 64}], "nics": [],
                     "name_check": False, "ip_check": False,
                     "beparams": {"maxmem": size, "minmem": size}})
        with self.serial("node1", name) as serial:
            login_and_fill(serial, fill)
        totals, downtimes = [], []
        nodes = ["node1", "node2"]
        for i in range(runs):
            log: list[str] = []
            start = time.monotonic()
            self.run_op({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": name,
                         "target_node": nodes[(i + 1) % 2], "mode": "live"}, log)
            totals.append(time.monotonic() - start)
            done = [line for line in log if line.startswith("* memory transfer complete")]
            m = re.search(r"downtime (\d+) ms", done[0]) if done else None
            downtimes.append(float(m.group(1)) if m else float("nan"))
        self.run_op({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": name, "timeout": 30})
        shared = Path(self.cluster.directory) / devcluster.SHARED_DIR / name
        disk = next(shared.iterdir())
        copy = Path(self.cluster.directory) / f"{name}-bare.img"
        subprocess.run(["cp", "--sparse=always", str(disk), str(copy)], check=True)
        self.run_op({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                     "shutdown_timeout": 10})
        return totals, downtimes, copy

    def close(self) -> None:
        self.client.close()
        devcluster.down(self.cluster.directory, purge=True)


# -- bare QEMU ---------------------------------------------------------------------------
class BareQemu:
    """One QEMU process with QMP and serial console sockets in ``directory``."""

    def __init__(self, directory: Path, tag: str, disk: Path, size: int, kernel: GuestKernel,
                 incoming: str | None = None) -> None:
        self.qmp_path = directory / f"{tag}.qmp"
        self.serial_path = directory / f"{tag}.serial"
        argv = ["qemu-system-x86_64", "-name", f"bare-{tag}", "-nodefaults",
                "-display", "none", "-machine", "pc", "-accel", "tcg", "-m", str(size),
                "-smp", "1", "-kernel", str(kernel.kernel_path),
                "-initrd", str(kernel.initrd_path),
                "-append", "root=/dev/vda ro console=ttyS0,38400",
                "-drive", f"file={disk},format=raw,if=virtio,aio=threads",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                "-serial", f"unix:{self.serial_path},server=on,wait=off", "-nic", "none"]
        if incoming:
            argv += ["-incoming", incoming]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.qmp = QmpMonitor(self.qmp_path)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.qmp.query_status()
                break
            except MonitorError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.01)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def bare_measure(directory: Path, disk: Path, size: int, runs: int, fill: int,
                 bandwidth: int, kernel: GuestKernel) -> tuple[list[float], list[float]]:
    src = BareQemu(directory, "m0", disk, size, kernel)
    with SerialReader(src.serial_path, connect_timeout=30) as serial:
        login_and_fill(serial, fill)
    totals, downtimes = [], []
    try:
        for i in range(runs):
            port = _free_port()
            start = time.monotonic()
            dst = BareQemu(directory, f"m{i + 1}", disk, size, kernel,
                           incoming=f"tcp:127.0.0.1:{port}")
            src.qmp.migrate_set_parameters(max_bandwidth=bandwidth * 1024 * 1024,
                                           downtime_limit=DOWNTIME_MS)
            src.qmp.migrate(f"tcp:127.0.0.1:{port}")
            while True:
                info = src.qmp.query_migrate()
                if info.get("status") in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.05)
            if info["status"] != "completed":
                raise RuntimeError(f"bare migration failed: {info}")
            totals.append(time.monotonic() - start)
            downtimes.append(float(info.get("downtime", float("nan"))))
            src.kill()
            src = dst
    finally:
        src.kill()
    return totals, downtimes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="128,1024", help="guest RAM sizes in MiB")
    parser.add_argument("--runs", type=int, default=3, help="migrations per size and path")
    parser.add_argument("--bandwidth", type=int, default=1000,
                        help="migration bandwidth limit, MiB/s (both paths)")
    parser.add_argument("--fill", type=float, default=0.5,
                        help="fraction of guest RAM filled with data before migrating")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    directory = Path(tempfile.mkdtemp(prefix="corral-bm-", dir="/tmp"))
    bench = CorralBench(directory, args.bandwidth)
    rows = []
    try:
        for size in sizes:
            fill = int(size * args.fill)
            c_tot, c_down, disk = bench.measure(size, args.runs, fill)
            b_tot, b_down = bare_measure(directory, disk, size, args.runs, fill,
                                         args.bandwidth,
                                         guest_kernel_paths(bench.cluster.master.paths))
            rows.append((size, fill, statistics.median(c_tot), statistics.median(b_tot),
                         statistics.median(c_down), statistics.median(b_down)))
    finally:
        bench.close()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"live migration over loopback, TCG guests, bandwidth limit {args.bandwidth} MiB/s,"
          f" downtime limit {DOWNTIME_MS} ms, median of {args.runs} runs")
    print(f"{'RAM':>6} {'filled':>7} | {'Corral total':>12} {'bare total':>10} {'ratio':>6} | "
          f"{'Corral downtime':>15} {'bare downtime':>13} {'ratio':>6}")
    for size, fill, ct, bt, cd, bd in rows:
        print(f"{size:>4}Mi {fill:>5}Mi | {ct:>11.2f}s {bt:>9.2f}s {ct / bt:>6.2f} | "
              f"{cd:>13.0f}ms {bd:>11.0f}ms {cd / bd if bd else float('nan'):>6.2f}")


if __name__ == "__main__":
    main()
