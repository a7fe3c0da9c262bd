"""Master side of the disk checks: what each node should hold, and asking it.

Used by ``gnt-cluster verify`` (:class:`DiskVerifyMixin` of
``LUClusterVerifyGroup``) and ``verify-disks`` (``LUGroupVerifyDisks``).
Mirrors the volume part of Ganeti's ``LUClusterVerifyGroup``
(``_VerifyInstance``: ``CV_EINSTANCEMISSINGDISK``/``CV_EINSTANCEFAULTYDISK``;
``_VerifyOrphanVolumes``: ``CV_ENODEORPHANLV``) for file-based disks: the
master computes from the configuration the files each node should have and
sends them with the ``file_storage_verify`` RPC
(:mod:`corral.backend.storage_verify`).

Files of an operation in progress are not orphans: the group verify holds
every instance lock (shared, including names not yet in the configuration),
so it runs only when no job holds an instance lock exclusively (create,
move, grow-disk, ...). What a crashed job left behind is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral import constants as C
from corral.cmdlib.base import FeedbackFn, LogicalUnit
from corral.objects import Disk, Instance
from corral.paths import Paths
from corral.storage.base import DISK_MISSING, DISK_OK, MIB

if TYPE_CHECKING:
    from corral.rpc import RpcResult

# The instance-disks directory as a virtual path (same layout on every node).
INSTANCE_DISKS_VDIR = Paths(Path("/")).virtual(Paths(Path("/")).instance_disks_dir)


@dataclass
class DiskCheck:
    """One disk of one instance to check on one node."""

    instance: Instance
    idx: int
    disk: Disk

    @property
    def path(self) -> str:
        return file_path(self.disk) or self.disk.iv_name


@dataclass
class NodeDiskReport:
    """The ``file_storage_verify`` answer of one node, paired with the checks."""

    checks: list[DiskCheck] = field(default_factory=list)
    result: RpcResult | None = None

    @property
    def statuses(self) -> list[tuple[DiskCheck, dict[str, Any]]]:
        payload = (self.result.payload or {}) if self.result is not None else {}
        return list(zip(self.checks, payload.get("disks") or []))


def file_path(disk: Disk) -> str | None:
    """The virtual path of a file-based disk, else None."""
    if disk.dev_type in C.DTS_FILEBASED and len(disk.logical_id) == 2 \
            and isinstance(disk.logical_id[1], str):
        return disk.logical_id[1]
    return None


def disk_nodes(instance: Instance, disk: Disk) -> list[str]:
    """Nodes holding a copy of ``disk``: the primary, plus the disk's other
    nodes for internally mirrored templates (none implemented yet)."""
    if disk.dev_type in C.DTS_INT_MIRROR:
        return [instance.primary_node, *[n for n in disk.nodes if n != instance.primary_node]]
    return [instance.primary_node]


def storage_dirs(lu: LogicalUnit) -> list[str]:
    """The cluster's storage directories of the enabled file-based templates."""
    cluster = lu.cfg.get_cluster()
    dirs = []
    for template, vdir in ((C.DT_FILE, cluster.file_storage_dir),
                           (C.DT_SHARED_FILE, cluster.shared_file_storage_dir)):
        if vdir and template in cluster.enabled_disk_templates:
            dirs.append(vdir)
    return dirs


def expected_files(instances: list[Instance], node_uuid: str) -> list[str]:
    """Virtual paths of disk files that may exist on ``node_uuid``: its own
    file disks and every sharedfile disk (shared storage is seen by all)."""
    out = []
    for inst in instances:
        for disk in inst.disks:
            vpath = file_path(disk)
            if vpath and (disk.dev_type == C.DT_SHARED_FILE
                          or node_uuid in disk_nodes(inst, disk)):
                out.append(vpath)
    return sorted(out)


def expected_links(instances: list[Instance], node_uuid: str) -> list[str]:
    """Names allowed in the node's instance-disks directory."""
    return sorted(f"{i.name}:{idx}" for i in instances if i.primary_node == node_uuid
                  for idx in range(len(i.disks)))


def gather(lu: LogicalUnit, node_uuids: list[str], checked: list[Instance],
           scan: bool, links: bool) -> dict[str, NodeDiskReport]:
    """Ask each node about the disks of ``checked`` it holds.

    ``scan``: also list orphan files (storage dirs, instance-disks links);
    ``links``: check the instance-disks link of instances with active disks
    on their primary. Returns ``{node_uuid: NodeDiskReport}``.
    """
    all_instances = list(lu.cfg.get_instances().values())
    dirs = storage_dirs(lu) if scan else []
    reports = {uuid: NodeDiskReport() for uuid in node_uuids}
    for inst in sorted(checked, key=lambda i: i.name):
        for idx, disk in enumerate(inst.disks):
            for node_uuid in disk_nodes(inst, disk):
                if node_uuid in reports:
                    reports[node_uuid].checks.append(DiskCheck(inst, idx, disk))
    for node_uuid, report in reports.items():
        wire = [[c.disk.to_dict(),
                 [c.instance.name, c.idx] if links and c.instance.disks_active
                 and node_uuid == c.instance.primary_node else None]
                for c in report.checks]
        args = [dirs, expected_files(all_instances, node_uuid) if scan else [], wire,
                expected_links(all_instances, node_uuid) if scan else None]
        report.result = lu.rpc.call_one("file_storage_verify", node_uuid, args)
    return reports


class DiskVerifyMixin:
    """The disk part of ``LUClusterVerifyGroup`` (needs its ``_error``, ``op``,
    ``cfg``, ``rpc`` and ``instances``)."""

    def _warning(self, feedback_fn: FeedbackFn, code: str, item_type: str, item: str,
                 msg: str) -> None:
        from corral.cmdlib.cluster_verify import format_verify_error
        feedback_fn(format_verify_error(self.op.error_codes, code,  # type: ignore[attr-defined]
                                        item_type, item, msg, severity="WARNING"))

    def _verify_disks(self, feedback_fn: FeedbackFn, node_uuids: list[str]) -> None:
        """Report missing/unusable instance disks and orphan files on ``node_uuids``
        (the group's nodes that answered node_verify)."""
        lu: Any = self
        feedback_fn("* Verifying instance disks and orphan files")
        reports = gather(lu, node_uuids, lu.instances, scan=True, links=False)
        for node_uuid, report in sorted(reports.items(),
                                        key=lambda kv: lu.cfg.get_node(kv[0]).name):
            name = lu.cfg.get_node(node_uuid).name
            res = report.result
            if res is None or res.fail_msg:
                lu._error(feedback_fn, "ENODERPC", "node", name,
                          f"cannot verify disks: {res.fail_msg if res else 'no answer'}")
                continue
            for check, status in report.statuses:
                self._report_disk(feedback_fn, name, check, status)
            self._report_orphans(feedback_fn, name, res.payload or {})

    def _report_disk(self, feedback_fn: FeedbackFn, node: str, check: DiskCheck,
                     status: dict[str, Any]) -> None:
        lu: Any = self
        inst, disk = check.instance.name, f"disk/{check.idx}"
        if status.get("status") == DISK_MISSING:
            lu._error(feedback_fn, "EINSTANCEMISSINGDISK", "instance", inst,
                      f"{disk} ({check.path}) missing on node {node}")
            return
        if status.get("status") != DISK_OK:
            lu._error(feedback_fn, "EINSTANCEFAULTYDISK", "instance", inst,
                      f"{disk} on {node} is unusable: {status.get('message')}")
            return
        size = status.get("size")
        if not isinstance(size, int):
            return
        recorded = check.disk.size
        if size < recorded * MIB:
            lu._error(feedback_fn, "EINSTANCEFAULTYDISK", "instance", inst,
                      f"{disk} on {node} is smaller than recorded: {size // MIB} MiB "
                      f"({size} bytes), configuration says {recorded} MiB")
        elif size // MIB > recorded:
            self._warning(feedback_fn, "EINSTANCEFAULTYDISK", "instance", inst,
                          f"{disk} on {node} is larger than recorded: {size // MIB} MiB, "
                          f"configuration says {recorded} MiB (run 'gnt-cluster "
                          "repair-disk-sizes')")

    def _report_orphans(self, feedback_fn: FeedbackFn, node: str,
                        payload: dict[str, Any]) -> None:
        lu: Any = self
        orphans = payload.get("orphans") or []
        for vpath in orphans:
            what = "disk link" if vpath.startswith(INSTANCE_DISKS_VDIR + "/") else "file"
            lu._error(feedback_fn, "ENODEORPHANLV", "node", node, f"{what} {vpath} is unknown")
        more = int(payload.get("orphan_count") or 0) - len(orphans)
        if more > 0:
            lu._error(feedback_fn, "ENODEORPHANLV", "node", node,
                      f"{more} more unknown files not listed")
        for vdir, reason in payload.get("unscanned") or []:
            feedback_fn(f"  - NOTICE: node {node}: storage directory {vdir} not scanned "
                        f"for orphan files: {reason}")
