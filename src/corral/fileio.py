"""Writing files atomically: the one helper every module uses.

A reader (or a crash) sees either the old file or the complete new one,
never a partial write: data goes to a temporary file in the same directory,
is flushed to disk, then renamed over the target, and the directory entry
is synced too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (after a rename) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600,
                      uid: int | None = None, gid: int | None = None,
                      atime: float | None = None, mtime: float | None = None,
                      durable: bool = True) -> None:
    """Write ``data`` (str is UTF-8 encoded) to ``path`` atomically.

    ``mode``, owner (``uid``/``gid``) and times are set on the new file
    before it becomes visible. The parent directory is created if missing.
    ``durable=False`` skips the fsyncs (for frequently rewritten status
    files whose loss in a power failure does not matter). Raises ``OSError``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if atime is not None and mtime is not None:
            os.utime(tmp, (atime, mtime))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)
