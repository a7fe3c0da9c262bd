"""Node migrate and node evacuate (LUNodeMigrate, LUNodeEvacuate) on a dev cluster
with the fake hypervisor: one follow-up job per primary instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import errors

pytestmark = pytest.mark.integration


def _create_op(name: str, pnode: str, template: str = C.DT_SHARED_FILE,
               **extra: Any) -> dict[str, Any]:
    return {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
            "disk_template": template, "os_type": "noop", "pnode": pnode,
            "disks": [] if template == C.DT_DISKLESS else [{"size": 16}],
            "nics": [], "name_check": False, "ip_check": False,
            "beparams": {"maxmem": 64, "minmem": 64}, **extra}


def _run(client: Any, op: dict[str, Any], log: list[str] | None = None) -> Any:
    def feedback(entry: Any) -> None:
        if log is not None:
            log.append(str(entry[2]))
    return client.wait_job(client.submit_job([op]), feedback_fn=feedback, timeout=300)[0]


def _wait_children(client: Any, result: dict[str, Any]) -> list[int]:
    ids = []
    for ok, job_id in result["jobs"]:
        assert ok, job_id
        client.wait_job(job_id, timeout=300)
        ids.append(job_id)
    return ids


def _pnodes(client: Any) -> dict[str, tuple[str, str]]:
    rows = client.query("instance", ["name", "pnode", "status"])["data"]
    return {r[0][1]: (r[1][1], r[2][1]) for r in rows}


def _runs_on(cluster: Any, name: str) -> list[str]:
    return [n.name for n in cluster.nodes
            if (n.paths.hypervisor_run_dir("fake") / name).exists()]


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any, ganeti_os_noop: Path) -> Any:
    return module_dev_cluster(3)


@pytest.fixture
def client(cluster: Any, master_client: Any) -> Any:
    return master_client(cluster)


@pytest.fixture
def instances(client: Any) -> Any:
    """Creates the given instances; removes every instance after the test."""
    def make(*specs: tuple[str, str, str, bool]) -> None:
        jobs = [[_create_op(name, pnode, template, start=start)]
                for name, pnode, template, start in specs]
        for ok, job_id in client.submit_many(jobs):
            assert ok, job_id
            client.wait_job(job_id, timeout=300)

    yield make
    for name in _pnodes(client):
        _run(client, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                      "shutdown_timeout": 5, "ignore_failures": True})


def test_node_migrate_one_job_per_instance(cluster, client, instances):
    instances(("nm-a", "node2", C.DT_SHARED_FILE, True),
              ("nm-b", "node2", C.DT_DISKLESS, True),
              ("nm-c", "node2", C.DT_SHARED_FILE, True),
              ("nm-other", "node3", C.DT_DISKLESS, True))
    log: list[str] = []
    result = _run(client, {"OP_ID": "OP_NODE_MIGRATE", "node_name": "node2",
                           "target_node": "node1", "mode": "non-live"}, log)
    assert len(result["jobs"]) == 3
    job_ids = _wait_children(client, result)
    summaries = sorted(row[0][0] for row in client.query_jobs(job_ids, ["summary"]))
    assert summaries == ["INSTANCE_MIGRATE(nm-a)", "INSTANCE_MIGRATE(nm-b)",
                         "INSTANCE_MIGRATE(nm-c)"]
    assert any("Submitting 3 migration job(s)" in line for line in log)
    pnodes = _pnodes(client)
    for name in ("nm-a", "nm-b", "nm-c"):
        assert pnodes[name] == ("node1", "running")
        assert _runs_on(cluster, name) == ["node1"]
    assert pnodes["nm-other"] == ("node3", "running")

    # Nothing left: no jobs.
    assert _run(client, {"OP_ID": "OP_NODE_MIGRATE", "node_name": "node2",
                         "target_node": "node1"})["jobs"] == []
    with pytest.raises(errors.OpPrereqError, match="to the node itself"):
        _run(client, {"OP_ID": "OP_NODE_MIGRATE", "node_name": "node1",
                      "target_node": "node1"})
    # Without a target each instance job says why it cannot run.
    result = _run(client, {"OP_ID": "OP_NODE_MIGRATE", "node_name": "node3"})
    (ok, job_id), = result["jobs"]
    assert ok
    with pytest.raises(errors.OpPrereqError, match="No iallocator or node given"):
        client.wait_job(job_id, timeout=300)
    assert _pnodes(client)["nm-other"] == ("node3", "running")


def test_node_evacuate_primary_only(cluster, client, instances):
    instances(("ev-run", "node3", C.DT_SHARED_FILE, True),
              ("ev-down", "node3", C.DT_SHARED_FILE, False),
              ("ev-dl", "node3", C.DT_DISKLESS, True))
    # Refused before anything is submitted.
    for op, text in [
            ({"mode": "all", "remote_node": "node2"}, "Corral has no DRBD yet"),
            ({"mode": "primary-only"}, "No iallocator or node given"),
            ({"mode": "primary-only", "iallocator": "hail"}, "not implemented"),
            ({"mode": "primary-only", "remote_node": "node3"}, "evacuated node")]:
        with pytest.raises(errors.OpPrereqError, match=text):
            _run(client, {"OP_ID": "OP_NODE_EVACUATE", "node_name": "node3", **op})
    # No secondary instances without DRBD: nothing to do.
    assert _run(client, {"OP_ID": "OP_NODE_EVACUATE", "node_name": "node3",
                         "mode": "secondary-only", "remote_node": "node2"})["jobs"] == []
    assert all(p == "node3" for p, _ in _pnodes(client).values())

    result = _run(client, {"OP_ID": "OP_NODE_EVACUATE", "node_name": "node3",
                           "mode": "primary-only", "remote_node": "node2"})
    assert len(result["jobs"]) == 3
    _wait_children(client, result)
    pnodes = _pnodes(client)
    assert pnodes["ev-run"] == ("node2", "running")
    assert pnodes["ev-dl"] == ("node2", "running")
    assert pnodes["ev-down"] == ("node2", "ADMIN_down")     # failed over, not started
    assert _runs_on(cluster, "ev-run") == ["node2"]
    assert _runs_on(cluster, "ev-down") == []
    # Empty node: mode "all" has nothing to do either.
    assert _run(client, {"OP_ID": "OP_NODE_EVACUATE", "node_name": "node3",
                         "mode": "all", "remote_node": "node2"})["jobs"] == []
