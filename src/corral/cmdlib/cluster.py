"""Logical units for the cluster: post-init, destroy, query, verify, modify.

Mirrors ``ganeti.cmdlib.cluster`` (LUClusterPostInit, LUClusterDestroy,
LUClusterQuery, LUClusterVerify, LUClusterVerifyConfig, LUClusterSetParams,
LUClusterConfigQuery, LUClusterRedistConf); verification of node groups is in
:mod:`corral.cmdlib.cluster_verify`.
"""

from __future__ import annotations

import functools
import platform
from typing import Any

from corral import constants as C
from corral import errors
from corral import ipolicy as ip
from corral.cmdlib.base import FeedbackFn, LogicalUnit, NoHooksLU, QueryLU, ResultWithJobs
from corral.cmdlib.cluster_verify import LUClusterVerifyGroup  # noqa: F401 (LU registry)
from corral.cmdlib.cluster_verify import format_verify_error
from corral.cmdlib.common import (check_hvparams_syntax, check_storage_dirs_accepted,
                                  distribute_cluster_files, validate_params)
from corral.config import ConfigStore
from corral.cmdlib.instance_policy import new_violations, warn_new_violations
from corral.hypervisor import get_hypervisor_class
from corral.ipolicy import cluster_ipolicy
from corral.opcodes import OpClusterVerifyConfig, OpClusterVerifyGroup
from corral.paths import normalize_virtual


@functools.cache
def _architecture() -> tuple[str, str]:
    """``[bits, machine]``; computed once (``platform.architecture`` runs
    ``file`` on the interpreter, far too slow for every ``/2/info``)."""
    return (platform.architecture()[0], platform.machine())


def build_cluster_info(cfg: ConfigStore) -> dict[str, Any]:
    """The cluster-info dict of OP_CLUSTER_QUERY and RAPI ``/2/info``.

    Keys as Ganeti 3.0's QueryClusterInfo (spec rapi.md §5); per-hypervisor
    parameters are filled with defaults.
    """
    cluster = cfg.get_cluster()
    master = cfg.get_node(cluster.master_node)
    hvparams = {hv: cluster.get_hv_defaults(hv) for hv in cluster.enabled_hypervisors}
    info: dict[str, Any] = {
        "software_version": C.RELEASE_VERSION,
        "protocol_version": C.PROTOCOL_VERSION,
        "config_version": C.CONFIG_VERSION,
        "os_api_version": max(C.OS_API_VERSIONS),
        "export_version": C.EXPORT_VERSION,
        "vcs_version": f"corral-{C.RELEASE_VERSION}",
        "architecture": list(_architecture()),
        "name": cluster.cluster_name,
        "master": master.name if master else cluster.master_node,
        "default_hypervisor": cluster.default_hypervisor,
        "enabled_hypervisors": list(cluster.enabled_hypervisors),
        "hvparams": hvparams,
        "os_hvp": cluster.os_hvp,
        "beparams": {"default": cluster.simple_fill_be({})},
        "osparams": cluster.osparams,
        "ipolicy": cluster_ipolicy(cluster.ipolicy, cluster.enabled_disk_templates),
        "nicparams": {"default": cluster.simple_fill_nic({})},
        "ndparams": cluster.fill_nd(master, None) if master else dict(C.NDC_DEFAULTS),
        "diskparams": cluster.fill_diskparams(None),
        "candidate_pool_size": cluster.candidate_pool_size,
        "max_running_jobs": cluster.max_running_jobs,
        "max_tracked_jobs": cluster.max_tracked_jobs,
        "mac_prefix": cluster.mac_prefix,
        "master_netdev": cluster.master_netdev,
        "master_netmask": cluster.master_netmask,
        "use_external_mip_script": cluster.use_external_mip_script,
        "volume_group_name": cluster.volume_group_name,
        "drbd_usermode_helper": cluster.drbd_usermode_helper,
        "file_storage_dir": cluster.file_storage_dir,
        "shared_file_storage_dir": cluster.shared_file_storage_dir,
        "gluster_storage_dir": cluster.gluster_storage_dir,
        "maintain_node_health": cluster.maintain_node_health,
        "ctime": cluster.ctime,
        "mtime": cluster.mtime,
        "uuid": cluster.uuid,
        "tags": list(cluster.tags),
        "uid_pool": cluster.uid_pool,
        "default_iallocator": cluster.default_iallocator,
        "default_iallocator_params": cluster.default_iallocator_params,
        "reserved_lvs": cluster.reserved_lvs,
        "primary_ip_version": cluster.primary_ip_family,
        "prealloc_wipe_disks": cluster.prealloc_wipe_disks,
        "hidden_os": cluster.hidden_os,
        "blacklisted_os": cluster.blacklisted_os,
        "enabled_disk_templates": list(cluster.enabled_disk_templates),
        "install_image": cluster.install_image,
        "instance_communication_network": cluster.instance_communication_network,
        "zeroing_image": cluster.zeroing_image,
        "compression_tools": list(cluster.compression_tools),
        "enabled_user_shutdown": cluster.enabled_user_shutdown,
        "enabled_data_collectors": {},
        "data_collector_interval": {},
        "modify_ssh_setup": False,
        "ssh_key_type": "",
        "ssh_key_bits": 0,
    }
    info["vg_name"] = info["volume_group_name"]
    info["drbd_helper"] = info["drbd_usermode_helper"]
    return info


class LUClusterPostInit(LogicalUnit):
    """No-op run after ``gnt-cluster init`` so that cluster-init hooks fire."""

    HPATH = "cluster-init"
    HTYPE = C.HTYPE_CLUSTER

    def expand_names(self) -> None:
        self.needed_locks = {}

    def build_hooks_env(self) -> dict[str, Any]:
        return {"OP_TARGET": self.cfg.get_cluster().cluster_name}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [], [self.master_uuid()]

    def exec(self, feedback_fn: FeedbackFn) -> bool:
        return True


class LUClusterDestroy(LogicalUnit):
    """Check that the cluster can be destroyed; returns the master's name.

    The CLI then stops the daemons and removes the state (bootstrap).
    """

    HPATH = "cluster-destroy"
    HTYPE = C.HTYPE_CLUSTER

    def expand_names(self) -> None:
        self.needed_locks = {}

    def build_hooks_env(self) -> dict[str, Any]:
        return {"OP_TARGET": self.cfg.get_cluster().cluster_name}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [], []

    def check_prereq(self) -> None:
        nodes = self.cfg.get_nodes()
        if len(nodes) != 1:
            raise errors.OpPrereqError(
                f"There are still {len(nodes) - 1} node(s) in this cluster; "
                "remove them first", errors.ECODE_INVAL)
        instances = self.cfg.get_instances()
        if instances:
            raise errors.OpPrereqError(
                f"There are still {len(instances)} instance(s) in this cluster; "
                "remove them first", errors.ECODE_INVAL)

    def exec(self, feedback_fn: FeedbackFn) -> str:
        master = self.cfg.get_master_node()
        results = self.rpc.call("hooks_runner", [master.uuid],
                                ["cluster-destroy", C.HOOKS_PHASE_POST,
                                 {"GANETI_OP_CODE": self.op.OP_ID,
                                  "GANETI_HOOKS_PHASE": C.HOOKS_PHASE_POST,
                                  "GANETI_HOOKS_PATH": "cluster-destroy",
                                  "GANETI_CLUSTER": self.cfg.get_cluster().cluster_name,
                                  "GANETI_MASTER": master.name}])
        for res in results.values():
            if res.fail_msg:
                self.log_warning(f"Could not run post hooks: {res.fail_msg}")
        return master.name


class LUClusterQuery(QueryLU):
    def expand_names(self) -> None:
        self.needed_locks = {}

    def exec(self, feedback_fn: FeedbackFn) -> dict[str, Any]:
        return build_cluster_info(self.cfg)


class LUClusterConfigQuery(QueryLU):
    _FIELDS = ("cluster_name", "master_node", "drain_flag", "watcher_pause",
               "volume_group_name")

    def check_arguments(self) -> None:
        unknown = set(self.op.output_fields) - set(self._FIELDS)
        if unknown:
            raise errors.OpPrereqError(f"Unknown output fields: {', '.join(sorted(unknown))}",
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        self.needed_locks = {}

    def exec(self, feedback_fn: FeedbackFn) -> list[Any]:
        cluster = self.cfg.get_cluster()
        values = {
            "cluster_name": cluster.cluster_name,
            "master_node": self.cfg.get_master_node().name,
            "drain_flag": bool(getattr(self.context.queue, "drained", False)),
            "watcher_pause": None,
            "volume_group_name": cluster.volume_group_name or None,
        }
        return [values[f] for f in self.op.output_fields]


class LUClusterVerify(NoHooksLU):
    """Submit one config-verify job and one verify-group job per node group."""

    REQ_BGL = False

    def expand_names(self) -> None:
        self.needed_locks = {}

    def exec(self, feedback_fn: FeedbackFn) -> ResultWithJobs:
        if self.op.group_name:
            groups = [self.cfg.expand_nodegroup(self.op.group_name).name]
        else:
            groups = sorted(g.name for g in self.cfg.get_nodegroups().values())
        common = {"error_codes": self.op.error_codes,
                  "debug_simulate_errors": self.op.debug_simulate_errors,
                  "ignore_errors": list(self.op.ignore_errors),
                  "verbose": self.op.verbose}
        jobs: list[list[Any]] = []
        if not self.op.group_name:
            jobs.append([OpClusterVerifyConfig(**common)])
        for name in groups:
            depends = [(-len(jobs), [])] if jobs else None
            jobs.append([OpClusterVerifyGroup(group_name=name,
                                              skip_checks=list(self.op.skip_checks),
                                              verify_clutter=self.op.verify_clutter,
                                              depends=depends, **common)])
        return ResultWithJobs(jobs)


class LUClusterVerifyConfig(QueryLU):
    """Consistency check of the configuration itself (no node RPC)."""

    def expand_names(self) -> None:
        self.needed_locks = {}

    def exec(self, feedback_fn: FeedbackFn) -> bool:
        feedback_fn("* Verifying cluster config")
        problems = self.cfg.verify_config()
        if self.op.debug_simulate_errors:
            problems.append("simulated error")
        bad = False
        for msg in problems:
            if "ECLUSTERCFG" in self.op.ignore_errors:
                continue
            bad = True
            feedback_fn(format_verify_error(self.op.error_codes, "ECLUSTERCFG", "cluster",
                                            self.cfg.get_cluster().cluster_name, msg))
        return not bad


def merge_params(current: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """``current`` updated with ``updates``; a ``None`` value removes the key
    (back to the inherited default, Ganeti's ``-key`` syntax)."""
    merged = {**current, **updates}
    return {k: v for k, v in merged.items() if v is not None}


_SIMPLE_CLUSTER_PARAMS = (
    "candidate_pool_size", "max_running_jobs", "max_tracked_jobs", "maintain_node_health",
    "prealloc_wipe_disks", "default_iallocator", "default_iallocator_params",
    "master_netdev", "master_netmask", "modify_etc_hosts", "use_external_mip_script",
    "reserved_lvs", "compression_tools", "enabled_user_shutdown", "install_image",
    "zeroing_image",
)


class LUClusterSetParams(LogicalUnit):
    """Change cluster parameters (the subset Corral implements)."""

    HPATH = "cluster-modify"
    HTYPE = C.HTYPE_CLUSTER

    def check_arguments(self) -> None:
        op = self.op
        unsupported = [name for name in ("vg_name", "drbd_helper", "uid_pool", "add_uids",
                                         "remove_uids", "gluster_storage_dir",
                                         "instance_communication_network", "hv_state",
                                         "disk_state")
                       if getattr(op, name) not in (None, "", [])]
        if unsupported:
            raise errors.OpPrereqError(
                f"Parameter(s) not supported by Corral yet: {', '.join(unsupported)}",
                errors.ECODE_INVAL)
        if op.enabled_hypervisors is not None:
            if not op.enabled_hypervisors:
                raise errors.OpPrereqError("At least one hypervisor must be enabled",
                                           errors.ECODE_INVAL)
            bad = [h for h in op.enabled_hypervisors if h not in C.HTS_IMPLEMENTED]
            if bad:
                raise errors.OpPrereqError(f"Hypervisor(s) not supported: {', '.join(bad)}",
                                           errors.ECODE_INVAL)
        if op.enabled_disk_templates is not None:
            if not op.enabled_disk_templates:
                raise errors.OpPrereqError("At least one disk template must be enabled",
                                           errors.ECODE_INVAL)
            bad = [d for d in op.enabled_disk_templates if d not in C.DTS_IMPLEMENTED]
            if bad:
                raise errors.OpPrereqError(
                    f"Disk template(s) not supported: {', '.join(bad)}", errors.ECODE_INVAL)
        for name in ("file_storage_dir", "shared_file_storage_dir"):
            value = getattr(op, name)
            if value is not None:
                setattr(op, name, normalize_virtual(value))
        if op.beparams is not None:
            op.beparams = validate_params(op.beparams, C.BES_PARAMETER_TYPES, "backend")
        if op.nicparams is not None:
            op.nicparams = validate_params(op.nicparams, C.NICS_PARAMETER_TYPES, "NIC")
            mode = op.nicparams.get(C.NIC_MODE)
            if mode is not None and mode not in C.NIC_VALID_MODES:
                raise errors.OpPrereqError(f"Invalid NIC mode '{mode}'", errors.ECODE_INVAL)
        if op.ndparams is not None:
            op.ndparams = validate_params(op.ndparams, C.NDS_PARAMETER_TYPES, "node")
        if op.ipolicy:
            op.ipolicy = ip.check_ipolicy_update(op.ipolicy)
        if op.mac_prefix is not None:
            import re
            if not re.match(r"^[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$", op.mac_prefix.lower()):
                raise errors.OpPrereqError(f"Invalid MAC prefix '{op.mac_prefix}'",
                                           errors.ECODE_INVAL)

    def expand_names(self) -> None:
        self.needed_locks = {C.LEVEL_NODE: None, C.LEVEL_INSTANCE: None,
                             C.LEVEL_NODEGROUP: None}
        self.share_locks = dict.fromkeys(C.LEVELS, 1)

    def build_hooks_env(self) -> dict[str, Any]:
        return {"OP_TARGET": self.cfg.get_cluster().cluster_name,
                "NEW_VG_NAME": self.op.vg_name or ""}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [self.master_uuid()], [self.master_uuid()]

    def check_prereq(self) -> None:
        op = self.op
        cluster = self.cfg.get_cluster()
        new = cluster.model_copy(deep=True)
        instances = list(self.cfg.get_instances().values())
        if op.enabled_hypervisors is not None:
            in_use = {i.hypervisor for i in instances} - set(op.enabled_hypervisors)
            if in_use:
                raise errors.OpPrereqError(
                    f"Hypervisor(s) {', '.join(sorted(in_use))} still used by instances",
                    errors.ECODE_STATE)
            new.enabled_hypervisors = list(op.enabled_hypervisors)
        if op.enabled_disk_templates is not None:
            in_use = {i.disk_template for i in instances} - set(op.enabled_disk_templates)
            if in_use:
                raise errors.OpPrereqError(
                    f"Disk template(s) {', '.join(sorted(in_use))} still used by instances",
                    errors.ECODE_STATE)
            new.enabled_disk_templates = list(op.enabled_disk_templates)
        if op.hvparams:
            for hv, params in op.hvparams.items():
                new.hvparams[hv] = merge_params(new.hvparams.get(hv, {}), params)
        for hv in new.enabled_hypervisors:
            check_hvparams_syntax(hv, new.get_hv_defaults(hv))
        if op.os_hvp:
            for os_name, per_hv in op.os_hvp.items():
                target = new.os_hvp.setdefault(os_name, {})
                for hv, params in per_hv.items():
                    get_hypervisor_class(hv)  # refuses unknown hypervisors
                    target[hv] = merge_params(target.get(hv, {}), params)
        if op.beparams is not None:
            new.beparams["default"] = merge_params(new.beparams.get("default", {}),
                                                   op.beparams)
        if op.nicparams is not None:
            new.nicparams["default"] = merge_params(new.nicparams.get("default", {}),
                                                    op.nicparams)
        if op.ndparams is not None:
            new.ndparams = merge_params(new.ndparams, op.ndparams)
        if op.osparams is not None:
            for os_name, params in op.osparams.items():
                new.osparams[os_name] = merge_params(new.osparams.get(os_name, {}), params)
        if op.diskparams is not None:
            for dt, params in op.diskparams.items():
                if dt not in C.DISK_TEMPLATES:
                    raise errors.OpPrereqError(f"Unknown disk template '{dt}'",
                                               errors.ECODE_INVAL)
                merged = dict(new.diskparams.get(dt, {}))
                merged.update(params)
                new.diskparams[dt] = merged
        for attr, value in (("hidden_os", op.hidden_os), ("blacklisted_os", op.blacklisted_os)):
            if value is not None:
                current = list(getattr(new, attr))
                for action, name in value:
                    if action == "add" and name not in current:
                        current.append(name)
                    elif action == "remove" and name in current:
                        current.remove(name)
                setattr(new, attr, current)
        changed_dirs = []
        for name in ("file_storage_dir", "shared_file_storage_dir"):
            value = getattr(op, name)
            if value is not None:
                if value != getattr(cluster, name):
                    changed_dirs.append(value)
                setattr(new, name, value)
        # Ganeti: a storage dir must lie in every node's own allowed list; the
        # API never widens that list.
        check_storage_dirs_accepted(
            self, changed_dirs, [n.uuid for n in self.cfg.get_node_list() if not n.offline])
        if op.mac_prefix is not None:
            new.mac_prefix = op.mac_prefix.lower()
        self._check_ipolicy(cluster, new)
        for name in _SIMPLE_CLUSTER_PARAMS:
            value = getattr(op, name)
            if value is not None:
                setattr(new, name, value)
        self.new_cluster = new

    def _check_ipolicy(self, cluster: Any, new: Any) -> None:
        """Ganeti's ``_CheckIpolicy``: the new policy (stored complete) may
        allow only enabled disk templates; instances it newly breaks are
        only warned about."""
        current = cluster_ipolicy(cluster.ipolicy, cluster.enabled_disk_templates)
        if self.op.ipolicy:
            new.ipolicy = ip.updated_ipolicy(current, self.op.ipolicy)
            ip.check_ipolicy_vs_disk_templates(new.ipolicy, new.enabled_disk_templates)
            warn_new_violations(self, new_violations(self.cfg, new.ipolicy))
        else:
            ip.check_ipolicy_vs_disk_templates(current, new.enabled_disk_templates)
            new.ipolicy = current

    def exec(self, feedback_fn: FeedbackFn) -> None:
        old = self.cfg.get_cluster()
        new = self.new_cluster
        self.cfg.commit(update=[new])
        if (new.file_storage_dir, new.shared_file_storage_dir) != \
                (old.file_storage_dir, old.shared_file_storage_dir):
            distribute_cluster_files(self, only_online=True)   # ssconf holds the dirs
        if new.max_running_jobs != old.max_running_jobs and self.context.queue is not None:
            self.context.queue.set_max_running(new.max_running_jobs)


class LUClusterRedistConf(NoHooksLU):
    """Push configuration replicas and cluster files to all nodes."""

    def expand_names(self) -> None:
        self.needed_locks = {C.LEVEL_NODE: None}
        self.share_locks = dict.fromkeys(C.LEVELS, 1)

    def exec(self, feedback_fn: FeedbackFn) -> None:
        distribute_cluster_files(self, only_online=True, full_config=True)
