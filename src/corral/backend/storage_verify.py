"""Node side of the disk checks of ``gnt-cluster verify`` and ``verify-disks``.

Mirrors what Ganeti's ``VerifyNode`` (``NV_LVLIST``) and
``blockdev_getmirrorstatus_multi`` report for volumes, for Corral's
file-based templates: the state of each disk the master expects on this
node, the files in the storage directories that no disk of the
configuration owns (orphans), and stray links in the instance-disks
directory. The master sends everything it expects; nothing here reads the
cluster configuration. Scanned directories must lie inside the node's
allowed file storage paths (:func:`blockdev.allowed_file_storage_dirs`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corral import errors
from corral.backend.blockdev import (
    DISK_SEPARATOR,
    allowed_file_storage_dirs,
    device_of,
    link_path,
)
from corral.paths import Paths, is_below, normalize_virtual
from corral.storage.base import (
    DISK_FAULTY,
    DISK_MISSING,
    DISK_OK,
    LINK_MISSING,
    LINK_OK,
    LINK_WRONG,
)

# Bound on the orphans listed per node, so a directory full of junk cannot
# make the reply (and verify's output) unbounded; the count is still exact.
MAX_ORPHANS = 500



def _fail(msg: str) -> errors.RPCFail:
    return errors.RPCFail(msg, errors.ECODE_INVAL)


def _str_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _fail(f"{what} must be a list of strings")
    return list(value)


def _link_file(paths: Paths, link: Any) -> Path | None:
    """The instance-disks link ``[instance_name, index]`` to check, or None."""
    if link is None:
        return None
    if not (isinstance(link, (list, tuple)) and len(link) == 2
            and isinstance(link[0], str) and isinstance(link[1], int)):
        raise _fail(f"Invalid disk link {link!r}: expected [instance_name, index]")
    return link_path(paths, link[0], link[1])


def _link_state(link: Path, dev_path: str) -> str:
    if not link.is_symlink():
        return LINK_MISSING
    return LINK_OK if os.readlink(link) == dev_path else LINK_WRONG


def _disk_status(paths: Paths, entry: Any) -> dict[str, Any]:
    """``{status, size (bytes) | None, message | None, link}`` of one disk."""
    if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
        raise _fail(f"Invalid disk entry {entry!r}: expected [disk, link]")
    disk, link = entry[0], _link_file(paths, entry[1])
    out: dict[str, Any] = {"status": DISK_OK, "size": None, "message": None, "link": None}
    try:
        dev = device_of(paths, disk)
        status = dev.find()
        if status is None:
            out["status"] = DISK_MISSING
            out["message"] = f"{paths.virtual(dev.dev_path)} not found"
            return out
        if not os.access(dev.dev_path, os.R_OK | os.W_OK):
            out["status"] = DISK_FAULTY
            out["message"] = f"{paths.virtual(dev.dev_path)} is not readable and writable"
        out["size"] = dev.get_size()
        if link is not None:
            out["link"] = _link_state(link, status["dev_path"])
    except (errors.RPCFail, errors.BlockDeviceError, OSError) as err:
        # Unconfined or malformed disk data, not a regular file, no access.
        out["status"] = DISK_FAULTY
        out["message"] = str(err)
    return out


def _scan_dir(paths: Paths, virtual: str, allowed: list[str], skip: list[str],
              expected: set[str], orphans: list[str]) -> int:
    """Append to ``orphans`` the non-directory entries below ``virtual`` not in
    ``expected`` (up to :data:`MAX_ORPHANS`); return how many were found."""
    real = paths.confine(virtual, allowed)
    found = 0
    for dirpath, dirnames, filenames in os.walk(real, followlinks=False):
        vdir = paths.virtual(dirpath)
        # Exports and other node directories below a storage dir are not disks.
        dirnames[:] = sorted(d for d in dirnames
                             if not any(is_below(f"{vdir.rstrip('/')}/{d}", s) for s in skip))
        # Symlinks to directories are listed as dirnames but not followed.
        entries = sorted(filenames) + [d for d in dirnames
                                       if os.path.islink(os.path.join(dirpath, d))]
        for name in entries:
            vpath = f"{vdir.rstrip('/')}/{name}"
            if vpath in expected:
                continue
            found += 1
            if len(orphans) < MAX_ORPHANS:
                orphans.append(vpath)
    return found


def _scan_links(paths: Paths, expected_links: list[str], orphans: list[str]) -> int:
    try:
        names = sorted(os.listdir(paths.instance_disks_dir))
    except FileNotFoundError:
        return 0
    found = 0
    for name in names:
        if name in expected_links:
            continue
        found += 1
        if len(orphans) < MAX_ORPHANS:
            orphans.append(paths.virtual(paths.instance_disks_dir / name))
    return found


def file_storage_verify(paths: Paths, storage_dirs: list[str], expected_files: list[str],
                        disks: list[Any], expected_links: list[str] | None) -> dict[str, Any]:
    """Check the expected disks and look for orphans in the storage dirs.

    Args:
      storage_dirs: virtual directories to scan for orphan files (the
        cluster's file and shared file storage dirs); each must lie inside
        the node's allowed file storage paths, else it is listed in
        ``unscanned`` with the reason. Missing directories hold no orphans.
      expected_files: virtual paths of every disk file that may exist on
        this node; other non-directory entries below ``storage_dirs`` (the
        export dir excluded) are orphans.
      disks: ``[[disk, link]]`` with ``disk`` a wire ``Disk`` dict and
        ``link`` ``[instance_name, index]`` (check the instance-disks link on
        this node) or None.
      expected_links: names ``<instance>:<index>`` allowed in the
        instance-disks directory, or None not to scan it.

    Returns ``{"disks": [{status: "ok"|"missing"|"faulty", size: bytes or
    None, message: str or None, link: "ok"|"missing"|"wrong" or None}],
    "orphans": [virtual paths] (at most MAX_ORPHANS), "orphan_count": int,
    "unscanned": [[dir, reason]]}``. Raises :class:`errors.RPCFail`
    (``ECODE_INVAL``) for malformed arguments.
    """
    dirs = _str_list(storage_dirs, "storage_dirs")
    expected = set()
    for vpath in _str_list(expected_files, "expected_files"):
        try:
            expected.add(normalize_virtual(vpath))
        except errors.OpPrereqError as err:
            raise _fail(f"Invalid expected file: {err}") from None
    if not isinstance(disks, (list, tuple)):
        raise _fail("disks must be a list of [disk, link]")
    links = None if expected_links is None else _str_list(expected_links, "expected_links")
    for name in links or []:
        if "/" in name or DISK_SEPARATOR not in name:
            raise _fail(f"Invalid link name {name!r}")
    result: dict[str, Any] = {"disks": [_disk_status(paths, d) for d in disks],
                              "orphans": [], "orphan_count": 0, "unscanned": []}
    allowed = allowed_file_storage_dirs(paths)
    skip = [paths.virtual(paths.export_dir), paths.virtual(paths.instance_disks_dir)]
    normalized: list[str] = []
    for vdir in dirs:
        try:
            normalized.append(normalize_virtual(vdir))
        except errors.OpPrereqError as err:
            result["unscanned"].append([vdir, str(err)])
    # A directory below another one listed is scanned with it, once.
    top = [d for d in dict.fromkeys(normalized)
           if not any(d != o and is_below(d, o) for o in normalized)]
    for vdir in top:
        try:
            if not os.path.isdir(paths.real(vdir)):
                continue
            result["orphan_count"] += _scan_dir(paths, vdir, allowed, skip, expected,
                                                result["orphans"])
        except errors.OpPrereqError as err:
            result["unscanned"].append([vdir, str(err)])
        except OSError as err:
            result["unscanned"].append([vdir, f"cannot scan: {err.strerror}"])
    if links is not None:
        result["orphan_count"] += _scan_links(paths, links, result["orphans"])
    return result


__all__ = ["MAX_ORPHANS", "file_storage_verify"]
