"""Reconciliation after interrupted jobs, against a real node daemon."""

from __future__ import annotations

from typing import Any

import pytest

from corral import constants as C
from corral import daemons
from corral.config import ConfigStore
from corral.locking import LockManager
from corral.masterd.context import MasterContext
from corral.masterd.reconcile import instances_named, reconcile_lost_jobs
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
