"""NICs on networks: parameters from the group connection, addresses from pools.

Mirrors the network parts of Ganeti's ``LUInstanceCreate.CheckPrereq``,
``LUInstanceSetParams`` (``_PrepareNicModification``), ``RemoveInstance``
and ``CheckForConflictingIp``:

* a NIC with ``network=NAME`` takes mode/link/vlan from the connection of
  that network to the group of the instance's primary node (refused with
  ECODE_INVAL when not connected); ``mode``/``link`` may not be given too;
* ``ip=pool`` takes the first free address of the network's pool; an
  explicit address must be free in the pool (ECODE_NOTUNIQUE);
* an address of a network connected to the node's group may not be given to
  a NIC that is not on that network (ECODE_STATE, with ``conflicts_check``).

How addresses move into the pools: checks only choose addresses; right
before the instance is committed the LU reserves them in the config
store's temporary reservations (:meth:`AddressPlan.reserve`), and the same
commit that stores the instance marks them in the networks' pools
(:func:`commit_with_addresses`). Removing NICs or instances releases them
in the same commit too. A retry absorbs concurrent changes of the networks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral import constants as C
from corral import errors
from corral.netpool import AddressPool, AddressPoolError
from corral.objects import NIC, ConfigObject, Instance, Network

if TYPE_CHECKING:
    from corral.cmdlib.base import LogicalUnit

NIC_IP_POOL = "pool"
_COMMIT_RETRIES = 5


def check_network_spec(spec: dict[str, Any], pool_needs_network: bool = True) -> str | None:
    """The network named by an INicParams dict (None for none).

    Raises OpPrereqError ECODE_INVAL when ``mode``/``link`` are given with
    a network, or (with ``pool_needs_network``: not when modifying a NIC
    already on a network) ``ip=pool`` without one.
    """
    net = spec.get(C.INIC_NETWORK)
    if net is None or (isinstance(net, str) and net.lower() in ("", C.VALUE_NONE)):
        net = None
    elif not isinstance(net, str):
        raise errors.OpPrereqError(f"Invalid network {net!r}", errors.ECODE_INVAL)
    elif spec.get(C.INIC_MODE) is not None or spec.get(C.INIC_LINK) is not None:
        raise errors.OpPrereqError("If network is given, no mode or link is allowed to be "
                                   "passed", errors.ECODE_INVAL)
    ip = spec.get(C.INIC_IP)
    if pool_needs_network and isinstance(ip, str) and ip.lower() == NIC_IP_POOL and \
            net is None:
        raise errors.OpPrereqError("if ip=pool, parameter network must be passed too",
                                   errors.ECODE_INVAL)
    return net


def group_netparams(lu: LogicalUnit, net: Network, node_uuid: str) -> dict[str, Any]:
    """mode/link/vlan of ``net`` in the group of ``node_uuid``
    (``GetGroupNetParams``); ECODE_INVAL when not connected there."""
    node = lu.cfg.get_node(node_uuid)
    group = lu.cfg.get_nodegroup(node.group) if node is not None else None
    params = group.networks.get(net.uuid) if group is not None else None
    if params is None:
        node_name = node.name if node is not None else node_uuid
        raise errors.OpPrereqError(
            f"No netparams found for network {net.name}. Probably not connected to node's "
            f"{node_name} nodegroup", errors.ECODE_INVAL)
    return dict(params)


def check_conflicting_ip(lu: LogicalUnit, ip: str | None, node_uuid: str) -> None:
    """Refuse an address of a network connected to the node's group for a
    NIC not on that network (``CheckForConflictingIp``, ECODE_STATE)."""
    if not ip:
        return
    node = lu.cfg.get_node(node_uuid)
    group = lu.cfg.get_nodegroup(node.group) if node is not None else None
    for net_uuid in (group.networks if group is not None else {}):
        net = lu.cfg.get_network(net_uuid)
        if net is not None and AddressPool(net.model_copy()).contains(ip):
            raise errors.OpPrereqError(
                f"The requested IP address ({ip}) belongs to network {net.name}, but the "
                "target NIC does not.", errors.ECODE_STATE)


@dataclass
class AddressPlan:
    """Addresses a change takes from and gives back to network pools.

    ``take``: ``(network UUID, address, from_pool)`` per NIC address to mark
    as used; ``give``: ``(network UUID, address)`` to release.
    """

    owner: str
    check: bool = True
    take: list[tuple[str, str, bool]] = field(default_factory=list)
    give: list[tuple[str, str]] = field(default_factory=list)

    def choose(self, lu: LogicalUnit, net: Network, ip: str | None, what: str) -> str | None:
        """Check/choose the address of a NIC on ``net``: a free pool address
        for ``pool``, the given one if free. Nothing stays reserved (see
        :meth:`reserve`). Raises OpPrereqError ECODE_STATE (pool full) or
        ECODE_NOTUNIQUE (address taken or not in the network)."""
        if ip is None:
            return None
        chosen = [a for (u, a, _) in self.take if u == net.uuid]
        probe = f"{self.owner}/probe"
        try:
            for address in chosen:      # addresses of earlier NICs of this change
                lu.cfg.reserve_ip(net.uuid, address, probe, check=False)
            if ip == NIC_IP_POOL:
                try:
                    address = lu.cfg.generate_ip(net.uuid, probe)
                except errors.OpPrereqError:
                    raise errors.OpPrereqError(f"Unable to get a free IP for {what} from "
                                               "the address pool", errors.ECODE_STATE) from None
                lu.log_info(f"Chose IP {address} from network {net.name}")
            else:
                lu.cfg.reserve_ip(net.uuid, ip, probe, check=self.check)
                address = ip
        finally:
            lu.cfg.release_ip_reservations(probe)
        self.take.append((net.uuid, address, ip == NIC_IP_POOL))
        return address

    def reserve(self, lu: LogicalUnit) -> dict[str, str]:
        """Reserve the chosen addresses for ``owner`` right before the commit.

        A pool address taken by another job meanwhile is replaced by another
        free one; returns ``{old: new}`` for those. Raises OpExecError
        (nothing reserved) when a given address was taken meanwhile or the
        pool is full.
        """
        moved: dict[str, str] = {}
        try:
            for idx, (net_uuid, address, from_pool) in enumerate(self.take):
                try:
                    lu.cfg.reserve_ip(net_uuid, address, self.owner, check=False)
                except errors.OpPrereqError:
                    if not from_pool:
                        raise
                    new = lu.cfg.generate_ip(net_uuid, self.owner)
                    self.take[idx] = (net_uuid, new, True)
                    moved[address] = new
        except errors.OpPrereqError as err:
            lu.cfg.release_ip_reservations(self.owner)
            raise errors.OpExecError(f"Cannot reserve IP address: {err}") from None
        return moved

    def release(self, lu: LogicalUnit) -> None:
        lu.cfg.release_ip_reservations(self.owner)

    def network_updates(self, lu: LogicalUnit) -> list[Network]:
        """Fresh copies of the changed networks with the plan applied."""
        nets: dict[str, tuple[Network, AddressPool]] = {}

        def pool(net_uuid: str) -> AddressPool | None:
            if net_uuid not in nets:
                current = lu.cfg.get_network(net_uuid)
                if current is None:
                    return None
                copy = current.model_copy(deep=True)
                nets[net_uuid] = (copy, AddressPool(copy))
            return nets[net_uuid][1]

        for net_uuid, address in self.give:
            p = pool(net_uuid)
            if p is not None and p.contains(address) and p.is_reserved(address):
                p.release(address)
        for net_uuid, address, _ in self.take:
            p = pool(net_uuid)
            if p is None:
                raise errors.OpExecError(f"Network {net_uuid} disappeared")
            try:
                p.reserve(address)
            except AddressPoolError as err:
                raise errors.OpExecError(f"Cannot mark IP address {address} as used: "
                                         f"{err}") from None
        return [net for net, _ in nets.values()]


def set_nic_network(lu: LogicalUnit, plan: AddressPlan, nic: NIC, params: dict[str, Any],
                    node_uuid: str, what: str) -> None:
    """Apply ``network``/``ip`` of ``params`` (INicParams of an added or
    modified NIC) to ``nic``: the group's netparams and a chosen address for
    a NIC on a network, the conflict check for one that is not; the old
    address goes back to its pool in ``plan``. Raises OpPrereqError as
    :func:`check_network_spec`, :func:`group_netparams`,
    :func:`check_conflicting_ip` and :meth:`AddressPlan.choose`.
    """
    old_net, old_ip = nic.network, nic.ip
    net_changed = C.INIC_NETWORK in params
    if net_changed:
        name = check_network_spec(params, pool_needs_network=False)
        net = lu.cfg.expand_network(name) if name else None
    else:
        net = lu.cfg.get_network(old_net) if old_net else None
    ip = params.get(C.INIC_IP, old_ip)
    new_uuid = net.uuid if net is not None else None
    if new_uuid == old_net and ip == old_ip:
        return
    if net is None:
        if ip == NIC_IP_POOL:
            raise errors.OpPrereqError("if ip=pool, parameter network must be passed too",
                                       errors.ECODE_INVAL)
        if plan.check:
            check_conflicting_ip(lu, ip, node_uuid)
    else:
        if params.get(C.INIC_MODE) is not None or params.get(C.INIC_LINK) is not None:
            raise errors.OpPrereqError("If network is given, no mode or link is allowed to "
                                       "be passed", errors.ECODE_INVAL)
        nic.nicparams = group_netparams(lu, net, node_uuid)
        ip = plan.choose(lu, net, ip, what)
    if old_net and old_ip:
        plan.give.append((old_net, old_ip))
    nic.network, nic.ip = new_uuid, ip


def commit_with_addresses(lu: LogicalUnit, plan: AddressPlan,
                          add: Iterable[ConfigObject] = (),
                          update: Iterable[ConfigObject] = (),
                          remove: Iterable[ConfigObject | str] = ()) -> None:
    """Commit the objects together with the pool changes of ``plan``, in
    one transaction; retried when another job changed one of the networks
    meanwhile (``ConfigVersionMismatch`` on a network)."""
    add, update, remove = list(add), list(update), list(remove)
    for attempt in range(_COMMIT_RETRIES):
        nets = plan.network_updates(lu)
        try:
            lu.cfg.commit(add=add, update=update + nets, remove=remove)
            return
        except errors.ConfigVersionMismatch:
            stale = any((lu.cfg.get_network(n.uuid) or n).serial_no != n.serial_no
                        for n in nets)
            if not stale or attempt == _COMMIT_RETRIES - 1:
                raise


def nic_addresses(nics: Iterable[NIC]) -> list[tuple[str, str]]:
    """``(network UUID, address)`` of the NICs on networks with an address."""
    return [(nic.network, nic.ip) for nic in nics if nic.network and nic.ip]


def remove_instance_config(lu: LogicalUnit, inst: Instance) -> None:
    """Remove ``inst`` from the config and give its NICs' addresses back to
    their pools, in one commit (Ganeti's ``RemoveInstance``/``ReleaseIp``)."""
    plan = AddressPlan(owner=f"remove:{inst.uuid}", give=nic_addresses(inst.nics))
    commit_with_addresses(lu, plan, remove=[inst.uuid])
