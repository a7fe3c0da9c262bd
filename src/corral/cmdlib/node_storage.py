"""Storage units of nodes (OP_NODE_QUERY_STORAGE, ``gnt-node list-storage``).

Mirrors ``ganeti.cmdlib.node.LUNodeQueryStorage``: the storage type defaults
to the one of the first enabled disk template; it must belong to an enabled
template; rows are ``output_fields`` values, sorted by node then unit name,
with ``node`` and ``type`` filled in by the master.
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, NoHooksLU
from corral.query.base import nice_sort_key


def check_storage_type_enabled(cluster: Any, storage_type: str) -> None:
    """Refuse (ECODE_STATE) a storage type no enabled disk template uses
    (Ganeti's ``CheckStorageTypeEnabled``; ``lvm-pv`` goes with ``lvm-vg``)."""
    if storage_type == C.ST_LVM_PV:
        storage_type = C.ST_LVM_VG
    templates = [dt for dt, st in C.MAP_DISK_TEMPLATE_STORAGE_TYPE.items()
                 if st == storage_type]
    if not any(dt in cluster.enabled_disk_templates for dt in templates):
        raise errors.OpPrereqError(
            f"No disk template of storage type '{storage_type}' is enabled in this cluster. "
            f"Enabled disk templates are: {','.join(cluster.enabled_disk_templates)}",
            errors.ECODE_STATE)


def storage_type_args(cluster: Any, storage_type: str) -> list[Any]:
    """The ``su_args`` of the ``storage_list`` call (Ganeti's
    ``_GetStorageTypeArgs``): the cluster's directory for file types."""
    if storage_type == C.ST_FILE:
        return [cluster.file_storage_dir]
    if storage_type == C.ST_SHARED_FILE:
        return [cluster.shared_file_storage_dir]
    return []


class LUNodeQueryStorage(NoHooksLU):
    """List the storage units of nodes; ``[[value per output field], ...]``."""

    REQ_BGL = False

    def expand_names(self) -> None:
        self.share_locks = dict.fromkeys(C.LEVELS, 1)
        if self.op.nodes:
            self.needed_locks = {C.LEVEL_NODE: [self.cfg.expand_node(n).uuid
                                                for n in self.op.nodes]}
        else:
            self.needed_locks = {C.LEVEL_NODE: None}

    def check_prereq(self) -> None:
        cluster = self.cfg.get_cluster()
        if self.op.storage_type:
            check_storage_type_enabled(cluster, self.op.storage_type)
            self.storage_type = self.op.storage_type
        else:
            self.storage_type = C.MAP_DISK_TEMPLATE_STORAGE_TYPE[
                cluster.enabled_disk_templates[0]]
            if self.storage_type not in C.STS_REPORT_NODE_STORAGE:
                raise errors.OpPrereqError(
                    f"Storage reporting for storage type '{self.storage_type}' is not "
                    "supported. Please use the --storage-type option to specify one of the "
                    f"supported storage types ({', '.join(sorted(C.STS_REPORT_NODE_STORAGE))})"
                    " or set the default disk template to one that supports storage "
                    "reporting.", errors.ECODE_INVAL)

    def exec(self, feedback_fn: FeedbackFn) -> list[list[Any]]:
        op = self.op
        fields = list(dict.fromkeys([C.SF_NAME] + [f for f in op.output_fields
                                                   if f not in (C.SF_NODE, C.SF_TYPE)]))
        nodes = [self.cfg.get_node(u) for u in self.owned_locks(C.LEVEL_NODE)]
        nodes = sorted((n for n in nodes if n is not None and not n.offline),
                       key=lambda n: nice_sort_key(n.name))
        args = [self.storage_type, storage_type_args(self.cfg.get_cluster(), self.storage_type),
                op.name, fields]
        results = self.rpc.call("storage_list", [n.uuid for n in nodes], args)
        out: list[list[Any]] = []
        for node in nodes:
            res = results[node.uuid]
            if res.fail_msg:
                self.log_warning(f"Can't get storage data from node {node.name}: "
                                 f"{res.fail_msg}")
                continue
            rows = {row[0]: dict(zip(fields, row)) for row in res.payload or []}
            for name in sorted(rows, key=nice_sort_key):
                row = rows[name]
                row[C.SF_NODE], row[C.SF_TYPE] = node.name, self.storage_type
                out.append([row[f] for f in op.output_fields])
        return out
