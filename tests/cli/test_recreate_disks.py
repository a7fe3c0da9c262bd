"""``gnt-instance recreate-disks`` and ``/2/instances/[name]/recreate-disks``
(OP_INSTANCE_RECREATE_DISKS) on a real 2-node dev cluster with file disks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral import constants as C

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
USER, PASSWORD = "rwriter", "rsecret"


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any, rapi_users: Any, ganeti_os_noop: Path) -> Any:
    c = module_dev_cluster(2)
    rapi_users(c, f"{USER} {PASSWORD} write\n")
    return c


def _ok(run_cli: Any, cluster: Any, *args: str) -> str:
    res = run_cli(list(args), cluster, timeout=180)
    assert res.returncode == 0, f"{args}: {res.stdout}{res.stderr}"
    return res.stdout


def _files(cluster: Any, node: str, name: str) -> list[Path]:
    root = cluster.node(node).paths.real(f"{C.DEFAULT_FILE_STORAGE_DIR}/{name}")
    # In disk order (names are <uuid>.<template>.disk<N>).
    return sorted(root.glob("*.disk*"), key=lambda p: int(p.name.rsplit("disk", 1)[1])) \
        if root.exists() else []


def test_recreate_missing_disk(cluster: Any, run_cli: Any, master_client: Any) -> None:
    _ok(run_cli, cluster, "gnt-instance", "add", "-t", "file", "--disk", "0:size=32M",
        "--disk", "1:size=48M", "-o", "noop", "-n", "node1", "--no-name-check",
        "--no-ip-check", "--no-start", "rc1")
    files = _files(cluster, "node1", "rc1")
    assert len(files) == 2
    files[1].unlink()
    # Disk 0 still exists: the node refuses to create it again; nothing changes.
    res = run_cli(["gnt-instance", "recreate-disks", "--disk", "0", "rc1"], cluster)
    assert res.returncode != 0 and "File already exists" in res.stdout + res.stderr
    assert not files[1].exists()
    _ok(run_cli, cluster, "gnt-instance", "recreate-disks", "--disk", "1:size=64M", "rc1")
    assert files[1].stat().st_size == 64 * MIB and files[0].stat().st_size == 32 * MIB
    sizes = master_client(cluster).query_instances(["rc1"], ["disk.sizes"])[0][0]
    assert sizes == [32, 64]
    _ok(run_cli, cluster, "gnt-instance", "startup", "rc1")
    res = run_cli(["gnt-instance", "recreate-disks", "rc1"], cluster)
    assert res.returncode != 0 and "cannot recreate disks" in res.stderr
    _ok(run_cli, cluster, "gnt-instance", "shutdown", "rc1")


def test_recreate_on_another_node(cluster: Any, run_cli: Any, master_client: Any) -> None:
    _ok(run_cli, cluster, "gnt-instance", "add", "-t", "file", "-s", "16M", "-o", "noop",
        "-n", "node1", "--no-name-check", "--no-ip-check", "--no-start", "rc2")
    for path in _files(cluster, "node1", "rc2"):
        path.unlink()
    res = run_cli(["gnt-instance", "recreate-disks", "--disk", "0", "-n", "node1:node2",
                   "rc2"], cluster)
    assert res.returncode != 0 and "1 nodes, but 2 replacement nodes" in res.stderr
    base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
    with httpx.Client(verify=False, timeout=60, auth=(USER, PASSWORD)) as http:
        job_id = http.post(f"{base}/2/instances/rc2/recreate-disks",
                           json={"nodes": ["node2"]}).json()
        deadline = time.monotonic() + 60
        while (job := http.get(f"{base}/2/jobs/{job_id}").json())["status"] not in \
                C.JOBS_FINALIZED and time.monotonic() < deadline:
            time.sleep(0.1)
        assert job["status"] == C.JOB_STATUS_SUCCESS, json.dumps(job)[:2000]
    [path] = _files(cluster, "node2", "rc2")
    assert path.stat().st_size == 16 * MIB
    [[pnode, sizes]] = master_client(cluster).query_instances(["rc2"], ["pnode", "disk.sizes"])
    assert pnode == "node2" and sizes == [16]
    _ok(run_cli, cluster, "gnt-instance", "startup", "rc2")


def test_refusals(cluster: Any, run_cli: Any) -> None:
    _ok(run_cli, cluster, "gnt-instance", "add", "-t", "diskless", "-o", "noop",
        "-n", "node1", "--no-name-check", "--no-ip-check", "--no-start", "rc3")
    for args, message in [
        (["rc3"], "template 'diskless' is not supported"),
        (["--disk", "0", "--disk", "0", "rc1"], "specified more than once: 0"),
        (["--disk", "5", "rc1"], "Invalid disk index '5'"),
        (["--disk", "0:vg=xenvg", "rc1"], "unmodifyable parameter(s): vg"),
        (["-I", "hail", "rc1"], "iallocator is not implemented"),
        (["--disk", "0", "-n", "node2", "rc1"], "partially and change the nodes"),
    ]:
        res = run_cli(["gnt-instance", "recreate-disks", *args], cluster)
        assert res.returncode != 0 and message in res.stderr, (args, res.stderr)
