"""``gnt-instance console`` (cli/console.py) against a fake master: console
kinds, ``--show-cmd``, option checks. Connecting is tested end to end in
test_console_integration.py."""

from __future__ import annotations

from typing import Any

import pytest

from corral import errors
from corral.cli.console import parse_node_address

from .conftest import FakeClient


@pytest.mark.parametrize("value, expected", [
    ("127.0.1.2", ("127.0.1.2", 1811)),
    ("127.0.1.2:1999", ("127.0.1.2", 1999)),
    ("node2.example.com:1811", ("node2.example.com", 1811)),
    ("[::1]:1812", ("::1", 1812)),
    ("[::1]", ("::1", 1811)),
])
def test_parse_node_address(value: str, expected: tuple[str, int]) -> None:
    assert parse_node_address(value) == expected


@pytest.mark.parametrize("value", ["", "a:b", "::1", "h:0", "h:70000", "[::1]x", "a b:1"])
def test_parse_node_address_refuses(value: str) -> None:
    with pytest.raises(errors.OpPrereqError) as exc:
        parse_node_address(value)
    assert exc.value.ecode == errors.ECODE_INVAL


def test_message_console_is_printed(run: Any, fake_client: FakeClient) -> None:
    fake_client.results["OP_INSTANCE_CONSOLE"] = {
        "instance": "inst1", "kind": "msg", "message": "Console not available for fake "
        "hypervisor", "host": None, "port": None, "user": None, "command": None,
        "display": None}
    res = run("instance", "console", "inst1")
    assert res.exit_code == 0
    assert res.stdout.endswith("Console not available for fake hypervisor\n")
    assert fake_client.last_op()["OP_ID"] == "OP_INSTANCE_CONSOLE"
    assert fake_client.last_op()["instance_name"] == "inst1"


def test_vnc_and_spice_consoles_are_described(run: Any, fake_client: FakeClient) -> None:
    fake_client.results["OP_INSTANCE_CONSOLE"] = {
        "instance": "inst1", "kind": "vnc", "host": "127.0.9.1", "port": 11001,
        "display": 5101}
    res = run("instance", "console", "inst1")
    assert res.exit_code == 0
    assert ("Instance inst1 has VNC listening on 127.0.9.1:11001 (display 5101), URL "
            "<vnc://127.0.9.1:11001/>\n") in res.stdout
    fake_client.results["OP_INSTANCE_CONSOLE"] = {
        "instance": "inst1", "kind": "spice", "host": "127.0.9.1", "port": 11002}
    res = run("instance", "console", "inst1")
    assert "Instance inst1 has SPICE listening on 127.0.9.1:11002\n" in res.stdout
    fake_client.results["OP_INSTANCE_CONSOLE"] = {"instance": "inst1", "kind": "rdp"}
    res = run("instance", "console", "inst1")
    assert res.exit_code == 1 and "Unknown console type 'rdp'" in res.stderr


def test_show_cmd_names_the_primary_nodes_daemon(run: Any, fake_client: FakeClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake_client.results["OP_INSTANCE_CONSOLE"] = {
        "instance": "inst2", "kind": "ssh", "host": "127.0.9.2", "user": "root",
        "command": ["socat", "STDIO,raw,echo=0,escape=0x1d", "UNIX-CONNECT:/x.serial"]}
    original = fake_client.query

    def query(what: str, fields: list[str], qfilter: Any = None) -> dict[str, Any]:
        if what == "node" and fields == ["pip", "noded_port"]:
            assert qfilter == ["node2"]
            return {"data": [[[0, "127.0.9.2"], [0, 1999]]]}
        return original(what, fields, qfilter)

    monkeypatch.setattr(fake_client, "query", query)
    res = run("instance", "console", "--show-cmd", "inst2")
    assert res.exit_code == 0, res.output
    assert res.stdout.endswith("corral instance console --node 127.0.9.2:1999 inst2\n")


@pytest.mark.parametrize("args, message", [
    (["--send", "x", "inst1"], "--send needs --until"),
    (["--lines", "5", "--until", "x", "inst1"], "cannot be combined"),
    (["--until", "(", "inst1"], "Invalid --until expression"),
    (["--node", "a:b", "inst1"], "Invalid node address"),
])
def test_option_errors(run: Any, fake_client: FakeClient, args: list[str],
                       message: str) -> None:
    res = run("instance", "console", *args)
    assert res.exit_code == 1 and message in res.stderr
    assert fake_client.submitted == []          # refused before asking the master
