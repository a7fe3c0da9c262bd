"""Filled parameters shared across queries: one dict per distinct
combination, read-only, and a changed instance or cluster shows up changed
in the next query."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import constants as C
from corral.config import ConfigStore
from corral.objects import NIC, Cluster, Instance, Node, NodeGroup
from corral.query import RS_NORMAL, FilledParams, ReadOnlyDict, query

FIELDS = ["name", "beparams", "hvparams", "be/maxmem", "nic.modes", "nic.links"]


@pytest.fixture
def cfg(tmp_path: Path) -> Iterator[ConfigStore]:
    group = NodeGroup(name="default")
    node = Node(name="node1", primary_ip="127.0.1.1", group=group.uuid)
    cluster = Cluster(cluster_name="cluster", master_node=node.uuid,
                      beparams={"default": {C.BE_MAXMEM: 512}},
                      nicparams={"default": {C.NIC_LINK: "br0"}},
                      enabled_hypervisors=[C.HT_FAKE, C.HT_KVM])
    store = ConfigStore.create(tmp_path / "config.db", cluster, node, group)
    store.commit(add=[Instance(name=f"inst{k}", primary_node=node.uuid,
                               hypervisor=C.HT_KVM if k == 2 else C.HT_FAKE,
                               nics=[NIC(mac=f"aa:00:00:00:00:0{k}")]) for k in range(3)])
    yield store
    store.close()


def _rows(cfg: ConfigStore, params: FilledParams) -> dict[str, dict[str, object]]:
    return {r[0][1]: {f: v for f, (st, v) in zip(FIELDS, r) if st == RS_NORMAL}
            for r in query("instance", cfg, FIELDS, None, None, params)}


def test_equal_combinations_share_one_read_only_dict(cfg: ConfigStore) -> None:
    params = FilledParams()
    first, again = _rows(cfg, params), _rows(cfg, params)
    assert first["inst0"]["beparams"][C.BE_MAXMEM] == 512
    assert first["inst0"]["beparams"] is first["inst2"]["beparams"]
    assert first["inst0"]["hvparams"] is first["inst1"]["hvparams"]
    assert first["inst0"]["hvparams"] is again["inst0"]["hvparams"]
    shared = first["inst0"]["beparams"]
    assert isinstance(shared, ReadOnlyDict)
    with pytest.raises(TypeError):
        shared[C.BE_MAXMEM] = 1                      # type: ignore[index]
    with pytest.raises(TypeError):
        shared.update({C.BE_MAXMEM: 1})              # type: ignore[attr-defined]
    assert _rows(cfg, params)["inst1"]["be/maxmem"] == 512


def test_changed_instance_appears_changed_in_the_next_query(cfg: ConfigStore) -> None:
    params = FilledParams()
    assert _rows(cfg, params)["inst1"]["be/maxmem"] == 512
    inst = cfg.get_instance_by_name("inst1").model_copy(deep=True)
    inst.beparams = {C.BE_MAXMEM: 2048}
    inst.nics[0].nicparams = {C.NIC_MODE: C.NIC_MODE_ROUTED, C.NIC_LINK: "rt0"}
    cfg.commit(update=[inst])
    rows = _rows(cfg, params)
    assert rows["inst1"]["be/maxmem"] == 2048
    assert rows["inst1"]["beparams"][C.BE_MAXMEM] == 2048
    assert rows["inst1"]["nic.modes"] == [C.NIC_MODE_ROUTED]
    assert rows["inst1"]["nic.links"] == ["rt0"]
    assert rows["inst0"]["be/maxmem"] == 512 and rows["inst0"]["nic.links"] == ["br0"]


def test_changed_cluster_defaults_appear_in_the_next_query(cfg: ConfigStore) -> None:
    params = FilledParams()
    before = _rows(cfg, params)["inst0"]
    kvm_before = _rows(cfg, params)["inst2"]["hvparams"]
    cluster = cfg.get_cluster().model_copy(deep=True)
    cluster.beparams = {"default": {C.BE_MAXMEM: 4096}}
    cluster.nicparams = {"default": {C.NIC_LINK: "br9"}}
    cluster.hvparams = {C.HT_KVM: {"kernel_path": "/boot/other"}}
    cfg.commit(update=[cluster])
    after = _rows(cfg, params)["inst0"]
    assert before["be/maxmem"] == 512 and after["be/maxmem"] == 4096
    assert after["nic.links"] == ["br9"]
    kvm_after = _rows(cfg, params)["inst2"]["hvparams"]
    assert kvm_before["kernel_path"] != "/boot/other"
    assert kvm_after["kernel_path"] == "/boot/other"


def test_copies_of_shared_dicts_are_plain_and_writable() -> None:
    shared = ReadOnlyDict({"a": [1], "b": 2})
    for copied in (shared.copy(), copy.copy(shared), copy.deepcopy(shared),
                   pickle.loads(pickle.dumps(shared)), dict(shared), {**shared}):
        assert type(copied) is dict and copied == {"a": [1], "b": 2}
        copied["b"] = 3
    deep = copy.deepcopy(shared)
    deep["a"].append(2)
    assert shared["a"] == [1]


def test_unhashable_custom_values_are_filled_each_time(cfg: ConfigStore) -> None:
    inst = cfg.get_instance_by_name("inst0").model_copy(deep=True)
    inst.hvparams = {"some_list": ["x"]}
    cfg.commit(update=[inst])
    params = FilledParams()
    rows = _rows(cfg, params)
    assert rows["inst0"]["hvparams"]["some_list"] == ["x"]
    assert rows["inst0"]["hvparams"] is not _rows(cfg, params)["inst0"]["hvparams"]
