"""Networks in the config store: persistence, replication, schema upgrade and
temporary address reservations (config/ip_allocation.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from corral import errors
from corral.config import ConfigStore
from corral.netpool import AddressPool
from corral.objects import Network


def _network(store: ConfigStore, name: str = "net1", cidr: str = "10.7.0.0/29") -> Network:
    net = Network(name=name, network=cidr)
    AddressPool.initialize(net)
    store.commit(add=[net])
    return net


def test_network_persists_and_has_unique_names(store: ConfigStore) -> None:
    net = _network(store)
    assert store.expand_network("net1").uuid == net.uuid
    assert store.expand_network(net.uuid).name == "net1"
    with pytest.raises(errors.OpPrereqError) as exc:
        store.expand_network("net")        # no short names for networks
    assert exc.value.ecode == errors.ECODE_NOENT
    with pytest.raises(errors.OpPrereqError) as exc:
        _network(store)
    assert exc.value.ecode == errors.ECODE_EXISTS
    path = store.path
    store.close()
    reopened = ConfigStore.open(path)
    try:
        got = reopened.get_network_by_name("net1")
        assert got is not None and got.ext_reservations == "10000001"
        assert reopened.verify_config() == []
    finally:
        reopened.close()


def test_old_database_without_network_table_is_upgraded(store: ConfigStore) -> None:
    path = store.path
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE network")
    reopened = ConfigStore.open(path)
    try:
        assert reopened.get_networks() == {}
        _network(reopened)
        assert [n.name for n in reopened.get_networks().values()] == ["net1"]
    finally:
        reopened.close()


def test_networks_replicate(store: ConfigStore, tmp_path: Path) -> None:
    net = _network(store)
    replica = ConfigStore.create_replica(tmp_path / "replica.db")
    try:
        replica.apply_replica(store.export_all())
        assert replica.expand_network("net1").network == "10.7.0.0/29"
        store.add_listener(replica.apply_replica)
        store.commit(remove=[net.uuid])
        assert replica.get_networks() == {}
    finally:
        replica.close()


def test_temporary_reservations(store: ConfigStore) -> None:
    net = _network(store)
    # 10.7.0.0/29: .0 and .7 reserved; .1-.6 free.
    assert store.generate_ip(net.uuid, "job1") == "10.7.0.1"
    assert store.generate_ip(net.uuid, "job2") == "10.7.0.2"
    with pytest.raises(errors.OpPrereqError) as exc:
        store.reserve_ip(net.uuid, "10.7.0.1", "job2")
    assert exc.value.ecode == errors.ECODE_NOTUNIQUE
    with pytest.raises(errors.OpPrereqError) as exc:
        store.reserve_ip(net.uuid, "10.7.0.7", "job2")
    assert exc.value.ecode == errors.ECODE_NOTUNIQUE and "externally" in str(exc.value)
    store.reserve_ip(net.uuid, "10.7.0.7", "job2", check=False)   # no conflicts check
    with pytest.raises(errors.OpPrereqError) as exc:
        store.reserve_ip(net.uuid, "10.8.0.1", "job2")
    assert exc.value.ecode == errors.ECODE_NOTUNIQUE
    store.release_ip_reservations("job1")
    assert store.generate_ip(net.uuid, "job3") == "10.7.0.1"
    for addr in ("10.7.0.3", "10.7.0.4", "10.7.0.5", "10.7.0.6"):
        store.reserve_ip(net.uuid, addr, "job3")
    with pytest.raises(errors.OpPrereqError) as exc:
        store.generate_ip(net.uuid, "job4")
    assert exc.value.ecode == errors.ECODE_STATE
    with pytest.raises(errors.OpPrereqError) as exc:
        store.generate_ip("no-such-network", "job4")
    assert exc.value.ecode == errors.ECODE_NOENT


def test_verify_config_checks_pools(store: ConfigStore) -> None:
    """gnt-cluster verify's config part: NIC addresses reserved in their pool."""
    from store_helpers import make_instance

    from corral.objects import NIC

    net = _network(store)
    group = next(iter(store.get_nodegroups().values())).model_copy(deep=True)
    group.networks[net.uuid] = {"mode": "bridged", "link": "br0", "vlan": ""}
    store.commit(update=[group])
    inst = make_instance(store, "i1", disks=0)
    inst.nics = [NIC(mac="aa:00:00:00:00:01", ip="10.7.0.2", network=net.uuid),
                 NIC(mac="aa:00:00:00:00:02", ip="10.9.9.9", network=net.uuid),
                 NIC(mac="aa:00:00:00:00:03", ip="10.7.0.2", network="gone")]
    pooled = store.get_network(net.uuid).model_copy(deep=True)
    pool = AddressPool(pooled)
    pool.reserve("10.7.0.2")
    pool.reserve("10.7.0.3")
    store.commit(add=[inst], update=[pooled])
    problems = store.verify_config()
    assert "IP address 10.9.9.9 of instance 'i1' nic1 is not in network 'net1' " \
        "(10.7.0.0/29)" in problems
    assert "instance 'i1' nic2 is on unknown network 'gone'" in problems
    assert "IP address 10.7.0.3 is reserved in network 'net1' but used by no instance" \
        in problems
    assert len(problems) == 3, problems
    group = store.get_nodegroup(group.uuid).model_copy(deep=True)
    group.networks = {"missing": {}}
    store.commit(update=[group])
    problems = store.verify_config()
    assert "node group 'default' is connected to unknown network 'missing'" in problems
    assert "instance 'i1' nic0 is on network 'net1', which is not connected to node " \
        "group 'default'" in problems
