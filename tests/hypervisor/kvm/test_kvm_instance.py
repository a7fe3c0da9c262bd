"""Instance lifecycle through KVMHypervisor with real QEMU (TCG here).

Each test boots the busybox guest (kvm_guest_image) with direct kernel boot
and root=/dev/vda, and checks what the guest prints on its serial console.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral import constants as C
from corral import errors
from corral.hypervisor.kvm import KVMHypervisor
from corral.hypervisor.kvm.monitor import QmpMonitor
from corral.objects import NIC, Node
from corral.paths import Paths
from corral.process import run_command

from .kvm_guest_image import BOOT_MARKER, LOGIN_PROMPT
from .kvm_helpers import Booted, block_devices, wait_until

pytestmark = pytest.mark.kvm

BRIDGE = "br-corraltest"


def runtime_files(hv: KVMHypervisor, name: str) -> list[Path]:
    d = hv.dirs
    return [p for p in (d.pid_file(name), d.qmp_socket(name), d.serial_socket(name),
                        d.monitor_socket(name), d.runtime_file(name),
                        d.instance_nic_dir(name)) if p.exists()]


def test_start_list_info_and_graceful_stop(hv: KVMHypervisor, make_instance: Callable,
                                           disk_copy: Path, boot: Callable) -> None:
    inst = make_instance(beparams={"maxmem": 160, "vcpus": 2})
    b: Booted = boot(hv, inst, block_devices(disk_copy))
    assert BOOT_MARKER in b.serial.text()
    assert hv.list_instances() == [inst.name]
    info = hv.get_instance_info(inst.name)
    assert info is not None
    assert (info.name, info.id, info.memory, info.vcpus, info.state) == \
        (inst.name, b.pid, 160, 2, C.HV_STATE_RUNNING)
    assert info.cpu_time > 0
    assert [i.name for i in hv.get_all_instances_info()] == [inst.name]
    assert b.run("grep -c ^processor /proc/cpuinfo") == "2"
    assert hv.instance_status(inst.name) == "running"
    runtime = hv.migration_info(inst)
    assert runtime.startswith('[["/usr/bin/qemu-system-x86_64", "-name", "' + inst.name)

    start = time.monotonic()
    hv.stop_instance(inst, timeout=60)
    assert time.monotonic() - start < 30
    assert "POWER-BUTTON" in b.serial.text()     # the guest saw the power button
    assert hv.list_instances() == [] and hv.get_instance_info(inst.name) is None
    assert runtime_files(hv, inst.name) == []


def test_forced_stop_after_timeout_when_guest_ignores_acpi(
        hv: KVMHypervisor, make_instance: Callable, disk_copy: Path, boot: Callable) -> None:
    inst = make_instance(hvparams={"kernel_args": "ro quiet corral_ignore_acpi"})
    b = boot(hv, inst, block_devices(disk_copy))
    assert "ACPI-IGNORED" in b.serial.text()
    pid = b.pid
    start = time.monotonic()
    hv.stop_instance(inst, timeout=3)
    elapsed = time.monotonic() - start
    assert 3 <= elapsed < 20
    assert not Path(f"/proc/{pid}").exists() or hv.dirs.alive_pid(inst.name) is None
    assert "POWER-BUTTON" not in b.serial.text()
    assert hv.list_instances() == [] and runtime_files(hv, inst.name) == []


def test_force_stop_is_immediate_and_stop_by_name(hv: KVMHypervisor, make_instance: Callable,
                                                  disk_copy: Path, boot: Callable) -> None:
    inst = make_instance()
    boot(hv, inst, block_devices(disk_copy), wait=False)
    with pytest.raises(errors.ProgrammerError):
        hv.stop_instance(None, name=inst.name)
    start = time.monotonic()
    hv.stop_instance(None, force=True, name=inst.name)
    assert time.monotonic() - start < 5
    assert hv.list_instances() == []
    hv.stop_instance(inst)          # already stopped: nothing to do, no error


def test_soft_reboot_restarts_qemu_from_saved_runtime(
        hv: KVMHypervisor, make_instance: Callable, disk_copy: Path, boot: Callable) -> None:
    inst = make_instance()
    b = boot(hv, inst, block_devices(disk_copy))
    old_pid = b.pid
    old_runtime = hv.dirs.runtime_file(inst.name).read_text()
    hv.reboot_instance(inst, timeout=60)
    assert b.pid != old_pid
    b.serial.wait_for(f"(?s){LOGIN_PROMPT}.*{BOOT_MARKER}.*{LOGIN_PROMPT}", 90)
    assert b.serial.count(BOOT_MARKER) == 2
    assert "POWER-BUTTON" in b.serial.text()
    assert hv.dirs.runtime_file(inst.name).read_text() == old_runtime
    assert hv.list_instances() == [inst.name]


def test_reset_is_guest_visible_and_keeps_process(
        hv: KVMHypervisor, make_instance: Callable, disk_copy: Path, boot: Callable) -> None:
    inst = make_instance()
    b = boot(hv, inst, block_devices(disk_copy))
    pid = b.pid
    first_boot_id = b.serial.wait_for(rf"{BOOT_MARKER} (\S+)", 1).group(1)
    hv.reset_instance(inst)
    m = b.serial.wait_for(rf"{BOOT_MARKER} (\S+)", 90, start=b.serial.text().index(
        first_boot_id) + len(first_boot_id))
    assert m.group(1) != first_boot_id
    assert b.pid == pid


def test_hard_reboot_is_stop_and_start(hv: KVMHypervisor, make_instance: Callable,
                                       disk_copy: Path, boot: Callable) -> None:
    inst = make_instance()
    b = boot(hv, inst, block_devices(disk_copy))
    hv.stop_instance(inst, force=True)
    hv.start_instance(inst, block_devices(disk_copy), startup_paused=False)
    b.serial.wait_for(f"(?s){BOOT_MARKER}.*{BOOT_MARKER}", 90)
    assert hv.list_instances() == [inst.name]


def test_qemu_killed_behind_our_back(hv: KVMHypervisor, make_instance: Callable,
                                     disk_copy: Path, boot: Callable) -> None:
    inst = make_instance()
    b = boot(hv, inst, block_devices(disk_copy), wait=False)
    os.kill(b.pid, signal.SIGKILL)
    assert wait_until(lambda: hv.list_instances() == [], 10)
    assert hv.get_instance_info(inst.name) is None
    assert runtime_files(hv, inst.name) != []          # leftovers until cleanup
    hv.cleanup_instance(inst.name)
    assert runtime_files(hv, inst.name) == []
    hv.start_instance(inst, block_devices(disk_copy), startup_paused=True)
    assert hv.list_instances() == [inst.name]


def test_cleanup_refuses_running_instance_and_double_start(
        hv: KVMHypervisor, make_instance: Callable, disk_copy: Path) -> None:
    inst = make_instance()
    hv.start_instance(inst, block_devices(disk_copy), startup_paused=True)
    with pytest.raises(errors.HypervisorError, match="still running"):
        hv.cleanup_instance(inst.name)
    with pytest.raises(errors.HypervisorError, match="already running"):
        hv.start_instance(inst, block_devices(disk_copy), startup_paused=True)
    assert hv.instance_status(inst.name) in ("prelaunch", "paused")
    info = hv.get_instance_info(inst.name)
    assert info is not None and info.state == C.HV_STATE_RUNNING


def test_new_hypervisor_object_sees_and_stops_running_instance(
        hv: KVMHypervisor, make_instance: Callable, disk_copy: Path, boot: Callable) -> None:
    inst = make_instance()
    b = boot(hv, inst, block_devices(disk_copy))
    restarted = KVMHypervisor(Paths.from_env(hv.paths.root))   # noded restarted
    assert restarted.list_instances() == [inst.name]
    assert restarted.get_instance_info(inst.name).id == b.pid
    restarted.stop_instance(inst, timeout=60)
    assert "POWER-BUTTON" in b.serial.text()
    assert hv.list_instances() == []


def test_start_failure_leaves_nothing_behind(hv: KVMHypervisor, make_instance: Callable,
                                             disk_copy: Path, bridge: str) -> None:
    inst = make_instance(hvparams={"kvm_extra": "-no-such-qemu-option"},
                         nics=[NIC(mac="aa:00:00:00:10:01", nicparams={"link": bridge})])
    with pytest.raises(errors.HypervisorError, match="no-such-qemu-option"):
        hv.start_instance(inst, block_devices(disk_copy), startup_paused=False)
    assert hv.list_instances() == [] and runtime_files(hv, inst.name) == []
    assert not [i for i in os.listdir("/sys/class/net") if i in _bridge_ports(bridge)]
    assert _bridge_ports(bridge) == []


def test_missing_kernel_refused_before_launch(hv: KVMHypervisor, make_instance: Callable,
                                              disk_copy: Path) -> None:
    inst = make_instance(hvparams={"kernel_path": "/nonexistent/vmlinuz"})
    with pytest.raises(errors.HypervisorError, match="kernel_path"):
        hv.start_instance(inst, block_devices(disk_copy), startup_paused=False)
    assert runtime_files(hv, inst.name) == []


@pytest.fixture
def bridge() -> Iterator[str]:
    run_command(["ip", "link", "del", BRIDGE], timeout=10)
    res = run_command(["ip", "link", "add", BRIDGE, "type", "bridge"], timeout=10)
    assert not res.failed, res.output
    yield BRIDGE
    run_command(["ip", "link", "del", BRIDGE], timeout=10)


def _bridge_ports(bridge: str) -> list[str]:
    brif = Path(f"/sys/class/net/{bridge}/brif")
    return sorted(os.listdir(brif)) if brif.is_dir() else []


def test_bridged_and_routed_nics(hv: KVMHypervisor, make_instance: Callable,
                                 disk_copy: Path, boot: Callable, bridge: str) -> None:
    nics = [NIC(mac="aa:00:00:00:20:01", nicparams={"mode": "bridged", "link": bridge}),
            NIC(mac="aa:00:00:00:20:02", ip="192.0.2.20",
                nicparams={"mode": "routed", "link": "4243"})]
    inst = make_instance(nics=nics)
    b = boot(hv, inst, block_devices(disk_copy))
    taps = hv.dirs.load_taps(inst.name)
    assert len(taps) == 2 and all(t.startswith("cortap") for t in taps)
    assert _bridge_ports(bridge) == [taps[0]]
    routes = run_command(["ip", "route", "show", "table", "4243"], timeout=10).stdout
    assert f"192.0.2.20 dev {taps[1]}" in routes
    macs = b.run("cat /sys/class/net/eth*/address").split()
    assert macs == ["aa:00:00:00:20:01", "aa:00:00:00:20:02"]
    hv.stop_instance(inst, timeout=60)
    assert _bridge_ports(bridge) == []
    assert not any(Path(f"/sys/class/net/{t}").exists() for t in taps)


def test_missing_bridge_fails_cleanly(hv: KVMHypervisor, make_instance: Callable,
                                      disk_copy: Path) -> None:
    inst = make_instance(nics=[NIC(mac="aa:00:00:00:30:01",
                                   nicparams={"mode": "bridged", "link": "br-corral-none"})])
    before = {n for n in os.listdir("/sys/class/net") if n.startswith("cortap")}
    with pytest.raises(errors.HypervisorError) as exc:
        hv.start_instance(inst, block_devices(disk_copy), startup_paused=False)
    assert exc.value.ecode == errors.ECODE_ENVIRON and "br-corral-none" in str(exc.value)
    after = {n for n in os.listdir("/sys/class/net") if n.startswith("cortap")}
    assert after == before and hv.list_instances() == []


def test_nicless_instance_has_only_loopback(hv: KVMHypervisor, make_instance: Callable,
                                            disk_copy: Path, boot: Callable) -> None:
    inst = make_instance()
    b = boot(hv, inst, block_devices(disk_copy))
    assert b.run("ls /sys/class/net").split() == ["lo"]


def test_balloon_changes_guest_memory(hv: KVMHypervisor, make_instance: Callable,
                                      disk_copy: Path, boot: Callable) -> None:
    inst = make_instance(beparams={"maxmem": 192})
    boot(hv, inst, block_devices(disk_copy))
    hv.balloon_instance_memory(inst, 128)
    assert wait_until(lambda: hv.get_instance_info(inst.name).memory == 128, 30, 0.5)


def test_user_shutdown_reports_shutdown_state(hv: KVMHypervisor, make_instance: Callable,
                                              disk_copy: Path, boot: Callable) -> None:
    inst = make_instance(hvparams={"user_shutdown": True})
    b = boot(hv, inst, block_devices(disk_copy))
    b.serial.send("poweroff -f\n")
    assert wait_until(lambda: hv.get_instance_info(inst.name).state == C.HV_STATE_SHUTDOWN,
                      30, 0.3)
    assert hv.list_instances() == [inst.name]        # QEMU stays (-no-shutdown)
    hv.stop_instance(inst, timeout=10)
    assert hv.list_instances() == []


def test_cpu_mask_pins_qemu_threads(hv: KVMHypervisor, make_instance: Callable,
                                    disk_copy: Path) -> None:
    inst = make_instance(hvparams={"cpu_mask": "0"})
    hv.start_instance(inst, block_devices(disk_copy), startup_paused=True)
    pid = hv.dirs.alive_pid(inst.name)
    for tid in os.listdir(f"/proc/{pid}/task"):
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        assert "Cpus_allowed_list:\t0\n" in status


def _free_vnc_port() -> int:
    for port in range(5990, 6100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def test_vnc_listens_on_network_port(hv: KVMHypervisor, make_instance: Callable,
                                     disk_copy: Path) -> None:
    port = _free_vnc_port()
    inst = make_instance(hvparams={"vnc_bind_address": "127.0.0.1", "serial_console": False},
                         network_port=port)
    hv.start_instance(inst, block_devices(disk_copy), startup_paused=True)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        assert conn.recv(12).startswith(b"RFB 003.")
    console = KVMHypervisor.get_instance_console(
        inst, Node(name="node1", primary_ip="127.0.0.1"), None, inst.hvparams, {})
    assert (console.kind, console.host, console.port, console.display) == \
        (C.CONS_VNC, "127.0.0.1", port, port - 5900)


@pytest.mark.parametrize("hvparams", [
    {"disk_type": "ide"},
    {"disk_type": "scsi-hd", "scsi_controller_type": "virtio-scsi-pci"},
    {"disk_type": "scsi", "scsi_controller_type": "lsi"},
    {"nic_type": "e1000", "usb_mouse": "tablet", "soundhw": "hda", "use_localtime": True},
    {"cpu_cores": 2, "cpu_threads": 1, "cpu_sockets": 1, "acpi": False,
     "reboot_behavior": "exit", "use_guest_agent": True, "disk_cache": "none",
     "disk_aio": "native", "disk_discard": "unmap"},
    {"use_chroot": True, "security_model": "user", "security_domain": "nobody"},
], ids=["ide", "virtio-scsi", "lsi", "emulated-devices", "misc", "chroot-runas"])
def test_qemu_accepts_command_line(hv: KVMHypervisor, make_instance: Callable,
                                   disk_copy: Path, bridge: str, hvparams: dict) -> None:
    vcpus = 2 if hvparams.get("cpu_cores") else 1
    inst = make_instance(hvparams=hvparams, beparams={"vcpus": vcpus},
                         nics=[NIC(mac="aa:00:00:00:40:01", nicparams={"link": bridge})])
    hv.start_instance(inst, block_devices(disk_copy), startup_paused=True)
    blocks = QmpMonitor(hv.dirs.qmp_socket(inst.name)).execute("query-block")
    assert [b["inserted"]["file"] for b in blocks if b.get("inserted")] == [str(disk_copy)]
    pid = hv.dirs.alive_pid(inst.name)
    if hvparams.get("security_model") == "user":
        assert Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam("nobody").pw_uid
        assert os.readlink(f"/proc/{pid}/root") == str(hv.dirs.instance_chroot(inst.name))
    hv.stop_instance(inst, force=True)
    assert not hv.dirs.instance_chroot(inst.name).exists()


def test_read_only_disk(hv: KVMHypervisor, make_instance: Callable, disk_copy: Path) -> None:
    inst = make_instance()
    hv.start_instance(inst, block_devices(disk_copy, mode="ro"), startup_paused=True)
    blocks = QmpMonitor(hv.dirs.qmp_socket(inst.name)).execute("query-block")
    assert [b["inserted"]["ro"] for b in blocks if b.get("inserted")] == [True]


def test_console_verify_and_node_info(hv: KVMHypervisor, make_instance: Callable) -> None:
    inst = make_instance()
    node = Node(name="node1", primary_ip="127.0.0.1")
    console = KVMHypervisor.get_instance_console(inst, node, None, inst.hvparams, {})
    assert console.kind == C.CONS_SSH and console.host == "127.0.0.1"
    assert console.command[:2] == ["socat", "STDIO,raw,echo=0,escape=0x1d"]
    assert console.command[2].startswith("UNIX-CONNECT:") and \
        console.command[2].endswith(f"/kvm-hypervisor/ctrl/{inst.name}.serial")
    none = KVMHypervisor.get_instance_console(inst, node, None, {"serial_console": False}, {})
    assert none.kind == C.CONS_MESSAGE
    assert hv.verify() is None
    assert "not exist" in hv.verify({"kvm_path": "/nonexistent/qemu"})
    info = hv.get_node_info()
    assert info["memory_total"] > 0 and info["cpu_total"] >= 1
    assert info["hv_version"][0] >= 7
    expected = "kvm" if KVMHypervisor.acceleration() == "kvm" else "tcg"
    assert info["kvm_accel"] == expected
    assert hv.acceleration({"kvm_flag": "disabled"}) == "tcg"
