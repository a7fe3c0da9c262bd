"""Unit tests of the QEMU command-line builder (pure functions, no qemu)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import constants as C
from corral import errors
from corral.hypervisor.kvm import cmdline as cl

FILES = cl.NodeFiles(pidfile="/r/pid/vm1", qmp_socket="/r/ctrl/vm1.qmp",
                     monitor_socket="/r/ctrl/vm1.monitor", serial_socket="/r/ctrl/vm1.serial",
                     qga_socket="/r/ctrl/vm1.qga", chroot_dir="/r/chroot/vm1")
UUID = "0c0ffee0-0000-4000-8000-000000000001"


def hvp(**over: Any) -> dict[str, Any]:
    out = dict(C.HV_KVM_DEFAULTS)
    out.update(over)
    return out


def base(hv: dict[str, Any] | None = None, accel: str = "tcg", maxmem: int = 256,
         vcpus: int = 2, **kw: Any) -> list[str]:
    return cl.build_base_argv(name="vm1", uuid=UUID, hvparams=hv or hvp(),
                              beparams={"maxmem": maxmem, "vcpus": vcpus}, accel=accel, **kw)


def opt(argv: list[str], flag: str) -> list[str]:
    """All values following ``flag``."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def exec_argv(hv: dict[str, Any] | None = None, disks: list[cl.DiskSpec] | None = None,
              nics: list[cl.NicSpec] | None = None, **kw: Any) -> list[str]:
    h = hv or hvp()
    return cl.build_exec_argv(base(h), hvparams=h, files=FILES, disks=disks or [],
                              nics=nics or [], options=cl.LaunchOptions(**kw))


def test_identity_memory_cpus_machine() -> None:
    argv = base()
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    assert opt(argv, "-name") == ["vm1"]
    assert opt(argv, "-uuid") == [UUID]
    assert opt(argv, "-m") == ["256"]
    assert opt(argv, "-smp") == ["2"]
    assert opt(argv, "-machine") == ["pc"]
    assert opt(argv, "-accel") == ["tcg"]
    assert "-cpu" not in argv
    assert opt(argv, "-display") == ["none"]


def test_cpu_topology_type_and_machine_version() -> None:
    argv = base(hvp(cpu_cores=2, cpu_threads=1, cpu_sockets=1, cpu_type="qemu64",
                    machine_version="pc-i440fx-7.2"), accel="kvm", vcpus=2)
    assert opt(argv, "-smp") == ["2,cores=2,threads=1,sockets=1"]
    assert opt(argv, "-cpu") == ["qemu64"]
    assert opt(argv, "-machine") == ["pc-i440fx-7.2"]
    assert opt(argv, "-accel") == ["kvm"]


def test_acpi_off_goes_to_machine() -> None:
    assert opt(base(hvp(acpi=False)), "-machine") == ["pc,acpi=off"]


@pytest.mark.parametrize("flag,hardware,expected", [
    ("enabled", False, "kvm"), ("disabled", True, "tcg"), ("", True, "kvm"),
    ("", False, "tcg")])
def test_decide_accel(flag: str, hardware: bool, expected: str) -> None:
    assert cl.decide_accel(flag, hardware) == expected


def test_direct_kernel_boot_cmdline_with_serial() -> None:
    argv = base(hvp(kernel_path="/k", initrd_path="/i", root_path="/dev/vda",
                    kernel_args="ro quiet", serial_speed=115200))
    assert opt(argv, "-kernel") == ["/k"]
    assert opt(argv, "-initrd") == ["/i"]
    assert opt(argv, "-append") == ["root=/dev/vda ro quiet console=ttyS0,115200"]


def test_kernel_cmdline_without_serial_console() -> None:
    assert cl.kernel_cmdline(hvp(serial_console=False, root_path="/dev/sda1",
                                 kernel_args="rw")) == "root=/dev/sda1 rw"


def test_no_kernel_boots_first_disk() -> None:
    argv = exec_argv(disks=[cl.DiskSpec("/d/0"), cl.DiskSpec("/d/1")])
    assert "-kernel" not in argv and "-append" not in argv
    devices = opt(argv, "-device")
    assert "virtio-blk-pci,drive=disk0,id=disk0-dev,bootindex=1" in devices
    assert "virtio-blk-pci,drive=disk1,id=disk1-dev" in devices


def test_disk_options_cache_aio_discard_readonly() -> None:
    h = hvp(disk_cache="writethrough", disk_aio="threads", disk_discard="unmap",
            kernel_path="/k")
    argv = exec_argv(h, disks=[cl.DiskSpec("/d/a,b", mode="ro")])
    drives = opt(argv, "-drive")
    assert drives == [("file=/d/a,,b,format=raw,cache=writethrough,aio=threads,discard=unmap,"
                      "readonly=on,if=none,id=disk0")]
    assert opt(argv, "-device")[-1] == "virtio-blk-pci,drive=disk0,id=disk0-dev"


def test_aio_native_forces_cache_none() -> None:
    argv = exec_argv(hvp(disk_aio="native"), disks=[cl.DiskSpec("/d/0")])
    assert "cache=none" in opt(argv, "-drive")[0]
    assert "aio=native" in opt(argv, "-drive")[0]


def test_userspace_uri_replaces_link() -> None:
    argv = exec_argv(disks=[cl.DiskSpec("/d/0", uri="nbd://127.0.0.1:10809/x")])
    assert opt(argv, "-drive")[0].startswith("file=nbd://127.0.0.1:10809/x,")


def test_ide_disks_and_cdrom_share_ide_slots() -> None:
    h = hvp(disk_type="ide", cdrom_image_path="/iso/a.iso", boot_order="cdrom")
    argv = exec_argv(h, disks=[cl.DiskSpec("/d/0"), cl.DiskSpec("/d/1")])
    devices = opt(argv, "-device")
    assert "ide-hd,drive=disk0,id=disk0-dev,bus=ide.0,unit=0" in devices
    assert "ide-hd,drive=disk1,id=disk1-dev,bus=ide.0,unit=1" in devices
    assert "ide-cd,drive=cdrom0,id=cdrom0-dev,bus=ide.1,unit=0,bootindex=1" in devices
    assert "file=/iso/a.iso,media=cdrom,readonly=on,if=none,id=cdrom0,format=raw" in \
        opt(argv, "-drive")


def test_too_many_ide_devices() -> None:
    with pytest.raises(errors.HypervisorError, match="Too many IDE"):
        exec_argv(hvp(disk_type="ide"), disks=[cl.DiskSpec(f"/d/{i}") for i in range(5)])


@pytest.mark.parametrize("ctrl,model", [("lsi", "lsi53c895a"),
                                         ("virtio-scsi-pci", "virtio-scsi-pci"),
                                         ("megasas", "megasas")])
def test_scsi_disks_get_a_controller(ctrl: str, model: str) -> None:
    argv = exec_argv(hvp(disk_type="scsi-hd", scsi_controller_type=ctrl),
                     disks=[cl.DiskSpec("/d/0"), cl.DiskSpec("/d/1")])
    devices = opt(argv, "-device")
    assert f"{model},id=scsi0" in devices
    assert "scsi-hd,drive=disk0,id=disk0-dev,bus=scsi0.0,scsi-id=0,bootindex=1" in devices
    assert "scsi-hd,drive=disk1,id=disk1-dev,bus=scsi0.0,scsi-id=1" in devices


def test_legacy_interface_disk_types() -> None:
    argv = exec_argv(hvp(disk_type="sd"), disks=[cl.DiskSpec("/d/0")])
    assert opt(argv, "-drive") == ["file=/d/0,format=raw,aio=threads,if=sd,index=0"]


def test_nics_tap_virtio_and_mac() -> None:
    argv = exec_argv(nics=[cl.NicSpec("aa:00:00:11:22:33", "cortap0"),
                           cl.NicSpec("aa:00:00:11:22:34", "cortap1")])
    assert opt(argv, "-netdev") == [
        "tap,id=hostnet0,ifname=cortap0,script=no,downscript=no",
        "tap,id=hostnet1,ifname=cortap1,script=no,downscript=no"]
    devices = opt(argv, "-device")
    assert "virtio-net-pci,netdev=hostnet0,id=net0,mac=aa:00:00:11:22:33" in devices
    assert "-nic" not in argv


def test_vhost_only_when_available() -> None:
    nics = [cl.NicSpec("aa:00:00:11:22:33", "cortap0")]
    with_dev = exec_argv(hvp(vhost_net=True), nics=nics, vhost_available=True)
    without = exec_argv(hvp(vhost_net=True), nics=nics, vhost_available=False)
    off = exec_argv(hvp(vhost_net=False), nics=nics, vhost_available=True)
    assert "vhost=on" in opt(with_dev, "-netdev")[0]
    assert "vhost" not in opt(without, "-netdev")[0]
    assert "vhost" not in opt(off, "-netdev")[0]


def test_multiqueue_and_vnet_hdr_off() -> None:
    argv = exec_argv(hvp(virtio_net_queues=4, vnet_hdr=False),
                     nics=[cl.NicSpec("aa:00:00:11:22:33", "cortap0")])
    assert opt(argv, "-netdev")[0].endswith(",vnet_hdr=off,queues=4")
    assert opt(argv, "-device")[-1].endswith(",mq=on,vectors=10")


@pytest.mark.parametrize("nic_type,model", [("e1000", "e1000"), ("rtl8139", "rtl8139"),
                                             ("ne2k_isa", "ne2k_isa")])
def test_emulated_nic_models(nic_type: str, model: str) -> None:
    argv = exec_argv(hvp(nic_type=nic_type, virtio_net_queues=4),
                     nics=[cl.NicSpec("aa:00:00:11:22:33", "cortap0")])
    assert opt(argv, "-device")[-1] == f"{model},netdev=hostnet0,id=net0,mac=aa:00:00:11:22:33"
    assert "queues" not in opt(argv, "-netdev")[0]


def test_no_nics_means_nic_none() -> None:
    assert opt(exec_argv(), "-nic") == ["none"]


def test_control_files_paused_start_and_daemonize() -> None:
    argv = exec_argv()
    assert opt(argv, "-qmp") == ["unix:/r/ctrl/vm1.qmp,server=on,wait=off"]
    assert opt(argv, "-monitor") == ["unix:/r/ctrl/vm1.monitor,server=on,wait=off"]
    assert opt(argv, "-serial") == ["unix:/r/ctrl/vm1.serial,server=on,wait=off"]
    assert opt(argv, "-pidfile") == ["/r/pid/vm1"]
    assert "-daemonize" in argv and "-S" in argv and "-incoming" not in argv


def test_serial_console_off() -> None:
    assert "-serial" not in exec_argv(hvp(serial_console=False))


def test_incoming_replaces_paused_start() -> None:
    argv = exec_argv(incoming=cl.incoming_uri("192.0.2.7", 8102))
    assert opt(argv, "-incoming") == ["tcp:192.0.2.7:8102"]
    assert "-S" not in argv
    assert cl.incoming_uri("2001:db8::1", 8102) == "tcp:[2001:db8::1]:8102"


def test_kvm_extra_is_shell_split_and_last() -> None:
    argv = exec_argv(hvp(kvm_extra="-global 'kvm-pit.lost_tick_policy=delay' -no-hpet"))
    assert argv[-3:] == ["-global", "kvm-pit.lost_tick_policy=delay", "-no-hpet"]


def test_vnc_display_tls_and_password() -> None:
    argv = base(hvp(vnc_bind_address="127.0.0.1", vnc_tls=True, vnc_x509_path="/etc/x509",
                    vnc_x509_verify=True, vnc_password_file="/etc/pw"), network_port=5901)
    assert opt(argv, "-vnc") == ["127.0.0.1:1,tls-creds=vnctls0,password=on"]
    assert opt(argv, "-object") == [
        "tls-creds-x509,id=vnctls0,endpoint=server,dir=/etc/x509,verify-peer=yes"]
    assert opt(argv, "-vga") == ["std"]


def test_vnc_interface_address_and_unix_socket() -> None:
    argv = base(hvp(vnc_bind_address="eth0"), network_port=11000, vnc_address="::1")
    assert opt(argv, "-vnc") == ["[::1]:5100"]
    assert opt(base(hvp(vnc_bind_address="/run/vnc.sock")), "-vnc") == ["unix:/run/vnc.sock"]


def test_vnc_needs_network_port() -> None:
    with pytest.raises(errors.HypervisorError, match="network port"):
        base(hvp(vnc_bind_address="127.0.0.1"), network_port=None)


def test_spice() -> None:
    argv = base(hvp(spice_bind="127.0.0.1"), network_port=11001)
    assert opt(argv, "-spice") == ["addr=127.0.0.1,port=11001,disable-ticketing=on"]


def test_misc_devices_and_flags() -> None:
    argv = base(hvp(usb_mouse="tablet", usb_devices="braille", soundhw="hda",
                    use_localtime=True, keymap="de", reboot_behavior="exit",
                    user_shutdown=True, mem_path="/hugepages", vga="virtio",
                    floppy_image_path="/f.img", boot_order="floppy"))
    devices = opt(argv, "-device")
    assert "usb-tablet" in devices and "-usb" in argv
    assert opt(argv, "-usbdevice") == ["braille"]
    assert devices[devices.index("intel-hda") + 1] == "hda-duplex,audiodev=snd0"
    assert opt(argv, "-rtc") == ["base=localtime"]
    assert opt(argv, "-k") == ["de"]
    assert "-no-reboot" in argv and "-no-shutdown" in argv
    assert opt(argv, "-mem-path") == ["/hugepages"] and "-mem-prealloc" in argv
    assert opt(argv, "-vga") == ["virtio"]
    assert opt(argv, "-boot") == ["order=a"]
    assert "virtio-balloon-pci,id=balloon0" in devices


def test_security_user_and_chroot_and_guest_agent() -> None:
    h = hvp(security_model="user", security_domain="nobody", use_chroot=True,
            use_guest_agent=True)
    argv = exec_argv(h)
    assert opt(argv, "-runas") == ["nobody"]
    assert opt(argv, "-chroot") == ["/r/chroot/vm1"]
    assert "socket,id=qga0,path=/r/ctrl/vm1.qga,server=on,wait=off" in opt(argv, "-chardev")


def test_security_pool_refused() -> None:
    with pytest.raises(errors.HypervisorError, match="pool"):
        base(hvp(security_model="pool"))


def test_serial_console_log() -> None:
    """With a log file the serial socket is a chardev that also logs (the
    console's history), restarted empty at each start."""
    files = cl.NodeFiles(**{**FILES.__dict__, "serial_log": "/l/kvm/vm1,x.serial.log"})
    argv = cl.build_exec_argv(base(), hvparams=hvp(), files=files, disks=[], nics=[])
    assert opt(argv, "-serial") == ["chardev:serial0"]
    assert "socket,id=serial0,path=/r/ctrl/vm1.serial,server=on,wait=off,logfile=" \
           "/l/kvm/vm1,,x.serial.log,logappend=off" in opt(argv, "-chardev")
    argv = cl.build_exec_argv(base(), hvparams=hvp(serial_console=False), files=files,
                              disks=[], nics=[])
    assert "-serial" not in argv and not opt(argv, "-chardev")


def test_socket_path_with_comma_refused() -> None:
    files = cl.NodeFiles("/p", "/a,b.qmp", "/m", "/s", "/q", "/c")
    with pytest.raises(errors.HypervisorError, match="comma"):
        cl.build_exec_argv(base(), hvparams=hvp(), files=files, disks=[], nics=[])


def test_parse_argv_memory_vcpus_roundtrip() -> None:
    assert cl.parse_argv_memory_vcpus(base(maxmem=512, vcpus=3)) == (512, 3)


@given(st.integers(min_value=64, max_value=1 << 20), st.integers(min_value=1, max_value=64),
       st.integers(min_value=0, max_value=8))
def test_memory_vcpus_property(mem: int, vcpus: int, cores: int) -> None:
    argv = base(hvp(cpu_cores=cores), maxmem=mem, vcpus=vcpus)
    assert cl.parse_argv_memory_vcpus(argv) == (mem, vcpus)
