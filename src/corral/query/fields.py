"""The field tables by query resource, and questions about fields."""

from __future__ import annotations

from collections.abc import Callable

from corral import errors
from corral.query.base import FieldDef, QueryField
from corral.query.instance import instance_fields
from corral.query.network import network_fields
from corral.query.node import group_fields, node_fields

_TABLES: dict[str, Callable[[], dict[str, FieldDef]]] = {
    "instance": instance_fields, "node": node_fields, "group": group_fields,
    "network": network_fields}


def field_table(what: str) -> dict[str, FieldDef]:
    """Fields of ``what`` by name; ``OpPrereqError`` (ECODE_INVAL) if unknown."""
    try:
        return _TABLES[what]()
    except KeyError:
        raise errors.OpPrereqError(f"Unknown query resource '{what}'",
                                   errors.ECODE_INVAL) from None


def field_definitions(what: str) -> dict[str, QueryField]:
    """All fields of ``what`` (``instance``, ``node``, ``group``) by name,
    aliases included. ``OpPrereqError`` (ECODE_INVAL) for another ``what``."""
    return {name: f.definition for name, f in field_table(what).items()}


def needs_live_data(what: str, fields: list[str]) -> bool:
    """True if any of ``fields`` needs data from the nodes (RPC)."""
    table = field_table(what)
    return any(table[f].live for f in fields if f in table)


