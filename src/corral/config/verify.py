"""Consistency checks of a whole configuration (``ConfigStore.verify_config``).

Mirrors the configuration part of Ganeti's ``ConfigWriter.VerifyConfig``:
it returns human-readable problems and never raises for a bad config. It is
O(size of the config); it runs on demand (``gnt-cluster verify``, tests),
never inside a commit.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from corral import constants as C
from corral.config.cache import ConfigCache, normalize_mac
from corral.config.changes import KIND_INSTANCE, KIND_NODE, KIND_NODEGROUP
from corral.config.verify_networks import verify_networks
from corral.objects import Disk, Instance, Node, NodeGroup


def verify_cache(cache: ConfigCache) -> list[str]:
    """Problems of the configuration in ``cache``; empty when consistent."""
    result: list[str] = []
    cluster = cache.cluster
    nodes: dict[str, Node] = cache.objects[KIND_NODE]  # type: ignore[assignment]
    groups: dict[str, NodeGroup] = cache.objects[KIND_NODEGROUP]  # type: ignore[assignment]
    instances: dict[str, Instance] = cache.objects[KIND_INSTANCE]  # type: ignore[assignment]

    if cluster is None:
        return ["cluster object is missing"]
    if not cluster.enabled_hypervisors:
        result.append("enabled hypervisors list doesn't have any entries")
    invalid_hvs = set(cluster.enabled_hypervisors) - set(C.HYPER_TYPES)
    if invalid_hvs:
        result.append(f"enabled hypervisors contains invalid entries: {sorted(invalid_hvs)}")
    if not cluster.enabled_disk_templates:
        result.append("enabled disk templates list doesn't have any entries")
    invalid_dts = set(cluster.enabled_disk_templates) - set(C.DISK_TEMPLATES)
    if invalid_dts:
        result.append(
            f"enabled disk templates list contains invalid entries: {sorted(invalid_dts)}")

    master = nodes.get(cluster.master_node)
    if master is None:
        result.append(f"cluster has invalid master node {cluster.master_node}")
    elif not master.master_candidate:
        result.append(f"master node '{master.name}' is not a master candidate")
    elif master.offline:
        result.append(f"master node '{master.name}' is offline")

    for node in nodes.values():
        if node.group not in groups:
            result.append(f"node '{node.name}' has invalid group '{node.group}'")
        flags = [name for name, value in (("master_candidate", node.master_candidate),
                                          ("drained", node.drained),
                                          ("offline", node.offline)) if value]
        if len(flags) > 1:
            result.append(f"node '{node.name}' state is invalid: {', '.join(flags)} "
                          "are all set")

    ports: dict[int, list[str]] = defaultdict(list)
    names = Counter(inst.name for inst in instances.values())
    for name, count in names.items():
        if count > 1:
            result.append(f"instance name '{name}' is used by {count} instances")

    for inst in instances.values():
        result.extend(_verify_instance(inst, cluster.enabled_hypervisors,
                                       cluster.enabled_disk_templates, nodes))
        if inst.network_port is not None:
            ports[inst.network_port].append(f"instance '{inst.name}'")

    for mac, count in cache.macs.items():
        if count > 1:
            users = [inst.name for inst in instances.values()
                     if any(normalize_mac(n.mac) == mac for n in inst.nics if n.mac)]
            result.append(f"MAC address {mac} is used by several NICs: {', '.join(users)}")

    for port in cluster.tcpudp_port_pool:
        ports[port].append("cluster (port marked as free)")
    for port, users in sorted(ports.items()):
        if len(users) > 1:
            result.append(f"tcp/udp port {port} has duplicates: {', '.join(users)}")
    if ports:
        highest = max(ports)
        if highest > cluster.highest_used_port:
            result.append(f"highest used port mismatch, saved {cluster.highest_used_port}, "
                          f"computed {highest}")
    result.extend(verify_networks(cache))
    return result


def _verify_instance(inst: Instance, enabled_hvs: list[str], enabled_dts: list[str],
                     nodes: dict[str, Node]) -> list[str]:
    result: list[str] = []
    if inst.primary_node not in nodes:
        result.append(f"instance '{inst.name}' has invalid primary node "
                      f"'{inst.primary_node}'")
    if inst.hypervisor not in enabled_hvs:
        result.append(f"instance '{inst.name}' uses hypervisor '{inst.hypervisor}', "
                      "which is not enabled")
    if inst.disk_template not in enabled_dts:
        result.append(f"instance '{inst.name}' uses disk template '{inst.disk_template}', "
                      "which is not enabled")
    if inst.admin_state not in C.ADMINST_ALL:
        result.append(f"instance '{inst.name}' has invalid admin state '{inst.admin_state}'")
    iv_names = Counter(disk.iv_name for disk in inst.disks)
    for iv_name, count in iv_names.items():
        if count > 1:
            result.append(f"instance '{inst.name}' has {count} disks named '{iv_name}'")
    missing: set[str] = set()
    for disk in inst.disks:
        _disk_nodes(disk, missing, nodes)
    for node_uuid in sorted(missing):
        result.append(f"instance '{inst.name}' has a disk on invalid node '{node_uuid}'")
    return result


def _disk_nodes(disk: Disk, missing: set[str], nodes: dict[str, Node]) -> None:
    for node_uuid in disk.nodes:
        if node_uuid not in nodes:
            missing.add(node_uuid)
    for child in disk.children:
        _disk_nodes(child, missing, nodes)
