"""ConfigStore: creation, reads, commits, listeners, threads (real SQLite)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest
from store_helpers import disk_snapshot, make_instance, make_node, make_store, snapshot

from corral import constants as C
from corral import errors
from corral.config import ConfigChanges, ConfigStore, db
from corral.objects import Cluster, Disk, Instance, Node, NodeGroup


# -- creation and opening ---------------------------------------------------------------
def test_create_then_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    store = make_store(path)
    node2 = make_node(store, "node2.example.com", "127.0.1.2")
    inst = make_instance(store, "inst1.example.com", macs=("aa:00:00:00:00:01",))
    store.commit(add=[node2, inst])
    before = snapshot(store)
    store.close()

    reopened = ConfigStore.open(path)
    try:
        assert snapshot(reopened) == before
        assert reopened.serial_no == 2
        assert reopened.get_cluster().cluster_name == "cluster.example.com"
        assert reopened.get_master_node().name == "node1.example.com"
        assert reopened.get_instance_by_name("inst1.example.com").uuid == inst.uuid
        assert [n.name for n in reopened.get_node_list()] == [
            "node1.example.com", "node2.example.com"]
        assert reopened.get_node_instances(inst.primary_node)[0][0].uuid == inst.uuid
        assert reopened.verify_config() == []
    finally:
        reopened.close()


def test_create_uses_wal_and_private_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.db"
    store = make_store(path)
    store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'"
                            ).fetchone()[0] == str(db.SCHEMA_VERSION)
    finally:
        conn.close()
    assert path.stat().st_mode & 0o077 == 0


def test_create_refuses_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    path.write_text("precious")
    with pytest.raises(errors.ConfigurationError, match="already exists"):
        make_store(path)
    assert path.read_text() == "precious"


def test_create_refuses_wrong_master(tmp_path: Path) -> None:
    group = NodeGroup(name="default")
    node = Node(name="n1", primary_ip="127.0.1.1", group=group.uuid)
    cluster = Cluster(cluster_name="c", master_node="some-other-uuid")
    with pytest.raises(errors.ConfigurationError, match="master node"):
        ConfigStore.create(tmp_path / "c.db", cluster, node, group)
    assert not (tmp_path / "c.db").exists()


def test_create_fills_master_group(tmp_path: Path) -> None:
    group = NodeGroup(name="default")
    node = Node(name="n1", primary_ip="127.0.1.1")
    cluster = Cluster(cluster_name="c", master_node=node.uuid)
    with ConfigStore.create(tmp_path / "c.db", cluster, node, group) as store:
        assert store.get_master_node().group == group.uuid
        assert node.group == ""          # the caller's object is untouched


def test_open_missing_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigurationError, match="does not exist"):
        ConfigStore.open(tmp_path / "nope.db")
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE x (a)")
    conn.commit()
    conn.close()
    with pytest.raises(errors.ConfigurationError, match="Not a Corral configuration"):
        ConfigStore.open(foreign)


def test_open_refuses_other_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    make_store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(errors.ConfigurationError, match="schema version 99"):
        ConfigStore.open(path)


# -- commit -----------------------------------------------------------------------------
def test_commit_add_update_remove(store: ConfigStore) -> None:
    a = make_instance(store, "a")
    b = make_instance(store, "b")
    store.commit(add=[a, b])
    assert store.serial_no == 2
    assert {i.name for i in store.get_instances().values()} == {"a", "b"}

    a2 = store.get_instance(a.uuid).model_copy(deep=True)
    a2.admin_state = C.ADMINST_UP
    store.commit(update=[a2], remove=[b.uuid])
    assert store.serial_no == 3
    assert store.get_instance(a.uuid).admin_state == C.ADMINST_UP
    assert store.get_instance(a.uuid).serial_no == 2
    assert store.get_instance(b.uuid) is None
    assert store.get_instance_by_name("b") is None
    assert disk_snapshot(store.path) == snapshot(store)

    store.commit(remove=[store.get_instance(a.uuid)])
    assert store.get_instances() == {}
    assert store.get_node_instances(a.primary_node) == ([], [])


def test_update_bumps_serial_mtime_and_callers_copy(store: ConfigStore) -> None:
    inst = make_instance(store, "a")
    store.commit(add=[inst])
    assert inst.serial_no == 1
    stored = store.get_instance(inst.uuid)
    copy = stored.model_copy(deep=True)
    copy.os = "other"
    store.commit(update=[copy])
    new = store.get_instance(inst.uuid)
    assert new.serial_no == 2 and copy.serial_no == 2
    assert new.mtime >= stored.mtime and new.mtime == copy.mtime
    assert stored.os == "debootstrap+default"      # old shared copy untouched
    # The caller's object carries the new serial: it can be committed again.
    copy.os = "third"
    store.commit(update=[copy])
    assert store.get_instance(inst.uuid).os == "third"
    assert store.get_instance(inst.uuid).serial_no == 3


def test_stored_copy_does_not_alias_callers_object(store: ConfigStore) -> None:
    inst = make_instance(store, "a")
    store.commit(add=[inst])
    inst.os = "changed-after-commit"
    inst.disks[0].size = 1
    assert store.get_instance(inst.uuid).os == "debootstrap+default"
    assert store.get_instance(inst.uuid).disks[0].size == 1024


def test_stale_serial_refused_and_nothing_changed(store: ConfigStore) -> None:
    inst = make_instance(store, "a")
    other = make_instance(store, "b")
    store.commit(add=[inst, other])
    first = store.get_instance(inst.uuid).model_copy(deep=True)
    second = store.get_instance(inst.uuid).model_copy(deep=True)
    first.os = "first"
    store.commit(update=[first])
    before = snapshot(store)

    second.os = "second"
    doomed = make_instance(store, "c")
    with pytest.raises(errors.ConfigVersionMismatch) as exc:
        store.commit(add=[doomed], update=[second], remove=[other.uuid])
    assert exc.value.ecode == errors.ECODE_STATE
    assert snapshot(store) == before
    assert disk_snapshot(store.path) == before
    assert second.serial_no == 1                    # caller's object not bumped


def test_stale_serial_detected_in_database(store: ConfigStore) -> None:
    """The row's serial is checked inside the transaction too (another writer)."""
    inst = make_instance(store, "a")
    store.commit(add=[inst])
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE instance SET serial_no = 7 WHERE uuid = ?", (inst.uuid,))
    conn.commit()
    conn.close()
    copy = store.get_instance(inst.uuid).model_copy(deep=True)
    with pytest.raises(errors.ConfigVersionMismatch, match="changed by someone else"):
        store.commit(update=[copy])
    assert store.serial_no == 2


def test_unknown_objects_refused(store: ConfigStore) -> None:
    ghost = make_instance(store, "ghost")
    with pytest.raises(errors.ConfigurationError, match="unknown"):
        store.commit(update=[ghost])
    with pytest.raises(errors.ConfigurationError, match="unknown object"):
        store.commit(remove=[ghost.uuid])
    with pytest.raises(errors.ConfigurationError, match="unknown object"):
        store.commit(remove=[ghost])
    with pytest.raises(errors.ConfigurationError, match="cannot be removed"):
        store.commit(remove=[store.get_cluster().uuid])
    assert store.serial_no == 1


def test_kind_mismatch_and_non_config_objects(store: ConfigStore) -> None:
    node = store.get_master_node()
    fake = make_instance(store, "x")
    fake.uuid = node.uuid
    with pytest.raises(errors.ConfigurationError):
        store.commit(remove=[fake])             # uuid of a node, given as instance
    with pytest.raises(errors.ProgrammerError):
        store.commit(add=[Disk()])              # type: ignore[list-item]
    with pytest.raises(errors.ProgrammerError, match="shared copy"):
        store.commit(update=[store.get_master_node()])
    assert store.serial_no == 1


def test_duplicate_names_refused(store: ConfigStore) -> None:
    store.commit(add=[make_instance(store, "a")])
    with pytest.raises(errors.OpPrereqError) as exc:
        store.commit(add=[make_instance(store, "a")])
    assert exc.value.ecode == errors.ECODE_EXISTS
    assert "Instance 'a' is already in the configuration" in str(exc.value)
    with pytest.raises(errors.OpPrereqError, match="already"):
        store.commit(add=[make_instance(store, "b"), make_instance(store, "b")])
    with pytest.raises(errors.OpPrereqError, match="Node 'node1.example.com'"):
        store.commit(add=[make_node(store, "node1.example.com", "127.0.1.9")])
    with pytest.raises(errors.OpPrereqError, match="Node group 'default'"):
        store.commit(add=[NodeGroup(name="default")])
    # A rename onto a used name.
    store.commit(add=[make_instance(store, "c")])
    c = store.get_instance_by_name("c").model_copy(deep=True)
    c.name = "a"
    with pytest.raises(errors.OpPrereqError, match="already"):
        store.commit(update=[c])
    assert sorted(i.name for i in store.get_instances().values()) == ["a", "c"]
    # Nodes and instances have separate name spaces.
    store.commit(add=[make_instance(store, "node1.example.com")])


def test_duplicate_uuid_refused(store: ConfigStore) -> None:
    a = make_instance(store, "a")
    store.commit(add=[a])
    clash = make_instance(store, "b")
    clash.uuid = a.uuid
    with pytest.raises(errors.ConfigurationError, match="already in use"):
        store.commit(add=[clash])
    node_clash = make_node(store, "n9", "127.0.1.9")
    node_clash.uuid = a.uuid
    with pytest.raises(errors.ConfigurationError, match="already in use"):
        store.commit(add=[node_clash])
    with pytest.raises(errors.ConfigurationError, match="twice"):
        store.commit(update=[store.get_instance(a.uuid).model_copy(deep=True)],
                     remove=[a.uuid])
    assert store.get_instance(a.uuid) is not None


def test_name_reuse_and_swap_in_one_commit(store: ConfigStore) -> None:
    a, b = make_instance(store, "a"), make_instance(store, "b")
    store.commit(add=[a, b])
    # Remove "a" and add a new "a" in one commit.
    new_a = make_instance(store, "a")
    store.commit(remove=[a.uuid], add=[new_a])
    assert store.get_instance_by_name("a").uuid == new_a.uuid
    # Swap names of two instances.
    x = store.get_instance(new_a.uuid).model_copy(deep=True)
    y = store.get_instance(b.uuid).model_copy(deep=True)
    x.name, y.name = "b", "a"
    store.commit(update=[x, y])
    assert store.get_instance_by_name("a").uuid == b.uuid
    assert store.get_instance_by_name("b").uuid == new_a.uuid
    assert store.expand_instance("a").uuid == b.uuid
    assert disk_snapshot(store.path) == snapshot(store)


def test_failure_inside_transaction_rolls_back_everything(store: ConfigStore) -> None:
    """A real SQLite failure after some rows were written: db and cache stay equal."""
    a, b = make_instance(store, "a", macs=("aa:00:00:00:00:0a",)), make_instance(store, "b")
    store.commit(add=[a, b])
    before = snapshot(store)
    conn = sqlite3.connect(store.path)
    conn.execute("CREATE TRIGGER boom BEFORE INSERT ON instance WHEN NEW.name = 'boom' "
                 "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    conn.commit()
    conn.close()

    changed = store.get_instance(a.uuid).model_copy(deep=True)
    changed.os = "changed"
    changed.nics = []
    with pytest.raises(errors.ConfigurationError, match="injected failure"):
        store.commit(remove=[b.uuid], update=[changed], add=[make_instance(store, "boom")])
    assert snapshot(store) == before
    assert disk_snapshot(store.path) == before
    assert store.get_instance_by_name("boom") is None
    assert store.get_instance(b.uuid) is not None
    assert changed.serial_no == 1
    # The MAC of "a" still counts as used.
    with pytest.raises(errors.OpPrereqError):
        store.reserve_mac("aa:00:00:00:00:0a")
    # And the store still works.
    store.commit(update=[changed])
    assert store.get_instance(a.uuid).os == "changed"


def test_commit_writes_only_changed_rows(store: ConfigStore) -> None:
    insts = [make_instance(store, f"inst{i}") for i in range(50)]
    store.commit(add=insts)
    conn = store._conn
    rows_before = dict(conn.execute("SELECT uuid, data FROM instance").fetchall())
    changes_before = conn.total_changes

    target = store.get_instance(insts[17].uuid).model_copy(deep=True)
    target.beparams = {"maxmem": 256}
    store.commit(update=[target])

    # One instance row, the meta serial row and the instance's changelog
    # entry (written by a trigger), nothing else.
    assert conn.total_changes - changes_before == 3
    assert conn.execute("SELECT kind, uuid FROM changelog ORDER BY seq DESC LIMIT 1"
                        ).fetchone() == ("instance", target.uuid)
    rows_after = dict(conn.execute("SELECT uuid, data FROM instance").fetchall())
    differing = [u for u in rows_before if rows_before[u] != rows_after[u]]
    assert differing == [target.uuid]


def test_dynamic_params_are_not_persisted(store: ConfigStore) -> None:
    inst = make_instance(store, "a")
    inst.disks[0].dynamic_params = {"secret": 1}
    store.commit(add=[inst])
    assert store.get_instance(inst.uuid).disks[0].dynamic_params == {}
    assert "secret" not in store._conn.execute("SELECT data FROM instance").fetchone()[0]


def test_indexes_follow_primary_node_changes(store: ConfigStore) -> None:
    node2 = make_node(store, "node2", "127.0.1.2")
    store.commit(add=[node2])
    master = store.get_master_node().uuid
    inst = make_instance(store, "a")
    store.commit(add=[inst])
    assert store.count_node_instances(master) == (1, 0)
    moved = store.get_instance(inst.uuid).model_copy(deep=True)
    moved.primary_node = node2.uuid
    moved.disks[0].nodes = [node2.uuid, master]
    store.commit(update=[moved])
    assert store.get_node_instances(master) == ([], [store.get_instance(inst.uuid)])
    assert [i.name for i in store.get_node_instances(node2.uuid)[0]] == ["a"]
    assert store.count_node_instances(node2.uuid) == (1, 0)


def test_getters(store: ConfigStore) -> None:
    n2 = make_node(store, "b-node", "127.0.1.2")
    n3 = make_node(store, "a-node", "127.0.1.3", master_candidate=True)
    store.commit(add=[n2, n3])
    assert [n.name for n in store.get_node_list()] == ["a-node", "b-node",
                                                       "node1.example.com"]
    assert [n.name for n in store.get_master_candidates()] == ["a-node", "node1.example.com"]
    assert store.get_node_by_name("b-node").uuid == n2.uuid
    assert store.get_node_by_name("zzz") is None
    group = store.get_nodegroup_by_name("default")
    assert store.get_nodegroup(group.uuid) is group
    assert list(store.get_nodegroups()) == [group.uuid]
    assert store.get_node("nope") is None and store.get_instance("nope") is None


# -- expansion --------------------------------------------------------------------------
def test_expand(store: ConfigStore) -> None:
    node = store.get_master_node()
    assert store.expand_node(node.uuid) is node
    assert store.expand_node("node1.example.com") is node
    assert store.expand_node("node1") is node               # short name
    assert store.expand_node("NODE1") is node               # case-insensitive
    store.commit(add=[make_node(store, "node1.other.org", "127.0.1.2")])
    with pytest.raises(errors.OpPrereqError) as exc:
        store.expand_node("node1")                          # now ambiguous
    assert str(exc.value) == "Node 'node1' not known"
    assert exc.value.ecode == errors.ECODE_NOENT
    with pytest.raises(errors.OpPrereqError, match="^Instance 'x' not known$"):
        store.expand_instance("x")
    with pytest.raises(errors.OpPrereqError, match="^Node group 'x' not found$"):
        store.expand_nodegroup("x")
    group = store.get_nodegroup_by_name("default")
    assert store.expand_nodegroup("default") is group
    assert store.expand_nodegroup(group.uuid) is group
    inst = make_instance(store, "web.example.com")
    store.commit(add=[inst])
    assert store.expand_instance("web").uuid == inst.uuid
    assert store.expand_instance(inst.uuid).uuid == inst.uuid


# -- listeners --------------------------------------------------------------------------
def test_listeners_receive_exact_changes(store: ConfigStore) -> None:
    got: list[ConfigChanges] = []
    store.add_listener(got.append)
    a, b = make_instance(store, "a"), make_instance(store, "b")
    store.commit(add=[a, b])
    a2 = store.get_instance(a.uuid).model_copy(deep=True)
    a2.os = "x"
    store.commit(update=[a2], remove=[b.uuid])

    assert [c.serial_no for c in got] == [2, 3]
    assert list(got[0].upserts) == ["instance"]
    assert [d["uuid"] for d in got[0].upserts["instance"]] == [a.uuid, b.uuid]
    assert [d["serial_no"] for d in got[0].upserts["instance"]] == [1, 1]
    assert got[0].removes == {}
    assert got[1].removes == {"instance": [b.uuid]}
    assert list(got[1].upserts) == ["instance"]
    [upd] = got[1].upserts["instance"]
    assert Instance.from_dict(upd) == store.get_instance(a.uuid)
    assert upd["os"] == "x" and upd["serial_no"] == 2

    store.remove_listener(got.append)
    store.commit(remove=[a.uuid])
    assert len(got) == 2


def test_listener_cannot_alias_store_objects(store: ConfigStore) -> None:
    def vandal(changes: ConfigChanges) -> None:
        for data in changes.upserts["instance"]:
            data["hvparams"]["kernel_path"] = "/evil"
            data["tags"].append("evil")

    store.add_listener(vandal)
    inst = make_instance(store, "a", hvparams={"kernel_path": "/k"}, tags=["t"])
    store.commit(add=[inst])
    assert store.get_instance(inst.uuid).hvparams == {"kernel_path": "/k"}
    assert store.get_instance(inst.uuid).tags == ["t"]


def test_failing_listener_is_logged_not_raised(store: ConfigStore,
                                               caplog: pytest.LogCaptureFixture) -> None:
    got: list[int] = []

    def bad(changes: ConfigChanges) -> None:
        raise RuntimeError("listener broke")

    store.add_listener(bad)
    store.add_listener(lambda c: got.append(c.serial_no))
    with caplog.at_level(logging.ERROR, logger="corral.config.store"):
        store.commit(add=[make_instance(store, "a")])
    assert got == [2]
    assert "listener broke" in caplog.text
    assert store.get_instance_by_name("a") is not None


def test_no_listener_call_for_failed_commit(store: ConfigStore) -> None:
    got: list[ConfigChanges] = []
    store.add_listener(got.append)
    with pytest.raises(errors.ConfigurationError):
        store.commit(remove=["nope"])
    assert got == []


def test_listener_may_read_store_and_commit(store: ConfigStore) -> None:
    """Listeners run outside the lock: reading or even committing does not deadlock."""
    seen: list[int] = []

    def listener(changes: ConfigChanges) -> None:
        seen.append(changes.serial_no)
        if changes.serial_no == 2:
            store.commit(add=[make_instance(store, "from-listener")])

    store.add_listener(listener)
    store.commit(add=[make_instance(store, "a")])
    assert seen == [2, 3]
    assert store.get_instance_by_name("from-listener") is not None


# -- threads ----------------------------------------------------------------------------
def test_many_threads_committing(store: ConfigStore) -> None:
    serials: list[int] = []
    lock = threading.Lock()

    def record(changes: ConfigChanges) -> None:
        with lock:
            serials.append(changes.serial_no)

    store.add_listener(record)
    errors_seen: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(20):
                inst = make_instance(store, f"t{t}-i{i}")
                store.commit(add=[inst])
                copy = store.get_instance(inst.uuid).model_copy(deep=True)
                copy.admin_state = C.ADMINST_UP
                store.commit(update=[copy])
                store.generate_mac(owner=str(t))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors_seen.append(err)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors_seen == []
    insts = store.get_instances()
    assert len(insts) == 160
    assert all(i.admin_state == C.ADMINST_UP and i.serial_no == 2 for i in insts.values())
    assert store.serial_no == 1 + 320
    assert serials == list(range(2, 322))          # every commit, in order
    assert disk_snapshot(store.path) == snapshot(store)
    assert store.verify_config() == []


def test_instance_object_roundtrip_types(store: ConfigStore) -> None:
    inst = make_instance(store, "a", hvparams={"kernel_path": "/k"}, tags=["t1"])
    store.commit(add=[inst])
    got = store.get_instance(inst.uuid)
    assert isinstance(got, Instance) and isinstance(got.disks[0], Disk)
    assert got.hvparams == {"kernel_path": "/k"} and got.tags == ["t1"]
