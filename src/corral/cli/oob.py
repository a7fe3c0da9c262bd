"""``gnt-node power`` and ``gnt-node health``: out-of-band management.

Mirrors ``ganeti.client.gnt_node.PowerNode`` and ``Health``: both submit
OP_OOB_COMMAND (``power off`` first marks the nodes offline in the same job,
unless ``--ignore-status``) and print a Node/Status table; exit 1 when a
node gave no answer.
"""

from __future__ import annotations

from typing import Any

import click

from corral import constants as C
from corral.cli import build_op, confirm, submit_job
from corral.cli import output as o
from corral.cli.node import node
from corral.cli.options import argument, submit_opts

# Power sub-commands and the OOB commands they run.
POWER_COMMANDS = {"on": C.OOB_POWER_ON, "off": C.OOB_POWER_OFF,
                  "cycle": C.OOB_POWER_CYCLE, "status": C.OOB_POWER_STATUS}
# Commands that need named nodes and a confirmation.
_ASK = (C.OOB_POWER_OFF, C.OOB_POWER_CYCLE)

oob_timeout_option = click.option(
    "--oob-timeout", type=click.IntRange(min=1), default=C.OOB_TIMEOUT, show_default=True,
    help="Seconds the out-of-band program may run per node")
table_options = [
    click.option("--no-headers", is_flag=True, help="Do not print column headers"),
    click.option("--separator", default=None, help="Column separator (default: aligned)"),
]


def _with_table_options(fn: Any) -> Any:
    for deco in reversed(table_options):
        fn = deco(fn)
    return fn


def _print_results(result: list[Any], describe: Any, opts: dict[str, Any]) -> int:
    """Print ``[[(_, name), (status, payload)], ...]`` as a Node/Status table;
    ``describe(payload)`` gives the status lines of a node that answered.
    Returns the exit code (1 when a node gave no answer)."""
    rows: list[list[str]] = []
    errs = 0
    for (_, node_name), (status, payload) in result:
        if status == o.RS_NORMAL:
            lines = describe(payload)
            rows.append([node_name, lines[0]])
            rows.extend(["", line] for line in lines[1:])
        else:
            errs += 1
            rows.append([node_name, o.RSS_DESCRIPTION.get(status, ("(unknown)",))[0]])
    headers = None if opts.get("no_headers") else ["Node", "Status"]
    for line in o.generate_table(headers, rows, [False, False], opts.get("separator")):
        o.out(line)
    return o.EXIT_FAILURE if errs else o.EXIT_SUCCESS


@node.command("power")
@argument("command", help="Power action", type=click.Choice(sorted(POWER_COMMANDS)))
@argument("nodes", help="Nodes to act on (default: all)", nargs=-1)
@click.option("--ignore-status", is_flag=True,
              help="Power off without marking the nodes offline first")
@click.option("--power-delay", type=click.FloatRange(min=0), default=C.OOB_POWER_DELAY,
              show_default=True, help="Seconds between powering on two nodes")
@click.option("--auto-promote", is_flag=True,
              help="Promote other nodes to master candidate if powering off demotes some")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@oob_timeout_option
@_with_table_options
@submit_opts
def power(command: str, nodes: tuple[str, ...], ignore_status: bool, power_delay: float,
          auto_promote: bool, force: bool, oob_timeout: int, **opts: Any) -> int:
    """Power nodes on, off or cycle them, or show their power state, through
    their out-of-band program (the ``oob_program`` node parameter)."""
    oob_command = POWER_COMMANDS[command]
    if oob_command in _ASK:
        if not nodes:
            o.err("Please provide at least one node for this command")
            return o.EXIT_FAILURE
        confirm(f"The following nodes will be powered {command}:\n  "
                + "\n  ".join(nodes) + "\nContinue?", force)
    ops = []
    if oob_command == C.OOB_POWER_OFF and not ignore_status:
        ops = [build_op("OP_NODE_SET_PARAMS", opts, node_name=name, offline=True,
                        auto_promote=auto_promote) for name in nodes]
    ops.append(build_op("OP_OOB_COMMAND", opts, node_names=list(nodes), command=oob_command,
                        ignore_status=ignore_status, timeout=oob_timeout,
                        power_delay=power_delay))
    result = submit_job(ops, opts)[-1]

    def describe(payload: Any) -> list[str]:
        if oob_command == C.OOB_POWER_STATUS:
            return ["powered" if payload[C.OOB_POWER_STATUS_POWERED] else "unpowered"]
        return ["invoked"]

    return _print_results(result, describe, opts)


@node.command("health")
@argument("nodes", help="Nodes to act on (default: all)", nargs=-1)
@oob_timeout_option
@_with_table_options
@submit_opts
def health(nodes: tuple[str, ...], oob_timeout: int, **opts: Any) -> int:
    """Show the health items that nodes' out-of-band programs report."""
    op = build_op("OP_OOB_COMMAND", opts, node_names=list(nodes), command=C.OOB_HEALTH,
                  timeout=oob_timeout)
    result = submit_job([op], opts)[0]
    return _print_results(result, lambda items: [f"{item}={status}" for item, status in items]
                          or ["(no items)"], opts)
