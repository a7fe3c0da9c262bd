"""Node side of ``gnt-node list-storage`` (storage_list), on real directories."""

from __future__ import annotations

import os

import pytest

from corral import errors
from corral.backend.storage_units import storage_list
from corral.paths import Paths

from . import test_blockdev
from .test_blockdev import FS, MIB, SFS

# The node root with FS and SFS allowed, as in the block device tests.
paths = test_blockdev.paths


def test_lists_a_directory_with_its_file_system_figures(paths: Paths) -> None:
    real = paths.real(FS)
    (real / "inst1").mkdir(parents=True, exist_ok=True)
    with open(real / "inst1" / "disk0", "wb") as fh:
        fh.truncate(5 * MIB)
    st = os.statvfs(real)
    [[name, size, used, free, allocatable]] = storage_list(
        paths, "file", [FS], None, ["name", "size", "used", "free", "allocatable"])
    assert name == FS and used == 5 and allocatable is True
    assert size == st.f_blocks * st.f_frsize // MIB
    assert abs(free - st.f_bavail * st.f_frsize // MIB) < 64
    assert storage_list(paths, "sharedfile", [SFS], None, ["name", "used"]) == [[SFS, 0]]
    assert storage_list(paths, "file", [], FS, ["name"]) == [[FS]]


@pytest.mark.parametrize(("su_name", "su_args", "name", "fields", "message"), [
    ("lvm-vg", ["xenvg"], None, ["name"], "not supported on this node"),
    ("file", ["/etc"], None, ["name"], "Storage unit '/etc'"),
    ("file", [FS], "/var/lib", ["name"], "Storage unit '/var/lib'"),
    ("file", [FS], None, ["name", "owner"], "Unknown storage fields"),
    ("file", "notalist", None, ["name"], "Invalid storage arguments"),
])
def test_refusals(paths: Paths, su_name: str, su_args: object, name: str | None,
                  fields: list[str], message: str) -> None:
    with pytest.raises(errors.RPCFail, match=message):
        storage_list(paths, su_name, su_args, name, fields)  # type: ignore[arg-type]
