"""verify_config finds each kind of inconsistency."""

from __future__ import annotations

from store_helpers import make_instance, make_node

from corral import constants as C
from corral.config import ConfigStore
from corral.objects import Disk


def _update(store: ConfigStore, obj, **changes) -> None:
    copy = obj.model_copy(deep=True)
    for key, value in changes.items():
        setattr(copy, key, value)
    store.commit(update=[copy])


def test_clean_config(store: ConfigStore) -> None:
    store.commit(add=[make_node(store, "n2", "127.0.1.2"),
                      make_instance(store, "a", macs=("aa:00:00:00:00:01",), disks=2)])
    assert store.verify_config() == []


def test_master_must_be_candidate(store: ConfigStore) -> None:
    _update(store, store.get_master_node(), master_candidate=False)
    assert store.verify_config() == [
        "master node 'node1.example.com' is not a master candidate"]


def test_master_must_exist(store: ConfigStore) -> None:
    _update(store, store.get_cluster(), master_node="gone")
    assert store.verify_config() == ["cluster has invalid master node gone"]


def test_node_group_must_exist_and_state_flags(store: ConfigStore) -> None:
    node = make_node(store, "n2", "127.0.1.2", drained=True, offline=True)
    node.group = "nogroup"
    store.commit(add=[node])
    problems = store.verify_config()
    assert "node 'n2' has invalid group 'nogroup'" in problems
    assert "node 'n2' state is invalid: drained, offline are all set" in problems


def test_instance_nodes_must_exist(store: ConfigStore) -> None:
    inst = make_instance(store, "a", pnode="ghost-node")
    inst.disks.append(Disk(iv_name="disk/9", nodes=["other-ghost"]))
    store.commit(add=[inst])
    problems = store.verify_config()
    assert "instance 'a' has invalid primary node 'ghost-node'" in problems
    assert "instance 'a' has a disk on invalid node 'ghost-node'" in problems
    assert "instance 'a' has a disk on invalid node 'other-ghost'" in problems


def test_duplicate_macs_and_iv_names(store: ConfigStore) -> None:
    a = make_instance(store, "a", macs=("aa:00:00:00:00:01",), disks=2)
    a.disks[1].iv_name = "disk/0"
    b = make_instance(store, "b", macs=("AA:00:00:00:00:01",))
    store.commit(add=[a, b])
    problems = store.verify_config()
    assert "instance 'a' has 2 disks named 'disk/0'" in problems
    assert "MAC address aa:00:00:00:00:01 is used by several NICs: a, b" in problems


def test_hypervisor_and_template_enabled(store: ConfigStore) -> None:
    store.commit(add=[make_instance(store, "a", hypervisor=C.HT_KVM),
                      make_instance(store, "b", disk_template=C.DT_PLAIN)])
    assert store.verify_config() == [
        "instance 'b' uses disk template 'plain', which is not enabled"]
    _update(store, store.get_cluster(), enabled_hypervisors=[C.HT_FAKE])
    assert "instance 'a' uses hypervisor 'kvm', which is not enabled" in store.verify_config()


def test_empty_enabled_lists(store: ConfigStore) -> None:
    _update(store, store.get_cluster(), enabled_hypervisors=[], enabled_disk_templates=[])
    problems = store.verify_config()
    assert "enabled hypervisors list doesn't have any entries" in problems
    assert "enabled disk templates list doesn't have any entries" in problems


def test_ports(store: ConfigStore) -> None:
    port = store.allocate_port()
    store.commit(add=[make_instance(store, "a", network_port=port),
                      make_instance(store, "b", network_port=port)])
    assert store.verify_config() == [
        f"tcp/udp port {port} has duplicates: instance 'a', instance 'b'"]
    store.commit(add=[make_instance(store, "c", network_port=port + 5)])
    assert (f"highest used port mismatch, saved {port}, computed {port + 5}"
            in store.verify_config())
