"""noded.dispatch: the procedure table and the call convention (in process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import constants as C
from corral.backend import config_replica
from corral.noded import dispatch
from corral.objects import Cluster, Node, NodeGroup
from corral.paths import Paths
from corral.rpc import compress_content
from corral.rpc.defs import CALLS


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "node")
    p.ensure_dirs()
    return p


def test_every_defined_procedure_is_dispatched() -> None:
    assert set(dispatch.PROCEDURES) == set(CALLS)


def test_unknown_procedure(paths: Paths) -> None:
    with pytest.raises(dispatch.UnknownProcedure):
        dispatch.call(paths, "no_such_call", [])


def test_missing_backend_module_fails_only_its_calls(paths: Paths,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(dispatch.PROCEDURES, "instance_list", "corral.backend.not_there")
    res = dispatch.call(paths, "instance_list", [[C.HT_FAKE], {}])
    assert res.ok is False
    assert "instance_list is not available" in res.payload
    assert "corral.backend.not_there" in res.payload
    assert dispatch.call(paths, "version", []).payload == C.PROTOCOL_VERSION


def test_function_missing_in_module(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(dispatch.PROCEDURES, "instance_list", "corral.backend.files")
    res = dispatch.call(paths, "instance_list", [[C.HT_FAKE], {}])
    assert (res.ok, res.payload) == (False, "Procedure instance_list is not implemented by "
                                            "corral.backend.files")


def test_compressed_content_is_decoded(paths: Paths) -> None:
    data = bytes(range(256)) * 20
    res = dispatch.call(paths, "upload_file_single",
                        ["/var/lib/corral/cluster-domain-secret", compress_content(data), 0o600,
                         None, None, None, None])
    assert res.ok, res.payload
    assert paths.cluster_domain_secret.read_bytes() == data
    res = dispatch.call(paths, "upload_file_single",
                        ["/var/lib/corral/cluster-domain-secret", [7, "x"], 0o600,
                         None, None, None, None])
    assert (res.ok, res.payload) == (False, "Unknown content encoding 7")


def test_leave_is_a_successful_reply_with_leave_flag(paths: Paths) -> None:
    res = dispatch.call(paths, "node_leave_cluster", [False])
    assert (res.ok, res.leave) == (True, True)


def test_config_update_creates_and_updates_the_replica(tmp_path: Path, paths: Paths) -> None:
    from corral.config import ConfigStore

    group = NodeGroup(name="default")
    master = Node(name="master.test", primary_ip="127.0.1.1", group=group.uuid)
    cluster = Cluster(cluster_name="cluster.test", master_node=master.uuid)
    store = ConfigStore.create(tmp_path / "master.db", cluster, master, group)
    try:
        res = dispatch.call(paths, "config_update",
                            [store.export_all().model_dump(mode="json")])
        assert res.ok, res.payload
        deltas: list = []
        store.add_listener(deltas.append)
        node2 = Node(name="node2.test", primary_ip="127.0.1.2", group=group.uuid)
        store.commit(add=[node2])
        res = dispatch.call(paths, "config_update", [deltas[-1].model_dump(mode="json")])
        assert res.ok, res.payload
        res = dispatch.call(paths, "config_update", [{"serial_no": "x"}])
        assert res.ok is False
    finally:
        store.close()
    config_replica.forget_replica(paths)
    replica = ConfigStore.open(paths.config_db)
    try:
        assert replica.get_cluster().cluster_name == "cluster.test"
        assert replica.get_node_by_name("node2.test") is not None
    finally:
        replica.close()
