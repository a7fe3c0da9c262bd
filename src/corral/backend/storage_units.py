"""Node side of ``gnt-node list-storage``: the storage units of this node.

Mirrors the ``storage_list`` call of Ganeti's node daemon for file-based
storage (``ganeti.storage.container.FileStorage``): one unit per storage
directory, named by its path, with ``size`` and ``free`` of its file system
and ``used`` the size of the files below it (MiB). Directories must lie
inside the node's own allowed file storage paths.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corral import constants as C
from corral import errors
from corral.backend import files
from corral.backend.node import statvfs_mib
from corral.paths import Paths

_FILE_TYPES = (C.ST_FILE, C.ST_SHARED_FILE)


def directory_size_mib(real: Path) -> int:
    """Sum of the apparent sizes of the files below ``real``, in MiB (rounded
    down, as Ganeti's ``CalculateDirectorySize``); 0 if it does not exist."""
    total = 0
    for dirpath, _dirs, names in os.walk(real):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue        # removed while walking
    return total // (1024 * 1024)


def _unit_row(paths: Paths, virtual: str, fields: list[str]) -> list[Any]:
    try:
        real = paths.confine(virtual, files.read_file_storage_paths(paths))
    except errors.OpPrereqError as err:
        raise errors.RPCFail(f"Storage unit {virtual!r}: {err}") from None
    size, free = statvfs_mib(real) if {C.SF_SIZE, C.SF_FREE} & set(fields) else (None, None)
    values: dict[str, Any] = {C.SF_NAME: virtual, C.SF_SIZE: size, C.SF_FREE: free,
                              C.SF_ALLOCATABLE: True}
    if C.SF_USED in fields:
        values[C.SF_USED] = directory_size_mib(real)
    return [values[f] for f in fields]


def storage_list(paths: Paths, su_name: str, su_args: list[Any], name: str | None,
                 fields: list[str]) -> list[list[Any]]:
    """Rows of ``fields`` for the storage units of type ``su_name``.

    ``su_args`` is ``[directory]`` (virtual paths); ``name`` restricts the
    rows to one unit. Fields: ``name``, ``size``, ``used``, ``free``
    (MiB), ``allocatable`` (always true for files). Raises
    :class:`errors.RPCFail` for other storage types, unknown fields and
    directories outside the node's allowed file storage paths.
    """
    if su_name not in _FILE_TYPES:
        raise errors.RPCFail(f"Storage type '{su_name}' is not supported on this node")
    allowed = {C.SF_NAME, C.SF_SIZE, C.SF_USED, C.SF_FREE, C.SF_ALLOCATABLE}
    if not isinstance(fields, list) or not all(f in allowed for f in fields):
        raise errors.RPCFail(f"Unknown storage fields in {fields!r}")
    if not (isinstance(su_args, list) and all(isinstance(a, str) for a in su_args)):
        raise errors.RPCFail(f"Invalid storage arguments {su_args!r}")
    units = [name] if name is not None else su_args
    return [_unit_row(paths, unit, fields) for unit in units]
