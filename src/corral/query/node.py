"""Node and node group fields (Ganeti's ``_BuildNodeFields`` and
``_BuildGroupFields``)."""

from __future__ import annotations

from functools import cache
from typing import Any

from corral import constants as C
from corral import ipolicy
from corral.objects import Node, NodeGroup, fill_dict
from corral.query.base import (
    NODATA,
    OFFLINE,
    UNAVAIL,
    FieldDef,
    FieldKind,
    Getter,
    QueryContext,
    attr_getter,
    common_fields,
    copy_value,
    make_field,
    nice_sorted,
    with_aliases,
)

# Short local names keep the field tables readable.
_f = make_field
_attr = attr_getter


# -- nodes ----------------------------------------------------------------------------------
def _node_role(ctx: QueryContext, node: Node) -> str:
    if node.uuid == ctx.cluster.master_node:
        return C.NR_MASTER
    if node.master_candidate:
        return C.NR_MCANDIDATE
    if node.drained:
        return C.NR_DRAINED
    if node.offline:
        return C.NR_OFFLINE
    return C.NR_REGULAR


def _node_live(key: str, kind: FieldKind) -> Getter:
    """Ganeti's _GetLiveNodeField."""
    def getter(ctx: QueryContext, node: Node) -> Any:
        if ctx.node_offline(node.uuid):
            return OFFLINE
        if not node.vm_capable:
            return UNAVAIL
        if ctx.live is None:
            return NODATA
        data = ctx.node_live(node.uuid)
        if not data:
            return NODATA
        if key not in data:
            return UNAVAIL
        if kind == "text":
            return data[key]
        try:
            return int(data[key])
        except (TypeError, ValueError):
            return UNAVAIL
    return getter


_NODE_LIVE: list[tuple[str, str, FieldKind, str, str]] = [
    # (field, title, kind, key in the flattened node_info payload, doc)
    ("bootid", "BootID", "text", "bootid",
     ("Random UUID renewed for each system reboot, can be used for detecting reboots by "
      "tracking changes")),
    ("cnodes", "CNodes", "number", "cpu_nodes",
     "Number of NUMA domains on node (if exported by hypervisor)"),
    ("cnos", "CNOs", "number", "cpu_dom0",
     "Number of logical processors used by the node OS (dom0 for Xen)"),
    ("csockets", "CSockets", "number", "cpu_sockets",
     "Number of physical CPU sockets (if exported by hypervisor)"),
    ("ctotal", "CTotal", "number", "cpu_total", "Number of logical processors"),
    ("dfree", "DFree", "unit", "storage_free", "Available storage space in storage unit"),
    ("dtotal", "DTotal", "unit", "storage_size",
     "Total storage space in storage unit used for instance disk allocation"),
    ("spfree", "SpFree", "number", "spindles_free",
     "Available spindles in volume group (exclusive storage only)"),
    ("sptotal", "SpTotal", "number", "spindles_total",
     "Total spindles in volume group (exclusive storage only)"),
    ("mfree", "MFree", "unit", "memory_free", "Memory available for instance allocations"),
    ("mnode", "MNode", "unit", "memory_dom0", "Amount of memory used by node (dom0 for Xen)"),
    ("mtotal", "MTotal", "unit", "memory_total", "Total amount of memory of physical machine"),
]


# Ganeti's NDS_PARAMETER_TITLES and the field kinds of the ndparams types.
_ND_TITLES = {C.ND_EXCLUSIVE_STORAGE: "ExclusiveStorage", C.ND_OOB_PROGRAM: "OutOfBandProgram",
              C.ND_OVS: "OpenvSwitch", C.ND_OVS_LINK: "OpenvSwitchLink",
              C.ND_OVS_NAME: "OpenvSwitchName", C.ND_SPINDLE_COUNT: "SpindleCount"}
_ND_KINDS: dict[str, FieldKind] = {"string": "other", "int": "number", "bool": "bool",
                                   "float": "number"}


def _nd_fields(filled: Getter) -> list[FieldDef]:
    """``ndp/<name>`` fields (Ganeti's ``_BuildNDFields``); ``filled`` gives the
    object's filled ndparams."""
    def one(name: str) -> Getter:
        return lambda ctx, obj: filled(ctx, obj).get(name)
    return [_f(f"ndp/{name}", _ND_TITLES.get(name, f"ndp/{name}"), _ND_KINDS[kind],
               f'The "{name}" node parameter', one(name))
            for name, kind in C.NDS_PARAMETER_TYPES.items()]


def _node_nd(ctx: QueryContext, node: Node) -> dict[str, Any]:
    return ctx.cluster.fill_nd(node, ctx.cfg.get_nodegroup(node.group))


def _group_nd(ctx: QueryContext, group: NodeGroup) -> dict[str, Any]:
    return fill_dict(fill_dict(C.NDC_DEFAULTS, ctx.cluster.ndparams), group.ndparams)


@cache
def node_fields() -> dict[str, FieldDef]:
    def group_attr(attr: str) -> Getter:
        def getter(ctx: QueryContext, node: Node) -> Any:
            group = ctx.cfg.get_nodegroup(node.group)
            return getattr(group, attr) if group else UNAVAIL
        return getter

    def inst_names(which: int) -> Getter:
        return lambda ctx, n: nice_sorted(i.name for i in ctx.cfg.get_node_instances(
            n.uuid)[which])

    fields = [
        _f("name", "Node", "text", "Node name", _attr("name")),
        _f("pip", "PrimaryIP", "text", "Primary IP address", _attr("primary_ip")),
        _f("sip", "SecondaryIP", "text", "Secondary IP address",
           lambda ctx, n: n.secondary_ip or n.primary_ip),
        _f("noded_port", "NodedPort", "number", "TCP port of the node daemon (Corral)",
           _attr("noded_port")),
        _f("offline", "Offline", "bool", "Whether node is marked offline", _attr("offline")),
        _f("drained", "Drained", "bool", "Whether node is drained", _attr("drained")),
        _f("master_candidate", "MasterC", "bool", "Whether node is a master candidate",
           _attr("master_candidate")),
        _f("master_capable", "MasterCapable", "bool", "Whether node can become a master "
           "candidate", _attr("master_capable")),
        _f("vm_capable", "VMCapable", "bool", "Whether node can host instances",
           _attr("vm_capable")),
        _f("powered", "Powered", "bool", "Whether node is thought to be powered on",
           _attr("powered")),
        _f("master", "IsMaster", "bool", "Whether node is master",
           lambda ctx, n: n.uuid == ctx.cluster.master_node),
        _f("role", "Role", "text", "Node role; \"M\" for master, \"C\" for master "
           "candidate, \"R\" for regular, \"D\" for drained, \"O\" for offline", _node_role),
        _f("group", "Group", "text", "Node group", group_attr("name")),
        _f("group.uuid", "GroupUUID", "text", "UUID of node group", _attr("group")),
        _f("ndparams", "NodeParameters", "other", "Merged node parameters",
           lambda ctx, n: copy_value(_node_nd(ctx, n))),
        _f("custom_ndparams", "CustomNodeParameters", "other", "Custom node parameters",
           _attr("ndparams")),
        _f("pinst_cnt", "Pinst", "number", "Number of instances with this node as primary",
           lambda ctx, n: ctx.cfg.count_node_instances(n.uuid)[0]),
        _f("sinst_cnt", "Sinst", "number", "Number of instances with this node as "
           "secondary", lambda ctx, n: ctx.cfg.count_node_instances(n.uuid)[1]),
        _f("pinst_list", "PriInstances", "other", "List of instances with this node as "
           "primary", inst_names(0)),
        _f("sinst_list", "SecInstances", "other", "List of instances with this node as "
           "secondary", inst_names(1)),
        *[_f(name, title, kind, doc, _node_live(key, kind), live=True)
          for name, title, kind, key, doc in _NODE_LIVE],
        *_nd_fields(_node_nd),
        *common_fields(),
    ]
    return with_aliases(fields, [])


# -- groups ---------------------------------------------------------------------------------
def _group_instances(ctx: QueryContext, group: NodeGroup) -> list[str]:
    names: list[str] = []
    for node in ctx.group_nodes(group.uuid):
        names.extend(i.name for i in ctx.cfg.get_node_instances(node.uuid)[0])
    return names


@cache
def group_fields() -> dict[str, FieldDef]:
    fields = [
        _f("name", "Group", "text", "Group name", _attr("name")),
        _f("alloc_policy", "AllocPolicy", "text", "Allocation policy for group",
           _attr("alloc_policy")),
        _f("node_cnt", "Nodes", "number", "Number of nodes",
           lambda ctx, g: len(ctx.group_nodes(g.uuid))),
        _f("node_list", "NodeList", "other", "List of nodes",
           lambda ctx, g: nice_sorted(n.name for n in ctx.group_nodes(g.uuid))),
        _f("pinst_cnt", "Instances", "number", "Number of primary instances",
           lambda ctx, g: sum(ctx.cfg.count_node_instances(n.uuid)[0]
                              for n in ctx.group_nodes(g.uuid))),
        _f("pinst_list", "InstanceList", "other", "List of primary instances",
           lambda ctx, g: nice_sorted(_group_instances(ctx, g))),
        _f("ndparams", "NDParams", "other", "Node parameters",
           lambda ctx, g: copy_value(_group_nd(ctx, g))),
        _f("custom_ndparams", "CustomNDParams", "other", "Custom node parameters",
           _attr("ndparams")),
        _f("diskparams", "DiskParameters", "other", "Disk parameters (merged)",
           lambda ctx, g: copy_value(ctx.cluster.fill_diskparams(g))),
        _f("custom_diskparams", "CustomDiskParameters", "other", "Custom disk parameters",
           _attr("diskparams")),
        _f("ipolicy", "InstancePolicy", "other", "Instance policy limitations (merged)",
           lambda ctx, g: ipolicy.group_ipolicy(ctx.cluster, g)),
        _f("custom_ipolicy", "CustomInstancePolicy", "other", "Custom instance policy "
           "limitations", _attr("ipolicy")),
        *_nd_fields(_group_nd),
        *common_fields(),
    ]
    return with_aliases(fields, [])


