"""Acceptance tests of the control plane on real 3-node dev clusters.

Each test mirrors one "Done when" item of the control-plane issue: parallel
instance creation and every instance operation, a dead node daemon, a killed
master daemon, and bad input refused with the config unchanged.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral import constants as C
from corral import daemons, errors
from corral.config.db import META_SERIAL

pytestmark = pytest.mark.integration

NOOP = "noop"


def _create_op(name: str, pnode: str, template: str = C.DT_DISKLESS,
               size: int | str = 64, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {
        "OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
        "disk_template": template, "os_type": NOOP, "pnode": pnode,
        "disks": [] if template == C.DT_DISKLESS else [{"size": size}],
        "nics": [], "name_check": False, "ip_check": False,
        "beparams": {"maxmem": 64, "minmem": 64},
    }
    op.update(extra)
    return op


def _run(client: Any, *ops: dict[str, Any]) -> list[Any]:
    return client.wait_job(client.submit_job(list(ops)), timeout=300)


def _instances(client: Any) -> dict[str, dict[str, Any]]:
    fields = ["name", "pnode", "status", "admin_state", "disk_template", "be/maxmem"]
    rows = client.query("instance", fields)["data"]
    return {row[0][1]: {f: cell[1] for f, cell in zip(fields, row)} for row in rows}


def _verify_clean(client: Any) -> list[str]:
    """Run OP_CLUSTER_VERIFY and its child jobs; returns their log lines."""
    result = _run(client, {"OP_ID": "OP_CLUSTER_VERIFY"})[0]
    lines: list[str] = []
    ok = True
    for success, job_id in result["jobs"]:
        assert success, job_id
        res = client.wait_job(job_id, feedback_fn=lambda e: lines.append(e[2]), timeout=120)
        ok = ok and all(res)
    assert ok, "\n".join(lines)
    return lines


def _fake_state(cluster: Any, node: str, instance: str) -> Path:
    return cluster.node(node).paths.hypervisor_run_dir("fake") / instance


def test_parallel_create_and_all_operations(dev_cluster, master_client, ganeti_os_noop):
    cluster = dev_cluster(3)
    client = master_client(cluster)
    nodes = ["node1", "node2", "node3"]
    jobs = [[_create_op(f"dl{i:02d}", nodes[i % 3])] for i in range(20)]
    jobs += [[_create_op(f"file{i}", nodes[i], C.DT_FILE, "100M")] for i in range(3)]
    submitted = client.submit_many(jobs)
    assert all(ok for ok, _ in submitted), submitted
    for _ok, job_id in submitted:
        client.wait_job(job_id, timeout=300)

    insts = _instances(client)
    assert len(insts) == 23
    for i in range(20):
        assert insts[f"dl{i:02d}"]["pnode"] == nodes[i % 3]
        assert insts[f"dl{i:02d}"]["status"] == "running"
    for i in range(3):
        assert insts[f"file{i}"]["pnode"] == nodes[i]
        disk_dir = cluster.node(nodes[i]).paths.root / "srv/corral/file-storage" / f"file{i}"
        files = list(disk_dir.iterdir())
        assert len(files) == 1 and files[0].stat().st_size == 100 * 1024 * 1024

    # shutdown / startup / reboot, seen in the fake hypervisor's state files
    state = _fake_state(cluster, "node2", "file1")
    assert state.exists()
    _run(client, {"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "file1", "timeout": 5})
    assert not state.exists()
    assert _instances(client)["file1"]["status"] == "ADMIN_down"
    _run(client, {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "file1"})
    assert state.exists()
    for kind in ("soft", "hard", "full"):
        _run(client, {"OP_ID": "OP_INSTANCE_REBOOT", "instance_name": "file1",
                      "reboot_type": kind})
        assert state.exists()
    assert _instances(client)["file1"]["status"] == "running"

    # rename (needs a stopped instance): the disk directory follows the name
    _run(client, {"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "file0", "timeout": 5})
    _run(client, {"OP_ID": "OP_INSTANCE_RENAME", "instance_name": "file0",
                  "new_name": "renamed0", "name_check": False, "ip_check": False})
    insts = _instances(client)
    assert "file0" not in insts and "renamed0" in insts
    root1 = cluster.node("node1").paths.root / "srv/corral/file-storage"
    assert (root1 / "renamed0").is_dir() and not (root1 / "file0").exists()

    # modify: memory, vcpus and a second disk while stopped
    _run(client, {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "renamed0",
                  "beparams": {"maxmem": 96, "minmem": 96, "vcpus": 2},
                  "disks": [["add", {"size": 32}]]})
    insts = _instances(client)
    assert insts["renamed0"]["be/maxmem"] == 96
    assert len(list((root1 / "renamed0").iterdir())) == 2
    _run(client, {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "renamed0"})

    # remove: config entry, disks and hypervisor state are gone
    _run(client, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "file2",
                  "shutdown_timeout": 5})
    assert "file2" not in _instances(client)
    assert not _fake_state(cluster, "node3", "file2").exists()
    root3 = cluster.node("node3").paths.root / "srv/corral/file-storage"
    assert not (root3 / "file2").exists()

    _verify_clean(client)


def test_dead_node_daemon(dev_cluster, master_client, ganeti_os_noop):
    cluster = dev_cluster(3)
    client = master_client(cluster)
    _run(client, _create_op("on1", "node1"))
    _run(client, _create_op("on3", "node3"))
    node3 = cluster.node("node3")
    pid = daemons.daemon_pid(node3.paths, "noded")
    assert pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while daemons.daemon_running(node3.paths, "noded") and time.monotonic() < deadline:
        time.sleep(0.1)

    # Touching node3 fails with an error naming the node.
    with pytest.raises(errors.CorralError) as exc:
        _run(client, {"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "on3", "timeout": 5})
    assert "node3" in str(exc.value)
    with pytest.raises(errors.CorralError) as exc:
        _run(client, _create_op("new3", "node3"))
    assert "node3" in str(exc.value)
    assert "new3" not in _instances(client)

    # Elsewhere everything keeps working.
    _run(client, {"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "on1", "timeout": 5})
    _run(client, {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "on1"})
    _run(client, _create_op("new1", "node2"))
    assert _instances(client)["on3"]["status"] == "ERROR_nodedown"

    daemons.start_noded(node3.paths, node3.ip, node3.noded_port)
    assert _instances(client)["on3"]["status"] == "running"
    _verify_clean(client)


def test_masterd_killed_with_queued_jobs(dev_cluster, master_client, ganeti_os_noop):
    cluster = dev_cluster(3)
    client = master_client(cluster)
    nodes = ["node1", "node2", "node3"]
    job_ids = []
    for i in range(30):
        if i % 3 == 0:
            ops = [_create_op(f"k{i:02d}", nodes[i % 3])]
        else:
            ops = [{"OP_ID": "OP_TEST_DELAY", "duration": 0.5}]
        job_ids.append(client.submit_job(ops))
    master = cluster.master
    pid = daemons.daemon_pid(master.paths, "masterd")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while daemons.daemon_running(master.paths, "masterd") and time.monotonic() < deadline:
        time.sleep(0.1)
    daemons.start_masterd(master.paths)
    client = master_client(cluster)

    for job_id in job_ids:
        try:
            client.wait_job(job_id, timeout=300)
        except errors.CorralError as err:
            # A job that was running when masterd died ends in error with a reason.
            assert str(err), f"job {job_id} failed without a reason"
    rows = client.query_jobs(job_ids, ["id", "status", "opresult"])
    assert len(rows) == 30
    for job_id, status, opresult in rows:
        assert status in (C.JOB_STATUS_SUCCESS, C.JOB_STATUS_ERROR), (job_id, status)
        if status == C.JOB_STATUS_ERROR:
            assert any(r for r in opresult), (job_id, opresult)

    # Config and reality agree: any half-created instance must be consistent.
    _verify_clean(client)


def _config_serial(cluster: Any) -> int:
    """The config-wide serial number, read without disturbing masterd."""
    uri = f"file:{cluster.master_paths.config_db}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        (value,) = conn.execute("SELECT value FROM meta WHERE key = ?",
                                (META_SERIAL,)).fetchone()
    return int(value)


def test_bad_input_refused_config_unchanged(dev_cluster, master_client, ganeti_os_noop,
                                            tmp_path):
    cluster = dev_cluster(3)
    client = master_client(cluster)
    _run(client, _create_op("exists", "node1"))
    serial = _config_serial(cluster)

    cases = [
        (_create_op("x1", "node1", bogus_field=1), errors.ECODE_INVAL),
        (_create_op("x2", "node1", C.DT_FILE, -5), errors.ECODE_INVAL),
        (_create_op("exists", "node2"), errors.ECODE_EXISTS),
        (_create_op("x3", "nosuchnode"), errors.ECODE_NOENT),
        (_create_op("x4", "node1", C.DT_FILE, 10, file_storage_dir="../../etc"),
         errors.ECODE_INVAL),
    ]
    for op, ecode in cases:
        with pytest.raises(errors.CorralError) as exc:
            _run(client, op)
        assert exc.value.ecode == ecode, (op, exc.value)
    assert _config_serial(cluster) == serial
    assert set(_instances(client)) == {"exists"}

    # RAPI: anonymous write -> 401, read-only user -> 403, nothing changes.
    users = cluster.master_paths.rapi_users
    users.parent.mkdir(parents=True, exist_ok=True)
    users.write_text("reader secret read\nwriter secret2 write\n")
    base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
    body = {"__version__": 1, "name": "viarapi", "mode": "create", "disk_template": "diskless",
            "os": NOOP, "pnode": "node1", "disks": [], "nics": [], "name_check": False,
            "ip_check": False}
    with httpx.Client(verify=False, timeout=30) as http:
        assert http.get(f"{base}/version").json() == 2
        r = http.post(f"{base}/2/instances", json=body)
        assert r.status_code == 401
        r = http.post(f"{base}/2/instances", json=body, auth=("reader", "secret"))
        assert r.status_code == 403
        r = http.post(f"{base}/2/instances", json=body, auth=("writer", "wrong"))
        assert r.status_code == 401
    assert _config_serial(cluster) == serial
    assert set(_instances(client)) == {"exists"}

    # noded refuses a client without the cluster's client certificate.
    node2 = cluster.node("node2")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with httpx.Client(verify=ctx, timeout=10) as http:
        with pytest.raises((httpx.HTTPError, ssl.SSLError)):
            http.post(f"https://{node2.ip}:{node2.noded_port}/version", json=[])
