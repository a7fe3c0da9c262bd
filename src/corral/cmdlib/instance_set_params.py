"""Logical unit OP_INSTANCE_SET_PARAMS (``gnt-instance modify``).

Mirrors ``ganeti.cmdlib.instance_set_params.LUInstanceSetParams`` for what
Corral implements: backend, hypervisor and OS parameters, the OS, runtime
memory, the offline flag, NIC add/remove/modify and, for file-based disk
templates, disk add/remove/modify of a stopped instance. All changes are
computed on a copy of the instance in ``check_prereq``; ``exec`` creates new
disk files, commits the copy, then deletes removed disk files. The result
is Ganeti's list of ``[parameter, new value]`` pairs (``be/maxmem``,
``disk/1``, ``nic.mac/0``, ...).
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, LogicalUnit
from corral.cmdlib.instance_network import (
    AddressPlan,
    commit_with_addresses,
    nic_addresses,
    set_nic_network,
)
from corral.cmdlib.instance_policy import check_instance_spec, node_group, spec_from_params
from corral.cmdlib.instance_storage import (
    assemble_disks,
    check_disk_specs,
    create_disks,
    make_file_disks,
    storage_dir_of,
    update_iv_names,
)
from corral.cmdlib.instance_utils import (
    CAN_CHANGE_INSTANCE_OFFLINE,
    INSTANCE_NOT_RUNNING,
    check_hv_params,
    check_hv_syntax,
    check_instance_state,
    check_mac_free,
    check_minmem_maxmem,
    check_nic_filled,
    check_no_global_hvparams,
    check_node_free_memory,
    check_os_params,
    declare_instance_node_locks,
    generate_free_mac,
    get_updated_params,
    instance_hook_nodes,
    instance_runtime_info,
    lock_instance_and_nodes,
    nic_params_from_spec,
    node_free_memory,
    node_name,
    normalize_beparams,
    normalize_ip,
    normalize_mac,
    normalize_name,
    reserve_macs,
    validate_device_names,
)
from corral.hooks import build_instance_hook_env
from corral.objects import NIC, Disk
from corral.opcodes import validate_disk_params, validate_nic_params

DDM_ADD, DDM_REMOVE, DDM_MODIFY = "add", "remove", "modify"
DDM_ATTACH, DDM_DETACH = "attach", "detach"
_ADD_REMOVE = (DDM_ADD, DDM_REMOVE, DDM_ATTACH, DDM_DETACH)
_DISK_MODIFY_KEYS = frozenset({C.IDISK_MODE, C.IDISK_NAME})

Mod = tuple[str, Any, dict[str, Any]]


def upgrade_mods(kind: str, mods: list[Any]) -> list[Mod]:
    """Normalize SetParamsMods to ``[(op, identifier, params)]``.

    Accepts the legacy ``[[op_or_index, params]]`` form (at most one
    add/remove) and ``[[op, index_or_name, params]]``. Raises OpPrereqError
    ECODE_INVAL for anything else, and for attach/detach (not implemented).
    """
    if not mods:
        return []
    out: list[Mod] = []
    if all(isinstance(m, (list, tuple)) and len(m) == 2 for m in mods):
        addremove = 0
        for op_or_index, params in mods:
            if op_or_index in _ADD_REMOVE:
                out.append((op_or_index, -1, params))
                addremove += 1
                if addremove > 1:
                    raise errors.OpPrereqError(f"Only one {kind} add/remove operation is "
                                               "supported at a time", errors.ECODE_INVAL)
            else:
                out.append((DDM_MODIFY, op_or_index, params))
    else:
        for mod in mods:
            if not (isinstance(mod, (list, tuple)) and len(mod) == 3):
                raise errors.OpPrereqError(f"Invalid {kind} modification {mod!r}: expected "
                                           "[op, index or name, parameters]",
                                           errors.ECODE_INVAL)
            out.append((mod[0], mod[1], mod[2]))
    checked: list[Mod] = []
    for op, ident, params in out:
        if op in (DDM_ATTACH, DDM_DETACH):
            raise errors.OpPrereqError(f"{kind.capitalize()} {op} is not implemented yet",
                                       errors.ECODE_INVAL)
        if op not in (DDM_ADD, DDM_REMOVE, DDM_MODIFY):
            raise errors.OpPrereqError(f"Invalid {kind} operation '{op}'", errors.ECODE_INVAL)
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise errors.OpPrereqError(f"Invalid {kind} parameters {params!r}",
                                       errors.ECODE_INVAL)
        if op == DDM_REMOVE and params:
            raise errors.OpPrereqError(f"No settings should be passed when removing a {kind}",
                                       errors.ECODE_INVAL)
        if isinstance(ident, bool) or not isinstance(ident, (int, str)):
            raise errors.OpPrereqError(f"Invalid {kind} identifier {ident!r}",
                                       errors.ECODE_INVAL)
        checked.append((op, ident, dict(params)))
    return checked


def _as_index(ident: Any) -> int | None:
    if isinstance(ident, int):
        return ident
    try:
        return int(ident)
    except ValueError:
        return None


def add_index(kind: str, ident: Any, container: list[Any]) -> int:
    """Where an ``add`` inserts: -1 appends; otherwise 0..len (ECODE_INVAL)."""
    idx = _as_index(ident)
    if idx is None:
        raise errors.OpPrereqError(f"Only a positive integer or -1 is accepted as "
                                   f"identifier for {kind} add", errors.ECODE_INVAL)
    if idx == -1:
        return len(container)
    if idx < 0:
        raise errors.OpPrereqError("Not accepting negative indices other than -1",
                                   errors.ECODE_INVAL)
    if idx > len(container):
        raise errors.OpPrereqError(f"Got {kind} index {idx}, but there are only "
                                   f"{len(container)}", errors.ECODE_INVAL)
    return idx


def find_item(kind: str, ident: Any, container: list[Any]) -> int:
    """Index of the item named by ``ident`` (Ganeti's ``GetItemFromContainer``):
    an index (-1 = last), a UUID or a name. ECODE_INVAL / ECODE_NOENT."""
    idx = _as_index(ident)
    if idx is not None:
        if idx == -1 and container:
            return len(container) - 1
        if idx < 0:
            raise errors.OpPrereqError("Not accepting negative indices other than -1",
                                       errors.ECODE_INVAL)
        if idx >= len(container):
            raise errors.OpPrereqError(f"Got {kind} index {idx}, but there are only "
                                       f"{len(container)}", errors.ECODE_INVAL)
        return idx
    for pos, item in enumerate(container):
        if ident in (item.uuid, item.name):
            return pos
    raise errors.OpPrereqError(f"Cannot find {kind} with identifier {ident}",
                               errors.ECODE_NOENT)


def _check_disk_mod(op: str, params: dict[str, Any]) -> dict[str, Any]:
    if op == DDM_ADD:
        params = validate_disk_params(params)
    elif op == DDM_MODIFY:
        if C.IDISK_SIZE in params:
            raise errors.OpPrereqError("Disk size change not possible, use grow-disk",
                                       errors.ECODE_INVAL)
        unknown = set(params) - _DISK_MODIFY_KEYS
        if unknown:
            raise errors.OpPrereqError(f"Disk modification doesn't support the parameters "
                                       f"{', '.join(sorted(unknown))}", errors.ECODE_INVAL)
        mode = params.get(C.IDISK_MODE)
        if mode is not None and mode not in C.DISK_ACCESS_SET:
            raise errors.OpPrereqError(f"Invalid disk access mode '{mode}'",
                                       errors.ECODE_INVAL)
    if C.IDISK_NAME in params:
        params[C.IDISK_NAME] = normalize_name(params[C.IDISK_NAME])
    return params


def _check_nic_mod(op: str, params: dict[str, Any]) -> dict[str, Any]:
    if op == DDM_REMOVE:
        return params
    params = validate_nic_params(params)
    if op == DDM_ADD and params.get(C.INIC_MAC) is None:
        params[C.INIC_MAC] = C.VALUE_AUTO
    if C.INIC_MAC in params:
        params[C.INIC_MAC] = normalize_mac(params[C.INIC_MAC])
        if op == DDM_MODIFY and params[C.INIC_MAC] == C.VALUE_AUTO:
            raise errors.OpPrereqError("'auto' is not a valid MAC address when modifying "
                                       "an existing NIC", errors.ECODE_INVAL)
    if C.INIC_IP in params:
        params[C.INIC_IP] = normalize_ip(params[C.INIC_IP])
    if C.INIC_NAME in params:
        params[C.INIC_NAME] = normalize_name(params[C.INIC_NAME])
    nic_params_from_spec(params)      # syntax of mode/link/vlan/network
    return params


class LUInstanceSetParams(LogicalUnit):
    """Modify an instance; returns ``[[parameter, new value], ...]``."""

    HPATH = "instance-modify"
    HTYPE = C.HTYPE_INSTANCE
    REQ_BGL = False

    def check_arguments(self) -> None:
        op = self.op
        if not (op.nics or op.disks or op.hvparams or op.beparams or op.os_name or
                op.osparams or op.offline is not None or op.runtime_mem or
                op.disk_template or op.pnode or op.pnode_uuid or op.osparams_private or
                op.instance_communication is not None or op.ext_params):
            raise errors.OpPrereqError("No changes submitted", errors.ECODE_INVAL)
        for attr, what in (("disk_template", "Disk template conversion"),
                           ("pnode", "Changing the primary node"),
                           ("pnode_uuid", "Changing the primary node"),
                           ("remote_node", "Disk template conversion"),
                           ("iallocator", "Disk template conversion"),
                           ("file_driver", "Disk template conversion"),
                           ("file_storage_dir", "Disk template conversion"),
                           ("osparams_private", "Private OS parameters"),
                           ("instance_communication", "Instance communication"),
                           ("ext_params", "ExtStorage parameters")):
            value = getattr(op, attr)
            if value not in (None, {}, []):
                raise errors.OpPrereqError(f"{what} is not implemented yet",
                                           errors.ECODE_INVAL)
        if op.hotplug:
            raise errors.OpPrereqError("Hotplug is not implemented yet; modify the stopped "
                                       "instance instead", errors.ECODE_INVAL)
        check_no_global_hvparams(op.hvparams)
        self.be_update = normalize_beparams(op.beparams, allow_reset=True)
        self.disk_mods = [(o, i, _check_disk_mod(o, p))
                          for o, i, p in upgrade_mods("disk", op.disks)]
        self.nic_mods = [(o, i, _check_nic_mod(o, p))
                         for o, i, p in upgrade_mods("NIC", op.nics)]

    def expand_names(self) -> None:
        lock_instance_and_nodes(self, node_res=True)

    def declare_locks(self, level: str) -> None:
        declare_instance_node_locks(self, level)

    # -- prerequisites ------------------------------------------------------------
    def check_prereq(self) -> None:
        op = self.op
        self.instance = inst = self.get_locked_instance()
        self.cluster = cluster = self.cfg.get_cluster()
        self.new = new = inst.model_copy(deep=True)
        self.changes: list[list[Any]] = []
        self.disks_to_create: list[Disk] = []
        self.disks_to_remove: list[Disk] = []
        self.new_macs: list[str] = []
        self.addresses = AddressPlan(owner=f"modify:{inst.uuid}:{self.op_ctx.job_id}",
                                     check=op.conflicts_check)
        pnode = inst.primary_node
        self.check_node_online(pnode)

        if op.os_name:
            new.os = op.os_name
            self.changes.append(["os_name", op.os_name])
        if self.be_update:
            self._prepare_beparams()
        if op.hvparams:
            new.hvparams = get_updated_params(inst.hvparams, op.hvparams)
            hv_new = cluster.get_hv_defaults(new.hypervisor, new.os, new.hvparams)
            check_hv_syntax(new.hypervisor, hv_new)
            check_hv_params(self, new.all_nodes, new.hypervisor, hv_new)
            self.changes.extend([f"hv/{k}", v] for k, v in op.hvparams.items())
        if op.osparams or op.os_name:
            new.osparams = get_updated_params(inst.osparams, op.osparams)
            os_full = cluster.simple_fill_os(new.os, new.osparams)
            check_os_params(self, [pnode], new.os, os_full, op.force_variant)
            self.changes.extend([f"os/{k}", v] for k, v in op.osparams.items())
        if op.runtime_mem:
            self._prepare_runtime_mem()
        if op.offline is not None:
            if op.offline:
                check_instance_state(self, inst, CAN_CHANGE_INSTANCE_OFFLINE,
                                     "can't change to offline")
                new.admin_state = C.ADMINST_OFFLINE
            elif inst.admin_state == C.ADMINST_OFFLINE:
                new.admin_state = C.ADMINST_DOWN
            new.admin_state_source = C.ADMIN_SOURCE
            self.changes.append(["admin_state", new.admin_state])
        if self.disk_mods:
            self._prepare_disks()
        if self.nic_mods:
            self._prepare_nics()
        if self.be_update or self.disk_mods or self.nic_mods:
            self._check_ipolicy()

    def _check_ipolicy(self) -> None:
        """The modified instance against its group's policy, once with
        ``maxmem`` and once with ``minmem`` as Ganeti does. Checked only
        when a spec changes (Ganeti checks on every modify), so that an
        instance created with --ignore-ipolicy keeps its other changes."""
        new = self.new
        be_new = self.cluster.simple_fill_be(new.beparams)
        sizes = [d.size for d in new.disks]
        check_instance_spec(
            self, node_group(self.cfg, new.primary_node),
            [spec_from_params(be_new, mem, sizes, len(new.nics))
             for mem in (C.BE_MAXMEM, C.BE_MINMEM)],
            [d.dev_type for d in new.disks], self.op.ignore_ipolicy)

    def _prepare_beparams(self) -> None:
        inst, new, cluster = self.instance, self.new, self.cluster
        new.beparams = get_updated_params(inst.beparams, self.be_update)
        be_new = cluster.simple_fill_be(new.beparams)
        be_old = cluster.fill_be(inst)
        check_minmem_maxmem(be_new)
        if not self.op.force and be_new[C.BE_MAXMEM] > be_old[C.BE_MAXMEM]:
            info = instance_runtime_info(self, inst)
            if info is not None:
                hv = cluster.fill_hv(inst)
                free = node_free_memory(self, inst.primary_node, inst.hypervisor, hv)
                missing = int(be_new[C.BE_MAXMEM]) - int(info.get("memory", 0)) - free
                if missing > 0:
                    raise errors.OpPrereqError(
                        f"This change will prevent the instance from starting, due to "
                        f"{missing} MB of memory missing on its primary node",
                        errors.ECODE_NORES)
        self.changes.extend([f"be/{k}", v] for k, v in self.be_update.items())

    def _prepare_runtime_mem(self) -> None:
        inst, cluster = self.instance, self.cluster
        info = instance_runtime_info(self, inst)
        if info is None:
            raise errors.OpPrereqError(f"Instance {inst.name} must be running to set "
                                       "runtime memory", errors.ECODE_STATE)
        be = cluster.simple_fill_be(self.new.beparams)
        mem = self.op.runtime_mem
        if not self.op.force and not be[C.BE_MINMEM] <= mem <= be[C.BE_MAXMEM]:
            raise errors.OpPrereqError(
                f"Instance {inst.name} must have memory between {be[C.BE_MINMEM]} and "
                f"{be[C.BE_MAXMEM]} MiB of memory unless --force is given",
                errors.ECODE_INVAL)
        delta = mem - int(info.get("memory", 0))
        if delta > 0:
            check_node_free_memory(self, inst.primary_node,
                                   f"ballooning memory for instance {inst.name}", delta,
                                   inst.hypervisor, cluster.fill_hv(inst))

    def _prepare_disks(self) -> None:
        inst, new = self.instance, self.new
        if inst.disk_template == C.DT_DISKLESS:
            raise errors.OpPrereqError("Disk operations not supported for diskless instances",
                                       errors.ECODE_INVAL)
        if any(o in (DDM_ADD, DDM_REMOVE) for o, _, _ in self.disk_mods):
            if inst.disk_template not in (C.DT_FILE, C.DT_SHARED_FILE):
                raise errors.OpPrereqError(f"Adding or removing disks of template "
                                           f"'{inst.disk_template}' is not implemented yet",
                                           errors.ECODE_INVAL)
            check_instance_state(self, inst, INSTANCE_NOT_RUNNING,
                                 "cannot add or remove disks (hotplug is not implemented)")
        directory = storage_dir_of(inst)
        driver = inst.disks[0].logical_id[0] if inst.disks else C.FD_DEFAULT
        for op, ident, params in self.disk_mods:
            if op == DDM_ADD:
                idx = add_index("disk", ident, new.disks)
                check_disk_specs(inst.disk_template, [params])
                assert directory is not None
                disk = make_file_disks(inst.disk_template, directory, driver,
                                       inst.primary_node, [params], idx)[0]
                new.disks.insert(idx, disk)
                self.disks_to_create.append(disk)
                self.changes.append([f"disk/{idx}", f"add:size={disk.size},mode={disk.mode}"])
            elif op == DDM_REMOVE:
                idx = find_item("disk", ident, new.disks)
                disk = new.disks.pop(idx)
                if disk in self.disks_to_create:
                    self.disks_to_create.remove(disk)
                else:
                    self.disks_to_remove.append(disk)
                self.changes.append([f"disk/{idx}", "remove"])
            else:
                idx = find_item("disk", ident, new.disks)
                disk = new.disks[idx]
                if C.IDISK_MODE in params:
                    disk.mode = params[C.IDISK_MODE]
                    self.changes.append([f"disk.mode/{idx}", disk.mode])
                if C.IDISK_NAME in params:
                    disk.name = params[C.IDISK_NAME]
                    self.changes.append([f"disk.name/{idx}", disk.name])
        if not new.disks:
            raise errors.OpPrereqError("Cannot remove the last disk of an instance",
                                       errors.ECODE_INVAL)
        if len(new.disks) > C.MAX_DISKS:
            raise errors.OpPrereqError(f"Instance has too many disks ({len(new.disks)}), "
                                       "cannot add more", errors.ECODE_STATE)
        validate_device_names("disk", [d.name for d in new.disks])
        update_iv_names(new.disks)

    def _prepare_nics(self) -> None:
        new, cluster = self.new, self.cluster
        for op, ident, params in self.nic_mods:
            if op == DDM_ADD:
                idx = add_index("NIC", ident, new.nics)
                nic = NIC(name=params.get(C.INIC_NAME), nicparams=nic_params_from_spec(params))
                set_nic_network(self, self.addresses, nic, params, new.primary_node,
                                f"new NIC {idx}")
                net = self.cfg.get_network(nic.network) if nic.network else None
                nic.mac = self._nic_mac(params[C.INIC_MAC],
                                        prefix=net.mac_prefix if net is not None else None)
                filled = cluster.simple_fill_nic(nic.nicparams)
                check_nic_filled(filled, nic.ip, f"new NIC {idx}")
                new.nics.insert(idx, nic)
                self.changes.append([f"nic.{idx}", (
                    f"add:mac={nic.mac},ip={nic.ip},mode={filled[C.NIC_MODE]},"
                    f"link={filled[C.NIC_LINK]},network={nic.network}")])
            elif op == DDM_REMOVE:
                idx = find_item("NIC", ident, new.nics)
                removed = new.nics.pop(idx)
                self.addresses.give.extend(nic_addresses([removed]))
                self.changes.append([f"nic/{idx}", "remove"])
            else:
                idx = find_item("NIC", ident, new.nics)
                nic = new.nics[idx]
                if C.INIC_MAC in params:
                    if params[C.INIC_MAC] != nic.mac:
                        nic.mac = self._nic_mac(params[C.INIC_MAC], nic.uuid)
                    self.changes.append([f"nic.mac/{idx}", nic.mac])
                if C.INIC_NAME in params:
                    nic.name = params[C.INIC_NAME]
                    self.changes.append([f"nic.name/{idx}", nic.name])
                update = nic_params_from_spec(params)
                if nic.network and C.INIC_NETWORK not in params and \
                        (C.NIC_MODE in update or C.NIC_LINK in update):
                    raise errors.OpPrereqError("If network is given, no mode or link is "
                                               "allowed to be passed", errors.ECODE_INVAL)
                nic.nicparams = {**nic.nicparams, **update}
                self.changes.extend([f"nic.{k}/{idx}", v] for k, v in update.items())
                set_nic_network(self, self.addresses, nic, params, new.primary_node,
                                f"NIC {idx}")
                for key in (C.INIC_IP, C.INIC_NETWORK):
                    if key in params:
                        value = getattr(nic, key)
                        if key == C.INIC_NETWORK and value:
                            value = self.cfg.expand_network(value).name
                        self.changes.append([f"nic.{key}/{idx}", value])
                check_nic_filled(cluster.simple_fill_nic(nic.nicparams), nic.ip, f"NIC {idx}")
        if len(new.nics) > C.MAX_NICS:
            raise errors.OpPrereqError(f"Instance has too many network interfaces "
                                       f"({len(new.nics)}), cannot add more",
                                       errors.ECODE_STATE)
        validate_device_names("NIC", [n.name for n in new.nics])
        macs = [n.mac for n in new.nics]
        if len(set(macs)) != len(macs):
            raise errors.OpPrereqError("Duplicate MAC addresses given for the NICs",
                                       errors.ECODE_NOTUNIQUE)

    def _reserve_addresses(self, new: Any) -> None:
        """Reserve the chosen network addresses; pool addresses another job
        took meanwhile are replaced in ``new``'s NICs."""
        moved = self.addresses.reserve(self)
        for nic in new.nics:
            if nic.network and nic.ip in moved:
                self.log_warning(f"IP {nic.ip} was taken meanwhile, using {moved[nic.ip]}")
                nic.ip = moved[nic.ip]

    def _nic_mac(self, mac: str, nic_uuid: str | None = None,
                 prefix: str | None = None) -> str:
        if mac in (C.VALUE_AUTO, C.VALUE_GENERATE):
            mac = generate_free_mac(self, prefix)
        else:
            check_mac_free(self, mac, nic_uuid)
        self.new_macs.append(mac)
        return mac

    # -- hooks ----------------------------------------------------------------------
    def build_hooks_env(self) -> dict[str, Any]:
        current = self.cfg.get_instance(self.instance.uuid)
        inst = self.new if current is None or current.serial_no == self.instance.serial_no \
            else current
        env = build_instance_hook_env(self.cfg, inst)
        if self.op.disk_template:
            env["NEW_DISK_TEMPLATE"] = self.op.disk_template
        if self.op.runtime_mem:
            env["RUNTIME_MEMORY"] = self.op.runtime_mem
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return instance_hook_nodes(self, self.instance)

    # -- execution ------------------------------------------------------------------
    def exec(self, feedback_fn: FeedbackFn) -> list[list[Any]]:
        inst, new = self.instance, self.new
        result: list[list[Any]] = []
        if self.op.runtime_mem:
            res = self.rpc.call_one("instance_balloon_memory", inst.primary_node,
                                    [self.rpc.encode_instance(inst), self.op.runtime_mem])
            res.raise_for("Cannot modify instance runtime memory")
            result.append(["runtime_memory", self.op.runtime_mem])
        created: list[Disk] = []
        owner = f"modify:{inst.uuid}:{self.op_ctx.job_id}"
        try:
            for disk in self.disks_to_create:
                feedback_fn(f"Creating disk {disk.iv_name} ({disk.size} MiB)")
                create_disks(self, new, [disk], create_dir=False)
                created.append(disk)
            reserve_macs(self, self.new_macs, owner)
            self._reserve_addresses(new)
            commit_with_addresses(self, self.addresses, update=[new])
        except errors.CorralError as err:
            self.cfg.release_reservations(owner)
            self.addresses.release(self)
            problems = self._remove_files(created)
            tail = f"; could not clean up: {'; '.join(problems)}" if problems else ""
            raise errors.OpExecError(f"Could not modify instance {inst.name}: {err}; no "
                                     f"change was made{tail}") from None
        problems = self._remove_files(self.disks_to_remove, shutdown=True)
        for msg in problems:
            self.log_warning(f"{msg} (the disk was removed from the configuration)")
        if created and new.disks_active:
            assemble_disks(self, self.cfg.get_instance(inst.uuid) or new, disks=created)
        if self.nic_mods or self.op.hvparams or self.be_update:
            if instance_runtime_info(self, inst, prereq=False) is not None:
                feedback_fn("Changes of NICs and parameters take effect at the next start")
        return result + self.changes

    def _remove_files(self, disks: list[Disk], shutdown: bool = False) -> list[str]:
        problems: list[str] = []
        for disk in disks:
            for node_uuid in disk.nodes or [self.instance.primary_node]:
                calls = ["blockdev_shutdown", "blockdev_remove"] if shutdown \
                    else ["blockdev_remove"]
                for call in calls:
                    res = self.rpc.call_one(call, node_uuid, [disk.to_dict()])
                    if res.fail_msg:
                        problems.append(f"{call} of {disk.iv_name} on "
                                        f"{node_name(self, node_uuid)} failed: "
                                        f"{res.fail_msg}")
        return problems
