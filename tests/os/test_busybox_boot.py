"""The busybox OS's images boot: created (and renamed) through corral.osdef,
booted with QEMU directly (TCG) on the Corral guest kernel; readiness line,
login prompt, logins, network set-up, graceful power-off by the ACPI power
button (QMP ``system_powerdown``), and the tick variant's counter."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from guest_vm import GuestVM

from corral import bundled_os, osdef
from corral import constants as C
from corral.guestkernel import GuestKernel
from corral.objects import NIC, Disk, Instance
from corral.paths import Paths
from corral.process import run_command

pytestmark = pytest.mark.kvm

MIB = 1024 * 1024
BOOT_TIMEOUT = 90
POWEROFF_TIMEOUT = 20
MAC = "aa:00:00:5e:00:42"


def make_instance(name: str, os_name: str = "busybox", nics: list[NIC] | None = None,
                  **kw: Any) -> Instance:
    return Instance(name=name, primary_node="node-uuid-1", os=os_name, hypervisor=C.HT_KVM,
                    disks=[Disk(dev_type=C.DT_FILE, logical_id=["loop", "/x/d0"], size=64)],
                    nics=nics or [], beparams={"maxmem": 128, "minmem": 128, "vcpus": 1},
                    **kw)


def env_for(osd: osdef.OSDefinition, inst: Instance, disk: Path) -> dict[str, str]:
    data = inst.to_dict()
    data["primary_node_name"] = "node1.example.com"
    data["secondary_node_names"] = []
    return osdef.os_environment(osd, data, [str(disk)])


def create_image(paths: Paths, tmp_path: Path, inst: Instance) -> Path:
    bundled_os.install_bundled_os(paths)
    osd = osdef.find_os(paths, inst.os)
    disk = tmp_path / "disk0.img"
    with open(disk, "wb") as fh:
        fh.truncate(64 * MIB)
    osdef.run_os_script(osd, osdef.SCRIPT_CREATE, env_for(osd, inst, disk), paths,
                        inst.name, timeout=120, os_name=inst.os)
    return disk


def login(vm: GuestVM, password: str | None = None) -> None:
    """Log in as root on the serial console and check a shell answers."""
    start = len(vm.console.text())
    vm.console.send("root\n")
    if password is not None:
        vm.wait_for(r"Password:", 30, start)
        vm.console.send(password + "\n")
    vm.wait_for(r"~# ", 30, start)        # input typed before the shell runs is dropped
    start = len(vm.console.text())
    vm.console.send("echo SHELL-$((6 * 7))-OK\n")
    vm.wait_for(r"SHELL-42-OK", 30, start)


def power_off(vm: GuestVM) -> float:
    """Press the ACPI power button; return how long QEMU took to exit by itself."""
    pressed = time.monotonic()
    vm.qmp("system_powerdown")
    code = vm.wait_exit(POWEROFF_TIMEOUT)
    took = time.monotonic() - pressed
    assert code == 0, (f"qemu still running {POWEROFF_TIMEOUT}s after system_powerdown "
                       f"(exit code {code}); console:\n{vm.console.text()[-2000:]}")
    return took


def test_boot_login_network_and_graceful_poweroff(guest_kernel: GuestKernel, paths: Paths,
                                                  tmp_path: Path) -> None:
    name = "bb1.example.com"
    inst = make_instance(name, nics=[NIC(mac=MAC, ip="192.0.2.10")],
                         osparams={"ip_prefix": "28"})
    disk = create_image(paths, tmp_path, inst)
    with GuestVM(guest_kernel, disk, nic_mac=MAC) as vm:
        vm.wait_for(re.escape(f"corral-guest: {name} ready"), BOOT_TIMEOUT)
        ready_s = time.monotonic() - vm.started
        vm.wait_for(r"login:", 30)
        text = vm.console.text()
        assert "corral-guest: eth0 192.0.2.10/28" in text
        assert "power button is ignored" not in text and "acpid failed" not in text
        login(vm)                                   # root without a password
        start = len(vm.console.text())
        vm.console.send("cat /etc/hostname; hostname; ip -4 addr show eth0\n")
        vm.wait_for(r"inet 192\.0\.2\.10/28", 30, start)
        vm.wait_for(rf"\n{re.escape(name)}\s", 30, start)
        took = power_off(vm)
        text = vm.console.text()
        assert "corral-guest: power button pressed" in text
        assert f"corral-guest: {name} going down" in text
    # / was remounted read-only before the power-off: the file system is clean.
    res = run_command(["e2fsck", "-f", "-n", str(disk)], timeout=60)
    assert res.exit_code == 0, res.output
    print(f"busybox guest: ready after {ready_s:.1f}s, powered off in {took:.1f}s")


def test_password_dhcp_and_renamed_guest(guest_kernel: GuestKernel, paths: Paths,
                                         tmp_path: Path) -> None:
    inst = make_instance("old-name.example.com", nics=[NIC(mac=MAC)],
                         osparams={"dhcp": "yes"},
                         osparams_private={"root_password": "corral-pw"})
    disk = create_image(paths, tmp_path, inst)
    osd = osdef.find_os(paths, "busybox")
    renamed = inst.model_copy(update={"name": "new-name.example.com"})
    env = env_for(osd, renamed, disk)
    env["OLD_INSTANCE_NAME"] = inst.name
    osdef.run_os_script(osd, osdef.SCRIPT_RENAME, env, paths, inst.name, timeout=60)
    with GuestVM(guest_kernel, disk, nic_mac=MAC) as vm:
        vm.wait_for(r"corral-guest: new-name\.example\.com ready", BOOT_TIMEOUT)
        vm.wait_for(r"new-name\.example\.com login:", 30)
        # QEMU's user-mode network answers DHCP (inside QEMU only).
        vm.wait_for(r"corral-guest: eth0 10\.0\.2\.15/24 \(dhcp\)", 60)
        start = len(vm.console.text())
        vm.console.send("root\n")
        vm.wait_for(r"Password:", 30, start)
        vm.console.send("wrong-password\n")
        vm.wait_for(r"Login incorrect", 30, start)
        vm.wait_for(r"login:", 30, start)
        login(vm, "corral-pw")
        power_off(vm)


def test_tick_variant_counts_on_the_console(guest_kernel: GuestKernel, paths: Paths,
                                            tmp_path: Path) -> None:
    name = "ticker"
    disk = create_image(paths, tmp_path, make_instance(name, "busybox+tick"))
    with GuestVM(guest_kernel, disk) as vm:
        vm.wait_for(r"corral-guest: ticker ready", BOOT_TIMEOUT)
        first = time.monotonic()
        vm.wait_for(r"tick 30\r?\n", 30)
        elapsed = time.monotonic() - first
        vm.wait_for(r"login:", 30)
        # The counter shares the console with getty: a tick may follow "login: ".
        ticks = [int(n) for n in re.findall(r"tick (\d+)\r?\n", vm.console.text())]
        assert ticks == list(range(1, len(ticks) + 1)), ticks
        assert len(ticks) >= 30
        assert elapsed >= 2.0                       # ~100 ms apart, not a burst
        count = len(ticks)
        time.sleep(1.5)
        later = [int(n) for n in re.findall(r"tick (\d+)", vm.console.text())]
        assert later[-1] > count                    # still counting
        power_off(vm)
