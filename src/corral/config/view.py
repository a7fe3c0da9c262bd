"""A read-only view of the master's configuration database, for another process.

The RAPI daemon answers queries from its own copy of the configuration
instead of asking masterd (whose one GIL also runs the job executor). The
copy is a :class:`~corral.config.ConfigStore` loaded from the master's
SQLite file and brought up to date by :meth:`ConfigView.refresh`: when the
config serial changed, it reloads only the objects named in the database's
``changelog`` since the last refresh (O(changed objects)), inside one read
transaction, so the view always is one committed configuration (WAL keeps
that snapshot stable while masterd commits). Mirrors Ganeti's split where
``ganeti-rapi`` asks ``luxid``, which reads the configuration that
``wconfd`` writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, NoReturn, Self

from pydantic import ValidationError

from corral import errors
from corral.config import db
from corral.config.cache import ConfigCache
from corral.config.changes import CLASS_OF_KIND, KINDS
from corral.config.store import ConfigStore
from corral.objects import ConfigObject


class ConfigView(ConfigStore):
    """The configuration at ``path`` as of the last :meth:`refresh`.

    Every getter of :class:`ConfigStore` works (objects are shared: never
    mutate them); every write raises ``ProgrammerError``. Thread-safe:
    concurrent refreshes run one at a time, readers see the cache switch
    object by object under the store lock, as in masterd during a commit.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, cache: ConfigCache,
                 serial: int, seq: int) -> None:
        super().__init__(path, conn, cache, serial)
        self._seq = seq
        self._refresh_lock = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Self:
        """Load the configuration at ``path`` (one consistent snapshot).

        Raises ``ConfigurationError`` if it is missing, of another schema
        version, or holds invalid objects.
        """
        path = Path(path)
        if not path.is_file():
            raise errors.ConfigurationError(f"Configuration {path} does not exist")
        conn = db.connect(path)
        try:
            db.check_schema(db.read_meta(conn), path)
            cache = ConfigCache()
            serial, seq = _load_all(conn, cache, path)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, cache, serial, seq)

    def refresh(self) -> bool:
        """Catch up with the database; True when the configuration changed.

        Cost: one small query when nothing changed, else one row read and
        parsed per changed object (everything when the view fell behind the
        pruned changelog). Raises ``ConfigurationError`` for an unreadable
        database or an invalid stored object (the view is then unchanged).
        """
        with self._refresh_lock:
            conn = self._conn
            try:
                conn.execute("BEGIN")
                try:
                    serial = db.read_serial(conn)
                    if serial == self._serial:
                        return False
                    seq, changed = db.changed_since(conn, self._seq)
                    updates = None if changed is None else \
                        _read_objects(conn, changed, self._path)
                finally:
                    db.rollback(conn)       # a read transaction: nothing to keep
            except sqlite3.Error as err:
                raise errors.ConfigurationError(
                    f"Cannot read configuration {self._path}: {err}") from err
            if updates is None:             # fell behind the pruned changelog
                cache = ConfigCache()
                serial, seq = _load_all(conn, cache, self._path)
                with self._lock:
                    self._cache = cache
                    self._serial, self._seq = serial, seq
                return True
            with self._lock:
                for kind, uuid, obj in updates:
                    if obj is None:
                        self._cache.drop(kind, uuid)
                    else:
                        self._cache.put(kind, obj)
                self._serial, self._seq = serial, seq
            return True

    # -- writes are masterd's -----------------------------------------------------------
    def _read_only(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise errors.ProgrammerError("A configuration view is read-only; masterd commits")

    commit = _read_only
    allocate_port = _read_only
    apply_replica = _read_only
    generate_mac = _read_only
    reserve_mac = _read_only

    def add_listener(self, fn: Any) -> None:
        self._read_only()


def _parse(kind: str, data: dict[str, Any], path: Path) -> ConfigObject:
    try:
        return CLASS_OF_KIND[kind].from_dict(data)
    except ValidationError as err:
        raise errors.ConfigurationError(f"Cannot load configuration {path}: {err}") from err


def _load_all(conn: sqlite3.Connection, cache: ConfigCache, path: Path) -> tuple[int, int]:
    """Fill ``cache`` with every object; returns ``(serial, changelog seq)``
    of that snapshot (read in one transaction)."""
    try:
        conn.execute("BEGIN")
        try:
            serial, seq = db.read_serial(conn), db.last_change(conn)
            rows = [(kind, list(db.iter_rows(conn, kind))) for kind in KINDS]
        finally:
            db.rollback(conn)
    except sqlite3.Error as err:
        raise errors.ConfigurationError(f"Cannot load configuration {path}: {err}") from err
    for kind, datas in rows:
        for data in datas:
            cache.put(kind, _parse(kind, data, path))
    return serial, seq


def _read_objects(conn: sqlite3.Connection, changed: list[tuple[str, str]], path: Path
                  ) -> list[tuple[str, str, ConfigObject | None]]:
    """``(kind, uuid, object or None if deleted)`` of each changed object,
    in changelog order with duplicates dropped (only the stored row counts)."""
    out = []
    for kind, uuid in dict.fromkeys(changed):
        if kind not in CLASS_OF_KIND:
            continue
        data = db.read_row(conn, kind, uuid)
        out.append((kind, uuid, None if data is None else _parse(kind, data, path)))
    return out
