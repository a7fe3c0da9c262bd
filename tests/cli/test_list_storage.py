"""``gnt-node list-storage`` (OP_NODE_QUERY_STORAGE) and the export query, on
the shared 3-node dev cluster."""

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


def test_export_query(shared_cluster: Any, master_client: Any) -> None:
    # Export directories as the node lists them (export_list), made by hand.
    export_dir = shared_cluster.nodes[1].paths.export_dir
    made = [export_dir / "qexp-b", export_dir / "qexp-a"]
    for path in made:
        path.mkdir(parents=True, exist_ok=True)
    try:
        client = master_client(shared_cluster)
        result = client.query("export", ["node", "export"], ["node2"])
        assert [f["name"] for f in result["fields"]] == ["node", "export"]
        rows = [[v for _s, v in row] for row in result["data"]]
        assert [["node2", "qexp-a"], ["node2", "qexp-b"]] == [r for r in rows
                                                             if r[1].startswith("qexp")]
        filtered = client.query("export", ["export"], ["=~", "export", "^qexp-a$"])
        assert filtered["data"] == [[[0, "qexp-a"]]]
    finally:
        for path in made:
            path.rmdir()
