"""Instance fields (Ganeti's ``_BuildInstanceFields``) and the ``status``
computation (``_GetInstStatus``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from corral import constants as C
from corral.objects import Instance
from corral.query.base import (
    NODATA,
    UNAVAIL,
    FieldDef,
    FieldKind,
    Getter,
    QueryContext,
    attr_getter,
    common_fields,
    copy_value,
    make_field,
    with_aliases,
)

# Short local names keep the field tables readable.
_f = make_field
_attr = attr_getter


# -- instances ------------------------------------------------------------------------------
def _is_shutdown(state: Any) -> bool:
    return state == C.HV_STATE_SHUTDOWN or state == "shutdown"


def _primary_entry(ctx: QueryContext, inst: Instance) -> tuple[dict[str, Any] | None, bool]:
    """(live entry reported by the primary node or None, wrong-node flag)."""
    assert ctx.live is not None
    entry = ctx.live.instances.get(inst.name)
    if entry is None:
        return None, False
    on_primary = entry.get("node") == inst.primary_node
    wrong = not on_primary or bool(entry.get("other_nodes"))
    return (entry if on_primary else None), wrong


def _inst_status(ctx: QueryContext, inst: Instance) -> Any:
    """Ganeti's _GetInstStatus / _GetLiveInstStatus (plus ``ADMIN_creating``)."""
    if ctx.live is None:
        return NODATA
    if inst.creating_job is not None:
        return C.INSTST_CREATING
    if ctx.node_offline(inst.primary_node):
        return C.INSTST_NODEOFFLINE
    if inst.primary_node in ctx.live.failed_nodes:
        return C.INSTST_NODEDOWN
    entry, wrong = _primary_entry(ctx, inst)
    admin_up = inst.admin_state == C.ADMINST_UP
    if wrong:
        return C.INSTST_WRONGNODE
    if entry is not None:
        if _is_shutdown(entry.get("state")):
            allow_userdown = ctx.cluster.enabled_user_shutdown and (
                inst.hypervisor != C.HT_KVM
                or bool(ctx.filled_hv(inst).get("user_shutdown")))
            if admin_up and allow_userdown:
                return C.INSTST_USERDOWN
            return C.INSTST_ERRORDOWN if admin_up else C.INSTST_ADMINDOWN
        return C.INSTST_RUNNING if admin_up else C.INSTST_ERRORUP
    if admin_up:
        return C.INSTST_ERRORDOWN
    if inst.admin_state == C.ADMINST_DOWN:
        if inst.admin_state_source == C.USER_SOURCE:
            return C.INSTST_USERDOWN
        return C.INSTST_ADMINDOWN
    return C.INSTST_ADMINOFFLINE


def _primary_unreachable(ctx: QueryContext, inst: Instance) -> bool:
    return ctx.node_unreachable(inst.primary_node)


def _inst_oper_state(ctx: QueryContext, inst: Instance) -> Any:
    if ctx.live is None or _primary_unreachable(ctx, inst):
        # Not RS_OFFLINE: that would describe the instance, and we just don't know.
        return NODATA
    return _primary_entry(ctx, inst)[0] is not None


def _inst_live(key: str) -> Getter:
    def getter(ctx: QueryContext, inst: Instance) -> Any:
        if ctx.live is None or _primary_unreachable(ctx, inst):
            return NODATA
        entry = _primary_entry(ctx, inst)[0]
        if entry is not None and key in entry:
            return entry[key]
        return UNAVAIL
    return getter


def _disk_usage(inst: Instance) -> int:
    """Space the disks take on a node in MiB (Ganeti's ComputeDiskSize)."""
    if inst.disk_template == C.DT_DISKLESS:
        return 0
    extra = 128 if inst.disk_template == C.DT_DRBD8 else 0   # DRBD metadata
    return sum(d.size + extra for d in inst.disks)


def _indexed(items: Callable[[QueryContext, Instance], list[Any]], index: int,
             value: Callable[[Any], Any]) -> Getter:
    def getter(ctx: QueryContext, inst: Instance) -> Any:
        seq = items(ctx, inst)
        if index >= len(seq):
            return UNAVAIL
        result = value(seq[index])
        return UNAVAIL if result is None else result
    return getter


def _nic_pairs(ctx: QueryContext, inst: Instance) -> list[tuple[Any, dict[str, Any]]]:
    return ctx.filled_nics(inst)


def _bridge(pair: tuple[Any, dict[str, Any]]) -> Any:
    params = pair[1]
    return params.get(C.NIC_LINK) if params.get(C.NIC_MODE) == C.NIC_MODE_BRIDGED else None


_BE_TITLES = {C.BE_AUTO_BALANCE: "Auto_balance", C.BE_MAXMEM: "ConfigMaxMem",
              C.BE_MINMEM: "ConfigMinMem", C.BE_VCPUS: "ConfigVCPUs"}
_HV_TITLES = {"acpi": "ACPI", "boot_order": "Boot_order",
              "cdrom_image_path": "CDROM_image_path", "disk_type": "Disk_type",
              "initrd_path": "Initrd_path", "kernel_path": "Kernel_path",
              "nic_type": "NIC_type", "vnc_bind_address": "VNC_bind_address",
              "cpu_type": "cpu_type"}
_TYPE_KIND: dict[str, FieldKind] = {"size": "unit", "int": "number", "bool": "bool",
                                    "float": "number", "string": "text"}


def _value_kind(value: Any) -> FieldKind:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "text" if isinstance(value, str) else "other"


def _param_fields() -> list[FieldDef]:
    fields = [
        _f("hvparams", "HypervisorParameters", "other", "Hypervisor parameters (merged)",
           lambda ctx, i: ctx.filled_hv(i)),
        _f("custom_hvparams", "CustomHypervisorParameters", "other",
           "Custom hypervisor parameters", _attr("hvparams")),
        _f("beparams", "BackendParameters", "other", "Backend parameters (merged)",
           lambda ctx, i: ctx.filled_be(i)),
        _f("custom_beparams", "CustomBackendParameters", "other",
           "Custom backend parameters", _attr("beparams")),
        _f("osparams", "OpSysParameters", "other", "Operating system parameters (merged)",
           lambda ctx, i: copy_value(ctx.cluster.fill_os(i))),
        _f("custom_osparams", "CustomOpSysParameters", "other",
           "Custom operating system parameters", _attr("osparams")),
        _f("custom_nicparams", "CustomNicParameters", "other", "Custom network interface "
           "parameters", lambda ctx, i: [copy_value(n.nicparams) for n in i.nics]),
    ]
    for name in C.BEC_DEFAULTS:
        fields.append(_f(f"be/{name}", _BE_TITLES.get(name, name),
                         _TYPE_KIND.get(C.BES_PARAMETER_TYPES.get(name, ""), "other"),
                         f"The \"{name}\" backend parameter",
                         lambda ctx, i, n=name: ctx.filled_be(i).get(n, UNAVAIL)))
    hv_params: dict[str, Any] = {}
    for defaults in C.HVC_DEFAULTS.values():
        for name, value in defaults.items():
            if name not in C.HVC_GLOBALS:
                hv_params.setdefault(name, value)
    for name, value in sorted(hv_params.items()):
        fields.append(_f(
            f"hv/{name}", _HV_TITLES.get(name, name), _value_kind(value),
            f"The \"{name}\" hypervisor parameter",
            lambda ctx, i, n=name: copy_value(ctx.filled_hv(i).get(n, UNAVAIL))))
    return fields


def _disk_fields() -> list[FieldDef]:
    fields = [
        _f("disk_usage", "DiskUsage", "unit", "Total disk space used by instance on each "
           "of its nodes; this is not the disk size visible to the instance",
           lambda ctx, i: _disk_usage(i)),
        _f("disk.count", "Disks", "number", "Number of disks", lambda ctx, i: len(i.disks)),
        _f("disk.sizes", "Disk_sizes", "other", "List of disk sizes",
           lambda ctx, i: [d.size for d in i.disks]),
        _f("disk.spindles", "Disk_spindles", "other", "List of disk spindles",
           lambda ctx, i: [d.spindles for d in i.disks]),
        _f("disk.names", "Disk_names", "other", "List of disk names",
           lambda ctx, i: [d.name for d in i.disks]),
        _f("disk.uuids", "Disk_UUIDs", "other", "List of disk UUIDs",
           lambda ctx, i: [d.uuid for d in i.disks]),
    ]
    disks: Callable[[QueryContext, Instance], list[Any]] = lambda ctx, i: i.disks
    for n in range(C.MAX_DISKS):
        fields += [
            _f(f"disk.size/{n}", f"Disk/{n}", "unit", f"Disk size of {_ordinal(n)} disk",
               _indexed(disks, n, lambda d: d.size)),
            _f(f"disk.spindles/{n}", f"DiskSpindles/{n}", "number",
               f"Spindles of {_ordinal(n)} disk", _indexed(disks, n, lambda d: d.spindles)),
            _f(f"disk.name/{n}", f"DiskName/{n}", "text", f"Name of {_ordinal(n)} disk",
               _indexed(disks, n, lambda d: d.name)),
            _f(f"disk.uuid/{n}", f"DiskUUID/{n}", "text", f"UUID of {_ordinal(n)} disk",
               _indexed(disks, n, lambda d: d.uuid)),
        ]
    return fields


def _nic_fields() -> list[FieldDef]:
    per_nic: list[tuple[str, str, str, FieldKind, Callable[[Any], Any], str]] = [
        # (list name, list title, item name, kind, value of (nic, filled params), doc)
        ("nic.macs", "NIC_MACs", "mac", "text", lambda p: p[0].mac, "MAC address"),
        ("nic.ips", "NIC_IPs", "ip", "text", lambda p: p[0].ip, "IP address"),
        ("nic.modes", "NIC_modes", "mode", "text", lambda p: p[1].get(C.NIC_MODE), "mode"),
        ("nic.links", "NIC_links", "link", "text", lambda p: p[1].get(C.NIC_LINK), "link"),
        ("nic.vlans", "NIC_VLANs", "vlan", "text", lambda p: p[1].get(C.NIC_VLAN), "VLAN"),
        ("nic.bridges", "NIC_bridges", "bridge", "text", _bridge, "bridge"),
        ("nic.names", "NIC_Names", "name", "text", lambda p: p[0].name, "name"),
        ("nic.uuids", "NIC_UUIDs", "uuid", "text", lambda p: p[0].uuid, "UUID"),
        ("nic.networks", "NIC_networks", "network", "text", lambda p: p[0].network,
         "network"),
        # Placeholder value: replaced below by getters resolving the name.
        ("nic.networks.names", "NIC_networks_names", "network.name", "text",
         lambda p: p[0].network, "network name"),
    ]
    fields = [_f("nic.count", "NICs", "number", "Number of network interfaces",
                 lambda ctx, i: len(i.nics))]
    for list_name, list_title, _item, _kind, value, doc in per_nic:
        fields.append(_f(list_name, list_title, "other", f"List containing each network "
                         f"interface's {doc}",
                         lambda ctx, i, v=value: [v(p) for p in _nic_pairs(ctx, i)]
                         if i.nics else []))
    for n in range(C.MAX_NICS):
        for _list_name, _title, item, kind, value, doc in per_nic:
            title = "Nic" + "".join(w[:1].upper() + w[1:] for w in item.split("."))
            if item in ("mac", "ip", "uuid", "vlan"):
                title = "Nic" + item.upper()
            fields.append(_f(f"nic.{item}/{n}", f"{title}/{n}", kind,
                             f"{doc[:1].upper()}{doc[1:]} of {_ordinal(n)} network interface",
                             _indexed(_nic_pairs, n, value)))
    return [_with_network_names(f) for f in fields]


def _network_names(ctx: QueryContext, inst: Instance) -> list[tuple[str | None]]:
    """Per NIC, its network's name (None when not on a network)."""
    out: list[tuple[str | None]] = []
    for nic, _ in _nic_pairs(ctx, inst):
        net = ctx.cfg.get_network(nic.network) if nic.network else None
        out.append((net.name if net is not None else nic.network,))
    return out


def _with_network_names(fdef: FieldDef) -> FieldDef:
    """The network-name fields with getters that look the networks up."""
    name = fdef.definition.name
    if name == "nic.networks.names":
        return FieldDef(fdef.definition, lambda ctx, i: [v[0] for v in _network_names(ctx, i)])
    if name.startswith("nic.network.name/"):
        index = int(name.rsplit("/", 1)[1])
        return FieldDef(fdef.definition, _indexed(_network_names, index, lambda v: v[0]))
    return fdef


def _ordinal(n: int) -> str:
    n += 1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@cache
def instance_fields() -> dict[str, FieldDef]:
    def pnode_group(attr: str) -> Getter:
        def getter(ctx: QueryContext, i: Instance) -> Any:
            group = ctx.group_of(i.primary_node)
            return getattr(group, attr) if group else UNAVAIL
        return getter

    def snodes_groups(attr: str) -> Getter:
        def getter(ctx: QueryContext, i: Instance) -> Any:
            groups = [ctx.group_of(n) for n in i.secondary_nodes]
            return [getattr(g, attr) if g else None for g in groups]
        return getter

    fields = [
        _f("name", "Instance", "text", "Instance name", _attr("name")),
        _f("os", "OS", "text", "Operating system", _attr("os")),
        _f("pnode", "Primary_node", "text", "Primary node",
           lambda ctx, i: ctx.node_name(i.primary_node) or UNAVAIL),
        _f("pnode.group", "PrimaryNodeGroup", "text", "Primary node's group",
           pnode_group("name")),
        _f("pnode.group.uuid", "PrimaryNodeGroupUUID", "text",
           "Primary node's group UUID", pnode_group("uuid")),
        _f("snodes", "Secondary_Nodes", "other", "Secondary nodes; usually this will just "
           "be one node", lambda ctx, i: [ctx.node_name(n) for n in i.secondary_nodes]
           if i.disks else []),
        _f("snodes.group", "SecondaryNodesGroups", "other", "Node groups of secondary "
           "nodes", snodes_groups("name")),
        _f("snodes.group.uuid", "SecondaryNodesGroupsUUID", "other", "Node group UUIDs "
           "of secondary nodes", snodes_groups("uuid")),
        _f("admin_state", "InstanceState", "text", "Desired state of the instance",
           _attr("admin_state")),
        _f("admin_state_source", "InstanceStateSource", "text",
           "Who last changed the desired state of the instance",
           _attr("admin_state_source")),
        _f("admin_up", "Autostart", "bool", "Desired state of the instance (true if up)",
           lambda ctx, i: i.admin_state == C.ADMINST_UP),
        _f("disks_active", "DisksActive", "bool", "Desired state of the instance's disks",
           _attr("disks_active")),
        _f("disk_template", "Disk_template", "text", "Instance disk template",
           _attr("disk_template")),
        _f("hypervisor", "Hypervisor", "text", "Hypervisor name", _attr("hypervisor")),
        _f("network_port", "Network_port", "other", "Instance network port if available "
           "(e.g. for VNC console)", _attr("network_port")),
        _f("status", "Status", "text", "Instance status; \"running\" if instance is set "
           "to be running and actually is, \"ADMIN_down\" if instance is stopped and is "
           "not running, \"ERROR_up\" if running but should be stopped, \"ERROR_down\" if "
           "should be running but is not, \"ERROR_nodedown\"/\"ERROR_nodeoffline\" if the "
           "primary node is unreachable/offline, \"ERROR_wrongnode\" if running on the "
           "wrong node, \"USER_down\" if shut down by the user, \"ADMIN_offline\" if "
           "marked offline, \"ADMIN_creating\" if a create job has not completed it",
           _inst_status, live=True),
        _f("creating_job", "CreatingJob", "other", "Id of the create job that has not "
           "completed the instance (none once complete)", _attr("creating_job")),
        _f("oper_state", "Running", "bool", "Actual state of instance",
           _inst_oper_state, live=True),
        _f("oper_ram", "Memory", "unit", "Actual memory usage as seen by hypervisor",
           _inst_live("memory"), live=True),
        _f("oper_vcpus", "VCPUs", "number", "Actual number of VCPUs as seen by hypervisor",
           _inst_live("vcpus"), live=True),
        *_param_fields(), *_disk_fields(), *_nic_fields(), *common_fields(),
    ]
    aliases = [("vcpus", "be/vcpus"), ("be/memory", "be/maxmem"),
               ("sda_size", "disk.size/0"), ("sdb_size", "disk.size/1"),
               ("ip", "nic.ip/0"), ("mac", "nic.mac/0"), ("bridge", "nic.bridge/0"),
               ("nic_mode", "nic.mode/0"), ("nic_link", "nic.link/0"),
               ("nic_network", "nic.network/0")]
    return with_aliases(fields, aliases)


