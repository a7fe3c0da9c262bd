"""Consistency of networks, their address pools and the NICs using them.

Part of ``ConfigStore.verify_config`` (so of ``gnt-cluster verify``). Ganeti
checks that no address has two owners on one link/network; Corral also
checks what its pools promise: every address of a NIC on a network is
inside the subnet and marked as used in the pool, every address marked as
used belongs to a NIC, NICs refer to known networks connected to their
primary node's group, and groups only connect known networks.
"""

from __future__ import annotations

from collections import defaultdict

from corral.config.cache import ConfigCache
from corral.config.changes import KIND_INSTANCE, KIND_NETWORK, KIND_NODE, KIND_NODEGROUP
from corral.netpool import AddressPool, AddressPoolError
from corral.objects import Instance, Network, Node, NodeGroup


def verify_networks(cache: ConfigCache) -> list[str]:
    """Problems of networks and their pools; empty when consistent."""
    result: list[str] = []
    nets: dict[str, Network] = cache.objects[KIND_NETWORK]  # type: ignore[assignment]
    groups: dict[str, NodeGroup] = cache.objects[KIND_NODEGROUP]  # type: ignore[assignment]
    nodes: dict[str, Node] = cache.objects[KIND_NODE]  # type: ignore[assignment]
    instances: dict[str, Instance] = cache.objects[KIND_INSTANCE]  # type: ignore[assignment]

    pools: dict[str, AddressPool] = {}
    for net in sorted(nets.values(), key=lambda n: n.name):
        try:
            pools[net.uuid] = AddressPool(net.model_copy())
            pools[net.uuid].validate()
        except (AddressPoolError, ValueError) as err:
            result.append(f"network '{net.name}' has an invalid address pool: {err}")
    for group in sorted(groups.values(), key=lambda g: g.name):
        for net_uuid in sorted(group.networks):
            if net_uuid not in nets:
                result.append(f"node group '{group.name}' is connected to unknown network "
                              f"'{net_uuid}'")

    users: dict[tuple[str, str], list[str]] = defaultdict(list)
    for inst in sorted(instances.values(), key=lambda i: i.name):
        node = nodes.get(inst.primary_node)
        group = groups.get(node.group) if node is not None else None
        for idx, nic in enumerate(inst.nics):
            if not nic.network:
                continue
            owner = f"instance '{inst.name}' nic{idx}"
            net = nets.get(nic.network)
            if net is None:
                result.append(f"{owner} is on unknown network '{nic.network}'")
                continue
            if group is not None and net.uuid not in group.networks:
                result.append(f"{owner} is on network '{net.name}', which is not connected "
                              f"to node group '{group.name}'")
            pool = pools.get(net.uuid)
            if nic.ip is None or pool is None:
                continue
            users[(net.uuid, nic.ip)].append(owner)
            if not pool.contains(nic.ip):
                result.append(f"IP address {nic.ip} of {owner} is not in network "
                              f"'{net.name}' ({net.network})")
            elif not pool.is_reserved(nic.ip):
                result.append(f"IP address {nic.ip} of {owner} is not reserved in network "
                              f"'{net.name}'")
    for (net_uuid, ip), owners in sorted(users.items()):
        if len(owners) > 1:
            result.append(f"IP address {ip} of network '{nets[net_uuid].name}' is used by "
                          f"multiple owners: {', '.join(owners)}")
    for net_uuid, pool in pools.items():
        for ip in pool.instance_reservations():
            if (net_uuid, ip) not in users:
                result.append(f"IP address {ip} is reserved in network "
                              f"'{nets[net_uuid].name}' but used by no instance")
    return result
