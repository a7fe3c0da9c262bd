"""``gnt-group`` / ``corral group``: node group commands.

Mirrors ``ganeti.client.gnt_group``: add, assign-nodes, list, list-fields,
info, modify, remove, rename, evacuate and the tag commands. The instance
policy options build only the group's own ``ipolicy`` keys; checking them
is the master's job.
"""

from __future__ import annotations

from typing import Any

import click

from corral import constants as C
from corral import errors
from corral.cli import (
    CorralGroup,
    add_tag_commands,
    build_op,
    generic_list,
    generic_list_fields,
    query_rows,
    root_option,
    submit_op,
)
from corral.cli import output as o
from corral.cli.ipolicy_opts import ipolicy_from_options, ipolicy_options
from corral.cli.options import (
    argument,
    _compose,
    force_dict_type,
    group_change_opts,
    list_opts,
    parse_ident_kv,
    parse_kv,
    submit_opts,
)

DEFAULT_FIELDS = ["name", "node_cnt", "pinst_cnt", "alloc_policy", "ndparams"]
INFO_FIELDS = ["name", "uuid", "alloc_policy", "ndparams", "custom_ndparams", "diskparams",
               "custom_diskparams", "ipolicy", "custom_ipolicy", "node_list", "tags"]


@click.group("group", cls=CorralGroup, aliases={"show": "info"})
@root_option
def group(root: str | None) -> None:
    """Node group administration (gnt-group)."""


# Options of add and modify (Ganeti's ALLOC_POLICY_OPT, NODE_PARAMS_OPT,
# DISK_PARAMS_OPT, HV_STATE_OPT, DISK_STATE_OPT and the simple policy options).
_param_opts = _compose(
    click.option("--alloc-policy", type=click.Choice(C.VALID_ALLOC_POLICIES), default=None,
                 help="Allocation policy of the group: preferred, last_resort "
                      "(used only when no preferred group fits) or unallocable"),
    click.option("--node-parameters", "ndparams", default=None, metavar="KEY=VAL,...",
                 help="Node parameters of the group's nodes (override the cluster's; "
                      "-KEY resets a key)"),
    click.option("-D", "--disk-parameters", "diskparams", multiple=True,
                 metavar="TEMPLATE:KEY=VAL,...",
                 help="Disk parameters of one disk template (repeatable)"),
    click.option("--hypervisor-state", "hv_state", multiple=True, metavar="HV:KEY=VAL,...",
                 help="Static hypervisor state of one hypervisor (repeatable)"),
    click.option("--disk-state", "disk_state", multiple=True,
                 metavar="TYPE:KEY=VAL,...",
                 help="Static disk state of one storage type (repeatable)"),
    ipolicy_options(group=True),
)


def _per_ident(values: tuple[str, ...], opt: str) -> dict[str, Any]:
    """``IDENT:KEY=VAL,...`` options -> ``{IDENT: {KEY: VAL}}``."""
    out: dict[str, Any] = {}
    for value in values:
        ident, params = parse_ident_kv(value, opt)
        if not isinstance(params, dict):
            raise errors.ParameterError(f"Invalid {opt} value '{value}'")
        out[ident] = params
    return out


def _group_params(opts: dict[str, Any], allow_none: bool) -> dict[str, Any]:
    """Opcode parameters of the options given (absent options are left out)."""
    params: dict[str, Any] = {}
    if opts["alloc_policy"] is not None:
        params["alloc_policy"] = opts["alloc_policy"]
    if opts["ndparams"] is not None:
        params["ndparams"] = force_dict_type(parse_kv(opts["ndparams"], "--node-parameters"),
                                             C.NDS_PARAMETER_TYPES, allow_none=allow_none)
    for key, opt in (("diskparams", "-D"), ("hv_state", "--hypervisor-state"),
                     ("disk_state", "--disk-state")):
        if opts[key]:
            params[key] = _per_ident(opts[key], opt)
    ipolicy = ipolicy_from_options(opts, group=True)
    if ipolicy:
        params["ipolicy"] = ipolicy
    return params


@group.command("add")
@argument("name", help="Name of the node group")
@_param_opts
@submit_opts
def add(name: str, **opts: Any) -> int:
    """Add a new node group to the cluster."""
    submit_op(build_op("OP_GROUP_ADD", opts, group_name=name,
                       **_group_params(opts, allow_none=False)), opts)
    return 0


@group.command("assign-nodes")
@argument("name", help="Name of the node group")
@argument("nodes", help="Nodes to move into the group", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True,
              help="Assign even if instances get split across groups")
@submit_opts
def assign_nodes(name: str, nodes: tuple[str, ...], **opts: Any) -> int:
    """Assign nodes to a group."""
    submit_op(build_op("OP_GROUP_ASSIGN_NODES", opts, group_name=name, nodes=list(nodes),
                       force=opts["force"]), opts)
    return 0


@group.command("list")
@argument("names", help="Names of node groups (default: all)", nargs=-1)
@list_opts
def list_(names: tuple[str, ...], **opts: Any) -> int:
    """List node groups (default fields: name, node_cnt, pinst_cnt, alloc_policy,
    ndparams)."""
    return generic_list("group", DEFAULT_FIELDS, names, opts)


@group.command("list-fields")
@argument("fields", help="Fields to describe (default: all)", nargs=-1)
@click.option("--no-headers", is_flag=True, help="Do not print column headers")
@click.option("--separator", default=None, help="Column separator (default: aligned)")
@click.option("--output", "output_format", type=click.Choice(["table", "json"]),
              default="table", help="Output format")
def list_fields(fields: tuple[str, ...], **opts: Any) -> int:
    """List the fields of 'list -o'."""
    return generic_list_fields("group", fields, opts)


@group.command("info")
@argument("names", help="Names of node groups (default: all)", nargs=-1)
def info(names: tuple[str, ...]) -> int:
    """Show detailed information about node groups (YAML)."""
    from corral.cli.instance import _params_info

    docs = []
    for row in query_rows("group", INFO_FIELDS, list(names)):
        v = {f: (val if st == 0 else None) for f, (st, val) in zip(INFO_FIELDS, row)}
        docs.append({
            "Node group": v["name"],
            "UUID": v["uuid"],
            "Allocation policy": v["alloc_policy"],
            "Nodes": list(v["node_list"] or []),
            "Tags": list(v["tags"] or []),
            "Node parameters": _params_info(v["custom_ndparams"], v["ndparams"]),
            "Disk parameters": {dt: _params_info((v["custom_diskparams"] or {}).get(dt),
                                                 params)
                                for dt, params in sorted((v["diskparams"] or {}).items())},
            "Instance policy": _params_info(v["custom_ipolicy"], v["ipolicy"]),
        })
    o.print_info(docs)
    return 0


@group.command("modify")
@argument("name", help="Name of the node group")
@_param_opts
@submit_opts
def modify(name: str, **opts: Any) -> int:
    """Alter the parameters of a node group."""
    params = _group_params(opts, allow_none=True)
    if not params:
        o.err("Please give at least one of the parameters.")
        return o.EXIT_FAILURE
    result = submit_op(build_op("OP_GROUP_SET_PARAMS", opts, group_name=name, **params),
                       opts)
    if result:
        o.out(f"Modified node group {name}")
        for param, data in result:
            o.out(f" - {param:<5} -> {data}")
    return 0


@group.command("remove")
@argument("name", help="Name of the node group")
@submit_opts
def remove(name: str, **opts: Any) -> int:
    """Remove an (empty) node group from the cluster."""
    submit_op(build_op("OP_GROUP_REMOVE", opts, group_name=name), opts)
    return 0


@group.command("rename")
@argument("name", help="Name of the node group")
@argument("new_name", help="New name of the node group")
@submit_opts
def rename(name: str, new_name: str, **opts: Any) -> int:
    """Rename a node group."""
    submit_op(build_op("OP_GROUP_RENAME", opts, group_name=name, new_name=new_name), opts)
    return 0


@group.command("evacuate")
@argument("name", help="Name of the node group")
@group_change_opts
@click.option("--sequential", is_flag=True, help="Move the instances one after another")
@click.option("--force-failover", is_flag=True,
              help="Fail instances over (shut down) instead of migrating them")
@submit_opts
def evacuate(name: str, **opts: Any) -> int:
    """Evacuate all instances of a group to other groups."""
    from corral.cli.cluster import wait_spawned_jobs

    result = submit_op(build_op("OP_GROUP_EVACUATE", opts, group_name=name,
                                target_groups=list(opts["target_groups"]) or None,
                                iallocator=opts["iallocator"],
                                early_release=opts["early_release"],
                                sequential=opts["sequential"],
                                force_failover=opts["force_failover"]), opts)
    if wait_spawned_jobs(result, action="evacuating the group"):
        return o.EXIT_FAILURE
    o.out("All instances evacuated successfully.")
    return 0


add_tag_commands(group, C.TAG_NODEGROUP)
