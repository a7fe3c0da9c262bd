"""Logical units of instance exports: OP_BACKUP_PREPARE, _EXPORT, _QUERY, _REMOVE.

Mirrors ``ganeti.cmdlib.backup`` and ``masterd.instance.ExportInstanceHelper``.

A **local** export shuts the instance down (unless ``shutdown`` is false,
which needs snapshots: none of the templates Corral implements has them, so
a running instance is then refused), streams every disk through the
instance's OS ``export`` script (raw when it has no OS) to the target node's
``<export_dir>/NAME.new/<disk uuid>`` (:func:`corral.impexp.master.transfer_disks`),
restarts the instance if it was running, and only when every disk arrived
has the target write ``config.ini`` and rename ``NAME.new`` to ``NAME``
(``finalize_export``). A failed or aborted transfer removes ``NAME.new``
(recorded as a leftover when the target does not answer, see
:mod:`corral.cmdlib.leftovers`), so no half-written export is ever listed. Older exports of the instance on
other nodes are removed afterwards (``_CleanupExports``).

A **remote** export (to another cluster) first needs OP_BACKUP_PREPARE
(an X509 key on the primary node and signed handshake values), then the
destination cluster's OP_INSTANCE_CREATE ``remote-import`` gives the
per-disk ``[host, port, magic, hmac, salt]`` that OP_BACKUP_EXPORT
``mode=remote`` sends to (see :mod:`corral.cmdlib.backup_remote`).
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral import errors, export_format
from corral.cmdlib.backup_remote import (
    RIE_CERT_VALIDITY,
    RIE_CONNECT_TIMEOUT,
    SideTransfers,
    TransferFailed,
    check_remote_export_disk_info,
    check_x509_key_name,
    compute_remote_export_handshake,
    compute_x509_key_name,
    generate_secret,
    load_signed_x509_certificate,
    read_cluster_domain_secret,
    sign_x509_certificate,
)
from corral.cmdlib.base import (
    ALL_SET,
    LOCKS_REPLACE,
    FeedbackFn,
    LogicalUnit,
    NoHooksLU,
    QueryLU,
)
from corral.cmdlib.instance_network import remove_instance_config
from corral.cmdlib.instance_storage import remove_disks, shutdown_disks, start_instance_disks
from corral.cmdlib.instance_utils import (
    instance_runtime_info,
    node_name,
    reason_trail,
    release_port,
)
from corral.cmdlib.leftovers import KIND_EXPORT, remove_or_record
from corral.hooks import build_instance_hook_env
from corral.impexp import compression
from corral.impexp.master import transfer_disks
from corral.objects import Disk, Instance


def source_io(instance: Instance, disk: Disk, idx: int) -> list[Any]:
    """Where an exported disk's data comes from: the OS export script, or the
    raw disk for an instance without OS (as Ganeti)."""
    if instance.os:
        return ["script", disk.to_dict(), idx]
    return ["raw", disk.to_dict()]


def check_compression(lu: LogicalUnit, compress: str) -> None:
    """``none`` or one of the cluster's ``compression_tools`` (ECODE_INVAL)."""
    compression.check_known(compress)
    tools = lu.cfg.get_cluster().compression_tools
    if compress != compression.NONE and compress not in tools:
        raise errors.OpPrereqError(f"Compression tool not allowed, tools allowed are "
                                   f"[{', '.join(tools)}]", errors.ECODE_INVAL)


def list_exports(lu: LogicalUnit, node_uuids: list[str]) -> dict[str, list[str] | None]:
    """``export_list`` on ``node_uuids``: node UUID -> names (None if it failed)."""
    out: dict[str, list[str] | None] = {}
    for uuid, res in lu.rpc.call("export_list", node_uuids, []).items():
        out[uuid] = None if res.fail_msg else list(res.payload or [])
    return out


class LUBackupPrepare(NoHooksLU):
    """Prepare a remote export: X509 key on the primary, signed handshake."""

    REQ_BGL = False

    def expand_names(self) -> None:
        self.expand_and_lock_instance()

    def check_prereq(self) -> None:
        self.instance = self.get_locked_instance()
        self.check_node_online(self.instance.primary_node)
        self.cds = None
        if self.op.mode == C.EXPORT_MODE_REMOTE:
            self.cds = read_cluster_domain_secret(self.paths)

    def exec(self, feedback_fn: FeedbackFn) -> dict[str, Any] | None:
        inst = self.instance
        if self.op.mode != C.EXPORT_MODE_REMOTE:
            return None
        assert self.cds is not None
        feedback_fn(f"Generating X509 certificate on {node_name(self, inst.primary_node)}")
        res = self.rpc.call_one("x509_cert_create", inst.primary_node, [RIE_CERT_VALIDITY])
        res.raise_for(f"Can't create X509 key and certificate on "
                      f"{node_name(self, inst.primary_node)}")
        name, cert_pem = res.payload
        return {
            "handshake": compute_remote_export_handshake(self.cds),
            "x509_key_name": compute_x509_key_name(self.cds, name),
            "x509_ca": sign_x509_certificate(cert_pem, self.cds, generate_secret(8)),
        }


class LUBackupExport(LogicalUnit):
    """Export an instance; returns ``[finalize_ok, [disk_ok, ...]]``."""

    HPATH = "instance-export"
    HTYPE = C.HTYPE_INSTANCE
    REQ_BGL = False

    def check_arguments(self) -> None:
        op = self.op
        compression.check_known(op.compress)
        if op.mode == C.EXPORT_MODE_REMOTE:
            if not op.x509_key_name:
                raise errors.OpPrereqError("Missing X509 key name for encryption",
                                           errors.ECODE_INVAL)
            if not op.destination_x509_ca:
                raise errors.OpPrereqError("Missing destination X509 CA", errors.ECODE_INVAL)
            if not isinstance(op.target_node, list):
                raise errors.OpPrereqError("A remote export needs the destination's disk "
                                           "information as target", errors.ECODE_INVAL)
        elif not isinstance(op.target_node, str) or not op.target_node:
            raise errors.OpPrereqError("A local export needs a target node name",
                                       errors.ECODE_INVAL)
        if op.zero_free_space:
            raise errors.OpPrereqError("Zeroing free space is not implemented yet",
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        op = self.op
        self.expand_and_lock_instance()
        assert self.needed_locks is not None
        if op.mode == C.EXPORT_MODE_LOCAL:
            target = self.cfg.expand_node(op.target_node_uuid or op.target_node)
            op.target_node, op.target_node_uuid = target.name, target.uuid
            # As Ganeti: all nodes, since older exports of the instance are
            # looked for and removed everywhere.
            self.needed_locks[C.LEVEL_NODE] = ALL_SET
        else:
            self.needed_locks[C.LEVEL_NODE] = []
            self.recalculate_locks[C.LEVEL_NODE] = LOCKS_REPLACE
        if op.remove_instance:
            self.needed_locks[C.LEVEL_NODE_RES] = []
            self.recalculate_locks[C.LEVEL_NODE_RES] = LOCKS_REPLACE

    def declare_locks(self, level: str) -> None:
        if level in (C.LEVEL_NODE, C.LEVEL_NODE_RES) and level in self.recalculate_locks:
            self.lock_instances_nodes(level)

    def check_prereq(self) -> None:
        op = self.op
        self.instance = inst = self.get_locked_instance()
        if inst.admin_state == C.ADMINST_OFFLINE:
            raise errors.OpPrereqError(f"Instance {inst.name} is offline, cannot export it",
                                       errors.ECODE_STATE)
        self.check_node_online(inst.primary_node)
        if op.remove_instance and inst.admin_state == C.ADMINST_UP and not op.shutdown:
            raise errors.OpPrereqError("Can not remove instance without shutting it down "
                                       "before", errors.ECODE_STATE)
        check_compression(self, op.compress)
        self.dst_node = None
        if op.mode == C.EXPORT_MODE_LOCAL:
            assert op.target_node_uuid is not None
            self.dst_node = self.check_node_online(op.target_node_uuid)
            self.check_node_not_drained(op.target_node_uuid)
        else:
            self._check_remote(inst)
        if not op.shutdown and inst.disks and \
                inst.disk_template not in C.DTS_SNAPSHOT_CAPABLE:
            running = inst.admin_state == C.ADMINST_UP or \
                instance_runtime_info(self, inst) is not None
            if running:
                raise errors.OpPrereqError(
                    f"Instance {inst.name} runs and its disk template '{inst.disk_template}' "
                    "has no snapshots: it can only be exported shut down (export without "
                    "--noshutdown)", errors.ECODE_STATE)
        elif not op.shutdown and inst.disks:
            raise errors.OpPrereqError(f"Snapshots of '{inst.disk_template}' disks are not "
                                       "implemented yet", errors.ECODE_STATE)

    def _check_remote(self, inst: Instance) -> None:
        op = self.op
        if len(op.target_node) != len(inst.disks):
            raise errors.OpPrereqError(
                f"Received destination information for {len(op.target_node)} disks, but "
                f"instance {inst.name} has {len(inst.disks)} disks", errors.ECODE_INVAL)
        cds = read_cluster_domain_secret(self.paths)
        self.x509_key = check_x509_key_name(cds, op.x509_key_name)
        self.dest_ca_pem = load_signed_x509_certificate(op.destination_x509_ca, cds,
                                                        "destination X509 CA")
        self.dest_disk_info = [check_remote_export_disk_info(cds, idx, info)
                               for idx, info in enumerate(op.target_node)]

    def build_hooks_env(self) -> dict[str, Any]:
        env = build_instance_hook_env(self.cfg, self.instance)
        env.update({"EXPORT_MODE": self.op.mode, "EXPORT_DO_SHUTDOWN": self.op.shutdown,
                    "SHUTDOWN_TIMEOUT": self.op.shutdown_timeout,
                    "REMOVE_INSTANCE": int(self.op.remove_instance)})
        if self.op.mode == C.EXPORT_MODE_LOCAL:
            env["EXPORT_NODE"] = self.op.target_node
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [self.master_uuid(), self.instance.primary_node]
        if self.op.mode == C.EXPORT_MODE_LOCAL and self.op.target_node_uuid:
            nodes.append(self.op.target_node_uuid)
        nodes = list(dict.fromkeys(nodes))
        return nodes, list(nodes)

    # -- exec -----------------------------------------------------------------------
    def exec(self, feedback_fn: FeedbackFn) -> list[Any]:
        op = self.op
        inst = self.instance
        src = inst.primary_node
        was_up = op.shutdown and inst.admin_state == C.ADMINST_UP
        self.restarted = False
        if op.shutdown:
            feedback_fn(f"Shutting down instance {inst.name}")
            res = self.rpc.call_one("instance_shutdown", src,
                                    [self.rpc.encode_instance(inst), op.shutdown_timeout,
                                     reason_trail(self)])
            res.raise_for(f"Could not shutdown instance {inst.name} on node "
                          f"{node_name(self, src)}")
        activate_disks = not inst.disks_active
        fin_ok, dresults = False, [False] * len(inst.disks)
        try:
            if activate_disks:
                feedback_fn(f"Activating disks for {inst.name}")
                start_instance_disks(self, inst)
            inst = self.cfg.get_instance(inst.uuid) or inst
            if op.mode == C.EXPORT_MODE_LOCAL:
                # Restarted as soon as the data is copied, unless it goes away.
                fin_ok, dresults = self._local_export(
                    inst, feedback_fn, restart=was_up and not op.remove_instance)
            else:
                dresults = self._remote_export(inst, feedback_fn)
                fin_ok = True
        finally:
            success = fin_ok and all(dresults)
            # A running instance runs again, unless it is removed after a success.
            if was_up and not (op.remove_instance and success):
                self._restart(inst)
            if activate_disks:
                feedback_fn(f"Deactivating disks for {inst.name}")
                shutdown_disks(self, self.cfg.get_instance(inst.uuid) or inst)
        if not success:
            failures = []
            if not fin_ok:
                failures.append("export finalization")
            if not all(dresults):
                bad = ", ".join(str(i) for i, ok in enumerate(dresults) if not ok)
                failures.append(f"disk export: disk(s) {bad}")
            raise errors.OpExecError(f"Export failed, errors in {', '.join(failures)}")
        if op.remove_instance:
            feedback_fn(f"Removing instance {inst.name}")
            self._remove_instance(self.cfg.get_instance(inst.uuid) or inst, feedback_fn)
        if op.mode == C.EXPORT_MODE_LOCAL:
            self._cleanup_exports(inst.name, feedback_fn)
        return [fin_ok, dresults]

    def _restart(self, inst: Instance) -> None:
        """Start the instance again after the export, once (errors are
        warnings; the disks stay active, as for any running instance)."""
        if self.restarted:
            return
        self.restarted = True
        current = self.cfg.get_instance(inst.uuid) or inst
        self.log_info(f"Starting instance {current.name}")
        if not current.disks_active:
            try:
                start_instance_disks(self, current)
            except errors.OpExecError as err:
                self.log_warning(f"Could not restart instance {current.name}: {err}")
                return
            current = self.cfg.get_instance(inst.uuid) or current
        res = self.rpc.call_one("instance_start", current.primary_node,
                                [self.rpc.encode_instance(current), False, reason_trail(self)])
        if res.fail_msg:
            self.log_warning(f"Could not restart instance {current.name}: {res.fail_msg}")

    def _local_export(self, inst: Instance, feedback_fn: FeedbackFn,
                      restart: bool) -> tuple[bool, list[bool]]:
        assert self.dst_node is not None
        dst = self.dst_node
        new_name = export_format.new_dir_name(inst.name)
        # Leftovers of an export that died with its master.
        self.rpc.call_one("export_remove", dst.uuid, [new_name])
        pairs = [(source_io(inst, disk, idx),
                  ["file", export_format.disk_file_path(inst.name, disk.uuid)])
                 for idx, disk in enumerate(inst.disks)]
        fin_ok = False
        dresults: list[bool] = []
        try:
            if pairs:
                dresults = transfer_disks(self, inst.primary_node, dst.uuid, inst, pairs,
                                          self.op.compress, feedback_fn,
                                          stop_on_failure=True)
            if restart:
                self._restart(inst)
            if all(dresults):
                feedback_fn(f"Finalizing export on {dst.name}")
                res = self.rpc.call_one("finalize_export", dst.uuid,
                                        [self.rpc.encode_instance(inst),
                                         [d.to_dict() for d in inst.disks]])
                fin_ok = not res.fail_msg
                if res.fail_msg:
                    self.log_warning(f"Could not finalize export for instance {inst.name} on "
                                     f"node {dst.name}: {res.fail_msg}")
            else:
                self.log_warning(f"Some disk exports have failed; removing the partial "
                                 f"export of {inst.name} from node {dst.name}")
        finally:
            if not fin_ok:
                # Recorded for a later job when the target does not answer.
                remove_or_record(self, dst.uuid, KIND_EXPORT, new_name)
        return fin_ok, dresults

    def _remote_export(self, inst: Instance, feedback_fn: FeedbackFn) -> list[bool]:
        pnode = self.cfg.get_node(inst.primary_node)
        assert pnode is not None
        encoded = self.rpc.encode_instance(inst)
        sides = SideTransfers(self, pnode, feedback_fn)
        try:
            for idx, (disk, (host, port, magic)) in enumerate(zip(inst.disks,
                                                                  self.dest_disk_info)):
                opts = {"key_name": self.x509_key, "ca_pem": self.dest_ca_pem,
                        "compress": self.op.compress, "magic": magic,
                        "expected_size": disk.size}
                sides.start_export(idx, opts, host, port, encoded, source_io(inst, disk, idx))
            return sides.wait(connect_timeout=float(RIE_CONNECT_TIMEOUT))
        except TransferFailed as err:
            self.log_warning(str(err))
            return [False] * len(inst.disks)
        finally:
            sides.finish()
            res = self.rpc.call_one("x509_cert_remove", pnode.uuid, [self.x509_key])
            if res.fail_msg:
                self.log_warning(f"Could not remove the X509 key {self.x509_key} from node "
                                 f"{pnode.name}: {res.fail_msg}")

    def _remove_instance(self, inst: Instance, feedback_fn: FeedbackFn) -> None:
        """Ganeti's ``RemoveInstance`` for an instance that is already stopped."""
        ignore = self.op.ignore_remove_failures
        if inst.disks and not shutdown_disks(self, inst, ignore_primary=ignore) and \
                not ignore:
            raise errors.OpExecError("Can't shut down the instance's disks")
        inst = self.cfg.get_instance(inst.uuid) or inst
        problems = remove_disks(self, inst)
        if problems and not ignore:
            raise errors.OpExecError(f"Can't remove instance's disks: {'; '.join(problems)}")
        remove_instance_config(self, inst)
        release_port(self, inst.network_port)

    def _cleanup_exports(self, name: str, feedback_fn: FeedbackFn) -> None:
        """Remove older exports of ``name`` from every node but the target."""
        assert self.dst_node is not None
        others = [u for u in self.cfg.get_nodes() if u != self.dst_node.uuid]
        if not others:
            return
        feedback_fn(f"Removing old exports for instance {name}")
        for uuid, names in list_exports(self, others).items():
            if names is None or name not in names:
                continue
            res = self.rpc.call_one("export_remove", uuid, [name])
            if res.fail_msg:
                self.log_warning(f"Could not remove older export for instance {name} on "
                                 f"node {node_name(self, uuid)}: {res.fail_msg}")


class LUBackupQuery(QueryLU):
    """Exports per node: ``{node_name: [export, ...] or False}``."""

    def expand_names(self) -> None:
        self.node_uuids = [self.cfg.expand_node(n).uuid for n in self.op.nodes] \
            if self.op.nodes else None
        self.needed_locks = {}
        if self.op.use_locking:
            self.needed_locks[C.LEVEL_NODE] = self.node_uuids or ALL_SET

    def exec(self, feedback_fn: FeedbackFn) -> dict[str, Any]:
        uuids = self.node_uuids or [n.uuid for n in self.cfg.get_node_list()]
        result: dict[str, Any] = {}
        for uuid, names in list_exports(self, uuids).items():
            result[node_name(self, uuid)] = False if names is None else names
        return result


class LUBackupRemove(NoHooksLU):
    """Remove every export of an instance (also of one no longer in the cluster)."""

    REQ_BGL = False

    def expand_names(self) -> None:
        # All nodes, not the instance: exports of removed instances can go too.
        self.needed_locks = {C.LEVEL_NODE: ALL_SET}

    def exec(self, feedback_fn: FeedbackFn) -> None:
        inst = self.cfg.get_instance_by_name(self.op.instance_name)
        name = inst.name if inst is not None else self.op.instance_name
        found = False
        for uuid, names in list_exports(self, sorted(self.owned_locks(C.LEVEL_NODE))).items():
            if names is None:
                self.log_warning(f"Failed to query node {node_name(self, uuid)} (continuing)")
                continue
            if name in names:
                found = True
                res = self.rpc.call_one("export_remove", uuid, [name])
                if res.fail_msg:
                    self.log_warning(f"Could not remove export for instance {name} on node "
                                     f"{node_name(self, uuid)}: {res.fail_msg}")
        if not found:
            feedback_fn(f"Export not found for instance {name}")
