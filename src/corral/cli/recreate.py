"""``gnt-instance recreate-disks``: create an instance's missing disks again.

Mirrors ``ganeti.client.gnt_instance.RecreateDisks`` (OP_INSTANCE_RECREATE_DISKS):
``--disk N[:size=SIZE,mode=ro|rw]`` (repeatable; default all disks),
``-n PNODE[:SNODE]`` to create them on other nodes, ``-I`` (an allocator).
"""

from __future__ import annotations

from typing import Any

import click

from corral import constants as C
from corral import errors
from corral.cli import build_op, submit_op
from corral.cli.instance import instance
from corral.cli.options import (
    argument,
    parse_ident_kv,
    parse_node_spec,
    parse_size,
    submit_opts,
)


def parse_recreate_disks(values: tuple[str, ...]) -> list[list[Any]]:
    """``--disk`` values -> ``[[index, {size (MiB), mode, spindles}], ...]``;
    :class:`errors.OpPrereqError` (ECODE_INVAL) for a bad index or size."""
    disks: list[list[Any]] = []
    for value in values:
        ident, params = parse_ident_kv(value, "--disk", parse_prefixes=False)
        if not ident.isdigit() or not isinstance(params, dict):
            raise errors.OpPrereqError(f"Invalid disk specification '{value}'",
                                       errors.ECODE_INVAL)
        idx = int(ident)
        if C.IDISK_SIZE in params:
            try:
                params[C.IDISK_SIZE] = parse_size(str(params[C.IDISK_SIZE]))
            except (ValueError, errors.CorralError) as err:
                raise errors.OpPrereqError(f"Invalid disk size for disk {idx}: {err}",
                                           errors.ECODE_INVAL) from None
        if C.IDISK_SPINDLES in params:
            try:
                params[C.IDISK_SPINDLES] = int(params[C.IDISK_SPINDLES])
            except ValueError:
                raise errors.OpPrereqError(f"Invalid spindles for disk {idx}",
                                           errors.ECODE_INVAL) from None
        disks.append([idx, params])
    return disks


@instance.command("recreate-disks")
@argument("name", help="Name of the instance")
@click.option("--disk", "disks", multiple=True, metavar="N[:size=SIZE,mode=ro|rw]",
              help="Disk to re-create, optionally with a new size or mode (repeatable; "
                   "default: all disks)")
@click.option("-n", "--node", default=None, metavar="PNODE[:SNODE]",
              help="Create the disks on these nodes instead (all disks; the instance "
                   "moves there)")
@click.option("-I", "--iallocator", default=None,
              help="Instance allocator choosing the new nodes")
@submit_opts
def recreate_disks(name: str, disks: tuple[str, ...], node: str | None,
                   iallocator: str | None, **opts: Any) -> int:
    """Create an instance's missing disks again, empty (the instance must be
    stopped)."""
    nodes: list[str] = []
    if node:
        if iallocator:
            raise errors.OpPrereqError("At most one of either --nodes or --iallocator can be "
                                       "passed", errors.ECODE_INVAL)
        pnode, snode = parse_node_spec(node)
        nodes = [n for n in (pnode, snode) if n]
    submit_op(build_op("OP_INSTANCE_RECREATE_DISKS", opts, instance_name=name,
                       disks=parse_recreate_disks(disks), nodes=nodes,
                       iallocator=iallocator), opts)
    return 0
