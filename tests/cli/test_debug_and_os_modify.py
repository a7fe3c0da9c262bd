"""``gnt-debug``, ``gnt-os modify`` and ``gnt-cluster redist-conf`` against a
real dev cluster (the session's shared 3-node cluster)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

TEST_OS = "corral-test-os"


def _ok(run_cli: Any, cluster: Any, *args: str) -> str:
    res = run_cli(list(args), cluster, timeout=120)
    assert res.returncode == 0, f"{args}: rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def test_delay_runs_a_job_on_master_and_node(shared_cluster: Any, run_cli: Any,
                                             master_client: Any) -> None:
    out = _ok(run_cli, shared_cluster, "gnt-debug", "delay", "--print-jobid", "-n", "node2",
              "-r", "2", "0.2")
    job_id = int(out.splitlines()[0])
    row = master_client(shared_cluster).query_jobs([job_id], ["status", "ops", "oplog"])[0]
    assert row[0] == "success"
    op = row[1][0]
    assert op["OP_ID"] == "OP_TEST_DELAY" and op["on_nodes"] == ["node2"]
    assert [entry[3] for entry in row[2][0]] == ["Test delay iteration 1/2",
                                                 "Test delay iteration 2/2"]
    res = run_cli(["gnt-debug", "delay", "-n", "nosuchnode", "0"], shared_cluster)
    assert res.returncode != 0 and "nosuchnode" in res.stderr


def test_submit_job_files(shared_cluster: Any, run_cli: Any, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"OP_ID": "OP_TEST_JQUEUE", "log_messages": ["hi"]},
                                {"OP_ID": "OP_TEST_DELAY", "duration": 0}]))
    out = _ok(run_cli, shared_cluster, "gnt-debug", "submit-job", "--verbose",
              "--timing-stats", "--job-repeat", "2", str(good))
    assert out.count("Submitted job") == 2 and out.count(": success") == 2
    assert "Timing: build" in out and "(2 jobs)" in out
    out = _ok(run_cli, shared_cluster, "gnt-debug", "submit-job", "--each", str(good))
    assert out.count(": success") == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"OP_ID": "OP_TEST_JQUEUE", "fail": True}]))
    res = run_cli(["gnt-debug", "submit-job", str(bad)], shared_cluster)
    assert res.returncode == 1 and "failed: Opcode failure was requested" in res.stdout
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    res = run_cli(["gnt-debug", "submit-job", str(broken)], shared_cluster)
    assert res.returncode != 0 and "not valid JSON" in res.stderr
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps([{"OP_ID": "OP_NO_SUCH_THING"}]))
    res = run_cli(["gnt-debug", "submit-job", str(unknown)], shared_cluster)
    assert res.returncode == 1 and "Job submission failed" in res.stderr


def test_locks_shows_a_running_job_s_node_lock(shared_cluster: Any, run_cli: Any,
                                               master_client: Any) -> None:
    out = _ok(run_cli, shared_cluster, "gnt-debug", "delay", "--submit", "--no-master",
              "-n", "node3", "3")
    job_id = int(out.split(":")[1])
    deadline = time.monotonic() + 30
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = json.loads(_ok(run_cli, shared_cluster, "gnt-debug", "locks", "--output",
                              "json"))
        if any(row["name"].startswith("node/") and row["owner"] for row in rows):
            break
        time.sleep(0.2)
    held = [row for row in rows if row["name"].startswith("node/")]
    assert held and held[0]["mode"] == "exclusive", rows
    assert any(f"job-{job_id}" in str(owner) or str(job_id) in str(owner)
               for owner in held[0]["owner"]), held
    master_client(shared_cluster).wait_job(job_id, None, timeout=60)
    out = _ok(run_cli, shared_cluster, "gnt-debug", "locks", "-o", "name,mode")
    assert out.splitlines()[0].split() == ["Name", "Mode"]
    assert "node/" not in out


def test_test_jobqueue(shared_cluster: Any, run_cli: Any) -> None:
    out = _ok(run_cli, shared_cluster, "gnt-debug", "test-jobqueue")
    assert "FAILED" not in out and out.count("ok: ") == 4
    assert "Job queue test successful" in out


def test_os_modify(shared_cluster: Any, run_cli: Any, master_client: Any) -> None:
    client = master_client(shared_cluster)

    def info() -> dict[str, Any]:
        return client.query_cluster_info()

    try:
        _ok(run_cli, shared_cluster, "gnt-os", "modify", "-H", "fake:migration_mode=live",
            "-O", "color=blue", "--hidden", "yes", "--blacklisted", "yes", TEST_OS)
        got = info()
        assert got["os_hvp"][TEST_OS] == {"fake": {"migration_mode": "live"}}
        assert got["osparams"][TEST_OS] == {"color": "blue"}
        assert TEST_OS in got["hidden_os"] and TEST_OS in got["blacklisted_os"]
        _ok(run_cli, shared_cluster, "gnt-os", "modify", "--hidden", "no", TEST_OS)
        got = info()
        assert TEST_OS not in got["hidden_os"] and TEST_OS in got["blacklisted_os"]
        res = run_cli(["gnt-os", "modify", TEST_OS], shared_cluster)
        assert res.returncode == 1 and "At least one of OS parameters" in res.stderr
        res = run_cli(["gnt-os", "modify", "--hidden", "maybe", TEST_OS], shared_cluster)
        assert res.returncode != 0 and "use yes or no" in res.stderr
    finally:
        run_cli(["gnt-os", "modify", "--blacklisted", "no", "--hidden", "no", TEST_OS],
                shared_cluster)
    assert TEST_OS not in info()["blacklisted_os"]


def test_redist_conf_restores_a_node_s_ssconf(shared_cluster: Any, run_cli: Any) -> None:
    lost = shared_cluster.nodes[1].paths.ssconf("cluster_name")
    expected = lost.read_text()
    lost.unlink()
    _ok(run_cli, shared_cluster, "gnt-cluster", "redist-conf")
    assert lost.read_text() == expected
