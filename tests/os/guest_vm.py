"""Boot a disk image in QEMU directly (no Corral hypervisor), for OS tests.

TCG unless told otherwise (this project's machines have no hardware
virtualization); the kernel and initrd come from ``corral.guestkernel``; the
first serial port is a unix socket read by ``SerialReader``; QMP through the
``qemu.qmp`` library. A NIC, when asked for, uses QEMU's user-mode network
with ``restrict=on``: the guest's packets (DHCP included) are answered
inside QEMU and never reach the host or beyond.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

from qemu.qmp import QMPClient

from corral.guestkernel import GuestKernel
from corral.hypervisor.kvm.console import SerialReader


class GuestVM:
    """One QEMU process; use as a context manager (kills QEMU on exit)."""

    def __init__(self, kernel: GuestKernel, disk: Path, *, memory_mib: int = 128,
                 nic_mac: str | None = None, kernel_args: str = "ro quiet",
                 accel: str = "tcg", extra_args: tuple[str, ...] = ()) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cosvm", dir="/tmp"))
        self.serial_path = self.dir / "serial"
        self.qmp_path = self.dir / "qmp"
        self.log_path = self.dir / "qemu.log"
        argv = ["qemu-system-x86_64", "-accel", accel, "-m", str(memory_mib),
                "-nodefaults", "-display", "none", "-no-user-config",
                "-kernel", str(kernel.kernel_path), "-initrd", str(kernel.initrd_path),
                "-append", f"root=/dev/vda console=ttyS0 {kernel_args}",
                "-drive", f"file={disk},format=raw,if=virtio,cache=writeback",
                "-serial", f"unix:{self.serial_path},server=on,wait=off",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off", "-S"]
        if nic_mac:
            argv += ["-netdev", "user,id=n0,restrict=on",
                     "-device", f"virtio-net-pci,netdev=n0,mac={nic_mac}"]
        argv += list(extra_args)
        with open(self.log_path, "wb") as log:      # the child keeps its own copy
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.serial: SerialReader | None = None
        try:
            self._wait_socket(self.qmp_path, 10)
            self.serial = SerialReader(self.serial_path)
            self.qmp("cont")
        except BaseException:
            self.close()
            raise
        self.started = time.monotonic()

    def _wait_socket(self, path: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"qemu exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not appear within {timeout}s")
            time.sleep(0.02)

    def qmp(self, command: str, args: dict[str, Any] | None = None,
            timeout: float = 10) -> Any:
        """Run one QMP command (connect, execute, disconnect)."""
        async def run() -> Any:
            client = QMPClient("corral-os-test")
            await asyncio.wait_for(client.connect(str(self.qmp_path)), timeout)
            try:
                return await asyncio.wait_for(client.execute(command, args), timeout)
            finally:
                await client.disconnect()
        return asyncio.run(run())

    @property
    def console(self) -> SerialReader:
        assert self.serial is not None
        return self.serial

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> str:
        """Wait for ``pattern`` on the console; return the matched text."""
        return self.console.wait_for(pattern, timeout, start).group(0)

    def wait_exit(self, timeout: float) -> int | None:
        """Exit code of QEMU once it exits by itself, None after ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.serial is not None:
            self.serial.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
