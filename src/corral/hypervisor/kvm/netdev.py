"""Tap devices of KVM instances and their attachment to the node's network.

Does what Ganeti's ``kvm-ifup``/``net-common`` scripts do for a NIC, with
``ip`` commands: the tap is a persistent device made with ``ip tuntap``
(names ``cortap<N>``), which QEMU opens by name (``-netdev
tap,ifname=...``).

* bridged: ``ip link set <tap> master <link>`` (the bridge must exist), VLANs
  through bridge VLAN filtering, tap up;
* routed: tap up, proxy ARP on, ``ip route replace <ip>/32 dev <tap>`` (in
  table ``<link>`` when a link is given, as Ganeti) when the NIC has an IP.

An executable ``<conf_dir>/kvm-vif-bridge`` replaces the built-in set-up, with
Ganeti's environment (``INSTANCE``, ``MAC``, ``MODE``, ``INTERFACE``, ...).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral import constants as C
from corral import errors
from corral.paths import component_path
from corral.process import run_command

log = logging.getLogger(__name__)

TAP_PREFIX = "cortap"
MAX_TAPS = 100000
IFNAMSIZ = 15
_IP_TIMEOUT = 30
SYS_NET = Path("/sys/class/net")


@dataclass(frozen=True)
class NicConfig:
    """What the node needs to know of a NIC: filled ``mode``/``link``/``vlan``."""

    index: int
    mac: str
    mode: str
    link: str
    ip: str | None = None
    vlan: str = ""
    uuid: str = ""
    name: str | None = None

    @classmethod
    def from_nic_dict(cls, index: int, nic: dict[str, Any]) -> NicConfig:
        params = {**C.NICC_DEFAULTS, **(nic.get("nicparams") or {})}
        return cls(index=index, mac=str(nic.get("mac") or ""), mode=str(params[C.NIC_MODE]),
                   link=str(params.get(C.NIC_LINK) or ""), ip=nic.get("ip") or None,
                   vlan=str(params.get(C.NIC_VLAN) or ""), uuid=str(nic.get("uuid") or ""),
                   name=nic.get("name"))


def _ip(*args: str) -> None:
    res = run_command(["ip", *args], timeout=_IP_TIMEOUT)
    if res.failed:
        raise errors.HypervisorError(
            f"'ip {' '.join(args)}' failed: {res.fail_reason()}: {res.stderr.strip()}")


def link_exists(name: str) -> bool:
    return component_path(SYS_NET, name, what="network interface name").exists()


def is_bridge(name: str) -> bool:
    return (component_path(SYS_NET, name, what="network interface name") / "bridge").is_dir()


def create_tap(multi_queue: bool = False) -> str:
    """Create a new persistent tap device and return its name (``cortap<N>``).

    Raises :class:`errors.HypervisorError` if ``ip tuntap`` fails.
    """
    for n in range(MAX_TAPS):
        name = f"{TAP_PREFIX}{n}"
        if link_exists(name):
            continue
        argv = ["ip", "tuntap", "add", "dev", name, "mode", "tap"]
        if multi_queue:
            argv.append("multi_queue")
        res = run_command(argv, timeout=_IP_TIMEOUT)
        if not res.failed:
            return name
        if link_exists(name):       # lost a race with another start; try the next
            continue
        raise errors.HypervisorError(
            f"Cannot create tap device {name}: {res.fail_reason()}: {res.stderr.strip()}")
    raise errors.HypervisorError("No free tap device name")


def remove_tap(name: str) -> None:
    """Delete tap ``name``; a device already gone is fine."""
    if not name.startswith(TAP_PREFIX) or not link_exists(name):
        return
    res = run_command(["ip", "link", "del", "dev", name], timeout=_IP_TIMEOUT)
    if res.failed and link_exists(name):
        raise errors.HypervisorError(
            f"Cannot remove tap device {name}: {res.fail_reason()}: {res.stderr.strip()}")


def parse_vlan(vlan: str) -> tuple[int | None, list[int]]:
    """Ganeti's VLAN syntax: ``.100`` or ``100`` untagged, ``:200:300`` tagged,
    combined ``.100:200``. Returns (untagged vid or None, tagged vids).

    Raises :class:`errors.HypervisorError` for malformed values.
    """
    if not vlan:
        return None, []
    untagged: int | None = None
    rest = vlan
    try:
        if rest.startswith("."):
            head, _, rest = rest[1:].partition(":")
            untagged = int(head)
            rest = ":" + rest if rest else ""
        elif not rest.startswith(":"):
            head, _, rest = rest.partition(":")
            untagged = int(head)
            rest = ":" + rest if rest else ""
        tagged = [int(v) for v in rest.split(":") if v]
    except ValueError:
        raise errors.HypervisorError(f"Invalid VLAN specification '{vlan}'") from None
    for vid in ([untagged] if untagged is not None else []) + tagged:
        if not 0 < vid < 4095:
            raise errors.HypervisorError(f"Invalid VLAN id {vid} in '{vlan}'")
    return untagged, tagged


def configure_nic(instance_name: str, nic: NicConfig, tap: str, tags: list[str] | None = None,
                  vif_script: Path | None = None) -> None:
    """Attach ``tap`` as ``nic`` says and bring it up.

    Raises :class:`errors.HypervisorError` (``ECODE_ENVIRON`` for a missing
    bridge) when the set-up fails.
    """
    if vif_script is not None and os.access(vif_script, os.X_OK):
        _run_vif_script(vif_script, instance_name, nic, tap, tags or [])
        return
    if nic.mode == C.NIC_MODE_BRIDGED:
        if not is_bridge(nic.link):
            raise errors.HypervisorError(
                f"Bridge '{nic.link}' of NIC {nic.index} of {instance_name} does not exist "
                "on this node", errors.ECODE_ENVIRON)
        _ip("link", "set", "dev", tap, "master", nic.link)
        untagged, tagged = parse_vlan(nic.vlan)
        if untagged is not None or tagged:
            _bridge_vlans(tap, untagged, tagged)
        _ip("link", "set", "dev", tap, "up")
    elif nic.mode == C.NIC_MODE_ROUTED:
        _ip("link", "set", "dev", tap, "up")
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{tap}/proxy_arp", "1")
        if nic.ip:
            route = ["route", "replace", f"{nic.ip}/32"]
            if nic.link:
                route += ["table", nic.link]
            route += ["proto", "static", "dev", tap]
            _ip(*route)
    else:
        raise errors.HypervisorError(
            f"NIC mode '{nic.mode}' is not supported by Corral's KVM hypervisor")


def _bridge_vlans(tap: str, untagged: int | None, tagged: list[int]) -> None:
    def bridge(*args: str) -> None:
        res = run_command(["bridge", *args], timeout=_IP_TIMEOUT)
        if res.failed:
            raise errors.HypervisorError(
                f"'bridge {' '.join(args)}' failed: {res.stderr.strip()}")

    bridge("vlan", "del", "dev", tap, "vid", "1")
    if untagged is not None:
        bridge("vlan", "add", "dev", tap, "vid", str(untagged), "pvid", "untagged")
    for vid in tagged:
        bridge("vlan", "add", "dev", tap, "vid", str(vid))


def _write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(value)
    except OSError as err:
        raise errors.HypervisorError(f"Cannot write {path}: {err}") from err


def _run_vif_script(script: Path, instance_name: str, nic: NicConfig, tap: str,
                    tags: list[str]) -> None:
    env = {
        "INSTANCE": instance_name, "MAC": nic.mac, "MODE": nic.mode, "INTERFACE": tap,
        "INTERFACE_INDEX": str(nic.index), "INTERFACE_UUID": nic.uuid,
        "INTERFACE_NAME": nic.name or "", "TAGS": " ".join(tags), "LINK": nic.link,
        "VLAN": nic.vlan,
    }
    if nic.ip:
        env["IP"] = nic.ip
    if nic.mode == C.NIC_MODE_BRIDGED:
        env["BRIDGE"] = nic.link
    res = run_command([str(script)], timeout=60, env=env)
    if res.failed:
        raise errors.HypervisorError(
            f"{script} failed for {tap}: {res.fail_reason()}: {res.output.strip()[-500:]}")


def tap_master(tap: str) -> str | None:
    """The bridge ``tap`` is attached to, or None."""
    master = SYS_NET / tap / "master"
    return os.path.basename(os.readlink(master)) if master.is_symlink() else None


def interface_address(name: str) -> str | None:
    """The first IP address of interface ``name`` (for ``vnc_bind_address``)."""
    res = run_command(["ip", "-o", "addr", "show", "dev", name], timeout=_IP_TIMEOUT)
    m = re.search(r"\binet6?\s+([0-9a-fA-F.:]+)/", res.stdout) if not res.failed else None
    return m.group(1) if m else None
