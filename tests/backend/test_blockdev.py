"""Node-side block device and file storage directory procedures, on real files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import errors
from corral.backend import blockdev as bd
from corral.objects import Disk
from corral.paths import Paths

MIB = 1024 * 1024
FS = "/srv/corral/file-storage"
SFS = "/srv/corral/shared-file-storage"


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "root")
    p.ensure_dirs()
    p.file_storage_paths.write_text(f"# allowed file storage\n\n{FS}\n{SFS}\n")
    return p


def disk_dict(vpath: str, size: int = 2, dev_type: str = C.DT_FILE) -> dict[str, Any]:
    return Disk(dev_type=dev_type, logical_id=[C.FD_LOOP, vpath], size=size,
                iv_name="disk/0").to_dict()


INST = {"name": "inst1.example.com"}


# -- allowed directories ------------------------------------------------------------
def test_allowed_dirs(paths: Paths) -> None:
    paths.file_storage_paths.write_text(
        "# comment\n\n /srv/a \nrelative/dir\n/srv/../etc\n/etc\n/etc/corral\n/usr/lib\n"
        "/usr/local/bin/x\n/\n/srv/b/\n/home\n/boot/x\n")
    assert bd.allowed_file_storage_dirs(paths) == ["/srv/a", "/srv/b"]


def test_no_paths_file_allows_nothing(paths: Paths) -> None:
    paths.file_storage_paths.unlink()
    assert bd.allowed_file_storage_dirs(paths) == []
    with pytest.raises(errors.RPCFail, match="no file storage directories"):
        bd.blockdev_create(paths, disk_dict(f"{FS}/i/d0"), 1, "i", True, "", False)
    with pytest.raises(errors.RPCFail, match="no file storage directories"):
        bd.file_storage_dir_create(paths, f"{FS}/i")
    assert list(paths.real(FS).iterdir()) == []


# -- block devices --------------------------------------------------------------------
def test_create_assemble_shutdown_remove(paths: Paths) -> None:
    disk = disk_dict(f"{FS}/inst1/d0", size=2)
    real = bd.blockdev_create(paths, disk, 2, "inst1", True, "info", False)
    assert real == str(paths.real(f"{FS}/inst1/d0"))
    assert os.path.getsize(real) == 2 * MIB

    link, uri = bd.blockdev_assemble(paths, disk, INST, True, 0)
    assert uri is None
    assert link == str(paths.instance_disks_dir / "inst1.example.com:0")
    assert os.readlink(link) == real
    # assembling again keeps (or repairs) the link
    os.unlink(link)
    os.symlink("/wrong", link)
    assert bd.blockdev_assemble(paths, disk, INST, True, 0)[0] == link
    assert os.readlink(link) == real
    # on a secondary node: no link, the device path
    assert bd.blockdev_assemble(paths, disk, {"name": "other"}, False, 0) == [real, None]
    assert not (paths.instance_disks_dir / "other:0").exists()

    assert bd.blockdev_find(paths, disk) == {"dev_path": real, "size": 2,
                                             "is_degraded": False, "ldisk_status": 1}
    bd.blockdev_shutdown(paths, disk)
    assert not os.path.lexists(link)
    assert os.path.exists(real)

    bd.blockdev_assemble(paths, disk, INST, True, 0)
    bd.blockdev_remove(paths, disk)
    assert not os.path.exists(real)
    assert not os.path.lexists(link)
    assert bd.blockdev_find(paths, disk) is None
    bd.blockdev_remove(paths, disk)            # already gone: success


def test_create_refusals(paths: Paths) -> None:
    disk = disk_dict(f"{FS}/i/d0")
    with pytest.raises(errors.RPCFail, match="Exclusive storage"):
        bd.blockdev_create(paths, disk, 1, "i", True, "", True)
    bd.blockdev_create(paths, disk, 1, "i", True, "", False)
    with pytest.raises(errors.RPCFail, match="already exists"):
        bd.blockdev_create(paths, disk, 1, "i", True, "", False)
    with pytest.raises(errors.RPCFail, match="Disk template plain is not supported"):
        bd.blockdev_create(paths, {"dev_type": "plain", "logical_id": ["vg", "lv"],
                                   "size": 1}, 1, "i", True, "", False)
    with pytest.raises(errors.RPCFail, match="Invalid disk data"):
        bd.blockdev_create(paths, {"dev_type": "file", "size": "huge"}, 1, "i", True, "",
                           False)
    with pytest.raises(errors.RPCFail, match="Invalid disk data"):
        bd.blockdev_find(paths, ["not", "a", "dict"])  # type: ignore[arg-type]


@pytest.mark.parametrize("vpath", [f"{FS}/../../etc/shadow", "/etc/corral-disk",
                                   f"{FS}-other/d0", FS])
def test_create_outside_refused(paths: Paths, vpath: str) -> None:
    with pytest.raises(errors.RPCFail) as exc:
        bd.blockdev_create(paths, disk_dict(vpath), 1, "i", True, "", False)
    assert exc.value.ecode == errors.ECODE_INVAL


def test_assemble_missing(paths: Paths) -> None:
    with pytest.raises(errors.RPCFail, match="does not exist"):
        bd.blockdev_assemble(paths, disk_dict(f"{FS}/i/missing"), INST, True, 0)
    assert list(paths.instance_disks_dir.iterdir()) == []


def test_extra_wire_keys_tolerated(paths: Paths) -> None:
    disk = disk_dict(f"{SFS}/i/d0", dev_type=C.DT_SHARED_FILE)
    disk["forthcoming"] = False
    disk["pci"] = None
    real = bd.blockdev_create(paths, disk, 1, "i", True, "", False)
    assert real.endswith("/srv/corral/shared-file-storage/i/d0")


def test_getdimensions(paths: Paths) -> None:
    d0 = disk_dict(f"{FS}/i/d0")
    bd.blockdev_create(paths, d0, 3, "i", True, "", False)
    dims = bd.blockdev_getdimensions(paths, [d0, disk_dict(f"{FS}/i/none"),
                                             disk_dict("/etc/outside")])
    assert dims == [[3 * MIB, None], None, None]


def test_grow(paths: Paths) -> None:
    disk = disk_dict(f"{FS}/i/d0")
    real = bd.blockdev_create(paths, disk, 2, "i", True, "", False)
    bd.blockdev_grow(paths, disk, 3, True, True, False)        # dry run
    assert os.path.getsize(real) == 2 * MIB
    bd.blockdev_grow(paths, disk, 3, False, False, False)      # logical layer: no-op
    assert os.path.getsize(real) == 2 * MIB
    bd.blockdev_grow(paths, disk, 3, False, True, False)
    assert os.path.getsize(real) == 5 * MIB
    assert os.stat(real).st_blocks * 512 >= 5 * MIB
    with pytest.raises(errors.RPCFail, match="Cannot find block device"):
        bd.blockdev_grow(paths, disk_dict(f"{FS}/i/none"), 1, False, True, False)


def test_rename(paths: Paths) -> None:
    d0 = disk_dict(f"{FS}/old/d0")
    old_real = bd.blockdev_create(paths, d0, 1, "i", True, "", False)
    link, _ = bd.blockdev_assemble(paths, d0, INST, True, 0)
    new_id = [C.FD_LOOP, f"{FS}/new/d0"]
    bd.blockdev_rename(paths, [[d0, new_id]])
    assert not os.path.exists(old_real)
    assert os.path.getsize(paths.real(new_id[1])) == MIB
    assert not os.path.lexists(link)           # stale link to the old path removed
    with pytest.raises(errors.RPCFail) as exc:
        bd.blockdev_rename(paths, [[disk_dict(f"{FS}/ghost"), [C.FD_LOOP, f"{FS}/g2"]],
                                   [disk_dict(f"{FS}/new/d0"), [C.FD_LOOP, "/etc/x"]]])
    msg = str(exc.value)
    assert "Can't find device" in msg and "ghost" in msg
    assert "not below the allowed" in msg
    assert os.path.exists(paths.real(new_id[1]))


def test_symlink_escape(paths: Paths, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, paths.real(f"{FS}/evil"))
    with pytest.raises(errors.RPCFail, match="outside the allowed"):
        bd.blockdev_create(paths, disk_dict(f"{FS}/evil/d0"), 1, "i", True, "", False)
    with pytest.raises(errors.RPCFail, match="outside the allowed"):
        bd.file_storage_dir_create(paths, f"{FS}/evil/sub")
    with pytest.raises(errors.RPCFail, match="outside the allowed"):
        bd.file_storage_dir_remove(paths, f"{FS}/evil")
    assert list(outside.iterdir()) == []


# -- file storage directories ------------------------------------------------------------
def test_file_storage_dir_create_remove(paths: Paths) -> None:
    bd.file_storage_dir_create(paths, f"{FS}/inst1/sub")
    real = paths.real(f"{FS}/inst1/sub")
    assert real.is_dir()
    bd.file_storage_dir_create(paths, f"{FS}/inst1/sub")      # exists: fine
    (real / "disk").write_text("x")
    with pytest.raises(errors.RPCFail, match="Cannot remove file storage directory"):
        bd.file_storage_dir_remove(paths, f"{FS}/inst1/sub")   # not empty
    assert (real / "disk").exists()
    (real / "disk").unlink()
    bd.file_storage_dir_remove(paths, f"{FS}/inst1/sub")
    assert not real.exists()
    bd.file_storage_dir_remove(paths, f"{FS}/inst1/sub")      # missing: fine
    (paths.real(f"{FS}/afile")).write_text("x")
    with pytest.raises(errors.RPCFail, match="not a directory"):
        bd.file_storage_dir_create(paths, f"{FS}/afile")
    with pytest.raises(errors.RPCFail, match="not a directory"):
        bd.file_storage_dir_remove(paths, f"{FS}/afile")


@pytest.mark.parametrize("vpath, fragment", [
    (f"{FS}/../../../tmp/x", "'..'"),
    (f"{FS}/a/../b", "'..'"),
    ("/tmp/outside", "not below the allowed"),
    ("/srv/corral/file-storage2/x", "not below the allowed"),
    (FS, "not below the allowed"),
    ("relative", "not absolute"),
])
def test_file_storage_dir_confined(paths: Paths, vpath: str, fragment: str) -> None:
    for call in (lambda: bd.file_storage_dir_create(paths, vpath),
                 lambda: bd.file_storage_dir_remove(paths, vpath),
                 lambda: bd.file_storage_dir_rename(paths, vpath, f"{FS}/ok"),
                 lambda: bd.file_storage_dir_rename(paths, f"{FS}/ok", vpath)):
        with pytest.raises(errors.RPCFail, match=fragment) as exc:
            call()
        assert exc.value.ecode == errors.ECODE_INVAL
    assert paths.real(FS).is_dir()
    assert not (paths.root / "tmp").exists()


def test_file_storage_dir_rename(paths: Paths) -> None:
    bd.file_storage_dir_create(paths, f"{FS}/old")
    (paths.real(f"{FS}/old") / "d0").write_text("data")
    bd.file_storage_dir_rename(paths, f"{FS}/old", f"{FS}/nested/new")
    assert (paths.real(f"{FS}/nested/new") / "d0").read_text() == "data"
    assert not paths.real(f"{FS}/old").exists()
    bd.file_storage_dir_rename(paths, f"{FS}/old", f"{FS}/nested/new")   # already done
    bd.file_storage_dir_create(paths, f"{FS}/old")
    with pytest.raises(errors.RPCFail, match="both locations exist"):
        bd.file_storage_dir_rename(paths, f"{FS}/old", f"{FS}/nested/new")
    with pytest.raises(errors.RPCFail, match="not a directory"):
        bd.file_storage_dir_rename(paths, f"{FS}/missing", f"{FS}/other")


def test_link_path_refuses_bad_names(paths: Paths) -> None:
    with pytest.raises(errors.RPCFail, match="Invalid instance name"):
        bd.link_path(paths, "../x", 0)
    disk = disk_dict(f"{FS}/d")
    bd.blockdev_create(paths, disk, 1, "i", True, "", False)
    with pytest.raises(errors.RPCFail, match="Invalid instance name"):
        bd.blockdev_assemble(paths, disk, {"name": "a/b"}, True, 0)
    assert list(paths.instance_disks_dir.iterdir()) == []
