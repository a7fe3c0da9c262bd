"""Helpers for RAPI tests against a real dev cluster."""

from __future__ import annotations

from typing import Any

WRITER = ("writer", "secret")


def add_write_user(cluster: Any) -> None:
    """Give the cluster's RAPI the user :data:`WRITER` with write access."""
    users = cluster.master_paths.rapi_users
    users.parent.mkdir(parents=True, exist_ok=True)
    users.write_text(f"{WRITER[0]} {WRITER[1]} write\n")


def create_body(name: str) -> dict[str, Any]:
    """``POST /2/instances`` body of a diskless noop instance on node1."""
    return {"__version__": 1, "name": name, "mode": "create", "disk_template": "diskless",
            "os": "noop", "pnode": "node1", "disks": [], "nics": [], "name_check": False,
            "ip_check": False, "beparams": {"maxmem": 128, "minmem": 128}}
