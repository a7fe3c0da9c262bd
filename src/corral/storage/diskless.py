"""The ``diskless`` template: instances without disks, so no devices.

A ``Disk`` object of this type should never exist; if one reaches a node,
everything that would need a device fails and the rest does nothing.
"""

from __future__ import annotations

from typing import Any

from corral import errors
from corral.storage.base import BlockDev, DeviceStatus


class DisklessDevice(BlockDev):
    """Placeholder device of the diskless template."""

    def _fail(self) -> errors.BlockDeviceError:
        return errors.BlockDeviceError("Diskless instances have no block devices",
                                       errors.ECODE_INVAL)

    @property
    def dev_path(self) -> str:
        raise self._fail()

    def create(self, size_mib: int) -> str:
        raise self._fail()

    def remove(self) -> None:
        return None

    def assemble(self) -> str:
        raise self._fail()

    def shutdown(self) -> None:
        return None

    def grow(self, amount_mib: int, dryrun: bool = False) -> None:
        raise self._fail()

    def find(self) -> DeviceStatus | None:
        return None

    def get_size(self) -> int:
        raise self._fail()

    def rename(self, new_logical_id: list[Any]) -> None:
        raise self._fail()
