"""The node side sequence of one live migration, its abort and its cleanup.

Mirrors Ganeti's ``TLMigrateInstance._ExecMigration``, ``_AbortMigration``
and ``_ExecCleanup`` (node-daemon.md §5): migration info from the source,
disks activated on the target, ``accept_instance`` there, ``instance_migrate``
on the source, status polled with progress in the job log, then both ends
finalized and the config changed. Instances on local disks (``file`` under
KVM) additionally get their disks created on the target and mirrored over
NBD before the memory moves (:mod:`corral.hypervisor.kvm.mirror`); the
source's disks are removed only after success. Used by
:class:`~corral.cmdlib.instance_migration.TLMigrateInstance`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from corral import errors
from corral.cmdlib.base import FeedbackFn, LogicalUnit
from corral.cmdlib.instance_storage import (
    assemble_disks,
    create_disks,
    remove_disks,
    shutdown_disks,
)
from corral.cmdlib.instance_utils import node_name, update_instance
from corral.hypervisor import get_hypervisor_class
from corral.objects import Disk, Instance, MigrationStatus

# Migration statuses of MigrationStatus (Ganeti's HV_MIGRATION_*, KVM's setup).
_MIGRATION_ACTIVE = frozenset({"active", "postcopy-active", "setup"})
_MIGRATION_COMPLETED = "completed"
MIGRATION_POLL_INTERVAL = 0.5       # seconds between status polls, once under way
# The first polls come sooner, so that a migration of a small guest (a few
# hundred ms) is not kept waiting for a full interval.
_FIRST_POLLS = (0.02, 0.03, 0.05, 0.1, 0.2, 0.3)


def _poll_delays() -> Iterator[float]:
    """Seconds to sleep between polls: short at first, then the interval."""
    yield from _FIRST_POLLS
    while True:
        yield MIGRATION_POLL_INTERVAL


_MIB = 1024 * 1024


def _move_disk_nodes(disk: Disk, src: str, tgt: str) -> None:
    nodes: list[str] = []
    for uuid in disk.nodes:
        uuid = tgt if uuid == src else uuid
        if uuid not in nodes:
            nodes.append(uuid)
    disk.nodes = nodes
    for child in disk.children:
        _move_disk_nodes(child, src, tgt)


def instance_moved(inst: Instance, src: str, tgt: str) -> Instance:
    """A copy of ``inst`` as it is once ``tgt`` replaced ``src`` as its
    primary (disks' nodes too); not committed."""
    copy = inst.model_copy(deep=True)
    copy.primary_node = tgt
    for disk in copy.disks:
        _move_disk_nodes(disk, src, tgt)
    return copy


def move_instance_to(lu: LogicalUnit, instance_uuid: str, src: str, tgt: str) -> Instance:
    """Commit ``tgt`` as the instance's primary node, disks' nodes included
    (Ganeti's ``SetInstancePrimaryNode``); returns the committed copy."""
    def change(inst: Instance) -> None:
        inst.primary_node = tgt
        for disk in inst.disks:
            _move_disk_nodes(disk, src, tgt)
    return update_instance(lu, instance_uuid, change)


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / _MIB:.1f} MiB"


class MigrationRun:
    """One migration of a running instance from ``source`` to ``target``, or
    the cleanup after an interrupted one.

    Mirrors Ganeti's ``_ExecMigration``, ``_AbortMigration`` and
    ``_ExecCleanup``. Any failure before the memory transfer completed
    leaves the instance running on the source with the config unchanged,
    nothing running on the target and the target's disks shut down, then
    raises :class:`errors.OpExecError`.
    """

    def __init__(self, lu: LogicalUnit, instance: Instance, source: str, target: str, *,
                 live: bool, allow_runtime_changes: bool = True,
                 ignore_hvversions: bool = False, current_mem: int | None = None,
                 tgt_free_mem: int | None = None, disk_mirror: bool = False,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.lu, self.cfg, self.rpc = lu, lu.cfg, lu.rpc
        self.instance = instance
        self.source, self.target = source, target
        self.src_name, self.tgt_name = node_name(lu, source), node_name(lu, target)
        self.live = live
        self.allow_runtime_changes = allow_runtime_changes
        self.ignore_hvversions = ignore_hvversions
        self.current_mem, self.tgt_free_mem = current_mem, tgt_free_mem
        self.disk_mirror = disk_mirror
        self.sleep = sleep
        self.migration_info = ""
        self.target_view = instance_moved(instance, source, target)
        self.target_disks_created = False
        self.mirror_started = False

    def _enc(self, inst: Instance | None = None) -> dict[str, Any]:
        return self.rpc.encode_instance(inst or self.instance)

    def _call(self, procedure: str, node: str, args: list[Any]) -> Any:
        return self.rpc.call_one(procedure, node, args)

    # -- migration -----------------------------------------------------------------
    def migrate(self, fb: FeedbackFn) -> None:
        inst, lu = self.instance, self.lu
        self._check_hv_versions(fb)
        self._balloon(fb)
        res = self._call("migration_info", self.source, [self._enc()])
        if res.fail_msg:
            raise errors.OpExecError(f"Failed fetching source migration information from "
                                     f"{self.src_name}: {res.fail_msg}")
        self.migration_info = res.payload or ""
        target_ip = self.cfg.get_node(self.target).primary_ip
        view = self.target_view
        if self.disk_mirror:
            fb(f"* creating the instance's disks on target node {self.tgt_name}")
            create_disks(lu, view)
            self.target_disks_created = True
        fb(f"* activating the instance's disks on target node {self.tgt_name}")
        ok, _ = assemble_disks(lu, view, disks=view.disks)
        if not ok:
            self._remove_target_disks()
            raise errors.OpExecError(f"Could not activate the disks of instance {inst.name} "
                                     f"on target node {self.tgt_name}")
        fb(f"* preparing {self.tgt_name} to accept the instance")
        res = self._call("accept_instance", self.target,
                         [self._enc(), self.migration_info, target_ip])
        if res.fail_msg:
            self._fail(fb, "Could not pre-migrate instance", res.fail_msg)
        if self.disk_mirror:
            self._mirror_disks(fb, target_ip)
        fb(f"* migrating instance to {self.tgt_name} ({'live' if self.live else 'non-live'})")
        res = self._call("instance_migrate", self.source,
                         [self.cfg.get_cluster().cluster_name, self._enc(), target_ip,
                          self.live])
        if res.fail_msg:
            self._fail(fb, "Could not migrate instance", res.fail_msg)
        self._wait_for_transfer(fb)
        if self.disk_mirror:
            self._end_mirror(success=True)

        res = self._call("instance_finalize_migration_src", self.source,
                         [self._enc(), True, self.live])
        res.raise_for(f"Instance migration succeeded, but finalization failed on the "
                      f"source node {self.src_name}; fix the node, then run migrate with "
                      "cleanup")
        moved = move_instance_to(lu, inst.uuid, self.source, self.target)
        res = self._call("instance_finalize_migration_dst", self.target,
                         [self._enc(moved), self.migration_info, True])
        res.raise_for(f"Instance migration succeeded, but finalization failed on the "
                      f"target node {self.tgt_name}")
        fb(f"* deactivating the instance's disks on source node {self.src_name}")
        shutdown_disks(lu, inst, disks=inst.disks)
        if self.disk_mirror:
            fb(f"* removing the instance's disks on source node {self.src_name}")
            remove_disks(lu, inst)
        fb("* done")

    def _mirror_disks(self, fb: FeedbackFn, target_ip: str) -> None:
        """Copy the local disks to the target (NBD export there, mirror jobs
        here) and wait until every job is ready; aborts on failure."""
        fb(f"* mirroring the instance's disks to {self.tgt_name}")
        res = self._call("instance_mirror_export", self.target, [self._enc(), target_ip])
        if res.fail_msg:
            self._fail(fb, "Could not export the target disks of instance", res.fail_msg)
        export = res.payload or {}
        self.mirror_started = True
        res = self._call("instance_mirror_start", self.source,
                         [self._enc(), export.get("host"), export.get("port"),
                          export.get("exports")])
        if res.fail_msg:
            self._fail(fb, "Could not mirror the disks of instance", res.fail_msg)
        start, last = time.monotonic(), -1
        delays = _poll_delays()
        while True:
            res = self._call("instance_mirror_status", self.source, [self._enc()])
            jobs = res.payload if not res.fail_msg and isinstance(res.payload, list) else None
            bad = [j for j in jobs or [] if j.get("error") or j.get("status") in
                   ("concluded", "missing", "aborting", "null")]
            if jobs is None or bad:
                detail = res.fail_msg or "; ".join(
                    f"{j.get('drive')}: {j.get('error') or j.get('status')}" for j in bad)
                self._fail(fb, "Mirroring the disks failed for instance", detail)
            assert jobs is not None
            done, total = sum(j["offset"] for j in jobs), sum(j["len"] for j in jobs)
            if all(j.get("ready") for j in jobs):
                fb(f"* disks mirrored in {time.monotonic() - start:.2f} s ({_mib(total)}), "
                   "keeping them in sync")
                return
            if total and done != last:
                fb(f"* disk mirror progress: {100.0 * done / total:.1f} % ({_mib(done)} of "
                   f"{_mib(total)})")
                last = done
            self.sleep(next(delays))

    def _end_mirror(self, success: bool) -> None:
        """Stop the mirror jobs on the source, then the exports on the target;
        failures are warnings (the migration's outcome does not depend on them)."""
        for proc, node, args in (("instance_mirror_finish", self.source,
                                  [self._enc(), success]),
                                 ("instance_mirror_unexport", self.target, [self._enc()])):
            res = self._call(proc, node, args)
            if res.fail_msg:
                self.lu.log_warning(f"Ending the disk mirror failed on node "
                                    f"{node_name(self.lu, node)}: {res.fail_msg}")

    def _remove_target_disks(self) -> None:
        view = self.target_view
        shutdown_disks(self.lu, view, disks=view.disks)
        if self.target_disks_created:
            remove_disks(self.lu, view)

    def _wait_for_transfer(self, fb: FeedbackFn) -> None:
        """Poll the source until the memory transfer ends; progress and, at
        the end, downtime go to the job log. Aborts on failure."""
        fb("* starting memory transfer")
        start = time.monotonic()
        last_reported = -1
        delays = _poll_delays()
        while True:
            res = self._call("instance_get_migration_status", self.source, [self._enc()])
            status: MigrationStatus | None = None
            if not res.fail_msg:
                try:
                    status = MigrationStatus.model_validate(res.payload)
                except ValueError:
                    status = None
            if status is None or status.status not in _MIGRATION_ACTIVE | {
                    _MIGRATION_COMPLETED}:
                detail = res.fail_msg or (f"the hypervisor reports status '{status.status}'"
                                          if status else f"invalid status {res.payload!r}")
                self._fail(fb, "Could not migrate instance", detail)
            assert status is not None
            if status.status == _MIGRATION_COMPLETED:
                line = f"* memory transfer complete in {time.monotonic() - start:.2f} s"
                if status.total_ram:
                    line += f": {_mib(status.transferred_ram)} transferred, " \
                            f"{_mib(status.total_ram)} of guest memory"
                if status.downtime_ms is not None:
                    line += f", downtime {status.downtime_ms} ms"
                fb(line)
                return
            if status.total_ram and status.transferred_ram != last_reported:
                pct = min(100.0, 100.0 * status.transferred_ram / status.total_ram)
                fb(f"* memory transfer progress: {pct:.1f} % ({_mib(status.transferred_ram)} "
                   f"of {_mib(status.total_ram)})")
                last_reported = status.transferred_ram
            self.sleep(next(delays))

    def _fail(self, fb: FeedbackFn, what: str, detail: str) -> None:
        fb("Migration failed, aborting")
        self.abort()
        raise errors.OpExecError(f"{what} {self.instance.name}: {detail}")

    def abort(self) -> None:
        """Ganeti's ``_AbortMigration``: the target drops the instance, the
        source keeps it running; then the target's disks are shut down (and
        removed, if this migration created them). Failures are warnings
        (each step must still be tried)."""
        if self.mirror_started:
            # Before the target goes away, so no guest write waits for it.
            self._end_mirror(success=False)
        for proc, node, args in (
                ("instance_finalize_migration_dst", self.target,
                 [self._enc(), self.migration_info, False]),
                ("instance_finalize_migration_src", self.source,
                 [self._enc(), False, self.live])):
            res = self._call(proc, node, args)
            if res.fail_msg:
                self.lu.log_warning(f"Aborting the migration failed on node "
                                    f"{node_name(self.lu, node)}: {res.fail_msg}")
        self._remove_target_disks()

    def _check_hv_versions(self, fb: FeedbackFn) -> None:
        inst = self.instance
        hvp = self.cfg.get_cluster().fill_hv(inst)
        results = self.rpc.call("node_info", [self.source, self.target],
                                [[], [[inst.hypervisor, hvp]]])
        versions = []
        for uuid in (self.source, self.target):
            res = results[uuid]
            res.raise_for(f"Unable to retrieve node information from node "
                          f"{node_name(self.lu, uuid)}")
            hv_list = (res.payload or {}).get("hv") or [{}]
            versions.append(hv_list[0].get("hv_version") if hv_list else None)
        src_v, dst_v = versions
        if src_v is None or dst_v is None or list(src_v) == list(dst_v):
            return
        fb(f"* warning: hypervisor version mismatch between source ({src_v}) and target "
           f"({dst_v}) node")
        if get_hypervisor_class(inst.hypervisor).versions_safe_for_migration(src_v, dst_v):
            fb(f"  migrating from hypervisor version {src_v} to {dst_v} should be safe")
        elif self.ignore_hvversions:
            fb("  continuing anyway (told to ignore version mismatch)")
        else:
            raise errors.OpExecError(f"Unsupported migration between hypervisor versions "
                                     f"({src_v} to {dst_v})")

    def _balloon(self, fb: FeedbackFn) -> None:
        cur, free = self.current_mem, self.tgt_free_mem
        if cur is None or free is None or cur <= free:
            return
        if not self.allow_runtime_changes:
            raise errors.OpExecError(
                f"Memory ballooning not allowed and not enough free memory to fit instance "
                f"{self.instance.name} on target node {self.tgt_name} (have {free} MiB, "
                f"need {cur} MiB)")
        fb(f"* setting instance memory to {free} MiB")
        res = self._call("instance_balloon_memory", self.source, [self._enc(), free])
        res.raise_for("Cannot modify instance runtime memory")

    # -- cleanup -------------------------------------------------------------------
    def cleanup(self, fb: FeedbackFn) -> None:
        """Ganeti's ``_ExecCleanup``: make config and nodes agree on where
        the instance runs after an interrupted migration."""
        inst, lu = self.instance, self.lu
        fb("* checking where the instance actually runs (if this hangs, the hypervisor "
           "might be in a bad state)")
        hvp = self.cfg.get_cluster().fill_hv(inst)
        results = self.rpc.call("instance_info", [self.source, self.target],
                                [inst.name, inst.hypervisor, hvp])
        for uuid, res in results.items():
            res.raise_for(f"Can't contact node {node_name(lu, uuid)}")
        on_src = bool(results[self.source].payload)
        on_tgt = bool(results[self.target].payload)
        if on_src and on_tgt:
            raise errors.OpExecError(
                "Instance seems to be running on two nodes, or the hypervisor is confused; "
                "you will have to ensure manually that it runs only on one and restart this "
                "operation")
        if not (on_src or on_tgt):
            raise errors.OpExecError(
                "Instance does not seem to be running at all; in this case it's safer to "
                "repair by running 'gnt-instance stop' to ensure disk shutdown, and then "
                "restarting it")
        res = self._call("migration_info", self.source, [self._enc()])
        self.migration_info = "" if res.fail_msg else (res.payload or "")
        if on_tgt:
            fb(f"* instance running on target node ({self.tgt_name}), updating config")
            moved = move_instance_to(lu, inst.uuid, self.source, self.target)
            steps = [("instance_finalize_migration_src", self.source,
                      [self._enc(), True, self.live])]
            if self.migration_info:
                steps.append(("instance_finalize_migration_dst", self.target,
                              [self._enc(moved), self.migration_info, True]))
            if self.disk_mirror:
                steps.insert(0, ("instance_mirror_unexport", self.target, [self._enc(moved)]))
            demoted, demoted_name = inst, self.src_name
        else:
            fb(f"* instance confirmed to be running on its primary node ({self.src_name})")
            moved = inst
            steps = [("instance_finalize_migration_dst", self.target,
                      [self._enc(), self.migration_info, False]),
                     ("instance_finalize_migration_src", self.source,
                      [self._enc(), False, self.live])]
            if self.disk_mirror:
                steps.insert(0, ("instance_mirror_finish", self.source, [self._enc(), False]))
            demoted, demoted_name = self.target_view, self.tgt_name
        for proc, node, args in steps:
            res = self._call(proc, node, args)
            if res.fail_msg:
                lu.log_warning(f"{proc} on node {node_name(lu, node)} failed: {res.fail_msg}")
        shutdown_disks(lu, demoted, disks=demoted.disks)
        if self.disk_mirror:
            # The copy on the node the instance does not run on is stale.
            fb(f"* removing the instance's disks on node {demoted_name}")
            remove_disks(lu, demoted)
        ok, _ = assemble_disks(lu, moved, disks=moved.disks)
        if not ok:
            lu.log_warning(f"Could not re-activate all disks of {inst.name} on its primary")
        fb("* done")
