"""``gnt-node power`` / ``gnt-node health`` on a real 2-node dev cluster, with
a recording OOB program (Ganeti's OOB protocol)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from corral import errors

pytestmark = pytest.mark.integration

# Keeps a power state per node in STATE_DIR/<node> and logs every call.
SCRIPT = """#!/bin/sh
dir=$(dirname "$0")
echo "$1 $2" >> "$dir/calls"
state="$dir/state-$2"
case "$1" in
  power-on) echo on > "$state" ;;
  power-off) echo off > "$state" ;;
  power-cycle) ;;
  power-status)
    if [ "$(cat "$state" 2>/dev/null || echo on)" = on ]; then echo '{"powered": true}';
    else echo '{"powered": false}'; fi ;;
  health) echo '[["fan", "OK"], ["disk", "WARNING"]]' ;;
esac
"""


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any) -> Any:
    return module_dev_cluster(2)


@pytest.fixture
def oob(cluster: Any, tmp_path: Path, run_cli: Any) -> Path:
    program = tmp_path / "oob"
    program.write_text(SCRIPT)
    program.chmod(0o755)
    res = run_cli(["gnt-node", "modify", "--node-parameters", f"oob_program={program}",
                   "node2"], cluster)
    assert res.returncode == 0, res.stderr
    yield program
    run_cli(["gnt-node", "modify", "--node-parameters", "oob_program=default", "node2"],
            cluster)


def _node_row(cluster: Any, run_cli: Any, name: str) -> dict[str, Any]:
    res = run_cli(["gnt-node", "list", "-o", "name,offline,powered", "--output", "json",
                   name], cluster)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    return rows[0] if isinstance(rows[0], dict) else dict(zip(("name", "offline", "powered"),
                                                              rows[0]))


def _table(stdout: str) -> list[str]:
    """The Node/Status table after the job's log lines."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["Node", "Status"])
    return lines[start:]


def test_health_and_power_status(cluster: Any, oob: Path, run_cli: Any) -> None:
    res = run_cli(["gnt-node", "health"], cluster)
    # node1 has no OOB program: its row says so and the command fails.
    assert res.returncode == 1
    lines = _table(res.stdout)
    assert lines[0].split() == ["Node", "Status"]
    assert lines[1].split() == ["node1", "(unavail)"]
    assert lines[2].split() == ["node2", "fan=OK"] and lines[3].split() == ["disk=WARNING"]
    res = run_cli(["gnt-node", "health", "node2"], cluster)
    assert res.returncode == 0 and "Item 'disk' on node 'node2' has status 'WARNING'" in \
        res.stdout
    res = run_cli(["gnt-node", "power", "status", "--no-headers", "node2"], cluster)
    assert res.returncode == 0 and res.stdout.split() == ["node2", "powered"]
    assert (oob.parent / "calls").read_text().splitlines() == [
        "health node2", "health node2", "power-status node2"]


def test_power_off_marks_offline_and_power_on_records(cluster: Any, oob: Path,
                                                      run_cli: Any) -> None:
    res = run_cli(["gnt-node", "power", "off", "node2"], cluster, input="n\n")
    assert res.returncode == 13 and not (oob.parent / "calls").exists()
    res = run_cli(["gnt-node", "power", "off", "-f", "node2"], cluster)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-2:] == ["node2", "invoked"]
    assert _node_row(cluster, run_cli, "node2") in (
        {"name": "node2", "offline": True, "powered": False},)
    res = run_cli(["gnt-node", "power", "status", "--no-headers", "node2"], cluster)
    assert res.stdout.split() == ["node2", "unpowered"]
    res = run_cli(["gnt-node", "power", "on", "node2"], cluster)
    assert res.returncode == 0, res.stderr
    assert _node_row(cluster, run_cli, "node2")["powered"] is True
    assert (oob.parent / "calls").read_text().splitlines() == [
        "power-off node2", "power-status node2", "power-on node2"]
    res = run_cli(["gnt-node", "modify", "-O", "no", "node2"], cluster)
    assert res.returncode == 0, res.stderr


def test_refusals(cluster: Any, oob: Path, run_cli: Any, master_client: Any) -> None:
    res = run_cli(["gnt-node", "power", "off", "-f", "node1"], cluster)
    assert res.returncode != 0 and "only via master-failover" in res.stderr
    res = run_cli(["gnt-node", "power", "off", "-f", "--ignore-status", "node1"], cluster)
    assert res.returncode != 0
    assert "Operating on the master node node1 is not allowed for power-off" in res.stderr
    # Without marking it offline first, an online node is not powered off.
    res = run_cli(["gnt-node", "power", "cycle", "-f", "--ignore-status", "node2"], cluster)
    assert res.returncode == 0 and "invoked" in res.stdout
    assert _node_row(cluster, run_cli, "node2")["offline"] is False
    client = master_client(cluster)
    job_id = client.submit_job([{"OP_ID": "OP_OOB_COMMAND", "node_names": ["node2"],
                                 "command": "power-off"}])
    with pytest.raises(errors.OpPrereqError, match="not marked offline") as exc:
        client.wait_job(job_id, None, timeout=60)
    assert exc.value.ecode == errors.ECODE_STATE
    res = run_cli(["gnt-node", "power", "off"], cluster)
    assert res.returncode == 1 and "Please provide at least one node" in res.stderr


def test_unsafe_or_broken_programs_give_no_data(cluster: Any, oob: Path,
                                                run_cli: Any) -> None:
    oob.chmod(0o777)
    res = run_cli(["gnt-node", "power", "status", "node2"], cluster)
    assert res.returncode == 1 and "(nodata)" in res.stdout
    assert "may be changed by other users" in res.stdout
    assert not (oob.parent / "calls").exists()
    oob.write_text("#!/bin/sh\necho 'not json'\n")
    oob.chmod(0o755)
    res = run_cli(["gnt-node", "power", "status", "node2"], cluster)
    assert res.returncode == 1 and "(nodata)" in res.stdout
    assert "is not valid JSON" in res.stdout
