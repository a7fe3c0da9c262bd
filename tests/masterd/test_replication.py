"""Config replication to master candidates (masterd/replication.py).

The master side uses a real ConfigStore; the "nodes" are real replica stores
that a stand-in RPC runner feeds in-process (what noded's ``config_update``
does), so failures of single nodes can be staged deterministically. The
end-to-end path through noded is covered in tests/test_devcluster.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral.config import ConfigChanges, ConfigStore
from corral.masterd.replication import ConfigReplicator, merge_changes
from corral.objects import Cluster, Node, NodeGroup
from corral.rpc import RpcResult


def _store(path: Path) -> ConfigStore:
    group = NodeGroup(name="default")
    node = Node(name="node1", primary_ip="127.0.9.1", group=group.uuid)
    cluster = Cluster(cluster_name="repl.example.com", master_node=node.uuid,
                      enabled_hypervisors=[C.HT_FAKE])
    return ConfigStore.create(path, cluster, node, group)


def _content(store: ConfigStore) -> dict[str, Any]:
    full = store.export_all()
    return {"serial": full.serial_no,
            **{k: sorted(v, key=lambda d: d["uuid"]) for k, v in full.upserts.items()}}


class LoopbackRpc:
    """Applies ``config_update`` to in-process replica stores."""

    def __init__(self, cfg: ConfigStore, tmp: Path) -> None:
        self.cfg = cfg
        self.tmp = tmp
        self.replicas: dict[str, ConfigStore] = {}
        self.failing: set[str] = set()
        self.calls: list[tuple[str, bool, int]] = []    # (node uuid, full, serial)
        self.lock = threading.Lock()

    def call(self, procedure: str, node_uuids: list[str], args: list[Any],
             timeout: int = 0) -> dict[str, RpcResult]:
        assert procedure == "config_update"
        (changes,) = args
        assert isinstance(changes, dict)      # JSON form, as on the wire
        out = {}
        for uuid in node_uuids:
            with self.lock:
                self.calls.append((uuid, changes["full"], changes["serial_no"]))
                if uuid in self.failing:
                    out[uuid] = RpcResult(uuid, procedure, fail_msg="connection refused")
                    continue
                if uuid not in self.replicas:
                    self.replicas[uuid] = ConfigStore.create_replica(self.tmp / f"{uuid}.db")
                self.replicas[uuid].apply_replica(changes)
                out[uuid] = RpcResult(uuid, procedure, payload=None)
        return out


@pytest.fixture
def setup(tmp_path: Path):
    cfg = _store(tmp_path / "config.db")
    group = next(iter(cfg.get_nodegroups()))
    node2 = Node(name="node2", primary_ip="127.0.9.2", group=group, master_candidate=True)
    node3 = Node(name="node3", primary_ip="127.0.9.3", group=group, master_candidate=True)
    node4 = Node(name="node4", primary_ip="127.0.9.4", group=group, master_candidate=False)
    cfg.commit(add=[node2, node3, node4])
    rpc = LoopbackRpc(cfg, tmp_path)
    repl = ConfigReplicator(cfg, rpc, retry_interval=0.3)  # type: ignore[arg-type]
    yield cfg, rpc, repl, (node2, node3, node4)
    repl.stop()
    for store in rpc.replicas.values():
        store.close()
    cfg.close()


def _add_tag(cfg: ConfigStore, tag: str) -> None:
    cluster = cfg.get_cluster().model_copy(deep=True)
    cluster.tags.append(tag)
    cfg.commit(update=[cluster])


def _wait(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_candidates_get_full_then_deltas(setup) -> None:
    cfg, rpc, repl, (node2, node3, _node4) = setup
    repl.start()
    assert repl.wait_idle(10)
    # First round: a full snapshot to each candidate, never to the master or node4.
    assert sorted((u, full) for u, full, _ in rpc.calls) == sorted(
        [(node2.uuid, True), (node3.uuid, True)])
    for i in range(5):
        _add_tag(cfg, f"t{i}")
    _wait(lambda: all(_content(r) == _content(cfg) for r in rpc.replicas.values()))
    assert repl.wait_idle(10)
    assert set(rpc.replicas) == {node2.uuid, node3.uuid}
    assert rpc.replicas[node2.uuid].get_cluster().tags == ["t0", "t1", "t2", "t3", "t4"]
    later = [c for c in rpc.calls[2:]]
    assert later and not any(full for _, full, _ in later)
    # Serial numbers sent to a node only grow.
    for uuid in (node2.uuid, node3.uuid):
        serials = [s for u, _, s in rpc.calls if u == uuid]
        assert serials == sorted(serials)


def test_failed_node_gets_full_snapshot_later(setup) -> None:
    cfg, rpc, repl, (node2, node3, _node4) = setup
    repl.start()
    assert repl.wait_idle(10)
    rpc.failing.add(node3.uuid)
    _add_tag(cfg, "while-down")
    _wait(lambda: "while-down" in rpc.replicas[node2.uuid].get_cluster().tags)
    assert "while-down" not in rpc.replicas[node3.uuid].get_cluster().tags
    # Retries happen (full snapshots) while it is down; commits are not blocked.
    _wait(lambda: sum(1 for u, full, _ in rpc.calls if u == node3.uuid and full) >= 2)
    rpc.failing.discard(node3.uuid)
    _wait(lambda: _content(rpc.replicas[node3.uuid]) == _content(cfg))
    assert repl.wait_idle(10)


def test_new_candidate_gets_full_snapshot(setup) -> None:
    cfg, rpc, repl, (_node2, _node3, node4) = setup
    repl.start()
    assert repl.wait_idle(10)
    promoted = cfg.get_node(node4.uuid).model_copy(deep=True)
    promoted.master_candidate = True
    cfg.commit(update=[promoted])
    _wait(lambda: node4.uuid in rpc.replicas
          and _content(rpc.replicas[node4.uuid]) == _content(cfg))
    assert next(full for u, full, _ in rpc.calls if u == node4.uuid) is True


def test_offline_candidate_is_skipped(setup) -> None:
    cfg, rpc, repl, (node2, node3, _node4) = setup
    off = cfg.get_node(node3.uuid).model_copy(deep=True)
    off.offline = True
    cfg.commit(update=[off])
    repl.start()
    assert repl.wait_idle(10)
    _add_tag(cfg, "x")
    _wait(lambda: "x" in rpc.replicas[node2.uuid].get_cluster().tags)
    assert repl.wait_idle(10)
    assert all(u != node3.uuid for u, _, _ in rpc.calls)


def test_commit_does_not_wait_for_slow_nodes(setup) -> None:
    cfg, rpc, repl, _nodes = setup
    slow = threading.Event()
    original = rpc.call

    def slow_call(*args: Any, **kwargs: Any) -> Any:
        slow.wait(5)
        return original(*args, **kwargs)

    rpc.call = slow_call  # type: ignore[method-assign]
    repl.start()
    start = time.monotonic()
    for i in range(3):
        _add_tag(cfg, f"fast{i}")
    assert time.monotonic() - start < 2
    slow.set()
    _wait(lambda: all(_content(r) == _content(cfg) for r in rpc.replicas.values())
          and len(rpc.replicas) == 2)


def test_merge_changes() -> None:
    a = ConfigChanges(serial_no=2, upserts={"node": [{"uuid": "n1", "v": 1},
                                                     {"uuid": "n2", "v": 1}]})
    b = ConfigChanges(serial_no=3, upserts={"node": [{"uuid": "n1", "v": 2}]},
                      removes={"node": ["n2"], "instance": ["i1"]})
    c = ConfigChanges(serial_no=4, upserts={"instance": [{"uuid": "i2", "v": 1}]})
    merged = merge_changes([a, b, c])
    assert merged.serial_no == 4
    assert merged.upserts == {"node": [{"uuid": "n1", "v": 2}],
                              "instance": [{"uuid": "i2", "v": 1}]}
    assert {k: sorted(v) for k, v in merged.removes.items()} == {"node": ["n2"],
                                                                 "instance": ["i1"]}
    assert not merged.full


def test_commits_in_a_burst_go_out_in_one_batch(setup) -> None:
    cfg, rpc, repl, (node2, node3, _node4) = setup
    repl.batch_delay = 0.3
    repl.start()
    assert repl.wait_idle(10)
    first = len(rpc.calls)
    for i in range(10):
        _add_tag(cfg, f"b{i}")
    _wait(lambda: all(_content(r) == _content(cfg) for r in rpc.replicas.values()))
    assert repl.wait_idle(10)
    # Ten commits within the batch delay: one delta per candidate, the last serial.
    assert sorted(rpc.calls[first:]) == sorted(
        [(node2.uuid, False, cfg.serial_no), (node3.uuid, False, cfg.serial_no)])
