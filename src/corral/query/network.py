"""Network fields (Ganeti's ``Ganeti.Query.Network``).

Pool statistics are computed once per network and query (one
:class:`corral.netpool.AddressPool` each); group and instance lists come
from one pass over the groups/instances per query.
"""

from __future__ import annotations

import functools
from typing import Any

from corral import constants as C
from corral.netpool import AddressPool, AddressPoolError
from corral.objects import Network
from corral.query.base import (
    UNAVAIL,
    FieldDef,
    Getter,
    QueryContext,
    attr_getter,
    common_fields,
    make_field,
    nice_sorted,
)


def _memo(ctx: QueryContext, key: str, build: Any) -> Any:
    """A per-query memo stored on the context (one evaluation per query)."""
    memos: dict[str, Any] = ctx.__dict__.setdefault("_network_memos", {})
    if key not in memos:
        memos[key] = build()
    return memos[key]


def _pool(ctx: QueryContext, net: Network) -> AddressPool | None:
    def build() -> dict[str, AddressPool | None]:
        return {}
    pools: dict[str, AddressPool | None] = _memo(ctx, "pools", build)
    if net.uuid not in pools:
        try:
            pools[net.uuid] = AddressPool(net.model_copy())
        except AddressPoolError:
            pools[net.uuid] = None
    return pools[net.uuid]


def _groups(ctx: QueryContext, net: Network) -> list[list[str]]:
    """``[group name, mode, link, vlan]`` per connected group ("-" if unset)."""
    def build() -> dict[str, list[list[str]]]:
        out: dict[str, list[list[str]]] = {}
        for group in ctx.cfg.get_nodegroups().values():
            for uuid, params in group.networks.items():
                out.setdefault(uuid, []).append(
                    [group.name, params.get(C.NIC_MODE) or "-",
                     params.get(C.NIC_LINK) or "-", params.get(C.NIC_VLAN) or "-"])
        return out
    return sorted(_memo(ctx, "groups", build).get(net.uuid, []))


def _instances(ctx: QueryContext, net: Network) -> list[str]:
    def build() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for inst in ctx.cfg.get_instances().values():
            for nic in inst.nics:
                if nic.network:
                    out.setdefault(nic.network, set()).add(inst.name)
        return out
    return nice_sorted(_memo(ctx, "instances", build).get(net.uuid, set()))


def _stat(fn: Any) -> Getter:
    def get(ctx: QueryContext, net: Network) -> Any:
        pool = _pool(ctx, net)
        return UNAVAIL if pool is None else fn(pool)
    return get


def _maybe(attr: str) -> Getter:
    def get(ctx: QueryContext, net: Network) -> Any:
        value = getattr(net, attr)
        return UNAVAIL if value is None else value
    return get


@functools.cache
def network_fields() -> dict[str, FieldDef]:
    """The field table of ``network`` queries, by name."""
    fields = [
        make_field("name", "Network", "text", "Name", attr_getter("name")),
        make_field("network", "Subnet", "text", "IPv4 subnet", attr_getter("network")),
        make_field("gateway", "Gateway", "other", "IPv4 gateway", _maybe("gateway")),
        make_field("network6", "IPv6Subnet", "other", "IPv6 subnet", _maybe("network6")),
        make_field("gateway6", "IPv6Gateway", "other", "IPv6 gateway", _maybe("gateway6")),
        make_field("mac_prefix", "MacPrefix", "other", "MAC address prefix",
                   _maybe("mac_prefix")),
        make_field("free_count", "FreeCount", "number", "Number of available addresses",
                   _stat(lambda p: p.free_count)),
        make_field("map", "Map", "text", "Actual mapping", _stat(lambda p: p.get_map())),
        make_field("reserved_count", "ReservedCount", "number",
                   "Number of reserved addresses", _stat(lambda p: p.reserved_count)),
        make_field("group_list", "GroupList", "other",
                   "List of nodegroups (group name, NIC mode, NIC link)", _groups),
        make_field("group_cnt", "NodeGroups", "number", "Number of nodegroups",
                   lambda ctx, n: len(_groups(ctx, n))),
        make_field("inst_list", "InstanceList", "other", "List of instances", _instances),
        make_field("inst_cnt", "Instances", "number", "Number of instances",
                   lambda ctx, n: len(_instances(ctx, n))),
        make_field("external_reservations", "ExternalReservations", "text",
                   "External reservations",
                   _stat(lambda p: ", ".join(p.external_reservations()))),
        *common_fields(),
    ]
    return {f.definition.name: f for f in fields}
