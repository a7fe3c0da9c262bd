"""The node daemon's disk-only replica: same results on disk as the store's
replica, same refusals, nothing loaded into memory."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_helpers import disk_snapshot, make_instance, snapshot
from test_replica import _history, _wire

from corral import errors
from corral.config import ConfigChanges, ConfigStore
from corral.config.disk_replica import DiskReplica


@pytest.fixture
def replica(tmp_path: Path):
    r = DiskReplica.open(tmp_path / "replica" / "config.db")
    yield r
    r.close()


def test_full_snapshot_then_incremental_changes(store: ConfigStore,
                                                replica: DiskReplica) -> None:
    assert replica.serial_no == 0
    replica.apply_replica(_wire(store.export_all()))
    assert disk_snapshot(replica.path) == snapshot(store)
    sets: list[ConfigChanges] = []
    store.add_listener(sets.append)
    _history(store)
    for ch in sets:
        replica.apply_replica(_wire(ch))
    assert replica.serial_no == store.serial_no
    assert disk_snapshot(replica.path) == snapshot(store)
    for ch in sets:                       # idempotent, and old sets do not go back
        replica.apply_replica(ch)
    assert disk_snapshot(replica.path) == snapshot(store)
    assert not hasattr(replica, "_cache")


def test_conflict_and_invalid_sets_change_nothing(store: ConfigStore,
                                                  replica: DiskReplica) -> None:
    replica.apply_replica(store.export_all())
    replica.apply_replica(ConfigChanges(serial_no=5, upserts={
        "instance": [make_instance(store, "a").to_dict()]}))
    before = disk_snapshot(replica.path)
    clash = make_instance(store, "a")      # other uuid, same name
    with pytest.raises(errors.ConfigurationError, match="UNIQUE"):
        replica.apply_replica(ConfigChanges(serial_no=6, upserts={
            "instance": [make_instance(store, "fine").to_dict(), clash.to_dict()]}))
    with pytest.raises(errors.ConfigurationError, match="Unknown object kinds"):
        replica.apply_replica(ConfigChanges(serial_no=7, removes={"filter": ["x"]}))
    with pytest.raises(errors.ConfigurationError, match="Invalid replicated object"):
        replica.apply_replica({"serial_no": 8, "upserts": {"node": [{"name": "x"}]}})
    with pytest.raises(errors.ConfigurationError, match="Invalid replicated change set"):
        replica.apply_replica({"serial_no": "many"})
    assert replica.serial_no == 5
    assert disk_snapshot(replica.path) == before


def test_reopen_keeps_serial_and_refuses_foreign_file(store: ConfigStore, replica: DiskReplica,
                                                      tmp_path: Path) -> None:
    replica.apply_replica(store.export_all())
    replica.close()
    again = DiskReplica.open(replica.path)
    try:
        assert again.serial_no == store.serial_no
    finally:
        again.close()
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"")
    with pytest.raises(errors.ConfigurationError, match="Cannot open replica"):
        DiskReplica.open(foreign)
