"""Disk templates on a node: one :class:`BlockDev` class per template.

Mirrors ``ganeti.storage`` (``bdev.Create``/``FindDevice``/``Assemble``):
:func:`get_device` returns the object for one configured disk; the backend
calls its ``create``/``remove``/``assemble``/``shutdown``/``grow``/``find``/
``get_size``/``rename``. Templates this node cannot handle raise
:class:`errors.BlockDeviceError` ("Disk template X is not supported by this
node").
"""

from __future__ import annotations

from corral import constants as C
from corral.objects import Disk
from corral.paths import Paths
from corral.storage.base import (
    LDS_FAULTY,
    LDS_OKAY,
    LDS_UNKNOWN,
    BlockDev,
    DeviceStatus,
    unsupported,
)
from corral.storage.diskless import DisklessDevice
from corral.storage.file import FileDevice

__all__ = ["BlockDev", "DeviceStatus", "LDS_FAULTY", "LDS_OKAY", "LDS_UNKNOWN",
           "TEMPLATES", "get_device"]

TEMPLATES: dict[str, type[BlockDev]] = {
    C.DT_FILE: FileDevice,
    C.DT_SHARED_FILE: FileDevice,
    C.DT_DISKLESS: DisklessDevice,
}


def get_device(disk: Disk, paths: Paths, allowed_dirs: list[str]) -> BlockDev:
    """The block device object of ``disk`` on this node.

    ``allowed_dirs``: virtual directories where file-based templates may keep
    files. Raises :class:`errors.BlockDeviceError` for unsupported templates
    (``ECODE_INVAL``) and for bad or unconfined logical ids.
    """
    try:
        cls = TEMPLATES[disk.dev_type]
    except KeyError:
        raise unsupported(disk.dev_type) from None
    return cls(disk, paths, allowed_dirs)
