"""The ``export`` query resource (``Query(QR_EXPORT)``, ``/2/query/export``).

Mirrors Ganeti's export query (``query._BuildExportFields``,
``cmdlib.backup.ExportQuery``): one row per export found on a node, fields
``node`` and ``export``; a node whose ``export_list`` call fails gives one
row with the export unavailable (status 3). Names select nodes.
"""

from __future__ import annotations

from typing import Any

from corral.query.base import RS_NORMAL, RS_UNAVAIL, RS_UNKNOWN, nice_sort_key

EXPORT_FIELD_DEFS: dict[str, dict[str, Any]] = {
    "node": {"name": "node", "title": "Node", "kind": "text", "doc": "Node name"},
    "export": {"name": "export", "title": "Export", "kind": "text", "doc": "Export name"},
}


def export_rows(cfg: Any, rpc: Any, fields: list[str], node_names: list[str] | None
                ) -> list[list[tuple[int, Any]]]:
    """Rows of ``fields`` for every export of the (online) nodes, sorted by
    node then export name; unknown node names raise ``OpPrereqError``
    (ECODE_NOENT) from the config."""
    if node_names:
        nodes = list({n.uuid: n for n in map(cfg.expand_node, node_names)}.values())
    else:
        nodes = sorted(cfg.get_node_list(), key=lambda n: nice_sort_key(n.name))
    online = [n for n in nodes if not n.offline]
    results = rpc.call("export_list", [n.uuid for n in online], []) if online else {}
    rows: list[list[tuple[int, Any]]] = []
    for node in online:
        res = results[node.uuid]
        if res.fail_msg:
            entries = [(RS_UNAVAIL, None)]
        else:
            entries = [(RS_NORMAL, name) for name in sorted(res.payload or [],
                                                            key=nice_sort_key)]
        for export in entries:
            values = {"node": (RS_NORMAL, node.name), "export": export}
            rows.append([values.get(f, (RS_UNKNOWN, None)) for f in fields])
    return rows
