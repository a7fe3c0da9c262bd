"""``gnt-node`` / ``corral node``: node commands.

Mirrors ``ganeti.client.gnt_node`` for what Corral implements; ``add`` also
takes Corral's ``--primary-ip`` and ``--noded-port`` (several nodes may share
one machine in a dev cluster).
"""

from __future__ import annotations

from typing import Any

import click

from corral import constants as C
from corral.cli import (
    CorralGroup,
    add_tag_commands,
    build_op,
    generic_list,
    generic_list_fields,
    get_env,
    known_field_names,
    query_rows,
    root_option,
    submit_op,
)
from corral.cli import output as o
from corral.cli.options import (
    argument,
    force_dict_type,
    list_opts,
    parse_kv,
    parse_yes_no,
    submit_opts,
)

DEFAULT_FIELDS = ["name", "dtotal", "dfree", "mtotal", "mnode", "mfree", "pinst_cnt",
                  "sinst_cnt"]


@click.group("node", cls=CorralGroup, aliases={"show": "info"})
@root_option
def node(root: str | None) -> None:
    """Node administration (gnt-node)."""


@node.command("add")
@argument("name", help="Name of the new node")
@click.option("--primary-ip", default=None, help="Primary IP (default: resolve NAME)")
@click.option("--noded-port", type=int, default=None, help="Port of noded on the new node")
@click.option("-s", "--secondary-ip", default=None,
              help="Secondary (replication) IP address of the node")
@click.option("--readd", is_flag=True, help="Re-add a node that was in the cluster")
@click.option("-g", "--node-group", "group", default=None,
              help="Node group the node joins (needed when there are several)")
@click.option("--master-capable", default=None, metavar="yes|no",
              help="Whether the node may become master or master candidate (yes|no)")
@click.option("--vm-capable", default=None, metavar="yes|no",
              help="Whether the node may host instances (yes|no)")
@click.option("--node-parameters", "ndparams", default=None, metavar="KEY=VAL,...",
              help="Node parameters: KEY=VAL,...")
@submit_opts
def add(name: str, **opts: Any) -> int:
    """Add a node to the cluster."""
    params: dict[str, Any] = {"node_name": name, "readd": opts["readd"]}
    for key in ("primary_ip", "secondary_ip", "group", "noded_port"):
        if opts[key] is not None:
            params[key] = opts[key]
    for key in ("master_capable", "vm_capable"):
        value = parse_yes_no(opts[key], "--" + key.replace("_", "-"))
        if value is not None:
            params[key] = value
    if opts["ndparams"] is not None:
        params["ndparams"] = force_dict_type(parse_kv(opts["ndparams"], "--node-parameters"),
                                             C.NDS_PARAMETER_TYPES)
    submit_op(build_op("OP_NODE_ADD", opts, **params), opts)
    return 0


@node.command("remove")
@argument("name", help="Node to remove")
@submit_opts
def remove(name: str, **opts: Any) -> int:
    """Remove an (empty) node from the cluster."""
    submit_op(build_op("OP_NODE_REMOVE", opts, node_name=name), opts)
    return 0


@node.command("list")
@argument("names", nargs=-1,
          help="Node names or glob patterns, or with -F one query filter (default: all)")
@list_opts
def list_(names: tuple[str, ...], **opts: Any) -> int:
    """List nodes."""
    return generic_list("node", DEFAULT_FIELDS, names, opts)


@node.command("list-fields")
@argument("fields", nargs=-1, help="Fields to describe (default: all)")
@click.option("--no-headers", is_flag=True, help="Do not print column headers")
@click.option("--separator", default=None, help="Column separator (default: aligned columns)")
@click.option("--output", "output_format", type=click.Choice(["table", "json"]),
              default="table", help="Output format")
def list_fields(fields: tuple[str, ...], **opts: Any) -> int:
    """List the fields of 'list -o'."""
    return generic_list_fields("node", fields, opts)


INFO_FIELDS = ["name", "pip", "sip", "pinst_list", "sinst_list", "master_candidate",
               "drained", "offline", "master_capable", "vm_capable", "powered", "ndparams",
               "group", "role", "noded_port"]


@node.command("info")
@argument("names", nargs=-1, help="Nodes to show (default: all)")
def info(names: tuple[str, ...]) -> int:
    """Show detailed information about nodes (YAML)."""
    known = known_field_names("node")
    fields = [f for f in INFO_FIELDS if f in known]
    docs = []
    for row in query_rows("node", fields, list(names)):
        v = {f: (val if st == 0 else None) for f, (st, val) in zip(fields, row)}
        doc: dict[str, Any] = {
            "Node name": v.get("name"),
            "primary ip": v.get("pip"),
            "secondary ip": v.get("sip"),
            "master candidate": v.get("master_candidate"),
            "drained": v.get("drained"),
            "offline": v.get("offline"),
        }
        if v.get("powered") is not None:
            doc["powered"] = v["powered"]
        doc["master_capable"] = v.get("master_capable")
        doc["vm_capable"] = v.get("vm_capable")
        if "group" in v:
            doc["node group"] = v.get("group")
        if v.get("vm_capable"):
            doc["primary for instances"] = sorted(v.get("pinst_list") or [])
            doc["secondary for instances"] = sorted(v.get("sinst_list") or [])
        doc["node parameters"] = dict(sorted((v.get("ndparams") or {}).items()))
        docs.append(doc)
    o.print_info(docs)
    return 0


@node.command("modify")
@argument("name", help="Node to modify")
@click.option("-C", "--master-candidate", default=None, metavar="yes|no",
              help="Whether the node is a master candidate (yes|no)")
@click.option("-D", "--drained", default=None, metavar="yes|no",
              help="Whether the node is drained: no new instances (yes|no)")
@click.option("-O", "--offline", default=None, metavar="yes|no",
              help="Whether the node is offline (yes|no)")
@click.option("--master-capable", default=None, metavar="yes|no",
              help="Whether the node may become master or master candidate (yes|no)")
@click.option("--vm-capable", default=None, metavar="yes|no",
              help="Whether the node may host instances (yes|no)")
@click.option("-s", "--secondary-ip", default=None, help="New secondary (replication) IP address")
@click.option("--node-parameters", "ndparams", default=None, metavar="KEY=VAL,...",
              help="Change node parameters: KEY=VAL,... (-KEY resets to the default)")
@click.option("--node-powered", default=None, metavar="yes|no",
              help="Record the node's power state (yes|no)")
@click.option("--auto-promote", is_flag=True,
              help="Promote other nodes to master candidate if needed")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@submit_opts
def modify(name: str, **opts: Any) -> int:
    """Change a node's flags or parameters."""
    params: dict[str, Any] = {}
    for key, opt in (("master_candidate", "-C"), ("drained", "-D"), ("offline", "-O"),
                     ("master_capable", "--master-capable"),
                     ("vm_capable", "--vm-capable"), ("node_powered", "--node-powered")):
        value = parse_yes_no(opts[key], opt)
        if value is not None:
            params["powered" if key == "node_powered" else key] = value
    if opts["secondary_ip"] is not None:
        params["secondary_ip"] = opts["secondary_ip"]
    if opts["ndparams"] is not None:
        params["ndparams"] = force_dict_type(parse_kv(opts["ndparams"], "--node-parameters"),
                                             C.NDS_PARAMETER_TYPES, allow_none=True)
    if not params:
        o.err("Please give at least one of the parameters.")
        return o.EXIT_FAILURE
    result = submit_op(build_op("OP_NODE_SET_PARAMS", opts, node_name=name,
                                force=opts["force"], auto_promote=opts["auto_promote"],
                                **params), opts)
    if result:
        o.out(f"Modified node {name}")
        for param, data in result:
            o.out(f" - {param:<5} -> {data}")
    return 0


add_tag_commands(node, C.TAG_NODE)


@node.command("prepare-guest-kernel")
def prepare_guest_kernel_cmd() -> int:
    """Install a guest kernel and initrd for kvm instances on this node.

    Takes the kernel from Debian's linux-image-cloud-amd64 package and builds
    a small busybox initrd that loads the virtio modules; a cluster
    initialised afterwards uses them as kvm's default kernel_path/initrd_path.
    """
    from corral.guestkernel import prepare_guest_kernel

    paths = get_env().paths
    paths.ensure_dirs()
    guest = prepare_guest_kernel(paths)
    o.out(f"Guest kernel {guest.version}:")
    o.out(f"  kernel_path: {guest.kernel_path}")
    o.out(f"  initrd_path: {guest.initrd_path}")
    return 0
