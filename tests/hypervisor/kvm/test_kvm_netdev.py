"""Tap devices and their attachment (bridged, routed), without QEMU."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import errors
from corral.hypervisor.kvm import netdev
from corral.process import run_command

BRIDGE = "br-corraltest"


def ip(*args: str) -> str:
    res = run_command(["ip", *args], timeout=10)
    assert not res.failed, res.output
    return res.stdout


@pytest.fixture
def bridge() -> Iterator[str]:
    run_command(["ip", "link", "del", BRIDGE], timeout=10)
    ip("link", "add", BRIDGE, "type", "bridge")
    yield BRIDGE
    run_command(["ip", "link", "del", BRIDGE], timeout=10)


@pytest.fixture
def tap() -> Iterator[str]:
    name = netdev.create_tap()
    yield name
    netdev.remove_tap(name)


@pytest.mark.parametrize("spec,expected", [
    ("", (None, [])), (".100", (100, [])), ("100", (100, [])),
    (":200:300", (None, [200, 300])), (".100:200", (100, [200])), ("7:8", (7, [8]))])
def test_parse_vlan(spec: str, expected: tuple[int | None, list[int]]) -> None:
    assert netdev.parse_vlan(spec) == expected


@pytest.mark.parametrize("spec", ["abc", ".0", ":4095", ".1:x"])
def test_parse_vlan_refuses_bad(spec: str) -> None:
    with pytest.raises(errors.HypervisorError, match="VLAN"):
        netdev.parse_vlan(spec)


@given(st.integers(1, 4094), st.lists(st.integers(1, 4094), max_size=4))
def test_parse_vlan_roundtrip(untagged: int, tagged: list[int]) -> None:
    spec = f".{untagged}" + "".join(f":{v}" for v in tagged)
    assert netdev.parse_vlan(spec) == (untagged, tagged)


def test_nic_config_fills_defaults() -> None:
    conf = netdev.NicConfig.from_nic_dict(2, {"mac": "aa:00:00:00:00:02", "nicparams": {}})
    assert (conf.index, conf.mode, conf.link) == (2, "bridged", "xen-br0")


def test_create_and_remove_tap(tap: str) -> None:
    assert tap.startswith("cortap") and len(tap) <= netdev.IFNAMSIZ
    assert netdev.link_exists(tap)
    other = netdev.create_tap()
    try:
        assert other != tap
    finally:
        netdev.remove_tap(other)
    assert not netdev.link_exists(other)
    netdev.remove_tap(other)          # already gone: fine


def test_bridged_attaches_tap(bridge: str, tap: str) -> None:
    netdev.configure_nic("vm1", netdev.NicConfig(0, "aa:00:00:00:00:01", "bridged", bridge),
                         tap)
    assert netdev.tap_master(tap) == bridge
    assert "UP" in ip("link", "show", "dev", tap).split(">")[0]


def _vlan_filtering_supported() -> bool:
    res = run_command(["ip", "link", "add", "br-corralvf", "type", "bridge",
                       "vlan_filtering", "1"], timeout=10)
    run_command(["ip", "link", "del", "br-corralvf"], timeout=10)
    return not res.failed


def test_bridged_vlan(bridge: str, tap: str) -> None:
    nic = netdev.NicConfig(0, "aa:00:00:00:00:01", "bridged", bridge, vlan=".100:200")
    if not _vlan_filtering_supported():
        # This host's kernel has no bridge VLAN filtering: a clear error.
        with pytest.raises(errors.HypervisorError, match="bridge vlan"):
            netdev.configure_nic("vm1", nic, tap)
        return
    netdev.configure_nic("vm1", nic, tap)
    vlans = run_command(["bridge", "vlan", "show", "dev", tap], timeout=10).stdout
    assert "100 PVID" in vlans and "200" in vlans


def test_missing_bridge_is_an_environment_error(tap: str) -> None:
    nic = netdev.NicConfig(0, "aa:00:00:00:00:01", "bridged", "br-corral-none")
    with pytest.raises(errors.HypervisorError) as exc:
        netdev.configure_nic("vm1", nic, tap)
    assert exc.value.ecode == errors.ECODE_ENVIRON
    assert "br-corral-none" in str(exc.value)


def test_routed_adds_host_route_in_link_table(tap: str) -> None:
    # Table 4242 is consulted by no rule: the route sends nothing anywhere.
    nic = netdev.NicConfig(0, "aa:00:00:00:00:01", "routed", "4242", ip="192.0.2.10")
    netdev.configure_nic("vm1", nic, tap)
    assert f"192.0.2.10 dev {tap}" in ip("route", "show", "table", "4242")
    assert Path(f"/proc/sys/net/ipv4/conf/{tap}/proxy_arp").read_text().strip() == "1"
    netdev.remove_tap(tap)
    assert "192.0.2.10" not in ip("route", "show", "table", "4242")


def test_unsupported_mode(tap: str) -> None:
    with pytest.raises(errors.HypervisorError, match="openvswitch"):
        netdev.configure_nic("vm1", netdev.NicConfig(0, "m", "openvswitch", "sw"), tap)


def test_vif_script_replaces_builtin_setup(tap: str, tmp_path: Path) -> None:
    out = tmp_path / "env"
    script = tmp_path / "kvm-vif-bridge"
    script.write_text(f"#!/bin/sh\nenv > {out}\n")
    os.chmod(script, 0o755)
    nic = netdev.NicConfig(1, "aa:00:00:00:00:05", "bridged", "nowhere", ip="192.0.2.5")
    netdev.configure_nic("vm1", nic, tap, ["t1", "t2"], vif_script=script)
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert env["INSTANCE"] == "vm1" and env["INTERFACE"] == tap
    assert env["MAC"] == "aa:00:00:00:00:05" and env["BRIDGE"] == "nowhere"
    assert env["IP"] == "192.0.2.5" and env["TAGS"] == "t1 t2"
    assert env["INTERFACE_INDEX"] == "1"
