"""Replication: a master candidate's replica follows the master's commits."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from store_helpers import disk_snapshot, make_instance, make_node, snapshot

from corral import constants as C
from corral import errors
from corral.config import ConfigChanges, ConfigStore
from corral.objects import NodeGroup


@pytest.fixture
def replica(tmp_path: Path):
    r = ConfigStore.create_replica(tmp_path / "replica" / "config.db")
    yield r
    r.close()


def _wire(changes: ConfigChanges) -> dict:
    """What travels in the config_update RPC: JSON."""
    return json.loads(json.dumps(changes.model_dump(mode="json")))


def _history(store: ConfigStore) -> None:
    """A bit of everything: adds, updates, renames (swap), removes, cluster change."""
    node2 = make_node(store, "node2", "127.0.1.2")
    group2 = NodeGroup(name="second")
    store.commit(add=[node2, group2])
    a, b, c = (make_instance(store, n, macs=(f"aa:00:00:00:00:0{i}",))
               for i, n in enumerate("abc"))
    store.commit(add=[a, b, c])
    x = store.get_instance(a.uuid).model_copy(deep=True)
    y = store.get_instance(b.uuid).model_copy(deep=True)
    x.name, y.name = "b", "a"
    x.admin_state = C.ADMINST_UP
    store.commit(update=[x, y])
    store.commit(remove=[c.uuid])
    n2 = store.get_node(node2.uuid).model_copy(deep=True)
    n2.group = group2.uuid
    n2.drained = True
    store.commit(update=[n2])
    store.allocate_port()


def test_empty_replica(replica: ConfigStore) -> None:
    assert replica.serial_no == 0
    with pytest.raises(errors.ConfigurationError, match="no cluster"):
        replica.get_cluster()
    assert replica.get_nodes() == {}


def test_full_snapshot_then_incremental_changes(store: ConfigStore,
                                                replica: ConfigStore) -> None:
    replica.apply_replica(_wire(store.export_all()))
    assert snapshot(replica) == snapshot(store)
    store.add_listener(lambda ch: replica.apply_replica(_wire(ch)))
    _history(store)
    assert snapshot(replica) == snapshot(store)
    assert replica.serial_no == store.serial_no
    assert disk_snapshot(replica.path) == snapshot(store)
    assert replica.verify_config() == []
    assert replica.get_instance_by_name("a").uuid == store.get_instance_by_name("a").uuid
    # The replica's indexes work too.
    master = replica.get_master_node().uuid
    assert [i.name for i in replica.get_node_instances(master)[0]] == ["a", "b"]


def test_replica_apply_is_idempotent(store: ConfigStore, replica: ConfigStore) -> None:
    sets: list[ConfigChanges] = []
    store.add_listener(sets.append)
    replica.apply_replica(store.export_all())
    _history(store)
    for ch in sets:
        replica.apply_replica(ch)
    once = snapshot(replica)
    for ch in sets:                       # everything again, and the last twice
        replica.apply_replica(ch)
    replica.apply_replica(sets[-1])
    assert snapshot(replica) == once == snapshot(store)


def test_late_old_change_does_not_move_object_back(store: ConfigStore,
                                                   replica: ConfigStore) -> None:
    sets: list[ConfigChanges] = []
    store.add_listener(sets.append)
    replica.apply_replica(store.export_all())
    inst = make_instance(store, "a")
    store.commit(add=[inst])
    for os_name in ("one", "two"):
        copy = store.get_instance(inst.uuid).model_copy(deep=True)
        copy.os = os_name
        store.commit(update=[copy])
    replica.apply_replica(sets[0])
    replica.apply_replica(sets[2])
    replica.apply_replica(sets[1])        # arrives late
    assert replica.get_instance(inst.uuid).os == "two"
    assert replica.serial_no == store.serial_no


def test_full_snapshot_replaces_stale_replica(store: ConfigStore,
                                              replica: ConfigStore) -> None:
    replica.apply_replica(store.export_all())
    stale = make_instance(store, "stale")
    replica.apply_replica(ConfigChanges(serial_no=99, upserts={"instance": [stale.to_dict()]}))
    assert replica.get_instance_by_name("stale") is not None
    _history(store)
    replica.apply_replica(store.export_all())
    assert snapshot(replica) == snapshot(store)
    assert replica.get_instance_by_name("stale") is None


def test_conflicting_change_refused_without_changes(store: ConfigStore,
                                                    replica: ConfigStore) -> None:
    replica.apply_replica(store.export_all())
    replica.apply_replica(ConfigChanges(serial_no=5, upserts={
        "instance": [make_instance(store, "a").to_dict()]}))
    before = snapshot(replica)
    clash = make_instance(store, "a")      # other uuid, same name
    other = make_instance(store, "fine")
    with pytest.raises(errors.ConfigurationError, match="UNIQUE"):
        replica.apply_replica(ConfigChanges(serial_no=6, upserts={
            "instance": [other.to_dict(), clash.to_dict()]}))
    assert snapshot(replica) == before
    assert disk_snapshot(replica.path) == before


def test_replica_does_not_alias_callers_dicts(store: ConfigStore,
                                              replica: ConfigStore) -> None:
    inst = make_instance(store, "a", osparams={"list": [1]})
    changes = ConfigChanges(serial_no=2, upserts={"instance": [inst.to_dict()]})
    replica.apply_replica(changes)
    changes.upserts["instance"][0]["osparams"]["list"].append(2)
    assert replica.get_instance(inst.uuid).osparams == {"list": [1]}


def test_invalid_change_sets_refused(replica: ConfigStore) -> None:
    with pytest.raises(errors.ConfigurationError, match="Unknown object kinds"):
        replica.apply_replica(ConfigChanges(serial_no=1, removes={"filter": ["x"]}))
    with pytest.raises(errors.ConfigurationError, match="Invalid replicated"):
        replica.apply_replica({"serial_no": 1, "upserts": {"node": [{"name": "x"}]}})
    assert replica.serial_no == 0


def test_replica_survives_reopen(store: ConfigStore, replica: ConfigStore) -> None:
    replica.apply_replica(store.export_all())
    _history(store)
    replica.apply_replica(store.export_all())
    path = replica.path
    replica.close()
    again = ConfigStore.open(path)
    try:
        assert snapshot(again) == snapshot(store)
    finally:
        again.close()


def test_create_replica_refuses_existing(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    sqlite3.connect(path).close()
    with pytest.raises(errors.ConfigurationError, match="already exists"):
        ConfigStore.create_replica(path)
