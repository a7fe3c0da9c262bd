"""In-memory copy of the configuration with the indexes the master needs.

Every change is O(size of the changed object): replacing an object first
removes the index entries of the old version, then adds those of the new.
Not thread-safe by itself; :class:`corral.config.ConfigStore` holds its lock.
"""

from __future__ import annotations

from collections import Counter

from corral.config.changes import KIND_CLUSTER, KIND_INSTANCE, KINDS, NAMED_KINDS, object_name
from corral.objects import Cluster, ConfigObject, Instance


def normalize_mac(mac: str) -> str:
    """MACs are compared in lower case."""
    return mac.strip().lower()


class ConfigCache:
    """Objects by kind and UUID, plus indexes.

    * ``objects[kind][uuid]`` -> object
    * ``names[kind][name]`` -> uuid (node groups, nodes, instances)
    * ``kind_by_uuid[uuid]`` -> kind (UUIDs are unique across kinds)
    * ``node_primary[node_uuid]`` / ``node_secondary[node_uuid]`` -> instance UUIDs
    * ``macs`` -> how many NICs use each MAC (more than one is a config error)
    """

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, ConfigObject]] = {k: {} for k in KINDS}
        self.names: dict[str, dict[str, str]] = {k: {} for k in NAMED_KINDS}
        self.kind_by_uuid: dict[str, str] = {}
        self.node_primary: dict[str, set[str]] = {}
        self.node_secondary: dict[str, set[str]] = {}
        self.macs: Counter[str] = Counter()

    @property
    def cluster(self) -> Cluster | None:
        for obj in self.objects[KIND_CLUSTER].values():
            return obj  # type: ignore[return-value]
        return None

    def get(self, kind: str, uuid: str) -> ConfigObject | None:
        return self.objects[kind].get(uuid)

    def put(self, kind: str, obj: ConfigObject) -> None:
        """Insert or replace ``obj`` (the cache keeps this very object)."""
        old = self.objects[kind].get(obj.uuid)
        if old is not None:
            self._unindex(kind, old)
        self.objects[kind][obj.uuid] = obj
        self._index(kind, obj)

    def drop(self, kind: str, uuid: str) -> ConfigObject | None:
        old = self.objects[kind].pop(uuid, None)
        if old is not None:
            self._unindex(kind, old)
        return old

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    # -- indexes ------------------------------------------------------------------
    def _index(self, kind: str, obj: ConfigObject) -> None:
        self.kind_by_uuid[obj.uuid] = kind
        if kind in self.names:
            self.names[kind][object_name(kind, obj)] = obj.uuid
        if kind == KIND_INSTANCE:
            assert isinstance(obj, Instance)
            self.node_primary.setdefault(obj.primary_node, set()).add(obj.uuid)
            for node in obj.secondary_nodes:
                self.node_secondary.setdefault(node, set()).add(obj.uuid)
            for nic in obj.nics:
                if nic.mac:
                    self.macs[normalize_mac(nic.mac)] += 1

    def _unindex(self, kind: str, obj: ConfigObject) -> None:
        self.kind_by_uuid.pop(obj.uuid, None)
        if kind in self.names:
            name = object_name(kind, obj)
            if self.names[kind].get(name) == obj.uuid:
                del self.names[kind][name]
        if kind == KIND_INSTANCE:
            assert isinstance(obj, Instance)
            _discard(self.node_primary, obj.primary_node, obj.uuid)
            for node in obj.secondary_nodes:
                _discard(self.node_secondary, node, obj.uuid)
            for nic in obj.nics:
                if nic.mac:
                    mac = normalize_mac(nic.mac)
                    self.macs[mac] -= 1
                    if self.macs[mac] <= 0:
                        del self.macs[mac]


def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
    members = index.get(key)
    if members is None:
        return
    members.discard(value)
    if not members:
        del index[key]
