"""Logical units that operate on an existing instance: start, stop, reboot,
reinstall, rename and remove.

Mirrors ``ganeti.cmdlib.instance_operation`` (start/stop/reboot/reinstall)
and ``ganeti.cmdlib.instance`` (rename/remove). Each LU locks its instance by
name and the instance's nodes, checks state in ``check_prereq`` and talks
to the primary node through RPC in ``exec``.
"""

from __future__ import annotations

import posixpath
from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, LogicalUnit
from corral.cmdlib.instance_network import remove_instance_config
from corral.cmdlib.instance_storage import (
    instance_storage_dir,
    remove_disks,
    shutdown_disks,
    start_instance_disks,
    storage_dir_of,
)
from corral.cmdlib.instance_utils import (
    INSTANCE_DOWN,
    INSTANCE_NOT_RUNNING,
    INSTANCE_ONLINE,
    check_hv_params,
    check_hv_syntax,
    check_instance_state,
    check_ip_not_in_use,
    check_minmem_maxmem,
    check_node_free_memory,
    check_os_params,
    declare_instance_node_locks,
    instance_hook_nodes,
    instance_runtime_info,
    lock_instance_and_nodes,
    node_name,
    normalize_beparams,
    reason_trail,
    release_port,
    resolve_hostname,
    set_admin_state,
    update_instance,
)
from corral.hooks import build_instance_hook_env
from corral.objects import Instance
from corral.paths import safe_component


class _InstanceLU(LogicalUnit):
    """Common parts: lock the instance and its nodes, hooks on master + nodes."""

    HTYPE = C.HTYPE_INSTANCE
    REQ_BGL = False
    NODE_RES = False

    def expand_names(self) -> None:
        lock_instance_and_nodes(self, node_res=self.NODE_RES)

    def declare_locks(self, level: str) -> None:
        declare_instance_node_locks(self, level)

    def build_hooks_env(self) -> dict[str, Any]:
        inst = self.cfg.get_instance(self.instance.uuid) or self.instance
        return build_instance_hook_env(self.cfg, inst)

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return instance_hook_nodes(self, self.instance)

    def _primary_offline(self) -> bool:
        """True when the primary is offline and ``ignore_offline_nodes`` allows it."""
        pnode = self.cfg.get_node(self.instance.primary_node)
        if pnode is not None and pnode.offline:
            if getattr(self.op, "ignore_offline_nodes", False):
                self.log_info("Ignoring offline primary node")
                return True
            self.check_node_online(pnode.uuid)
        return False


class LUInstanceStartup(_InstanceLU):
    """Start an instance (optionally with one-off hv/be parameters)."""

    HPATH = "instance-start"
    NODE_RES = True

    def check_arguments(self) -> None:
        self.op.beparams = normalize_beparams(self.op.beparams)

    def check_prereq(self) -> None:
        self.instance = inst = self.get_locked_instance()
        cluster = self.cfg.get_cluster()
        if self.op.hvparams:
            filled = cluster.fill_hv(inst)
            filled.update(self.op.hvparams)
            check_hv_syntax(inst.hypervisor, filled)
            check_hv_params(self, inst.all_nodes, inst.hypervisor, filled)
        if self.op.beparams:
            be = cluster.fill_be(inst)
            be.update(self.op.beparams)
            check_minmem_maxmem(be)
        check_instance_state(self, inst, INSTANCE_ONLINE, "cannot start")
        self.primary_offline = self._primary_offline()
        self.running = False
        if not self.primary_offline:
            self.running = instance_runtime_info(self, inst) is not None
            if not self.running:
                be = cluster.fill_be(inst)
                be.update(self.op.beparams)
                check_node_free_memory(self, inst.primary_node,
                                       f"starting instance {inst.name}",
                                       int(be[C.BE_MINMEM]), inst.hypervisor,
                                       cluster.fill_hv(inst))

    def build_hooks_env(self) -> dict[str, Any]:
        env = super().build_hooks_env()
        env["FORCE"] = self.op.force
        return env

    def exec(self, feedback_fn: FeedbackFn) -> None:
        inst = self.instance
        if self.primary_offline or self.running:
            self._remember()
            if self.primary_offline:
                self.log_info("Primary node offline, marked instance as started")
            else:
                feedback_fn(f"Instance {inst.name} is already running")
            return
        start_instance_disks(self, inst, self.op.force)
        inst = self.cfg.get_instance(inst.uuid) or inst
        res = self.rpc.call_one(
            "instance_start", inst.primary_node,
            [self.rpc.encode_instance(inst, self.op.hvparams, self.op.beparams),
             self.op.startup_paused, reason_trail(self)])
        # As Ganeti, the instance is marked up even if starting it failed
        # (the watcher retries); recorded after the start so that a master
        # dying meanwhile leaves config and node in agreement.
        self._remember()
        if res.fail_msg:
            shutdown_disks(self, self.cfg.get_instance(inst.uuid) or inst)
            res.raise_for(f"Could not start instance '{inst.name}'")

    def _remember(self) -> None:
        if not self.op.no_remember:
            set_admin_state(self, self.instance.uuid, C.ADMINST_UP)


class LUInstanceShutdown(_InstanceLU):
    """Stop an instance and shut its disks down."""

    HPATH = "instance-stop"

    def check_prereq(self) -> None:
        self.instance = inst = self.get_locked_instance()
        if self.op.admin_state_source == C.USER_SOURCE:
            raise errors.OpPrereqError("Shutdowns initiated by the user are not "
                                       "implemented yet", errors.ECODE_INVAL)
        check_instance_state(self, inst, INSTANCE_ONLINE, "cannot shutdown")
        self.primary_offline = self._primary_offline()
        self.running = (not self.primary_offline and
                        instance_runtime_info(self, inst) is not None)

    def build_hooks_env(self) -> dict[str, Any]:
        env = super().build_hooks_env()
        env["TIMEOUT"] = self.op.timeout
        return env

    def exec(self, feedback_fn: FeedbackFn) -> None:
        inst = self.instance
        if self.running:
            res = self.rpc.call_one("instance_shutdown", inst.primary_node,
                                    [self.rpc.encode_instance(inst), self.op.timeout,
                                     reason_trail(self)])
            if res.fail_msg:
                self.log_warning(f"Could not shutdown instance: {res.fail_msg}")
        elif not self.primary_offline:
            self.log_warning(f"Instance {inst.name} was not running")
        # Recorded after the stop (same end state as Ganeti, which marks it
        # down first and only warns if the stop fails).
        if not self.op.no_remember:
            inst = set_admin_state(self, inst.uuid, C.ADMINST_DOWN)
        if self.primary_offline:
            self.log_info("Primary node offline, marked instance as stopped")
            return
        shutdown_disks(self, self.cfg.get_instance(inst.uuid) or inst)


class LUInstanceReboot(_InstanceLU):
    """Reboot: soft/hard on the node, full (or a stopped instance) as stop+start."""

    HPATH = "instance-reboot"
    NODE_RES = True

    def check_prereq(self) -> None:
        self.instance = inst = self.get_locked_instance()
        check_instance_state(self, inst, INSTANCE_ONLINE, "cannot reboot")
        self.check_node_online(inst.primary_node)

    def build_hooks_env(self) -> dict[str, Any]:
        env = super().build_hooks_env()
        env.update({"IGNORE_SECONDARIES": self.op.ignore_secondaries,
                    "REBOOT_TYPE": self.op.reboot_type,
                    "SHUTDOWN_TIMEOUT": self.op.shutdown_timeout})
        return env

    def exec(self, feedback_fn: FeedbackFn) -> None:
        inst = self.instance
        reason = reason_trail(self)
        running = instance_runtime_info(self, inst, prereq=False) is not None
        pnode = inst.primary_node
        if running and self.op.reboot_type in (C.INSTANCE_REBOOT_SOFT,
                                               C.INSTANCE_REBOOT_HARD):
            res = self.rpc.call_one("instance_reboot", pnode,
                                    [self.rpc.encode_instance(inst), self.op.reboot_type,
                                     self.op.shutdown_timeout, reason])
            res.raise_for("Could not reboot instance")
        else:
            if running:
                res = self.rpc.call_one("instance_shutdown", pnode,
                                        [self.rpc.encode_instance(inst),
                                         self.op.shutdown_timeout, reason])
                res.raise_for("Could not shutdown instance for full reboot")
                shutdown_disks(self, inst)
            else:
                self.log_info(f"Instance {inst.name} was already stopped, starting now")
            start_instance_disks(self, self.cfg.get_instance(inst.uuid) or inst,
                                 self.op.ignore_secondaries)
            inst = self.cfg.get_instance(inst.uuid) or inst
            res = self.rpc.call_one("instance_start", pnode,
                                    [self.rpc.encode_instance(inst), False, reason])
            if res.fail_msg:
                shutdown_disks(self, inst)
                raise errors.OpExecError(f"Could not start instance for full reboot: "
                                         f"{res.fail_msg}")
        set_admin_state(self, inst.uuid, C.ADMINST_UP)


class LUInstanceReinstall(_InstanceLU):
    """Re-run the OS create script on a stopped instance (optionally a new OS)."""

    HPATH = "instance-reinstall"

    def check_arguments(self) -> None:
        if self.op.osparams_private or self.op.osparams_secret:
            raise errors.OpPrereqError("Private and secret OS parameters are not "
                                       "implemented yet", errors.ECODE_INVAL)

    def check_prereq(self) -> None:
        self.instance = inst = self.get_locked_instance()
        self.check_node_online(inst.primary_node, "Instance primary node offline, cannot "
                                                  "reinstall")
        if inst.disk_template == C.DT_DISKLESS:
            raise errors.OpPrereqError(f"Instance '{inst.name}' has no disks",
                                       errors.ECODE_INVAL)
        check_instance_state(self, inst, INSTANCE_DOWN, "cannot reinstall")
        self.os_name = self.op.os_type or inst.os
        if not self.os_name:
            raise errors.OpPrereqError("No OS given and the instance has none",
                                       errors.ECODE_INVAL)
        cluster = self.cfg.get_cluster()
        custom = dict(inst.osparams) if self.op.osparams is None else dict(self.op.osparams)
        self.os_full = cluster.simple_fill_os(self.os_name, custom)
        check_os_params(self, [inst.primary_node], self.os_name, self.os_full,
                        self.op.force_variant)

    def exec(self, feedback_fn: FeedbackFn) -> None:
        inst = self.instance
        if self.op.os_type is not None and self.op.os_type != inst.os:
            feedback_fn(f"Changing OS scripts to '{self.op.os_type}'...")

            def change(i: Instance) -> None:
                i.os = self.op.os_type
            inst = update_instance(self, inst.uuid, change)
        start_instance_disks(self, inst)
        inst = self.cfg.get_instance(inst.uuid) or inst
        try:
            feedback_fn("Running the instance OS create scripts...")
            res = self.rpc.call_one("instance_os_add", inst.primary_node,
                                    [self.rpc.encode_instance(inst, osp=self.os_full), True,
                                     self.op.debug_level or 0])
            res.raise_for(f"Could not install OS for instance {inst.name} on node "
                          f"{node_name(self, inst.primary_node)}")
        finally:
            shutdown_disks(self, self.cfg.get_instance(inst.uuid) or inst)


class LUInstanceRename(_InstanceLU):
    """Rename a stopped instance (storage directory, config, OS rename script)."""

    HPATH = "instance-rename"

    def check_arguments(self) -> None:
        if self.op.ip_check and not self.op.name_check:
            raise errors.OpPrereqError("IP address check requires a name check",
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        super().expand_names()
        self.check_ip: str | None = None
        if self.op.name_check:
            family = self.cfg.get_cluster().primary_ip_family
            self.op.new_name, self.check_ip = resolve_hostname(self.op.new_name, family)
        assert self.needed_locks is not None
        if self.op.new_name != self.op.instance_name:
            self.needed_locks[C.LEVEL_INSTANCE] = [self.op.instance_name, self.op.new_name]

    def check_prereq(self) -> None:
        self.instance = inst = self.get_locked_instance()
        self.check_node_online(inst.primary_node)
        check_instance_state(self, inst, INSTANCE_NOT_RUNNING, "cannot rename")
        new_name = self.op.new_name
        if new_name == inst.name or self.cfg.get_instance_by_name(new_name) is not None:
            raise errors.OpPrereqError(f"Instance '{new_name}' is already in the cluster",
                                       errors.ECODE_EXISTS)
        self.old_dir = storage_dir_of(inst)
        self.new_dir = None
        if self.old_dir:
            base = posixpath.dirname(self.old_dir)
            self.new_dir = posixpath.join(base, safe_component(new_name, "instance name"))
            # Validates the new name as a directory name below the same base.
            instance_storage_dir(self.cfg, inst.disk_template, new_name, None)
        if self.op.name_check and self.op.ip_check and self.check_ip:
            check_ip_not_in_use(self, self.check_ip, new_name)

    def build_hooks_env(self) -> dict[str, Any]:
        env = build_instance_hook_env(self.cfg, self.instance)
        env["INSTANCE_NEW_NAME"] = self.op.new_name
        return env

    def exec(self, feedback_fn: FeedbackFn) -> str:
        inst = self.instance
        old_name = inst.name
        pnode = inst.primary_node
        renamed_dir = False
        if self.old_dir and self.new_dir and self.old_dir != self.new_dir:
            res = self.rpc.call_one("file_storage_dir_rename", pnode,
                                    [self.old_dir, self.new_dir])
            res.raise_for(f"Could not rename on node {node_name(self, pnode)} directory "
                          f"'{self.old_dir}' to '{self.new_dir}'")
            renamed_dir = True

        def change(i: Instance) -> None:
            i.name = self.op.new_name
            if renamed_dir:
                for disk in i.disks:
                    disk.logical_id = [disk.logical_id[0], posixpath.join(
                        self.new_dir, posixpath.basename(disk.logical_id[1]))]
        try:
            renamed = update_instance(self, inst.uuid, change)
        except errors.CorralError as err:
            if renamed_dir:
                res = self.rpc.call_one("file_storage_dir_rename", pnode,
                                        [self.new_dir, self.old_dir])
                if res.fail_msg:
                    self.log_warning(f"Could not rename directory '{self.new_dir}' back: "
                                     f"{res.fail_msg}")
            raise errors.OpExecError(f"Could not rename the instance in the "
                                     f"configuration: {err}") from None
        self.instance = renamed
        start_instance_disks(self, renamed)
        renamed = self.cfg.get_instance(renamed.uuid) or renamed
        try:
            res = self.rpc.call_one("instance_run_rename", pnode,
                                    [self.rpc.encode_instance(renamed), old_name,
                                     self.op.debug_level or 0])
            if res.fail_msg:
                self.log_warning(f"Could not run OS rename script for instance "
                                 f"{renamed.name} on node {node_name(self, pnode)} (but the "
                                 f"instance has been renamed in Corral): {res.fail_msg}")
        finally:
            shutdown_disks(self, self.cfg.get_instance(renamed.uuid) or renamed)
        return renamed.name


class LUInstanceRemove(_InstanceLU):
    """Shut down and delete an instance and its disks (also a half-created one)."""

    HPATH = "instance-remove"
    NODE_RES = True
    ACCEPTS_INCOMPLETE = True

    def check_prereq(self) -> None:
        self.instance = self.get_locked_instance()

    def build_hooks_env(self) -> dict[str, Any]:
        env = build_instance_hook_env(self.cfg, self.instance)
        env["SHUTDOWN_TIMEOUT"] = self.op.shutdown_timeout
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        pre, post = instance_hook_nodes(self, self.instance)
        return [self.master_uuid()], post

    def exec(self, feedback_fn: FeedbackFn) -> None:
        inst = self.instance
        pnode = inst.primary_node
        ignore = self.op.ignore_failures
        feedback_fn(f"Shutting down instance {inst.name} on node {node_name(self, pnode)}")
        res = self.rpc.call_one("instance_shutdown", pnode,
                                [self.rpc.encode_instance(inst), self.op.shutdown_timeout,
                                 reason_trail(self)])
        if ignore:
            res.warn("Warning: can't shutdown instance", self.log_warning)
        else:
            res.raise_for(f"Could not shutdown instance {inst.name} on node "
                          f"{node_name(self, pnode)}")
        if inst.disks:
            if not shutdown_disks(self, inst, ignore_primary=ignore) and not ignore:
                raise errors.OpExecError("Can't shut down the instance's disks")
            inst = self.cfg.get_instance(inst.uuid) or inst
        feedback_fn(f"Removing block devices for instance {inst.name}")
        problems = remove_disks(self, inst)
        if problems and not ignore:
            raise errors.OpExecError(f"Can't remove instance's disks: {'; '.join(problems)}")
        if problems:
            feedback_fn("Warning: can't remove instance's disks")
        feedback_fn(f"Removing instance {inst.name} out of cluster config")
        remove_instance_config(self, self.cfg.get_instance(inst.uuid) or inst)
        release_port(self, inst.network_port)
