"""The QEMU command line of a KVM instance, built from its parameters.

Pure functions (no file system, no processes), mirroring the command-line
part of Ganeti's ``hv_kvm.KVMHypervisor._GenerateKVMRuntime`` and
``_ExecuteKVMRuntime``. The command line is built in two parts, as in
Ganeti's runtime file:

* :func:`build_base_argv`: what belongs to the instance (memory, CPUs,
  machine, kernel, display, ...). It is saved in the runtime file and reused
  unchanged for reboots and on a migration target.
* :func:`build_exec_argv`: the base plus what belongs to one node and one
  launch: control sockets, pid file, disks (link paths), NICs (tap names),
  ``-S`` and ``-incoming``, then ``kvm_extra``.

Facts about the host (acceleration, vhost availability, the VNC address of
an interface) are decided by the caller and passed in.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from corral import constants as C
from corral import errors
from corral.hypervisor import base as hvbase
from corral.hypervisor.base import ParamCheck, param_in_set

ACCEL_KVM = "kvm"
ACCEL_TCG = "tcg"

KVM_FLAG_ENABLED = "enabled"
KVM_FLAG_DISABLED = "disabled"
KVM_FLAG_VALUES = ("", KVM_FLAG_ENABLED, KVM_FLAG_DISABLED)

HT_DISK_PARAVIRTUAL = "paravirtual"
DISK_TYPES = ("paravirtual", "ide", "scsi", "sd", "mtd", "pflash", "scsi-generic",
              "scsi-block", "scsi-cd", "scsi-hd")
CDROM_DISK_TYPES = ("", "paravirtual", "ide", "scsi", "scsi-cd", "scsi-hd", "scsi-block",
                    "scsi-generic")
NIC_TYPES: dict[str, str] = {
    "paravirtual": "virtio-net-pci",
    "e1000": "e1000",
    "i82551": "i82551",
    "i82559er": "i82559er",
    "i82557b": "i82557b",
    "ne2k_isa": "ne2k_isa",
    "ne2k_pci": "ne2k_pci",
    "pcnet": "pcnet",
    "rtl8139": "rtl8139",
}
SCSI_CONTROLLERS: dict[str, str] = {
    "lsi": "lsi53c895a",
    "virtio-scsi-pci": "virtio-scsi-pci",
    "megasas": "megasas",
}
DISK_CACHES = ("default", "none", "writeback", "writethrough")
DISK_AIO_MODES = ("threads", "native")
DISK_DISCARD_MODES = ("default", "ignore", "unmap")
BOOT_ORDERS = ("disk", "cdrom", "floppy", "network")
USB_MICE = ("", "mouse", "tablet")
SECURITY_MODELS = ("none", "user", "pool")
REBOOT_BEHAVIORS = ("reboot", "exit")
SOUND_DEVICES: dict[str, list[str]] = {
    "ac97": ["AC97"],
    "es1370": ["ES1370"],
    "sb16": ["sb16"],
    "hda": ["intel-hda", "hda-duplex"],
}
_SCSI_DEVICES = ("scsi-generic", "scsi-block", "scsi-cd", "scsi-hd")
_LEGACY_IF = ("sd", "mtd", "pflash")
_IDE_SLOTS = 4          # i440FX: two IDE buses with two units each


@dataclass(frozen=True)
class DiskSpec:
    """One disk for the command line: ``link_path`` on this node, ``mode``
    ``rw``/``ro``, ``uri`` a userspace URI (used instead of the path)."""

    link_path: str
    mode: str = C.DISK_RDWR
    uri: str | None = None


@dataclass(frozen=True)
class NicSpec:
    """One NIC for the command line: its MAC and the tap device on this node."""

    mac: str
    tap: str


@dataclass(frozen=True)
class NodeFiles:
    """Node-local files of one instance (see ``runtime.RuntimeDirs``)."""

    pidfile: str
    qmp_socket: str
    monitor_socket: str
    serial_socket: str
    qga_socket: str
    chroot_dir: str
    serial_log: str = ""        # "" = no console log (plain -serial unix:...)


@dataclass
class LaunchOptions:
    """Per-launch choices: ``vhost_available`` is whether /dev/vhost-net exists;
    ``incoming`` is a migration URI like ``tcp:192.0.2.1:8102``."""

    vhost_available: bool = False
    incoming: str | None = None
    daemonize: bool = True
    extra: list[str] = field(default_factory=list)


def _escape(value: str) -> str:
    """Escape a value for QEMU's ``key=value,...`` option syntax."""
    return value.replace(",", ",,")


def _no_comma(value: str, what: str) -> str:
    if "," in value:
        raise errors.HypervisorError(f"{what} '{value}' must not contain a comma")
    return value


def kernel_cmdline(hvparams: dict[str, Any]) -> str:
    """The kernel command line for direct kernel boot, as Ganeti builds it:
    ``root=<root_path> <kernel_args> [console=ttyS0,<serial_speed>]``."""
    parts = []
    if hvparams.get("root_path"):
        parts.append(f"root={hvparams['root_path']}")
    if hvparams.get("kernel_args"):
        parts.append(str(hvparams["kernel_args"]))
    if hvparams.get("serial_console"):
        parts.append(f"console=ttyS0,{hvparams.get('serial_speed', 38400)}")
    return " ".join(parts)


def decide_accel(kvm_flag: str, hardware_kvm: bool) -> str:
    """``kvm`` or ``tcg``: ``kvm_flag`` forces one; "" uses KVM only when the
    host has hardware virtualization and an openable /dev/kvm."""
    if kvm_flag == KVM_FLAG_ENABLED:
        return ACCEL_KVM
    if kvm_flag == KVM_FLAG_DISABLED:
        return ACCEL_TCG
    return ACCEL_KVM if hardware_kvm else ACCEL_TCG


def build_base_argv(*, name: str, uuid: str, hvparams: dict[str, Any],
                    beparams: dict[str, Any], accel: str, network_port: int | None = None,
                    vnc_address: str | None = None) -> list[str]:
    """The instance part of the QEMU command line (saved in the runtime file).

    ``hvparams``/``beparams`` are filled; memory is ``beparams["maxmem"]``
    MiB, CPUs ``beparams["vcpus"]``. ``vnc_address`` is the resolved
    address when ``vnc_bind_address`` names an interface. Raises
    :class:`errors.HypervisorError` for combinations QEMU cannot run.
    """
    hvp = hvparams
    memory = int(beparams.get(C.BE_MAXMEM) or beparams.get(C.BE_MEMORY) or 128)
    vcpus = int(beparams.get(C.BE_VCPUS) or 1)
    argv: list[str] = [str(hvp["kvm_path"]), "-name", name, "-uuid", uuid, "-nodefaults"]
    argv += ["-m", str(memory)]

    smp = str(vcpus)
    for key, opt in (("cpu_cores", "cores"), ("cpu_threads", "threads"),
                     ("cpu_sockets", "sockets")):
        if int(hvp.get(key) or 0) > 0:
            smp += f",{opt}={int(hvp[key])}"
    argv += ["-smp", smp]

    machine = str(hvp.get("machine_version") or "pc")
    if not hvp.get("acpi", True):
        machine += ",acpi=off"
    argv += ["-machine", machine, "-accel", accel]
    if hvp.get("cpu_type"):
        argv += ["-cpu", str(hvp["cpu_type"])]
    if hvp.get("mem_path"):
        argv += ["-mem-path", str(hvp["mem_path"]), "-mem-prealloc"]

    if hvp.get("kernel_path"):
        argv += ["-kernel", str(hvp["kernel_path"])]
        if hvp.get("initrd_path"):
            argv += ["-initrd", str(hvp["initrd_path"])]
        argv += ["-append", kernel_cmdline(hvp)]
    elif hvp.get("boot_order") == "floppy":
        argv += ["-boot", "order=a"]

    if hvp.get("use_localtime"):
        argv += ["-rtc", "base=localtime"]
    if hvp.get("reboot_behavior") == "exit":
        argv.append("-no-reboot")
    if hvp.get("user_shutdown"):
        argv.append("-no-shutdown")
    if hvp.get("keymap"):
        argv += ["-k", str(hvp["keymap"])]

    argv += _display_args(hvp, network_port, vnc_address)
    argv += _usb_and_sound_args(hvp)
    argv += ["-device", "virtio-balloon-pci,id=balloon0"]
    if hvp.get("floppy_image_path"):
        argv += ["-drive", (f"file={_escape(str(hvp['floppy_image_path']))},if=floppy,"
                 "format=raw")]
    if hvp.get("security_model") == "user":
        if not hvp.get("security_domain"):
            raise errors.HypervisorError("security_model 'user' needs a security_domain")
        argv += ["-runas", str(hvp["security_domain"])]
    elif hvp.get("security_model") == "pool":
        raise errors.HypervisorError("security_model 'pool' is not supported by Corral")
    return argv


def _display_args(hvp: dict[str, Any], network_port: int | None,
                  vnc_address: str | None) -> list[str]:
    argv: list[str] = ["-display", "none"]
    vnc_bind = vnc_address or hvp.get("vnc_bind_address") or ""
    spice_bind = hvp.get("spice_bind") or ""
    if vnc_bind and spice_bind:
        raise errors.HypervisorError("VNC and SPICE cannot be enabled at the same time")
    if vnc_bind.startswith("/"):
        argv += ["-vnc", f"unix:{_no_comma(vnc_bind, 'VNC socket')}"]
    elif vnc_bind:
        if not network_port or network_port < 5900:
            raise errors.HypervisorError(
                f"VNC needs the instance's network port >= 5900 (got {network_port})")
        host = f"[{vnc_bind}]" if ":" in vnc_bind else vnc_bind
        vnc = f"{host}:{network_port - 5900}"
        if hvp.get("vnc_tls"):
            if hvp.get("vnc_x509_path"):
                verify = "yes" if hvp.get("vnc_x509_verify") else "no"
                argv += ["-object", (f"tls-creds-x509,id=vnctls0,endpoint=server,"
                         f"dir={_escape(str(hvp['vnc_x509_path']))},verify-peer={verify}")]
            else:
                argv += ["-object", "tls-creds-anon,id=vnctls0,endpoint=server"]
            vnc += ",tls-creds=vnctls0"
        if hvp.get("vnc_password_file"):
            vnc += ",password=on"
        argv += ["-vnc", vnc]
    elif spice_bind:
        if not network_port:
            raise errors.HypervisorError("SPICE needs the instance's network port")
        argv += ["-spice", (f"addr={_escape(spice_bind)},port={network_port},"
                 "disable-ticketing=on")]
    argv += ["-vga", str(hvp.get("vga") or "std")]
    return argv


def _usb_and_sound_args(hvp: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    usb_devices = str(hvp.get("usb_devices") or "").replace(",", " ").split()
    if hvp.get("usb_mouse") or usb_devices:
        argv.append("-usb")
    if hvp.get("usb_mouse"):
        argv += ["-device", f"usb-{hvp['usb_mouse']}"]
    for dev in usb_devices:
        argv += ["-usbdevice", dev]
    if hvp.get("soundhw"):
        argv += ["-audiodev", "none,id=snd0"]
        for sound in str(hvp["soundhw"]).split(","):
            devices = SOUND_DEVICES.get(sound.strip())
            if devices is None:
                raise errors.HypervisorError(f"Unknown soundhw '{sound}'")
            for i, dev in enumerate(devices):
                last = i == len(devices) - 1
                argv += ["-device", f"{dev},audiodev=snd0" if last else dev]
    return argv


def build_exec_argv(base: list[str], *, hvparams: dict[str, Any], files: NodeFiles,
                    disks: list[DiskSpec], nics: list[NicSpec],
                    options: LaunchOptions | None = None) -> list[str]:
    """The full command line of one launch: ``base`` plus node and device parts.

    Adds control sockets, the pid file and ``-daemonize``, then ``-S`` (the
    caller issues ``cont``) or ``-incoming`` when migrating in, and
    ``kvm_extra`` (shell-split) last. Raises :class:`errors.HypervisorError`
    for device combinations QEMU cannot run.
    """
    opts = options or LaunchOptions()
    hvp = hvparams
    argv = list(base)
    argv += ["-pidfile", files.pidfile]
    if opts.daemonize:
        argv.append("-daemonize")
    argv += ["-qmp", f"unix:{_no_comma(files.qmp_socket, 'QMP socket')},server=on,wait=off"]
    argv += ["-monitor",
             f"unix:{_no_comma(files.monitor_socket, 'monitor socket')},server=on,wait=off"]
    if hvp.get("serial_console") and files.serial_log:
        # The same socket as below, plus a log of the output: QEMU writes it
        # also while no client is connected (history for consoles).
        argv += ["-chardev", (f"socket,id=serial0,path={_escape(files.serial_socket)},"
                              f"server=on,wait=off,logfile={_escape(files.serial_log)},"
                              "logappend=off"),
                 "-serial", "chardev:serial0"]
    elif hvp.get("serial_console"):
        argv += ["-serial",
                 f"unix:{_no_comma(files.serial_socket, 'serial socket')},server=on,wait=off"]
    if hvp.get("use_guest_agent"):
        argv += ["-chardev", (f"socket,id=qga0,path={_escape(files.qga_socket)},"
                 "server=on,wait=off"),
                 "-device", "virtio-serial-pci,id=qga-serial0",
                 "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]
    if hvp.get("use_chroot"):
        argv += ["-chroot", files.chroot_dir]
    argv += disk_args(hvp, disks)
    argv += nic_args(hvp, nics, opts.vhost_available)
    if opts.incoming:
        # Without -S the target runs the guest as soon as the migration
        # completes (QEMU's autostart), as Ganeti's target does.
        argv += ["-incoming", opts.incoming]
    else:
        argv.append("-S")
    argv += opts.extra
    if hvp.get("kvm_extra"):
        argv += shlex.split(str(hvp["kvm_extra"]))
    return argv


def disk_args(hvp: dict[str, Any], disks: list[DiskSpec]) -> list[str]:
    """``-drive``/``-device`` arguments of the disks and CD-ROMs."""
    argv: list[str] = []
    disk_type = str(hvp.get("disk_type") or HT_DISK_PARAVIRTUAL)
    boot_order = hvp.get("boot_order", "disk")
    direct_kernel = bool(hvp.get("kernel_path"))
    ide_slot = 0
    scsi_needed = disk_type in ("scsi", *_SCSI_DEVICES) or \
        str(hvp.get("cdrom_disk_type") or "") in ("scsi", *_SCSI_DEVICES)
    if scsi_needed:
        ctrl = SCSI_CONTROLLERS.get(str(hvp.get("scsi_controller_type") or "lsi"))
        if ctrl is None:
            raise errors.HypervisorError(
                f"Unknown scsi_controller_type {hvp.get('scsi_controller_type')!r}")
        argv += ["-device", f"{ctrl},id=scsi0"]
    scsi_id = 0

    def device(kind: str, drive_id: str, bootindex: int | None) -> str:
        nonlocal ide_slot, scsi_id
        boot = f",bootindex={bootindex}" if bootindex is not None else ""
        if kind == HT_DISK_PARAVIRTUAL:
            return f"virtio-blk-pci,drive={drive_id},id={drive_id}-dev{boot}"
        if kind in ("ide", "ide-cd"):
            if ide_slot >= _IDE_SLOTS:
                raise errors.HypervisorError("Too many IDE devices (at most 4)")
            dev = "ide-cd" if kind == "ide-cd" else "ide-hd"
            out = (f"{dev},drive={drive_id},id={drive_id}-dev,bus=ide.{ide_slot // 2},"
                   f"unit={ide_slot % 2}{boot}")
            ide_slot += 1
            return out
        dev = "scsi-hd" if kind == "scsi" else kind
        out = f"{dev},drive={drive_id},id={drive_id}-dev,bus=scsi0.0,scsi-id={scsi_id}{boot}"
        scsi_id += 1
        return out

    for idx, disk in enumerate(disks):
        target = disk.uri or disk.link_path
        opts = [f"file={_escape(target)}", "format=raw"]
        cache = str(hvp.get("disk_cache") or "default")
        aio = str(hvp.get("disk_aio") or "threads")
        if aio == "native" and cache == "default":
            cache = "none"      # aio=native needs O_DIRECT (cache.direct=on)
        if cache != "default":
            opts.append(f"cache={cache}")
        opts.append(f"aio={aio}")
        discard = str(hvp.get("disk_discard") or "default")
        if discard != "default":
            opts.append(f"discard={discard}")
        if disk.mode == C.DISK_RDONLY:
            opts.append("readonly=on")
        bootindex = 1 if (idx == 0 and boot_order == "disk" and not direct_kernel) else None
        if disk_type in _LEGACY_IF:
            argv += ["-drive", ",".join(opts + [f"if={disk_type}", f"index={idx}"])]
            continue
        drive_id = f"disk{idx}"
        argv += ["-drive", ",".join(opts + ["if=none", f"id={drive_id}"])]
        argv += ["-device", device(disk_type, drive_id, bootindex)]

    for num, key in ((0, "cdrom_image_path"), (1, "cdrom2_image_path")):
        image = str(hvp.get(key) or "")
        if not image:
            continue
        drive_id = f"cdrom{num}"
        opts = [f"file={_escape(image)}", "media=cdrom", "readonly=on", "if=none",
                f"id={drive_id}"]
        if "://" not in image:
            opts.append("format=raw")
        argv += ["-drive", ",".join(opts)]
        kind = str(hvp.get("cdrom_disk_type") or "ide")
        if kind == "scsi":
            kind = "scsi-cd"
        elif kind == "ide":
            kind = "ide-cd"
        bootindex = 1 if (num == 0 and boot_order == "cdrom" and not direct_kernel) else None
        argv += ["-device", device(kind, drive_id, bootindex)]
    return argv


def nic_args(hvp: dict[str, Any], nics: list[NicSpec], vhost_available: bool) -> list[str]:
    """``-netdev tap``/``-device`` arguments, or ``-nic none`` without NICs."""
    if not nics:
        return ["-nic", "none"]
    nic_type = str(hvp.get("nic_type") or "paravirtual")
    model = NIC_TYPES.get(nic_type)
    if model is None:
        raise errors.HypervisorError(f"Unknown nic_type {nic_type!r}")
    paravirtual = nic_type == "paravirtual"
    queues = int(hvp.get("virtio_net_queues") or 1) if paravirtual else 1
    argv: list[str] = []
    for idx, nic in enumerate(nics):
        netdev = (f"tap,id=hostnet{idx},ifname={_no_comma(nic.tap, 'tap name')},"
                  "script=no,downscript=no")
        if paravirtual and hvp.get("vhost_net") and vhost_available:
            netdev += ",vhost=on"
        if paravirtual and not hvp.get("vnet_hdr", True):
            netdev += ",vnet_hdr=off"
        if queues > 1:
            netdev += f",queues={queues}"
        dev = f"{model},netdev=hostnet{idx},id=net{idx},mac={nic.mac}"
        if queues > 1:
            dev += f",mq=on,vectors={2 * queues + 2}"
        if idx == 0 and hvp.get("boot_order") == "network" and not hvp.get("kernel_path"):
            dev += ",bootindex=1"
        argv += ["-netdev", netdev, "-device", dev]
    return argv


def incoming_uri(target_ip: str, port: int) -> str:
    """The ``-incoming``/``migrate`` URI of a TCP migration to ``target_ip``."""
    host = f"[{target_ip}]" if ":" in target_ip else target_ip
    return f"tcp:{host}:{port}"


def parse_argv_memory_vcpus(argv: list[str]) -> tuple[int, int]:
    """Memory (MiB) and vCPUs from a saved command line (``-m`` and ``-smp``)."""
    memory, vcpus = 0, 1
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m":
            memory = int(argv[i + 1].split(",")[0].rstrip("M"))
        elif arg == "-smp":
            vcpus = int(argv[i + 1].split(",")[0])
    return memory, vcpus


# -- parameter checks ---------------------------------------------------------------

_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_QEMU_CAP_RE = re.compile(r"^[a-z0-9-]+(:[a-z0-9-]+)*$")


def is_ip_address(value: str) -> bool:
    """True for an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_bind_address(value: Any) -> bool:
    """An IP address or an interface name (Ganeti also allows a VNC unix socket)."""
    return isinstance(value, str) and (is_ip_address(value) or bool(_IFNAME_RE.match(value)))


def _is_vnc_bind(value: Any) -> bool:
    return _is_bind_address(value) or (isinstance(value, str) and hvbase._is_abs_path(value))


def _is_file_or_url(value: Any) -> bool:
    return isinstance(value, str) and (hvbase._is_abs_path(value) or
                                       bool(re.match(r"^(https?|ftps?)://", value)))


def _file_or_url_exists(value: Any) -> bool:
    return "://" in value or os.path.isfile(value)


def _is_shell_words(value: Any) -> bool:
    try:
        shlex.split(str(value))
    except ValueError:
        return False
    return True


def _int_between(low: int, high: int) -> ParamCheck:
    return ParamCheck(False, lambda v: isinstance(v, int) and not isinstance(v, bool)
                      and low <= v <= high, f"must be an integer from {low} to {high}")


_BOOL = hvbase.BOOL_CHECK
_FILE_OR_URL = ParamCheck(False, _is_file_or_url, "must be an absolute path or a URL",
                          _file_or_url_exists, "not found or not a file")

PARAMETERS: dict[str, ParamCheck] = {
    "kvm_path": hvbase.REQ_FILE_CHECK,
    "kernel_path": hvbase.OPT_FILE_CHECK,
    "initrd_path": hvbase.OPT_FILE_CHECK,
    "root_path": hvbase.NO_CHECK,
    "kernel_args": hvbase.NO_CHECK,
    "serial_console": _BOOL,
    "serial_speed": _int_between(50, 4000000),
    "acpi": _BOOL,
    "vnc_bind_address": ParamCheck(False, _is_vnc_bind,
                                   "must be an IP address, an interface or a socket path"),
    "vnc_tls": _BOOL,
    "vnc_x509_path": hvbase.OPT_DIR_CHECK,
    "vnc_x509_verify": _BOOL,
    "vnc_password_file": hvbase.OPT_FILE_CHECK,
    "spice_bind": ParamCheck(False, _is_bind_address, "must be an IP address or interface"),
    "boot_order": param_in_set(True, BOOT_ORDERS),
    "cdrom_image_path": _FILE_OR_URL,
    "cdrom2_image_path": _FILE_OR_URL,
    "floppy_image_path": hvbase.OPT_FILE_CHECK,
    "cdrom_disk_type": param_in_set(False, CDROM_DISK_TYPES),
    "nic_type": param_in_set(True, tuple(NIC_TYPES)),
    "disk_type": param_in_set(True, DISK_TYPES),
    "scsi_controller_type": param_in_set(True, tuple(SCSI_CONTROLLERS)),
    "disk_cache": param_in_set(True, DISK_CACHES),
    "disk_aio": param_in_set(True, DISK_AIO_MODES),
    "disk_discard": param_in_set(True, DISK_DISCARD_MODES),
    "usb_mouse": param_in_set(False, USB_MICE),
    "keymap": hvbase.NO_CHECK,
    "migration_port": hvbase.NET_PORT_CHECK,
    "migration_bandwidth": hvbase.NONNEGATIVE_INT_CHECK,
    "migration_downtime": hvbase.NONNEGATIVE_INT_CHECK,
    "migration_mode": hvbase.MIGRATION_MODE_CHECK,
    "migration_caps": ParamCheck(False, lambda v: isinstance(v, str) and
                                 bool(_QEMU_CAP_RE.match(v)),
                                 "must be QEMU capabilities separated by ':'"),
    "use_guest_agent": _BOOL,
    "use_localtime": _BOOL,
    "security_model": param_in_set(True, SECURITY_MODELS),
    "security_domain": hvbase.NO_CHECK,
    "kvm_flag": param_in_set(False, KVM_FLAG_VALUES),
    "vhost_net": _BOOL,
    "virtio_net_queues": _int_between(1, 8),
    "use_chroot": _BOOL,
    "user_shutdown": _BOOL,
    "mem_path": hvbase.OPT_DIR_CHECK,
    "reboot_behavior": param_in_set(True, REBOOT_BEHAVIORS),
    "cpu_mask": hvbase.MULTI_CPU_MASK_CHECK,
    "cpu_type": hvbase.NO_CHECK,
    "cpu_cores": hvbase.OPT_NONNEGATIVE_INT_CHECK,
    "cpu_threads": hvbase.OPT_NONNEGATIVE_INT_CHECK,
    "cpu_sockets": hvbase.OPT_NONNEGATIVE_INT_CHECK,
    "soundhw": ParamCheck(False, lambda v: isinstance(v, str) and all(
        s.strip() in SOUND_DEVICES for s in v.split(",")),
        f"must be a comma-separated list of {', '.join(SOUND_DEVICES)}"),
    "usb_devices": hvbase.NO_CHECK,
    "vga": hvbase.NO_CHECK,
    "kvm_extra": ParamCheck(False, _is_shell_words, "must be a shell-quoted argument list"),
    "machine_version": hvbase.NO_CHECK,
    "kvm_pci_reservations": _int_between(0, 32),
    "vnet_hdr": _BOOL,
}


def check_combinations(hvp: dict[str, Any]) -> None:
    """Checks across parameters (filled ``hvp``), as Ganeti's
    ``CheckParameterSyntax``. Raises :class:`errors.OpPrereqError`
    (``ECODE_INVAL``)."""
    def fail(msg: str) -> None:
        raise errors.OpPrereqError(msg, errors.ECODE_INVAL)

    model, domain = hvp.get("security_model"), hvp.get("security_domain")
    if model == "user" and not domain:
        fail("security_model 'user' requires a security_domain (a user name)")
    if model != "user" and domain:
        fail(f"security_domain is only valid with security_model 'user' (not {model!r})")
    if hvp.get("vnc_bind_address") and hvp.get("spice_bind"):
        fail("vnc_bind_address and spice_bind cannot both be set")
    for key in ("vnc_tls", "vnc_x509_path", "vnc_x509_verify", "vnc_password_file"):
        if hvp.get(key) and not hvp.get("vnc_bind_address"):
            fail(f"{key} needs vnc_bind_address")
    if hvp.get("vnc_x509_path") and not hvp.get("vnc_tls"):
        fail("vnc_x509_path needs vnc_tls")
    if hvp.get("boot_order") == "cdrom" and not hvp.get("cdrom_image_path"):
        fail("boot_order 'cdrom' needs cdrom_image_path")
    if hvp.get("boot_order") == "floppy" and not hvp.get("floppy_image_path"):
        fail("boot_order 'floppy' needs floppy_image_path")
    if hvp.get("cdrom2_image_path") and not hvp.get("cdrom_image_path"):
        fail("cdrom2_image_path needs cdrom_image_path")
    if hvp.get("disk_aio") == "native" and hvp.get("disk_cache") in ("writeback",
                                                                       "writethrough"):
        fail("disk_aio 'native' needs disk_cache 'none' or 'default'")
    if hvp.get("initrd_path") and not hvp.get("kernel_path"):
        fail("initrd_path needs kernel_path")
    if hvp.get("security_model") == "pool":
        fail("security_model 'pool' is not supported by Corral")


def validate_on_node(hvp: dict[str, Any]) -> None:
    """Node-side checks beyond files: the security domain user exists.

    Raises :class:`errors.HypervisorError`.
    """
    if hvp.get("security_model") == "user" and hvp.get("security_domain"):
        try:
            pwd.getpwnam(str(hvp["security_domain"]))
        except KeyError:
            raise errors.HypervisorError(
                f"Unknown user '{hvp['security_domain']}' (security_domain)") from None
