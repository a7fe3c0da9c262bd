"""Verification of a node group: nodes over RPC, instances where they belong.

Mirrors ``ganeti.cmdlib.cluster.verify.LUClusterVerifyGroup``: every node is
asked (node_verify RPC) for its version, checksums of the cluster files, the
hypervisor's health and the instances it runs; the answers are compared with
the configuration and with each other.
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral.cmdlib import leftovers
from corral.cmdlib.base import FeedbackFn, LogicalUnit
from corral.cmdlib.common import file_storage_dirs_in_use
from corral.cmdlib.disk_checks import DiskVerifyMixin
from corral.cmdlib.instance_policy import verify_group_instances
from corral.objects import Node

# Files that must be identical on every node (virtual paths). The allowed file
# storage paths file is node-local: checked by _verify_file_storage_paths.
CLUSTER_FILES = (
    "/var/lib/corral/ca.pem",
    "/var/lib/corral/ssconf_cluster_name",
    "/var/lib/corral/ssconf_master_node",
    "/var/lib/corral/ssconf_node_list",
)


def format_verify_error(error_codes: bool, code: str, item_type: str, item: str,
                        msg: str, severity: str = "ERROR") -> str:
    """One line of verify output, in Ganeti's two formats."""
    if error_codes:
        return f"  - {severity}:{code}:{item_type}:{item}:{msg}"
    return f"  - {severity}: {item_type} {item}: {msg}"


class LUClusterVerifyGroup(DiskVerifyMixin, LogicalUnit):
    """Verify the nodes and instances of one node group."""

    HPATH = "cluster-verify"
    HTYPE = C.HTYPE_CLUSTER
    REQ_BGL = False

    def expand_names(self) -> None:
        self.group = self.cfg.expand_nodegroup(self.op.group_name)
        self.needed_locks = {C.LEVEL_NODEGROUP: [self.group.uuid],
                             C.LEVEL_INSTANCE: None, C.LEVEL_NODE: None}
        self.share_locks = dict.fromkeys(C.LEVELS, 1)
        self.bad = False

    def check_prereq(self) -> None:
        self.nodes = [n for n in self.cfg.get_node_list() if n.group == self.group.uuid]
        node_uuids = {n.uuid for n in self.nodes}
        self.instances = [i for i in self.cfg.get_instances().values()
                          if i.primary_node in node_uuids]

    def build_hooks_env(self) -> dict[str, Any]:
        env: dict[str, Any] = {"CLUSTER_TAGS": " ".join(self.cfg.get_cluster().tags)}
        for node in self.nodes:
            env[f"NODE_TAGS_{node.name}"] = " ".join(node.tags)
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [], [n.uuid for n in self.nodes]

    def _error(self, feedback_fn: FeedbackFn, code: str, item_type: str, item: str,
               msg: str) -> None:
        if code in self.op.ignore_errors:
            feedback_fn(format_verify_error(self.op.error_codes, code, item_type, item, msg,
                                            severity="WARNING"))
            return
        self.bad = True
        feedback_fn(format_verify_error(self.op.error_codes, code, item_type, item, msg))

    def exec(self, feedback_fn: FeedbackFn) -> bool:
        cluster = self.cfg.get_cluster()
        feedback_fn(f"* Verifying node group {self.group.name}")
        online = [n for n in self.nodes if not n.offline]
        for node in self.nodes:
            if node.offline:
                feedback_fn(f"  - NOTICE: node {node.name} is offline, not verified")
        all_nodes = self.cfg.get_node_list()
        checkdict = {
            "version": None,
            "filelist": list(CLUSTER_FILES),
            "hypervisor": list(cluster.enabled_hypervisors),
            "instancelist": list(cluster.enabled_hypervisors),
            "nodelist": {n.name: [n.primary_ip, n.noded_port]
                         for n in all_nodes if not n.offline},
            "file_storage_paths": file_storage_dirs_in_use(cluster),
        }
        all_hvparams = {hv: cluster.get_hv_defaults(hv) for hv in cluster.enabled_hypervisors}
        feedback_fn("* Gathering data from the nodes")
        results = self.rpc.call("node_verify", [n.uuid for n in online],
                                [checkdict, cluster.cluster_name, all_hvparams])
        running: dict[str, list[str]] = {}
        reference_files: dict[str, Any] | None = None
        master_uuid = cluster.master_node
        master_res = results.get(master_uuid)
        if master_res is not None and not master_res.fail_msg:
            reference_files = (master_res.payload or {}).get("filelist")
        for node in online:
            res = results[node.uuid]
            if res.fail_msg:
                self._error(feedback_fn, "ENODERPC", "node", node.name,
                            f"while contacting node: {res.fail_msg}")
                continue
            self._verify_node(feedback_fn, node, res.payload or {}, reference_files)
            self._verify_file_storage_paths(feedback_fn, node, res.payload or {})
            for name in (res.payload or {}).get("instancelist") or []:
                running.setdefault(name, []).append(node.uuid)
        if self.op.debug_simulate_errors:
            self._error(feedback_fn, "ECLUSTERCFG", "cluster", cluster.cluster_name,
                        "simulated error")
        self._verify_leftovers(feedback_fn)
        self._verify_instances(feedback_fn, running, {n.uuid for n in online})
        # Ganeti's EINSTANCEPOLICY: a warning, verify still passes.
        for name, msg in verify_group_instances(self.cfg, self.group, self.instances):
            feedback_fn(format_verify_error(self.op.error_codes, "EINSTANCEPOLICY",
                                            "instance", name, msg, severity="WARNING"))
        self._verify_orphans(feedback_fn, running)
        self._verify_disks(feedback_fn, [n.uuid for n in online
                                         if not results[n.uuid].fail_msg])
        self._verify_incomplete(feedback_fn)
        return not self.bad

    def _verify_node(self, feedback_fn: FeedbackFn, node: Node, payload: dict[str, Any],
                     reference_files: dict[str, Any] | None) -> None:
        version = payload.get("version")
        if not version or version[0] != C.PROTOCOL_VERSION:
            self._error(feedback_fn, "ENODEVERSION", "node", node.name,
                        f"incompatible protocol version {version!r} "
                        f"(master has {C.PROTOCOL_VERSION})")
        elif version[1] != C.RELEASE_VERSION:
            feedback_fn(format_verify_error(self.op.error_codes, "ENODEVERSION", "node",
                                            node.name, f"software version mismatch: "
                                            f"{version[1]} vs {C.RELEASE_VERSION}",
                                            severity="WARNING"))
        for hv, msg in (payload.get("hypervisor") or {}).items():
            if msg:
                self._error(feedback_fn, "ENODEHV", "node", node.name,
                            f"hypervisor {hv} verify failure: {msg}")
        for other, msg in (payload.get("nodelist") or {}).items():
            if msg:
                self._error(feedback_fn, "ENODENET", "node", node.name,
                            f"cannot reach node {other}: {msg}")
        files = payload.get("filelist") or {}
        for path in CLUSTER_FILES:
            checksum = files.get(path)
            if checksum is None:
                self._error(feedback_fn, "ECLUSTERFILECHECK", "node", node.name,
                            f"file {path} is missing")
            elif reference_files is not None and reference_files.get(path) is not None \
                    and checksum != reference_files.get(path):
                self._error(feedback_fn, "ECLUSTERFILECHECK", "node", node.name,
                            f"file {path} differs from the master's copy")

    def _verify_file_storage_paths(self, feedback_fn: FeedbackFn, node: Node,
                                   payload: dict[str, Any]) -> None:
        """The node's own allowed list must hold the cluster's storage dirs
        (Ganeti's NV_FILE_STORAGE_PATH / NV_ACCEPTED_STORAGE_PATHS checks)."""
        for msg in payload.get("file_storage_paths") or []:
            self._error(feedback_fn, "ENODEFILESTORAGEPATHS", "node", node.name, msg)

    def _verify_instances(self, feedback_fn: FeedbackFn, running: dict[str, list[str]],
                          answered: set[str]) -> None:
        for inst in sorted(self.instances, key=lambda i: i.name):
            pnode = self.cfg.get_node(inst.primary_node)
            where = running.get(inst.name, [])
            if pnode is None:
                self._error(feedback_fn, "EINSTANCEBADNODE", "instance", inst.name,
                            "primary node not in the configuration")
                continue
            if pnode.offline or inst.primary_node not in answered:
                continue
            on_primary = inst.primary_node in where
            if inst.admin_state == C.ADMINST_UP and not on_primary:
                self._error(feedback_fn, "EINSTANCEDOWN", "instance", inst.name,
                            f"instance not running on its primary node {pnode.name}")
            if inst.admin_state != C.ADMINST_UP and on_primary:
                self._error(feedback_fn, "EINSTANCEUP", "instance", inst.name,
                            f"instance is running on {pnode.name} but should be "
                            f"{inst.admin_state}")
            for node_uuid in where:
                if node_uuid != inst.primary_node:
                    other = self.cfg.get_node(node_uuid)
                    self._error(feedback_fn, "EINSTANCEWRONGNODE", "instance", inst.name,
                                f"instance is running on node {other.name if other else node_uuid}"
                                f", not on its primary {pnode.name}")

    def _verify_orphans(self, feedback_fn: FeedbackFn, running: dict[str, list[str]]) -> None:
        known = {i.name for i in self.cfg.get_instances().values()}
        group_nodes = {n.uuid for n in self.nodes}
        for name, node_uuids in sorted(running.items()):
            if name in known:
                continue
            for node_uuid in node_uuids:
                if node_uuid in group_nodes:
                    node = self.cfg.get_node(node_uuid)
                    self._error(feedback_fn, "ENODEORPHANINSTANCE", "node",
                                node.name if node else node_uuid,
                                f"instance {name} is running but not in the configuration")

    def _verify_incomplete(self, feedback_fn: FeedbackFn) -> None:
        """Report instances a create job left incomplete (``creating_job`` set).

        One whose create job still runs is only noted; one whose job has
        ended (interrupted by a masterd crash, or failed without cleaning
        up) is an error: ``gnt-instance remove`` deletes it. Corral
        extension (Ganeti has no such mark).
        """
        queue = self.context.queue
        for inst in sorted(self.instances, key=lambda i: i.name):
            job_id = inst.creating_job
            if job_id is None:
                continue
            (row,) = queue.query_jobs([job_id], ["status"]) if queue is not None else [None]
            status = row[0] if row is not None else "unknown"
            if status in (C.JOB_STATUS_QUEUED, C.JOB_STATUS_WAITING, C.JOB_STATUS_RUNNING):
                feedback_fn(f"  - NOTICE: instance {inst.name} is being created by job "
                            f"{job_id}")
                continue
            self._error(feedback_fn, "EINSTANCEINCOMPLETE", "instance", inst.name,
                        f"instance was left half-created by job {job_id} (status {status});"
                        " remove it with 'gnt-instance remove'")

    def _verify_leftovers(self, feedback_fn: FeedbackFn) -> None:
        """What failed jobs could not remove (``cmdlib.leftovers``)."""
        for name, msg in leftovers.verify_leftovers(self, {n.uuid for n in self.nodes}):
            self._error(feedback_fn, leftovers.VERIFY_CODE, "node", name, msg)
