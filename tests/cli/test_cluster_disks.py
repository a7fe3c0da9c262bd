"""Output of ``gnt-cluster verify-disks`` for one group result (Ganeti's
``VerifyDisks`` wording); the commands against a real cluster are tested in
tests/cmdlib/test_cluster_disks.py."""

from __future__ import annotations

import pytest

from corral.cli.cluster import _report_group_disks


def test_broken_nodes_and_missing_disks(capsys: pytest.CaptureFixture[str]) -> None:
    code = _report_group_disks(
        {"node2": "x" * 500 + "connection refused"}, [],
        {"i2": [["node2", "/srv/corral/file-storage/i2/d0"]],
         "i1": [["node2", "/srv/b"], ["node1", "/srv/a"]]}, {})
    assert code == 1
    assert capsys.readouterr().out.splitlines() == [
        f"Error gathering data on node node2: {('x' * 500 + 'connection refused')[-400:]}",
        "You need to fix these nodes first before fixing instances",
        "Instance i1 has missing disks:",
        "\tnode1 /srv/a",
        "\tbroken node node2 /srv/b",
        "Instance i2 cannot be verified as it lives on broken nodes",
        ("You need to replace or recreate disks for all the above instances if this message "
         "persists after fixing broken nodes.")]


def test_nothing_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert _report_group_disks({}, [], {}, {}) == 0
    assert capsys.readouterr().out == "No disks need to be activated.\n"
