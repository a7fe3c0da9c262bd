"""``gnt-node list-storage`` (OP_NODE_QUERY_STORAGE) on the shared 3-node dev
cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_list_storage(shared_cluster: Any, run_cli: Any) -> None:
    res = run_cli(["gnt-node", "list-storage"], shared_cluster)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["Node", "Type", "Name", "Size", "Used", "Free", "Allocatable"]
    rows = [line.split() for line in lines[1:]]
    assert [r[0] for r in rows] == ["node1", "node2", "node3"]
    assert all(r[1] == "file" and r[6] == "Y" for r in rows)
    res = run_cli(["gnt-node", "list-storage", "-t", "sharedfile", "--output", "json",
                   "-o", "node,name,size,free", "node2"], shared_cluster)
    assert res.returncode == 0, res.stderr
    [row] = json.loads(res.stdout)
    assert row["node"] == "node2" and row["name"].endswith("shared-file-storage")
    assert isinstance(row["size"], int) and 0 <= row["free"] <= row["size"]
    res = run_cli(["gnt-node", "list-storage", "--separator", "|", "--no-headers",
                   "-o", "node,used", "node1"], shared_cluster)
    assert res.returncode == 0 and res.stdout.strip().startswith("node1|")


def test_list_storage_refusals(shared_cluster: Any, run_cli: Any) -> None:
    res = run_cli(["gnt-node", "list-storage", "-t", "lvm-vg"], shared_cluster)
    assert res.returncode != 0
    assert "No disk template of storage type 'lvm-vg' is enabled" in res.stderr
    res = run_cli(["gnt-node", "list-storage", "-o", "name,owner"], shared_cluster)
    assert res.returncode != 0 and "output_fields" in res.stderr
    res = run_cli(["gnt-node", "list-storage", "nosuchnode"], shared_cluster)
    assert res.returncode != 0 and "nosuchnode" in res.stderr
