"""Logical unit OP_INSTANCE_CREATE (mode ``create``).

Mirrors ``ganeti.cmdlib.instance_create.LUInstanceCreate``: every argument is
checked before anything changes (``check_arguments``, ``expand_names``,
``check_prereq`` with the OS and hypervisor parameters validated on the
primary node and, when starting, its free memory). ``exec`` then adds the
instance to the configuration (admin state down, so it is visible while it
is built), creates the storage directory and disks, runs the OS create
script, and starts it if asked. Any failure undoes all of that and the
error says what failed and what could not be cleaned up.

Half-created instances (Corral differs from Ganeti here). Ganeti creates
the disks first and adds the instance to the configuration afterwards: a
master dying in between leaves volumes no configuration names (verify
reports them as orphans), and one dying during the OS install leaves an
instance that looks like a normal stopped one. Corral adds the instance
first, with ``creating_job`` set to the id of the create job, and clears
that mark in the commit that completes it (admin state ``up`` too, when
``start``). So every disk a create makes on a node belongs to an instance of
the configuration, and an unfinished one is visible: ``gnt-instance list``
shows ``ADMIN_creating``, every operation but ``gnt-instance remove``
refuses it (ECODE_STATE), ``gnt-cluster verify`` reports it once its job has
ended, and masterd removes it at start-up (:mod:`corral.masterd.reconcile`)
after an interrupted create. Removal rather than completion: what an
interrupted OS install left on the disks is unknown.
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, LogicalUnit
from corral.cmdlib.instance_network import (
    AddressPlan,
    check_conflicting_ip,
    check_network_spec,
    commit_with_addresses,
    group_netparams,
    remove_instance_config,
)
from corral.cmdlib.instance_policy import check_instance_spec, node_group, spec_from_params
from corral.cmdlib.instance_storage import (
    assemble_disks,
    check_storage_subdir,
    create_disks,
    generate_disk_template,
    remove_disks,
    shutdown_disks,
)
from corral.cmdlib.instance_utils import (
    HTS_REQ_PORT,
    check_hv_params,
    check_hv_syntax,
    check_ip_not_in_use,
    check_mac_free,
    check_minmem_maxmem,
    check_nic_filled,
    check_no_global_hvparams,
    check_node_free_memory,
    check_os_params,
    generate_free_mac,
    nic_params_from_spec,
    node_name,
    normalize_beparams,
    normalize_ip,
    normalize_mac,
    normalize_name,
    reason_trail,
    release_port,
    reserve_macs,
    resolve_hostname,
    update_instance,
    validate_device_names,
)
from corral.cmdlib.tags import validate_tag
from corral.hooks import build_instance_hook_env
from corral.hypervisor import get_hypervisor_class
from corral.objects import NIC, Instance, new_uuid


def _strip_defaults(custom: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in custom.items() if k not in defaults or defaults[k] != v}


class LUInstanceCreate(LogicalUnit):
    """Create an instance from scratch; returns the node names used."""

    HPATH = "instance-add"
    HTYPE = C.HTYPE_INSTANCE
    REQ_BGL = False
    MODES: tuple[str, ...] = (C.INSTANCE_CREATE,)
    INSTALL_STEP = "running the OS create script"

    def __new__(cls, context: Any, op: Any, *args: Any, **kwargs: Any) -> "LUInstanceCreate":
        # Imports (modes import and remote-import) are done by a subclass.
        if cls is LUInstanceCreate and getattr(op, "mode", None) in (
                C.INSTANCE_IMPORT, C.INSTANCE_REMOTE_IMPORT):
            from corral.cmdlib.instance_import import LUInstanceImport
            cls = LUInstanceImport
        return super().__new__(cls)

    # -- arguments ----------------------------------------------------------------
    def check_arguments(self) -> None:
        op = self.op
        if op.mode not in self.MODES:
            raise errors.OpPrereqError(f"Instance creation mode '{op.mode}' is not "
                                       "implemented yet", errors.ECODE_INVAL)
        if op.no_install and op.start:
            raise errors.OpPrereqError("Cannot start an instance without installing it "
                                       "(no_install together with start)", errors.ECODE_INVAL)
        if op.ip_check and not op.name_check:
            raise errors.OpPrereqError("Cannot do IP address check without a name check",
                                       errors.ECODE_INVAL)
        if not op.os_type:
            raise errors.OpPrereqError("No guest OS or OS image specified",
                                       errors.ECODE_INVAL)
        if op.forthcoming or op.commit:
            raise errors.OpPrereqError("Forthcoming instances are not implemented yet",
                                       errors.ECODE_INVAL)
        if op.instance_communication:
            raise errors.OpPrereqError("Instance communication is not implemented yet",
                                       errors.ECODE_INVAL)
        if op.osparams_private or op.osparams_secret:
            raise errors.OpPrereqError("Private and secret OS parameters are not "
                                       "implemented yet", errors.ECODE_INVAL)
        if op.iallocator:
            raise errors.OpPrereqError("Placement by iallocator is not implemented yet; "
                                       "give a primary node", errors.ECODE_INVAL)
        if not op.pnode and not op.pnode_uuid:
            raise errors.OpPrereqError("No iallocator or primary node given",
                                       errors.ECODE_INVAL)
        op.file_storage_dir = check_storage_subdir(op.file_storage_dir)
        self.beparams = normalize_beparams(op.beparams)
        check_no_global_hvparams(op.hvparams)
        if len(op.nics) > C.MAX_NICS:
            raise errors.OpPrereqError(f"Too many NICs ({len(op.nics)}), the maximum is "
                                       f"{C.MAX_NICS}", errors.ECODE_INVAL)
        self.nic_specs = [self._parse_nic(idx, spec) for idx, spec in enumerate(op.nics)]
        validate_device_names("NIC", [n["name"] for n in self.nic_specs])
        validate_device_names("disk", [normalize_name(d.get(C.IDISK_NAME))
                                       for d in op.disks])
        for tag in op.tags:
            validate_tag(tag)
        if len(op.tags) > C.MAX_TAGS_PER_OBJ:
            raise errors.OpPrereqError("Too many tags", errors.ECODE_INVAL)

    @staticmethod
    def _parse_nic(idx: int, spec: dict[str, Any]) -> dict[str, Any]:
        mac = normalize_mac(spec.get(C.INIC_MAC) or C.VALUE_AUTO)
        return {"mac": mac, "ip": normalize_ip(spec.get(C.INIC_IP)),
                "name": normalize_name(spec.get(C.INIC_NAME)),
                "nicparams": nic_params_from_spec(spec),
                "network": check_network_spec(spec)}

    # -- names and locks ----------------------------------------------------------
    def expand_names(self) -> None:
        op = self.op
        cluster = self.cfg.get_cluster()
        self.check_ip: str | None = None
        if op.name_check:
            op.instance_name, self.check_ip = resolve_hostname(op.instance_name,
                                                               cluster.primary_ip_family)
        if self.cfg.get_instance_by_name(op.instance_name) is not None:
            raise errors.OpPrereqError(f"Instance '{op.instance_name}' is already in the "
                                       "cluster", errors.ECODE_EXISTS)
        self._check_template(cluster)
        pnode = self.cfg.expand_node(op.pnode_uuid or op.pnode)
        op.pnode, op.pnode_uuid = pnode.name, pnode.uuid
        if op.snode or op.snode_uuid:
            self.log_warning("Secondary node will be ignored on non-mirrored disk template")
        self.needed_locks = {
            C.LEVEL_INSTANCE: [op.instance_name],
            C.LEVEL_NODE: [pnode.uuid],
            C.LEVEL_NODE_RES: [pnode.uuid],
        }
        self.dry_run_result = [pnode.name]

    def _check_template(self, cluster: Any) -> None:
        op = self.op
        if op.disk_template is None:
            if not cluster.enabled_disk_templates:
                raise errors.OpPrereqError("No disk template is enabled in the cluster",
                                           errors.ECODE_STATE)
            op.disk_template = cluster.enabled_disk_templates[0]
        if op.disk_template not in cluster.enabled_disk_templates:
            raise errors.OpPrereqError(
                f"Disk template '{op.disk_template}' is not enabled in cluster. Enabled disk "
                f"templates are: {', '.join(cluster.enabled_disk_templates)}",
                errors.ECODE_STATE)
        if op.disk_template not in C.DTS_IMPLEMENTED:
            raise errors.OpPrereqError(f"Disk template '{op.disk_template}' is not "
                                       "implemented yet", errors.ECODE_INVAL)
        if op.disk_template not in C.DTS_FILEBASED and (op.file_storage_dir or
                                                        op.file_driver):
            raise errors.OpPrereqError("File storage directory and driver are only valid "
                                       "for file-based disk templates", errors.ECODE_INVAL)

    # -- prerequisites ------------------------------------------------------------
    def check_prereq(self) -> None:
        op = self.op
        cfg = self.cfg
        cluster = cfg.get_cluster()
        if cfg.get_instance_by_name(op.instance_name) is not None:
            raise errors.OpPrereqError(f"Instance '{op.instance_name}' is already in the "
                                       "cluster", errors.ECODE_EXISTS)
        self._check_template(cluster)
        pnode = self.check_node_online(op.pnode_uuid)
        self.check_node_not_drained(pnode.uuid)
        self.check_node_vm_capable(pnode.uuid)
        self.pnode = pnode

        # Hypervisor and its parameters.
        hv_name = op.hypervisor or cluster.default_hypervisor
        if hv_name not in cluster.enabled_hypervisors:
            raise errors.OpPrereqError(
                f"Selected hypervisor ({hv_name}) not enabled in the cluster "
                f"({', '.join(cluster.enabled_hypervisors)})", errors.ECODE_STATE)
        get_hypervisor_class(hv_name)
        self.hv_name = hv_name
        self.hv_full = cluster.get_hv_defaults(hv_name, op.os_type, op.hvparams)
        check_hv_syntax(hv_name, self.hv_full)

        # Backend parameters.
        self.be_full = cluster.simple_fill_be(self.beparams)
        check_minmem_maxmem(self.be_full)
        self.os_full = cluster.simple_fill_os(op.os_type, op.osparams)

        # NICs; addresses from networks are chosen here, reserved in exec.
        self.nics = []
        self.addresses = AddressPlan(owner=f"create:{op.instance_name}",
                                     check=op.conflicts_check)
        for idx, spec in enumerate(self.nic_specs):
            nicparams, ip, net_uuid = dict(spec["nicparams"]), spec["ip"], None
            mac_prefix = None
            if spec["network"] is not None:
                net = cfg.expand_network(spec["network"])
                nicparams, net_uuid = group_netparams(self, net, pnode.uuid), net.uuid
                mac_prefix = net.mac_prefix
                self.log_info(f"NIC/{idx} inherits netparams {list(nicparams.values())}")
                ip = self.addresses.choose(self, net, ip, f"NIC {idx}")
            elif op.conflicts_check:
                check_conflicting_ip(self, ip, pnode.uuid)
            filled = cluster.simple_fill_nic(nicparams)
            check_nic_filled(filled, ip, f"NIC {idx}")
            mac = spec["mac"]
            if mac in (C.VALUE_AUTO, C.VALUE_GENERATE):
                mac = generate_free_mac(self, mac_prefix)
            else:
                check_mac_free(self, mac)
            self.nics.append(NIC(mac=mac, ip=ip, name=spec["name"], network=net_uuid,
                                 nicparams=nicparams))
        macs = [n.mac for n in self.nics]
        if len(set(macs)) != len(macs):
            raise errors.OpPrereqError("Duplicate MAC addresses given for the NICs",
                                       errors.ECODE_NOTUNIQUE)

        # Disks (pure computation: nothing exists on the nodes yet).
        self.disks = generate_disk_template(
            cfg, op.disk_template, op.instance_name, pnode.uuid, op.disks,
            op.file_storage_dir, op.file_driver)

        # Instance policy of the primary node's group (Ganeti checks it here too).
        check_instance_spec(
            self, node_group(cfg, pnode.uuid),
            [spec_from_params(self.be_full, C.BE_MAXMEM, [d.size for d in self.disks],
                              len(self.nics))],
            [op.disk_template] * len(self.disks), op.ignore_ipolicy)

        if op.name_check and op.ip_check and self.check_ip:
            check_ip_not_in_use(self, self.check_ip, op.instance_name)

        # Node-side checks: OS and its parameters, hypervisor parameters, memory.
        check_os_params(self, [pnode.uuid], op.os_type, self.os_full, op.force_variant)
        check_hv_params(self, [pnode.uuid], hv_name, self.hv_full)
        if op.start:
            check_node_free_memory(self, pnode.uuid, f"creating instance {op.instance_name}",
                                   int(self.be_full[C.BE_MAXMEM]), hv_name, self.hv_full)

        hvparams = dict(op.hvparams)
        beparams = {k: v for k, v in self.beparams.items() if v is not None}
        osparams = dict(op.osparams)
        if op.identify_defaults:
            # Ganeti's _RevertToDefaults: keep only values that differ.
            hvparams = _strip_defaults(hvparams, cluster.get_hv_defaults(hv_name, op.os_type))
            beparams = _strip_defaults(beparams, cluster.simple_fill_be({}))
            osparams = _strip_defaults(osparams, cluster.simple_fill_os(op.os_type, {}))
            nic_defaults = cluster.simple_fill_nic({})
            for nic in self.nics:
                nic.nicparams = _strip_defaults(nic.nicparams, nic_defaults)
        self.instance = Instance(
            uuid=new_uuid(), name=op.instance_name, primary_node=pnode.uuid,
            os=op.os_type, hypervisor=hv_name, hvparams=hvparams, beparams=beparams,
            osparams=osparams, admin_state=C.ADMINST_DOWN,
            nics=self.nics, disks=self.disks, disk_template=op.disk_template,
            tags=list(dict.fromkeys(op.tags)), creating_job=self.op_ctx.job_id)

    # -- hooks ----------------------------------------------------------------------
    def build_hooks_env(self) -> dict[str, Any]:
        current = self.cfg.get_instance(self.instance.uuid) or self.instance
        status = C.ADMINST_UP if self.op.start else C.ADMINST_DOWN
        env = build_instance_hook_env(self.cfg, current, {"status": status})
        env.update({"ADD_MODE": self.op.mode, "SRC_NODE": self.op.src_node or "",
                    "SRC_PATH": self.op.src_path or "", "SRC_IMAGES": ""})
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        master = self.master_uuid()
        nodes = [master] + [n for n in self.instance.all_nodes if n != master]
        return nodes, list(nodes)

    # -- execution ------------------------------------------------------------------
    def exec(self, feedback_fn: FeedbackFn) -> list[str]:
        op = self.op
        inst = self.instance
        if inst.hypervisor in HTS_REQ_PORT:
            inst.network_port = self.cfg.allocate_port()
        owner = f"create:{inst.uuid}"
        try:
            reserve_macs(self, [n.mac for n in inst.nics], owner)
            moved = self.addresses.reserve(self)
            for nic in inst.nics:
                if nic.network and nic.ip in moved:
                    self.log_warning(f"IP {nic.ip} was taken meanwhile, using "
                                     f"{moved[nic.ip]}")
                    nic.ip = moved[nic.ip]
            commit_with_addresses(self, self.addresses, add=[inst])
        except errors.CorralError:
            self.cfg.release_reservations(owner)
            release_port(self, inst.network_port)
            raise
        finally:
            self.addresses.release(self)
        state = {"disks": False, "started": False}
        step = "adding the instance to the configuration"
        try:
            step = "creating the disks"
            feedback_fn(f"* creating instance disks on {node_name(self, inst.primary_node)}")
            if inst.disks:
                create_disks(self, inst)
                state["disks"] = True
            if not op.no_install:
                step = self.INSTALL_STEP
                self._install(inst)
            if op.start:
                step = "starting the instance"
                feedback_fn("* starting instance...")
                current = self.cfg.get_instance(inst.uuid) or inst
                ok, _ = assemble_disks(self, current)
                if not ok:
                    raise errors.OpExecError("Could not activate the disks")
                state["started"] = True
                current = self.cfg.get_instance(inst.uuid) or current
                res = self.rpc.call_one("instance_start", current.primary_node,
                                        [self.rpc.encode_instance(current), False,
                                         reason_trail(self)])
                res.raise_for("Could not start instance")
            step = "completing the configuration entry"
            self._complete(inst.uuid)
        except errors.CorralError as err:
            problems = self._cleanup(inst, state)
            if problems:
                raise errors.OpExecError(
                    f"Creation of instance {inst.name} failed while {step}: {err}; "
                    f"cleanup was incomplete: {'; '.join(problems)}") from None
            raise errors.OpExecError(
                f"Creation of instance {inst.name} failed while {step}: {err}; everything "
                "was cleaned up (no disks, no configuration entry left)") from None
        return [node_name(self, u) for u in inst.all_nodes]

    def _complete(self, instance_uuid: str) -> None:
        """Clear the ``creating_job`` mark; admin state ``up`` if started.

        One commit, so a master dying before it leaves a marked instance
        (removed at start-up) and one dying after it a complete one.
        """
        def change(current: Instance) -> None:
            current.creating_job = None
            if self.op.start:
                current.admin_state = C.ADMINST_UP
                current.admin_state_source = C.ADMIN_SOURCE
        update_instance(self, instance_uuid, change)

    def _install(self, inst: Instance) -> None:
        self.log_info("* running the instance OS create scripts...")
        current = self.cfg.get_instance(inst.uuid) or inst
        if current.disks:
            ok, _ = assemble_disks(self, current)
            if not ok:
                raise errors.OpExecError("Could not activate the disks for the OS install")
            current = self.cfg.get_instance(inst.uuid) or current
        try:
            res = self.rpc.call_one("instance_os_add", current.primary_node,
                                    [self.rpc.encode_instance(current), False,
                                     self.op.debug_level or 0])
            res.raise_for(f"Could not add os for instance {inst.name} on node "
                          f"{node_name(self, current.primary_node)}")
        finally:
            if not self.op.start and current.disks:
                shutdown_disks(self, self.cfg.get_instance(inst.uuid) or current)

    def _cleanup(self, inst: Instance, state: dict[str, bool]) -> list[str]:
        """Undo a partial creation; returns what could not be undone."""
        problems: list[str] = []
        current = self.cfg.get_instance(inst.uuid) or inst
        if state["started"]:
            res = self.rpc.call_one("instance_shutdown", current.primary_node,
                                    [self.rpc.encode_instance(current), 0, reason_trail(self)])
            if res.fail_msg:
                problems.append(f"could not stop the instance: {res.fail_msg}")
        if current.disks:
            if not shutdown_disks(self, current):
                problems.append("could not shut down all disks")
            current = self.cfg.get_instance(inst.uuid) or current
        if state["disks"]:
            # (A failing create_disks already removed what it had made.)
            problems.extend(remove_disks(self, current))
        if not problems:
            try:
                remove_instance_config(self, current)
                release_port(self, current.network_port)
            except errors.CorralError as err:
                problems.append(f"could not remove the instance from the configuration: "
                                f"{err}")
        else:
            problems.append("the instance was left in the configuration so that its "
                            "remains can be removed with 'gnt-instance remove'")
        return problems
