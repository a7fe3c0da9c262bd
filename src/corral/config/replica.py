"""Applying a master's change sets on a master candidate's replica.

Used by ``ConfigStore.apply_replica`` with the store lock held. Both
functions write in one transaction and update the cache only after it
committed; they return the replica's new config serial number.
"""

from __future__ import annotations

import sqlite3

from corral import errors
from corral.config import db
from corral.config.cache import ConfigCache
from corral.config.changes import KINDS, NAMED_KINDS, ConfigChanges, object_name, storable_dict
from corral.objects import ConfigObject


def apply_full(conn: sqlite3.Connection, cache: ConfigCache, changes: ConfigChanges,
               parsed: dict[str, list[ConfigObject]]) -> int:
    """Replace the whole configuration with the snapshot in ``changes``."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        db.delete_all(conn)
        for kind in KINDS:
            for obj in parsed[kind]:
                db.insert(conn, kind, obj.uuid, object_name(kind, obj), obj.serial_no,
                          storable_dict(kind, obj))
        db.set_serial(conn, changes.serial_no)
        conn.execute("COMMIT")
    except sqlite3.Error as err:
        db.rollback(conn)
        raise errors.ConfigurationError(
            f"Cannot apply configuration snapshot: {err}") from err
    except BaseException:
        db.rollback(conn)
        raise
    cache.clear()
    for kind in KINDS:
        for obj in parsed[kind]:
            cache.put(kind, obj)
    return changes.serial_no


def apply_incremental(conn: sqlite3.Connection, cache: ConfigCache, serial: int,
                      changes: ConfigChanges, parsed: dict[str, list[ConfigObject]]) -> int:
    """Apply one commit's changes; upserts older than the stored object are
    skipped, removes of unknown UUIDs are no-ops (both for idempotence)."""
    removes = [(kind, uuid) for kind in reversed(KINDS)
               for uuid in changes.removes.get(kind, ())]
    upserts: list[tuple[str, ConfigObject]] = []
    for kind in KINDS:
        for obj in parsed[kind]:
            cached = cache.get(kind, obj.uuid)
            if cached is None or cached.serial_no <= obj.serial_no:
                upserts.append((kind, obj))
    new_serial = max(serial, changes.serial_no)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for kind, uuid in removes:
            db.delete(conn, kind, uuid)
        # Free the names first, so renames that swap names apply in any order.
        for kind, obj in upserts:
            if kind in NAMED_KINDS:
                db.clear_name(conn, kind, obj.uuid)
        for kind, obj in upserts:
            db.upsert(conn, kind, obj.uuid, object_name(kind, obj), obj.serial_no,
                      storable_dict(kind, obj))
        db.set_serial(conn, new_serial)
        conn.execute("COMMIT")
    except sqlite3.Error as err:
        db.rollback(conn)
        raise errors.ConfigurationError(
            f"Cannot apply configuration changes (serial {changes.serial_no}): {err}"
        ) from err
    except BaseException:
        db.rollback(conn)
        raise
    for kind, uuid in removes:
        cache.drop(kind, uuid)
    for kind, obj in upserts:
        cache.put(kind, obj)
    return new_serial
