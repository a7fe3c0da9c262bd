"""Guest kernel and initrd preparation (corral.guestkernel)."""

from __future__ import annotations

import gzip
import lzma
import os
import struct
from pathlib import Path

import pytest

from corral import errors
from corral.guestkernel import (
    CpioWriter,
    GuestKernel,
    build_initrd,
    elf_section,
    guest_kernel_paths,
    is_static_elf,
    module_depends,
    prepare_guest_kernel,
    resolve_modules,
)
from corral.paths import Paths
from corral.process import run_command


def fake_module(depends: list[str]) -> bytes:
    """A minimal 64-bit ELF whose .modinfo says ``depends=...``."""
    modinfo = b"license=GPL\0depends=" + ",".join(depends).encode() + b"\0"
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    data_off = 64
    str_off = data_off + len(modinfo)
    sh_off = str_off + len(shstrtab)
    header = bytearray(64)
    header[:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<Q", header, 0x28, sh_off)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 2)

    def sh(name: int, off: int, size: int) -> bytes:
        out = bytearray(64)
        struct.pack_into("<II", out, 0, name, 1)
        struct.pack_into("<QQ", out, 0x18, off, size)
        return bytes(out)

    return (bytes(header) + modinfo + shstrtab + sh(0, 0, 0) + sh(1, data_off, len(modinfo))
            + sh(10, str_off, len(shstrtab)))


def test_elf_modinfo_depends() -> None:
    data = fake_module(["virtio", "virtio_ring"])
    assert elf_section(data, ".modinfo").startswith(b"license=GPL")
    assert elf_section(data, ".text") is None
    assert module_depends(data) == ["virtio", "virtio_ring"]
    assert module_depends(fake_module([])) == []
    assert elf_section(b"not an elf", ".modinfo") is None


def test_static_busybox_detected() -> None:
    assert is_static_elf(Path("/bin/busybox").read_bytes())
    assert not is_static_elf(Path("/bin/ls").read_bytes())


@pytest.fixture
def moddir(tmp_path: Path) -> Path:
    d = tmp_path / "lib/modules/6.1.0-test"
    k = d / "kernel"
    (k / "drivers/virtio").mkdir(parents=True)
    (k / "drivers/block").mkdir(parents=True)
    (k / "crypto").mkdir(parents=True)
    (k / "drivers/virtio/virtio_ring.ko").write_bytes(fake_module([]))
    (k / "drivers/virtio/virtio.ko").write_bytes(fake_module(["virtio_ring"]))
    (k / "drivers/virtio/virtio_pci_modern_dev.ko").write_bytes(fake_module([]))
    (k / "drivers/virtio/virtio_pci.ko.xz").write_bytes(
        lzma.compress(fake_module(["virtio_pci_modern_dev", "virtio", "virtio_ring"])))
    (k / "drivers/block/virtio_blk.ko").write_bytes(fake_module(["virtio", "virtio_ring"]))
    (k / "crypto/crc32c-intel.ko").write_bytes(fake_module([]))
    (d / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n")
    return d


def test_resolve_modules_orders_dependencies_first(moddir: Path) -> None:
    mods = resolve_modules(moddir, ("virtio_blk", "virtio_pci", "ext4", "jbd2", "missing"),
                           ("crc32c_intel", "absent"))
    names = [n for n, _ in mods]
    assert set(names) == {"virtio_ring", "virtio", "virtio_blk", "virtio_pci_modern_dev",
                          "virtio_pci", "crc32c_intel"}
    for before, after in [("virtio_ring", "virtio"), ("virtio", "virtio_blk"),
                          ("virtio_pci_modern_dev", "virtio_pci"), ("virtio", "virtio_pci")]:
        assert names.index(before) < names.index(after)
    assert "ext4" not in names        # built in


def test_modules_dep_file_wins(moddir: Path) -> None:
    (moddir / "modules.dep").write_text(
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko\n")
    assert [n for n, _ in resolve_modules(moddir, ("virtio_blk",))] == [
        "virtio_pci_modern_dev", "virtio_blk"]


def test_dependency_cycle_is_an_error(moddir: Path) -> None:
    (moddir / "kernel/drivers/virtio/virtio_ring.ko").write_bytes(fake_module(["virtio_blk"]))
    with pytest.raises(errors.HypervisorError, match="cycle"):
        resolve_modules(moddir, ("virtio_blk",))


def extract(initrd: bytes, dest: Path) -> None:
    dest.mkdir()
    res = run_command(["busybox", "cpio", "-i", "-d", "-m"], timeout=30, cwd=dest,
                      input_data=gzip.decompress(initrd))
    assert not res.failed, res.output


def test_cpio_writer_roundtrip(tmp_path: Path) -> None:
    w = CpioWriter()
    w.add_file("etc/a/b.txt", b"hello", 0o640)
    w.add_symlink("bin/sh", "busybox")
    w.add_dir("empty")
    extract(gzip.compress(w.finish()), tmp_path / "out")
    assert (tmp_path / "out/etc/a/b.txt").read_bytes() == b"hello"
    assert os.stat(tmp_path / "out/etc/a/b.txt").st_mode & 0o777 == 0o640
    assert os.readlink(tmp_path / "out/bin/sh") == "busybox"
    assert (tmp_path / "out/empty").is_dir()


def test_build_initrd_contents(moddir: Path, tmp_path: Path) -> None:
    initrd = build_initrd(moddir, Path("/bin/busybox"), ("virtio_blk", "virtio_pci"))
    extract(initrd, tmp_path / "initrd")
    root = tmp_path / "initrd"
    order = (root / "etc/corral-modules").read_text().split()
    assert order[-1] in ("virtio_blk", "virtio_pci")
    for name in order:
        assert (root / f"lib/modules/{name}.ko").read_bytes()[:4] == b"\x7fELF"
    init = (root / "init").read_text()
    assert os.access(root / "init", os.X_OK)
    assert "switch_root" in init and "root=" in init and "insmod" in init
    assert (root / "bin/busybox").stat().st_size > 100000


def test_guest_kernel_paths_before_prepare(tmp_path: Path) -> None:
    gk = guest_kernel_paths(Paths.from_env(tmp_path))
    assert gk == GuestKernel(tmp_path / "var/lib/corral/guest/vmlinuz",
                             tmp_path / "var/lib/corral/guest/initrd.img", "")


@pytest.mark.kvm
def test_prepare_guest_kernel_is_idempotent(guest_kernel: GuestKernel, tmp_path: Path) -> None:
    assert guest_kernel.version.endswith("-cloud-amd64")
    assert guest_kernel.kernel_path.read_bytes()[0x202:0x206] == b"HdrS"   # bzImage
    mtime = guest_kernel.initrd_path.stat().st_mtime_ns
    root = guest_kernel.kernel_path.parents[4]
    again = prepare_guest_kernel(Paths.from_env(root))
    assert again == guest_kernel
    assert guest_kernel.initrd_path.stat().st_mtime_ns == mtime
    extract(guest_kernel.initrd_path.read_bytes(), tmp_path / "initrd")
    order = (tmp_path / "initrd/etc/corral-modules").read_text().split()
    assert {"virtio_blk", "virtio_pci", "virtio", "virtio_ring"} <= set(order)
    assert order.index("virtio") < order.index("virtio_pci")
    assert order.index("virtio") < order.index("virtio_blk")


@pytest.mark.kvm
def test_prepare_guest_kernel_in_fresh_root(guest_kernel: GuestKernel, tmp_path: Path) -> None:
    gk = prepare_guest_kernel(Paths.from_env(tmp_path), work_dir=tmp_path)
    assert gk.version == guest_kernel.version
    assert gk.kernel_path == tmp_path / "var/lib/corral/guest/vmlinuz"
    assert gk.kernel_path.read_bytes() == guest_kernel.kernel_path.read_bytes()
    assert gzip.decompress(gk.initrd_path.read_bytes())[:6] == b"070701"
    assert [p.name for p in tmp_path.iterdir()] == ["var"]    # temp dir removed


def test_download_of_unknown_package_fails_clearly(tmp_path: Path) -> None:
    from corral.guestkernel import _download
    with pytest.raises(errors.HypervisorError, match="apt-get download") as exc:
        _download("corral-no-such-package", tmp_path)
    assert exc.value.ecode == errors.ECODE_ENVIRON
