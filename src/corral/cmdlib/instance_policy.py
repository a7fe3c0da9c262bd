"""Instance policies applied by logical units: the policy of a node's group,
the spec of an instance, refusals on create/modify, warnings on policy changes.

Mirrors the ipolicy parts of ``ganeti.cmdlib.common`` and
``ganeti.cmdlib.instance_utils`` (``CalculateGroupIPolicy``,
``ComputeIPolicyInstanceViolation``, ``ComputeNewInstanceViolations``,
``CheckTargetNodeIPolicy``); the policy itself is :mod:`corral.ipolicy`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from corral import constants as C
from corral import errors
from corral import ipolicy as ip
from corral.config import ConfigStore
from corral.objects import Cluster, Instance, NodeGroup

if TYPE_CHECKING:
    from corral.cmdlib.base import LogicalUnit


def node_group(cfg: ConfigStore, node_uuid: str) -> NodeGroup:
    """The node group of node ``node_uuid``; OpPrereqError ECODE_NOENT if
    the node or its group is not in the configuration."""
    node = cfg.get_node(node_uuid)
    group = cfg.get_nodegroup(node.group) if node is not None else None
    if group is None:
        raise errors.OpPrereqError(f"Node '{node_uuid}' or its node group is not known",
                                   errors.ECODE_NOENT)
    return group


def spec_from_params(be_full: dict[str, Any], memory: str, disk_sizes: list[int],
                     nic_count: int) -> dict[str, Any]:
    """An instance spec (see :func:`corral.ipolicy.spec_violations`) from
    filled backend parameters; ``memory`` is the backend parameter giving
    ``memory-size`` (``maxmem``, or ``minmem`` for Ganeti's second check on
    modify)."""
    return {ip.ISPEC_MEM_SIZE: be_full.get(memory),
            ip.ISPEC_CPU_COUNT: be_full.get(C.BE_VCPUS),
            ip.ISPEC_SPINDLE_USE: be_full.get(C.BE_SPINDLE_USE),
            ip.ISPEC_DISK_COUNT: len(disk_sizes),
            ip.ISPEC_DISK_SIZE: list(disk_sizes),
            ip.ISPEC_NIC_COUNT: nic_count}


def instance_violations(cluster: Cluster, policy: dict[str, Any],
                        instance: Instance) -> list[str]:
    """``ComputeIPolicyInstanceViolation``: what of ``instance`` (its
    filled backend parameters, disks and NICs) breaks ``policy``."""
    spec = spec_from_params(cluster.fill_be(instance), C.BE_MAXMEM,
                            [d.size for d in instance.disks], len(instance.nics))
    return ip.spec_violations(policy, spec, [d.dev_type for d in instance.disks])


def check_instance_spec(lu: LogicalUnit, group: NodeGroup, specs: Iterable[dict[str, Any]],
                        disk_templates: list[str], ignore: bool,
                        action: str | None = None) -> None:
    """Refuse an instance whose specs break its group's policy.

    ``specs``: the spec(s) to check (create: one; modify: with ``maxmem``
    and with ``minmem``); ``disk_templates``: the template of each disk;
    ``action``: the start of the message (default ``"Instance allocation
    to group UUID (NAME)"``). Raises OpPrereqError ECODE_INVAL ("...
    violates policy: ..."), or logs a warning if ``ignore``
    (``--ignore-ipolicy``).
    """
    policy = ip.group_ipolicy(lu.cfg.get_cluster(), group)
    found: list[str] = []
    for spec in specs:
        for msg in ip.spec_violations(policy, spec, disk_templates):
            if msg not in found:
                found.append(msg)
    if not found:
        return
    action = action or f"Instance allocation to group {group.uuid} ({group.name})"
    msg = f"{action} violates policy: {', '.join(found)}"
    if ignore:
        lu.log_warning(f"{msg} (ignored: --ignore-ipolicy)")
        return
    raise errors.OpPrereqError(msg, errors.ECODE_INVAL)


def group_instances(cfg: ConfigStore, group: NodeGroup) -> list[Instance]:
    """Instances with a node in ``group`` (Ganeti's ``GetNodeGroupInstances``)."""
    members = {n.uuid for n in cfg.get_node_list() if n.group == group.uuid}
    return [inst for inst in cfg.get_instances().values()
            if members.intersection(inst.all_nodes)]


def new_violations(cfg: ConfigStore, cluster_policy: dict[str, Any],
                   groups: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Names of instances that the changed policies would newly violate.

    ``cluster_policy``: the cluster's new complete policy; ``groups``:
    group UUID -> new custom policy of the groups being changed (the others
    keep theirs). ``ComputeNewInstanceViolations`` over every group, for
    the warning of OP_CLUSTER_SET_PARAMS / OP_GROUP_SET_PARAMS.
    """
    cluster = cfg.get_cluster()
    groups = groups or {}
    names: set[str] = set()
    for group in cfg.get_nodegroups().values():
        old = ip.group_ipolicy(cluster, group)
        new = ip.filled_ipolicy(cluster_policy, groups.get(group.uuid, group.ipolicy))
        for inst in group_instances(cfg, group):
            if instance_violations(cluster, new, inst) and \
                    not instance_violations(cluster, old, inst):
                names.add(inst.name)
    return sorted(names)


def warn_new_violations(lu: LogicalUnit, names: list[str]) -> None:
    """Ganeti's warning after a policy change (the change is still made)."""
    if names:
        lu.log_warning("After the ipolicy change the following instances violate them: "
                       f"{', '.join(names)}")


def group_ipolicy_change(lu: LogicalUnit, group: NodeGroup | None,
                        update: dict[str, Any]) -> dict[str, Any]:
    """The new custom policy of ``group`` after an opcode's ``ipolicy``.

    For OP_GROUP_ADD (``group`` None: nothing to inherit from yet) and
    OP_GROUP_SET_PARAMS (``check_prereq``): ``"default"`` values reset keys,
    the filled policy must be valid and allow only enabled disk templates
    (OpPrereqError ECODE_INVAL); instances of an existing group that the
    change newly breaks are warned about, as Ganeti's
    ``LUGroupSetParams._CheckIpolicy``. Run
    :func:`corral.ipolicy.check_ipolicy_update` (``group_policy=True``) in
    ``check_arguments`` for the syntax errors before any lock.
    """
    cluster = lu.cfg.get_cluster()
    cluster_policy = ip.cluster_ipolicy(cluster.ipolicy, cluster.enabled_disk_templates)
    new = ip.group_ipolicy_update(cluster_policy, group.ipolicy if group else {}, update,
                                  cluster.enabled_disk_templates)
    if group is not None:
        warn_new_violations(lu, new_violations(lu.cfg, cluster_policy, {group.uuid: new}))
    return new


def check_target_node_ipolicy(lu: LogicalUnit, instance: Instance, target_node: str,
                              ignore: bool) -> None:
    """``CheckTargetNodeIPolicy``: refuse moving ``instance`` to a node of
    another group whose policy it breaks (a warning if ``ignore``).
    Raises OpPrereqError ECODE_INVAL."""
    source = node_group(lu.cfg, instance.primary_node)
    target = node_group(lu.cfg, target_node)
    if source.uuid == target.uuid:
        return
    cluster = lu.cfg.get_cluster()
    found = instance_violations(cluster, ip.group_ipolicy(cluster, target), instance)
    if not found:
        return
    msg = (f"Instance does not meet target node group's ({target.name}) instance policy: "
           f"{', '.join(found)}")
    if ignore:
        lu.log_warning(msg)
        return
    raise errors.OpPrereqError(msg, errors.ECODE_INVAL)


def verify_group_instances(cfg: ConfigStore, group: NodeGroup,
                           instances: Iterable[Instance]) -> list[tuple[str, str]]:
    """``(instance name, violations)`` for each of ``instances`` breaking
    ``group``'s policy: cluster verify's EINSTANCEPOLICY warnings."""
    cluster = cfg.get_cluster()
    policy = ip.group_ipolicy(cluster, group)
    out = []
    for inst in sorted(instances, key=lambda i: i.name):
        found = instance_violations(cluster, policy, inst)
        if found:
            out.append((inst.name, ", ".join(found)))
    return out
