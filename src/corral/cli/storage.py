"""``gnt-node list-storage``: storage units of nodes.

Mirrors ``ganeti.client.gnt_node.ListStorage`` (OP_NODE_QUERY_STORAGE):
a Node/Type/Name/Size/Used/Free/Allocatable table, sizes in the chosen
units, or JSON with ``--output json``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from corral import constants as C
from corral.cli import build_op, parse_field_list, submit_op
from corral.cli import output as o
from corral.cli.options import argument
from corral.cli.node import node

DEFAULT_FIELDS = [C.SF_NODE, C.SF_TYPE, C.SF_NAME, C.SF_SIZE, C.SF_USED, C.SF_FREE,
                  C.SF_ALLOCATABLE]
HEADERS = {C.SF_NODE: "Node", C.SF_TYPE: "Type", C.SF_NAME: "Name", C.SF_SIZE: "Size",
           C.SF_USED: "Used", C.SF_FREE: "Free", C.SF_ALLOCATABLE: "Allocatable"}
SIZE_FIELDS = (C.SF_SIZE, C.SF_USED, C.SF_FREE)


def format_storage_cell(field: str, value: Any, units: str) -> str:
    """A list-storage cell: Y/N for ``allocatable``, sizes (MiB) in ``units``."""
    if field == C.SF_ALLOCATABLE:
        return "Y" if value else "N"
    if field in SIZE_FIELDS and value is not None:
        return o.format_unit(value, units)
    return str(value)


@node.command("list-storage")
@argument("nodes", help="Nodes to list (default: all)", nargs=-1)
@click.option("-t", "--storage-type", default=None, type=click.Choice(C.STORAGE_TYPES),
              help="Storage type to list (default: that of the first enabled disk "
                   "template)")
@click.option("-o", "--output-fields", "fields", default=None,
              help="Comma-separated fields (node, type, name, size, used, free, "
                   "allocatable); a leading '+' adds to the defaults")
@click.option("--no-headers", is_flag=True, help="Do not print column headers")
@click.option("--separator", default=None, help="Column separator (default: aligned)")
@click.option("--units", type=click.Choice(["h", "m", "g", "t"]), default=None,
              help="Units of sizes (default: human readable; MiB with --separator)")
@click.option("--output", "output_format", type=click.Choice(["table", "json"]),
              default="table", help="Output format")
def list_storage(nodes: tuple[str, ...], storage_type: str | None, fields: str | None,
                 no_headers: bool, separator: str | None, units: str | None,
                 output_format: str) -> int:
    """List the storage units of nodes (file storage directories) with their
    size, use and free space."""
    selected = parse_field_list(fields, DEFAULT_FIELDS)
    rows = submit_op(build_op("OP_NODE_QUERY_STORAGE", None, nodes=list(nodes),
                              storage_type=storage_type, output_fields=selected))
    if output_format == "json":
        o.out(json.dumps([dict(zip(selected, row)) for row in rows], indent=2))
        return o.EXIT_SUCCESS
    unit = units or ("m" if separator else "h")
    cells = [[format_storage_cell(f, v, unit) for f, v in zip(selected, row)] for row in rows]
    headers = None if no_headers else [HEADERS[f] for f in selected]
    for line in o.generate_table(headers, cells, [f in SIZE_FIELDS for f in selected],
                                 separator):
        o.out(line)
    return o.EXIT_SUCCESS
