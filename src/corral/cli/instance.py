"""``gnt-instance`` / ``corral instance``: instance commands.

Mirrors ``ganeti.client.gnt_instance`` (and ``GenericInstanceCreate`` of
``ganeti.cli``) for what Corral implements. startup/shutdown/reboot/reinstall
take Ganeti's multi-instance selection (``--node``, ``--primary``,
``--secondary``, ``--all``, ``--tags``) and submit one job per instance.
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
    confirm,
    generic_list,
    generic_list_fields,
    get_env,
    print_log_entry,
    query_rows,
    root_option,
    submit_job,
    submit_op,
)
from corral.cli import output as o
from corral.cli.console import console as console_command
from corral.cli.options import (
    argument,
    convert_hvparams,
    force_dict_type,
    instance_spec_opts,
    list_opts,
    parse_disks,
    parse_ident_kv,
    parse_kv,
    parse_modifications,
    parse_nics,
    parse_node_spec,
    parse_size,
    remember_opts,
    split_list,
    submit_opts,
)

DEFAULT_FIELDS = ["name", "hypervisor", "os", "pnode", "status", "oper_ram"]


@click.group("instance", cls=CorralGroup,
             aliases={"start": "startup", "stop": "shutdown", "show": "info"})
@root_option
def instance(root: str | None) -> None:
    """Instance administration (gnt-instance)."""


def _with_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """Ganeti's ``default`` value means "reset": None for the opcode."""
    return {k: (None if isinstance(v, str) and v.lower() == "default" else v)
            for k, v in params.items()}


# -- add --------------------------------------------------------------------------------

@instance.command("add")
@argument("name", help="Name of the new instance")
@click.option("-o", "--os-type", "os_type", default=None, metavar="OS[+VARIANT]",
              help="OS definition (and variant) to install")
@instance_spec_opts
@click.option("--no-conflicts-check", "conflicts_check", flag_value=False, default=True,
              help="Do not check NIC IP addresses for conflicts on their network")
@click.option("--no-wait-for-sync", "wait_for_sync", flag_value=False, default=True,
              help="Do not wait for the disks to synchronise")
@click.option("--no-start", "start", flag_value=False, default=True,
              help="Do not start the instance after creating it")
@click.option("--no-install", is_flag=True,
              help="Do not run the OS create script (the disks stay empty)")
@click.option("--force-variant", is_flag=True,
              help="Accept an OS variant the OS definition does not list")
@click.option("--ignore-ipolicy", is_flag=True, help="Ignore instance policy violations")
@click.option("--opportunistic-locking", is_flag=True,
              help="Lock only the nodes that are free now (with an iallocator), instead of waiting")
@click.option("--tags", default=None, help="Comma-separated tags")
@submit_opts
def add(name: str, **opts: Any) -> int:
    """Create an instance."""
    op = build_create_op(name, opts)
    submit_op(op, opts)
    return 0


def build_create_op(name: str, opts: dict[str, Any]) -> dict[str, Any]:
    """OP_INSTANCE_CREATE (mode create) from ``add``'s options
    (``cli.GenericInstanceCreate``)."""
    pnode, snode = parse_node_spec(opts.get("node_spec"))
    hypervisor: str | None = None
    hvparams: dict[str, Any] = {}
    if opts.get("hvparams"):
        hypervisor, params = parse_ident_kv(opts["hvparams"], "-H")
        if not isinstance(params, dict):
            raise errors.ParameterError(f"Invalid -H value '{opts['hvparams']}'")
        hvparams = convert_hvparams(hypervisor, params)
    disks = parse_disks(opts.get("disks") or (), opts.get("os_size"),
                        opts.get("disk_template"))
    nics = parse_nics(opts.get("nets") or (), bool(opts.get("no_nics")))
    beparams = force_dict_type(parse_kv(opts.get("beparams"), "-B"), C.BES_PARAMETER_TYPES)
    params: dict[str, Any] = {
        "instance_name": name, "mode": C.INSTANCE_CREATE, "disks": disks, "nics": nics,
        "disk_template": opts.get("disk_template"), "pnode": pnode, "snode": snode,
        "iallocator": opts.get("iallocator"), "group_name": opts.get("group_name"),
        "os_type": opts.get("os_type"), "hypervisor": hypervisor, "hvparams": hvparams,
        "beparams": beparams, "osparams": parse_kv(opts.get("osparams"), "-O"),
        "file_storage_dir": opts.get("file_storage_dir"),
        "file_driver": opts.get("file_driver"),
        "ip_check": opts.get("ip_check", True), "name_check": opts.get("name_check", True),
        "conflicts_check": opts.get("conflicts_check", True),
        "wait_for_sync": opts.get("wait_for_sync", True), "start": opts.get("start", True),
        "no_install": bool(opts.get("no_install")),
        "force_variant": bool(opts.get("force_variant")),
        "ignore_ipolicy": bool(opts.get("ignore_ipolicy")),
        "opportunistic_locking": bool(opts.get("opportunistic_locking")),
        "tags": split_list(opts.get("tags")) or [],
    }
    return build_op("OP_INSTANCE_CREATE", opts,
                    **{k: v for k, v in params.items() if v is not None})


# -- remove / list / info ---------------------------------------------------------------

@instance.command("remove")
@argument("name", help="Instance to remove")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@click.option("--shutdown-timeout", type=int, default=C.DEFAULT_SHUTDOWN_TIMEOUT,
              show_default=True,
              help="Seconds to wait for the instance to shut down before forcing it off")
@click.option("--ignore-failures", is_flag=True,
              help="Remove the instance from the configuration even if its disks cannot be removed")
@submit_opts
def remove(name: str, **opts: Any) -> int:
    """Remove an instance and its disks."""
    confirm(f"This will remove the volumes of the instance {name} (including mirrors), "
            "thus removing all the data of the instance. Continue?", opts["force"])
    submit_op(build_op("OP_INSTANCE_REMOVE", opts, instance_name=name,
                       ignore_failures=opts["ignore_failures"],
                       shutdown_timeout=opts["shutdown_timeout"]), opts)
    return 0


@instance.command("list")
@argument("names", nargs=-1,
          help="Instance names or glob patterns, or with -F one query filter (default: all)")
@list_opts
def list_(names: tuple[str, ...], **opts: Any) -> int:
    """List instances."""
    return generic_list("instance", DEFAULT_FIELDS, names, opts)


@instance.command("list-fields")
@argument("fields", nargs=-1, help="Fields to describe (default: all)")
@click.option("--no-headers", is_flag=True, help="Do not print column headers")
@click.option("--separator", default=None, help="Column separator (default: aligned columns)")
@click.option("--output", "output_format", type=click.Choice(["table", "json"]),
              default="table", help="Output format")
def list_fields(fields: tuple[str, ...], **opts: Any) -> int:
    """List the fields of 'list -o'."""
    return generic_list_fields("instance", fields, opts)


def _params_info(custom: dict[str, Any] | None, actual: dict[str, Any] | None
                 ) -> dict[str, Any]:
    """``FormatParamsDictInfo``: custom values as they are, inherited ones as
    ``default (value)``."""
    custom = custom or {}
    out: dict[str, Any] = {}
    for key in sorted(actual or {}):
        value = (actual or {})[key]
        out[key] = value if key in custom else f"default ({value})"
    return out


def _disk_info(idx: int, disk: dict[str, Any]) -> dict[str, Any]:
    size = disk.get("size")
    head = f"{disk.get('dev_type')}, size {o.format_unit(size, 'h') if size is not None else '?'}"
    data: dict[str, Any] = {f"disk/{idx}": head, "access mode": disk.get("mode")}
    if disk.get("name"):
        data["name"] = disk["name"]
    data["UUID"] = disk.get("uuid")
    if disk.get("logical_id"):
        data["logical_id"] = ", ".join(str(x) for x in disk["logical_id"])
    pstatus = disk.get("pstatus")
    if pstatus:
        data["on primary"] = (f"{pstatus[0]} ({pstatus[1]}:{pstatus[2]})"
                              if pstatus[1] is not None else str(pstatus[0]))
    if disk.get("spindles") is not None:
        data["spindles"] = disk["spindles"]
    return data


def _nic_info(idx: int, nic: list[Any]) -> dict[str, Any]:
    name, uuid, ip, mac, mode, link, vlan, _, netinfo = (list(nic) + [None] * 9)[:9]
    # As Ganeti's _FormatInstanceNicInfo: the network's name, from netinfo.
    network = netinfo.get("name") if isinstance(netinfo, dict) else None
    data: dict[str, Any] = {f"nic/{idx}": ""}
    if name:
        data["name"] = name
    data.update({"UUID": uuid, "MAC": mac, "IP": ip, "mode": mode, "link": link,
                 "vlan": vlan, "network": network})
    return data


def instance_info_document(inst: dict[str, Any], static: bool) -> dict[str, Any]:
    """One instance of ``gnt-instance info`` (``ShowInstanceConfig`` keys)
    from an OP_INSTANCE_QUERY_DATA result entry."""
    state = f"configured to be {inst.get('config_state')}"
    if not static:
        state += f", actual state is {inst.get('run_state')}"
    group = inst.get("pnode_group_name")
    primary = {"primary": inst.get("pnode")}
    if group:
        primary["group"] = f"{group} (UUID {inst.get('pnode_group_uuid')})"
    snodes = [f"{n} (group {g})" if g else str(n)
              for n, g in zip(inst.get("snodes") or [],
                              inst.get("snodes_group_names") or [None] * 99)]
    return {
        "Instance name": inst.get("name"),
        "UUID": inst.get("uuid"),
        "Serial number": inst.get("serial_no"),
        "Creation time": o.format_time(inst.get("ctime")),
        "Modification time": o.format_time(inst.get("mtime")),
        "State": state,
        "Nodes": [primary, {"secondaries": ", ".join(snodes)}],
        "Operating system": inst.get("os"),
        "Operating system parameters": _params_info(inst.get("os_instance"),
                                                    inst.get("os_actual")),
        "Allocated network port": inst.get("network_port"),
        "Hypervisor": inst.get("hypervisor"),
        "Hypervisor parameters": _params_info(inst.get("hv_instance"),
                                              inst.get("hv_actual")),
        "Back-end parameters": _params_info(inst.get("be_instance"), inst.get("be_actual")),
        "NICs": [_nic_info(i, n) for i, n in enumerate(inst.get("nics") or [])],
        "Disk template": inst.get("disk_template"),
        "Disks": [_disk_info(i, d) for i, d in enumerate(inst.get("disks") or [])],
        "Tags": ", ".join(inst.get("tags") or []),
    }


def _log_to_stderr(entry: tuple[Any, str, Any]) -> None:
    o.err(o.format_log_message(*entry))


@instance.command("info")
@argument("names", nargs=-1, help="Instances to show (or --all)")
@click.option("-s", "--static", is_flag=True, help="Only configuration data, no live state")
@click.option("--all", "show_all", is_flag=True, help="Show all instances")
@click.option("--roman", is_flag=True, hidden=True)
def info(names: tuple[str, ...], static: bool, show_all: bool, roman: bool) -> int:
    """Show detailed information about instances (YAML)."""
    if not names and not show_all:
        o.err("No instance selected. Use --all if you want to see all instances.")
        return o.EXIT_FAILURE
    op = build_op("OP_INSTANCE_QUERY_DATA", None, instances=list(names), static=static,
                  use_locking=not static)
    result = submit_job([op], None, feedback=_log_to_stderr)[0]
    docs = [instance_info_document(result[n], static) for n in sorted(result)]
    o.print_info(docs)
    return 0


# -- multi-instance operations ----------------------------------------------------------

def multi_opts(fn: Any) -> Any:
    """``--instance`` (default), ``--node``, ``--primary``, ``--secondary``,
    ``--all``, ``--tags`` and ``--force-multiple``."""
    for deco in reversed([
        click.option("--instance", "multi_mode", flag_value="instance", default=True,
                     help="Arguments are instance names (default)"),
        click.option("--node", "multi_mode", flag_value="node",
                     help="Arguments are nodes: their primary and secondary instances"),
        click.option("--primary", "multi_mode", flag_value="primary",
                     help="Arguments are nodes: their primary instances"),
        click.option("--secondary", "multi_mode", flag_value="secondary",
                     help="Arguments are nodes: their secondary instances"),
        click.option("--all", "multi_mode", flag_value="all", help="All instances"),
        click.option("--tags", "multi_mode", flag_value="tags",
                     help="Arguments are tags: instances with any of them"),
        click.option("--force-multiple", "force_multi", is_flag=True,
                     help="Do not ask for confirmation with several instances"),
    ]):
        fn = deco(fn)
    return fn


def expand_names(mode: str, args: list[str]) -> list[str]:
    """Instance names selected by ``mode`` and ``args`` (``_ExpandMultiNames``)."""
    if mode in (None, "instance"):
        if not args:
            raise errors.OpPrereqError("No instance names passed", errors.ECODE_INVAL)
        return list(args)
    if mode == "all":
        if args:
            raise errors.OpPrereqError("No arguments expected with --all",
                                       errors.ECODE_INVAL)
    elif not args:
        raise errors.OpPrereqError("No node names or tags passed", errors.ECODE_INVAL)
    rows = query_rows("instance", ["name", "pnode", "snodes", "tags"])
    wanted = set(args)
    selected = []
    for row in rows:
        name, pnode, snodes, tags = (v if st == 0 else None for st, v in row)
        snodes = set(snodes or [])
        if (mode == "all"
                or (mode == "node" and (pnode in wanted or snodes & wanted))
                or (mode == "primary" and pnode in wanted)
                or (mode == "secondary" and snodes & wanted)
                or (mode == "tags" and set(tags or []) & wanted)):
            selected.append(name)
    return sorted(selected)


def run_many(operation: str, names: list[str], make_op: Any, opts: dict[str, Any],
             extra_confirm: str | None = None) -> int:
    """Submit one job per instance and follow them (``GenericManyOps`` with
    ``JobExecutor``). Returns 0 if all succeeded, else 1."""
    mode = opts.get("multi_mode") or "instance"
    if not names:
        if mode == "all":
            o.out(f"Cluster is empty, no instances to {operation}")
            return 0
        raise errors.OpPrereqError("Selection filter does not match any instances",
                                   errors.ECODE_INVAL)
    multi_on = mode != "instance" or len(names) > 1
    if multi_on and not opts.get("force_multi"):
        o.out(f"The {operation} will operate on {len(names)} instances.")
        for name in names:
            o.out(f"  {name}")
        confirm(f"Do you want to {operation} the following instances?", False)
    if extra_confirm is not None:
        confirm(extra_confirm, bool(opts.get("force")))
    if not multi_on:
        submit_op(make_op(names[0]), opts)
        return 0
    client = get_env().client
    jobs: list[tuple[str, int]] = []
    bad = 0
    for name in names:
        try:
            jobs.append((name, client.submit_job([make_op(name)])))
        except errors.CorralError as exc:
            o.err(f"Failure for {name}: {exc}")
            bad += 1
    if opts.get("submit_only"):
        for _name, job_id in jobs:
            o.out(f"JobID: {job_id}")
        return 1 if bad else 0
    o.out("Submitted jobs " + ", ".join(str(j) for _n, j in jobs))
    for name, job_id in jobs:
        o.out(f"Waiting for job {job_id} for {name} ...")
        try:
            client.wait_job(job_id, print_log_entry)
        except errors.CorralError as exc:
            o.err(f"{name}: {o.format_error(exc)[1]}")
            bad += 1
    return 1 if bad else 0


@instance.command("startup")
@argument("names", nargs=-1, help="Instances, or nodes or tags per the selection option")
@multi_opts
@click.option("-f", "--force", is_flag=True,
              help="Do not ask for confirmation when several instances are selected")
@click.option("-H", "--hypervisor-parameters", "hvparams", default=None,
              help="One-off hypervisor parameters for this start")
@click.option("-B", "--backend-parameters", "beparams", default=None,
              help="One-off backend parameters for this start")
@click.option("--paused", "startup_paused", is_flag=True,
              help="Start the instance paused (hypervisors that support it)")
@remember_opts
@submit_opts
def startup(names: tuple[str, ...], **opts: Any) -> int:
    """Start instances."""
    hvparams = parse_kv(opts["hvparams"], "-H")
    beparams = force_dict_type(parse_kv(opts["beparams"], "-B"), C.BES_PARAMETER_TYPES)

    def make(name: str) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if hvparams:
            extra["hvparams"] = hvparams
        if beparams:
            extra["beparams"] = beparams
        return build_op("OP_INSTANCE_STARTUP", opts, instance_name=name,
                        force=opts["force"], ignore_offline_nodes=opts["ignore_offline"],
                        no_remember=opts["no_remember"],
                        startup_paused=opts["startup_paused"], **extra)

    return run_many("startup", expand_names(opts["multi_mode"], list(names)), make, opts)


@instance.command("shutdown")
@argument("names", nargs=-1, help="Instances, or nodes or tags per the selection option")
@multi_opts
@click.option("--timeout", type=int, default=C.DEFAULT_SHUTDOWN_TIMEOUT, show_default=True,
              help="Seconds to wait before forcing the instance off")
@remember_opts
@click.option("-f", "--force", is_flag=True,
              help="Do not ask for confirmation when several instances are selected")
@submit_opts
def shutdown(names: tuple[str, ...], **opts: Any) -> int:
    """Stop instances."""
    def make(name: str) -> dict[str, Any]:
        return build_op("OP_INSTANCE_SHUTDOWN", opts, instance_name=name,
                        force=opts["force"], timeout=opts["timeout"],
                        ignore_offline_nodes=opts["ignore_offline"],
                        no_remember=opts["no_remember"])

    return run_many("shutdown", expand_names(opts["multi_mode"], list(names)), make, opts)


@instance.command("reboot")
@argument("names", nargs=-1, help="Instances, or nodes or tags per the selection option")
@multi_opts
@click.option("-t", "--type", "reboot_type", type=click.Choice(C.REBOOT_TYPES),
              default=C.INSTANCE_REBOOT_HARD, show_default=True,
              help=("Reboot type: soft (inside the instance), hard (restart the VM), full "
                    "(shutdown and startup)"))
@click.option("--ignore-secondaries", is_flag=True,
              help="Ignore errors on the secondary nodes' disks (full reboot)")
@click.option("--shutdown-timeout", type=int, default=C.DEFAULT_SHUTDOWN_TIMEOUT,
              show_default=True,
              help="Seconds to wait for the instance to shut down before forcing it off")
@submit_opts
def reboot(names: tuple[str, ...], **opts: Any) -> int:
    """Reboot instances."""
    def make(name: str) -> dict[str, Any]:
        return build_op("OP_INSTANCE_REBOOT", opts, instance_name=name,
                        reboot_type=opts["reboot_type"],
                        ignore_secondaries=opts["ignore_secondaries"],
                        shutdown_timeout=opts["shutdown_timeout"])

    return run_many("reboot", expand_names(opts["multi_mode"], list(names)), make, opts)


@instance.command("reinstall")
@argument("names", nargs=-1, help="Instances, or nodes or tags per the selection option")
@multi_opts
@click.option("-o", "--os-type", "os_type", default=None,
              help="Install this OS instead of the current one")
@click.option("-O", "--os-parameters", "osparams", default=None,
              help="OS parameters for this reinstallation: KEY=VAL,...")
@click.option("--force-variant", is_flag=True,
              help="Accept an OS variant the OS definition does not list")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@submit_opts
def reinstall(names: tuple[str, ...], **opts: Any) -> int:
    """Reinstall the OS of (stopped) instances; all their data is lost."""
    osparams = parse_kv(opts["osparams"], "-O") if opts["osparams"] is not None else None
    selected = expand_names(opts["multi_mode"], list(names))

    def make(name: str) -> dict[str, Any]:
        return build_op("OP_INSTANCE_REINSTALL", opts, instance_name=name,
                        os_type=opts["os_type"], force_variant=opts["force_variant"],
                        osparams=osparams)

    text = None
    if selected:
        others = f" (and {len(selected) - 1} other instance(s))" if len(selected) > 1 else ""
        text = (f"This will reinstall the instance '{selected[0]}'{others} and remove all "
                "data. Continue?")
    return run_many("reinstall", selected, make, opts, extra_confirm=text)


# -- single-instance changes -----------------------------------------------------------

@instance.command("rename")
@argument("name", help="Instance to rename")
@argument("new_name", help="New name of the instance")
@click.option("--no-ip-check", "ip_check", flag_value=False, default=True,
              help="Do not check that the new name's IP address is not already in use")
@click.option("--no-name-check", "name_check", flag_value=False, default=True,
              help="Do not resolve the new name in DNS")
@submit_opts
def rename(name: str, new_name: str, **opts: Any) -> int:
    """Rename an instance."""
    if not opts["name_check"] and opts["ip_check"]:
        raise errors.OpPrereqError("Cannot do IP address check without a name check",
                                   errors.ECODE_INVAL)
    submit_op(build_op("OP_INSTANCE_RENAME", opts, instance_name=name, new_name=new_name,
                       ip_check=opts["ip_check"], name_check=opts["name_check"]), opts)
    return 0


@instance.command("modify")
@argument("name", help="Instance to modify")
@click.option("-B", "--backend-parameters", "beparams", default=None,
              help="Change backend parameters: KEY=VAL,... (-KEY resets to the default)")
@click.option("-H", "--hypervisor-parameters", "hvparams", default=None,
              help="Change hypervisor parameters: KEY=VAL,... (-KEY resets to the default)")
@click.option("-O", "--os-parameters", "osparams", default=None,
              help="Change OS parameters: KEY=VAL,... (-KEY resets to the default)")
@click.option("-o", "--os-type", "os_name", default=None,
              help="Change the OS (takes effect at the next reinstall)")
@click.option("--force-variant", is_flag=True,
              help="Accept an OS variant the OS definition does not list")
@click.option("--disk", "disks", multiple=True,
              metavar="add:size=..|N:remove|N:modify,...",
              help=("Add (add:size=..), remove (N:remove) or modify (N:modify,name=..) a disk "
                    "(repeatable)"))
@click.option("--net", "nets", multiple=True, metavar="add:...|N:remove|N:modify,...",
              help="Add (add:...), remove (N:remove) or modify (N:modify,ip=..) a NIC (repeatable)")
@click.option("-t", "--disk-template", default=None, type=click.Choice(C.DISK_TEMPLATES),
              help="Convert the disks to this disk template (instance stopped)")
@click.option("-n", "--node", "remote_node", default=None, help="New secondary node")
@click.option("--new-primary", "pnode", default=None,
              help="Change the primary node (file-based instances, instance stopped)")
@click.option("--file-storage-dir", default=None,
              help="Directory of the disk files after a conversion to a file-based template")
@click.option("--file-driver", default=None, type=click.Choice(C.FILE_DRIVERS),
              help="Driver of file-based disks (loop or blktap)")
@click.option("-m", "--runtime-memory", "runtime_mem", default=None,
              help="Change the memory of the running instance (size, within minmem and maxmem)")
@click.option("--offline", "offline", flag_value=True, default=None,
              help="Mark the (stopped) instance offline")
@click.option("--online", "offline", flag_value=False, help="Mark the instance online again")
@click.option("--hotplug", is_flag=True,
              help="Add, remove or change disks and NICs of the running instance at once")
@click.option("--hotplug-if-possible", is_flag=True,
              help="Hotplug if the hypervisor supports it, else change at the next restart")
@click.option("--no-conflicts-check", "conflicts_check", flag_value=False, default=True,
              help="Do not check NIC IP addresses for conflicts on their network")
@click.option("--no-wait-for-sync", "wait_for_sync", flag_value=False, default=True,
              help="Do not wait for the disks to synchronise")
@click.option("-I", "--iallocator", default=None,
              help="Instance allocator choosing the new secondary of a template conversion")
@click.option("--ignore-ipolicy", is_flag=True, help="Ignore instance policy violations")
@click.option("-f", "--force", is_flag=True,
              help="Accept changes that are only checked for the running instance")
@submit_opts
def modify(name: str, **opts: Any) -> int:
    """Change an instance's parameters, disks or NICs."""
    params = build_modify_params(opts)
    if not params:
        o.err("Please give at least one of the parameters.")
        return o.EXIT_FAILURE
    result = submit_op(build_op("OP_INSTANCE_SET_PARAMS", opts, instance_name=name,
                                force=opts["force"], force_variant=opts["force_variant"],
                                ignore_ipolicy=opts["ignore_ipolicy"],
                                conflicts_check=opts["conflicts_check"],
                                wait_for_sync=opts["wait_for_sync"], **params), opts)
    if result:
        o.out(f"Modified instance {name}")
        for param, data in result:
            o.out(f" - {param:<5} -> {data}")
        o.out("Please don't forget that most parameters take effect only at the next "
              "(re)start of the instance initiated by ganeti; restarting from within the "
              "instance will not be enough.")
    return 0


def build_modify_params(opts: dict[str, Any]) -> dict[str, Any]:
    """OP_INSTANCE_SET_PARAMS parameters from ``modify``'s options (only
    those given)."""
    params: dict[str, Any] = {}
    if opts.get("beparams") is not None:
        params["beparams"] = force_dict_type(
            _with_defaults(parse_kv(opts["beparams"], "-B")), C.BES_PARAMETER_TYPES,
            allow_none=True)
    if opts.get("hvparams") is not None:
        params["hvparams"] = _with_defaults(parse_kv(opts["hvparams"], "-H"))
    if opts.get("osparams") is not None:
        params["osparams"] = _with_defaults(parse_kv(opts["osparams"], "-O"))
    if opts.get("disks"):
        params["disks"] = parse_modifications(opts["disks"], "disk")
    if opts.get("nets"):
        params["nics"] = parse_modifications(opts["nets"], "net")
    for key in ("os_name", "disk_template", "remote_node", "pnode", "file_storage_dir",
                "file_driver", "iallocator", "offline"):
        if opts.get(key) is not None:
            params[key] = opts[key]
    if opts.get("runtime_mem") is not None:
        params["runtime_mem"] = parse_size(opts["runtime_mem"])
    if opts.get("hotplug"):
        params["hotplug"] = True
    if opts.get("hotplug_if_possible"):
        params["hotplug_if_possible"] = True
    return params


@instance.command("grow-disk")
@argument("name", help="Instance whose disk to grow")
@argument("disk", help="Index of the disk (0 is the first)")
@argument("amount", help="Size to add (unit suffixes M, G, T), or the new size with --absolute")
@click.option("--absolute", is_flag=True, help="AMOUNT is the new size, not the growth")
@click.option("--no-wait-for-sync", "wait_for_sync", flag_value=False, default=True,
              help="Do not wait for the grown disk to synchronise")
@click.option("--ignore-ipolicy", is_flag=True, help="Ignore instance policy violations")
@submit_opts
def grow_disk(name: str, disk: str, amount: str, **opts: Any) -> int:
    """Grow a disk of an instance."""
    try:
        index = int(disk)
    except ValueError:
        raise errors.OpPrereqError(f"Invalid disk index: {disk}", errors.ECODE_INVAL) from None
    try:
        size = parse_size(amount)
    except errors.OpPrereqError:
        raise errors.OpPrereqError(f"Can't parse the given amount '{amount}'",
                                   errors.ECODE_INVAL) from None
    submit_op(build_op("OP_INSTANCE_GROW_DISK", opts, instance_name=name, disk=index,
                       amount=size, absolute=opts["absolute"],
                       wait_for_sync=opts["wait_for_sync"],
                       ignore_ipolicy=opts["ignore_ipolicy"]), opts)
    return 0


@instance.command("activate-disks")
@argument("name", help="Instance whose disks to activate")
@click.option("--ignore-size", is_flag=True,
              help="Ignore the recorded disk sizes (to repair wrong sizes)")
@click.option("--wait-for-sync", is_flag=True, help="Wait for the disks to synchronise")
@submit_opts
def activate_disks(name: str, **opts: Any) -> int:
    """Assemble an instance's disks; prints node:disk:device lines."""
    result = submit_op(build_op("OP_INSTANCE_ACTIVATE_DISKS", opts, instance_name=name,
                                ignore_size=opts["ignore_size"],
                                wait_for_sync=opts["wait_for_sync"]), opts)
    for host, iv_name, dev in result or []:
        o.out(f"{host}:{iv_name}:{dev}")
    return 0


@instance.command("deactivate-disks")
@argument("name", help="Instance whose disks to deactivate")
@click.option("-f", "--force", is_flag=True,
              help="Deactivate the disks even if the instance is running")
@submit_opts
def deactivate_disks(name: str, **opts: Any) -> int:
    """Shut down an instance's disks."""
    submit_op(build_op("OP_INSTANCE_DEACTIVATE_DISKS", opts, instance_name=name,
                       force=opts["force"]), opts)
    return 0


add_tag_commands(instance, C.TAG_INSTANCE)

instance.add_command(console_command)
