"""What failed jobs could not remove from a node: retried, recorded, reported, removed later.

A failed move, export or import removes what it made on the nodes
(copied disks, ``NAME.new``, transfer directories). When the node holding
it does not answer at that moment, :func:`remove_or_record` retries a few
times and then records the leftover in the cluster configuration
(``Cluster.leftovers``: node, kind, virtual path or name, the job id):

* ``gnt-cluster verify`` reports each as ``ENODELEFTOVER`` on its node
  (:func:`verify_leftovers`);
* the **next job that locks the node exclusively** (a move to it, an
  export, an instance creation or removal there, a node re-add or any job
  holding the Big Corral Lock exclusively) removes it before its own work (:func:`remove_recorded`, called by ``mcpu`` before ``exec``),
  and drops the record. A leftover that an instance uses again by then (a
  storage directory the instance moved back into) is not removed, only
  forgotten; one on a node no longer in the cluster is forgotten too.

Kinds and the noded procedure that removes them: ``disk``
(``blockdev_remove``), ``storage_dir`` (``file_storage_dir_remove``, empty
directories only), ``export`` (``export_remove``), ``transfer``
(``impexp_cleanup``; noded also sweeps transfers when it starts).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from corral import constants as C
from corral import errors
from corral.cmdlib.instance_storage import storage_dir_of
from corral.objects import Cluster, Disk, Instance, Leftover

if TYPE_CHECKING:
    from corral.cmdlib.base import LogicalUnit

KIND_DISK = "disk"
KIND_STORAGE_DIR = "storage_dir"
KIND_EXPORT = "export"
KIND_TRANSFER = "transfer"
_PROCEDURES = {
    KIND_DISK: "blockdev_remove",
    KIND_STORAGE_DIR: "file_storage_dir_remove",
    KIND_EXPORT: "export_remove",
    KIND_TRANSFER: "impexp_cleanup",
}
KINDS = tuple(_PROCEDURES)
VERIFY_CODE = "ENODELEFTOVER"

RETRIES = 3                  # attempts before a leftover is recorded
RETRY_DELAY = 2.0            # seconds between attempts
_COMMIT_ATTEMPTS = 10        # against concurrent cluster updates


def describe(item: Leftover) -> str:
    """``disk file /srv/...`` / ``export inst1.new`` / ... for messages."""
    what = {KIND_DISK: "disk file", KIND_STORAGE_DIR: "storage directory",
            KIND_EXPORT: "export", KIND_TRANSFER: "import/export transfer"}[item.kind]
    return f"{what} {item.path}"


def _args(item: Leftover) -> list[Any]:
    return [item.disk] if item.kind == KIND_DISK else [item.path]


def _try_remove(lu: LogicalUnit, item: Leftover) -> str | None:
    """Remove ``item`` once; None when it is gone, else the failure."""
    res = lu.rpc.call_one(_PROCEDURES[item.kind], item.node_uuid, _args(item))
    if not res.fail_msg:
        return None
    if item.kind == KIND_EXPORT and "No export" in res.fail_msg:
        return None
    return res.fail_msg


def _job_id(lu: LogicalUnit) -> int | None:
    job_id = getattr(lu.op_ctx, "job_id", None)
    return job_id if isinstance(job_id, int) else None


def _node_name(lu: LogicalUnit, node_uuid: str) -> str:
    node = lu.cfg.get_node(node_uuid)
    return node.name if node is not None else node_uuid


def _update_leftovers(lu: LogicalUnit, add: list[Leftover],
                      drop: list[Leftover]) -> None:
    """Add and drop records in one cluster update (retried on concurrent updates)."""
    keys = {(d.node_uuid, d.kind, d.path) for d in drop}
    for _ in range(_COMMIT_ATTEMPTS):
        cluster: Cluster = lu.cfg.get_cluster().model_copy(deep=True)
        kept = [i for i in cluster.leftovers if (i.node_uuid, i.kind, i.path) not in keys]
        known = {(i.node_uuid, i.kind, i.path) for i in kept}
        cluster.leftovers = kept + [a for a in add
                                    if (a.node_uuid, a.kind, a.path) not in known]
        try:
            lu.cfg.commit(update=[cluster])
            return
        except errors.ConfigVersionMismatch:
            continue
    raise errors.OpExecError("Cannot record the leftovers: the cluster configuration keeps "
                             "changing")


def remove_or_record(lu: LogicalUnit, node_uuid: str, kind: str, path: str,
                     disk: Disk | None = None, retries: int = RETRIES,
                     delay: float = RETRY_DELAY) -> bool:
    """Remove a leftover from ``node_uuid``, retrying; record it if that fails.

    ``kind`` is one of :data:`KINDS`; ``path`` the virtual path or name,
    ``disk`` the disk of a ``disk``. Returns True when it is gone; False
    when it was recorded (a warning in the job log says so). Never raises
    for node failures.
    """
    if kind not in _PROCEDURES:
        raise errors.ProgrammerError(f"Unknown leftover kind {kind!r}")
    item = Leftover(node_uuid=node_uuid, kind=kind, path=path,
                    disk=disk.to_dict() if disk is not None else None, job_id=_job_id(lu))
    msg: str | None = None
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(delay)
        msg = _try_remove(lu, item)
        if msg is None:
            return True
    name = _node_name(lu, node_uuid)
    try:
        _update_leftovers(lu, [item], [])
    except errors.CorralError as err:
        lu.log_warning(f"Could not remove the {describe(item)} from node {name} ({msg}) nor "
                       f"record it: {err}")
        return False
    lu.log_warning(f"Could not remove the {describe(item)} from node {name}: {msg}; recorded "
                   f"it: 'gnt-cluster verify' reports it until the next job that locks node "
                   f"{name} removes it")
    return False


def remove_disks_or_record(lu: LogicalUnit, instance: Instance) -> bool:
    """Remove ``instance``'s disks and (file templates) storage directory from
    their nodes, as ``remove_disks`` does, recording what cannot be removed.

    For disks made by a job that failed before the instance used them (the
    target copies of a failed move). Returns True when everything is gone.
    """
    unreachable: set[str] = set()
    ok = True
    for disk in instance.disks:
        for node_uuid in disk.nodes or [instance.primary_node]:
            retries = 1 if node_uuid in unreachable else RETRIES
            if not remove_or_record(lu, node_uuid, KIND_DISK, str(disk.logical_id[-1]),
                                    disk, retries=retries):
                unreachable.add(node_uuid)
                ok = False
    directory = storage_dir_of(instance)
    if directory:
        retries = 1 if instance.primary_node in unreachable else RETRIES
        ok = remove_or_record(lu, instance.primary_node, KIND_STORAGE_DIR, directory,
                              retries=retries) and ok
    return ok


def _in_use(lu: LogicalUnit, item: Leftover) -> bool:
    """Whether an instance uses the disk file / storage directory again."""
    if item.kind not in (KIND_DISK, KIND_STORAGE_DIR):
        return False
    for inst in lu.cfg.get_instances().values():
        for disk in inst.disks:
            nodes = disk.nodes or [inst.primary_node]
            if item.node_uuid not in nodes or len(disk.logical_id) < 2:
                continue
            if item.kind == KIND_DISK and disk.logical_id[1] == item.path:
                return True
        if item.kind == KIND_STORAGE_DIR and inst.primary_node == item.node_uuid and \
                storage_dir_of(inst) == item.path:
            return True
    return False


def remove_recorded(lu: LogicalUnit) -> None:
    """Remove the recorded leftovers of the nodes ``lu`` holds exclusively
    (all nodes with the Big Corral Lock held exclusively).

    Called before the LU's ``exec``; one attempt each (a node still down
    keeps its records). Failures are warnings, never errors of the job.
    """
    try:
        _remove_recorded(lu)
    except errors.CorralError as err:
        lu.log_warning(f"Could not remove recorded leftovers: {err}")


def _remove_recorded(lu: LogicalUnit) -> None:
    pending = lu.cfg.get_cluster().leftovers
    if not pending:
        return
    # The Big Corral Lock held exclusively (node re-add, ...) excludes every other job.
    bgl = lu.glm.is_owned(lu.owner, C.LEVEL_CLUSTER, C.BGL, shared=False)
    done: list[Leftover] = []
    for item in pending:
        node = lu.cfg.get_node(item.node_uuid)
        if node is None:
            done.append(item)               # the node left the cluster
            continue
        if node.offline or not (bgl or lu.glm.is_owned(lu.owner, C.LEVEL_NODE,
                                                       item.node_uuid, shared=False)):
            continue
        if _in_use(lu, item):
            done.append(item)
            continue
        msg = _try_remove(lu, item)
        job = f" of job {item.job_id}" if item.job_id is not None else ""
        if msg is None:
            lu.log_info(f"Removed the leftover {describe(item)}{job} from node {node.name}")
            done.append(item)
        else:
            lu.log_warning(f"Still cannot remove the leftover {describe(item)}{job} from "
                           f"node {node.name}: {msg}")
    if done:
        _update_leftovers(lu, [], done)


def verify_leftovers(lu: LogicalUnit, node_uuids: set[str]) -> list[tuple[str, str]]:
    """``(node name, message)`` per recorded leftover on ``node_uuids``."""
    out = []
    for item in lu.cfg.get_cluster().leftovers:
        if item.node_uuid not in node_uuids:
            continue
        job = f" by failed job {item.job_id}" if item.job_id is not None else ""
        name = _node_name(lu, item.node_uuid)
        msg = (f"{describe(item)} left{job} and not yet removed; the next job that locks "
               f"node {name} removes it")
        out.append((name, msg))
    return out


__all__ = ["KINDS", "KIND_DISK", "KIND_EXPORT", "KIND_STORAGE_DIR", "KIND_TRANSFER",
           "VERIFY_CODE", "describe", "remove_disks_or_record", "remove_or_record",
           "remove_recorded",
           "verify_leftovers"]
