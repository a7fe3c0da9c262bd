"""Field definitions and evaluation for instance, node and node group lists.

Mirrors ``ganeti.query`` (field names, titles, kinds, result statuses and the
instance ``status`` computation), so ``gnt-* list -o`` and RAPI bulk GETs
return what Ganeti users expect. Evaluation is O(rows x fields): per-row
values come from the config store's indexes, never from scans of the
configuration.

Each result cell is ``(status, value)`` with status one of ``RS_*``; the
value is ``None`` unless the status is ``RS_NORMAL``. Sizes (``unit`` fields)
are in MiB, timestamps in seconds since the epoch.

Modules: ``base`` (statuses, records, per-query context), ``instance`` and
``node`` (the field tables), ``fields`` (lookup), ``live`` (RPC gathering).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from corral.config import ConfigStore
from corral.query.base import (
    QUERY_WHATS,
    RS_NODATA,
    RS_NORMAL,
    RS_OFFLINE,
    RS_UNAVAIL,
    RS_UNKNOWN,
    UNKNOWN,
    LiveData,
    QueryContext,
    QueryField,
    ResultStatus,
    Row,
    flatten_node_info,
    nice_sort_key,
)
from corral.query.fields import field_definitions, field_table, needs_live_data
from corral.query.live import gather_live_data
from corral.query.params import FilledParams, ReadOnlyDict

__all__ = [
    "QUERY_WHATS",
    "RS_NODATA",
    "RS_NORMAL",
    "RS_OFFLINE",
    "RS_UNAVAIL",
    "RS_UNKNOWN",
    "FilledParams",
    "LiveData",
    "QueryField",
    "ReadOnlyDict",
    "field_definitions",
    "flatten_node_info",
    "gather_live_data",
    "needs_live_data",
    "nice_sort_key",
    "query",
]


def _select_objects(what: str, cfg: ConfigStore, names: list[str] | None) -> list[Any]:
    if names:
        expand = {"instance": cfg.expand_instance, "node": cfg.expand_node,
                  "group": cfg.expand_nodegroup, "network": cfg.expand_network}[what]
        seen: set[str] = set()
        out = []
        for name in names:
            obj = expand(name)          # OpPrereqError ECODE_NOENT if unknown
            if obj.uuid not in seen:
                seen.add(obj.uuid)
                out.append(obj)
        return out
    objs: Iterable[Any] = {"instance": cfg.get_instances, "node": cfg.get_nodes,
                           "group": cfg.get_nodegroups,
                           "network": cfg.get_networks}[what]().values()
    return sorted(objs, key=lambda o: nice_sort_key(o.name))


def _unknown(_ctx: QueryContext, _obj: Any) -> ResultStatus:
    return UNKNOWN


def query(what: str, cfg: ConfigStore, fields: list[str], names: list[str] | None = None,
          live_data: LiveData | None = None, params: FilledParams | None = None
          ) -> list[Row]:
    """Evaluate ``fields`` for the objects of ``what``.

    ``names`` selects objects (names, UUIDs or unique short names; in the given
    order, duplicates dropped); ``None`` or empty means all, in NiceSort order
    of names. Returns one row per object, one ``(status, value)`` per field;
    unknown fields give ``(RS_UNKNOWN, None)`` in every row. Live fields need
    ``live_data`` (else ``RS_NODATA``). ``params``: filled parameters shared
    with other queries (see :mod:`corral.query.params`); dict values such as
    ``hvparams`` may be shared read-only dicts, so treat rows as read-only.
    Only the requested fields are computed. Raises ``OpPrereqError``
    ECODE_NOENT for unknown names and ECODE_INVAL for an unknown ``what``.
    """
    table = field_table(what)
    objs = _select_objects(what, cfg, names)
    ctx = QueryContext(cfg, live_data, params)
    getters = [_unknown if fdef is None else fdef.getter
               for fdef in (table.get(f) for f in fields)]
    # Inlined (no helper call per cell): 350,000 cells for a RAPI bulk GET of
    # 10,000 instances.
    return [[(RS_NORMAL, v) if type(v := get(ctx, obj)) is not ResultStatus
             else (v.status, None) for get in getters] for obj in objs]
