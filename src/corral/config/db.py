"""The SQLite side of the config store: schema, connection, row access.

One table per object kind (``cluster``, ``network``, ``nodegroup``, ``node``,
``instance``) with columns ``uuid`` (primary key), ``name`` (UNIQUE except
for the cluster), ``serial_no`` and ``data`` (the object's JSON), plus
``meta`` (``serial_no`` of the whole config, ``schema_version``,
``config_version``), and ``changelog``: one row per written or deleted
object row (``seq``, ``kind``, ``uuid``), filled by triggers, so a reader in
another process (the RAPI daemon's :class:`corral.config.view.ConfigView`)
reloads only the objects changed since the last ``seq`` it saw, whatever
code path wrote them (commits, replica change sets, full snapshots). The
oldest entries are pruned (:data:`CHANGELOG_KEEP`); a reader that fell
further behind reloads everything. Callers hold the store's lock; this
module only speaks SQL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corral import constants as C
from corral import errors
from corral.config.changes import KIND_CLUSTER, KINDS

# 1: objects and meta; 2: + changelog and its triggers (migrated by connect()).
SCHEMA_VERSION = 2
# Changelog entries kept at least (pruned every CHANGELOG_PRUNE_EVERY inserts).
CHANGELOG_KEEP = 50000
CHANGELOG_PRUNE_EVERY = 1024

META_SERIAL = "serial_no"
META_SCHEMA = "schema_version"
META_CONFIG_VERSION = "config_version"


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with explicit transactions (autocommit off
    in Python's sense: ``isolation_level=None``, we issue BEGIN/COMMIT).
    A configuration of an older schema version is migrated (:func:`_migrate`)."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                               timeout=30.0)
    except sqlite3.Error as err:
        raise errors.ConfigurationError(f"Cannot open configuration {path}: {err}") from err
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise errors.ConfigurationError(
                f"Cannot switch {path} to WAL journal mode (got {mode})")
        # synchronous=FULL: with WAL, NORMAL would also never corrupt the
        # database, but a power loss could drop the last commits *after*
        # the job that made them reported success (and after replicas got
        # them). Config commits are few (one per opcode step), so one fsync
        # of the WAL per commit is a price worth paying for durability.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=OFF")
        if _has_table(conn, "meta"):
            # Tables of kinds added later (network) first: the migration
            # puts changelog triggers on every kind's table.
            add_kind_tables(conn)
        _migrate(conn)
    except sqlite3.Error as err:
        conn.close()
        raise errors.ConfigurationError(f"Cannot open configuration {path}: {err}") from err
    return conn


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def _create_log_triggers(conn: sqlite3.Connection) -> None:
    """The triggers recording every row written to or deleted from a kind's
    table in the changelog (idempotent)."""
    for kind in KINDS:
        for event, row in (("INSERT", "new"), ("UPDATE", "new"), ("DELETE", "old")):
            conn.execute(
                f"CREATE TRIGGER IF NOT EXISTS {kind}_{event.lower()}_log AFTER {event} "
                f"ON {kind} BEGIN INSERT INTO changelog (kind, uuid) "
                f"VALUES ('{kind}', {row}.uuid); END")


def _create_changelog(conn: sqlite3.Connection) -> None:
    """The changelog table and the triggers filling and pruning it."""
    conn.execute("CREATE TABLE changelog (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                 "kind TEXT NOT NULL, uuid TEXT NOT NULL)")
    _create_log_triggers(conn)
    conn.execute(
        "CREATE TRIGGER changelog_prune AFTER INSERT ON changelog "
        f"WHEN new.seq % {CHANGELOG_PRUNE_EVERY} = 0 BEGIN "
        f"DELETE FROM changelog WHERE seq <= new.seq - {CHANGELOG_KEEP}; END")


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a configuration of schema version 1 to the current version (in
    one transaction; a concurrent opener that migrated first wins). A new,
    empty file (no ``meta`` table yet) and other versions are left alone
    (:func:`check_schema` refuses unknown versions)."""
    def version() -> str | None:
        if not _has_table(conn, "meta"):
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_SCHEMA,)).fetchone()
        return None if row is None else row[0]

    if version() != "1":
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version() == "1":
            _create_changelog(conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = ?",
                         (str(SCHEMA_VERSION), META_SCHEMA))
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def create_schema(conn: sqlite3.Connection) -> None:
    """Create tables and meta rows; the caller runs this in a transaction."""
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    add_kind_tables(conn)
    _create_changelog(conn)
    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
        (META_SERIAL, "0"),
        (META_SCHEMA, str(SCHEMA_VERSION)),
        (META_CONFIG_VERSION, str(C.CONFIG_VERSION)),
    ])


def add_kind_tables(conn: sqlite3.Connection) -> None:
    """Create the table of every object kind that has none yet (all of them
    for a new database; ``network`` for one made before networks existed)."""
    for kind in KINDS:
        unique = "" if kind == KIND_CLUSTER else " UNIQUE"
        # name may be NULL for a moment inside a commit that swaps names.
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {kind} (uuid TEXT PRIMARY KEY, name TEXT{unique}, "
            "serial_no INTEGER NOT NULL, data TEXT NOT NULL)")
    if _has_table(conn, "changelog"):
        _create_log_triggers(conn)


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as err:
        raise errors.ConfigurationError(f"Not a Corral configuration: {err}") from err


def check_schema(meta: dict[str, str], path: Path) -> None:
    version = meta.get(META_SCHEMA)
    if version != str(SCHEMA_VERSION):
        raise errors.ConfigurationError(
            f"Configuration {path} has schema version {version}, expected {SCHEMA_VERSION}")


def iter_rows(conn: sqlite3.Connection, kind: str) -> Iterator[dict[str, Any]]:
    """Every stored object of ``kind`` as a dict."""
    for (data,) in conn.execute(f"SELECT data FROM {kind}"):
        yield json.loads(data)


def changed_since(conn: sqlite3.Connection, seq: int
                  ) -> tuple[int, list[tuple[str, str]] | None]:
    """The changelog after ``seq``: ``(last seq, [(kind, uuid)] in order)``,
    or ``(last seq, None)`` when entries after ``seq`` were pruned (the
    caller must reload everything). Call inside a read transaction, together
    with the reads of the objects, so both see one snapshot."""
    first, last = conn.execute("SELECT min(seq), max(seq) FROM changelog").fetchone()
    if last is None or last <= seq:
        return max(seq, last or 0), []
    if first > seq + 1:
        return last, None
    rows = conn.execute("SELECT kind, uuid FROM changelog WHERE seq > ? ORDER BY seq",
                        (seq,)).fetchall()
    return last, [(kind, uuid) for kind, uuid in rows]


def last_change(conn: sqlite3.Connection) -> int:
    """The newest changelog ``seq`` (0 when empty)."""
    return conn.execute("SELECT coalesce(max(seq), 0) FROM changelog").fetchone()[0]


def read_row(conn: sqlite3.Connection, kind: str, uuid: str) -> dict[str, Any] | None:
    """The stored object ``uuid`` of ``kind`` as a dict, None if absent."""
    row = conn.execute(f"SELECT data FROM {kind} WHERE uuid = ?", (uuid,)).fetchone()
    return None if row is None else json.loads(row[0])


def read_serial(conn: sqlite3.Connection) -> int:
    """The config-wide serial number as stored."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_SERIAL,)).fetchone()
    return int(row[0]) if row else 0


def encode(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def set_serial(conn: sqlite3.Connection, serial: int) -> None:
    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (str(serial), META_SERIAL))


def insert(conn: sqlite3.Connection, kind: str, uuid: str, name: str, serial: int,
           data: dict[str, Any]) -> None:
    conn.execute(f"INSERT INTO {kind} (uuid, name, serial_no, data) VALUES (?, ?, ?, ?)",
                 (uuid, name, serial, encode(data)))


def upsert(conn: sqlite3.Connection, kind: str, uuid: str, name: str, serial: int,
           data: dict[str, Any]) -> None:
    conn.execute(
        f"INSERT INTO {kind} (uuid, name, serial_no, data) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(uuid) DO UPDATE SET name = excluded.name, "
        "serial_no = excluded.serial_no, data = excluded.data",
        (uuid, name, serial, encode(data)))


def update(conn: sqlite3.Connection, kind: str, uuid: str, name: str, old_serial: int,
           new_serial: int, data: dict[str, Any]) -> bool:
    """Replace a row if its serial is still ``old_serial``; False if not."""
    cur = conn.execute(
        f"UPDATE {kind} SET name = ?, serial_no = ?, data = ? "
        "WHERE uuid = ? AND serial_no = ?",
        (name, new_serial, encode(data), uuid, old_serial))
    return cur.rowcount == 1


def stored_serial(conn: sqlite3.Connection, kind: str, uuid: str) -> int | None:
    """The stored ``serial_no`` of an object, None if there is none."""
    row = conn.execute(f"SELECT serial_no FROM {kind} WHERE uuid = ?", (uuid,)).fetchone()
    return None if row is None else int(row[0])


def clear_name(conn: sqlite3.Connection, kind: str, uuid: str) -> None:
    conn.execute(f"UPDATE {kind} SET name = NULL WHERE uuid = ?", (uuid,))


def delete(conn: sqlite3.Connection, kind: str, uuid: str) -> bool:
    cur = conn.execute(f"DELETE FROM {kind} WHERE uuid = ?", (uuid,))
    return cur.rowcount == 1


def delete_all(conn: sqlite3.Connection) -> None:
    for kind in KINDS:
        conn.execute(f"DELETE FROM {kind}")


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is open (a failed COMMIT may leave one)."""
    if conn.in_transaction:
        conn.rollback()
