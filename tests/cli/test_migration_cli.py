"""``gnt-instance failover|migrate|move`` and ``gnt-node migrate|evacuate`` end to end."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _pnodes(run_cli: Any, cluster: Any) -> dict[str, str]:
    res = run_cli(["gnt-instance", "list", "--no-headers", "--separator=|", "-o",
                   "name,pnode"], cluster, check=True)
    return dict(line.split("|") for line in res.stdout.split())


def _ok(run_cli: Any, cluster: Any, *args: str) -> str:
    res = run_cli(list(args), cluster)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


def test_moving_instances_with_the_cli(dev_cluster, run_cli, ganeti_os_noop) -> None:
    cluster = dev_cluster(2)
    for name, template, size in (("sf1", "sharedfile", "64M"), ("sf2", "sharedfile", "64M"),
                                 ("f1", "file", "32M")):
        _ok(run_cli, cluster, "gnt-instance", "add", "-t", template, "-s", size, "-o", "noop",
            "-n", "node1", "--no-name-check", "--no-ip-check", name)

    out = _ok(run_cli, cluster, "gnt-instance", "migrate", "-f", "-n", "node2", "sf1")
    assert "migrat" in out.lower()
    assert _pnodes(run_cli, cluster)["sf1"] == "node2"
    _ok(run_cli, cluster, "gnt-instance", "migrate", "-f", "--non-live", "-n", "node1", "sf1")
    assert _pnodes(run_cli, cluster)["sf1"] == "node1"
    _ok(run_cli, cluster, "gnt-instance", "failover", "-f", "-n", "node2", "sf2")
    assert _pnodes(run_cli, cluster)["sf2"] == "node2"

    # A file instance cannot migrate with Ganeti's semantics, but can move.
    res = run_cli(["gnt-instance", "failover", "-f", "-n", "node2", "f1"], cluster)
    assert res.returncode == 1 and "file" in res.stderr
    _ok(run_cli, cluster, "gnt-instance", "move", "-f", "-n", "node2", "f1")
    assert _pnodes(run_cli, cluster)["f1"] == "node2"

    # Declining the confirmation changes nothing (exit 13).
    res = run_cli(["gnt-instance", "migrate", "-n", "node1", "sf2"], cluster, input="n\n")
    assert res.returncode == 13
    assert _pnodes(run_cli, cluster)["sf2"] == "node2"

    _ok(run_cli, cluster, "gnt-node", "migrate", "-f", "-n", "node2", "node1")
    assert _pnodes(run_cli, cluster)["sf1"] == "node2"
    # One job per primary instance: the shared ones move, the file one fails.
    res = run_cli(["gnt-node", "evacuate", "-f", "-p", "-n", "node1", "node2"], cluster)
    assert res.returncode == 1 and "f1" in res.stdout + res.stderr
    pnodes = _pnodes(run_cli, cluster)
    assert pnodes == {"sf1": "node1", "sf2": "node1", "f1": "node2"}
