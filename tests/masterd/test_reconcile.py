"""Reconciliation after interrupted jobs, against a real node daemon."""

from __future__ import annotations

import time
from typing import Any

import pytest

from corral import constants as C
from corral import daemons
from corral.config import ConfigStore
from corral.locking import LockManager
from corral.masterd.context import MasterContext
from corral.masterd.reconcile import (
    incomplete_instance_jobs,
    instances_named,
    reconcile_lost_jobs,
)
from corral.rpc import RpcRunner

pytestmark = pytest.mark.integration


def test_instances_named() -> None:
    lost = [(3, [{"OP_ID": "OP_INSTANCE_RENAME", "instance_name": "a", "new_name": "b"}]),
            (4, [{"OP_ID": "OP_TEST_DELAY", "duration": 1}]),
            (5, [{"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "a"}])]
    assert instances_named(lost) == {"a": 3, "b": 3}


def _create(client: Any, name: str) -> None:
    client.wait_job(client.submit_job([{
        "OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
        "disk_template": "diskless", "os_type": "noop", "pnode": "node1", "disks": [],
        "nics": [], "name_check": False, "ip_check": False,
        "beparams": {"maxmem": 64, "minmem": 64}}]), timeout=120)


def test_admin_state_follows_the_node(dev_cluster, ganeti_os_noop) -> None:
    cluster = dev_cluster(1)
    with cluster.client() as client:
        _create(client, "up-but-down")      # running, config will say down
        _create(client, "down-but-up")      # stopped on the node, config says up
        _create(client, "untouched")        # named by no lost job
    paths = cluster.master_paths
    assert daemons.stop_daemon(paths, daemons.MASTERD)
    fake_dir = paths.hypervisor_run_dir(C.HT_FAKE)
    (fake_dir / "down-but-up").unlink()
    (fake_dir / "untouched").unlink()

    cfg = ConfigStore.open(paths.config_db)
    try:
        inst = cfg.get_instance_by_name("up-but-down").model_copy(deep=True)
        inst.admin_state = C.ADMINST_DOWN
        cfg.commit(update=[inst])
        context = MasterContext(paths=paths, cfg=cfg, rpc=RpcRunner(cfg, paths),
                                glm=LockManager())
        lost = [(11, [{"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "up-but-down"}]),
                (12, [{"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "down-but-up"}]),
                (13, [{"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "gone"}])]
        changes = reconcile_lost_jobs(context, lost)
        assert len(changes) == 2
        assert cfg.get_instance_by_name("up-but-down").admin_state == C.ADMINST_UP
        assert cfg.get_instance_by_name("down-but-up").admin_state == C.ADMINST_DOWN
        # Instances no interrupted job named are left for verify to report.
        assert cfg.get_instance_by_name("untouched").admin_state == C.ADMINST_UP
        assert reconcile_lost_jobs(context, lost) == []
        context.rpc.close()
    finally:
        cfg.close()


def test_half_created_instances_are_removed_at_start(dev_cluster, ganeti_os_noop) -> None:
    cluster = dev_cluster(1)
    with cluster.client() as client:
        _create(client, "half")             # will be marked as left by job 4242
        _create(client, "whole")
        _create(client, "half-running")     # marked, and started on the node
    paths = cluster.master_paths
    assert daemons.stop_daemon(paths, daemons.MASTERD)
    (paths.hypervisor_run_dir(C.HT_FAKE) / "half").unlink()
    cfg = ConfigStore.open(paths.config_db)
    try:
        marked = []
        for name in ("half", "half-running"):
            inst = cfg.get_instance_by_name(name).model_copy(deep=True)
            inst.creating_job = 4242
            inst.admin_state = C.ADMINST_DOWN
            marked.append(inst)
        cfg.commit(update=marked)
        context = MasterContext(paths=paths, cfg=cfg, rpc=RpcRunner(cfg, paths),
                                glm=LockManager())
        # Marked instances are left to their removal, not reconciled.
        lost = [(4242, [{"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "half-running"}])]
        assert reconcile_lost_jobs(context, lost) == []
        assert cfg.get_instance_by_name("half-running").admin_state == C.ADMINST_DOWN
        jobs = incomplete_instance_jobs(context, [])
        assert [(job[0]["OP_ID"], job[0]["instance_name"], job[0]["ignore_failures"],
                 job[0]["priority"]) for job in jobs] == [
            ("OP_INSTANCE_REMOVE", "half", True, C.OP_PRIO_HIGH),
            ("OP_INSTANCE_REMOVE", "half-running", True, C.OP_PRIO_HIGH)]
        # A removal already queued (before another crash) is not submitted twice.
        pending = [(7, [{"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "half"}])]
        assert [job[0]["instance_name"] for job in
                incomplete_instance_jobs(context, pending)] == ["half-running"]
        context.rpc.close()
    finally:
        cfg.close()

    daemons.start_masterd(paths)
    with cluster.client() as client:
        deadline = time.monotonic() + 60
        while True:
            names = {row[0][1] for row in client.query("instance", ["name"])["data"]}
            if names == {"whole"} or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert names == {"whole"}
        rows = client.query_jobs(None, ["status", "ops"])
        removals = [(status, ops[0]["instance_name"]) for status, ops in rows
                    if ops[0]["OP_ID"] == "OP_INSTANCE_REMOVE"]
        assert sorted(removals) == [("success", "half"), ("success", "half-running")]
    assert not (paths.hypervisor_run_dir(C.HT_FAKE) / "half-running").exists()
