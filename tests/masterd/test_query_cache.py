"""The master's query caches: rows reused only for the same config serial
and live data, bounded in cells; a changed instance shows up changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral.config import ConfigStore
from corral.masterd import master as master_mod
from corral.masterd.master import Master, _RowsCache
from corral.objects import Cluster, Instance, Node, NodeGroup


class _Context:
    """What queries of config fields read of the master's context (no RPC)."""

    def __init__(self, cfg: ConfigStore) -> None:
        self.cfg = cfg
        self.rpc = None


@pytest.fixture
def cfg(tmp_path: Path) -> Iterator[ConfigStore]:
    group = NodeGroup(name="default")
    node = Node(name="node1", primary_ip="127.0.1.1", group=group.uuid)
    cluster = Cluster(cluster_name="cluster", master_node=node.uuid)
    store = ConfigStore.create(tmp_path / "config.db", cluster, node, group)
    store.commit(add=[Instance(name=f"inst{k}", primary_node=node.uuid, os="noop")
                      for k in range(5)])
    yield store
    store.close()


def _values(result: dict[str, Any]) -> list[list[Any]]:
    return [[value for _status, value in row] for row in result["data"]]


def test_changed_instance_appears_changed_in_the_next_query(cfg: ConfigStore) -> None:
    master = Master(_Context(cfg))  # type: ignore[arg-type]
    fields = ["name", "os", "be/maxmem", "beparams"]
    first = master.query("instance", fields)
    assert master.query("instance", fields)["data"] is first["data"]     # reused
    inst = cfg.get_instance_by_name("inst3").model_copy(deep=True)
    inst.os = "debootstrap"
    inst.beparams = {C.BE_MAXMEM: 777}
    cfg.commit(update=[inst])
    rows = {r[0]: r for r in _values(master.query("instance", fields))}
    assert rows["inst3"][1:3] == ["debootstrap", 777]
    assert rows["inst3"][3][C.BE_MAXMEM] == 777
    assert rows["inst2"][1:3] == ["noop", C.BEC_DEFAULTS[C.BE_MAXMEM]]
    cfg.commit(remove=[cfg.get_instance_by_name("inst4")])
    assert [r[0] for r in _values(master.query("instance", ["name"]))] == [
        "inst0", "inst1", "inst2", "inst3"]


def test_old_style_query_sees_the_change_too(cfg: ConfigStore) -> None:
    master = Master(_Context(cfg))  # type: ignore[arg-type]
    assert master.query_instances(["inst1"], ["os"]) == [["noop"]]
    inst = cfg.get_instance_by_name("inst1").model_copy(deep=True)
    inst.os = "other"
    cfg.commit(update=[inst])
    assert master.query_instances(["inst1"], ["os"]) == [["other"]]


def test_rows_cache_is_bounded_in_cells() -> None:
    cache = _RowsCache(max_cells=10)
    cache.put(("a",), 1, None, [[1]] * 4, 4)
    cache.put(("b",), 1, None, [[2]] * 4, 4)
    cache.put(("c",), 1, None, [[3]] * 4, 4)         # evicts the oldest ("a")
    assert cache.cells == 8
    assert cache.get(("a",), 1, None) is None
    assert cache.get(("c",), 1, None) == [[3]] * 4
    cache.put(("huge",), 1, None, [[0]] * 11, 11)    # larger than the bound: not kept
    assert cache.get(("huge",), 1, None) is None and cache.cells == 8
    assert cache.get(("c",), 2, None) is None        # another serial: all dropped
    assert cache.cells == 0


def test_rows_with_live_data_are_dropped_after_the_ttl(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    now = [1000.0]
    monkeypatch.setattr(master_mod.time, "monotonic", lambda: now[0])
    cache = _RowsCache(max_cells=100)
    live, other = object(), object()
    cache.put(("live",), 1, live, [[1]], 1)
    cache.put(("config",), 1, None, [[2]], 1)
    assert cache.get(("live",), 1, other) is None     # another snapshot: no reuse
    assert cache.get(("live",), 1, live) == [[1]]
    now[0] += master_mod.LIVE_DATA_TTL + 0.01
    assert cache.get(("live",), 1, live) is None and cache.cells == 1
    assert cache.get(("config",), 1, None) == [[2]]
