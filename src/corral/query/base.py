"""Shared pieces of the query engine: result statuses, field records, the
per-query context with its memos, and helpers to build field tables."""

from __future__ import annotations

import copy
import functools
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from corral.config import ConfigStore
from corral.objects import NIC, Instance, Node, NodeGroup
from corral.query.params import FilledParams, ReadOnlyDict

# Result statuses (Ganeti's RS_*).
RS_NORMAL = 0
RS_UNKNOWN = 1
RS_NODATA = 2
RS_UNAVAIL = 3
RS_OFFLINE = 4

QUERY_WHATS = ("instance", "node", "group", "network")
FieldKind = Literal["text", "number", "bool", "unit", "timestamp", "other"]
Row = list[tuple[int, Any]]


class QueryField(BaseModel):
    """One field of a query (``list-fields``): name, column title, kind, doc."""

    name: str
    title: str
    kind: FieldKind
    doc: str


@dataclass
class LiveData:
    """Data gathered from nodes for live fields.

    * ``instances``: running instances by name, from ``all_instances_info``:
      ``{name: {memory, vcpus, state, time, node}}`` where ``node`` is the
      reporting node's UUID (the primary's report wins; other reporters are
      listed in ``other_nodes``).
    * ``nodes``: ``node_info`` payloads by node UUID.
    * ``failed_nodes``: node UUID -> RPC error message.
    * ``offline_nodes``: UUIDs of nodes marked offline.
    """

    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_nodes: dict[str, str] = field(default_factory=dict)
    offline_nodes: set[str] = field(default_factory=set)


class ResultStatus:
    """A non-normal result status returned by a getter."""

    __slots__ = ("status",)

    def __init__(self, status: int) -> None:
        self.status = status

    def __deepcopy__(self, memo: dict[int, Any]) -> ResultStatus:
        return self


UNKNOWN = ResultStatus(RS_UNKNOWN)
NODATA = ResultStatus(RS_NODATA)
UNAVAIL = ResultStatus(RS_UNAVAIL)
OFFLINE = ResultStatus(RS_OFFLINE)

Getter = Callable[["QueryContext", Any], Any]


@dataclass(frozen=True)
class FieldDef:
    """A field: its public definition, how to compute it, whether it needs
    live data from the nodes."""

    definition: QueryField
    getter: Getter
    live: bool = False


_DIGITS = re.compile(r"(\d+)")


@functools.lru_cache(maxsize=1 << 16)
def nice_sort_key(name: str) -> tuple[Any, ...]:
    """Ganeti's NiceSort order: ``node9`` before ``node10``.

    Memoized (the key is an immutable tuple): every list sorts all names, and
    splitting 10,000 names took a fifth of ``gnt-instance list``.
    """
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(name))


def nice_sorted(names: Iterable[str]) -> list[str]:
    return sorted(names, key=nice_sort_key)


class QueryContext:
    """What getters share during one query: config, live data, memos.

    ``params`` holds filled parameters shared across queries (a new one per
    query when None); the dicts it returns are read-only and shared by rows.
    """

    def __init__(self, cfg: ConfigStore, live: LiveData | None,
                 params: FilledParams | None = None) -> None:
        self.cfg = cfg
        self.cluster = cfg.get_cluster()
        self.live = live
        self.params = params if params is not None else FilledParams()
        self._nics: dict[str, list[tuple[NIC, dict[str, Any]]]] = {}
        self._node_live: dict[str, dict[str, Any]] = {}
        self._unreachable: dict[str, bool] = {}
        self._group_nodes: dict[str, list[Node]] | None = None

    def node_name(self, uuid: str) -> str | None:
        node = self.cfg.get_node(uuid)
        return node.name if node else None

    def group_of(self, node_uuid: str) -> NodeGroup | None:
        node = self.cfg.get_node(node_uuid)
        return self.cfg.get_nodegroup(node.group) if node else None

    def filled_nics(self, inst: Instance) -> list[tuple[NIC, dict[str, Any]]]:
        """(NIC, its nicparams filled with the cluster defaults) per NIC (memo;
        the filled dicts are shared and read-only)."""
        if not inst.nics:
            return []
        pairs = self._nics.get(inst.uuid)
        if pairs is None:
            fill = self.params.nic
            pairs = [(n, fill(self.cluster, n.nicparams)) for n in inst.nics]
            self._nics[inst.uuid] = pairs
        return pairs

    def filled_hv(self, inst: Instance) -> dict[str, Any]:
        """Instance hvparams with defaults, without cluster-wide ones (shared,
        read-only)."""
        return self.params.hv(self.cluster, inst)

    def filled_be(self, inst: Instance) -> dict[str, Any]:
        """Instance beparams with defaults (shared, read-only)."""
        return self.params.be(self.cluster, inst)

    def group_nodes(self, group_uuid: str) -> list[Node]:
        if self._group_nodes is None:        # once per query: O(nodes)
            self._group_nodes = {}
            for node in self.cfg.get_nodes().values():
                self._group_nodes.setdefault(node.group, []).append(node)
        return self._group_nodes.get(group_uuid, [])

    def node_offline(self, uuid: str) -> bool:
        node = self.cfg.get_node(uuid)
        return (self.live is not None and uuid in self.live.offline_nodes) or bool(
            node and node.offline)

    def node_unreachable(self, uuid: str) -> bool:
        """Offline, or its live data failed (memo; needs live data)."""
        down = self._unreachable.get(uuid)
        if down is None:
            assert self.live is not None
            down = self._unreachable[uuid] = (self.node_offline(uuid)
                                              or uuid in self.live.failed_nodes)
        return down

    def node_live(self, uuid: str) -> dict[str, Any] | None:
        assert self.live is not None
        if uuid not in self._node_live:
            payload = self.live.nodes.get(uuid)
            if payload is None:
                return None
            self._node_live[uuid] = flatten_node_info(payload)
        return self._node_live[uuid]


def flatten_node_info(payload: dict[str, Any]) -> dict[str, Any]:
    """Turn a ``node_info`` payload into Ganeti's legacy flat dict
    (``MakeLegacyNodeInfo``): hypervisor values, ``bootid`` and the first
    storage unit's ``storage_size``/``storage_free``. Flat dicts pass through."""
    out: dict[str, Any] = {}
    hv = payload.get("hv")
    if isinstance(hv, list) and hv and isinstance(hv[0], dict):
        out.update(hv[0])
    elif isinstance(hv, dict):
        out.update(hv)
    for key, value in payload.items():
        if key not in ("hv", "storage"):
            out.setdefault(key, value)
    if "boot_id" in payload:
        out["bootid"] = payload["boot_id"]
    storage = payload.get("storage")
    if isinstance(storage, list) and storage and isinstance(storage[0], dict):
        for key in ("storage_size", "storage_free"):
            if key in storage[0]:
                out[key] = storage[0][key]
    return out


# -- field table builders -------------------------------------------------------------------
def make_field(name: str, title: str, kind: FieldKind, doc: str, getter: Getter,
               live: bool = False) -> FieldDef:
    return FieldDef(QueryField(name=name, title=title, kind=kind, doc=doc), getter, live)


_IMMUTABLE = (str, int, float, bool, type(None), ResultStatus)
# Exact types returned as they are without further checks (the common case).
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None), ReadOnlyDict})


def copy_value(value: Any) -> Any:
    """A result value that cannot alias the shared config objects.

    Flat dicts and lists of immutable values (parameters, tags) are copied
    shallowly: as safe as a deep copy, without its cost at 10,000 rows.
    Shared filled parameters (:class:`ReadOnlyDict`) cannot change: not copied.
    """
    if type(value) in _SCALAR_TYPES or isinstance(value, _IMMUTABLE):
        return value
    if type(value) is dict and all(isinstance(v, _IMMUTABLE) for v in value.values()):
        return dict(value)
    if type(value) is list and all(isinstance(v, _IMMUTABLE) for v in value):
        return list(value)
    return copy.deepcopy(value)


def attr_getter(attr: str) -> Getter:
    get = operator.attrgetter(attr)

    def getter(_ctx: QueryContext, obj: Any) -> Any:
        value = get(obj)
        return value if type(value) in _SCALAR_TYPES else copy_value(value)
    return getter


def common_fields() -> list[FieldDef]:
    return [
        make_field("uuid", "UUID", "text", "Unique identifier", attr_getter("uuid")),
        make_field("ctime", "CTime", "timestamp", "Creation timestamp", attr_getter("ctime")),
        make_field("mtime", "MTime", "timestamp", "Modification timestamp", attr_getter("mtime")),
        make_field("serial_no", "SerialNo", "number",
                   "Object serial number, incremented on each modification",
                   attr_getter("serial_no")),
        make_field("tags", "Tags", "other", "Tags", attr_getter("tags")),
    ]


def with_aliases(fields: list[FieldDef], aliases: list[tuple[str, str]]) -> dict[str, FieldDef]:
    table = {f.definition.name: f for f in fields}
    for alias, target in aliases:
        orig = table[target]
        table[alias] = FieldDef(orig.definition.model_copy(update={"name": alias}),
                                orig.getter, orig.live)
    return table


