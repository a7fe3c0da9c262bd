"""The ``file`` and ``sharedfile`` templates: one preallocated raw file per disk.

Mirrors ``ganeti.storage.filestorage.FileStorage``. ``logical_id`` is
``[driver, virtual_path]``; the virtual path must lie strictly below one of
the node's allowed file storage directories (``file-storage-paths``), checked
with :meth:`Paths.confine` so ``..`` and symlinks leading out are refused.
Unlike Ganeti (sparse ``truncate``), files are preallocated with
``posix_fallocate`` so a full filesystem fails at creation, not in the guest.
Growing re-allocates the whole file (holes punched by a discarding
``mkfs`` included) after checking the filesystem's free space, so the
cluster never promises space the guest cannot write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Any, Callable

from corral import constants as C
from corral import errors
from corral.objects import Disk
from corral.paths import Paths, is_below, normalize_virtual
from corral.storage.base import LDS_OKAY, MIB, BlockDev, DeviceStatus

_FILE_MODE = 0o640
_DIR_MODE = 0o750
_ZERO_CHUNK = MIB
_NO_FALLOCATE = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})

# posix_fallocate(fd, offset, length); a module attribute so that tests can
# simulate a filesystem without fallocate support.
fallocate: Callable[[int, int, int], None] = os.posix_fallocate


def _env_error(msg: str) -> errors.BlockDeviceError:
    return errors.BlockDeviceError(msg, errors.ECODE_ENVIRON)


def _alloc_error(msg: str, err: OSError) -> errors.BlockDeviceError:
    """``msg: strerror``; ``ECODE_NORES`` when the filesystem is full."""
    ecode = errors.ECODE_NORES if err.errno == errno.ENOSPC else errors.ECODE_ENVIRON
    return errors.BlockDeviceError(f"{msg}: {err.strerror}", ecode)


def check_logical_id(logical_id: Any) -> tuple[str, str]:
    """Validate a file disk's ``[driver, virtual_path]``; return it normalized.

    Raises :class:`errors.BlockDeviceError` (``ECODE_INVAL``).
    """
    if not isinstance(logical_id, (list, tuple)) or len(logical_id) != 2:
        raise errors.BlockDeviceError(
            f"Invalid logical id for a file disk: {logical_id!r} "
            "(expected [driver, path])", errors.ECODE_INVAL)
    driver, vpath = logical_id
    if driver not in C.FILE_DRIVERS:
        raise errors.BlockDeviceError(
            f"Invalid file driver '{driver}' (expected one of {', '.join(C.FILE_DRIVERS)})",
            errors.ECODE_INVAL)
    try:
        vpath = normalize_virtual(vpath)
    except errors.OpPrereqError as err:
        raise errors.BlockDeviceError(str(err), errors.ECODE_INVAL) from None
    return driver, vpath


def confine_file(paths: Paths, virtual: str, allowed_dirs: list[str]) -> Path:
    """Real path of ``virtual``, which must lie strictly below an allowed dir.

    Raises :class:`errors.BlockDeviceError` (``ECODE_INVAL``) for ``..``,
    paths outside every allowed directory (also through symlinks) or when
    no directory is allowed on this node.
    """
    if not allowed_dirs:
        raise errors.BlockDeviceError(
            f"File storage path '{virtual}' refused: no file storage directories are "
            "allowed on this node", errors.ECODE_INVAL)
    try:
        norm = normalize_virtual(virtual)
        if not any(is_below(norm, a) and norm != os.path.normpath(a) for a in allowed_dirs):
            raise errors.OpPrereqError(
                f"Path '{virtual}' is not below the allowed file storage directories "
                f"({', '.join(allowed_dirs)})", errors.ECODE_INVAL)
        return paths.confine(norm, allowed_dirs)
    except errors.OpPrereqError as err:
        raise errors.BlockDeviceError(str(err), errors.ECODE_INVAL) from None


class FileDevice(BlockDev):
    """A disk of the ``file`` or ``sharedfile`` template: one raw file."""

    def __init__(self, disk: Disk, paths: Paths, allowed_dirs: list[str]) -> None:
        super().__init__(disk, paths, allowed_dirs)
        self.driver, self.virtual_path = check_logical_id(disk.logical_id)
        self._real = confine_file(paths, self.virtual_path, self.allowed_dirs)

    @property
    def dev_path(self) -> str:
        return str(self._real)

    def _stat(self) -> os.stat_result | None:
        try:
            st = os.stat(self._real)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise _env_error(f"Cannot access file device '{self.dev_path}': "
                             f"{err.strerror}") from err
        if not stat.S_ISREG(st.st_mode):
            raise _env_error(f"File device '{self.dev_path}' is not a regular file")
        return st

    @staticmethod
    def _allocate(fd: int, offset: int, length: int) -> None:
        """Reserve ``length`` bytes at ``offset``; write zeros if fallocate is
        not supported by the filesystem."""
        if length <= 0:
            return
        try:
            fallocate(fd, offset, length)
            return
        except OSError as err:
            if err.errno not in _NO_FALLOCATE:
                raise
        os.lseek(fd, offset, os.SEEK_SET)
        zeros = bytes(_ZERO_CHUNK)
        left = length
        while left > 0:
            n = os.write(fd, zeros[:min(left, _ZERO_CHUNK)])
            left -= n
        os.fsync(fd)

    def _make_parent(self, path: Path) -> None:
        try:
            path.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        except OSError as err:
            raise _env_error(f"Cannot create directory '{path.parent}': "
                             f"{err.strerror}") from err

    def create(self, size_mib: int) -> str:
        """Create the file preallocated to ``size_mib`` MiB; return its real path.

        Raises BlockDeviceError if the file exists or there is no space (the
        partial file is removed).
        """
        if not isinstance(size_mib, int) or isinstance(size_mib, bool) or size_mib < 0:
            raise errors.BlockDeviceError(f"Invalid disk size {size_mib!r}",
                                          errors.ECODE_INVAL)
        self._make_parent(self._real)
        try:
            fd = os.open(self._real, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         _FILE_MODE)
        except FileExistsError:
            raise errors.BlockDeviceError(f"File already exists: {self.dev_path}",
                                          errors.ECODE_EXISTS) from None
        except OSError as err:
            raise _env_error(f"Error in file creation of '{self.dev_path}': "
                             f"{err.strerror}") from err
        try:
            self._allocate(fd, 0, size_mib * MIB)
        except OSError as err:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self._real)
            raise _alloc_error(f"Cannot allocate {size_mib} MiB for '{self.dev_path}'",
                               err) from err
        os.close(fd)
        return self.dev_path

    def remove(self) -> None:
        try:
            os.unlink(self._real)
        except FileNotFoundError:
            return
        except OSError as err:
            raise _env_error(f"Can't remove file '{self.dev_path}': {err.strerror}") from err

    def assemble(self) -> str:
        if self._stat() is None:
            raise _env_error(f"File device '{self.dev_path}' does not exist")
        return self.dev_path

    def shutdown(self) -> None:
        return None

    def _check_space(self, st: os.stat_result, target: int) -> None:
        """Refuse a grow to ``target`` bytes that the filesystem cannot hold.

        The space needed is what the file lacks to be fully allocated at
        ``target`` (holes count as missing). Raises
        :class:`errors.BlockDeviceError` ``ECODE_NORES`` (as Ganeti's
        ``_CheckNodesFreeDiskOnVG``), ``ECODE_ENVIRON`` if statvfs fails.
        """
        missing = max(0, target - st.st_blocks * 512)
        try:
            vfs = os.statvfs(self._real)
        except OSError as err:
            raise _env_error(f"Cannot compute free space for '{self.dev_path}': "
                             f"{err.strerror}") from err
        free = vfs.f_bavail * vfs.f_frsize
        if missing > free:
            raise errors.BlockDeviceError(
                f"Not enough disk space for '{self.dev_path}': required "
                f"{-(-missing // MIB)} MiB, available {free // MIB} MiB", errors.ECODE_NORES)

    def grow(self, amount_mib: int, dryrun: bool = False) -> None:
        """Extend the file by ``amount_mib`` MiB, fully allocated.

        Holes already in the file are allocated too. ``dryrun`` only checks.
        Raises :class:`errors.BlockDeviceError`: ``ECODE_INVAL`` for a bad
        amount, ``ECODE_NORES`` when the filesystem lacks the space (the file
        is left at its size), ``ECODE_ENVIRON`` otherwise.
        """
        if not isinstance(amount_mib, int) or isinstance(amount_mib, bool) or amount_mib < 0:
            raise errors.BlockDeviceError(f"Invalid grow amount {amount_mib!r}",
                                          errors.ECODE_INVAL)
        st = self._stat()
        if st is None:
            raise _env_error(f"File device '{self.dev_path}' does not exist")
        if amount_mib == 0:
            return
        self._check_space(st, st.st_size + amount_mib * MIB)
        if dryrun:
            return
        try:
            fd = os.open(self._real, os.O_RDWR | os.O_NOFOLLOW)
        except OSError as err:
            raise _env_error(f"Cannot open '{self.dev_path}': {err.strerror}") from err
        try:
            self._fill_holes(fd, st.st_size)
            self._allocate(fd, st.st_size, amount_mib * MIB)
        except OSError as err:
            # Leave the file as it was rather than half grown.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, st.st_size)
            raise _alloc_error(f"Error in file growth of '{self.dev_path}'", err) from err
        finally:
            os.close(fd)

    @staticmethod
    def _fill_holes(fd: int, size: int) -> None:
        """Allocate the holes of the first ``size`` bytes (fallocate keeps the
        data); skipped where fallocate is unsupported, as writing zeros there
        would overwrite the guest's data."""
        if size <= 0:
            return
        try:
            fallocate(fd, 0, size)
        except OSError as err:
            if err.errno not in _NO_FALLOCATE:
                raise

    def find(self) -> DeviceStatus | None:
        st = self._stat()
        if st is None:
            return None
        return DeviceStatus(dev_path=self.dev_path, size=st.st_size // MIB,
                            is_degraded=False, ldisk_status=LDS_OKAY)

    def get_size(self) -> int:
        st = self._stat()
        if st is None:
            raise _env_error(f"File device '{self.dev_path}' does not exist")
        return st.st_size

    def rename(self, new_logical_id: list[Any]) -> None:
        """Move the file to the path of ``new_logical_id`` (also confined)."""
        driver, vpath = check_logical_id(new_logical_id)
        new_real = confine_file(self.paths, vpath, self.allowed_dirs)
        if new_real == self._real:
            return
        if self._stat() is None:
            raise _env_error(f"Cannot rename '{self.dev_path}': file does not exist")
        if os.path.lexists(new_real):
            raise errors.BlockDeviceError(
                f"Cannot rename '{self.dev_path}' to '{new_real}': target exists",
                errors.ECODE_EXISTS)
        self._make_parent(new_real)
        try:
            os.rename(self._real, new_real)
        except OSError as err:
            raise _env_error(f"Cannot rename '{self.dev_path}' to '{new_real}': "
                             f"{err.strerror}") from err
        self._real = new_real
        self.driver, self.virtual_path = driver, vpath
        self.disk.logical_id = [driver, vpath]
