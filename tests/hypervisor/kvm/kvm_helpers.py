"""Helpers of the KVM hypervisor tests (imported by conftest and the tests)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from corral.hypervisor.base import BlockDevice
from corral.hypervisor.kvm import KVMHypervisor
from corral.hypervisor.kvm.console import SerialReader
from corral.hypervisor.kvm.netdev import TAP_PREFIX, remove_tap
from corral.objects import Disk, Instance


def kill_leftovers(hv: KVMHypervisor) -> None:
    """Finalizer: kill any qemu and remove any tap a test left behind."""
    for name in hv.dirs.known_instances():
        pid = hv.dirs.alive_pid(name)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            hv._wait_gone(pid, 10)
        for tap in hv.dirs.load_taps(name):
            remove_tap(tap)
    for nic_dir in hv.dirs.nic_dir.glob("*") if hv.dirs.nic_dir.is_dir() else []:
        for f in nic_dir.iterdir():
            tap = f.read_text().strip()
            if tap.startswith(TAP_PREFIX):
                remove_tap(tap)


def block_devices(*paths: Path, mode: str = "rw") -> list[BlockDevice]:
    return [BlockDevice(Disk(size=32, mode=mode), str(p)) for p in paths]


class Booted:
    """A started instance with a serial reader attached from the first byte."""

    def __init__(self, hv: KVMHypervisor, instance: Instance, serial: SerialReader) -> None:
        self.hv = hv
        self.instance = instance
        self.serial = serial

    @property
    def pid(self) -> int:
        pid = self.hv.dirs.alive_pid(self.instance.name)
        assert pid is not None
        return pid

    def run(self, command: str, timeout: float = 30) -> str:
        """Run a shell command in the guest; return its output."""
        start = len(self.serial.text())
        self.serial.send(command + "\n")
        m = self.serial.wait_for(r"CMD-DONE", timeout, start)
        out = self.serial.text()[start:m.start()]
        lines = out.replace("\r", "").split("\n")
        return "\n".join(line for line in lines if line.strip() != command.strip()).strip()


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
