"""Helpers shared by the instance logical units.

Mirrors ``ganeti.cmdlib.instance_utils`` and the instance parts of
``ganeti.cmdlib.common``: state checks (``CheckInstanceState``), node memory
and OS/hypervisor parameter checks through RPC, parameter normalization
(beparams, hvparams, NICs), host name checks and small config updates.
Checks raise :class:`errors.OpPrereqError` and change nothing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from typing import TYPE_CHECKING, Any, Callable

from corral import constants as C
from corral import errors
from corral.cmdlib.base import LOCKS_REPLACE
from corral.cmdlib.common import check_hvparams_syntax, validate_params
from corral.cmdlib.instance_network import check_network_spec
from corral.objects import NIC, Instance

if TYPE_CHECKING:
    from corral.cmdlib.base import LogicalUnit

# Admin states in which an operation may run (Ganeti's INSTANCE_* sets).
INSTANCE_ONLINE = (C.ADMINST_DOWN, C.ADMINST_UP)
INSTANCE_DOWN = (C.ADMINST_DOWN,)
INSTANCE_NOT_RUNNING = (C.ADMINST_DOWN, C.ADMINST_OFFLINE)
CAN_CHANGE_INSTANCE_OFFLINE = (C.ADMINST_DOWN, C.ADMINST_OFFLINE)

VALUE_DEFAULT = "default"
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
# Hypervisors that need a cluster port per instance (VNC/SPICE), HTS_REQ_PORT.
HTS_REQ_PORT = frozenset({C.HT_KVM, C.HT_XEN_HVM})
IP_CHECK_TIMEOUT = 2.0


# -- small helpers -------------------------------------------------------------------
def reason_trail(lu: "LogicalUnit") -> list[list[Any]]:
    """The opcode's reason trail plus this opcode's own entry (``gnt:opcode:<name>``)."""
    trail = [list(r) for r in lu.op.reason]
    name = lu.op.OP_ID[3:].lower() if lu.op.OP_ID.startswith("OP_") else lu.op.OP_ID
    where = (f"job={getattr(lu.op_ctx, 'job_id', '')};"
             f"index={getattr(lu.op_ctx, 'op_index', 0)}")
    trail.append([f"gnt:opcode:{name}", where, time.time_ns()])
    return trail


def node_name(lu: "LogicalUnit", node_uuid: str) -> str:
    node = lu.cfg.get_node(node_uuid)
    return node.name if node is not None else node_uuid


def instance_info_text(instance: Instance) -> str:
    """Metadata stored with a disk (Ganeti's ``GetInstanceInfoText``)."""
    return f"originstname+{instance.name}"


def instance_hook_nodes(lu: "LogicalUnit", instance: Instance) -> tuple[list[str], list[str]]:
    """Master plus the instance's nodes, for both hook phases."""
    nodes = [lu.master_uuid(), *[n for n in instance.all_nodes if n != lu.master_uuid()]]
    return nodes, list(nodes)


def lock_instance_and_nodes(lu: "LogicalUnit", node_res: bool = False) -> None:
    """``expand_names`` part of most instance LUs: lock the instance by name
    (exclusively) and its nodes (recomputed in ``declare_locks``)."""
    lu.expand_and_lock_instance()
    assert lu.needed_locks is not None
    lu.needed_locks[C.LEVEL_NODE] = []
    lu.recalculate_locks[C.LEVEL_NODE] = LOCKS_REPLACE
    if node_res:
        lu.needed_locks[C.LEVEL_NODE_RES] = []
        lu.recalculate_locks[C.LEVEL_NODE_RES] = LOCKS_REPLACE


def declare_instance_node_locks(lu: "LogicalUnit", level: str) -> None:
    """``declare_locks`` counterpart of :func:`lock_instance_and_nodes`."""
    if level in (C.LEVEL_NODE, C.LEVEL_NODE_RES) and level in lu.recalculate_locks:
        lu.lock_instances_nodes(level)


def update_instance(lu: "LogicalUnit", instance_uuid: str,
                    change: Callable[[Instance], None]) -> Instance:
    """Re-read an instance, apply ``change`` to a copy and commit it.

    Returns the committed copy. Raises OpExecError if the instance vanished.
    """
    current = lu.cfg.get_instance(instance_uuid)
    if current is None:
        raise errors.OpExecError(f"Instance {instance_uuid} disappeared from the "
                                 "configuration")
    copy = current.model_copy(deep=True)
    change(copy)
    lu.cfg.commit(update=[copy])
    return copy


def set_admin_state(lu: "LogicalUnit", instance_uuid: str, state: str,
                    source: str = C.ADMIN_SOURCE) -> Instance:
    """Ganeti's ``MarkInstanceUp/Down/Offline``: record the admin state."""
    def change(inst: Instance) -> None:
        inst.admin_state = state
        inst.admin_state_source = source
    return update_instance(lu, instance_uuid, change)


def set_disks_active(lu: "LogicalUnit", instance_uuid: str, active: bool) -> Instance:
    """Ganeti's ``MarkInstanceDisksActive/Inactive``; no commit if unchanged."""
    current = lu.cfg.get_instance(instance_uuid)
    if current is not None and current.disks_active == active:
        return current

    def change(inst: Instance) -> None:
        inst.disks_active = active
    return update_instance(lu, instance_uuid, change)


# -- state checks -------------------------------------------------------------------
def instance_runtime_info(lu: "LogicalUnit", instance: Instance,
                          prereq: bool = True) -> dict[str, Any] | None:
    """Live data (``{memory, vcpus, state, time}``) of the instance on its
    primary node, None if it does not run there.

    Raises OpPrereqError (``ECODE_ENVIRON``) when the node cannot be asked,
    or OpExecError when ``prereq`` is false.
    """
    cluster = lu.cfg.get_cluster()
    res = lu.rpc.call_one("instance_info", instance.primary_node,
                          [instance.name, instance.hypervisor, cluster.fill_hv(instance)])
    res.raise_for(f"Error checking node {node_name(lu, instance.primary_node)}",
                  prereq=prereq, ecode=errors.ECODE_ENVIRON)
    return res.payload or None


def check_instance_state(lu: "LogicalUnit", instance: Instance, req_states: tuple[str, ...],
                         msg: str | None = None) -> None:
    """Ganeti's ``CheckInstanceState``: admin state in ``req_states``, and if
    ``up`` is not allowed, the instance must not run on its primary node.

    Raises OpPrereqError ``ECODE_STATE``.
    """
    if msg is None:
        msg = f"can't use instance from outside {', '.join(req_states)} states"
    if instance.admin_state not in req_states:
        raise errors.OpPrereqError(f"Instance '{instance.name}' is marked to be "
                                   f"{instance.admin_state}, {msg}", errors.ECODE_STATE)
    if C.ADMINST_UP not in req_states:
        pnode = lu.cfg.get_node(instance.primary_node)
        if pnode is not None and pnode.offline:
            lu.log_warning("Primary node offline, ignoring check that instance is down")
            return
        if instance_runtime_info(lu, instance) is not None:
            raise errors.OpPrereqError(f"Instance {instance.name} is running, {msg}",
                                       errors.ECODE_STATE)


def node_free_memory(lu: "LogicalUnit", node_uuid: str, hv_name: str,
                     hvparams: dict[str, Any]) -> int:
    """Free memory (MiB) of a node as its hypervisor reports it (``node_info``).

    Raises OpPrereqError ``ECODE_ENVIRON`` if it cannot be determined.
    """
    res = lu.rpc.call_one("node_info", node_uuid, [[], [[hv_name, hvparams]]])
    name = node_name(lu, node_uuid)
    res.raise_for(f"Can't get data from node {name}", prereq=True, ecode=errors.ECODE_ENVIRON)
    payload = res.payload or {}
    hv_info = payload.get("hv") if isinstance(payload, dict) else None
    if isinstance(hv_info, list):
        hv_info = hv_info[0] if hv_info else None
    free = hv_info.get("memory_free") if isinstance(hv_info, dict) else None
    if not isinstance(free, int):
        raise errors.OpPrereqError(f"Can't compute free memory on node {name}, result "
                                   f"was '{free}'", errors.ECODE_ENVIRON)
    return free


def check_node_free_memory(lu: "LogicalUnit", node_uuid: str, reason: str, requested: int,
                           hv_name: str, hvparams: dict[str, Any]) -> int:
    """Ganeti's ``CheckNodeFreeMemory``: ``requested`` MiB must be free.

    Returns the free memory; raises OpPrereqError ``ECODE_NORES`` if short.
    """
    free = node_free_memory(lu, node_uuid, hv_name, hvparams)
    if requested > free:
        raise errors.OpPrereqError(
            f"Not enough memory on node {node_name(lu, node_uuid)} for {reason}: needed "
            f"{requested} MiB, available {free} MiB", errors.ECODE_NORES)
    return free


def check_os_params(lu: "LogicalUnit", node_uuids: list[str], os_name: str,
                    osparams: dict[str, Any], force_variant: bool) -> None:
    """Validate the OS and its parameters on the nodes (``os_validate``,
    required, check ``parameters``). Raises OpPrereqError ``ECODE_INVAL``."""
    nodes = [u for u in node_uuids
             if (n := lu.cfg.get_node(u)) is not None and n.vm_capable and not n.offline]
    if not nodes:
        return
    results = lu.rpc.call("os_validate", nodes,
                          [True, os_name, ["parameters"], osparams, force_variant])
    for uuid, res in results.items():
        res.raise_for(f"OS '{os_name}' or its parameters are not valid on node "
                      f"{node_name(lu, uuid)}", prereq=True, ecode=errors.ECODE_INVAL)


def check_hv_params(lu: "LogicalUnit", node_uuids: list[str], hv_name: str,
                    hvfull: dict[str, Any]) -> None:
    """Node-side hypervisor parameter checks (``hypervisor_validate_params``).

    Raises OpPrereqError ``ECODE_INVAL``.
    """
    nodes = [u for u in node_uuids
             if (n := lu.cfg.get_node(u)) is not None and n.vm_capable and not n.offline]
    if not nodes:
        return
    for uuid, res in lu.rpc.call("hypervisor_validate_params", nodes,
                                 [hv_name, hvfull]).items():
        res.raise_for(f"Hypervisor parameter validation failed on node "
                      f"{node_name(lu, uuid)}", prereq=True, ecode=errors.ECODE_INVAL)


def check_hv_syntax(hv_name: str, hvfull: dict[str, Any]) -> None:
    """Master-side syntax check of complete hvparams (OpPrereqError ECODE_INVAL)."""
    check_hvparams_syntax(hv_name, hvfull)


def check_no_global_hvparams(hvparams: dict[str, Any]) -> None:
    """Cluster-wide hvparams cannot be set per instance (ECODE_INVAL)."""
    used = sorted(set(hvparams) & C.HVC_GLOBALS)
    if used:
        raise errors.OpPrereqError(
            "The following hypervisor parameters are global and cannot be customized at "
            f"instance level, please modify them at cluster level: {', '.join(used)}",
            errors.ECODE_INVAL)


# -- parameter normalization ----------------------------------------------------------
def normalize_beparams(beparams: dict[str, Any], allow_reset: bool = False) -> dict[str, Any]:
    """Type-check beparams; ``memory`` sets both ``maxmem`` and ``minmem``.

    With ``allow_reset`` the values None and ``"default"`` are kept (they
    reset a key to the cluster default). Raises OpPrereqError ECODE_INVAL.
    """
    params = dict(beparams)
    if C.BE_MEMORY in params:
        mem = params.pop(C.BE_MEMORY)
        for key in (C.BE_MAXMEM, C.BE_MINMEM):
            if key in params and params[key] != mem:
                raise errors.OpPrereqError(f"'{C.BE_MEMORY}' and '{key}' given with "
                                           "different values", errors.ECODE_INVAL)
            params[key] = mem
    resets = {k for k, v in params.items() if v is None or v == VALUE_DEFAULT}
    if resets and not allow_reset:
        raise errors.OpPrereqError(f"Invalid value for backend parameter(s) "
                                   f"{', '.join(sorted(resets))}", errors.ECODE_INVAL)
    checked = validate_params({k: v for k, v in params.items() if k not in resets},
                              C.BES_PARAMETER_TYPES, "backend")
    for key, minimum in ((C.BE_MAXMEM, 1), (C.BE_MINMEM, 1), (C.BE_VCPUS, 1),
                         (C.BE_SPINDLE_USE, 0)):
        value = checked.get(key)
        if value is not None and value < minimum:
            raise errors.OpPrereqError(f"Backend parameter '{key}' must be at least "
                                       f"{minimum}, got {value}", errors.ECODE_INVAL)
    checked.update({k: None for k in resets})
    return checked


def check_minmem_maxmem(be_filled: dict[str, Any]) -> None:
    minmem, maxmem = be_filled.get(C.BE_MINMEM), be_filled.get(C.BE_MAXMEM)
    if isinstance(minmem, int) and isinstance(maxmem, int) and minmem > maxmem:
        raise errors.OpPrereqError(f"Minimum memory ({minmem} MiB) is greater than maximum "
                                   f"memory ({maxmem} MiB)", errors.ECODE_INVAL)


def get_updated_params(old: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Ganeti's ``_GetUpdatedParams``: None or ``"default"`` removes a key."""
    out = dict(old)
    for key, value in update.items():
        if value is None or value == VALUE_DEFAULT:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def validate_device_names(kind: str, names: list[str | None]) -> None:
    """Names must be unique and not look like indexes (ECODE_INVAL/NOTUNIQUE)."""
    seen: set[str] = set()
    for name in names:
        if name is None:
            continue
        if name.lstrip("-").isdigit():
            raise errors.OpPrereqError(f"Invalid {kind} name '{name}': it must not be a "
                                       "number", errors.ECODE_INVAL)
        if name in seen:
            raise errors.OpPrereqError(f"Device name '{name}' is not unique",
                                       errors.ECODE_NOTUNIQUE)
        seen.add(name)


def normalize_name(value: Any) -> str | None:
    """A device/NIC name: ``"none"`` or empty means no name."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.OpPrereqError(f"Invalid name {value!r}", errors.ECODE_INVAL)
    return None if value == "" or value.lower() == C.VALUE_NONE else value


def normalize_mac(mac: Any) -> str:
    """A MAC in lower case with colons; ``auto``/``generate`` kept.

    Raises OpPrereqError ECODE_INVAL for anything else.
    """
    if mac in (C.VALUE_AUTO, C.VALUE_GENERATE):
        return mac
    if isinstance(mac, str):
        norm = mac.strip().lower().replace("-", ":")
        if _MAC_RE.match(norm):
            return norm
    raise errors.OpPrereqError(f"Invalid MAC address '{mac}'", errors.ECODE_INVAL)


def normalize_ip(ip: Any) -> str | None:
    """An IP address, ``pool`` (an address from the NIC's network, see
    :mod:`corral.cmdlib.instance_network`) or None (for None/``none``)."""
    if ip is None or (isinstance(ip, str) and ip.lower() in ("", C.VALUE_NONE)):
        return None
    if isinstance(ip, str) and ip.lower() == "pool":
        return "pool"
    try:
        return str(ipaddress.ip_address(str(ip)))
    except ValueError:
        raise errors.OpPrereqError(f"Invalid IP address '{ip}'", errors.ECODE_INVAL) from None


def nic_params_from_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Custom ``nicparams`` (mode/link/vlan) of an INicParams dict.

    Handles the legacy ``bridge`` key. With a ``network`` the connection of
    the network to the node's group gives mode and link (see
    :func:`corral.cmdlib.instance_network.check_network_spec`). Raises
    OpPrereqError ECODE_INVAL.
    """
    check_network_spec(spec, pool_needs_network=False)
    params: dict[str, Any] = {}
    mode = spec.get(C.INIC_MODE)
    if mode is not None:
        if mode not in C.NIC_VALID_MODES:
            raise errors.OpPrereqError(f"Invalid NIC mode '{mode}'", errors.ECODE_INVAL)
        params[C.NIC_MODE] = mode
    link, bridge = spec.get(C.INIC_LINK), spec.get(C.INIC_BRIDGE)
    if bridge and link and bridge != link:
        raise errors.OpPrereqError("Cannot pass 'bridge' and 'link' at the same time",
                                   errors.ECODE_INVAL)
    if bridge and mode not in (None, C.NIC_MODE_BRIDGED):
        raise errors.OpPrereqError("Cannot pass 'bridge' on non-bridged mode NICs",
                                   errors.ECODE_INVAL)
    link = link or bridge
    if link is not None:
        if not isinstance(link, str):
            raise errors.OpPrereqError(f"Invalid NIC link {link!r}", errors.ECODE_INVAL)
        params[C.NIC_LINK] = link
    vlan = spec.get(C.INIC_VLAN)
    if vlan not in (None, ""):
        if not isinstance(vlan, (str, int)) or \
                not re.match(r"^[.:]?\d+(:\d+)*$", str(vlan)):
            raise errors.OpPrereqError(f"Invalid VLAN '{vlan}'", errors.ECODE_INVAL)
        params[C.NIC_VLAN] = str(vlan)
    return params


def check_nic_filled(filled: dict[str, Any], ip: str | None, what: str) -> None:
    """Checks on a NIC's effective parameters (ECODE_INVAL)."""
    mode = filled.get(C.NIC_MODE)
    if mode not in C.NIC_VALID_MODES:
        raise errors.OpPrereqError(f"Invalid NIC mode '{mode}' for {what}", errors.ECODE_INVAL)
    if mode == C.NIC_MODE_ROUTED and ip is None:
        raise errors.OpPrereqError(f"Routed NIC mode requires an IP address ({what})",
                                   errors.ECODE_INVAL)
    if mode == C.NIC_MODE_BRIDGED and not filled.get(C.NIC_LINK):
        raise errors.OpPrereqError(f"Bridged NIC mode requires a link ({what})",
                                   errors.ECODE_INVAL)
    if filled.get(C.NIC_VLAN) and mode != C.NIC_MODE_OVS:
        raise errors.OpPrereqError(f"VLAN is given, but network mode is not openvswitch "
                                   f"({what})", errors.ECODE_INVAL)


def mac_in_use(lu: "LogicalUnit", mac: str, ignore_nic: str | None = None) -> bool:
    for inst in lu.cfg.get_instances().values():
        for nic in inst.nics:
            if nic.uuid != ignore_nic and nic.mac.lower() == mac:
                return True
    return False


def check_mac_free(lu: "LogicalUnit", mac: str, ignore_nic: str | None = None) -> None:
    """A user-given MAC must not be used by another NIC (ECODE_NOTUNIQUE)."""
    if mac_in_use(lu, mac, ignore_nic):
        raise errors.OpPrereqError(f"MAC address {mac} already in use in cluster",
                                   errors.ECODE_NOTUNIQUE)


def generate_free_mac(lu: "LogicalUnit", prefix: str | None = None) -> str:
    """A new unique MAC (with ``prefix``, a network's MAC prefix, if given);
    not kept reserved (see :func:`reserve_macs`)."""
    mac = lu.cfg.generate_mac(prefix=prefix)
    lu.cfg.release_mac(mac)
    return mac


def reserve_macs(lu: "LogicalUnit", macs: list[str], owner: str) -> None:
    """Reserve MACs right before committing the NICs holding them.

    Raises OpExecError if another job took one meanwhile (nothing reserved).
    """
    done: list[str] = []
    try:
        for mac in macs:
            lu.cfg.reserve_mac(mac, owner)
            done.append(mac)
    except errors.OpPrereqError as err:
        for mac in done:
            lu.cfg.release_mac(mac)
        raise errors.OpExecError(f"Cannot reserve MAC address: {err}") from None


def nic_list_to_tuple(lu: "LogicalUnit", nics: list[NIC]) -> list[list[Any]]:
    """NICs as Ganeti's ``NICListToTuple``:
    ``[name, uuid, ip, mac, mode, link, vlan, network, netinfo]``."""
    cluster = lu.cfg.get_cluster()
    out = []
    for nic in nics:
        filled = cluster.simple_fill_nic(nic.nicparams)
        net = lu.cfg.get_network(nic.network) if nic.network else None
        out.append([nic.name, nic.uuid, nic.ip, nic.mac, filled.get(C.NIC_MODE),
                    filled.get(C.NIC_LINK), filled.get(C.NIC_VLAN, ""), nic.network,
                    net.to_dict() if net is not None else None])
    return out


# -- host names ------------------------------------------------------------------------
def resolve_hostname(name: str, family: int = 4) -> tuple[str, str]:
    """Resolve ``name`` (Ganeti's ``_CheckHostnameSane``); returns (name, ip).

    The resolved name must be the given one or start with it plus a dot.
    Raises OpPrereqError ``ECODE_RESOLVER`` when it cannot be resolved,
    ``ECODE_INVAL`` when it resolves to an unrelated name.
    """
    fam = socket.AF_INET6 if family == 6 else socket.AF_INET
    try:
        infos = socket.getaddrinfo(name, None, fam, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                                   socket.AI_CANONNAME)
    except (OSError, UnicodeError) as err:
        raise errors.OpPrereqError(
            f"Host name '{name}' cannot be resolved ({err}); use --no-name-check "
            "(name_check=False) to skip the check", errors.ECODE_RESOLVER) from None
    if not infos:
        raise errors.OpPrereqError(f"Host name '{name}' cannot be resolved; use "
                                   "--no-name-check to skip the check", errors.ECODE_RESOLVER)
    canon = (infos[0][3] or name).rstrip(".")
    if canon.lower() != name.lower() and not canon.lower().startswith(name.lower() + "."):
        raise errors.OpPrereqError(f"Resolved hostname '{canon}' does not look the same as "
                                   f"given hostname '{name}'", errors.ECODE_INVAL)
    return canon, str(infos[0][4][0])


def check_ip_not_in_use(lu: "LogicalUnit", ip: str, instance_name: str) -> None:
    """Ganeti's ip_check: the address must not answer on the noded port.

    Only loopback addresses are probed (Corral never sends traffic
    elsewhere); others are skipped with a log message. Raises OpPrereqError
    ``ECODE_NOTUNIQUE`` when something answers.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return
    if not addr.is_loopback:
        lu.log_info(f"Skipping IP check for {ip} of instance {instance_name}: Corral only "
                    "probes loopback addresses")
        return
    try:
        with socket.create_connection((ip, C.DEFAULT_NODED_PORT), timeout=IP_CHECK_TIMEOUT):
            pass
    except OSError:
        return
    raise errors.OpPrereqError(f"IP {ip} of instance {instance_name} already in use",
                               errors.ECODE_NOTUNIQUE)


def release_port(lu: "LogicalUnit", port: int | None) -> None:
    """Give an instance's cluster port back to the pool (as Ganeti's
    ``RemoveInstance``); failures only warn."""
    if port is None:
        return

    try:
        cluster = lu.cfg.get_cluster().model_copy(deep=True)
        if port not in cluster.tcpudp_port_pool:
            cluster.tcpudp_port_pool.append(port)
            lu.cfg.commit(update=[cluster])
    except errors.CorralError as err:
        lu.log_warning(f"Could not return port {port} to the cluster pool: {err}")
