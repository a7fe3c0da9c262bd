"""A guest kernel and initrd for KVM instances, built from Debian's packages.

Corral's KVM instances boot a kernel directly (hvparams ``kernel_path`` and
``initrd_path``), as Ganeti's ``/boot/vmlinuz-3-kvmU`` set-up does. This
module makes that kernel on a node without downloading anything but Debian
packages: it fetches the image package that ``linux-image-cloud-amd64``
depends on with ``apt-get download``, unpacks it with ``dpkg -x``, copies the
kernel and builds a small initrd (cpio ``newc``, gzip) from ``busybox-static``
holding the modules needed to mount ``root=/dev/vda`` (Debian builds
``virtio_blk``/``virtio_pci`` as modules).

Files (below the node's state root)::

    var/lib/corral/guest/vmlinuz      the kernel
    var/lib/corral/guest/initrd.img   the initrd
    var/lib/corral/guest/version      the kernel version they belong to
"""

from __future__ import annotations

import gzip
import logging
import lzma
import os
import re
import shutil
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from corral import errors
from corral.paths import Paths
from corral.process import run_command

log = logging.getLogger(__name__)

META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

# Modules the initrd loads (with their dependencies, when they are modules
# and not built in). The first group is needed to mount root=/dev/vda; the
# second makes the guest useful under Corral: NICs, memory ballooning and the
# ACPI power button (so ``system_powerdown`` reaches a busybox acpid).
ROOT_MODULES = ("virtio", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
                "virtio_pci", "virtio_blk", "crc16", "crc32c_generic", "mbcache", "jbd2",
                "ext4")
EXTRA_MODULES = ("virtio_net", "virtio_balloon", "virtio_scsi", "button", "evdev")

_APT_TIMEOUT = 600
_INITRD_INIT = r"""#!/bin/busybox sh
# Corral guest initrd: load the disk drivers, mount root= and switch_root.
/bin/busybox mkdir -p /proc /sys /dev /newroot /sbin /usr/bin /usr/sbin
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s

fail() {
    echo "corral-initrd: ERROR: $*" > /dev/console
    echo "corral-initrd: cannot boot; starting a shell on the console" > /dev/console
    while true; do setsid cttyhack sh; sleep 1; done
}

for mod in $(cat /etc/corral-modules); do
    insmod "/lib/modules/$mod.ko" 2>/dev/null || echo "corral-initrd: insmod $mod failed" > /dev/console
done

root=""; rootmode="ro"; rootfstype=""; rootflags=""; init="/sbin/init"; rootdelay=30
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root="${arg#root=}" ;;
        rootfstype=*) rootfstype="${arg#rootfstype=}" ;;
        rootflags=*) rootflags="${arg#rootflags=}" ;;
        rootdelay=*) rootdelay="${arg#rootdelay=}" ;;
        init=*) init="${arg#init=}" ;;
        ro) rootmode="ro" ;;
        rw) rootmode="rw" ;;
    esac
done
[ -n "$root" ] || fail "no root= on the kernel command line"

dev=""
i=0
while [ "$i" -lt $((rootdelay * 10)) ]; do
    case "$root" in
        UUID=*|LABEL=*) dev="$(findfs "$root" 2>/dev/null)" ;;
        *) [ -b "$root" ] && dev="$root" ;;
    esac
    [ -n "$dev" ] && break
    usleep 100000
    i=$((i + 1))
done
[ -n "$dev" ] || fail "root device $root did not appear within ${rootdelay}s"

opts="$rootmode"
[ -n "$rootflags" ] && opts="$opts,$rootflags"
if [ -n "$rootfstype" ]; then
    mount -t "$rootfstype" -o "$opts" "$dev" /newroot || fail "cannot mount $dev ($rootfstype)"
else
    mount -o "$opts" "$dev" /newroot || fail "cannot mount $dev"
fi
[ -x "/newroot$init" ] || [ -L "/newroot$init" ] || fail "$init not found on $dev"

mount --move /dev /newroot/dev 2>/dev/null || umount /dev
umount /sys
umount /proc
exec switch_root /newroot "$init"
fail "switch_root to $dev failed"
"""


@dataclass(frozen=True)
class GuestKernel:
    """A guest kernel on this node: real paths and the kernel version."""

    kernel_path: Path
    initrd_path: Path
    version: str


def guest_dir(paths: Paths) -> Path:
    """Directory of the guest kernel files (``var/lib/corral/guest``)."""
    return paths.data_dir / "guest"


def guest_kernel_paths(paths: Paths) -> GuestKernel:
    """Where the guest kernel lives on this node; ``version`` is "" when
    :func:`prepare_guest_kernel` has not run yet."""
    d = guest_dir(paths)
    version_file = d / "version"
    version = version_file.read_text().strip() if version_file.exists() else ""
    return GuestKernel(d / "vmlinuz", d / "initrd.img", version)


def prepare_guest_kernel(paths: Paths, work_dir: str | os.PathLike[str] | None = None
                         ) -> GuestKernel:
    """Make sure the guest kernel and initrd exist on this node.

    Resolves the image package ``linux-image-cloud-amd64`` depends on (running
    ``apt-get update`` only when apt knows nothing about it), and does nothing
    more when the files already exist for that kernel version. Otherwise
    downloads the package (``apt-get download``), unpacks it (``dpkg -x``)
    into a temporary directory below ``work_dir`` (default: the system's),
    copies the kernel and builds the initrd.

    Returns the :class:`GuestKernel`. Raises :class:`errors.HypervisorError`
    (``ECODE_ENVIRON``) when a package cannot be found or unpacked, or the
    kernel or busybox are missing.
    """
    current = guest_kernel_paths(paths)
    try:
        package = resolve_image_package()
    except errors.HypervisorError:
        if _complete(current):
            log.warning("cannot resolve %s; keeping guest kernel %s", META_PACKAGE,
                        current.version)
            return current
        raise
    version = package.removeprefix("linux-image-")
    if _complete(current) and current.version == version:
        return current

    target = guest_dir(paths)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="corral-guestkernel-", dir=work_dir) as tmp:
        tmpdir = Path(tmp)
        deb = _download(package, tmpdir)
        tree = tmpdir / "tree"
        res = run_command(["dpkg", "-x", str(deb), str(tree)], timeout=_APT_TIMEOUT)
        if res.failed:
            raise errors.HypervisorError(
                f"dpkg -x {deb.name} failed: {res.fail_reason()}: {res.stderr.strip()}",
                errors.ECODE_ENVIRON)
        kernels = sorted((tree / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise errors.HypervisorError(f"{deb.name} holds no /boot/vmlinuz-*",
                                         errors.ECODE_ENVIRON)
        kversion = kernels[-1].name.removeprefix("vmlinuz-")
        moddir = tree / "lib/modules" / kversion
        if not moddir.is_dir():
            moddir = tree / "usr/lib/modules" / kversion
        initrd = build_initrd(moddir, find_busybox(),
                              ROOT_MODULES, EXTRA_MODULES)
        _atomic_write(target / "vmlinuz", kernels[-1].read_bytes(), 0o644)
        _atomic_write(target / "initrd.img", initrd, 0o644)
        _atomic_write(target / "version", (version + "\n").encode(), 0o644)
    log.info("guest kernel %s ready in %s", version, target)
    return guest_kernel_paths(paths)


def _complete(gk: GuestKernel) -> bool:
    return bool(gk.version) and gk.kernel_path.is_file() and gk.initrd_path.is_file()


def resolve_image_package() -> str:
    """Name of the kernel image package ``linux-image-cloud-amd64`` depends on.

    Runs ``apt-get update`` once when apt-cache knows nothing about it.
    Raises :class:`errors.HypervisorError` (``ECODE_ENVIRON``).
    """
    pkg = _depends_of(META_PACKAGE)
    if pkg is None:
        log.info("apt-cache knows no %s; running apt-get update", META_PACKAGE)
        res = run_command(["apt-get", "update"], timeout=_APT_TIMEOUT)
        if res.failed:
            raise errors.HypervisorError(
                f"apt-get update failed: {res.fail_reason()}: {res.stderr.strip()[-500:]}",
                errors.ECODE_ENVIRON)
        pkg = _depends_of(META_PACKAGE)
    if pkg is None:
        raise errors.HypervisorError(
            f"Cannot find the kernel package {META_PACKAGE} depends on", errors.ECODE_ENVIRON)
    return pkg


def _depends_of(meta: str) -> str | None:
    try:
        res = run_command(["apt-cache", "depends", meta], timeout=120)
    except OSError as err:
        raise errors.HypervisorError(f"apt-cache cannot run: {err}",
                                     errors.ECODE_ENVIRON) from err
    if res.failed:
        return None
    for line in res.stdout.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if m:
            return m.group(1)
    return None


def _download(package: str, directory: Path) -> Path:
    res = run_command(["apt-get", "download", package], timeout=_APT_TIMEOUT, cwd=directory)
    debs = sorted(directory.glob(f"{package}_*.deb"))
    if res.failed or not debs:
        raise errors.HypervisorError(
            f"apt-get download {package} failed: {res.fail_reason()}: "
            f"{res.stderr.strip()[-500:]}", errors.ECODE_ENVIRON)
    return debs[0]


def find_busybox() -> Path:
    """A statically linked busybox (package ``busybox-static``).

    Raises :class:`errors.HypervisorError` (``ECODE_ENVIRON``) if none exists.
    """
    for cand in BUSYBOX_CANDIDATES:
        p = Path(cand)
        if p.is_file() and is_static_elf(p.read_bytes()):
            return p
    raise errors.HypervisorError(
        "No statically linked busybox found; install the busybox-static package",
        errors.ECODE_ENVIRON)


# -- kernel modules ---------------------------------------------------------------

def _mod_name(filename: str) -> str:
    name = filename
    for suffix in (".ko.xz", ".ko.gz", ".ko.zst", ".ko"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")


def index_modules(moddir: Path) -> dict[str, Path]:
    """Module name (with ``_``) -> file, for every module below ``moddir``."""
    out: dict[str, Path] = {}
    for p in (moddir / "kernel").rglob("*.ko*"):
        out[_mod_name(p.name)] = p
    return out


def builtin_modules(moddir: Path) -> set[str]:
    """Names of the modules built into the kernel (``modules.builtin``)."""
    f = moddir / "modules.builtin"
    if not f.exists():
        return set()
    return {_mod_name(Path(line.strip()).name) for line in f.read_text().splitlines()
            if line.strip()}


def read_module_bytes(path: Path) -> bytes:
    """Uncompressed contents of a module file (``.ko``, ``.ko.xz``, ``.ko.gz``)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        raise errors.HypervisorError(f"zstd-compressed module {path.name} is not supported",
                                     errors.ECODE_ENVIRON)
    return data


def elf_section(data: bytes, wanted: str) -> bytes | None:
    """Contents of section ``wanted`` of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if not shoff or shstrndx >= shnum:
        return None

    def header(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name = struct.unpack_from("<I", data, base)[0]
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, offset, size

    _, str_off, str_size = header(shstrndx)
    strtab = data[str_off:str_off + str_size]
    for i in range(shnum):
        name_off, off, size = header(i)
        end = strtab.find(b"\0", name_off)
        if strtab[name_off:end].decode("ascii", "replace") == wanted:
            return data[off:off + size]
    return None


def is_static_elf(data: bytes) -> bool:
    """True for an ELF executable without a program interpreter (static)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        if struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 3:  # PT_INTERP
            return False
    return True


def module_depends(data: bytes) -> list[str]:
    """The ``depends=`` list of a module's ``.modinfo`` section."""
    info = elf_section(data, ".modinfo") or b""
    for entry in info.split(b"\0"):
        if entry.startswith(b"depends="):
            value = entry[len(b"depends="):].decode("ascii", "replace")
            return [d.replace("-", "_") for d in value.split(",") if d]
    return []


def _modules_dep(moddir: Path) -> dict[str, list[str]] | None:
    """Dependencies from ``modules.dep`` when the package ships one."""
    f = moddir / "modules.dep"
    if not f.exists():
        return None
    out: dict[str, list[str]] = {}
    for line in f.read_text().splitlines():
        mod, _, deps = line.partition(":")
        out[_mod_name(Path(mod).name)] = [_mod_name(Path(d).name) for d in deps.split()]
    return out


def resolve_modules(moddir: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()
                    ) -> list[tuple[str, Path]]:
    """Modules to load, dependencies first: ``[(name, file)]``.

    Built-in modules are left out; ``required`` names that are neither built
    in nor present in ``moddir`` are skipped with a log line (the kernel may
    have them under another configuration), ``optional`` ones silently.
    Dependencies come from ``modules.dep`` if present, else from each
    module's ``.modinfo`` section.
    """
    index = index_modules(moddir)
    builtin = builtin_modules(moddir)
    depfile = _modules_dep(moddir)
    order: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def deps_of(name: str) -> list[str]:
        if depfile is not None and name in depfile:
            return depfile[name]
        return module_depends(read_module_bytes(index[name]))

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in seen or name in builtin or name not in index:
            return
        if name in stack:
            raise errors.HypervisorError(f"Module dependency cycle: {' -> '.join(stack)}",
                                         errors.ECODE_ENVIRON)
        for dep in deps_of(name):
            visit(dep, stack + (name,))
        seen.add(name)
        order.append((name, index[name]))

    for name in required:
        if name not in index and name not in builtin:
            log.info("module %s is neither built in nor present; skipped", name)
        visit(name, ())
    for name in optional:
        visit(name, ())
    return order


# -- initrd -----------------------------------------------------------------------

class CpioWriter:
    """A cpio archive in the ``newc`` format, as the kernel's initramfs reads it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1
        self._dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        name_b = name.encode() + b"\0"
        header = "070701" + "".join(f"{v:08X}" for v in (
            self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
        self._ino += 1
        buf = header.encode() + name_b
        buf += b"\0" * (-len(buf) % 4)
        buf += data
        buf += b"\0" * (-len(buf) % 4)
        self._parts.append(buf)

    def add_dir(self, name: str, perm: int = 0o755) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._dirs:
                self._dirs.add(d)
                self._entry(d, stat.S_IFDIR | perm, nlink=2)

    def add_file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        name = name.strip("/")
        if "/" in name:
            self.add_dir(name.rsplit("/", 1)[0])
        self._entry(name, stat.S_IFREG | perm, data)

    def add_symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        if "/" in name:
            self.add_dir(name.rsplit("/", 1)[0])
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def add_device(self, name: str, char: bool, major: int, minor: int,
                   perm: int = 0o600) -> None:
        name = name.strip("/")
        name_b = name.encode() + b"\0"
        mode = (stat.S_IFCHR if char else stat.S_IFBLK) | perm
        header = "070701" + "".join(f"{v:08X}" for v in (
            self._ino, mode, 0, 0, 1, 0, 0, 0, 0, major, minor, len(name_b), 0))
        self._ino += 1
        buf = header.encode() + name_b
        buf += b"\0" * (-len(buf) % 4)
        self._parts.append(buf)

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, nlink=1)
        data = b"".join(self._parts)
        return data + b"\0" * (-len(data) % 512)


def build_initrd(moddir: Path, busybox: Path, required: tuple[str, ...],
                 optional: tuple[str, ...] = ()) -> bytes:
    """A gzip-compressed cpio initrd: busybox, the resolved modules, ``/init``.

    ``/etc/corral-modules`` lists the modules in load order. Returns the
    compressed bytes.
    """
    mods = resolve_modules(moddir, required, optional)
    cpio = CpioWriter()
    for d in ("bin", "dev", "etc", "lib/modules", "newroot", "proc", "sys", "sbin",
              "usr/bin", "usr/sbin"):
        cpio.add_dir(d)
    cpio.add_device("dev/console", True, 5, 1)
    cpio.add_device("dev/null", True, 1, 3, 0o666)
    cpio.add_file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.add_symlink("bin/sh", "busybox")
    for name, path in mods:
        cpio.add_file(f"lib/modules/{name}.ko", read_module_bytes(path))
    cpio.add_file("etc/corral-modules", "".join(f"{n}\n" for n, _ in mods).encode())
    cpio.add_file("init", _INITRD_INIT.encode(), 0o755)
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def copy_guest_kernel(gk: GuestKernel, dest: Path) -> GuestKernel:
    """Copy a prepared guest kernel to another directory (e.g. another node's root)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(gk.kernel_path, dest / "vmlinuz")
    shutil.copy2(gk.initrd_path, dest / "initrd.img")
    (dest / "version").write_text(gk.version + "\n")
    return GuestKernel(dest / "vmlinuz", dest / "initrd.img", gk.version)
