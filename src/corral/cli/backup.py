"""``gnt-backup`` / ``corral backup``: instance exports and imports.

Mirrors ``ganeti.client.gnt_backup`` (export, import, list, list-fields,
remove) and, as ``move-remote``, Ganeti's ``tools/move-instance``: moving
an instance between two clusters through the remote export protocol
(:func:`move_instance_remote`). ``set-domain-secret`` installs a cluster
domain secret on this master (Ganeti: ``gnt-cluster renew-crypto
--cluster-domain-secret``); clusters must share it to exchange instances::

    corral --root /cluster-a backup set-domain-secret --new-cluster-domain-secret
    cp /cluster-a/var/lib/corral/cluster-domain-secret /tmp/cds
    corral --root /cluster-b backup set-domain-secret --cluster-domain-secret /tmp/cds
    corral --root /cluster-a backup move-remote inst1 --dest-root /cluster-b -n node2
"""

from __future__ import annotations

import time
from typing import Any, Callable

import click

from corral import constants as C
from corral import errors
from corral.cli import (
    CorralGroup,
    build_op,
    confirm,
    get_env,
    print_log_entry,
    root_option,
    submit_op,
)
from corral.cli import output as o
from corral.cli.options import (
    argument,
    convert_hvparams,
    force_dict_type,
    instance_spec_opts,
    parse_disks,
    parse_ident_kv,
    parse_kv,
    parse_nics,
    parse_node_spec,
    split_list,
    submit_opts,
)
from corral.paths import Paths

LogFn = Callable[[tuple[Any, str, Any]], None]
EXPORT_FIELDS = [
    {"name": "node", "title": "Node", "kind": "text", "doc": "Node name"},
    {"name": "export", "title": "Export", "kind": "text", "doc": "Export name"},
]


@click.group("backup", cls=CorralGroup, aliases={"show": "info"})
@root_option
def backup(root: str | None) -> None:
    """Instance import/export (gnt-backup)."""


# -- export ---------------------------------------------------------------------------

@backup.command("export")
@argument("name", help="Instance to export")
@click.option("-n", "--node", "target_node", required=True, help="Target node")
@click.option("--noshutdown", "shutdown", flag_value=False, default=True,
              help="Do not shut the instance down (needs snapshots)")
@click.option("--shutdown-timeout", type=int, default=C.DEFAULT_SHUTDOWN_TIMEOUT,
              show_default=True,
              help="Seconds to wait for the instance to shut down before forcing it off")
@click.option("--remove-instance", is_flag=True, help="Remove the instance afterwards")
@click.option("--ignore-remove-failures", is_flag=True,
              help="Do not fail when the old export or snapshots cannot be removed")
@click.option("--transport-compression", "compress", default="none", show_default=True,
              help="Compression of the data in transit (none, gzip, zstd, ...)")
@click.option("--zero-free-space", is_flag=True,
              help=("Zero the free space of the disks before export so they compress better (needs"
                    " a zeroing image)"))
@click.option("--zeroing-timeout-fixed", type=int, default=None,
              help="Fixed part of the zeroing timeout, in seconds")
@click.option("--zeroing-timeout-per-mib", type=float, default=None,
              help="Per-MiB part of the zeroing timeout, in seconds")
@click.option("--long-sleep", is_flag=True,
              help="Shut the instance down for the whole export instead of using snapshots")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@submit_opts
def export(name: str, **opts: Any) -> int:
    """Export an instance to a node's export directory."""
    if opts["remove_instance"]:
        confirm(f"The instance {name} will be removed after the export. Continue?",
                opts["force"])
    params: dict[str, Any] = {
        "instance_name": name, "target_node": opts["target_node"],
        "shutdown": opts["shutdown"], "shutdown_timeout": opts["shutdown_timeout"],
        "remove_instance": opts["remove_instance"],
        "ignore_remove_failures": opts["ignore_remove_failures"],
        "compress": opts["compress"], "zero_free_space": opts["zero_free_space"],
        "long_sleep": opts["long_sleep"]}
    for key in ("zeroing_timeout_fixed", "zeroing_timeout_per_mib"):
        if opts[key] is not None:
            params[key] = opts[key]
    result = submit_op(build_op("OP_BACKUP_EXPORT", opts, **params), opts)
    return report_export_result(result)


def report_export_result(result: Any) -> int:
    """Exit code and messages for ``[finalize_ok, [disk_ok...]]`` (``ExportInstance``)."""
    try:
        fin_ok, disks = result
        disks = list(disks)
    except (TypeError, ValueError):
        o.err(f"Code error: wrong export result {result!r}")
        return o.EXIT_FAILURE
    if disks.count(False) == 0:
        if not fin_ok:
            o.err("Export failed during finalization")
            return o.EXIT_FAILURE
        return o.EXIT_SUCCESS
    if disks.count(False) == len(disks):
        o.err("Error: No disks were backed up.")
    else:
        bad = ", ".join(str(i) for i, ok in enumerate(disks) if not ok)
        o.err(f"Partial export failure: disk(s) {bad} not backed up.")
    return o.EXIT_FAILURE


# -- import ---------------------------------------------------------------------------

@backup.command("import")
@argument("name", help="Name of the new instance")
@click.option("--src-node", default=None, help="Node holding the export")
@click.option("--src-dir", default=None, help="Export directory (default: the name)")
@instance_spec_opts
@click.option("--no-start", "start", flag_value=False, default=True,
              help="Do not start the instance after creating it")
@click.option("--identify-defaults", is_flag=True,
              help=("Store parameters equal to the cluster defaults as defaults, not as instance "
                    "values"))
@click.option("--compress", default="none", show_default=True,
              help="Compression of the data in transit")
@click.option("--ignore-ipolicy", is_flag=True, help="Ignore instance policy violations")
@click.option("--tags", default=None, help="Comma-separated tags to give the new instance")
@submit_opts
def import_(name: str, **opts: Any) -> int:
    """Create an instance from an export."""
    submit_op(build_import_op(name, opts), opts)
    return 0


def build_import_op(name: str, opts: dict[str, Any]) -> dict[str, Any]:
    """OP_INSTANCE_CREATE (mode import): what is not given comes from the export."""
    pnode, snode = parse_node_spec(opts.get("node_spec"))
    hypervisor, hvparams = None, {}
    if opts.get("hvparams"):
        hypervisor, params = parse_ident_kv(opts["hvparams"], "-H")
        if not isinstance(params, dict):
            raise errors.ParameterError(f"Invalid -H value '{opts['hvparams']}'")
        hvparams = convert_hvparams(hypervisor, params)
    disks: list[dict[str, Any]] = []
    if opts.get("disks") or opts.get("os_size") is not None:
        disks = parse_disks(opts.get("disks") or (), opts.get("os_size"),
                            opts.get("disk_template"))
    nics: list[dict[str, Any]] = []
    if opts.get("nets") or opts.get("no_nics"):
        nics = parse_nics(opts.get("nets") or (), bool(opts.get("no_nics")))
    params: dict[str, Any] = {
        "instance_name": name, "mode": C.INSTANCE_IMPORT, "disks": disks, "nics": nics,
        "src_node": opts.get("src_node"), "src_path": opts.get("src_dir"),
        "disk_template": opts.get("disk_template"), "pnode": pnode, "snode": snode,
        "iallocator": opts.get("iallocator"), "group_name": opts.get("group_name"),
        "hypervisor": hypervisor, "hvparams": hvparams,
        "beparams": force_dict_type(parse_kv(opts.get("beparams"), "-B"),
                                    C.BES_PARAMETER_TYPES),
        "osparams": parse_kv(opts.get("osparams"), "-O"),
        "file_storage_dir": opts.get("file_storage_dir"),
        "file_driver": opts.get("file_driver"),
        "ip_check": opts.get("ip_check", True), "name_check": opts.get("name_check", True),
        "start": opts.get("start", True),
        "identify_defaults": bool(opts.get("identify_defaults")),
        "compress": opts.get("compress") or "none",
        "ignore_ipolicy": bool(opts.get("ignore_ipolicy")),
        "tags": split_list(opts.get("tags")) or [],
    }
    return build_op("OP_INSTANCE_CREATE", opts,
                    **{k: v for k, v in params.items() if v is not None})


# -- list / remove -------------------------------------------------------------------

@backup.command("list")
@click.option("-n", "--node", "nodes", multiple=True, help="Only these nodes")
@click.option("-o", "--output-fields", "fields", default=None,
              help="Comma-separated fields to show (node, export)")
@click.option("--no-headers", is_flag=True, help="Do not print column headers")
@click.option("--separator", default=None, help="Column separator (default: aligned columns)")
@click.option("-v", "--verbose", is_flag=True, help="Verbose output")
def list_(nodes: tuple[str, ...], fields: str | None, no_headers: bool,
          separator: str | None, verbose: bool) -> int:
    """List the exports on the nodes."""
    names = [f["name"] for f in EXPORT_FIELDS]
    wanted = [f.strip() for f in (fields or "node,export").split(",") if f.strip()]
    unknown = [f for f in wanted if f not in names]
    if unknown:
        o.err(f"Unknown field(s): {', '.join(unknown)}")
        return o.EXIT_UNKNOWN_FIELD
    result = submit_op(build_op("OP_BACKUP_QUERY", None, nodes=list(nodes),
                                use_locking=False), None)
    rows = []
    for node in sorted(result):
        exports = result[node]
        if exports is False:
            cells = {"node": node, "export": "(unavail)" if verbose else "?"}
            rows.append([cells[f] for f in wanted])
            continue
        for exp in exports:
            cells = {"node": node, "export": exp}
            rows.append([cells[f] for f in wanted])
    titles = {f["name"]: f["title"] for f in EXPORT_FIELDS}
    heads = None if no_headers else [titles[f] for f in wanted]
    for line in o.generate_table(heads, rows, [False] * len(wanted), separator):
        o.out(line)
    return 0


@backup.command("list-fields")
@argument("fields", nargs=-1, help="Fields to describe (default: all)")
@click.option("--no-headers", is_flag=True, help="Do not print column headers")
@click.option("--separator", default=None, help="Column separator (default: aligned columns)")
def list_fields(fields: tuple[str, ...], no_headers: bool, separator: str | None) -> int:
    """List the fields of 'list -o'."""
    fdefs = [f for f in EXPORT_FIELDS if not fields or f["name"] in fields]
    rows = [[f["name"], f["kind"], f["title"], f["doc"]] for f in fdefs]
    heads = None if no_headers else ["Name", "Type", "Title", "Description"]
    for line in o.generate_table(heads, rows, [False] * 4, separator):
        o.out(line)
    return 0


@backup.command("remove")
@argument("name", help="Instance (or export name) whose exports to remove")
@submit_opts
def remove(name: str, **opts: Any) -> int:
    """Remove every export of an instance."""
    submit_op(build_op("OP_BACKUP_REMOVE", opts, instance_name=name), opts)
    return 0


# -- cluster domain secret --------------------------------------------------------------

@backup.command("set-domain-secret")
@click.option("--cluster-domain-secret", "secret_file", default=None, metavar="FILE",
              help="Install the secret in FILE (first line)")
@click.option("--new-cluster-domain-secret", "new_secret", is_flag=True,
              help="Generate a new random secret")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
def set_domain_secret(secret_file: str | None, new_secret: bool, force: bool) -> int:
    """Install the cluster domain secret on this master (for remote moves)."""
    from corral.cmdlib.backup_remote import write_cluster_domain_secret

    if bool(secret_file) == new_secret:
        raise errors.ParameterError("Give exactly one of --cluster-domain-secret and "
                                    "--new-cluster-domain-secret")
    paths = get_env().paths
    if not paths.config_db.exists():
        raise errors.OpPrereqError(f"{paths.root} is not a master node",
                                   errors.ECODE_ENVIRON)
    confirm("Instances in transfer between clusters will fail. Continue?", force)
    text = None
    if secret_file:
        with open(secret_file, encoding="utf-8") as fh:
            text = fh.read()
    write_cluster_domain_secret(paths, text)
    o.out(f"Cluster domain secret written to {paths.cluster_domain_secret}")
    return 0


# -- move between clusters --------------------------------------------------------------

def _run(client: Any, op: dict[str, Any], feedback: LogFn | None, timeout: float) -> Any:
    return client.wait_job(client.submit_job([op]), feedback, timeout=timeout)[0]


def follow_job(client: Any, job_id: int, feedback: LogFn | None, timeout: float,
               until_log_type: str | None = None, after_serial: int | None = None
               ) -> tuple[Any, int | None]:
    """Pass job ``job_id``'s log entries after ``after_serial`` to ``feedback``.

    With ``until_log_type``, stop at the first entry of that type and return
    ``(its message, its serial)``; otherwise wait for the end of the job and
    return ``(opcode results, last serial)``. Raises the job's error,
    :class:`errors.OpExecError` after ``timeout`` seconds or when the job
    ends without an ``until_log_type`` entry.
    """
    deadline = time.monotonic() + timeout
    prev_info: Any = None
    serial = after_serial
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise errors.OpExecError(f"Timeout while waiting for job {job_id}")
        change = client.wait_for_job_change(job_id, ["status"], prev_info, serial,
                                            min(20.0, left))
        if change is None:
            raise errors.JobQueueError(f"Job {job_id} not found", errors.ECODE_NOENT)
        if change == "nochange":
            continue
        job_info, entries = change
        for entry_serial, timestamp, etype, message in entries or ():
            serial = entry_serial if serial is None else max(serial, entry_serial)
            if until_log_type is not None and etype == until_log_type:
                return message, serial
            if feedback is not None:
                feedback((timestamp, etype, message))
        prev_info = job_info
        if job_info and job_info[0] in C.JOBS_FINALIZED:
            result = client.wait_job(job_id, None, timeout=60)   # raises the job's error
            if until_log_type is not None:
                raise errors.OpExecError(f"Job {job_id} ended without {until_log_type} "
                                         "information")
            return result, serial


def move_instance_remote(src: Any, dst: Any, name: str, pnode: str, *,
                         dest_name: str | None = None, disk_template: str | None = None,
                         compress: str = "none", remove_source: bool = False,
                         keep_nic_links: bool = False,
                         shutdown_timeout: int = C.DEFAULT_SHUTDOWN_TIMEOUT,
                         feedback: LogFn | None = None, timeout: float = 3600.0) -> str:
    """Move instance ``name`` from the cluster of ``src`` to that of ``dst``
    (two :class:`~corral.masterd.client.MasterClient`), like Ganeti's
    ``move-instance``: OP_BACKUP_PREPARE (remote) on the source,
    OP_INSTANCE_CREATE (remote-import) on the destination, whose
    ``remote-import`` log entry feeds OP_BACKUP_EXPORT (remote) on the source.

    The new instance gets the source's OS, disks (sizes, modes, names), NIC
    MACs/IPs/names/VLANs (modes and links only with ``keep_nic_links``: they
    name the source cluster's bridges), custom hv/be/OS parameters, and is
    started when the source was marked up. Returns the new instance's name.
    Raises the first error of either cluster's jobs.
    """
    info = _run(src, {"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": [name],
                      "static": True}, None, 120)[name]
    nics = []
    for nic_name, _uuid, ip, mac, mode, link, vlan, network, _netinfo in info["nics"]:
        nic = {C.INIC_MAC: mac, C.INIC_IP: ip, C.INIC_NAME: nic_name,
               C.INIC_NETWORK: network}
        if vlan:
            nic[C.INIC_VLAN] = vlan
        if keep_nic_links:
            nic.update({C.INIC_MODE: mode, C.INIC_LINK: link})
        nics.append({k: v for k, v in nic.items() if v is not None})
    disks = [{k: v for k, v in (("size", d["size"]), ("mode", d["mode"]),
                                ("name", d.get("name"))) if v is not None}
             for d in info["disks"]]
    prep = _run(src, {"OP_ID": "OP_BACKUP_PREPARE", "instance_name": name,
                      "mode": C.EXPORT_MODE_REMOTE}, feedback, 120)
    new_name = dest_name or name
    create = {"OP_ID": "OP_INSTANCE_CREATE", "mode": C.INSTANCE_REMOTE_IMPORT,
              "instance_name": new_name, "pnode": pnode, "os_type": info["os"],
              "disk_template": disk_template or info["disk_template"], "disks": disks,
              "nics": nics, "hypervisor": info["hypervisor"],
              "hvparams": info.get("hv_instance") or {},
              "beparams": info.get("be_instance") or {},
              "osparams": info.get("os_instance") or {}, "tags": info.get("tags") or [],
              "start": info["config_state"] == C.ADMINST_UP, "name_check": False,
              "ip_check": False, "compress": compress,
              "source_handshake": prep["handshake"], "source_x509_ca": prep["x509_ca"],
              "source_instance_name": name, "source_shutdown_timeout": shutdown_timeout}
    dst_job = dst.submit_job([create])
    rie, dst_serial = follow_job(dst, dst_job, feedback, 600,
                                 until_log_type=C.ELOG_REMOTE_IMPORT)
    export = {"OP_ID": "OP_BACKUP_EXPORT", "instance_name": name,
              "mode": C.EXPORT_MODE_REMOTE, "target_node": rie["disks"],
              "x509_key_name": prep["x509_key_name"],
              "destination_x509_ca": rie["x509_ca"], "compress": compress,
              "shutdown": True, "shutdown_timeout": shutdown_timeout,
              "remove_instance": remove_source}
    src_job = src.submit_job([export])
    errors_seen: list[BaseException] = []
    for client, job_id, serial in ((src, src_job, None), (dst, dst_job, dst_serial)):
        try:
            follow_job(client, job_id, feedback, timeout, after_serial=serial)
        except errors.CorralError as err:
            errors_seen.append(err)
    if errors_seen:
        raise errors_seen[0]
    return new_name


@backup.command("move-remote")
@argument("name", help="Instance to move")
@click.option("--dest-root", required=True, metavar="DIR",
              help="State root of the destination cluster's master node")
@click.option("-n", "--dest-primary-node", "pnode", required=True,
              help="Primary node of the instance on the destination cluster")
@click.option("--dest-instance-name", "dest_name", default=None,
              help="Name of the instance on the destination cluster (default: the same)")
@click.option("--dest-disk-template", "disk_template", default=None,
              type=click.Choice(C.DISK_TEMPLATES),
              help="Disk template of the instance on the destination cluster (default: the same)")
@click.option("--compress", default="none", show_default=True,
              help=("Compression tool for the disk transfer (one of the cluster's compression "
                    "tools)"))
@click.option("--remove-instance", is_flag=True, help="Remove the source instance afterwards")
@click.option("--keep-nic-links", is_flag=True,
              help="Keep the NICs' modes and links (bridges of the source cluster)")
@click.option("--shutdown-timeout", type=int, default=C.DEFAULT_SHUTDOWN_TIMEOUT,
              show_default=True,
              help="Seconds to wait for the instance to shut down before forcing it off")
def move_remote(name: str, dest_root: str, pnode: str, dest_name: str | None,
                disk_template: str | None, compress: str, remove_instance: bool,
                keep_nic_links: bool, shutdown_timeout: int) -> int:
    """Move an instance to another cluster (like Ganeti's move-instance)."""
    from corral.masterd.client import MasterClient

    src = get_env().client
    with MasterClient(Paths.from_env(dest_root), timeout=120) as dst:
        new = move_instance_remote(src, dst, name, pnode, dest_name=dest_name,
                                   disk_template=disk_template, compress=compress,
                                   remove_source=remove_instance,
                                   keep_nic_links=keep_nic_links,
                                   shutdown_timeout=shutdown_timeout,
                                   feedback=print_log_entry)
    o.out(f"Instance {name} moved to {new} on the destination cluster")
    return 0
