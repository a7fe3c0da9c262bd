"""Network opcodes (OP_NETWORK_*), with Ganeti's names and fields.

Registered by :mod:`corral.opcodes` (imported at its end), so
``op_from_dict`` knows them. Addresses are checked here, before any job is
queued: IPv4/IPv6 subnets in strict CIDR form (``10.0.0.0/24``, not
``10.0.0.1/24``), addresses in their usual form, MAC prefixes as three
octets. In OP_NETWORK_SET_PARAMS the gateways, ``network6`` and
``mac_prefix`` also accept ``"none"`` (remove the value), as in Ganeti.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from corral import constants as C
from corral import errors
from corral.netpool import normalize_mac_prefix
from corral.opcodes import GroupName, NetworkName, NonEmptyStr, OpCode, _checked


def _address_check(parse: Callable[[str], Any], what: str, allow_none: bool,
                   value: str) -> str:
    if allow_none and value.lower() == C.VALUE_NONE:
        return C.VALUE_NONE
    try:
        return str(parse(value))
    except ValueError:
        raise errors.OpPrereqError(f"Invalid {what} '{value}'", errors.ECODE_INVAL) from None


def _typed(parse: Callable[[str], Any], what: str, allow_none: bool = False) -> Any:
    check = partial(_address_check, parse, what, allow_none)
    return Annotated[str, AfterValidator(partial(_checked, check, "invalid_address"))]


IPv4Network = _typed(ipaddress.IPv4Network, "IPv4 network")
IPv4Address = _typed(ipaddress.IPv4Address, "IPv4 address")
IPv6Network = _typed(ipaddress.IPv6Network, "IPv6 network")
IPv6Address = _typed(ipaddress.IPv6Address, "IPv6 address")
IPv4AddressOrNone = _typed(ipaddress.IPv4Address, "IPv4 address", allow_none=True)
IPv6NetworkOrNone = _typed(ipaddress.IPv6Network, "IPv6 network", allow_none=True)
IPv6AddressOrNone = _typed(ipaddress.IPv6Address, "IPv6 address", allow_none=True)


def _mac_prefix(value: str, allow_none: bool) -> str:
    if allow_none and value.lower() == C.VALUE_NONE:
        return C.VALUE_NONE
    return normalize_mac_prefix(value)


MacPrefix = Annotated[str, AfterValidator(
    partial(_checked, partial(_mac_prefix, allow_none=False), "invalid_mac_prefix"))]
MacPrefixOrNone = Annotated[str, AfterValidator(
    partial(_checked, partial(_mac_prefix, allow_none=True), "invalid_mac_prefix"))]
NICMode = Literal["bridged", "routed", "openvswitch"]


class OpNetworkAdd(OpCode):
    """Define a network (``LUNetworkAdd``); result None."""

    OP_DSC_FIELD = "network_name"
    network_name: NetworkName
    network: IPv4Network
    gateway: IPv4Address | None = None
    network6: IPv6Network | None = None
    gateway6: IPv6Address | None = None
    mac_prefix: MacPrefix | None = None
    add_reserved_ips: list[IPv4Address] | None = None
    conflicts_check: bool = True
    tags: list[str] = Field(default_factory=list)


class OpNetworkRemove(OpCode):
    """Remove a network connected to no group (``LUNetworkRemove``)."""

    OP_DSC_FIELD = "network_name"
    network_name: NetworkName
    force: bool = False


class OpNetworkRename(OpCode):
    """Rename a network (``LUNetworkRename``); result the new name."""

    OP_DSC_FIELD = "network_name"
    network_name: NetworkName
    new_name: NetworkName


class OpNetworkSetParams(OpCode):
    """Change a network except its IPv4 subnet (``LUNetworkSetParams``)."""

    OP_DSC_FIELD = "network_name"
    network_name: NetworkName
    gateway: IPv4AddressOrNone | None = None
    network6: IPv6NetworkOrNone | None = None
    gateway6: IPv6AddressOrNone | None = None
    mac_prefix: MacPrefixOrNone | None = None
    add_reserved_ips: list[IPv4Address] | None = None
    remove_reserved_ips: list[IPv4Address] | None = None


class OpNetworkConnect(OpCode):
    """Connect a network to a node group with NIC parameters (``LUNetworkConnect``)."""

    OP_DSC_FIELD = "network_name"
    group_name: GroupName
    network_name: NetworkName
    network_mode: NICMode
    network_link: NonEmptyStr
    network_vlan: str = ""
    conflicts_check: bool = True


class OpNetworkDisconnect(OpCode):
    """Disconnect a network from a node group (``LUNetworkDisconnect``)."""

    OP_DSC_FIELD = "network_name"
    group_name: GroupName
    network_name: NetworkName
