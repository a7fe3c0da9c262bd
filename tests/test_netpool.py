"""Address pools of networks (corral.netpool, Ganeti's network.AddressPool)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral import errors
from corral.netpool import AddressPool, AddressPoolError, normalize_mac_prefix
from corral.objects import Network


def _net(cidr: str = "192.0.2.0/28", **kw: object) -> Network:
    return Network(name="n", network=cidr, **kw)  # type: ignore[arg-type]


def test_initialize_reserves_network_broadcast_and_gateway() -> None:
    net = _net(gateway="192.0.2.1")
    pool = AddressPool.initialize(net)
    assert net.ext_reservations == "1100000000000001"
    assert net.reservations == "0" * 16
    assert pool.external_reservations() == ["192.0.2.0", "192.0.2.1", "192.0.2.15"]
    assert (pool.free_count, pool.reserved_count) == (13, 3)
    assert pool.get_map() == "XX.............X"
    assert pool.generate_free() == "192.0.2.2"


def test_reserve_release_and_errors() -> None:
    net = _net()
    pool = AddressPool.initialize(net)
    pool.reserve("192.0.2.4")
    assert pool.is_reserved("192.0.2.4") and not pool.is_reserved("192.0.2.4", external=True)
    assert net.reservations[4] == "1"
    with pytest.raises(AddressPoolError, match="already used by an instance"):
        pool.reserve("192.0.2.4")
    with pytest.raises(AddressPoolError, match="already externally reserved"):
        pool.reserve("192.0.2.0", external=True)
    with pytest.raises(AddressPoolError, match="does not contain"):
        pool.reserve("192.0.3.1")
    with pytest.raises(AddressPoolError, match="not used by an instance"):
        pool.release("192.0.2.5")
    with pytest.raises(AddressPoolError, match="not externally reserved"):
        pool.release("192.0.2.5", external=True)
    pool.release("192.0.2.4")
    assert net.reservations == "0" * 16
    # A stored pool is read back with the same reservations.
    again = AddressPool(net.model_copy())
    assert again.external_reservations() == ["192.0.2.0", "192.0.2.15"]
    assert not again.contains("192.0.3.1") and not again.contains(None)
    assert not again.contains("not-an-ip")


def test_pool_full_and_exclusions() -> None:
    pool = AddressPool.initialize(_net("198.51.100.0/30"))
    assert pool.generate_free() == "198.51.100.1"
    assert pool.generate_free(exclude={"198.51.100.1"}) == "198.51.100.2"
    with pytest.raises(AddressPoolError, match="is full"):
        pool.generate_free(exclude={"198.51.100.1", "198.51.100.2"})
    pool.reserve("198.51.100.1")
    pool.reserve("198.51.100.2")
    assert pool.is_full() and pool.free_count == 0


@pytest.mark.parametrize("cidr,text", [("10.0.0.0/15", "at most a /16"),
                                       ("10.0.0.0/31", "at least a /30")])
def test_size_limits(cidr: str, text: str) -> None:
    with pytest.raises(AddressPoolError, match=text):
        AddressPool(_net(cidr))


def test_big_pool_is_fast_enough() -> None:
    pool = AddressPool.initialize(_net("10.1.0.0/16", gateway="10.1.255.254"))
    for i in range(1, 200):
        pool.reserve(str(ipaddress.IPv4Address("10.1.0.0") + i))
    assert pool.generate_free() == "10.1.0.200"
    assert pool.free_count == 65536 - 3 - 199


def test_bad_stored_map_and_gateways() -> None:
    with pytest.raises(AddressPoolError, match="does not fit"):
        AddressPool(_net(reservations="0101"))
    with pytest.raises(AddressPoolError, match="does not contain"):
        AddressPool.initialize(_net(gateway="192.0.3.1"))
    with pytest.raises(AddressPoolError, match="not in"):
        AddressPool(_net(network6="2001:db8::/64", gateway6="2001:db9::1")).validate()
    AddressPool(_net(network6="2001:db8::/64", gateway6="fe80::1")).validate()


def test_mac_prefix() -> None:
    assert normalize_mac_prefix("AA:bb:0C") == "aa:bb:0c"
    for bad in ("aa:bb", "aa:bb:cc:dd", "gg:00:00", 5):
        with pytest.raises(errors.OpPrereqError) as exc:
            normalize_mac_prefix(bad)
        assert exc.value.ecode == errors.ECODE_INVAL


@settings(max_examples=60, deadline=None)
@given(prefix=st.integers(min_value=24, max_value=30),
       ops=st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=255),
                              st.booleans()), max_size=40))
def test_pool_matches_a_set_model(prefix: int, ops: list[tuple[bool, int, bool]]) -> None:
    """Random reserve/release sequences agree with two plain sets, and the
    bit strings round-trip through the network object."""
    net = _net(f"10.9.0.0/{prefix}")
    pool = AddressPool.initialize(net)
    size = 2 ** (32 - prefix)
    model = {False: set(), True: {0, size - 1}}
    for reserve, offset, external in ops:
        idx = offset % size
        address = str(ipaddress.IPv4Address("10.9.0.0") + idx)
        if reserve:
            if idx in model[external]:
                with pytest.raises(AddressPoolError):
                    pool.reserve(address, external)
            else:
                pool.reserve(address, external)
                model[external].add(idx)
        elif idx in model[external]:
            pool.release(address, external)
            model[external].discard(idx)
        else:
            with pytest.raises(AddressPoolError):
                pool.release(address, external)
    used = model[False] | model[True]
    assert pool.reserved_count == len(used) and pool.free_count == size - len(used)
    assert pool.get_map() == "".join("X" if i in used else "." for i in range(size))
    reread = AddressPool(net.model_copy())
    assert reread.instance_reservations() == \
        [str(ipaddress.IPv4Address("10.9.0.0") + i) for i in sorted(model[False])]
    free = [i for i in range(size) if i not in used]
    if free:
        assert reread.generate_free() == str(ipaddress.IPv4Address("10.9.0.0") + free[0])
