"""OP_INSTANCE_MOVE: copy a stopped instance's disks to another node and switch its primary.

Mirrors ``ganeti.cmdlib.instance.LUInstanceMove``: only disk templates that
can be copied (``DTS_COPYABLE`` and implemented by Corral: ``file``); the
instance is shut down on its primary, new disks are created on the target
node (same sizes, new file names in the instance's storage directory), each
disk is copied raw -> raw by the import/export daemons
(:func:`corral.impexp.master.transfer_disks`, compression per opcode),
then the configuration is switched to the target node, the source disks
are removed and the instance is started on the target if it was marked up.
On a failed copy the target disks are removed (recorded as leftovers when
the target does not answer, see :mod:`corral.cmdlib.leftovers`) and the
instance stays on (and is restarted on) the source node.
"""

from __future__ import annotations

import posixpath
from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import LOCKS_APPEND, LOCKS_REPLACE, FeedbackFn, LogicalUnit
from corral.cmdlib.instance_policy import check_target_node_ipolicy
from corral.cmdlib.instance_storage import (
    assemble_disks,
    create_disks,
    shutdown_disks,
    start_instance_disks,
)
from corral.cmdlib.instance_utils import (
    check_node_free_memory,
    node_name,
    reason_trail,
    update_instance,
)
from corral.cmdlib.leftovers import remove_disks_or_record
from corral.hooks import build_instance_hook_env
from corral.impexp import compression
from corral.impexp.master import transfer_disks
from corral.objects import Disk, Instance, new_uuid

# Templates that can be moved by copying their data and that Corral implements.
DTS_MOVABLE = C.DTS_COPYABLE & C.DTS_IMPLEMENTED


def target_disks(instance: Instance, target_uuid: str) -> list[Disk]:
    """Copies of the instance's disks for ``target_uuid``: same uuid, size and
    name, a new file name in the same (virtual) storage directory."""
    out = []
    for idx, disk in enumerate(instance.disks):
        new = disk.model_copy(deep=True)
        driver, vpath = disk.logical_id
        directory = posixpath.dirname(vpath)
        new.logical_id = [driver, f"{directory}/{new_uuid()}.{disk.dev_type}.disk{idx}"]
        new.nodes = [target_uuid]
        out.append(new)
    return out


class LUInstanceMove(LogicalUnit):
    """Move an instance by copying its disks to another node."""

    HPATH = "instance-move"
    HTYPE = C.HTYPE_INSTANCE
    REQ_BGL = False

    def check_arguments(self) -> None:
        compression.check_known(self.op.compress)

    def expand_names(self) -> None:
        self.expand_and_lock_instance()
        target = self.cfg.expand_node(self.op.target_node_uuid or self.op.target_node)
        self.op.target_node_uuid, self.op.target_node = target.uuid, target.name
        assert self.needed_locks is not None
        self.needed_locks[C.LEVEL_NODE] = [target.uuid]
        self.needed_locks[C.LEVEL_NODE_RES] = []
        self.recalculate_locks[C.LEVEL_NODE] = LOCKS_APPEND
        self.recalculate_locks[C.LEVEL_NODE_RES] = LOCKS_REPLACE

    def declare_locks(self, level: str) -> None:
        assert self.needed_locks is not None
        if level == C.LEVEL_NODE and level in self.recalculate_locks:
            self.lock_instances_nodes(C.LEVEL_NODE, primary_only=True)
        elif level == C.LEVEL_NODE_RES and level in self.recalculate_locks:
            self.needed_locks[C.LEVEL_NODE_RES] = list(self.needed_locks[C.LEVEL_NODE] or [])
            del self.recalculate_locks[C.LEVEL_NODE_RES]

    def check_prereq(self) -> None:
        self.instance = inst = self.get_locked_instance()
        target_uuid = self.op.target_node_uuid
        assert target_uuid is not None
        if inst.primary_node not in self.owned_locks(C.LEVEL_NODE):
            raise errors.OpPrereqError(f"Instance {inst.name}'s primary node changed while "
                                       "waiting for locks, retry", errors.ECODE_STATE)
        if inst.disk_template not in DTS_MOVABLE:
            raise errors.OpPrereqError(f"Disk template {inst.disk_template} not suitable for "
                                       "copying", errors.ECODE_STATE)
        for idx, disk in enumerate(inst.disks):
            if disk.dev_type not in DTS_MOVABLE:
                raise errors.OpPrereqError(f"Instance disk {idx} has disk type "
                                           f"{disk.dev_type} and is not suitable for copying",
                                           errors.ECODE_STATE)
        target = self.check_node_online(target_uuid)
        if target.uuid == inst.primary_node:
            raise errors.OpPrereqError(f"Instance {inst.name} is already on the node "
                                       f"{target.name}", errors.ECODE_STATE)
        self.check_node_not_drained(target.uuid)
        self.check_node_vm_capable(target.uuid)
        check_target_node_ipolicy(self, inst, target.uuid, self.op.ignore_ipolicy)
        self.check_node_online(inst.primary_node,
                               f"Cannot move instance {inst.name}: its primary node "
                               f"{node_name(self, inst.primary_node)} is offline")
        cluster = self.cfg.get_cluster()
        if self.op.compress != compression.NONE and \
                self.op.compress not in cluster.compression_tools:
            raise errors.OpPrereqError(
                f"Compression tool not allowed, tools allowed are "
                f"[{', '.join(cluster.compression_tools)}]", errors.ECODE_INVAL)
        if inst.admin_state == C.ADMINST_UP:
            be = cluster.fill_be(inst)
            check_node_free_memory(self, target.uuid, f"failing over instance {inst.name}",
                                   int(be[C.BE_MAXMEM]), inst.hypervisor, cluster.fill_hv(inst))
        else:
            self.log_info("Not checking memory on the secondary node as instance will not "
                          "be started")
        self.target = target

    def build_hooks_env(self) -> dict[str, Any]:
        inst = self.cfg.get_instance(self.instance.uuid) or self.instance
        env = build_instance_hook_env(self.cfg, inst)
        env["TARGET_NODE"] = self.op.target_node
        env["SHUTDOWN_TIMEOUT"] = self.op.shutdown_timeout
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = list(dict.fromkeys([self.master_uuid(), self.instance.primary_node,
                                    self.op.target_node_uuid]))
        return nodes, list(nodes)

    # -- exec -------------------------------------------------------------------------
    def _restart_on_source(self, instance: Instance, feedback_fn: FeedbackFn) -> None:
        """Start the instance again where it was (after a failed move), if it was up."""
        if instance.admin_state != C.ADMINST_UP:
            return
        src = node_name(self, instance.primary_node)
        feedback_fn(f"Restarting instance {instance.name} on source node {src}")
        try:
            start_instance_disks(self, instance, force=True)
        except errors.OpExecError as err:
            self.log_warning(f"Could not restart instance {instance.name} on {src}: {err}")
            return
        current = self.cfg.get_instance(instance.uuid) or instance
        res = self.rpc.call_one("instance_start", current.primary_node,
                                [self.rpc.encode_instance(current), False, reason_trail(self)])
        if res.fail_msg:
            shutdown_disks(self, current)
            self.log_warning(f"Could not restart instance {instance.name} on {src}: "
                             f"{res.fail_msg}")

    def exec(self, feedback_fn: FeedbackFn) -> None:
        inst = self.instance
        src_uuid, tgt_uuid = inst.primary_node, self.target.uuid
        src_name, tgt_name = node_name(self, src_uuid), self.target.name

        feedback_fn(f"Shutting down instance {inst.name} on source node {src_name}")
        res = self.rpc.call_one("instance_shutdown", src_uuid,
                                [self.rpc.encode_instance(inst), self.op.shutdown_timeout,
                                 reason_trail(self)])
        if self.op.ignore_consistency:
            res.warn(f"Could not shutdown instance {inst.name} on node {src_name}, "
                     "proceeding anyway", self.log_warning)
        else:
            res.raise_for(f"Could not shutdown instance {inst.name} on node {src_name}")
        shutdown_disks(self, inst, ignore_primary=self.op.ignore_consistency)
        inst = self.cfg.get_instance(inst.uuid) or inst

        new_disks = target_disks(inst, tgt_uuid)
        on_target = inst.model_copy(deep=True)
        on_target.primary_node = tgt_uuid
        on_target.disks = new_disks
        feedback_fn(f"Creating {len(new_disks)} disk(s) on target node {tgt_name}")
        try:
            create_disks(self, on_target)
        except errors.OpExecError:
            self.log_warning("Device creation failed")
            self._restart_on_source(inst, feedback_fn)
            raise

        pairs = [(["raw", old.to_dict()], ["raw", new.to_dict()])
                 for old, new in zip(inst.disks, new_disks, strict=True)]
        copied = False
        try:
            results = transfer_disks(self, src_uuid, tgt_uuid, inst, pairs, self.op.compress,
                                     feedback_fn, stop_on_failure=True)
            copied = all(results)
        finally:
            if not copied:
                self.log_warning("Some disks failed to copy, aborting")
                # A target node that does not answer keeps its copies as recorded
                # leftovers, removed later (cmdlib.leftovers).
                remove_disks_or_record(self, on_target)
                self._restart_on_source(inst, feedback_fn)
        if not copied:
            raise errors.OpExecError("Errors during disk copy: failed to transfer the "
                                     "instance's data, the instance stays on node "
                                     f"{src_name}")

        def switch(i: Instance) -> None:
            i.primary_node = tgt_uuid
            i.disks = [d.model_copy(deep=True) for d in new_disks]
            i.disks_active = False

        moved = update_instance(self, inst.uuid, switch)
        feedback_fn(f"Instance {inst.name} now has primary node {tgt_name}; removing the "
                    f"disks on the original node {src_name}")
        remove_disks_or_record(self, inst)

        if moved.admin_state == C.ADMINST_UP:
            feedback_fn(f"Starting instance {moved.name} on node {tgt_name}")
            ok, _ = assemble_disks(self, moved)
            moved = self.cfg.get_instance(moved.uuid) or moved
            if not ok:
                shutdown_disks(self, moved)
                raise errors.OpExecError("Can't activate the instance's disks")
            res = self.rpc.call_one("instance_start", tgt_uuid,
                                    [self.rpc.encode_instance(moved), False,
                                     reason_trail(self)])
            if res.fail_msg:
                shutdown_disks(self, moved)
                raise errors.OpExecError(f"Could not start instance {moved.name} on node "
                                         f"{tgt_name}: {res.fail_msg}")
