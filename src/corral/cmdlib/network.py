"""Logical units of networks: add, remove, rename, modify, connect, disconnect.

Mirrors ``ganeti.cmdlib.network``. Networks are locked at the ``network``
level by UUID, node groups at the ``nodegroup`` level; connecting and
disconnecting also lock the group's instances (shared) to look for NICs
whose addresses would conflict. Address pools are handled by
:mod:`corral.netpool`. Unlike Ganeti, addresses outside the subnet, a
gateway outside it and unsupported subnet sizes are refused before any lock
(``ECODE_INVAL``) instead of failing or warning during execution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import ALL_SET, FeedbackFn, LogicalUnit
from corral.cmdlib.instance_utils import nic_params_from_spec
from corral.cmdlib.tags import validate_tag
from corral.netpool import AddressPool, AddressPoolError
from corral.objects import NIC, Instance, Network, NodeGroup, new_uuid


def network_hook_env(net: Network | None, **override: Any) -> dict[str, Any]:
    """``NETWORK_*`` hook variables (Ganeti's ``_BuildNetworkHookEnv``):
    empty values are left out."""
    values = {"name": None, "subnet": None, "gateway": None, "network6": None,
              "gateway6": None, "mac_prefix": None, "tags": None}
    if net is not None:
        values.update(name=net.name, subnet=net.network, gateway=net.gateway,
                      network6=net.network6, gateway6=net.gateway6,
                      mac_prefix=net.mac_prefix, tags=net.tags)
    values.update(override)
    env: dict[str, Any] = {}
    for key, var in (("name", "NETWORK_NAME"), ("subnet", "NETWORK_SUBNET"),
                     ("gateway", "NETWORK_GATEWAY"), ("network6", "NETWORK_SUBNET6"),
                     ("gateway6", "NETWORK_GATEWAY6"), ("mac_prefix", "NETWORK_MAC_PREFIX")):
        if values[key]:
            env[var] = values[key]
    if values["tags"]:
        env["NETWORK_TAGS"] = " ".join(values["tags"])
    return env


def group_instances(lu: LogicalUnit, group_uuid: str) -> list[Instance]:
    """Instances with a node in the group (Ganeti's ``GetNodeGroupInstances``)."""
    members = {n.uuid for n in lu.cfg.get_nodes().values() if n.group == group_uuid}
    return [i for i in lu.cfg.get_instances().values() if set(i.all_nodes) & members]


def _check_group_instances_locked(lu: LogicalUnit, group_uuid: str) -> list[Instance]:
    """The group's instances, all of them locked (``CheckNodeGroupInstances``);
    ECODE_STATE if the group gained instances since the locks were declared."""
    owned = lu.owned_locks(C.LEVEL_INSTANCE)
    insts = group_instances(lu, group_uuid)
    missing = sorted(i.name for i in insts if i.name not in owned)
    if missing:
        raise errors.OpPrereqError(
            f"Instances in node group changed since locks were acquired, wanted "
            f"{', '.join(sorted(owned))}, got {', '.join(sorted(i.name for i in insts))}; "
            "retry the operation", errors.ECODE_STATE)
    return insts


def _network_conflict_check(lu: LogicalUnit, check: Callable[[NIC], bool], action: str,
                            net_name: str, group: NodeGroup, insts: list[Instance]) -> None:
    """Refuse (ECODE_STATE) when NICs of ``insts`` match ``check``
    (``_NetworkConflictCheck``)."""
    conflicts = []
    for inst in sorted(insts, key=lambda i: i.name):
        details = [f"nic{idx}/{nic.ip}" for idx, nic in enumerate(inst.nics) if check(nic)]
        if details:
            conflicts.append(f"{inst.name}: {', '.join(details)}")
    if conflicts:
        lu.log_warning(f"IP addresses from network '{net_name}', which is about to {action} "
                       f"node group '{group.name}', are in use: {', '.join(conflicts)}")
        raise errors.OpPrereqError("Conflicting IP addresses found;  remove/modify the "
                                   "corresponding network interfaces", errors.ECODE_STATE)


def _pool_error(err: AddressPoolError) -> errors.OpPrereqError:
    return errors.OpPrereqError(str(err), errors.ECODE_INVAL)


class _NetworkLU(LogicalUnit):
    HTYPE = C.HTYPE_NETWORK
    REQ_BGL = False

    def lock_network(self) -> Network:
        """Expand ``op.network_name`` and lock the network (exclusively)."""
        net = self.cfg.expand_network(self.op.network_name)
        self.op.network_name = net.name
        self.network_uuid = net.uuid
        self.needed_locks = {C.LEVEL_NETWORK: [net.uuid]}
        return net

    def locked_network(self) -> Network:
        net = self.cfg.get_network(self.network_uuid)
        if net is None:
            raise errors.OpPrereqError(f"Network '{self.op.network_name}' not found",
                                       errors.ECODE_NOENT)
        return net

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        master = self.master_uuid()
        return [master], [master]


class LUNetworkAdd(_NetworkLU):
    """OP_NETWORK_ADD: a new network with its address pool."""

    HPATH = "network-add"

    def check_arguments(self) -> None:
        op = self.op
        for tag in op.tags:
            validate_tag(tag)
        if len(op.tags) > C.MAX_TAGS_PER_OBJ:
            raise errors.OpPrereqError("Too many tags", errors.ECODE_INVAL)
        self.draft = Network(name=op.network_name, network=op.network, gateway=op.gateway,
                             network6=op.network6, gateway6=op.gateway6,
                             mac_prefix=op.mac_prefix, tags=list(dict.fromkeys(op.tags)))
        try:
            self.pool = AddressPool.initialize(self.draft)
            for ip in op.add_reserved_ips or []:
                self.pool.reserve(ip, external=True)
        except AddressPoolError as err:
            raise errors.OpPrereqError(f"Cannot create IP address pool for network "
                                       f"'{op.network_name}': {err}",
                                       errors.ECODE_INVAL) from None

    def expand_names(self) -> None:
        self._check_name_free()
        self.draft.uuid = new_uuid()
        self.needed_locks = {C.LEVEL_NETWORK: [self.draft.uuid]}
        if self.op.conflicts_check:
            self.needed_locks[C.LEVEL_NODE] = ALL_SET
            self.share_locks[C.LEVEL_NODE] = 1

    def _check_name_free(self) -> None:
        existing = self.cfg.get_network_by_name(self.op.network_name)
        if existing is not None:
            raise errors.OpPrereqError(
                f"Desired network name '{self.op.network_name}' already exists as a "
                f"network (UUID: {existing.uuid})", errors.ECODE_EXISTS)

    def check_prereq(self) -> None:
        self._check_name_free()

    def build_hooks_env(self) -> dict[str, Any]:
        return network_hook_env(self.draft)

    def exec(self, feedback_fn: FeedbackFn) -> None:
        if self.op.conflicts_check:
            # Node and master addresses cannot be given to instances.
            for node in self.cfg.get_node_list():
                for ip in (node.primary_ip, node.secondary_ip):
                    self._reserve_host(ip, f"IP address of node '{node.name}'")
            self._reserve_host(self.cfg.get_cluster().master_ip, "cluster master IP address")
        self.cfg.commit(add=[self.draft])

    def _reserve_host(self, ip: str, what: str) -> None:
        if not self.pool.contains(ip) or self.pool.is_reserved(ip, external=True):
            return
        self.pool.reserve(ip, external=True)
        self.log_info(f"Reserved {what} ({ip})")


class LUNetworkRemove(_NetworkLU):
    """OP_NETWORK_REMOVE: only a network connected to no node group."""

    HPATH = "network-remove"

    def expand_names(self) -> None:
        self.lock_network()
        assert self.needed_locks is not None
        self.needed_locks[C.LEVEL_NODEGROUP] = ALL_SET
        self.share_locks[C.LEVEL_NODEGROUP] = 1

    def check_prereq(self) -> None:
        self.net = self.locked_network()
        groups = sorted(g.name for g in self.cfg.get_nodegroups().values()
                        if self.network_uuid in g.networks)
        if groups:
            self.log_warning(f"Network '{self.op.network_name}' is connected to the "
                             f"following node groups: {', '.join(groups)}")
            raise errors.OpPrereqError("Network still connected", errors.ECODE_STATE)
        users = sorted(i.name for i in self.cfg.get_instances().values()
                       if any(n.network == self.network_uuid for n in i.nics))
        if users:
            raise errors.OpPrereqError(f"Network '{self.op.network_name}' is still used by "
                                       f"instances: {', '.join(users)}", errors.ECODE_STATE)

    def build_hooks_env(self) -> dict[str, Any]:
        return {"NETWORK_NAME": self.op.network_name}

    def exec(self, feedback_fn: FeedbackFn) -> None:
        self.cfg.commit(remove=[self.network_uuid])


class LUNetworkRename(_NetworkLU):
    """OP_NETWORK_RENAME; returns the new name."""

    HPATH = "network-rename"

    def expand_names(self) -> None:
        self.lock_network()

    def check_prereq(self) -> None:
        self.net = self.locked_network()
        other = self.cfg.get_network_by_name(self.op.new_name)
        if other is not None:
            raise errors.OpPrereqError(
                f"Desired new name '{self.op.new_name}' clashes with existing network "
                f"(UUID: {other.uuid})", errors.ECODE_EXISTS)

    def build_hooks_env(self) -> dict[str, Any]:
        return {"OLD_NAME": self.op.network_name, "NEW_NAME": self.op.new_name}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        master = self.master_uuid()
        groups = {g.uuid for g in self.cfg.get_nodegroups().values()
                  if self.network_uuid in g.networks}
        nodes = [master] + [n.uuid for n in self.cfg.get_node_list()
                            if n.group in groups and n.uuid != master]
        return nodes, list(nodes)

    def exec(self, feedback_fn: FeedbackFn) -> str:
        net = self.locked_network().model_copy(deep=True)
        net.name = self.op.new_name
        self.cfg.commit(update=[net])
        return net.name


class LUNetworkSetParams(_NetworkLU):
    """OP_NETWORK_SET_PARAMS: gateways, IPv6 subnet, MAC prefix, external
    reservations (the IPv4 subnet never changes)."""

    HPATH = "network-modify"

    def check_arguments(self) -> None:
        op = self.op
        if op.gateway and (op.add_reserved_ips or op.remove_reserved_ips):
            raise errors.OpPrereqError("Cannot modify gateway and reserved ips at once",
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        self.lock_network()

    @staticmethod
    def _value(new: str | None, old: str | None) -> str | None:
        if new is None:
            return old
        return None if new == C.VALUE_NONE else new

    def check_prereq(self) -> None:
        op = self.op
        self.new = self.locked_network().model_copy(deep=True)
        new = self.new
        try:
            pool = AddressPool(new)
        except AddressPoolError as err:
            raise _pool_error(err) from None
        self.pool = pool
        gateway = self._value(op.gateway, new.gateway)
        if op.gateway and gateway is not None:
            if not pool.contains(gateway):
                raise errors.OpPrereqError(f"Gateway IP address '{gateway}' is not in "
                                           f"network {new.network}", errors.ECODE_INVAL)
            if pool.is_reserved(gateway):
                raise errors.OpPrereqError(f"Gateway IP address '{gateway}' is already "
                                           "reserved", errors.ECODE_STATE)
        for ip in (op.add_reserved_ips or []) + (op.remove_reserved_ips or []):
            if not pool.contains(ip):
                raise errors.OpPrereqError(f"IP address {ip} is not in network "
                                           f"{new.network}", errors.ECODE_INVAL)
        self.gateway = gateway
        self.mac_prefix = self._value(op.mac_prefix, new.mac_prefix)
        self.network6 = self._value(op.network6, new.network6)
        self.gateway6 = self._value(op.gateway6, new.gateway6)

    def build_hooks_env(self) -> dict[str, Any]:
        return network_hook_env(self.new, gateway=self.gateway, network6=self.network6,
                                gateway6=self.gateway6, mac_prefix=self.mac_prefix)

    def exec(self, feedback_fn: FeedbackFn) -> None:
        op, new, pool = self.op, self.new, self.pool
        if op.gateway:
            if self.gateway == new.gateway:
                self.log_warning(f"Gateway is already {self.gateway}")
            else:
                if self.gateway and not pool.is_reserved(self.gateway, external=True):
                    pool.reserve(self.gateway, external=True)
                if new.gateway and pool.is_reserved(new.gateway, external=True):
                    pool.release(new.gateway, external=True)
                new.gateway = self.gateway
        for ip in op.add_reserved_ips or []:
            try:
                pool.reserve(ip, external=True)
            except AddressPoolError as err:
                self.log_warning(f"Cannot reserve IP address {ip}: {err}")
        for ip in op.remove_reserved_ips or []:
            if ip == new.gateway:
                self.log_warning("Cannot unreserve Gateway's IP")
                continue
            try:
                pool.release(ip, external=True)
            except AddressPoolError as err:
                self.log_warning(f"Cannot release IP address {ip}: {err}")
        new.mac_prefix = self.mac_prefix
        new.network6 = self.network6
        new.gateway6 = self.gateway6
        try:
            pool.validate()
        except AddressPoolError as err:
            raise errors.OpExecError(str(err)) from None
        self.cfg.commit(update=[new])


class _ConnectionLU(_NetworkLU):
    """Common locking of connect and disconnect: the group, its instances
    (shared, declared optimistically and checked again under the locks)."""

    def expand_names(self) -> None:
        net = self.cfg.expand_network(self.op.network_name)
        group = self.cfg.expand_nodegroup(self.op.group_name)
        self.op.network_name, self.op.group_name = net.name, group.name
        self.network_uuid, self.group_uuid = net.uuid, group.uuid
        self.needed_locks = {C.LEVEL_INSTANCE: [], C.LEVEL_NODEGROUP: [group.uuid]}
        self.share_locks[C.LEVEL_INSTANCE] = 1
        if self.wants_network_lock():
            self.needed_locks[C.LEVEL_NETWORK] = [net.uuid]
            self.share_locks[C.LEVEL_NETWORK] = 1

    def declare_locks(self, level: str) -> None:
        if level == C.LEVEL_INSTANCE and self.wants_instances():
            assert self.needed_locks is not None
            self.needed_locks[C.LEVEL_INSTANCE] = sorted(
                i.name for i in group_instances(self, self.group_uuid))

    def wants_instances(self) -> bool:
        return True

    def wants_network_lock(self) -> bool:
        return False

    def locked_group(self) -> NodeGroup:
        group = self.cfg.get_nodegroup(self.group_uuid)
        if group is None:
            raise errors.OpPrereqError(f"Node group '{self.op.group_name}' not found",
                                       errors.ECODE_NOENT)
        return group

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [n.uuid for n in self.cfg.get_node_list() if n.group == self.group_uuid]
        return nodes, list(nodes)


class LUNetworkConnect(_ConnectionLU):
    """OP_NETWORK_CONNECT: NICs on the network in this group get
    ``network_mode``/``network_link``/``network_vlan``."""

    HPATH = "network-connect"

    def check_arguments(self) -> None:
        op = self.op
        spec = {C.INIC_MODE: op.network_mode, C.INIC_LINK: op.network_link,
                C.INIC_VLAN: op.network_vlan}
        params = nic_params_from_spec(spec)
        if params.get(C.NIC_VLAN) and op.network_mode != C.NIC_MODE_OVS:
            raise errors.OpPrereqError("VLAN is given, but network mode is not openvswitch",
                                       errors.ECODE_INVAL)
        self.netparams = {C.NIC_MODE: op.network_mode, C.NIC_LINK: op.network_link,
                          C.NIC_VLAN: params.get(C.NIC_VLAN, "")}

    def wants_instances(self) -> bool:
        return bool(self.op.conflicts_check)

    def wants_network_lock(self) -> bool:
        return bool(self.op.conflicts_check)

    def check_prereq(self) -> None:
        self.group = self.locked_group().model_copy(deep=True)
        net = self.locked_network()
        self.connected = self.network_uuid in self.group.networks
        if self.connected:
            self.log_warning(f"Network '{net.name}' is already mapped to group "
                             f"'{self.group.name}'")
        elif self.op.conflicts_check:
            insts = _check_group_instances_locked(self, self.group_uuid)
            pool = AddressPool(net)
            _network_conflict_check(self, lambda nic: pool.contains(nic.ip), "connect to",
                                    net.name, self.group, insts)

    def build_hooks_env(self) -> dict[str, Any]:
        return {"GROUP_NAME": self.op.group_name,
                "GROUP_NETWORK_MODE": self.netparams[C.NIC_MODE],
                "GROUP_NETWORK_LINK": self.netparams[C.NIC_LINK],
                "GROUP_NETWORK_VLAN": self.netparams[C.NIC_VLAN]}

    def exec(self, feedback_fn: FeedbackFn) -> None:
        if not self.connected:
            self.group.networks[self.network_uuid] = dict(self.netparams)
            self.cfg.commit(update=[self.group])


class LUNetworkDisconnect(_ConnectionLU):
    """OP_NETWORK_DISCONNECT: refused while NICs of the group's instances use
    the network."""

    HPATH = "network-disconnect"

    def check_prereq(self) -> None:
        self.group = self.locked_group().model_copy(deep=True)
        net = self.locked_network()
        insts = _check_group_instances_locked(self, self.group_uuid)
        self.netparams = self.group.networks.get(self.network_uuid)
        self.connected = self.netparams is not None
        if not self.connected:
            self.log_warning(f"Network '{net.name}' is not mapped to group "
                             f"'{self.group.name}'")
            return
        _network_conflict_check(self, lambda nic: nic.network == self.network_uuid,
                                "disconnect from", net.name, self.group, insts)

    def build_hooks_env(self) -> dict[str, Any]:
        env = {"GROUP_NAME": self.op.group_name}
        if self.connected and self.netparams is not None:
            env.update({"GROUP_NETWORK_MODE": self.netparams.get(C.NIC_MODE),
                        "GROUP_NETWORK_LINK": self.netparams.get(C.NIC_LINK),
                        "GROUP_NETWORK_VLAN": self.netparams.get(C.NIC_VLAN)})
        return env

    def exec(self, feedback_fn: FeedbackFn) -> None:
        if self.connected:
            del self.group.networks[self.network_uuid]
            self.cfg.commit(update=[self.group])
