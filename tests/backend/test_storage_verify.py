"""Node side of the disk checks (file_storage_verify), on real files."""

from __future__ import annotations

import os
from typing import Any

import pytest

from corral import errors
from corral.backend import blockdev as bd
from corral.backend import storage_verify as sv
from corral.noded import dispatch
from corral.paths import Paths

from . import test_blockdev
from .test_blockdev import FS, MIB, SFS, disk_dict

# The node root with FS and SFS allowed, as in the block device tests.
paths = test_blockdev.paths


def make(paths: Paths, vpath: str, size: int = 2) -> dict[str, Any]:
    disk = disk_dict(vpath, size)
    bd.blockdev_create(paths, disk, size, "i", True, "", False)
    return disk


def test_disk_states(paths: Paths) -> None:
    ok = make(paths, f"{FS}/i1/d0")
    gone = make(paths, f"{FS}/i1/d1")
    os.unlink(paths.real(f"{FS}/i1/d1"))
    small = make(paths, f"{FS}/i1/d2", size=4)
    os.truncate(paths.real(f"{FS}/i1/d2"), MIB)
    odd = disk_dict(f"{FS}/i1/d3")
    paths.real(f"{FS}/i1/d3").mkdir()
    outside = disk_dict("/etc/passwd")
    res = sv.file_storage_verify(paths, [], [], [[d, None] for d in (ok, gone, small, odd,
                                                                     outside)], None)
    states = [(d["status"], d["size"]) for d in res["disks"]]
    assert states == [("ok", 2 * MIB), ("missing", None), ("ok", MIB), ("faulty", None),
                      ("faulty", None)]
    assert res["disks"][1]["message"] == f"{FS}/i1/d1 not found"
    assert "not a regular file" in res["disks"][3]["message"]
    assert "not below the allowed" in res["disks"][4]["message"]
    assert res["orphans"] == [] and res["orphan_count"] == 0


def test_unreadable_disk_is_faulty(paths: Paths) -> None:
    disk = make(paths, f"{FS}/i1/d0")
    real = paths.real(f"{FS}/i1/d0")
    os.chmod(real, 0)
    try:
        res = sv.file_storage_verify(paths, [], [], [[disk, None]], None)
    finally:
        os.chmod(real, 0o640)
    if os.geteuid() == 0:       # root reads anything: the file is usable
        assert res["disks"][0]["status"] == "ok"
    else:
        assert res["disks"][0]["status"] == "faulty"
        assert "not readable and writable" in res["disks"][0]["message"]


def test_links(paths: Paths) -> None:
    disk = make(paths, f"{FS}/i1/d0")
    res = sv.file_storage_verify(paths, [], [], [[disk, ["i1", 0]]], None)
    assert res["disks"][0]["link"] == "missing"
    bd.blockdev_assemble(paths, disk, {"name": "i1"}, True, 0)
    res = sv.file_storage_verify(paths, [], [], [[disk, ["i1", 0]]], None)
    assert res["disks"][0]["link"] == "ok"
    link = bd.link_path(paths, "i1", 0)
    link.unlink()
    link.symlink_to("/elsewhere")
    res = sv.file_storage_verify(paths, [], [], [[disk, ["i1", 0]]], None)
    assert res["disks"][0]["link"] == "wrong"


def test_orphans(paths: Paths) -> None:
    make(paths, f"{FS}/i1/d0")
    make(paths, f"{SFS}/s1/d0")
    make(paths, f"{FS}/sub/i2/d0")
    stray = paths.real(f"{FS}/lost/big.disk0")
    stray.parent.mkdir()
    with open(stray, "wb") as fh:
        fh.truncate(256 * MIB)
    os.symlink("/etc", paths.real(f"{FS}/evil-link"))
    (paths.export_dir / "inst9.new").mkdir()
    (paths.export_dir / "inst9.new" / "disk0").write_bytes(b"x")
    expected = [f"{FS}/i1/d0", f"{SFS}/s1/d0", f"{FS}/sub/i2/d0"]
    bd.symlink_disk(paths, "i1", 0, str(paths.real(f"{FS}/i1/d0")))
    bd.symlink_disk(paths, "gone", 0, "/nowhere")
    res = sv.file_storage_verify(paths, [FS, SFS, FS + "/sub"], expected, [], ["i1:0"])
    assert res["orphans"] == [f"{FS}/evil-link", f"{FS}/lost/big.disk0",
                              "/var/run/corral/instance-disks/gone:0"]
    assert res["orphan_count"] == 3 and res["unscanned"] == []
    # Without the links list the instance-disks directory is not looked at.
    res = sv.file_storage_verify(paths, [FS], expected, [], None)
    assert res["orphans"] == [f"{FS}/evil-link", f"{FS}/lost/big.disk0"]


def test_export_dir_below_storage_dir_is_skipped(paths: Paths) -> None:
    paths.file_storage_paths.write_text("/srv/corral\n")
    (paths.export_dir / "inst9").mkdir()
    (paths.export_dir / "inst9" / "config.ini").write_text("x")
    make(paths, f"{FS}/i1/d0")
    res = sv.file_storage_verify(paths, ["/srv/corral"], [f"{FS}/i1/d0"], [], None)
    assert res["orphans"] == [] and res["orphan_count"] == 0


def test_orphan_list_is_bounded(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sv, "MAX_ORPHANS", 3)
    d = paths.real(FS)
    for i in range(5):
        (d / f"junk{i}").write_bytes(b"")
    res = sv.file_storage_verify(paths, [FS], [], [], None)
    assert res["orphans"] == [f"{FS}/junk{i}" for i in range(3)]
    assert res["orphan_count"] == 5


def test_unallowed_and_missing_dirs(paths: Paths) -> None:
    paths.real("/etc").mkdir(exist_ok=True)
    (paths.real("/etc") / "shadow").write_text("x")
    res = sv.file_storage_verify(paths, ["/etc", "/srv/none", "relative", FS], [], [], None)
    assert [u[0] for u in res["unscanned"]] == ["relative", "/etc"]
    assert "not inside the allowed directories" in res["unscanned"][1][1]
    assert res["orphans"] == []
    # A storage dir that is a symlink leading outside the allowed paths is refused too.
    os.symlink(paths.real("/etc"), paths.real(f"{FS}/sub"))
    res = sv.file_storage_verify(paths, [f"{FS}/sub"], [], [], None)
    assert res["unscanned"][0][0] == f"{FS}/sub" and res["orphans"] == []
    assert "resolves outside" in res["unscanned"][0][1]


@pytest.mark.parametrize("args, match", [
    (["not-a-list", [], [], None], "storage_dirs"),
    ([[], [1], [], None], "expected_files"),
    ([[], ["rel/x"], [], None], "Invalid expected file"),
    ([[], [], {"a": 1}, None], "disks must be"),
    ([[], [], [["x"]], None], "Invalid disk entry"),
    ([[], [], [], ["../x:0"]], "Invalid link name"),
    ([[], [], [[disk_dict(f"{FS}/a"), ["../x", 0]]], None], None),
])
def test_bad_arguments(paths: Paths, args: list[Any], match: str | None) -> None:
    if match is None:
        # A hostile link name in a disk entry: the disk is refused, nothing created.
        (paths.real(FS) / "a").write_bytes(b"")
        with pytest.raises(errors.RPCFail, match="Invalid"):
            sv.file_storage_verify(paths, *args)
        assert not (paths.instance_disks_dir.parent / "x:0").exists()
        return
    with pytest.raises(errors.RPCFail, match=match):
        sv.file_storage_verify(paths, *args)


def test_dispatched_by_noded(paths: Paths) -> None:
    make(paths, f"{FS}/i1/d0")
    res = dispatch.call(paths, "file_storage_verify", [[FS], [], [], None])
    assert res.ok and res.payload["orphans"] == [f"{FS}/i1/d0"]
    res = dispatch.call(paths, "file_storage_verify", [[FS], [], []])
    assert not res.ok and "takes 4 arguments" in res.payload
