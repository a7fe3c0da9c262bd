"""Acceptance test: SIGKILL of masterd with 50 instance creates submitted.

A 2-node dev cluster (fake hypervisor, file disks for half of the
instances) gets 50 OP_INSTANCE_CREATE jobs at once; masterd is killed at
one of three moments, restarted, and every job is waited for. Then:

* no job that had not started is lost: every ``queued``/``waiting`` job ran
  to success after the restart (Ganeti's requeue rule);
* every job that was ``running`` ended in error with the JobLost reason;
* every instance in the configuration is complete (not marked, disks on
  its node); every instance the crash left half-created was removed by the
  job masterd submitted at start-up;
* no file in a node's file storage directory belongs to no instance
  (read from the file system directly);
* ``gnt-cluster verify`` is clean, since nothing is left.

Timing is controlled, not lucky: the OS create script of the test OS
blocks on a gate file, so "while jobs run" means exactly the creates
holding their node's locks are inside the OS install, with their disks
made (creates on one node are serialized by the node lock).
"""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import daemons, errors
from corral.config import ConfigStore
from corral.jobs.store import JobStore

pytestmark = pytest.mark.integration

GATED_OS = "corral-gated"
N_JOBS = 50
FILE_DIR = "/srv/corral/file-storage"
JOB_TIMEOUT = 120.0
# The create script: note its start, wait for the gate, note its end.
_GATED_CREATE = """#!/bin/sh
touch "{gate}/started.$INSTANCE_NAME"
while [ ! -e "{gate}/open" ]; do sleep 0.05; done
touch "{gate}/done.$INSTANCE_NAME"
"""


def _install_gated_os(cluster: Any, gate: Path) -> None:
    scripts = {"create": _GATED_CREATE.format(gate=gate), "ganeti_api_version": "20\n",
               "parameters.list": ""}
    scripts.update(dict.fromkeys(("import", "export", "rename", "verify"),
                                 "#!/bin/sh\nexit 0\n"))
    for node in cluster.nodes:
        directory = node.paths.os_dir / GATED_OS
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in scripts.items():
            path = directory / name
            path.write_text(text)
            if text.startswith("#!"):
                path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _create_op(idx: int) -> dict[str, Any]:
    """Instance ``crash-NN``: alternating nodes; file disks on every other pair."""
    with_disk = (idx // 2) % 2 == 0
    return {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": f"crash-{idx:02d}",
            "mode": "create", "os_type": GATED_OS, "pnode": f"node{idx % 2 + 1}",
            "disk_template": C.DT_FILE if with_disk else C.DT_DISKLESS,
            "disks": [{"size": 4}] if with_disk else [], "nics": [], "start": False,
            "name_check": False, "ip_check": False,
            "beparams": {"maxmem": 64, "minmem": 64}}


def _wait(predicate: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _statuses(client: Any, job_ids: list[int]) -> list[str]:
    return [row[0] for row in client.query_jobs(job_ids, ["status"])]


def _kill_masterd(paths: Any) -> None:
    pid = daemons.daemon_pid(paths, daemons.MASTERD)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: not daemons._alive(pid), "masterd to die", 10)


def _snapshot(paths: Any) -> tuple[dict[int, list[str]], dict[str, int]]:
    """What the dead masterd left: opcode statuses per job, marked instances."""
    store = JobStore(paths.queue_db, durable=False)
    try:
        jobs = {job_id: [op.status for op in job.ops]
                for job_id, job in store.load_jobs(store.job_ids()).items()}
    finally:
        store.close()
    cfg = ConfigStore.open(paths.config_db)
    try:
        marked = {inst.name: inst.creating_job for inst in cfg.get_instances().values()
                  if inst.creating_job is not None}
    finally:
        cfg.close()
    return jobs, marked


def _storage_files(cluster: Any) -> dict[str, set[str]]:
    """Node name -> every path below its file storage directory (virtual)."""
    found: dict[str, set[str]] = {}
    for node in cluster.nodes:
        base = node.paths.real(FILE_DIR)
        found[node.name] = {
            f"{FILE_DIR}/{path.relative_to(base)}" for path in base.rglob("*")
        } if base.is_dir() else set()
    return found


@pytest.mark.parametrize("moment", ["submitted", "running", "late"])
def test_masterd_sigkill_with_50_creates(moment: str, dev_cluster: Any, master_client: Any,
                                         run_cli: Any) -> None:
    cluster = dev_cluster(2)
    paths = cluster.master_paths
    gate = Path(cluster.directory) / "gate"
    gate.mkdir()
    _install_gated_os(cluster, gate)
    if moment == "late":
        (gate / "open").touch()
    client = master_client(cluster)
    submitted = client.submit_many([[_create_op(i)] for i in range(N_JOBS)])
    assert all(ok for ok, _ in submitted), submitted
    job_ids = [job_id for _, job_id in submitted]
    names = {job_id: f"crash-{i:02d}" for i, job_id in enumerate(job_ids)}

    if moment == "running":
        # One create per node is inside the OS install (its disks made); the
        # other 48 wait for the node locks or for a worker.
        _wait(lambda: len(list(gate.glob("started.*"))) == 2, "two OS installs")
        statuses = _statuses(client, job_ids)
        assert statuses.count("running") == 2, statuses
    elif moment == "late":
        _wait(lambda: _statuses(client, job_ids).count("success") >= 30, "30 creates")
    _kill_masterd(paths)
    before, marked = _snapshot(paths)
    installing = {p.name[8:] for p in gate.glob("started.*")}

    # Let the orphaned OS installs finish before the restart (noded goes on
    # with a request whose caller died).
    (gate / "open").touch()
    _wait(lambda: installing <= {p.name[5:] for p in gate.glob("done.*")},
          "orphaned OS installs")
    daemons.start_masterd(paths)
    client = master_client(cluster)
    for job_id in job_ids:
        try:
            client.wait_job(job_id, timeout=JOB_TIMEOUT)
        except errors.CorralError:
            pass
    all_jobs = client.query_jobs(None, ["id", "status", "ops", "opresult"])
    _wait(lambda: all(s in C.JOBS_FINALIZED for s in _statuses(client, [r[0] for r in all_jobs])),
          "the cleanup jobs")
    final = {row[0]: row for row in client.query_jobs(None, ["id", "status", "ops",
                                                               "opresult"])}

    # Jobs: requeued ones ran, running ones were lost with a reason.
    running = {j for j in job_ids if before[j] == ["running"]}
    not_started = {j for j in job_ids if before[j] in (["queued"], ["waiting"])}
    done = {j for j in job_ids if before[j] == ["success"]}
    assert running | not_started | done == set(job_ids), before
    if moment == "running":
        assert len(running) == 2 and len(not_started) == N_JOBS - 2
    for job_id in not_started | done:
        assert final[job_id][1] == C.JOB_STATUS_SUCCESS, final[job_id]
    for job_id in running:
        _, status, _, opresult = final[job_id]
        assert status == C.JOB_STATUS_ERROR
        assert opresult[0][0] == "JobLost"
        assert "Unclean master daemon shutdown" in opresult[0][1][0]

    # Instances: complete, or removed by masterd's cleanup job.
    assert set(marked.values()) <= running
    if moment == "running":
        assert set(marked) == installing
    removals = {row[2][0]["instance_name"]: row[1] for job_id, row in final.items()
                if job_id not in names and row[2][0]["OP_ID"] == "OP_INSTANCE_REMOVE"}
    assert removals == dict.fromkeys(marked, C.JOB_STATUS_SUCCESS)
    data = client.wait_job(client.submit_job([{"OP_ID": "OP_INSTANCE_QUERY_DATA",
                                               "static": True}]), timeout=JOB_TIMEOUT)[0]
    rows = client.query("instance", ["name", "status", "creating_job"])["data"]
    states = {row[0][1]: (row[1][1], row[2][1]) for row in rows}
    assert set(states) == set(data)
    assert set(data) >= {names[j] for j in not_started | done}
    assert set(data) <= {names[j] for j in job_ids} - set(marked)
    assert set(states.values()) <= {(C.INSTST_ADMINDOWN, None)}, states

    # Disks: each file instance has its disk on its node, and nothing else is there.
    expected: dict[str, set[str]] = {node.name: set() for node in cluster.nodes}
    for name, info in data.items():
        for disk in info["disks"]:
            vpath = disk["logical_id"][1]
            expected[info["pnode"]] |= {vpath, str(Path(vpath).parent)}
            real = cluster.node(info["pnode"]).paths.real(vpath)
            assert real.stat().st_size == 4 * 1024 * 1024, (name, real)
    assert _storage_files(cluster) == expected

    verify = run_cli(["gnt-cluster", "verify"], cluster, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ERROR" not in verify.stdout, verify.stdout
