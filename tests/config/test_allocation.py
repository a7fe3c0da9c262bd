"""Ports and MACs handed out by the config store."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import make_instance

from corral import errors
from corral.config import ConfigStore
from corral.config.allocation import LAST_CLUSTER_PORT, MacPool


def test_allocate_port_sequence_and_persistence(store: ConfigStore) -> None:
    first = store.get_cluster().highest_used_port
    serial = store.serial_no
    assert store.allocate_port() == first + 1
    assert store.allocate_port() == first + 2
    assert store.get_cluster().highest_used_port == first + 2
    assert store.serial_no == serial + 2
    path = store.path
    store.close()
    reopened = ConfigStore.open(path)
    try:
        assert reopened.allocate_port() == first + 3
    finally:
        reopened.close()


def test_allocate_port_prefers_pool_and_notifies(store: ConfigStore) -> None:
    cluster = store.get_cluster().model_copy(deep=True)
    cluster.tcpudp_port_pool = [12001, 12005]
    store.commit(update=[cluster])
    got: list[int] = []
    store.add_listener(lambda c: got.append(c.serial_no))
    assert store.allocate_port() == 12005
    assert store.allocate_port() == 12001
    assert store.get_cluster().tcpudp_port_pool == []
    assert got == [store.serial_no - 1, store.serial_no]


def test_allocate_port_exhausted(store: ConfigStore) -> None:
    cluster = store.get_cluster().model_copy(deep=True)
    cluster.highest_used_port = LAST_CLUSTER_PORT
    store.commit(update=[cluster])
    serial = store.serial_no
    with pytest.raises(errors.ConfigurationError, match="highest used port"):
        store.allocate_port()
    assert store.serial_no == serial


def test_generate_mac_uses_prefix_and_skips_used(store: ConfigStore) -> None:
    mac = store.generate_mac()
    assert mac.startswith(store.get_cluster().mac_prefix + ":")
    assert len(mac.split(":")) == 6
    # A reserved MAC cannot be reserved again; once committed it stays used.
    with pytest.raises(errors.OpPrereqError) as exc:
        store.reserve_mac(mac)
    assert exc.value.ecode == errors.ECODE_NOTUNIQUE
    store.commit(add=[make_instance(store, "a", macs=(mac,))])
    with pytest.raises(errors.OpPrereqError, match="already in use in cluster"):
        store.reserve_mac(mac.upper())
    store.release_mac(mac)                       # no reservation left: no-op
    with pytest.raises(errors.OpPrereqError):
        store.reserve_mac(mac)
    # Removing the instance frees the MAC.
    store.commit(remove=[store.get_instance_by_name("a").uuid])
    store.reserve_mac(mac)


def test_reserve_and_release(store: ConfigStore) -> None:
    with pytest.raises(errors.OpPrereqError) as exc:
        store.reserve_mac("not-a-mac")
    assert exc.value.ecode == errors.ECODE_INVAL
    store.reserve_mac("aa:00:00:00:00:01", owner="job1")
    store.reserve_mac("aa:00:00:00:00:02", owner="job1")
    store.reserve_mac("aa:00:00:00:00:03", owner="job2")
    store.release_reservations("job1")
    store.reserve_mac("aa:00:00:00:00:01")
    store.reserve_mac("aa:00:00:00:00:02")
    with pytest.raises(errors.OpPrereqError):
        store.reserve_mac("aa:00:00:00:00:03")
    store.release_mac("AA:00:00:00:00:03")
    store.reserve_mac("aa:00:00:00:00:03")


def test_concurrent_generate_mac_never_repeats(store: ConfigStore) -> None:
    results: list[list[str]] = [[] for _ in range(8)]

    def worker(t: int) -> None:
        for _ in range(500):
            results[t].append(store.generate_mac(owner=str(t)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    flat = [m for r in results for m in r]
    assert len(flat) == len(set(flat)) == 4000


class _TinyRandom(random.Random):
    """Only ``space`` different suffixes: forces collisions and exhaustion."""

    def __init__(self, seed: int, space: int) -> None:
        super().__init__(seed)
        self.space = space

    def getrandbits(self, k: int) -> int:
        return int(self.random() * self.space)


@settings(max_examples=60, deadline=None)
@given(space=st.integers(min_value=1, max_value=24), seed=st.integers(0, 2**16),
       used=st.sets(st.integers(min_value=0, max_value=23), max_size=24),
       requests=st.integers(min_value=0, max_value=40))
def test_generate_mac_property(space: int, seed: int, used: set[int], requests: int) -> None:
    """Generated MACs are distinct, never used, and exhaustion is an error."""
    pool = MacPool(_TinyRandom(seed, space))
    used_macs = {f"aa:00:00:00:00:{u:02x}": 1 for u in used}
    free = {f"aa:00:00:00:00:{s:02x}" for s in range(space)} - set(used_macs)
    got: list[str] = []
    for _ in range(requests):
        if len(got) == len(free):
            with pytest.raises(errors.ConfigurationError, match="unique MAC"):
                pool.generate("aa:00:00", used_macs, None)
            break
        got.append(pool.generate("aa:00:00", used_macs, None))
    assert len(got) == len(set(got))
    assert not set(got) & set(used_macs)
    assert set(got) <= free


def test_generate_mac_refuses_bad_prefix(store: ConfigStore) -> None:
    cluster = store.get_cluster().model_copy(deep=True)
    cluster.mac_prefix = "zz:00"
    store.commit(update=[cluster])
    with pytest.raises(errors.ConfigurationError, match="prefix"):
        store.generate_mac()
