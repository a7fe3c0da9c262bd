"""Node side of block devices and file storage directories.

Mirrors ``ganeti.backend.Blockdev*`` and ``*FileStorageDir``: every function
is the procedure of the same name in :mod:`corral.rpc.defs`, called as
``fn(paths, *args)``. Disks arrive as ``Disk.to_dict()`` dicts (sizes in
MiB). File paths are virtual and confined to the directories listed in the
node's ``file-storage-paths`` file (none allowed when it does not exist).
Failures raise :class:`errors.RPCFail`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from corral import errors
from corral.objects import Disk
from corral.paths import (Paths, component_path, is_below, is_forbidden_file_storage_path,
                          normalize_virtual)
from corral.storage import BlockDev, get_device

log = logging.getLogger(__name__)

DISK_SEPARATOR = ":"



def _fail(msg: str, ecode: str | None = None) -> errors.RPCFail:
    return errors.RPCFail(msg, ecode)


def _rpcfail_from(err: errors.CorralError, prefix: str = "") -> errors.RPCFail:
    return errors.RPCFail(f"{prefix}{err}", err.ecode)


# -- argument decoding -------------------------------------------------------------
def _strip_disk(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k in Disk.model_fields}
    out["children"] = [_strip_disk(c) for c in data.get("children") or []
                       if isinstance(c, dict)]
    return out


def decode_disk(data: Any) -> Disk:
    """A :class:`Disk` from its wire dict (keys unknown to the model dropped).

    Raises :class:`errors.RPCFail` (``ECODE_INVAL``) for malformed data.
    """
    if isinstance(data, Disk):
        return data
    if not isinstance(data, dict):
        raise _fail(f"Invalid disk data: {type(data).__name__}", errors.ECODE_INVAL)
    try:
        return Disk.model_validate(_strip_disk(data))
    except ValidationError as err:
        raise _fail(f"Invalid disk data: {err.error_count()} errors: "
                    f"{err.errors()[0]['msg']}", errors.ECODE_INVAL) from None


# -- allowed file storage directories --------------------------------------------
def allowed_file_storage_dirs(paths: Paths) -> list[str]:
    """Virtual directories listed in ``paths.file_storage_paths``.

    One absolute path per line; blank lines and ``#`` comments skipped.
    Entries that are relative, contain ``..``, or are (below) a system
    directory (``/etc``, ``/usr/bin``, ...) are ignored with a warning. A
    missing file allows nothing.
    """
    try:
        text = paths.file_storage_paths.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as err:
        raise _fail(f"Cannot read {paths.file_storage_paths}: {err.strerror}",
                    errors.ECODE_ENVIRON) from None
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            norm = normalize_virtual(line)
        except errors.OpPrereqError as err:
            log.warning("ignoring file storage path %r: %s", line, err)
            continue
        if is_forbidden_file_storage_path(norm):
            log.warning("ignoring forbidden file storage path %r", line)
            continue
        out.append(norm)
    return out


def device_of(paths: Paths, disk: Any) -> BlockDev:
    """The storage object of a wire disk on this node (RPCFail on bad data)."""
    try:
        return get_device(decode_disk(disk), paths, allowed_file_storage_dirs(paths))
    except errors.BlockDeviceError as err:
        raise _rpcfail_from(err) from None


# -- instance disk links ------------------------------------------------------------
def link_path(paths: Paths, instance_name: str, idx: int) -> Path:
    """``<instance_disks_dir>/<instance>:<idx>``, the path hypervisors use."""
    try:
        return component_path(paths.instance_disks_dir, instance_name,
                              suffix=f"{DISK_SEPARATOR}{int(idx)}", what="instance name")
    except errors.OpPrereqError as err:
        raise _rpcfail_from(err) from None


def symlink_disk(paths: Paths, instance_name: str, idx: int, dev_path: str) -> str:
    """Create or fix the link of disk ``idx`` to ``dev_path``; return the link."""
    link = link_path(paths, instance_name, idx)
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(dev_path, link)
        except FileExistsError:
            if not link.is_symlink() or os.readlink(link) != dev_path:
                link.unlink()
                os.symlink(dev_path, link)
    except OSError as err:
        raise _fail(f"Error while symlinking disk {idx} of {instance_name}: "
                    f"{err.strerror}", errors.ECODE_ENVIRON) from None
    return str(link)


def remove_disk_links(paths: Paths, instance_name: str, count: int | None = None) -> None:
    """Remove the disk links of an instance (all indexes when ``count`` is None)."""
    d = paths.instance_disks_dir
    prefix = f"{instance_name}{DISK_SEPARATOR}"
    try:
        names = [n for n in os.listdir(d) if n.startswith(prefix)]
    except FileNotFoundError:
        return
    for name in names:
        idx = name[len(prefix):]
        if not idx.isdigit() or (count is not None and int(idx) >= count):
            continue
        try:
            (d / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warning("cannot remove disk link %s: %s", d / name, err)


def _remove_links_to(paths: Paths, dev_path: str) -> None:
    d = paths.instance_disks_dir
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    for name in names:
        link = d / name
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link) == dev_path:
                link.unlink()


# -- block devices ------------------------------------------------------------------
def blockdev_create(paths: Paths, disk: dict[str, Any], size: int, owner: str,
                    on_primary: bool, info: str, exclusive_storage: bool) -> str:
    """Create the device of ``disk`` with ``size`` MiB; return its real path.

    ``owner``/``info`` are informative (instance name, metadata text).
    """
    if exclusive_storage:
        raise _fail("Exclusive storage is not supported by file-based disk templates",
                    errors.ECODE_INVAL)
    dev = device_of(paths, disk)
    try:
        dev_path = dev.create(int(size))
        if on_primary:
            dev.assemble()
    except errors.BlockDeviceError as err:
        raise _rpcfail_from(err, "Can't create block device: ") from None
    return dev_path


def blockdev_remove(paths: Paths, disk: dict[str, Any]) -> None:
    """Remove the device; one that does not exist is success."""
    dev = device_of(paths, disk)
    try:
        dev_path = dev.dev_path
        dev.remove()
    except errors.BlockDeviceError as err:
        raise _rpcfail_from(err, "Can't remove block device: ") from None
    _remove_links_to(paths, dev_path)


def blockdev_assemble(paths: Paths, disk: dict[str, Any], instance: dict[str, Any],
                      on_primary: bool, idx: int) -> list[str | None]:
    """Make the device usable; on the primary link it as ``<instance>:<idx>``.

    Returns ``[link_path, None]`` on the primary (``[real_path, None]``
    elsewhere); the second element is the userspace URI (none for files).
    """
    dev = device_of(paths, disk)
    try:
        dev_path = dev.assemble()
    except errors.BlockDeviceError as err:
        raise _rpcfail_from(err, "Error while assembling disk: ") from None
    if not on_primary:
        return [dev_path, None]
    return [symlink_disk(paths, instance["name"], idx, dev_path), None]


def blockdev_shutdown(paths: Paths, disk: dict[str, Any]) -> None:
    """Shut the device down and remove instance links pointing to it."""
    dev = device_of(paths, disk)
    try:
        dev.shutdown()
        dev_path = dev.dev_path
    except errors.BlockDeviceError as err:
        raise _rpcfail_from(err, "Cannot shutdown block device: ") from None
    _remove_links_to(paths, dev_path)


def blockdev_find(paths: Paths, disk: dict[str, Any]) -> dict[str, Any] | None:
    """``{dev_path, size (MiB), is_degraded, ldisk_status}`` or None if absent."""
    dev = device_of(paths, disk)
    try:
        status = dev.find()
    except errors.BlockDeviceError as err:
        raise _rpcfail_from(err, "Failed to find device: ") from None
    return dict(status) if status is not None else None


def blockdev_getdimensions(paths: Paths, disks: list[dict[str, Any]]) -> list[list[Any] | None]:
    """``[size_bytes, spindles]`` per disk, None for disks not found here."""
    out: list[list[Any] | None] = []
    for disk in disks:
        try:
            dev = device_of(paths, disk)
            if dev.find() is None:
                out.append(None)
                continue
            out.append([dev.get_size(), None])
        except (errors.RPCFail, errors.BlockDeviceError) as err:
            log.info("cannot get dimensions of disk: %s", err)
            out.append(None)
    return out


def blockdev_grow(paths: Paths, disk: dict[str, Any], amount: int, dryrun: bool,
                  backingstore: bool, es_flag: bool) -> None:
    """Grow the device by ``amount`` MiB.

    As in Ganeti, file devices only grow in the ``backingstore`` call (the
    logical-layer call is a no-op); ``dryrun`` only checks.
    """
    dev = device_of(paths, disk)
    try:
        if dev.find() is None:
            raise _fail(f"Cannot find block device {dev.dev_path}", errors.ECODE_NOENT)
        if not backingstore:
            return
        dev.grow(int(amount), dryrun=bool(dryrun))
    except errors.BlockDeviceError as err:
        raise _rpcfail_from(err, "Failed to grow block device: ") from None


def blockdev_rename(paths: Paths, devlist: list[list[Any]]) -> None:
    """Rename each ``[disk, new_logical_id]``; failures are collected."""
    msgs: list[str] = []
    for disk, new_id in devlist:
        try:
            dev = device_of(paths, disk)
            if dev.find() is None:
                msgs.append(f"Can't find device {dev.dev_path} in rename")
                continue
            old_path = dev.dev_path
            dev.rename(new_id)
            if old_path != dev.dev_path:
                _remove_links_to(paths, old_path)
        except (errors.RPCFail, errors.BlockDeviceError) as err:
            msgs.append(f"Can't rename device to {new_id!r}: {err}")
    if msgs:
        raise _fail("; ".join(msgs))


# -- file storage directories -------------------------------------------------------
def _confine_dir(paths: Paths, virtual: str) -> Path:
    """Real path of a file storage directory strictly below an allowed one."""
    allowed = allowed_file_storage_dirs(paths)
    if not allowed:
        raise _fail(f"File storage directory '{virtual}' refused: no file storage "
                    f"directories are allowed on this node", errors.ECODE_INVAL)
    try:
        norm = normalize_virtual(virtual)
        if not any(is_below(norm, a) and norm != a for a in allowed):
            raise errors.OpPrereqError(
                f"File storage directory '{virtual}' is not below the allowed "
                f"directories ({', '.join(allowed)})", errors.ECODE_INVAL)
        return paths.confine(norm, allowed)
    except errors.OpPrereqError as err:
        raise _fail(str(err), errors.ECODE_INVAL) from None


def file_storage_dir_create(paths: Paths, file_storage_dir: str) -> None:
    """Create the directory (and parents); an existing directory is fine."""
    real = _confine_dir(paths, file_storage_dir)
    if os.path.lexists(real):
        if not real.is_dir():
            raise _fail(f"Specified storage dir '{file_storage_dir}' is not a directory",
                        errors.ECODE_ENVIRON)
        return
    try:
        real.mkdir(mode=0o750, parents=True)
    except OSError as err:
        raise _fail(f"Cannot create file storage directory '{file_storage_dir}': "
                    f"{err.strerror}", errors.ECODE_ENVIRON) from None


def file_storage_dir_remove(paths: Paths, file_storage_dir: str) -> None:
    """Remove the directory if it is empty; a missing one is success."""
    real = _confine_dir(paths, file_storage_dir)
    if not os.path.lexists(real):
        return
    if real.is_symlink() or not real.is_dir():
        raise _fail(f"Specified storage directory '{file_storage_dir}' is not a directory",
                    errors.ECODE_ENVIRON)
    try:
        real.rmdir()
    except OSError as err:
        raise _fail(f"Cannot remove file storage directory '{file_storage_dir}': "
                    f"{err.strerror}", errors.ECODE_STATE) from None


def file_storage_dir_rename(paths: Paths, old_file_storage_dir: str,
                            new_file_storage_dir: str) -> None:
    """Rename a directory; fine if already done (only the new one exists)."""
    old = _confine_dir(paths, old_file_storage_dir)
    new = _confine_dir(paths, new_file_storage_dir)
    if os.path.lexists(new):
        if os.path.lexists(old):
            raise _fail(f"Cannot rename '{old_file_storage_dir}' to "
                        f"'{new_file_storage_dir}': both locations exist", errors.ECODE_EXISTS)
        return
    if old.is_symlink() or not old.is_dir():
        raise _fail(f"Specified storage dir '{old_file_storage_dir}' is not a directory",
                    errors.ECODE_NOENT)
    try:
        new.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        os.rename(old, new)
    except OSError as err:
        raise _fail(f"Cannot rename '{old_file_storage_dir}' to '{new_file_storage_dir}': "
                    f"{err.strerror}", errors.ECODE_ENVIRON) from None


__all__ = [
    "allowed_file_storage_dirs", "blockdev_assemble", "blockdev_create", "blockdev_find",
    "blockdev_getdimensions", "blockdev_grow", "blockdev_remove", "blockdev_rename",
    "blockdev_shutdown", "decode_disk", "device_of", "file_storage_dir_create",
    "file_storage_dir_remove", "file_storage_dir_rename", "link_path", "remove_disk_links",
    "symlink_disk",
]
