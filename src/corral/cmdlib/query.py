"""Logical units OP_QUERY and OP_QUERY_FIELDS (Ganeti's query2 interface).

Mirrors ``ganeti.cmdlib.query``; field definitions and evaluation are in
:mod:`corral.query`.
"""

from __future__ import annotations

from typing import Any

from corral import errors
from corral import query as qlang
from corral.cmdlib.base import FeedbackFn, QueryLU

_SUPPORTED = ("instance", "node", "group", "network")


def _check_what(what: str) -> None:
    if what not in _SUPPORTED:
        raise errors.OpPrereqError(f"Queries of '{what}' are not supported yet",
                                   errors.ECODE_INVAL)


def _names_from_filter(qfilter: list[Any] | None) -> list[str] | None:
    """Names from the simple filters the CLI sends; None = no restriction.

    Supports ``["|", ["=", "name", "x"], ...]`` and ``["=", "name", "x"]``.
    """
    if not qfilter:
        return None
    op = qfilter[0]
    if op == "=" and len(qfilter) == 3 and qfilter[1] == "name":
        return [qfilter[2]]
    if op == "|":
        names: list[str] = []
        for sub in qfilter[1:]:
            part = _names_from_filter(sub)
            if part is None:
                raise errors.OpPrereqError(f"Unsupported query filter {qfilter!r}",
                                           errors.ECODE_INVAL)
            names.extend(part)
        return names
    raise errors.OpPrereqError(f"Unsupported query filter {qfilter!r}", errors.ECODE_INVAL)


class LUQuery(QueryLU):
    def check_arguments(self) -> None:
        _check_what(self.op.what)
        self.names = _names_from_filter(self.op.qfilter)

    def expand_names(self) -> None:
        self.needed_locks = {}

    def exec(self, feedback_fn: FeedbackFn) -> dict[str, Any]:
        defs = qlang.field_definitions(self.op.what)
        live = None
        if qlang.needs_live_data(self.op.what, self.op.fields):
            live = qlang.gather_live_data(self.op.what, self.cfg, self.rpc, self.op.fields)
        rows = qlang.query(self.op.what, self.cfg, self.op.fields, self.names, live)
        fields = []
        for name in self.op.fields:
            fdef = defs.get(name)
            if fdef is None:
                fields.append({"name": name, "title": name, "kind": "unknown",
                               "doc": "Unknown field"})
            else:
                fields.append(fdef.model_dump())
        return {"fields": fields, "data": [[list(cell) for cell in row] for row in rows]}


class LUQueryFields(QueryLU):
    def check_arguments(self) -> None:
        _check_what(self.op.what)

    def expand_names(self) -> None:
        self.needed_locks = {}

    def exec(self, feedback_fn: FeedbackFn) -> dict[str, Any]:
        defs = qlang.field_definitions(self.op.what)
        names = self.op.fields or sorted(defs)
        return {"fields": [defs[n].model_dump() if n in defs else
                           {"name": n, "title": n, "kind": "unknown", "doc": "Unknown field"}
                           for n in names]}
