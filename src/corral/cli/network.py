"""``gnt-network`` / ``corral network``: network commands.

Mirrors ``ganeti.client.gnt_network``: add, connect, disconnect, list,
list-fields, info, modify, rename, remove and the tag commands.
"""

from __future__ import annotations

import textwrap
from typing import Any

import click

from corral import constants as C
from corral.cli import (
    CorralGroup,
    add_tag_commands,
    build_op,
    field_definitions,
    generic_list,
    generic_list_fields,
    parse_field_list,
    print_rows,
    query_rows,
    root_option,
    submit_op,
)
from corral.cli import output as o
from corral.cli.options import (
    argument,
    list_opts,
    parse_kv,
    submit_opts,
    unescape_and_split,
)

DEFAULT_FIELDS = ["name", "network", "gateway", "mac_prefix", "group_list", "tags"]
INFO_FIELDS = ["name", "network", "gateway", "network6", "gateway6", "mac_prefix",
               "free_count", "reserved_count", "map", "group_list", "inst_list",
               "external_reservations", "serial_no", "uuid"]


@click.group("network", cls=CorralGroup, aliases={"show": "info"})
@root_option
def network(root: str | None) -> None:
    """IP network administration (gnt-network)."""


def _reserved_ips(value: str | None) -> list[str] | None:
    """``--add-reserved-ips``/``--remove-reserved-ips``: comma-separated list."""
    if value is None:
        return None
    return unescape_and_split(value) if value else []


_address_opts = [
    click.option("-g", "--gateway", default=None,
                 help="IPv4 gateway of the network ('none' to remove it on modify)"),
    click.option("--network6", default=None, help="IPv6 subnet in CIDR form"),
    click.option("--gateway6", default=None, help="IPv6 gateway of the network"),
    click.option("-m", "--mac-prefix", default=None,
                 help="MAC prefix of NICs on the network (three octets, aa:bb:cc)"),
    click.option("--add-reserved-ips", default=None, metavar="IP,...",
                 help="Comma-separated IP addresses to reserve externally"),
]


def _with(options: list[Any]) -> Any:
    def wrap(fn: Any) -> Any:
        for deco in reversed(options):
            fn = deco(fn)
        return fn
    return wrap


@network.command("add")
@argument("name", help="Name of the network")
@click.option("--network", "subnet", default=None, metavar="CIDR",
              help="IPv4 subnet of the network, e.g. 192.0.2.0/24 (required)")
@_with(_address_opts)
@click.option("--tags", default=None, metavar="TAG,...", help="Comma-separated tags")
@click.option("--no-conflicts-check", "conflicts_check", flag_value=False, default=True,
              help="Do not reserve the addresses of nodes and master in the pool")
@submit_opts
def add(name: str, subnet: str | None, **opts: Any) -> int:
    """Add a network to the cluster."""
    if subnet is None:
        o.err("The --network option must be given")
        return o.EXIT_FAILURE
    submit_op(build_op("OP_NETWORK_ADD", opts, network_name=name, network=subnet,
                       gateway=opts["gateway"], network6=opts["network6"],
                       gateway6=opts["gateway6"], mac_prefix=opts["mac_prefix"],
                       add_reserved_ips=_reserved_ips(opts["add_reserved_ips"]),
                       conflicts_check=opts["conflicts_check"],
                       tags=opts["tags"].split(",") if opts["tags"] else []), opts)
    return 0


def _groups(groups: tuple[str, ...]) -> list[str]:
    """The given groups, or every group of the cluster (``_GetDefaultGroups``)."""
    if groups:
        return list(groups)
    return [row[0][1] for row in query_rows("group", ["name"])]


@network.command("connect")
@argument("name", help="Name of the network")
@argument("groups", help="Node groups (default: all)", nargs=-1)
@click.option("-N", "--nic-parameters", "nicparams", default=None,
              metavar="mode=...,link=...,vlan=...",
              help="NIC parameters of the connection (defaults: the cluster's)")
@click.option("--no-conflicts-check", "conflicts_check", flag_value=False, default=True,
              help="Do not check instance addresses against the network")
@submit_opts
def connect(name: str, groups: tuple[str, ...], nicparams: str | None, **opts: Any) -> int:
    """Connect a network to node groups (all groups if none are given)."""
    params = dict(C.NICC_DEFAULTS)
    params.update(parse_kv(nicparams, "-N") if nicparams else {})
    for group in _groups(groups):
        submit_op(build_op("OP_NETWORK_CONNECT", opts, network_name=name, group_name=group,
                           network_mode=params.get(C.NIC_MODE),
                           network_link=params.get(C.NIC_LINK),
                           network_vlan=str(params.get(C.NIC_VLAN) or ""),
                           conflicts_check=opts["conflicts_check"]), opts)
    return 0


@network.command("disconnect")
@argument("name", help="Name of the network")
@argument("groups", help="Node groups (default: all)", nargs=-1)
@submit_opts
def disconnect(name: str, groups: tuple[str, ...], **opts: Any) -> int:
    """Disconnect a network from node groups (all groups if none are given)."""
    for group in _groups(groups):
        submit_op(build_op("OP_NETWORK_DISCONNECT", opts, network_name=name,
                           group_name=group), opts)
    return 0


@network.command("list")
@argument("names", help="Names of networks (default: all)", nargs=-1)
@list_opts
def list_(names: tuple[str, ...], **opts: Any) -> int:
    """List networks."""
    if opts.get("output_format") == "json":
        return generic_list("network", DEFAULT_FIELDS, names, opts)
    fields = parse_field_list(opts.get("fields"), DEFAULT_FIELDS)
    fdefs = field_definitions("network", fields)
    rows = query_rows("network", fields, list(names))
    # Ganeti's format override: "group (mode, link, vlan), ..." per network.
    for idx, name in enumerate(fields):
        if name != "group_list":
            continue
        for row in rows:
            status, value = row[idx]
            if status == 0:
                row[idx] = [status, ", ".join(f"{g} ({m}, {lk}, {v})"
                                              for g, m, lk, v in value)]
    print_rows(fdefs, rows, opts)
    return o.EXIT_SUCCESS


@network.command("list-fields")
@argument("fields", help="Fields to describe (default: all)", nargs=-1)
@click.option("--no-headers", is_flag=True, help="Do not print column headers")
@click.option("--separator", default=None, help="Column separator (default: aligned)")
@click.option("--output", "output_format", type=click.Choice(["table", "json"]),
              default="table", help="Output format")
def list_fields(fields: tuple[str, ...], **opts: Any) -> int:
    """List the fields of 'list -o'."""
    return generic_list_fields("network", fields, opts)


def _instance_addresses(name: str, net_uuid: str) -> str:
    """``idx:ip`` of the NICs of instance ``name`` on the network."""
    row = query_rows("instance", ["nic.ips", "nic.networks"], [name])[0]
    ips, nets = (value if status == 0 else [] for status, value in row)
    return ", ".join(f"{idx}:{ip}" for idx, (ip, net) in enumerate(zip(ips, nets))
                     if net == net_uuid)


@network.command("info")
@argument("names", help="Names of networks (default: all)", nargs=-1)
def info(names: tuple[str, ...]) -> int:
    """Show the details of networks (Ganeti's text layout)."""
    for row in query_rows("network", INFO_FIELDS, list(names)):
        v = {f: (val if st == 0 else None) for f, (st, val) in zip(INFO_FIELDS, row)}
        size = v["free_count"] + v["reserved_count"]
        o.out(f"Network name: {v['name']}")
        o.out(f"UUID: {v['uuid']}")
        o.out(f"Serial number: {v['serial_no']}")
        for title, key in (("Subnet", "network"), ("Gateway", "gateway"),
                           ("IPv6 Subnet", "network6"), ("IPv6 Gateway", "gateway6"),
                           ("Mac Prefix", "mac_prefix")):
            o.out(f"  {title}: {v[key]}")
        o.out(f"  Size: {size}")
        o.out(f"  Free: {v['free_count']} ({100.0 * v['free_count'] / size:.2f}%)")
        o.out("  Usage map:")
        mapping = v["map"] or ""
        for idx in range(0, len(mapping), 64):
            o.out(f"     {str(idx).rjust(4)} {mapping[idx:idx + 64].ljust(64)} {idx + 63}")
        o.out("         (X) used    (.) free")
        if v["external_reservations"]:
            o.out("  externally reserved IPs:")
            for line in textwrap.wrap(v["external_reservations"], width=64):
                o.out(f"    {line}")
        if v["group_list"]:
            o.out("  connected to node groups:")
            for group, mode, link, vlan in v["group_list"]:
                o.out(f"    {group} (mode:{mode} link:{link} vlan:{vlan})")
        else:
            o.out("  not connected to any node group")
        if v["inst_list"]:
            o.out(f"  used by {len(v['inst_list'])} instances:")
            for name in v["inst_list"]:
                o.out(f"    {name}: {_instance_addresses(name, v['uuid'])}")
        else:
            o.out("  not used by any instances")
    return 0


@network.command("modify")
@argument("name", help="Name of the network")
@_with(_address_opts)
@click.option("--remove-reserved-ips", default=None, metavar="IP,...",
              help="Comma-separated externally reserved IP addresses to release")
@submit_opts
def modify(name: str, **opts: Any) -> int:
    """Change a network's parameters (not its IPv4 subnet)."""
    changes = {
        "gateway": opts["gateway"], "network6": opts["network6"],
        "gateway6": opts["gateway6"], "mac_prefix": opts["mac_prefix"],
        "add_reserved_ips": _reserved_ips(opts["add_reserved_ips"]),
        "remove_reserved_ips": _reserved_ips(opts["remove_reserved_ips"]),
    }
    if all(value is None for value in changes.values()):
        o.err("Please give at least one of the parameters.")
        return o.EXIT_FAILURE
    submit_op(build_op("OP_NETWORK_SET_PARAMS", opts, network_name=name, **changes), opts)
    return 0


@network.command("rename")
@argument("name", help="Name of the network")
@argument("new_name", help="New name of the network")
@submit_opts
def rename(name: str, new_name: str, **opts: Any) -> int:
    """Rename a network."""
    submit_op(build_op("OP_NETWORK_RENAME", opts, network_name=name, new_name=new_name), opts)
    return 0


@network.command("remove")
@argument("name", help="Name of the network")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@submit_opts
def remove(name: str, **opts: Any) -> int:
    """Remove a network (it must be connected to no node group)."""
    submit_op(build_op("OP_NETWORK_REMOVE", opts, network_name=name, force=opts["force"]),
              opts)
    return 0


add_tag_commands(network, C.TAG_NETWORK)
