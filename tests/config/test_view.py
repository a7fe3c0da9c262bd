"""ConfigView: a second process's read-only view follows the master's commits
through the changelog, object by object (real SQLite, two connections)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from store_helpers import make_instance, make_node, make_store, snapshot

from corral import errors
from corral.config import ConfigStore, db
from corral.config.view import ConfigView


def _changelog(path: Path) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT seq, kind, uuid FROM changelog ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_view_follows_adds_updates_renames_and_removes(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    store = make_store(path)
    view = ConfigView.open(path)
    try:
        assert snapshot(view) == snapshot(store)
        assert view.refresh() is False

        node2 = make_node(store, "node2.example.com", "127.0.1.2")
        a = make_instance(store, "a.example.com")
        b = make_instance(store, "b.example.com")
        store.commit(add=[node2, a, b])
        assert view.get_instance_by_name("a.example.com") is None
        assert view.refresh() is True
        assert snapshot(view) == snapshot(store)
        assert view.serial_no == store.serial_no

        # Swap names in one commit, change a node, remove nothing yet.
        a2, b2 = a.model_copy(deep=True), b.model_copy(deep=True)
        a2.name, b2.name = "b.example.com", "a.example.com"
        node2b = store.get_node(node2.uuid).model_copy(deep=True)
        node2b.offline = True
        store.commit(update=[a2, b2, node2b])
        view.refresh()
        assert view.get_instance_by_name("a.example.com").uuid == b.uuid
        assert view.get_instance_by_name("b.example.com").uuid == a.uuid
        assert view.get_node(node2.uuid).offline is True
        assert snapshot(view) == snapshot(store)

        store.commit(remove=[a.uuid, node2.uuid])
        view.refresh()
        assert view.get_instance(a.uuid) is None and view.get_node(node2.uuid) is None
        assert view.get_instance_by_name("b.example.com") is None
        assert snapshot(view) == snapshot(store)
        assert view.verify_config() == []
    finally:
        view.close()
        store.close()


def test_refresh_reads_only_changed_objects(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    store = make_store(path)
    insts = [make_instance(store, f"i{k}.example.com", disks=0) for k in range(50)]
    store.commit(add=insts)
    view = ConfigView.open(path)
    try:
        untouched = view.get_instance(insts[1].uuid)
        changed = store.get_instance(insts[0].uuid).model_copy(deep=True)
        changed.tags = ["new"]
        store.commit(update=[changed])
        # The changelog names exactly the changed row of that commit.
        assert _changelog(path)[-1][1:] == ("instance", changed.uuid)
        view.refresh()
        assert view.get_instance(insts[0].uuid).tags == ["new"]
        # Objects not in the changelog are the very same parsed objects.
        assert view.get_instance(insts[1].uuid) is untouched
    finally:
        view.close()
        store.close()


def test_view_behind_the_pruned_changelog_reloads_everything(tmp_path: Path,
                                                             monkeypatch) -> None:
    path = tmp_path / "config.db"
    store = make_store(path)
    view = ConfigView.open(path)
    try:
        inst = make_instance(store, "x.example.com", disks=0)
        store.commit(add=[inst])
        # Simulate masterd's pruning having dropped entries the view needs.
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM changelog")
        conn.commit()
        conn.close()
        upd = store.get_instance(inst.uuid).model_copy(deep=True)
        upd.tags = ["t"]
        store.commit(update=[upd])
        view.refresh()
        assert snapshot(view) == snapshot(store)
    finally:
        view.close()
        store.close()


def test_changelog_is_pruned(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    store = make_store(path)
    store.close()
    conn = db.connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO changelog (kind, uuid) VALUES ('node', ?)",
                         [(str(k),) for k in range(db.CHANGELOG_KEEP + 2 * db.CHANGELOG_PRUNE_EVERY)])
        conn.execute("COMMIT")
        first, last = conn.execute("SELECT min(seq), max(seq) FROM changelog").fetchone()
        assert last - first < db.CHANGELOG_KEEP + db.CHANGELOG_PRUNE_EVERY
    finally:
        conn.close()


def test_schema_1_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    store = make_store(path)
    inst = make_instance(store, "old.example.com", disks=0)
    store.commit(add=[inst])
    before = snapshot(store)
    store.close()
    conn = sqlite3.connect(path)      # make it a schema 1 database again
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'"
                                ).fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE changelog")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.commit()
    conn.close()

    reopened = ConfigStore.open(path)
    view = ConfigView.open(path)
    try:
        assert snapshot(reopened) == before == snapshot(view)
        upd = reopened.get_instance(inst.uuid).model_copy(deep=True)
        upd.tags = ["migrated"]
        reopened.commit(update=[upd])
        view.refresh()
        assert view.get_instance(inst.uuid).tags == ["migrated"]
        meta = db.read_meta(reopened._conn)
        assert meta[db.META_SCHEMA] == str(db.SCHEMA_VERSION)
    finally:
        view.close()
        reopened.close()


def test_view_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    make_store(path).close()
    view = ConfigView.open(path)
    try:
        with pytest.raises(errors.ProgrammerError, match="read-only"):
            view.commit(update=[view.get_cluster().model_copy(deep=True)])
        with pytest.raises(errors.ProgrammerError):
            view.allocate_port()
    finally:
        view.close()
    with pytest.raises(errors.ConfigurationError, match="does not exist"):
        ConfigView.open(tmp_path / "missing.db")


def test_concurrent_refreshes_during_commits_end_consistent(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    store = make_store(path)
    view = ConfigView.open(path)
    stop = threading.Event()
    failures: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                view.refresh()
                # Under the store lock (another reader may be refreshing):
                # every instance the view knows is found by its name.
                with view._lock:
                    for inst in view.get_instances().values():
                        assert view.get_instance_by_name(inst.name) is inst
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for k in range(40):
            inst = make_instance(store, f"c{k}.example.com", disks=0)
            store.commit(add=[inst])
            if k % 3 == 0:
                store.commit(remove=[inst.uuid])
    finally:
        stop.set()
        for t in threads:
            t.join()
    view.refresh()
    assert not failures
    assert snapshot(view) == snapshot(store)
    view.close()
    store.close()
