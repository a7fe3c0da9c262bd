"""Failover and live migration of instances: LUInstanceFailover, LUInstanceMigrate.

Mirrors ``ganeti.cmdlib.instance_migration``: both LUs run the tasklet
:class:`TLMigrateInstance`, which decides between failover (stop on the
primary, start on the target), live/non-live migration (the hypervisor moves
the running guest) and cleanup of an interrupted migration (find where the
instance really runs and make the config say so). The node RPC sequence is
the one of ``node-daemon.md`` §5; what a disk template allows is in
:mod:`corral.storage.capabilities`.

Corral has no DRBD and no instance allocator yet, so the new primary is
always ``target_node``. The node RPC sequence of a migration (and its
abort and cleanup) is :class:`~corral.cmdlib.instance_migration_run.MigrationRun`.
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, LogicalUnit, Tasklet
from corral.cmdlib.instance_migration_run import MigrationRun, move_instance_to
from corral.cmdlib.instance_policy import check_target_node_ipolicy
from corral.cmdlib.instance_storage import shutdown_disks, start_instance_disks
from corral.cmdlib.instance_utils import (
    check_node_free_memory,
    node_name,
    reason_trail,
    set_disks_active,
)
from corral.hooks import build_instance_hook_env
from corral.hypervisor import get_hypervisor_class
from corral.objects import Instance
from corral.storage.capabilities import (
    ACTION_FAILOVER,
    ACTION_MIGRATE,
    check_disk_mirror_supported,
    check_template_allows,
    needs_disk_mirror,
)


def check_iallocator_or_node(lu: LogicalUnit, iallocator: str | None,
                             node_uuid: str | None, node_field: str) -> None:
    """Ganeti's ``CheckIAllocatorOrNode`` for Corral, which has no allocator.

    A node is required; an allocator (given or the cluster default) is
    refused as not implemented. Raises OpPrereqError ``ECODE_INVAL``.
    """
    if iallocator:
        raise errors.OpPrereqError(
            f"Instance allocators are not implemented in Corral (iallocator "
            f"'{iallocator}' given); please give a {node_field} instead", errors.ECODE_INVAL)
    if node_uuid:
        return
    default = lu.cfg.get_cluster().default_iallocator
    if default:
        raise errors.OpPrereqError(
            f"No {node_field} given and the cluster's default iallocator '{default}' cannot "
            f"be used: instance allocators are not implemented in Corral; please give a "
            f"{node_field}", errors.ECODE_INVAL)
    raise errors.OpPrereqError(
        f"No iallocator or node given and no cluster-wide default iallocator found; "
        f"please specify a {node_field}", errors.ECODE_INVAL)


def check_live_and_mode(op: Any) -> None:
    """``live`` and ``mode`` exclude each other (ECODE_INVAL)."""
    if op.live is not None and op.mode is not None:
        raise errors.OpPrereqError("Only one of the 'live' and 'mode' parameters are "
                                   "accepted", errors.ECODE_INVAL)


# -- locking (Ganeti's _ExpandNamesForMigration / _DeclareLocksForMigration) --------
def _expand_names_for_migration(lu: LogicalUnit) -> None:
    lu.expand_and_lock_instance()
    op = lu.op
    if op.target_node or op.target_node_uuid:
        node = lu.cfg.expand_node(op.target_node or op.target_node_uuid)
        op.target_node, op.target_node_uuid = node.name, node.uuid
    assert lu.needed_locks is not None
    lu.needed_locks[C.LEVEL_NODE] = []
    lu.needed_locks[C.LEVEL_NODE_RES] = []


def _declare_locks_for_migration(lu: LogicalUnit, level: str) -> None:
    assert lu.needed_locks is not None
    if level == C.LEVEL_NODE:
        inst = lu.get_locked_instance()
        nodes = [inst.primary_node]
        if lu.op.target_node_uuid and lu.op.target_node_uuid not in nodes:
            nodes.append(lu.op.target_node_uuid)
        lu.needed_locks[C.LEVEL_NODE] = nodes
    elif level == C.LEVEL_NODE_RES:
        lu.needed_locks[C.LEVEL_NODE_RES] = list(lu.needed_locks.get(C.LEVEL_NODE) or [])


def _online(lu: LogicalUnit, node_uuids: list[str]) -> list[str]:
    """``node_uuids`` without duplicates and without offline nodes, so hooks
    never try to reach a node marked offline."""
    out: list[str] = []
    for uuid in node_uuids:
        node = lu.cfg.get_node(uuid)
        if node is not None and not node.offline and uuid not in out:
            out.append(uuid)
    return out


class TLMigrateInstance(Tasklet):
    """Failover, migration or migration cleanup of one instance.

    Mirrors Ganeti's ``TLMigrateInstance``. ``failover`` starts as the
    LU asks and may be switched on by ``fallback`` (migrate's
    ``allow_failover``) when the instance is down or cannot migrate.
    After :meth:`check_prereq`: ``instance``, ``source_uuid``,
    ``target_uuid``, ``live``.
    """

    def __init__(self, lu: LogicalUnit, *, cleanup: bool, failover: bool, fallback: bool,
                 ignore_consistency: bool, allow_runtime_changes: bool,
                 shutdown_timeout: int, ignore_hvversions: bool) -> None:
        super().__init__(lu)
        self.cleanup = cleanup
        self.failover = failover
        self.fallback = fallback
        self.ignore_consistency = ignore_consistency
        self.allow_runtime_changes = allow_runtime_changes
        self.shutdown_timeout = shutdown_timeout
        self.ignore_hvversions = ignore_hvversions
        self.live = False
        self.current_mem: int | None = None
        self.tgt_free_mem: int | None = None
        self.instance: Instance | None = None
        self.source_uuid = ""
        self.target_uuid = ""

    # -- prerequisites -------------------------------------------------------------
    def _templates(self, inst: Instance) -> list[str]:
        return sorted({d.dev_type for d in inst.disks} or {inst.disk_template})

    def _check_templates(self, inst: Instance) -> None:
        if self.failover:
            check_template_allows(self._templates(inst), ACTION_FAILOVER)
            return
        check_template_allows(self._templates(inst), ACTION_MIGRATE)
        for template in self._templates(inst):
            check_disk_mirror_supported(template, inst.hypervisor)

    def check_prereq(self) -> None:
        lu, cfg, op = self.lu, self.cfg, self.lu.op
        inst = lu.get_locked_instance()
        self.instance = inst
        self.source_uuid = inst.primary_node
        cluster = cfg.get_cluster()
        if self.failover and self.cleanup:
            raise errors.OpPrereqError("Cleanup is only possible for migrations, not for "
                                       "failovers", errors.ECODE_INVAL)
        if (not self.cleanup and inst.admin_state != C.ADMINST_UP and not self.failover
                and self.fallback):
            lu.log_info("Instance is marked down or offline, fallback allowed, switching "
                        "to failover")
            self.failover = True
        self._check_templates(inst)

        check_iallocator_or_node(lu, op.iallocator, op.target_node_uuid, "target node")
        target = self.target_uuid = op.target_node_uuid
        if target == inst.primary_node:
            raise errors.OpPrereqError(
                f"Cannot migrate instance {inst.name} to its primary "
                f"({node_name(lu, inst.primary_node)})", errors.ECODE_STATE)
        lu.check_node_online(target)
        lu.check_node_vm_capable(target)
        if not self.cleanup:
            lu.check_node_not_drained(target)
            check_target_node_ipolicy(lu, inst, target, op.ignore_ipolicy)

        be = cluster.fill_be(inst)
        hvp = cluster.fill_hv(inst)
        pnode = cfg.get_node(inst.primary_node)
        assert pnode is not None
        if not self.cleanup and not self.failover and be.get(C.BE_ALWAYS_FAILOVER):
            lu.log_info("Instance configured to always failover; fallback to failover")
            self.failover = True
            self._check_templates(inst)
        if not self.cleanup and not self.failover:
            reason = self._why_not_migratable(inst, pnode.name, pnode.offline, hvp)
            if reason is not None:
                if not self.fallback:
                    raise errors.OpPrereqError(f"Can't migrate, please use failover: {reason}",
                                               errors.ECODE_STATE)
                lu.log_info(f"Can't migrate ({reason}), fallback to failover")
                self.failover = True
                self._check_templates(inst)
        if self.cleanup and pnode.offline:
            raise errors.OpPrereqError(f"Cannot clean up the migration of {inst.name}: its "
                                       f"primary node {pnode.name} is offline",
                                       errors.ECODE_STATE)
        if self.failover and pnode.offline and not self.ignore_consistency:
            raise errors.OpPrereqError(
                f"Primary node {pnode.name} of instance {inst.name} is offline; a failover "
                "cannot shut the instance down there, so it needs ignore_consistency "
                "(--ignore-consistency): make sure the instance is really stopped first",
                errors.ECODE_STATE)

        if not self.cleanup and (not self.failover or inst.admin_state == C.ADMINST_UP):
            self.tgt_free_mem = check_node_free_memory(
                lu, target, f"migrating instance {inst.name}", int(be[C.BE_MINMEM]),
                inst.hypervisor, hvp)
        else:
            lu.log_info("Not checking memory on the target node as the instance will not "
                        "be started")

        if self.failover:
            self.live = False
        else:
            mode = op.mode
            if op.live is not None:
                mode = C.HT_MIGRATION_LIVE if op.live else C.HT_MIGRATION_NONLIVE
            elif mode is None:
                mode = hvp.get("migration_mode", C.HT_MIGRATION_LIVE)
            self.live = mode == C.HT_MIGRATION_LIVE

    def _why_not_migratable(self, inst: Instance, pname: str, offline: bool,
                            hvp: dict[str, Any]) -> str | None:
        """Why the instance cannot be live-migrated now, or None (Ganeti's
        ``instance_migratable`` check). Sets ``current_mem`` (MiB)."""
        if not get_hypervisor_class(inst.hypervisor).CAN_MIGRATE:
            return f"hypervisor {inst.hypervisor} cannot migrate instances"
        if offline:
            return f"primary node {pname} is offline"
        res = self.rpc.call_one("instance_info", inst.primary_node,
                                [inst.name, inst.hypervisor, hvp])
        if res.fail_msg:
            return f"cannot get the state of instance {inst.name} on node {pname}: " \
                   f"{res.fail_msg}"
        if not res.payload:
            return f"instance {inst.name} is not running on node {pname}"
        self.current_mem = int(res.payload.get("memory") or 0)
        return None

    # -- execution -----------------------------------------------------------------
    def exec(self, feedback_fn: FeedbackFn) -> None:
        assert self.instance is not None
        if self.failover:
            feedback_fn(f"Failover instance {self.instance.name}")
            self._exec_failover(feedback_fn)
            return
        feedback_fn(f"Migrating instance {self.instance.name}")
        run = MigrationRun(self.lu, self.instance, self.source_uuid, self.target_uuid,
                           live=self.live, allow_runtime_changes=self.allow_runtime_changes,
                           ignore_hvversions=self.ignore_hvversions,
                           current_mem=self.current_mem, tgt_free_mem=self.tgt_free_mem,
                           disk_mirror=any(needs_disk_mirror(t)
                                           for t in self._templates(self.instance)))
        if self.cleanup:
            run.cleanup(feedback_fn)
        else:
            run.migrate(feedback_fn)

    def _exec_failover(self, feedback_fn: FeedbackFn) -> None:
        """Ganeti's ``_ExecFailover``: stop on the source, move, start on the target."""
        lu, inst = self.lu, self.instance
        assert inst is not None
        src, tgt = self.source_uuid, self.target_uuid
        src_name, tgt_name = node_name(lu, src), node_name(lu, tgt)
        pnode = self.cfg.get_node(src)
        src_offline = pnode is None or pnode.offline
        if src_offline:
            feedback_fn(f"* primary node {src_name} is offline: not contacting it, "
                        "assuming the instance is stopped there")
        else:
            feedback_fn("* shutting down instance on source node")
            res = self.rpc.call_one("instance_shutdown", src,
                                    [self.rpc.encode_instance(inst), self.shutdown_timeout,
                                     reason_trail(lu)])
            if res.fail_msg:
                if not self.ignore_consistency:
                    raise errors.OpExecError(f"Could not shutdown instance {inst.name} on "
                                             f"node {src_name}: {res.fail_msg}")
                lu.log_warning(f"Could not shutdown instance {inst.name} on node {src_name}, "
                               f"proceeding anyway; please make sure node {src_name} is "
                               f"down; error details: {res.fail_msg}")
            feedback_fn("* deactivating the instance's disks on source node")
            if not shutdown_disks(lu, inst, ignore_primary=self.ignore_consistency):
                raise errors.OpExecError("Can't shut down the instance's disks")
        if src_offline:
            set_disks_active(lu, inst.uuid, False)

        inst = move_instance_to(lu, inst.uuid, src, tgt)
        self.instance = inst
        if inst.admin_state != C.ADMINST_UP:
            feedback_fn(f"* instance is marked {inst.admin_state}, not starting it on "
                        f"{tgt_name}")
            return
        feedback_fn(f"* activating the instance's disks on target node {tgt_name}")
        start_instance_disks(lu, inst)
        inst = self.cfg.get_instance(inst.uuid) or inst
        feedback_fn(f"* starting the instance on the target node {tgt_name}")
        res = self.rpc.call_one("instance_start", tgt,
                                [self.rpc.encode_instance(inst), False, reason_trail(lu)])
        if res.fail_msg:
            shutdown_disks(lu, inst)
            raise errors.OpExecError(f"Could not start instance {inst.name} on node "
                                     f"{tgt_name}: {res.fail_msg}")


class _MigrationLU(LogicalUnit):
    """Locks and hook-node logic shared by failover and migrate."""

    HTYPE = C.HTYPE_INSTANCE
    REQ_BGL = False

    def declare_locks(self, level: str) -> None:
        _declare_locks_for_migration(self, level)

    def _old_new_env(self) -> dict[str, Any]:
        m = self.migrater
        env = {"OLD_PRIMARY": node_name(self, m.source_uuid),
               "NEW_PRIMARY": node_name(self, m.target_uuid),
               # Ganeti sets these for DRBD; externally mirrored disks have none.
               "OLD_SECONDARY": "", "NEW_SECONDARY": ""}
        inst = self.cfg.get_instance(m.instance.uuid) if m.instance else None
        env.update(build_instance_hook_env(self.cfg, inst or m.instance))
        return env


class LUInstanceFailover(_MigrationLU):
    """Stop an instance on its primary and start it on ``target_node``."""

    HPATH = "instance-failover"

    def expand_names(self) -> None:
        _expand_names_for_migration(self)
        op = self.op
        self.migrater = TLMigrateInstance(
            self, cleanup=op.cleanup, failover=True, fallback=False,
            ignore_consistency=op.ignore_consistency, allow_runtime_changes=True,
            shutdown_timeout=op.shutdown_timeout, ignore_hvversions=True)
        self.tasklets = [self.migrater]

    def build_hooks_env(self) -> dict[str, Any]:
        env = self._old_new_env()
        env.update({"IGNORE_CONSISTENCY": self.op.ignore_consistency,
                    "SHUTDOWN_TIMEOUT": self.op.shutdown_timeout,
                    "FAILOVER_CLEANUP": self.op.cleanup})
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        m = self.migrater
        assert m.instance is not None
        nodes = [self.master_uuid(), *m.instance.secondary_nodes, m.target_uuid]
        return _online(self, nodes), _online(self, [*nodes, m.source_uuid])


class LUInstanceMigrate(_MigrationLU):
    """Move a running instance to ``target_node`` (live or not), or clean up."""

    HPATH = "instance-migrate"

    def check_arguments(self) -> None:
        check_live_and_mode(self.op)

    def expand_names(self) -> None:
        _expand_names_for_migration(self)
        op = self.op
        self.migrater = TLMigrateInstance(
            self, cleanup=op.cleanup, failover=False, fallback=op.allow_failover,
            ignore_consistency=False, allow_runtime_changes=op.allow_runtime_changes,
            shutdown_timeout=C.DEFAULT_SHUTDOWN_TIMEOUT,
            ignore_hvversions=op.ignore_hvversions)
        self.tasklets = [self.migrater]

    def build_hooks_env(self) -> dict[str, Any]:
        env = self._old_new_env()
        env.update({"MIGRATE_LIVE": self.migrater.live,
                    "MIGRATE_CLEANUP": self.op.cleanup,
                    "ALLOW_RUNTIME_CHANGES": self.op.allow_runtime_changes})
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        m = self.migrater
        assert m.instance is not None
        nodes = _online(self, [self.master_uuid(), m.source_uuid,
                               *m.instance.secondary_nodes, m.target_uuid])
        return nodes, list(nodes)
