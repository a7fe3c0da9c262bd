"""``gnt-cluster`` / ``corral cluster``: cluster-wide commands.

Mirrors ``ganeti.client.gnt_cluster`` for what Corral implements, plus
Corral's ``join-token`` (a one-time token for ``corral-noded --join-token``).
"""

from __future__ import annotations

import socket
from typing import Any

import click

from corral import constants as C
from corral import errors
from corral.cli import (
    CorralGroup,
    add_tag_commands,
    build_op,
    get_env,
    print_log_entry,
    root_option,
    submit_job,
    submit_op,
)
from corral.cli import output as o
from corral.cli.ipolicy_opts import (
    SPLIT_SPECS_OPTIONS,
    format_ipolicy_info,
    ipolicy_from_options,
    ipolicy_options,
)
from corral.cli.options import (
    argument,
    force_dict_type,
    parse_hvparams_option,
    parse_ident_kv,
    parse_kv,
    parse_yes_no,
    split_list,
    submit_opts,
)
from corral.ipolicy import ipolicy_command_args


@click.group("cluster", cls=CorralGroup, aliases={"show": "info"})
@root_option
def cluster(root: str | None) -> None:
    """Cluster administration (gnt-cluster)."""


@cluster.command("init")
@argument("name", help="Name of the new cluster")
@click.option("--primary-ip", default=None, help="IP address of this (master) node")
@click.option("--master-name", default=None, help="Name of this node (default: hostname)")
@click.option("--noded-port", type=int, default=C.DEFAULT_NODED_PORT, show_default=True,
              help="TCP port of the node daemons")
@click.option("--enabled-hypervisors", default=None, help="Comma-separated hypervisors")
@click.option("--enabled-disk-templates", default=None, help="Comma-separated templates")
@click.option("-H", "--hypervisor-parameters", "hvparams", multiple=True,
              metavar="HV:KEY=VAL,...", help="Hypervisor parameters (repeatable)")
@click.option("-B", "--backend-parameters", "beparams", default=None, metavar="KEY=VAL,...",
              help="Cluster-wide default backend parameters: KEY=VAL,...")
@click.option("-N", "--nic-parameters", "nicparams", default=None, metavar="KEY=VAL,...",
              help="Cluster-wide default NIC parameters: KEY=VAL,... (mode, link, vlan)")
@click.option("--node-parameters", "ndparams", default=None, metavar="KEY=VAL,...",
              help="Cluster-wide default node parameters: KEY=VAL,...")
@click.option("--file-storage-dir", default=C.DEFAULT_FILE_STORAGE_DIR, show_default=True,
              help="Directory of file-based instance disks on every node")
@click.option("--shared-file-storage-dir", default=C.DEFAULT_SHARED_FILE_STORAGE_DIR,
              show_default=True, help="Directory of shared-file instance disks on every node")
@click.option("-m", "--mac-prefix", default=C.DEFAULT_MAC_PREFIX, show_default=True,
              help="Prefix (three bytes) of generated instance MAC addresses")
@click.option("--master-netdev", default="", help="Network device carrying the master IP address")
@click.option("-C", "--candidate-pool-size", type=int, default=C.DEFAULT_CANDIDATE_POOL_SIZE,
              show_default=True, help="Number of master candidates the cluster keeps")
@click.option("--rapi-port", type=int, default=C.DEFAULT_RAPI_PORT, show_default=True,
              help="TCP port of the remote API")
@ipolicy_options()
def init(name: str, **opts: Any) -> int:
    """Initialise a new cluster with this node as master."""
    from corral import bootstrap

    primary_ip = opts["primary_ip"]
    if not primary_ip:
        host = opts["master_name"] or socket.gethostname()
        try:
            primary_ip = socket.gethostbyname(host)
        except OSError as exc:
            raise errors.ResolverError(f"{host}: {exc}") from None
    kwargs: dict[str, Any] = {
        "master_name": opts["master_name"],
        "noded_port": opts["noded_port"],
        "hvparams": parse_hvparams_option(opts["hvparams"], False),
        "beparams": force_dict_type(parse_kv(opts["beparams"], "-B"),
                                    C.BES_PARAMETER_TYPES),
        "nicparams": force_dict_type(parse_kv(opts["nicparams"], "-N"),
                                     C.NICS_PARAMETER_TYPES),
        "ndparams": force_dict_type(parse_kv(opts["ndparams"], "--node-parameters"),
                                    C.NDS_PARAMETER_TYPES),
        "file_storage_dir": opts["file_storage_dir"],
        "shared_file_storage_dir": opts["shared_file_storage_dir"],
        "mac_prefix": opts["mac_prefix"],
        "master_netdev": opts["master_netdev"],
        "candidate_pool_size": opts["candidate_pool_size"],
        "rapi_port": opts["rapi_port"],
        "ipolicy": ipolicy_from_options(opts),
        "feedback_fn": print_log_entry,
    }
    hypervisors = split_list(opts["enabled_hypervisors"])
    if hypervisors:
        kwargs["enabled_hypervisors"] = hypervisors
    templates = split_list(opts["enabled_disk_templates"])
    if templates:
        kwargs["enabled_disk_templates"] = templates
    bootstrap.init_cluster(get_env().paths, name, primary_ip, **kwargs)
    return 0


@cluster.command("destroy")
@click.option("--yes-do-it", is_flag=True, help="Really destroy the cluster")
def destroy(yes_do_it: bool) -> int:
    """Destroy the cluster configuration (master only, no other nodes)."""
    from corral import bootstrap

    if not yes_do_it:
        o.err("Destroying a cluster is irreversible. If you really want destroy this "
              "cluster, supply the --yes-do-it option.")
        return o.EXIT_FAILURE
    env = get_env()
    submit_op(build_op("OP_CLUSTER_DESTROY"))
    env.close()
    bootstrap.destroy_cluster(env.paths)
    return 0


def _grouped(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in sorted(params.items())}


def cluster_info_document(info: dict[str, Any]) -> dict[str, Any]:
    """The ``gnt-cluster info`` structure (``ShowClusterConfig`` key names)."""
    arch = info.get("architecture") or ["?", "?"]
    hvparams = {hv: info.get("hvparams", {}).get(hv, {})
                for hv in info.get("enabled_hypervisors", [])}
    return {
        "Cluster name": info.get("name"),
        "Cluster UUID": info.get("uuid"),
        "Creation time": o.format_time(info.get("ctime")),
        "Modification time": o.format_time(info.get("mtime")),
        "Master node": info.get("master"),
        "Architecture (this node)": f"{arch[0]} ({arch[1]})",
        "Tags": ", ".join(info.get("tags") or []) or "(none)",
        "Default hypervisor": info.get("default_hypervisor"),
        "Enabled hypervisors": ", ".join(info.get("enabled_hypervisors") or []),
        "Hypervisor parameters": _grouped(hvparams),
        "OS-specific hypervisor parameters": _grouped(info.get("os_hvp") or {}),
        "OS parameters": _grouped(info.get("osparams") or {}),
        "Hidden OSes": ", ".join(info.get("hidden_os") or []),
        "Blacklisted OSes": ", ".join(info.get("blacklisted_os") or []),
        "Cluster parameters": {
            "candidate pool size": info.get("candidate_pool_size"),
            "maximal number of jobs running simultaneously": info.get("max_running_jobs"),
            "maximal number of jobs simultaneously tracked by the scheduler":
                info.get("max_tracked_jobs"),
            "mac prefix": info.get("mac_prefix"),
            "master netdev": info.get("master_netdev"),
            "master netmask": info.get("master_netmask"),
            "use external master IP address setup script":
                info.get("use_external_mip_script"),
            "lvm volume group": info.get("volume_group_name"),
            "lvm reserved volumes": ", ".join(info.get("reserved_lvs") or []) or "(none)",
            "drbd usermode helper": info.get("drbd_usermode_helper"),
            "file storage path": info.get("file_storage_dir"),
            "shared file storage path": info.get("shared_file_storage_dir"),
            "gluster storage path": info.get("gluster_storage_dir"),
            "maintenance of node health": info.get("maintain_node_health"),
            "uid pool": ", ".join(str(u) for u in info.get("uid_pool") or []),
            "default instance allocator": info.get("default_iallocator"),
            "default instance allocator parameters":
                info.get("default_iallocator_params") or {},
            "primary ip version": info.get("primary_ip_version"),
            "preallocation wipe disks": info.get("prealloc_wipe_disks"),
            "enabled disk templates": ", ".join(info.get("enabled_disk_templates") or []),
            "install image": info.get("install_image"),
            "instance communication network": info.get("instance_communication_network"),
            "zeroing image": info.get("zeroing_image"),
            "compression tools": list(info.get("compression_tools") or []),
            "enabled user shutdown": info.get("enabled_user_shutdown"),
            "modify etc hosts": info.get("modify_etc_hosts"),
        },
        "Default node parameters": _grouped(info.get("ndparams") or {}),
        "Default instance parameters": _grouped(info.get("beparams") or {}),
        "Default nic parameters": _grouped(info.get("nicparams") or {}),
        "Default disk parameters": _grouped(info.get("diskparams") or {}),
        "Instance policy - limits for instances":
            format_ipolicy_info(info["ipolicy"], info["ipolicy"], True)
            if info.get("ipolicy") else {},
    }


@cluster.command("info")
@click.option("--roman", is_flag=True, hidden=True, help="Ignored (Ganeti compatibility)")
def info(roman: bool) -> int:
    """Show the cluster configuration (YAML)."""
    o.print_info(cluster_info_document(get_env().client.query_cluster_info()))
    return 0


@cluster.command("verify")
@click.option("-v", "--verbose", is_flag=True, help="Verbose output")
@click.option("--error-codes", is_flag=True, help="Machine-parseable error codes")
@click.option("-I", "--ignore-errors", "ignore_errors", multiple=True, metavar="CODE",
              help="Error code to report as a warning (repeatable, e.g. ENODEDRBD)")
@click.option("--debug-simulate-errors", is_flag=True,
              help="Report an error for every check (to test the reporting)")
@click.option("--no-nplus1-mem", "no_nplus1_mem", is_flag=True,
              help="Skip the N+1 memory redundancy check")
@click.option("-g", "--node-group", "group_name", default=None, help="Only verify this node group")
@submit_opts
def verify(**opts: Any) -> int:
    """Verify the cluster (configuration and every node group)."""
    ignore: list[str] = []
    for value in opts["ignore_errors"]:
        ignore.extend(split_list(value) or [])
    op = build_op("OP_CLUSTER_VERIFY", opts, verbose=opts["verbose"],
                  error_codes=opts["error_codes"], ignore_errors=ignore,
                  debug_simulate_errors=opts["debug_simulate_errors"],
                  skip_checks=["nplusone_mem"] if opts["no_nplus1_mem"] else [],
                  group_name=opts["group_name"])
    result = submit_op(op, opts)
    return wait_spawned_jobs(result)


def wait_spawned_jobs(result: Any, action: str = "verifying the cluster") -> int:
    """Follow the jobs of a ``{"jobs": [[ok, id_or_msg], ...]}`` result.

    Returns 1 if a job could not be submitted or failed, or a single-opcode
    job returned False (``JobExecutor`` in ``gnt-cluster verify``).
    """
    if not isinstance(result, dict) or "jobs" not in result:
        return 0 if result is not False else 1
    client = get_env().client
    bad = 0
    for ok, job in result["jobs"]:
        if not ok:
            o.err(f"Failed to submit job: {job}")
            bad += 1
            continue
        o.out(f"Waiting for job {job} ...")
        try:
            results = client.wait_job(int(job), print_log_entry)
        except errors.CorralError as exc:
            o.err(o.format_error(exc)[1])
            bad += 1
            continue
        if len(results) == 1 and results[0] is False:
            bad += 1
    if bad:
        o.out(f"{bad} job(s) failed while {action}.")
    return 1 if bad else 0


@cluster.command("verify-disks")
@click.option("-g", "--node-group", "group_name", default=None,
              help="Only check the disks of this node group")
@submit_opts
def verify_disks(**opts: Any) -> int:
    """Check the disks of instances with active disks; activate those needing it."""
    result = submit_op(build_op("OP_CLUSTER_VERIFY_DISKS", opts,
                                group_name=opts["group_name"]), opts)
    if not isinstance(result, dict) or "jobs" not in result:
        return 0
    client = get_env().client
    retcode = 0
    for ok, job in result["jobs"]:
        try:
            if not ok:
                raise errors.OpExecError(str(job))
            (bad_nodes, instances, missing), = client.wait_job(int(job), print_log_entry)
        except errors.CorralError as exc:
            o.out(f"Job failed: {o.format_error(exc)[1]}")
            retcode = 1
            continue
        retcode |= _report_group_disks(bad_nodes, instances, missing, opts)
    return retcode


def _report_group_disks(bad_nodes: dict[str, str], instances: list[str],
                        missing: dict[str, list[list[str]]], opts: dict[str, Any]) -> int:
    """Print one OP_GROUP_VERIFY_DISKS result as Ganeti's ``VerifyDisks`` does,
    activating the disks of instances that need it; returns the exit code."""
    retcode = 0
    for node, text in bad_nodes.items():
        o.out(f"Error gathering data on node {node}: {text[-400:]}")
        o.out("You need to fix these nodes first before fixing instances")
        retcode = 1
    for name in instances:
        o.out(f"Activating disks for instance '{name}'")
        try:
            submit_op(build_op("OP_INSTANCE_ACTIVATE_DISKS", opts, instance_name=name), opts)
        except errors.CorralError as exc:
            code, msg = o.format_error(exc)
            o.err(f"Error activating disks for instance {name}: {msg}")
            retcode |= code
    for name, where in sorted(missing.items()):
        if all(node in bad_nodes for node, _ in where):
            o.out(f"Instance {name} cannot be verified as it lives on broken nodes")
            continue
        o.out(f"Instance {name} has missing disks:")
        for node, path in sorted(where):
            o.out(f"\t{'broken node ' if node in bad_nodes else ''}{node} {path}")
    if missing:
        o.out("You need to replace or recreate disks for all the above instances if this "
              "message persists after fixing broken nodes.")
        retcode = 1
    elif not instances:
        o.out("No disks need to be activated.")
    return retcode


@cluster.command("repair-disk-sizes")
@argument("instances", nargs=-1, help="Instances to check (default: all)")
@submit_opts
def repair_disk_sizes(instances: tuple[str, ...], **opts: Any) -> int:
    """Record the real size of disks whose configured size is wrong."""
    submit_op(build_op("OP_CLUSTER_REPAIR_DISK_SIZES", opts, instances=list(instances)),
              opts)
    return 0


@cluster.command("redist-conf")
@submit_opts
def redist_conf(**opts: Any) -> int:
    """Push the configuration and the cluster files to every online node
    (OP_CLUSTER_REDIST_CONF)."""
    submit_op(build_op("OP_CLUSTER_REDIST_CONF", opts), opts)
    return 0


def _yes_no_params(opts: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    out = {}
    for opt_name, op_name in names.items():
        value = parse_yes_no(opts.get(opt_name), "--" + opt_name.replace("_", "-"))
        if value is not None:
            out[op_name] = value
    return out


@cluster.command("modify")
@click.option("--enabled-hypervisors", default=None,
              help="Comma-separated hypervisors instances may use (the first is the default)")
@click.option("--enabled-disk-templates", default=None,
              help="Comma-separated disk templates instances may use")
@click.option("-H", "--hypervisor-parameters", "hvparams", multiple=True,
              metavar="HV:KEY=VAL,...",
              help="Default parameters of a hypervisor: HV:KEY=VAL,... (repeatable)")
@click.option("-B", "--backend-parameters", "beparams", default=None,
              help="Cluster-wide default backend parameters: KEY=VAL,...")
@click.option("-N", "--nic-parameters", "nicparams", default=None,
              help="Cluster-wide default NIC parameters: KEY=VAL,... (mode, link, vlan)")
@click.option("--node-parameters", "ndparams", default=None,
              help="Cluster-wide default node parameters: KEY=VAL,...")
@click.option("-D", "--disk-parameters", "diskparams", multiple=True,
              metavar="TEMPLATE:KEY=VAL,...",
              help="Default parameters of a disk template: TEMPLATE:KEY=VAL,... (repeatable)")
@click.option("--file-storage-dir", default=None,
              help="Directory of file-based instance disks on every node")
@click.option("--shared-file-storage-dir", default=None,
              help="Directory of shared-file instance disks on every node")
@click.option("-m", "--mac-prefix", default=None,
              help="Prefix (three bytes) of generated instance MAC addresses")
@click.option("--master-netdev", default=None,
              help="Network device carrying the master IP address")
@click.option("--master-netmask", type=int, default=None,
              help="Netmask (prefix length) of the master IP address")
@click.option("-C", "--candidate-pool-size", type=int, default=None,
              help="Number of master candidates the cluster keeps")
@click.option("--max-running-jobs", type=int, default=None,
              help="Maximum number of jobs running at the same time")
@click.option("--max-tracked-jobs", type=int, default=None,
              help="Maximum number of jobs tracked by the job scheduler")
@click.option("--maintain-node-health", default=None, metavar="yes|no",
              help="Whether the watcher shuts down unknown instances and disks (yes|no)")
@click.option("--prealloc-wipe-disks", default=None, metavar="yes|no",
              help="Whether new disks are wiped before use (yes|no)")
@click.option("--use-external-mip-script", default=None, metavar="yes|no",
              help="Whether to use the administrator's master IP setup script (yes|no)")
@click.option("--modify-etc-hosts", default=None, metavar="yes|no",
              help="Whether the cluster maintains /etc/hosts on the nodes (yes|no)")
@click.option("--user-shutdown", default=None, metavar="yes|no",
              help=("Whether a shutdown from inside an instance is recorded as user shutdown "
                    "(yes|no)"))
@click.option("-I", "--default-iallocator", default=None,
              help="Default instance allocator plugin (empty string: none)")
@click.option("--default-iallocator-params", default=None, metavar="KEY=VAL,...",
              help="Parameters of the default instance allocator: KEY=VAL,...")
@click.option("--reserved-lvs", default=None,
              help="Comma-separated logical volumes (regular expressions) that verify ignores")
@click.option("--compression-tools", default=None,
              help="Comma-separated compression tools allowed for instance moves and exports")
@click.option("--install-image", default=None,
              help="Image of the helper VM used to run OS scripts in a safe environment")
@click.option("--zeroing-image", default=None,
              help="Image of the helper VM used to zero disks before export")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@ipolicy_options()
@submit_opts
def modify(**opts: Any) -> int:
    """Change cluster parameters (OP_CLUSTER_SET_PARAMS)."""
    params: dict[str, Any] = {}
    for name in ("enabled_hypervisors", "enabled_disk_templates", "reserved_lvs",
                 "compression_tools"):
        if opts[name] is not None:
            params[name] = split_list(opts[name])
    if opts["hvparams"]:
        params["hvparams"] = parse_hvparams_option(opts["hvparams"], True)
    if opts["beparams"] is not None:
        params["beparams"] = force_dict_type(parse_kv(opts["beparams"], "-B"),
                                             C.BES_PARAMETER_TYPES, allow_none=True)
    if opts["nicparams"] is not None:
        params["nicparams"] = force_dict_type(parse_kv(opts["nicparams"], "-N"),
                                              C.NICS_PARAMETER_TYPES, allow_none=True)
    if opts["ndparams"] is not None:
        params["ndparams"] = force_dict_type(parse_kv(opts["ndparams"], "--node-parameters"),
                                             C.NDS_PARAMETER_TYPES, allow_none=True)
    if opts["diskparams"]:
        diskparams = {}
        for value in opts["diskparams"]:
            template, dparams = parse_ident_kv(value, "-D")
            if not isinstance(dparams, dict):
                raise errors.ParameterError(f"Invalid disk parameters '{value}'")
            diskparams[template] = dparams
        params["diskparams"] = diskparams
    for name in ("file_storage_dir", "shared_file_storage_dir", "mac_prefix",
                 "master_netdev", "master_netmask", "candidate_pool_size",
                 "max_running_jobs", "max_tracked_jobs", "default_iallocator",
                 "install_image", "zeroing_image"):
        if opts[name] is not None:
            params[name] = opts[name]
    if opts["default_iallocator_params"] is not None:
        params["default_iallocator_params"] = parse_kv(opts["default_iallocator_params"],
                                                       "--default-iallocator-params")
    params.update(_yes_no_params(opts, {
        "maintain_node_health": "maintain_node_health",
        "prealloc_wipe_disks": "prealloc_wipe_disks",
        "use_external_mip_script": "use_external_mip_script",
        "modify_etc_hosts": "modify_etc_hosts",
        "user_shutdown": "enabled_user_shutdown"}))
    base = None
    if any(opts.get(name) for name in SPLIT_SPECS_OPTIONS):
        # The --specs-* options change one value of the current bounds.
        base = get_env().client.query_cluster_info()["ipolicy"]
    policy = ipolicy_from_options(opts, base=base)
    if policy:
        params["ipolicy"] = policy
    if not params:
        o.err("Please give at least one of the parameters.")
        return o.EXIT_FAILURE
    submit_op(build_op("OP_CLUSTER_SET_PARAMS", opts, force=opts["force"], **params), opts)
    return 0


@cluster.command("show-ispecs-cmd")
def show_ispecs_cmd() -> int:
    """Show the command line to re-create the cluster's instance policy specs."""
    info_ = get_env().client.query_cluster_info()
    o.out(f"gnt-cluster init{ipolicy_command_args(info_['ipolicy'], False)} {info_['name']}")
    return 0


@cluster.command("getmaster")
def getmaster() -> int:
    """Print the name of the master node."""
    o.out(str(get_env().client.query_config_values(["master_node"])[0]))
    return 0


@cluster.command("version")
def version() -> int:
    """Print software, protocol, config, OS API and export versions."""
    info_ = get_env().client.query_cluster_info()
    o.out(f"Software version: {info_.get('software_version')}")
    o.out(f"Internode protocol: {info_.get('protocol_version')}")
    o.out(f"Configuration format: {info_.get('config_version')}")
    o.out(f"OS api version: {info_.get('os_api_version')}")
    o.out(f"Export interface: {info_.get('export_version')}")
    o.out(f"VCS version: {info_.get('vcs_version')}")
    return 0


@cluster.command("master-ping")
def master_ping() -> int:
    """Exit 0 if the master daemon answers, 1 otherwise."""
    try:
        get_env().client.query_cluster_info()
    except errors.CorralError:
        return 1
    return 0


@cluster.command("queue")
@argument("action", type=click.Choice(["drain", "undrain", "info"]),
          help="drain (refuse new jobs), undrain, or info (show the flag)")
def queue(action: str) -> int:
    """Set, clear or show the job queue drain flag."""
    client = get_env().client
    if action == "drain":
        client.set_drain_flag(True)
    elif action == "undrain":
        client.set_drain_flag(False)
    else:
        drained = client.query_config_values(["drain_flag"])[0]
        o.out("The drain flag is " + ("set" if drained else "unset"))
    return 0


@cluster.command("search-tags")
@argument("pattern", help="Regular expression matched against every tag")
@submit_opts
def search_tags(pattern: str, **opts: Any) -> int:
    """Search the tags of all objects for a regular expression."""
    result = submit_job([build_op("OP_TAGS_SEARCH", opts, pattern=pattern)], opts,
                        feedback=None)[0]
    if not result:
        return 1
    for path, tag in sorted(result):
        o.out(f"{path} {tag}")
    return 0


@cluster.command("join-token")
@click.option("--ttl", type=int, default=3600, show_default=True,
              help="Seconds the token stays valid")
def join_token(ttl: int) -> int:
    """Print a one-time token for 'corral-noded --join-token' on a new node."""
    o.out(get_env().client.create_join_token(ttl))
    return 0


add_tag_commands(cluster, C.TAG_CLUSTER)
