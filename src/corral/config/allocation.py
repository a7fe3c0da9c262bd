"""Allocation of cluster-unique resources: TCP/UDP ports and NIC MACs.

Mirrors Ganeti's ``ConfigWriter.AllocatePort`` and ``GenerateMAC`` /
``ReserveMAC`` (the temporary reservation manager): a MAC handed out to one
job is reserved until the instance holding it is committed or the
reservation is released, so two concurrent creations never get the same MAC.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

from corral import errors
from corral.config.cache import normalize_mac
from corral.objects import Cluster, Instance

# Ganeti's LAST_DRBD_PORT: the cluster port range ends here.
LAST_CLUSTER_PORT = 14999
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_PREFIX_RE = re.compile(r"^([0-9a-f]{2}:){2}[0-9a-f]{2}$")
_MAX_MAC_TRIES = 1000


def next_port(cluster: Cluster) -> int:
    """Take a port for ``cluster`` (changed in place; the caller commits it)."""
    if cluster.tcpudp_port_pool:
        return cluster.tcpudp_port_pool.pop()
    port = cluster.highest_used_port + 1
    if port > LAST_CLUSTER_PORT:
        raise errors.ConfigurationError(
            f"The highest used port is greater than {LAST_CLUSTER_PORT}. Aborting.")
    cluster.highest_used_port = port
    return port


class MacPool:
    """MACs reserved but not yet committed, with their owners."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._reserved: dict[str, str | None] = {}
        self._rng = rng or random.SystemRandom()

    @property
    def reserved(self) -> dict[str, str | None]:
        return dict(self._reserved)

    def generate(self, prefix: str, used: Mapping[str, int], owner: str | None) -> str:
        prefix = normalize_mac(prefix)
        if not _PREFIX_RE.match(prefix):
            raise errors.ConfigurationError(f"Invalid cluster MAC prefix '{prefix}'")
        for _ in range(_MAX_MAC_TRIES):
            b = self._rng.getrandbits(24)
            mac = f"{prefix}:{b >> 16:02x}:{(b >> 8) & 0xff:02x}:{b & 0xff:02x}"
            if mac not in used and mac not in self._reserved:
                self._reserved[mac] = owner
                return mac
        raise errors.ConfigurationError("Can't generate unique MAC")

    def reserve(self, mac: str, used: Mapping[str, int], owner: str | None) -> None:
        norm = normalize_mac(mac)
        if not _MAC_RE.match(norm):
            raise errors.OpPrereqError(f"Invalid MAC address '{mac}'", errors.ECODE_INVAL)
        if norm in used or norm in self._reserved:
            raise errors.OpPrereqError(f"MAC address {mac} already in use in cluster",
                                       errors.ECODE_NOTUNIQUE)
        self._reserved[norm] = owner

    def release(self, mac: str) -> None:
        self._reserved.pop(normalize_mac(mac), None)

    def release_owner(self, owner: str) -> None:
        for mac in [m for m, o in self._reserved.items() if o == owner]:
            del self._reserved[mac]

    def committed(self, instance: Instance) -> None:
        """The instance's MACs are now in the config: no longer reservations."""
        for nic in instance.nics:
            if nic.mac:
                self._reserved.pop(normalize_mac(nic.mac), None)
