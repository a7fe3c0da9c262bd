"""The block device interface every disk template implements (node side).

Mirrors ``ganeti.storage.base.BlockDev`` in a reduced form: one object per
configured :class:`~corral.objects.Disk` on one node. Sizes given to the
methods are in MiB; :meth:`BlockDev.get_size` returns bytes. Failures raise
:class:`errors.BlockDeviceError` (``ECODE_ENVIRON`` for host problems,
``ECODE_INVAL`` for bad disk data). Nothing here knows about instances, jobs
or the cluster configuration.
"""

from __future__ import annotations

from typing import Any, TypedDict

from corral import errors
from corral.objects import Disk
from corral.paths import Paths

MIB = 1024 * 1024

# Local disk status, as Ganeti's ``LDS_*`` (field ``ldisk_status`` of find()).
LDS_OKAY = 1
LDS_UNKNOWN = 2
LDS_FAULTY = 3

# State of an expected disk and of its instance-disks link, as reported by
# the node's ``file_storage_verify`` (cluster verify, verify-disks).
DISK_OK = "ok"
DISK_MISSING = "missing"
DISK_FAULTY = "faulty"
LINK_OK = "ok"
LINK_MISSING = "missing"
LINK_WRONG = "wrong"


class DeviceStatus(TypedDict):
    """Result of :meth:`BlockDev.find` (Ganeti's ``BlockDevStatus`` subset)."""

    dev_path: str
    size: int            # MiB
    is_degraded: bool
    ldisk_status: int


class BlockDev:
    """One disk of one template on this node.

    ``disk`` is the configuration object, ``paths`` the node's state root and
    ``allowed_dirs`` the virtual directories in which file-based templates may
    keep their files (the node's ``file-storage-paths``).
    """

    def __init__(self, disk: Disk, paths: Paths, allowed_dirs: list[str]) -> None:
        self.disk = disk
        self.paths = paths
        self.allowed_dirs = list(allowed_dirs)

    @property
    def dev_path(self) -> str:
        """The real path of the device on this node."""
        raise NotImplementedError

    def create(self, size_mib: int) -> str:
        """Create the device with ``size_mib`` MiB; return its real path."""
        raise NotImplementedError

    def remove(self) -> None:
        """Remove the device; a device that does not exist is not an error."""
        raise NotImplementedError

    def assemble(self) -> str:
        """Make the device usable; return its real path."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Make the device unusable until the next assemble (data kept)."""
        raise NotImplementedError

    def grow(self, amount_mib: int, dryrun: bool = False) -> None:
        """Grow the device by ``amount_mib`` MiB (only check when ``dryrun``)."""
        raise NotImplementedError

    def find(self) -> DeviceStatus | None:
        """Status of the device, or None if it does not exist on this node."""
        raise NotImplementedError

    def get_size(self) -> int:
        """Current size in bytes."""
        raise NotImplementedError

    def rename(self, new_logical_id: list[Any]) -> None:
        """Move the device to ``new_logical_id`` (``self.disk`` is updated)."""
        raise NotImplementedError


def unsupported(dev_type: str) -> errors.BlockDeviceError:
    """The error for a disk template this node cannot handle."""
    return errors.BlockDeviceError(
        f"Disk template {dev_type} is not supported by this node", errors.ECODE_INVAL)
