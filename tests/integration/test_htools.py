"""Debian's htools (Ganeti 3.0's Haskell ``hbal`` and ``hspace``, package
ganeti-htools) load a Corral cluster with two node groups over RAPI."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

# Ganeti's default bounds (the dev cluster's are wider than htools can
# explore in reasonable time).
BOUNDS = ("min:memory-size=128,cpu-count=1,disk-count=0,disk-size=0,nic-count=0,"
          "spindle-use=0/max:memory-size=4096,cpu-count=4,disk-count=4,disk-size=10240,"
          "nic-count=4,spindle-use=4")


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any, ganeti_os_noop: Path) -> Any:
    if not shutil.which("hbal"):
        pytest.fail("Debian's ganeti-htools is not installed; run ./scripts/setup.sh")
    return module_dev_cluster(3)


def _ok(run_cli: Any, cluster: Any, *args: str) -> str:
    res = run_cli(list(args), cluster, timeout=120)
    assert res.returncode == 0, f"{args}: {res.stdout}{res.stderr}"
    return res.stdout


def test_hbal_and_hspace_load_two_groups(cluster: Any, run_cli: Any) -> None:
    _ok(run_cli, cluster, "gnt-cluster", "modify", "--ipolicy-bounds-specs", BOUNDS)
    _ok(run_cli, cluster, "gnt-group", "add", "rack2")
    _ok(run_cli, cluster, "gnt-group", "assign-nodes", "rack2", "node3")
    for name, node in (("ht1", "node1"), ("ht2", "node1"), ("ht3", "node2"), ("ht4", "node3")):
        _ok(run_cli, cluster, "gnt-instance", "add", "-t", "diskless", "-o", "noop", "-n",
            node, "-B", "maxmem=256M,minmem=256M", "--no-name-check", "--no-ip-check", name)
    url = f"https://{cluster.master.ip}:{cluster.rapi_port}"
    res = subprocess.run(["hbal", "-m", url, "-G", "default"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Loaded 3 nodes, 4 instances" in res.stdout
    assert "Selected node group: default" in res.stdout
    assert re.search(r"Initial score: \d+\.\d+", res.stdout), res.stdout
    assert "Solution length=" in res.stdout
    res = subprocess.run(["hspace", "-m", url, "--machine-readable"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"HTS_INI_SCORE=\d+\.\d+", res.stdout), res.stdout
    assert re.search(r"HTS_ALLOC_INSTANCES=\d+", res.stdout), res.stdout
