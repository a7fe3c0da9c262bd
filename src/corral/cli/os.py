"""``gnt-os`` / ``corral os``: operating system definitions.

Mirrors ``ganeti.client.gnt_os``: list, diagnose, info (built on
OP_OS_DIAGNOSE) and modify (OP_CLUSTER_SET_PARAMS). Like Ganeti's legacy
diagnose, ``list`` shows only OSes that are valid on every node and neither
hidden nor blacklisted.
"""

from __future__ import annotations

from typing import Any

import click

from corral.cli import CorralGroup, build_op, root_option, submit_job, submit_op
from corral.cli import output as o
from corral.cli.options import (
    argument,
    parse_hvparams_option,
    parse_kv,
    parse_yes_no,
    submit_opts,
)
from corral.values import os_names


@click.group("os", cls=CorralGroup, aliases={"show": "info"})
@root_option
def os_group(root: str | None) -> None:
    """Operating system definitions (gnt-os)."""


def _stderr_log(entry: tuple[Any, str, Any]) -> None:
    o.err(o.format_log_message(*entry))


def diagnose_rows(fields: list[str]) -> list[dict[str, Any]]:
    """OP_OS_DIAGNOSE rows as dicts of ``fields`` (logs go to stderr)."""
    op = build_op("OP_OS_DIAGNOSE", None, output_fields=fields, names=[])
    rows = submit_job([op], None, feedback=_stderr_log)[0]
    return [dict(zip(fields, row)) for row in rows or []]


def valid_os_names(rows: list[dict[str, Any]]) -> list[str]:
    """``name``/``name+variant`` of valid, visible OSes (legacy diagnose filter)."""
    names: list[str] = []
    for row in rows:
        if row.get("valid") and not row.get("hidden") and not row.get("blacklisted"):
            names.extend(os_names(row["name"], row.get("variants")))
    return names


@os_group.command("list")
@click.option("--no-headers", is_flag=True, help="Do not print column headers")
def list_(no_headers: bool) -> int:
    """List the valid OSes (with variants) available on all nodes."""
    rows = diagnose_rows(["name", "valid", "variants", "hidden", "blacklisted"])
    names = valid_os_names(rows)
    for line in o.generate_table(None if no_headers else ["Name"], [[n] for n in names],
                                 [False], None):
        o.out(line)
    return 0


def _os_status(status: bool, diagnose: str) -> str:
    return "valid" if status else f"invalid - {diagnose}"


def diagnose_lines(row: dict[str, Any]) -> tuple[list[str], bool]:
    """Output lines for one OS of ``gnt-os diagnose`` and whether it is bad."""
    valid_nodes: dict[str, str] = {}
    bad_nodes: dict[str, str] = {}
    hidden: dict[str, list[str]] = {}
    for node_name, entries in sorted((row.get("node_status") or {}).items()):
        hidden[node_name] = []
        if not entries:
            bad_nodes[node_name] = "OS not found"
            continue
        path, status, diag, variants, params, api, trusted = (list(entries[0]) +
                                                              [None] * 7)[:7]
        msg = f"{_os_status(status, diag)} (path: {path})"
        api = list(api or [])
        msg += (f" [API versions: {', '.join(str(a) for a in api)}]" if api
                else " [no API versions declared]")
        if api and max(api) >= 15:
            msg += f" [variants: {', '.join(variants)}]" if variants else " [no variants]"
        if api and max(api) >= 20:
            msg += (f" [parameters: {', '.join(p[0] for p in params)}]" if params
                    else " [no parameters]")
        msg += " [trusted]" if trusted else " [untrusted]"
        (valid_nodes if status else bad_nodes)[node_name] = msg
        for extra in entries[1:]:
            hidden[node_name].append(f"    [hidden] path: {extra[0]}, status: "
                                     f"{_os_status(extra[1], extra[2])}")
    if valid_nodes and not bad_nodes:
        status_text, bad = "valid", False
    elif bad_nodes and not valid_nodes:
        status_text, bad = "invalid", True
    else:
        status_text, bad = "partial valid", True
    head = f"OS: {row.get('name')} [global status: {status_text}]"
    if row.get("hidden"):
        head += " [hidden]"
    if row.get("blacklisted"):
        head += " [blacklisted]"
    lines = [head]
    if row.get("variants"):
        lines.append(f"  Variants: [{', '.join(row['variants'])}]")
    for nodes in (valid_nodes, bad_nodes):
        for node_name, msg in nodes.items():
            lines.append(f"  Node: {node_name}, status: {msg}")
            lines.extend(hidden.get(node_name, []))
    lines.append("")
    return lines, bad


@os_group.command("diagnose")
def diagnose() -> int:
    """Show the status of every OS on every node; exit 1 if any is not valid."""
    rows = diagnose_rows(["name", "valid", "variants", "node_status", "hidden",
                          "blacklisted"])
    has_bad = False
    for row in rows:
        lines, bad = diagnose_lines(row)
        has_bad = has_bad or bad
        for line in lines:
            o.out(line)
    return int(has_bad)


@os_group.command("info")
@argument("names", nargs=-1, help="OS definitions to show (default: all)")
def info(names: tuple[str, ...]) -> int:
    """Show details of OSes (YAML): validity, API versions, variants, parameters."""
    rows = diagnose_rows(["name", "valid", "variants", "parameters", "api_versions",
                          "blacklisted", "hidden", "os_hvp", "osparams", "trusted"])
    wanted = list(names)
    doc: dict[str, Any] = {}
    for row in rows:
        name = row["name"]
        if wanted and name not in wanted:
            continue
        entry: dict[str, Any] = {"valid": row.get("valid"), "hidden": row.get("hidden"),
                                 "blacklisted": row.get("blacklisted")}
        if row.get("valid"):
            entry["API versions"] = sorted(row.get("api_versions") or [])
            entry["variants"] = list(row.get("variants") or [])
            entry["parameters"] = {p[0]: p[1] for p in row.get("parameters") or []}
        entry["trusted"] = row.get("trusted")
        if row.get("os_hvp"):
            entry["hypervisor parameters"] = row["os_hvp"]
        if row.get("osparams"):
            entry["OS parameters"] = row["osparams"]
        doc[name] = entry
    for name in wanted:
        if name not in doc:
            doc[name] = None
    if doc:
        o.print_info(doc)
    return 0


@os_group.command("modify")
@click.argument("os_name", metavar="OS")
@click.option("-H", "--hypervisor-parameters", "hvparams", multiple=True,
              metavar="HV:KEY=VAL,...",
              help="Hypervisor parameters used for this OS's instances (repeatable)")
@click.option("-O", "--os-parameters", "osparams", default=None, metavar="KEY=VAL,...",
              help="Cluster-wide defaults of this OS's parameters")
@click.option("--hidden", default=None, metavar="yes|no",
              help="Hide the OS from 'gnt-os list' and from new instances")
@click.option("--blacklisted", default=None, metavar="yes|no",
              help="Refuse the OS for new instances and reinstalls")
@submit_opts
def modify(os_name: str, hvparams: tuple[str, ...], osparams: str | None,
           hidden: str | None, blacklisted: str | None, **opts: Any) -> int:
    """Change an OS's cluster-wide parameters and visibility.

    Mirrors ``gnt-os modify``: submits OP_CLUSTER_SET_PARAMS with
    ``os_hvp``, ``osparams``, ``hidden_os`` and ``blacklisted_os`` for OS.
    Exits 1 when nothing is to be changed.
    """
    params: dict[str, Any] = {}
    if hvparams:
        params["os_hvp"] = {os_name: parse_hvparams_option(hvparams, True)}
    if osparams:
        params["osparams"] = {os_name: parse_kv(osparams, "-O")}
    for attr, value, opt in (("hidden_os", hidden, "--hidden"),
                             ("blacklisted_os", blacklisted, "--blacklisted")):
        flag = parse_yes_no(value, opt)
        if flag is not None:
            params[attr] = [["add" if flag else "remove", os_name]]
    if not params:
        o.err("At least one of OS parameters or hypervisor parameters must be passed")
        return 1
    submit_op(build_op("OP_CLUSTER_SET_PARAMS", opts, **params), opts)
    return 0
