"""IPv4 address pools of networks.

Mirrors ``ganeti.network.AddressPool``: a pool wraps a
:class:`corral.objects.Network` whose ``reservations`` (addresses used by
instance NICs) and ``ext_reservations`` (addresses reserved outside Corral:
network, broadcast, gateway, hosts) are Ganeti's bit strings, one character
``"0"``/``"1"`` per address of the IPv4 subnet, index 0 being the network
address. Every change is written back to the network object at once; the
caller commits the object.

As in Ganeti, subnets from /30 (4 addresses) to /16 (65,536 addresses) are
supported. Bit operations go through Python integers so that a /16 pool is
handled in C, not in a Python loop.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from typing import Any

from corral import errors
from corral.objects import Network

# Ganeti's IPV4_NETWORK_MIN_SIZE / IPV4_NETWORK_MAX_SIZE (prefix lengths).
IPV4_NETWORK_MIN_SIZE = 30
IPV4_NETWORK_MAX_SIZE = 16
IPV4_NETWORK_MIN_NUM_HOSTS = 2 ** (32 - IPV4_NETWORK_MIN_SIZE)
IPV4_NETWORK_MAX_NUM_HOSTS = 2 ** (32 - IPV4_NETWORK_MAX_SIZE)

_MAC_PREFIX_RE = re.compile(r"^([0-9a-f]{2}:){2}[0-9a-f]{2}$")


class AddressPoolError(errors.CorralError):
    """A pool operation is impossible (Ganeti's ``errors.AddressPoolError``):
    unsupported subnet size, address outside the subnet, already (not)
    reserved, pool full. LUs turn it into ``OpPrereqError``/``OpExecError``."""


def normalize_mac_prefix(prefix: Any) -> str:
    """Ganeti's ``NormalizeAndValidateThreeOctetMacPrefix``: ``aa:bb:cc`` in
    lower case; ``OpPrereqError`` ECODE_INVAL otherwise."""
    if isinstance(prefix, str) and _MAC_PREFIX_RE.match(prefix.lower()):
        return prefix.lower()
    raise errors.OpPrereqError(f"Invalid MAC address prefix '{prefix}'", errors.ECODE_INVAL)


def _bits(text: str, size: int) -> int:
    return int(text, 2) if text else 0


class AddressPool:
    """The address pool of one network (changes ``net`` in place).

    Raises :class:`AddressPoolError` when the subnet is larger than /16 or
    smaller than /30, or the stored bit strings do not fit the subnet.
    """

    def __init__(self, net: Network) -> None:
        self.net = net
        self.network = ipaddress.IPv4Network(net.network)
        size = self.network.num_addresses
        if size > IPV4_NETWORK_MAX_NUM_HOSTS:
            raise AddressPoolError(
                f"A big network with {size} host(s) is currently not supported. please "
                f"specify at most a /{IPV4_NETWORK_MAX_SIZE} network")
        if size < IPV4_NETWORK_MIN_NUM_HOSTS:
            raise AddressPoolError(
                f"A network with only {size} host(s) is too small, please specify at "
                f"least a /{IPV4_NETWORK_MIN_SIZE} network")
        self.size = size
        for text in (net.reservations, net.ext_reservations):
            if text and len(text) != size:
                raise AddressPoolError(f"Reservation map of {len(text)} addresses does not "
                                       f"fit network {self.network}")
        self._mask = (1 << size) - 1
        self._res = _bits(net.reservations, size)
        self._ext = _bits(net.ext_reservations, size)
        self._update()

    @classmethod
    def initialize(cls, net: Network) -> AddressPool:
        """A new pool for ``net`` with the network and broadcast addresses
        and the gateway reserved externally (``InitializeNetwork``)."""
        pool = cls(net)
        for addr in (pool.network[0], pool.network[-1]):
            pool.reserve(str(addr), external=True)
        if net.gateway:
            pool.reserve(net.gateway, external=True)
        pool.validate()
        return pool

    # -- indexes ---------------------------------------------------------------------
    def _bit(self, idx: int) -> int:
        # Index 0 is the leftmost character, the highest bit of the integer.
        return 1 << (self.size - 1 - idx)

    def _index(self, address: str) -> int:
        try:
            addr = ipaddress.IPv4Address(address)
        except ValueError:
            raise AddressPoolError(f"Invalid IPv4 address '{address}'") from None
        if addr not in self.network:
            raise AddressPoolError(f"{self.network} does not contain {addr}")
        return int(addr) - int(self.network.network_address)

    def _to01(self, value: int) -> str:
        return format(value, f"0{self.size}b")

    def _update(self) -> None:
        self.net.reservations = self._to01(self._res)
        self.net.ext_reservations = self._to01(self._ext)

    # -- questions -------------------------------------------------------------------
    def contains(self, address: str | None) -> bool:
        """Whether ``address`` (any string; None is never contained) is in the subnet."""
        if not address:
            return False
        try:
            return ipaddress.ip_address(address) in self.network
        except ValueError:
            return False

    def is_reserved(self, address: str, external: bool = False) -> bool:
        """Whether ``address`` is used by an instance (or, with ``external``,
        reserved externally). ``AddressPoolError`` if not in the subnet."""
        bits = self._ext if external else self._res
        return bool(bits & self._bit(self._index(address)))

    @property
    def all_reservations(self) -> str:
        """Combined map of both kinds of reservations, as a bit string."""
        return self._to01(self._res | self._ext)

    def is_full(self) -> bool:
        return (self._res | self._ext) == self._mask

    @property
    def reserved_count(self) -> int:
        return (self._res | self._ext).bit_count()

    @property
    def free_count(self) -> int:
        return self.size - self.reserved_count

    def get_map(self) -> str:
        """Ganeti's usage map: ``X`` reserved, ``.`` free, one per address."""
        return self.all_reservations.replace("1", "X").replace("0", ".")

    def external_reservations(self) -> list[str]:
        """Externally reserved addresses, in address order."""
        text = self._to01(self._ext)
        return [str(self.network[i]) for i, c in enumerate(text) if c == "1"]

    def instance_reservations(self) -> list[str]:
        """Addresses marked as used by instances, in address order."""
        text = self._to01(self._res)
        return [str(self.network[i]) for i, c in enumerate(text) if c == "1"]

    # -- changes ---------------------------------------------------------------------
    def reserve(self, address: str, external: bool = False) -> None:
        """Mark ``address`` as used; ``AddressPoolError`` if it already is
        (in the same kind of reservation) or is outside the subnet."""
        if self.is_reserved(address, external):
            if external:
                raise AddressPoolError(f"IP {address} is already externally reserved")
            raise AddressPoolError(f"IP {address} is already used by an instance")
        self._mark(address, True, external)

    def release(self, address: str, external: bool = False) -> None:
        """Unmark ``address``; ``AddressPoolError`` if it is not marked."""
        if not self.is_reserved(address, external):
            if external:
                raise AddressPoolError(f"IP {address} is not externally reserved")
            raise AddressPoolError(f"IP {address} is not used by an instance")
        self._mark(address, False, external)

    def _mark(self, address: str, value: bool, external: bool) -> None:
        bit = self._bit(self._index(address))
        if external:
            self._ext = self._ext | bit if value else self._ext & ~bit
        else:
            self._res = self._res | bit if value else self._res & ~bit
        self._update()

    def generate_free(self, exclude: Collection[str] = ()) -> str:
        """The first free address not in ``exclude`` (not reserved by this
        call); ``AddressPoolError`` when there is none."""
        text = self.all_reservations
        idx = text.find("0")
        while idx >= 0:
            address = str(self.network[idx])
            if address not in exclude:
                return address
            idx = text.find("0", idx + 1)
        raise AddressPoolError(f"{self.network} is full")

    def validate(self) -> None:
        """Check the gateways (``AddressPoolError`` if outside their subnets)."""
        if self.net.gateway and ipaddress.ip_address(self.net.gateway) not in self.network:
            raise AddressPoolError(f"Gateway {self.net.gateway} is not in {self.network}")
        if self.net.network6 and self.net.gateway6:
            gw6 = ipaddress.IPv6Address(self.net.gateway6)
            if gw6 not in ipaddress.IPv6Network(self.net.network6) and not gw6.is_link_local:
                raise AddressPoolError(
                    f"IPv6 gateway {self.net.gateway6} is not in {self.net.network6}")
