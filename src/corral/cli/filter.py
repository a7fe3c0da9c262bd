"""``gnt-filter`` / ``corral filter``: job filter rules.

Mirrors ``ganeti.client.gnt_filter``: add, replace, delete, list,
list-fields, info. Rule changes go straight to the master (LUXI
``ReplaceFilter``/``DeleteFilter``), not through the job queue, so a rule
pausing every job cannot lock out its own removal. Semantics:
:mod:`corral.jobs.filters`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from corral import errors
from corral.cli import CorralGroup, generic_list, generic_list_fields, get_env, root_option
from corral.cli import output as o
from corral.cli.options import argument, list_opts

DEFAULT_FIELDS = ["uuid", "priority", "predicates", "action"]
INFO_FIELDS = ["uuid", "watermark", "priority", "predicates", "action", "reason_trail"]
REASON_SRC_USER = "gnt:user"


@click.group("filter", cls=CorralGroup, aliases={"show": "info"})
@root_option
def filter_group(root: str | None) -> None:
    """Job filter rules of the job queue (gnt-filter)."""


def parse_action(value: str) -> Any:
    """``ACCEPT``/``PAUSE``/``REJECT``/``CONTINUE``, or ``RATE_LIMIT n`` (also
    as JSON ``["RATE_LIMIT", n]``) -> the action value the master takes."""
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError as err:
            raise errors.ParameterError(f"Invalid --action {value!r}: {err}") from None
    words = text.replace(":", " ").split()
    if len(words) == 2 and words[0].upper() == "RATE_LIMIT" and words[1].isdigit():
        return ["RATE_LIMIT", int(words[1])]
    return text.upper()


def parse_predicates(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as err:
        raise errors.ParameterError(f"--predicates must be a JSON list: {err}") from None


def _rule_options(fn: Any) -> Any:
    for deco in reversed([
        click.option("--priority", type=int, default=0, show_default=True,
                     help="Priority of the rule (non-negative; lower numbers first)"),
        click.option("--predicates", default="[]", show_default=True,
                     help="JSON list of predicates, e.g. '[[\"opcode\", [\"=\", \"OP_ID\", "
                          "\"OP_INSTANCE_CREATE\"]]]' (jobid, opcode or reason)"),
        click.option("--action", default="CONTINUE", show_default=True,
                     help="ACCEPT, PAUSE, REJECT, CONTINUE or 'RATE_LIMIT n'"),
        click.option("--reason", default=None,
                     help="Why the rule exists (kept in its reason trail)"),
    ]):
        fn = deco(fn)
    return fn


def _replace(uuid: str | None, priority: int, predicates: str, action: str,
             reason: str | None) -> int:
    trail = [[REASON_SRC_USER, reason, time.time_ns()]] if reason else []
    result = get_env().client.replace_filter(uuid, priority, parse_predicates(predicates),
                                             parse_action(action), trail)
    o.out(str(result))
    return 0


@filter_group.command("add")
@_rule_options
def add(priority: int, predicates: str, action: str, reason: str | None) -> int:
    """Add a job filter rule; prints its UUID."""
    return _replace(None, priority, predicates, action, reason)


@filter_group.command("replace")
@argument("uuid", help="UUID of the filter rule")
@_rule_options
def replace(uuid: str, priority: int, predicates: str, action: str,
            reason: str | None) -> int:
    """Replace the rule UUID (or create it); it gets a new watermark."""
    return _replace(uuid, priority, predicates, action, reason)


@filter_group.command("delete")
@argument("uuid", help="UUID of the filter rule")
def delete(uuid: str) -> int:
    """Remove the rule UUID."""
    get_env().client.delete_filter(uuid)
    return 0


@filter_group.command("list")
@list_opts
@argument("uuids", help="UUIDs of filter rules (default: all)", nargs=-1)
def list_(uuids: tuple[str, ...], **opts: Any) -> int:
    """List the job filter rules (in the order they are tried)."""
    return generic_list("filter", DEFAULT_FIELDS, uuids, opts)


@filter_group.command("list-fields")
@list_opts
@argument("fields", help="Fields to describe (default: all)", nargs=-1)
def list_fields(fields: tuple[str, ...], **opts: Any) -> int:
    """List the fields of job filter rules."""
    return generic_list_fields("filter", fields, opts)


@filter_group.command("info")
@argument("uuids", help="UUIDs of filter rules (default: all)", nargs=-1)
def info(uuids: tuple[str, ...]) -> int:
    """Show the details of rules (all when none is given)."""
    rows = get_env().client.query_filters(list(uuids) or None, INFO_FIELDS)
    for uuid, watermark, priority, predicates, action, reason_trail in rows:
        o.out(f"UUID: {uuid}")
        o.out(f"  Watermark: {watermark}")
        o.out(f"  Priority: {priority}")
        o.out(f"  Predicates: {json.dumps(predicates)}")
        o.out(f"  Action: {json.dumps(action) if isinstance(action, list) else action}")
        o.out(f"  Reason trail: {json.dumps(reason_trail)}")
    return 0
