"""File and sharedfile disks: real files below a tmp_path state root."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import constants as C
from corral import errors
from corral.objects import Disk
from corral.paths import Paths
from corral.process import run_command
from corral.storage import LDS_OKAY, get_device
from corral.storage import file as file_mod
from corral.storage.file import FileDevice

MIB = 1024 * 1024
ALLOWED = ["/srv/corral/file-storage", "/srv/corral/shared-file-storage"]


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "root")
    for a in ALLOWED:
        p.real(a).mkdir(parents=True)
    return p


def file_disk(vpath: str, dev_type: str = C.DT_FILE, driver: str = C.FD_LOOP) -> Disk:
    return Disk(dev_type=dev_type, logical_id=[driver, vpath], size=4)


def allocated(path: str | Path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.mark.parametrize("dev_type", [C.DT_FILE, C.DT_SHARED_FILE])
def test_create_preallocates(paths: Paths, dev_type: str) -> None:
    vpath = f"{ALLOWED[0]}/inst1/uuid.{dev_type}.disk0"
    dev = get_device(file_disk(vpath, dev_type), paths, ALLOWED)
    assert isinstance(dev, FileDevice)
    real = dev.create(8)
    assert real == str(paths.real(vpath))
    assert os.path.getsize(real) == 8 * MIB
    assert allocated(real) >= 8 * MIB        # preallocated, not sparse
    assert dev.get_size() == 8 * MIB
    assert dev.find() == {"dev_path": real, "size": 8, "is_degraded": False,
                          "ldisk_status": LDS_OKAY}
    assert dev.assemble() == real
    dev.shutdown()                            # no-op for files
    assert os.path.exists(real)


def test_create_zero_size(paths: Paths) -> None:
    dev = get_device(file_disk(f"{ALLOWED[0]}/i/empty"), paths, ALLOWED)
    dev.create(0)
    assert dev.get_size() == 0


def test_create_existing_refused(paths: Paths) -> None:
    dev = get_device(file_disk(f"{ALLOWED[0]}/i/d0"), paths, ALLOWED)
    dev.create(1)
    with pytest.raises(errors.BlockDeviceError, match="already exists") as exc:
        dev.create(1)
    assert exc.value.ecode == errors.ECODE_EXISTS


def test_create_bad_size(paths: Paths) -> None:
    dev = get_device(file_disk(f"{ALLOWED[0]}/i/d0"), paths, ALLOWED)
    with pytest.raises(errors.BlockDeviceError, match="Invalid disk size"):
        dev.create(-1)
    assert not os.path.exists(dev.dev_path)


def test_fallback_without_fallocate(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem without fallocate support gets zeros written instead."""
    def no_fallocate(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(file_mod, "fallocate", no_fallocate)
    dev = get_device(file_disk(f"{ALLOWED[0]}/i/d0"), paths, ALLOWED)
    real = dev.create(3)
    assert os.path.getsize(real) == 3 * MIB
    assert allocated(real) >= 3 * MIB
    with open(real, "rb") as fh:
        assert fh.read() == bytes(3 * MIB)
    dev.grow(2)
    assert os.path.getsize(real) == 5 * MIB
    assert allocated(real) >= 5 * MIB


def test_no_space_cleans_up(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(file_mod, "fallocate", full)
    dev = get_device(file_disk(f"{ALLOWED[0]}/i/d0"), paths, ALLOWED)
    with pytest.raises(errors.BlockDeviceError, match="No space left") as exc:
        dev.create(10)
    assert exc.value.ecode == errors.ECODE_NORES
    assert not os.path.exists(dev.dev_path)


def test_remove(paths: Paths) -> None:
    dev = get_device(file_disk(f"{ALLOWED[0]}/i/d0"), paths, ALLOWED)
    dev.create(1)
    dev.remove()
    assert not os.path.exists(dev.dev_path)
    assert dev.find() is None
    dev.remove()                              # missing file is success


def test_missing_device(paths: Paths) -> None:
    dev = get_device(file_disk(f"{ALLOWED[0]}/i/none"), paths, ALLOWED)
    assert dev.find() is None
    with pytest.raises(errors.BlockDeviceError, match="does not exist"):
        dev.assemble()
    with pytest.raises(errors.BlockDeviceError, match="does not exist"):
        dev.grow(1)
    with pytest.raises(errors.BlockDeviceError, match="does not exist"):
        dev.get_size()


def test_not_a_regular_file(paths: Paths) -> None:
    vpath = f"{ALLOWED[0]}/i/adir"
    paths.real(vpath).mkdir(parents=True)
    dev = get_device(file_disk(vpath), paths, ALLOWED)
    with pytest.raises(errors.BlockDeviceError, match="not a regular file"):
        dev.find()


def test_grow(paths: Paths) -> None:
    dev = get_device(file_disk(f"{ALLOWED[0]}/i/d0"), paths, ALLOWED)
    real = dev.create(2)
    with open(real, "r+b") as fh:
        fh.write(b"keep me")
    dev.grow(3, dryrun=True)
    assert os.path.getsize(real) == 2 * MIB
    dev.grow(3)
    assert os.path.getsize(real) == 5 * MIB
    assert allocated(real) >= 5 * MIB
    assert dev.find()["size"] == 5  # type: ignore[index]
    with open(real, "rb") as fh:
        assert fh.read(7) == b"keep me"
    with pytest.raises(errors.BlockDeviceError, match="Invalid grow amount"):
        dev.grow(-1)


@pytest.fixture
def small_fs(paths: Paths) -> Iterator[Path]:
    """A 32 MiB tmpfs mounted as the first allowed file storage directory."""
    mnt = paths.real(ALLOWED[0])
    res = run_command(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)],
                      timeout=30)
    assert not res.failed, res.output
    try:
        yield mnt
    finally:
        run_command(["umount", str(mnt)], timeout=30)


def free_mib(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // MIB


def test_grow_refuses_beyond_free_space(paths: Paths, small_fs: Path) -> None:
    dev = get_device(file_disk(f"{ALLOWED[0]}/i/d0"), paths, ALLOWED)
    real = dev.create(8)
    for dryrun in (True, False):
        with pytest.raises(errors.BlockDeviceError, match="Not enough disk space") as exc:
            dev.grow(64, dryrun=dryrun)
        assert exc.value.ecode == errors.ECODE_NORES
        assert os.path.getsize(real) == 8 * MIB
    with pytest.raises(errors.BlockDeviceError) as exc:
        get_device(file_disk(f"{ALLOWED[0]}/i/d1"), paths, ALLOWED).create(64)
    assert exc.value.ecode == errors.ECODE_NORES
    assert not paths.real(f"{ALLOWED[0]}/i/d1").exists()


def test_grow_allocates_punched_holes(paths: Paths, small_fs: Path) -> None:
    """A file whose blocks were discarded (mkfs without nodiscard) counts its
    holes as needed space, and a grow allocates them again."""
    dev = get_device(file_disk(f"{ALLOWED[0]}/i/d0"), paths, ALLOWED)
    real = dev.create(16)
    res = run_command(["fallocate", "--punch-hole", "-o", "0", "-l", str(16 * MIB), real],
                      timeout=30)
    assert not res.failed, res.output
    assert allocated(real) == 0
    filler = small_fs / "filler"
    with open(filler, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, 12 * MIB)
    free = free_mib(small_fs)
    assert 8 < free < 16 + 8            # the 8 MiB grow fits only if holes are ignored
    with pytest.raises(errors.BlockDeviceError, match="Not enough disk space") as exc:
        dev.grow(8)
    assert exc.value.ecode == errors.ECODE_NORES
    assert os.path.getsize(real) == 16 * MIB
    dev.grow(2)
    assert os.path.getsize(real) == 18 * MIB
    assert allocated(real) >= 18 * MIB


def test_rename(paths: Paths) -> None:
    disk = file_disk(f"{ALLOWED[0]}/old/d0")
    dev = get_device(disk, paths, ALLOWED)
    old_real = dev.create(1)
    new_id = [C.FD_LOOP, f"{ALLOWED[0]}/new/d0"]
    dev.rename(new_id)
    assert not os.path.exists(old_real)
    assert dev.dev_path == str(paths.real(new_id[1]))
    assert os.path.getsize(dev.dev_path) == MIB
    assert disk.logical_id == new_id
    dev.rename(new_id)                        # same id: nothing to do

    other = get_device(file_disk(f"{ALLOWED[0]}/x/d1"), paths, ALLOWED)
    other.create(1)
    with pytest.raises(errors.BlockDeviceError, match="target exists"):
        other.rename(new_id)
    with pytest.raises(errors.BlockDeviceError, match="not below the allowed"):
        other.rename([C.FD_LOOP, "/tmp/elsewhere"])
    ghost = get_device(file_disk(f"{ALLOWED[0]}/x/ghost"), paths, ALLOWED)
    with pytest.raises(errors.BlockDeviceError, match="does not exist"):
        ghost.rename([C.FD_LOOP, f"{ALLOWED[0]}/x/ghost2"])


# -- confinement ----------------------------------------------------------------------
@pytest.mark.parametrize("vpath, fragment", [
    (f"{ALLOWED[0]}/../../../etc/passwd", "'..'"),
    (f"{ALLOWED[0]}/i/../../escape", "'..'"),
    ("/etc/corral-disk", "not below the allowed"),
    ("/srv/corral/file-storage-evil/d0", "not below the allowed"),
    (ALLOWED[0], "not below the allowed"),
    ("relative/path", "not absolute"),
])
def test_confinement_refused(paths: Paths, vpath: str, fragment: str) -> None:
    with pytest.raises(errors.BlockDeviceError, match=fragment) as exc:
        get_device(file_disk(vpath), paths, ALLOWED)
    assert exc.value.ecode == errors.ECODE_INVAL


def test_symlink_escape_refused(paths: Paths, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, paths.real(f"{ALLOWED[0]}/link"))
    with pytest.raises(errors.BlockDeviceError, match="outside the allowed"):
        get_device(file_disk(f"{ALLOWED[0]}/link/d0"), paths, ALLOWED)
    # a disk file that is itself a symlink to outside is refused too
    os.symlink(outside / "target", paths.real(f"{ALLOWED[0]}/d-link"))
    with pytest.raises(errors.BlockDeviceError, match="outside the allowed"):
        get_device(file_disk(f"{ALLOWED[0]}/d-link"), paths, ALLOWED)
    assert list(outside.iterdir()) == []


def test_nothing_allowed(paths: Paths) -> None:
    with pytest.raises(errors.BlockDeviceError, match="no file storage directories"):
        get_device(file_disk(f"{ALLOWED[0]}/i/d0"), paths, [])


@pytest.mark.parametrize("logical_id, fragment", [
    (["loop"], "expected \\[driver, path\\]"),
    ("loop:/srv/x", "expected \\[driver, path\\]"),
    (["nbd", f"{ALLOWED[0]}/d"], "Invalid file driver"),
])
def test_bad_logical_id(paths: Paths, logical_id: object, fragment: str) -> None:
    disk = Disk(dev_type=C.DT_FILE, logical_id=[], size=1)
    disk.logical_id = logical_id  # type: ignore[assignment]
    with pytest.raises(errors.BlockDeviceError, match=fragment):
        get_device(disk, paths, ALLOWED)


def test_other_drivers_accepted(paths: Paths) -> None:
    dev = get_device(file_disk(f"{ALLOWED[0]}/i/d0", driver=C.FD_BLKTAP2), paths, ALLOWED)
    dev.create(1)
    assert dev.find() is not None
