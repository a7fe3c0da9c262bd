"""Applying a master's change sets on a master candidate's replica.

Used by ``ConfigStore.apply_replica`` with the store lock held, and by the
node daemon's disk-only :class:`corral.config.disk_replica.DiskReplica`
(``cache=None``: stored serial numbers are read from the database). Both
functions write in one transaction and update the cache (if any) only after
it committed; they return the replica's new config serial number.
"""

from __future__ import annotations

import copy
import sqlite3
from typing import Any

from pydantic import ValidationError

from corral import errors
from corral.config import db
from corral.config.cache import ConfigCache
from corral.config.changes import (
    CLASS_OF_KIND,
    KINDS,
    NAMED_KINDS,
    ConfigChanges,
    object_name,
    storable_dict,
)
from corral.objects import ConfigObject


def parse_changes(changes: ConfigChanges | dict[str, Any]
                  ) -> tuple[ConfigChanges, dict[str, list[ConfigObject]]]:
    """Validate a change set (as received by ``config_update``): the set and
    its upserted objects by kind (parsed from copies, so nothing aliases the
    caller's dicts). Raises ``ConfigurationError`` for an invalid object or
    an unknown kind."""
    if isinstance(changes, dict):
        try:
            changes = ConfigChanges.model_validate(changes)
        except ValidationError as err:
            raise errors.ConfigurationError(f"Invalid replicated change set: {err}") from err
    try:
        parsed = {kind: [CLASS_OF_KIND[kind].from_dict(copy.deepcopy(d))
                         for d in changes.upserts.get(kind, ())] for kind in KINDS}
    except ValidationError as err:
        raise errors.ConfigurationError(f"Invalid replicated object: {err}") from err
    unknown = (set(changes.upserts) | set(changes.removes)) - set(KINDS)
    if unknown:
        raise errors.ConfigurationError(f"Unknown object kinds {sorted(unknown)}")
    return changes, parsed


def apply_full(conn: sqlite3.Connection, cache: ConfigCache | None, changes: ConfigChanges,
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
    if cache is not None:
        cache.clear()
        for kind in KINDS:
            for obj in parsed[kind]:
                cache.put(kind, obj)
    return changes.serial_no


def apply_incremental(conn: sqlite3.Connection, cache: ConfigCache | None, serial: int,
                      changes: ConfigChanges, parsed: dict[str, list[ConfigObject]]) -> int:
    """Apply one commit's changes; upserts older than the stored object are
    skipped, removes of unknown UUIDs are no-ops (both for idempotence)."""
    removes = [(kind, uuid) for kind in reversed(KINDS)
               for uuid in changes.removes.get(kind, ())]
    upserts: list[tuple[str, ConfigObject]] = []
    for kind in KINDS:
        for obj in parsed[kind]:
            if cache is not None:
                cached = cache.get(kind, obj.uuid)
                stored = None if cached is None else cached.serial_no
            else:
                stored = db.stored_serial(conn, kind, obj.uuid)
            if stored is None or stored <= obj.serial_no:
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
    if cache is not None:
        for kind, uuid in removes:
            cache.drop(kind, uuid)
        for kind, obj in upserts:
            cache.put(kind, obj)
    return new_serial
