"""Template dispatch: diskless and templates this node does not implement."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import constants as C
from corral import errors
from corral.objects import Disk
from corral.paths import Paths
from corral.storage import TEMPLATES, get_device
from corral.storage.diskless import DisklessDevice
from corral.storage.file import FileDevice


def test_template_table() -> None:
    assert TEMPLATES[C.DT_FILE] is FileDevice
    assert TEMPLATES[C.DT_SHARED_FILE] is FileDevice
    assert TEMPLATES[C.DT_DISKLESS] is DisklessDevice
    assert set(TEMPLATES) == set(C.DTS_IMPLEMENTED)


@pytest.mark.parametrize("dev_type", [C.DT_PLAIN, C.DT_DRBD8, C.DT_BLOCK, C.DT_RBD,
                                      C.DT_EXT, C.DT_GLUSTER, "bogus"])
def test_unsupported_templates(tmp_path: Path, dev_type: str) -> None:
    disk = Disk(dev_type=dev_type, logical_id=["xenvg", "uuid.disk0"], size=1)
    with pytest.raises(errors.BlockDeviceError,
                       match=f"Disk template {dev_type} is not supported by this node") as exc:
        get_device(disk, Paths(tmp_path), ["/srv"])
    assert exc.value.ecode == errors.ECODE_INVAL


def test_diskless(tmp_path: Path) -> None:
    dev = get_device(Disk(dev_type=C.DT_DISKLESS), Paths(tmp_path), [])
    assert isinstance(dev, DisklessDevice)
    assert dev.find() is None
    dev.remove()
    dev.shutdown()
    for call in (lambda: dev.create(1), dev.assemble, lambda: dev.grow(1), dev.get_size,
                 lambda: dev.rename([]), lambda: dev.dev_path):
        with pytest.raises(errors.BlockDeviceError, match="no block devices"):
            call()
    assert list(tmp_path.iterdir()) == []
