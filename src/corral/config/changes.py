"""Object kinds of the config store and the change sets sent to replicas.

A :class:`ConfigChanges` is what one commit changed: the full JSON form of
every added or updated object (``upserts``) and the UUIDs of removed ones
(``removes``), grouped by kind. The master hands it to its listeners after
each commit (replication to master candidates through the ``config_update``
RPC); a replica applies it with ``ConfigStore.apply_replica``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from corral import errors
from corral.objects import Cluster, ConfigObject, Instance, Network, Node, NodeGroup

KIND_CLUSTER = "cluster"
KIND_NODEGROUP = "nodegroup"
KIND_NODE = "node"
KIND_INSTANCE = "instance"
KIND_NETWORK = "network"
# Also the order in which a full snapshot is applied (networks before groups
# before nodes before instances, so references point backwards).
KINDS: tuple[str, ...] = (KIND_CLUSTER, KIND_NETWORK, KIND_NODEGROUP, KIND_NODE,
                          KIND_INSTANCE)
# Kinds whose ``name`` column is UNIQUE.
NAMED_KINDS: tuple[str, ...] = (KIND_NETWORK, KIND_NODEGROUP, KIND_NODE, KIND_INSTANCE)

CLASS_OF_KIND: dict[str, type[ConfigObject]] = {
    KIND_CLUSTER: Cluster,
    KIND_NODEGROUP: NodeGroup,
    KIND_NODE: Node,
    KIND_INSTANCE: Instance,
    KIND_NETWORK: Network,
}


def kind_of(obj: object) -> str:
    """Kind of a config object; ``ProgrammerError`` for anything else."""
    # Exact type checks: a subclass would not survive a round trip through JSON.
    for kind, cls in CLASS_OF_KIND.items():
        if type(obj) is cls:
            return kind
    raise errors.ProgrammerError(f"Not a config object: {type(obj).__name__}")


def object_name(kind: str, obj: ConfigObject) -> str:
    """The value of the ``name`` column of an object."""
    if kind == KIND_CLUSTER:
        return obj.cluster_name  # type: ignore[attr-defined]
    return obj.name  # type: ignore[attr-defined]


def storable_dict(kind: str, obj: ConfigObject) -> dict[str, Any]:
    """JSON form of ``obj`` as stored: without RPC-only data."""
    data = obj.to_dict()
    if kind == KIND_INSTANCE:
        for disk in data.get("disks", ()):
            _strip_disk(disk)
    return data


def _strip_disk(disk: dict[str, Any]) -> None:
    disk.pop("dynamic_params", None)
    for child in disk.get("children", ()):
        _strip_disk(child)


class ConfigChanges(BaseModel):
    """What one commit changed (or, with ``full``, a whole snapshot).

    ``serial_no`` is the config-wide serial number after the commit.
    ``upserts`` maps a kind (``cluster``, ``network``, ``nodegroup``, ``node``,
    ``instance``) to the ``to_dict()`` forms of the added or updated objects;
    ``removes`` maps a kind to removed UUIDs. With ``full`` the upserts are
    the complete configuration and a replica drops every object not in it.
    """

    serial_no: int
    upserts: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    removes: dict[str, list[str]] = Field(default_factory=dict)
    full: bool = False

    def is_empty(self) -> bool:
        return not any(self.upserts.values()) and not any(self.removes.values())
