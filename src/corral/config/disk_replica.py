"""A master candidate's configuration replica kept on disk only.

The node daemon of a master candidate needs the configuration on disk (it
becomes the master's after a failover, when ``ConfigStore.open`` loads it),
never in memory: it only applies the master's change sets. Holding it as a
:class:`~corral.config.ConfigStore` kept every object of the cluster parsed
in noded's memory (tens of MiB at 10,000 instances). This applies the same
validated change sets (:func:`~corral.config.replica.parse_changes`) with the
same functions, reading stored serial numbers from SQLite instead of a cache.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Self

from corral import errors
from corral.config import db
from corral.config.changes import ConfigChanges
from corral.config.replica import apply_full, apply_incremental, parse_changes


class DiskReplica:
    """The replica database at ``path``: ``apply_replica`` and ``serial_no``."""

    def __init__(self, path: Path, conn: sqlite3.Connection, serial: int) -> None:
        self._path = path
        self._conn = conn
        self._serial = serial
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Self:
        """Open the replica at ``path``, creating an empty one (serial 0) if
        there is none. Raises ``ConfigurationError`` for a file that is not a
        Corral configuration of this schema version."""
        path = Path(path)
        if not path.exists():
            from corral.config.store import ConfigStore
            try:
                ConfigStore.create_replica(path).close()
            except errors.ConfigurationError:
                if not path.exists():       # not just a concurrent creator winning
                    raise
        conn = db.connect(path)
        try:
            meta = db.read_meta(conn)
            db.check_schema(meta, path)
            serial = int(meta.get(db.META_SERIAL, "0"))
        except (errors.ConfigurationError, ValueError) as err:
            conn.close()
            raise errors.ConfigurationError(f"Cannot open replica {path}: {err}") from err
        return cls(path, conn, serial)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def serial_no(self) -> int:
        return self._serial

    def apply_replica(self, changes: ConfigChanges | dict[str, Any]) -> None:
        """As :meth:`corral.config.ConfigStore.apply_replica` (same checks,
        same ``ConfigurationError``), without an in-memory copy."""
        changes, parsed = parse_changes(changes)
        with self._lock:
            if changes.full:
                self._serial = apply_full(self._conn, None, changes, parsed)
            else:
                self._serial = apply_incremental(self._conn, None, self._serial, changes,
                                                 parsed)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
