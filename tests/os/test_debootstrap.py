"""Debian's unmodified ganeti-instance-debootstrap OS under Corral: configure
it, run its ``create`` through corral.osdef onto a raw file, boot the result
on the Corral guest kernel to a serial ``login:`` and power it off with the
ACPI button.

Leaves the machine configured (the packages, their configuration file) and
keeps debootstrap's cache (``/var/cache/ganeti-instance-debootstrap``) so
that later runs skip debootstrap: first run ~1.5 min of debootstrap from the
mirror, later runs ~2 s; the TCG boot to ``login:`` takes ~20 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from guest_vm import GuestVM

from corral import constants as C
from corral import debootstrap_os, osdef
from corral.guestkernel import GuestKernel
from corral.objects import Disk, Instance
from corral.paths import Paths
from corral.process import run_command

pytestmark = [pytest.mark.kvm, pytest.mark.slow]

DISK_MIB = 2048
CREATE_TIMEOUT = 1800
BOOT_TIMEOUT = 600
NAME = "deb1.example.com"


@pytest.fixture
def raw_disk(tmp_path: Path) -> Iterator[Path]:
    """A sparse raw disk file; loop devices left on it are detached afterwards."""
    disk = tmp_path / "disk0.img"
    with open(disk, "wb") as fh:
        fh.truncate(DISK_MIB * 1024 * 1024)
    yield disk
    res = run_command(["losetup", "-j", str(disk)], timeout=30)
    for line in res.stdout.splitlines():
        run_command(["losetup", "-d", line.split(":", 1)[0]], timeout=30)
    disk.unlink(missing_ok=True)


def test_debootstrap_instance_boots_to_login(guest_kernel: GuestKernel, paths: Paths,
                                             raw_disk: Path) -> None:
    debootstrap_os.configure_debootstrap()
    osd = osdef.find_os(paths, "debootstrap")
    assert osd.path == str(debootstrap_os.OS_DIR)
    assert osd.api_version == C.OS_API_V20 and osd.variants == ["default"]
    # The OS scripts are Debian's, unmodified (only the conffile is ours).
    verify = run_command(["dpkg", "--verify", "ganeti-instance-debootstrap"], timeout=60)
    assert str(debootstrap_os.OS_DIR) not in verify.stdout, verify.stdout
    cached = any(debootstrap_os.CACHE_DIR.glob("cache-*.tar"))

    inst = Instance(name=NAME, primary_node="node-uuid-1", os="debootstrap+default",
                    hypervisor=C.HT_KVM,
                    disks=[Disk(dev_type=C.DT_FILE, logical_id=["loop", "/x/d0"],
                                size=DISK_MIB)],
                    beparams={"maxmem": 256, "minmem": 256, "vcpus": 1},
                    hvparams={"serial_console": True})
    data = inst.to_dict()
    data["primary_node_name"] = "node1.example.com"
    data["secondary_node_names"] = []
    env = osdef.os_environment(osd, data, [str(raw_disk)])
    started = time.monotonic()
    osdef.run_os_script(osd, osdef.SCRIPT_CREATE, env, paths, inst.name,
                        timeout=CREATE_TIMEOUT, os_name=inst.os)
    create_s = time.monotonic() - started
    assert run_command(["losetup", "-j", str(raw_disk)], timeout=30).stdout == ""
    cat = run_command(["debugfs", "-R", "cat /etc/hostname", str(raw_disk)], timeout=30)
    assert cat.stdout == f"{NAME}\n"
    assert any(debootstrap_os.CACHE_DIR.glob("cache-*.tar"))   # next runs are quick

    with GuestVM(guest_kernel, raw_disk, memory_mib=256, kernel_args="ro") as vm:
        vm.wait_for(r"deb1 login:", BOOT_TIMEOUT)
        boot_s = time.monotonic() - vm.started
        start = len(vm.console.text())
        vm.console.send("root\n")                   # passwd -d root: no password
        vm.wait_for(r"root@deb1:~# ", 60, start)
        start = len(vm.console.text())
        vm.console.send("hostname -f; echo DEBIAN-$(cat /etc/debian_version | cut -d. -f1)\n")
        vm.wait_for(r"DEBIAN-12", 60, start)
        pressed = time.monotonic()
        vm.qmp("system_powerdown")                  # systemd-logind (dbus) powers off
        code = vm.wait_exit(120)
        assert code == 0, vm.console.text()[-3000:]
        off_s = time.monotonic() - pressed
    print(f"debootstrap create {create_s:.1f}s ({'cached' if cached else 'from the mirror'}), "
          f"boot to login {boot_s:.1f}s, power-off {off_s:.1f}s")
