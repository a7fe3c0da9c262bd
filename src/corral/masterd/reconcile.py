"""Reconcile the configuration after jobs were interrupted by a masterd crash.

A job that was running when the master daemon died may have changed a node
without recording it (an instance started, its admin state not yet
committed), or the other way round. Ganeti leaves such cases to the watcher
and ``gnt-cluster verify``; Corral repairs them when masterd starts, before
any other job runs: for every instance an interrupted job named, the admin
state follows what its primary node really runs. Nothing is started,
stopped or deleted on the nodes; every change is logged.

Instances a create job has not completed (``Instance.creating_job`` set,
see :mod:`corral.cmdlib.instance_create`) are not reconciled but removed:
:func:`incomplete_instance_jobs` gives masterd one OP_INSTANCE_REMOVE job
(``ignore_failures``, so disks already made on a node go too) per such
instance, submitted before the requeued jobs run. Ganeti has no such step:
there, an interrupted create leaves a normal-looking stopped instance.
"""

from __future__ import annotations

import logging
from typing import Any

from corral import constants as C
from corral import errors
from corral.masterd.context import MasterContext

log = logging.getLogger(__name__)

_NAME_KEYS = ("instance_name", "new_name")


def instances_named(lost_jobs: list[tuple[int, list[dict[str, Any]]]]) -> dict[str, int]:
    """Instance names mentioned by the opcodes of ``lost_jobs`` -> job id."""
    names: dict[str, int] = {}
    for job_id, ops in lost_jobs:
        for op in ops:
            for key in _NAME_KEYS:
                value = op.get(key)
                if isinstance(value, str) and value:
                    names.setdefault(value, job_id)
    return names


def running_instances(context: MasterContext, node_uuids: list[str]) -> dict[str, set[str]] | None:
    """Node UUID -> names of running instances; None if a node did not answer."""
    cluster = context.cfg.get_cluster()
    hvs = list(cluster.enabled_hypervisors)
    hvparams = {hv: cluster.get_hv_defaults(hv) for hv in hvs}
    results = context.rpc.call("all_instances_info", node_uuids, [hvs, hvparams])
    running: dict[str, set[str]] = {}
    for uuid, res in results.items():
        if res.fail_msg:
            log.warning("Cannot reconcile: node %s did not answer: %s", uuid, res.fail_msg)
            return None
        running[uuid] = set(res.payload or {})
    return running


def reconcile_lost_jobs(context: MasterContext,
                        lost_jobs: list[tuple[int, list[dict[str, Any]]]]) -> list[str]:
    """Make the admin state of instances touched by ``lost_jobs`` match reality.

    Returns the messages of the changes made (also logged). Instances whose
    primary node is offline or unreachable are left alone.
    """
    cfg = context.cfg
    named = instances_named(lost_jobs)
    # Half-created instances are removed by incomplete_instance_jobs instead.
    instances = [i for i in (cfg.get_instance_by_name(n) for n in named)
                 if i is not None and i.creating_job is None]
    if not instances:
        return []
    nodes = sorted({i.primary_node for i in instances
                    if (n := cfg.get_node(i.primary_node)) is not None and not n.offline})
    running = running_instances(context, nodes) if nodes else {}
    if running is None:
        return []
    changes: list[str] = []
    for inst in instances:
        on_primary = running.get(inst.primary_node)
        if on_primary is None:
            continue
        is_running = inst.name in on_primary
        want = C.ADMINST_UP if is_running else C.ADMINST_DOWN
        if inst.admin_state == want or inst.admin_state == C.ADMINST_OFFLINE:
            continue
        new = inst.model_copy(deep=True)
        new.admin_state = want
        new.disks_active = is_running
        try:
            cfg.commit(update=[new])
        except errors.CorralError as err:
            log.warning("Cannot reconcile instance %s: %s", inst.name, err)
            continue
        msg = (f"Instance {inst.name}: admin state set to {want} to match its primary node "
               f"after job {named[inst.name]} was interrupted by a master daemon restart")
        log.warning("%s", msg)
        changes.append(msg)
    return changes


def incomplete_instance_jobs(context: MasterContext,
                             pending: list[tuple[int, list[dict[str, Any]]]]
                             ) -> list[list[dict[str, Any]]]:
    """Jobs removing the instances no create job is completing any more.

    Called when masterd starts, before any job runs: then no create job is
    running, so every instance still marked ``creating_job`` was left by a
    create that was interrupted (or that failed and could not clean up).
    ``pending`` is ``[(job_id, [opcode dicts])]`` of the requeued jobs: an
    instance whose removal is already among them (a cleanup job submitted
    before another crash) gets no second one. Returns one job per instance,
    each ``[OP_INSTANCE_REMOVE]`` with ``ignore_failures`` and high priority;
    each is logged.
    """
    queued_removals = {op.get("instance_name") for _, ops in pending for op in ops
                       if op.get("OP_ID") == "OP_INSTANCE_REMOVE"}
    pending_ids = {job_id for job_id, _ in pending}
    jobs: list[list[dict[str, Any]]] = []
    for inst in sorted(context.cfg.get_instances().values(), key=lambda i: i.name):
        if inst.creating_job is None or inst.creating_job in pending_ids or \
                inst.name in queued_removals:
            continue
        log.warning("Instance %s was left half-created by job %s; submitting its removal",
                    inst.name, inst.creating_job)
        jobs.append([{"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": inst.name,
                      "ignore_failures": True, "shutdown_timeout": 0,
                      "priority": C.OP_PRIO_HIGH,
                      "comment": f"cleanup of instance left half-created by job "
                                 f"{inst.creating_job}"}])
    return jobs
