"""Hooks: the GANETI_ environment and running hook scripts on nodes.

Mirrors ``ganeti.hooksmaster``. Scripts live on each node in
``etc/corral/hooks/<hpath>-<phase>.d/`` and get Ganeti's variables with the
``GANETI_`` prefix, so existing Ganeti hook scripts run unchanged. A failing
pre-phase script aborts the opcode (:class:`errors.HooksAbort`); post-phase
failures are only reported.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from corral import constants as C
from corral import errors
from corral.objects import Instance

if TYPE_CHECKING:
    from corral.cmdlib.base import LogicalUnit
    from corral.config import ConfigStore

log = logging.getLogger(__name__)

# The data directory as hook scripts see it (a virtual path, as in the config).
HOOKS_DATA_DIR = "/var/lib/corral"


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def build_instance_hook_env(cfg: "ConfigStore", instance: Instance,
                            override: dict[str, Any] | None = None) -> dict[str, str]:
    """``INSTANCE_*`` variables of ``instance`` (without the GANETI_ prefix).

    Mirrors ``cmdlib.common.BuildInstanceHookEnvByObject``; ``override`` may
    replace beparams/hvparams values or top-level keys (e.g. ``status``).
    """
    cluster = cfg.get_cluster()
    override = override or {}
    be = cluster.fill_be(instance)
    be.update(override.get("beparams", {}))
    hv = cluster.fill_hv(instance)
    hv.update(override.get("hvparams", {}))
    pnode = cfg.get_node(instance.primary_node)
    snodes = [cfg.get_node(u) for u in instance.secondary_nodes]
    env: dict[str, Any] = {
        "INSTANCE_NAME": override.get("name", instance.name),
        "INSTANCE_PRIMARY": pnode.name if pnode else instance.primary_node,
        "INSTANCE_SECONDARIES": " ".join(n.name for n in snodes if n),
        "INSTANCE_OS_TYPE": override.get("os", instance.os),
        "INSTANCE_STATUS": override.get("status", instance.admin_state),
        "INSTANCE_MINMEM": be.get(C.BE_MINMEM),
        "INSTANCE_MAXMEM": be.get(C.BE_MAXMEM),
        "INSTANCE_MEMORY": be.get(C.BE_MAXMEM),
        "INSTANCE_VCPUS": be.get(C.BE_VCPUS),
        "INSTANCE_DISK_TEMPLATE": instance.disk_template,
        "INSTANCE_HYPERVISOR": instance.hypervisor,
        "INSTANCE_NIC_COUNT": len(instance.nics),
        "INSTANCE_DISK_COUNT": len(instance.disks),
        "INSTANCE_TAGS": " ".join(instance.tags),
    }
    for idx, nic in enumerate(instance.nics):
        params = cluster.simple_fill_nic(nic.nicparams)
        prefix = f"INSTANCE_NIC{idx}_"
        env[prefix + "NAME"] = nic.name or ""
        env[prefix + "UUID"] = nic.uuid
        env[prefix + "IP"] = nic.ip or ""
        env[prefix + "MAC"] = nic.mac
        env[prefix + "MODE"] = params.get(C.NIC_MODE, "")
        env[prefix + "LINK"] = params.get(C.NIC_LINK, "")
        env[prefix + "VLAN"] = params.get(C.NIC_VLAN, "")
        if params.get(C.NIC_MODE) == C.NIC_MODE_BRIDGED:
            env[prefix + "BRIDGE"] = params.get(C.NIC_LINK, "")
        net = cfg.get_network(nic.network) if nic.network else None
        if net is not None:
            env.update(net.hooks_dict(prefix))
        else:
            env[prefix + "NETWORK_NAME"] = nic.network or ""
    for idx, disk in enumerate(instance.disks):
        prefix = f"INSTANCE_DISK{idx}_"
        env[prefix + "NAME"] = disk.name or ""
        env[prefix + "UUID"] = disk.uuid
        env[prefix + "SIZE"] = disk.size
        env[prefix + "MODE"] = disk.mode
        env[prefix + "DEV_TYPE"] = disk.dev_type
        if disk.dev_type in C.DTS_FILEBASED and len(disk.logical_id) == 2:
            env[prefix + "DRIVER"] = disk.logical_id[0]
            env[prefix + "ID"] = disk.logical_id[1]
    for key, value in be.items():
        env[f"INSTANCE_BE_{key}"] = value
    for key, value in hv.items():
        env[f"INSTANCE_HV_{key}"] = value
    return {k: _env_value(v) for k, v in env.items()}


class HooksMaster:
    """Runs the hooks of one logical unit (``ganeti.hooksmaster.HooksMaster``)."""

    def __init__(self, lu: "LogicalUnit") -> None:
        self.lu = lu
        self.cfg = lu.cfg
        self.pre_env: dict[str, str] = {}
        self.pre_nodes: list[str] = []
        self.post_nodes: list[str] = []

    def _common_env(self, phase: str) -> dict[str, str]:
        cluster = self.cfg.get_cluster()
        master = self.cfg.get_master_node()
        return {
            "GANETI_HOOKS_VERSION": str(C.HOOKS_VERSION),
            "GANETI_HOOKS_PHASE": phase,
            "GANETI_HOOKS_PATH": self.lu.HPATH or "",
            "GANETI_OP_CODE": self.lu.op.OP_ID,
            "GANETI_OBJECT_TYPE": self.lu.HTYPE or "",
            "GANETI_CLUSTER": cluster.cluster_name,
            "GANETI_MASTER": master.name,
            "GANETI_DATA_DIR": HOOKS_DATA_DIR,
        }

    def _lu_env(self) -> dict[str, str]:
        return {k: _env_value(v) for k, v in self.lu.build_hooks_env().items()}

    def run_pre(self) -> None:
        """Build the environment, run the pre phase; raise HooksAbort on failure."""
        pre, post = self.lu.build_hooks_nodes()
        self.pre_nodes, self.post_nodes = list(pre), list(post)
        self.pre_env = {f"GANETI_{k}": v for k, v in self._lu_env().items()}
        if not self.pre_nodes:
            return
        env = {**self._common_env(C.HOOKS_PHASE_PRE), **self.pre_env}
        failures = self._run(C.HOOKS_PHASE_PRE, self.pre_nodes, env)
        if failures:
            raise errors.HooksAbort(
                "Hooks failed in the pre phase: " + "; ".join(failures), errors.ECODE_STATE)

    def run_post(self, feedback_fn: Callable[[str], None]) -> None:
        """Run the post phase; failures become warnings in the job log."""
        nodes = self.lu.prepare_post_hook_nodes(self.post_nodes)
        if not nodes:
            return
        post_env = {f"GANETI_POST_{k}": v for k, v in self._lu_env().items()}
        env = {**self._common_env(C.HOOKS_PHASE_POST), **self.pre_env, **post_env}
        for failure in self._run(C.HOOKS_PHASE_POST, nodes, env):
            feedback_fn(f"Warning: post hook failed: {failure}")

    def _run(self, phase: str, node_uuids: list[str], env: dict[str, str]) -> list[str]:
        results = self.lu.rpc.call("hooks_runner", node_uuids, [self.lu.HPATH, phase, env])
        failures: list[str] = []
        for node_uuid, res in results.items():
            node = self.cfg.get_node(node_uuid)
            node_name = node.name if node else node_uuid
            if res.fail_msg:
                # Unreachable nodes do not block the operation (Ganeti).
                self.lu.log_warning(f"Communication failure to node {node_name} while "
                                    f"running {phase} hooks: {res.fail_msg}")
                continue
            for script, status, output in res.payload or []:
                if status == C.HKR_FAIL:
                    failures.append(f"node {node_name}, script {script}: "
                                    f"{(output or '').strip()[-500:]}")
        return failures
