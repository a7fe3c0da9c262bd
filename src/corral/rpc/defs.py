"""The table of node daemon procedures: names, positional arguments, timeouts.

Mirrors ``ganeti.rpc_defs.CALLS``. Master (``rpc.RpcRunner``) and node
(``noded.dispatch``) both follow this table; argument order is the wire
order. Shapes:

* ``instance``: dict from ``RpcRunner.encode_instance`` = ``Instance.to_dict()``
  with hvparams/beparams/osparams filled, plus ``primary_node_name``,
  ``secondary_node_names``, and each NIC's ``nicparams`` filled.
* ``disk``: ``Disk.to_dict()`` (sizes in MiB); file disks carry
  ``logical_id = [driver, virtual_path]``.
* ``reason``: reason trail list ``[[source, text, timestamp_ns], ...]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral import constants as C


@dataclass(frozen=True)
class RpcDef:
    name: str
    args: tuple[str, ...]
    timeout: int
    doc: str
    offline_ok: bool = False


_U, _F, _N, _S = C.RPC_TMO_URGENT, C.RPC_TMO_FAST, C.RPC_TMO_NORMAL, C.RPC_TMO_SLOW

CALLS: dict[str, RpcDef] = {d.name: d for d in (
    # -- node ----------------------------------------------------------------
    RpcDef("version", (), _U, "-> PROTOCOL_VERSION (int)", offline_ok=True),
    RpcDef("node_info", ("storage_units", "hv_specs"), _U,
           "storage_units: [[type, virtual_path]], hv_specs: [[hv_name, hvparams]] -> "
           "{boot_id, name, storage: [{type, name, storage_size, storage_free}] (MiB), "
           "hv: [{memory_total, memory_free, memory_dom0, cpu_total, ...}]}"),
    RpcDef("node_verify", ("checkdict", "cluster_name", "all_hvparams"), _N,
           "checkdict keys: version, filelist (virtual paths), hypervisor (list of names), "
           "instancelist (list of hv names), nodelist ({name: [ip, port]}), "
           "file_storage_paths -> {key: result} per requested check"),
    RpcDef("node_has_ip_address", ("address",), _F, "-> bool"),
    RpcDef("node_leave_cluster", ("modify_ssh_setup",), _N,
           "forget the cluster (certs, config replica) and go back to unjoined mode"),
    RpcDef("upload_file_single", ("file_name", "content", "mode", "uid", "gid", "atime",
                                  "mtime"), _N,
           "file_name: virtual path from the upload allow-list; content: [enc, data]"),
    RpcDef("write_ssconf_files", ("values",), _N, "values: {key: text}"),
    RpcDef("config_update", ("changes",), _U,
           "replicate committed config changes (ConfigChanges dict) to a master candidate"),
    RpcDef("test_delay", ("duration",), _U, "sleep duration seconds"),
    RpcDef("storage_list", ("su_name", "su_args", "name", "fields"), _N,
           "su_name: storage type (file/sharedfile), su_args: [directory], name: one "
           "unit or None, fields: SF_* names -> [[value per field]] (sizes in MiB)"),
    RpcDef("run_oob", ("oob_program", "command", "remote_node", "timeout"), _S,
           "run oob_program COMMAND NODE (on the master) -> its stdout (text)"),
    RpcDef("bridges_exist", ("bridges_list",), _U, "-> None, RPCFail names missing ones"),
    RpcDef("hypervisor_validate_params", ("hvname", "hvfull"), _N, "node-side checks"),
    RpcDef("hooks_runner", ("hpath", "phase", "env"), _N,
           "-> [[script_name, status (0 skip, 1 fail, 2 ok), output]]"),
    # -- instances -----------------------------------------------------------
    RpcDef("instance_info", ("instance_name", "hname", "hvparams"), _U,
           "-> {memory, vcpus, state, time} or None"),
    RpcDef("all_instances_info", ("hypervisor_list", "all_hvparams"), _U,
           "-> {instance_name: {memory, vcpus, state, time}}"),
    RpcDef("instance_list", ("hypervisor_list", "all_hvparams"), _U, "-> [names]"),
    RpcDef("instance_start", ("instance", "startup_paused", "reason"), _N,
           "assembles nothing: disks must be assembled first (blockdev_assemble)"),
    RpcDef("instance_shutdown", ("instance", "timeout", "reason"), _N, ""),
    RpcDef("instance_reboot", ("instance", "reboot_type", "shutdown_timeout", "reason"), _N,
           "soft/hard on the node; full is done by the master as stop+start"),
    RpcDef("instance_balloon_memory", ("instance", "memory"), _N, "memory in MiB"),
    RpcDef("instance_os_add", ("instance", "reinstall", "debug"), C.RPC_TMO_1DAY,
           "run the OS create script on the instance's assembled disks"),
    RpcDef("instance_run_rename", ("instance", "old_name", "debug"), _S,
           "run the OS rename script"),
    RpcDef("instance_console_info", ("instance", "primary_node", "node_group", "hvparams",
                                     "beparams"), _U, "-> InstanceConsole dict"),
    # -- live migration (TLMigrateInstance; source/target as in node-daemon.md §5)
    RpcDef("migration_info", ("instance",), _N,
           "source: -> opaque text for the target's accept_instance"),
    RpcDef("accept_instance", ("instance", "info", "target"), _N,
           "target: prepare to receive; disks must be assembled here; target = this "
           "node's IP"),
    RpcDef("instance_migrate", ("cluster_name", "instance", "target", "live"), _S,
           "source: start migrating to target (IP); returns at once, poll the status"),
    RpcDef("instance_get_migration_status", ("instance",), _S,
           "source: -> MigrationStatus dict {status, transferred_ram, total_ram (bytes), "
           "postcopy_status, downtime_ms}"),
    RpcDef("instance_finalize_migration_dst", ("instance", "info", "success"), _N,
           "target: success -> instance runs here; failure -> nothing left here"),
    RpcDef("instance_finalize_migration_src", ("instance", "success", "live"), _S,
           "source: success -> stop and clean up here; failure -> keep running here"),
    # -- live migration of local disks (kvm: NBD export + blockdev-mirror) ----
    RpcDef("instance_mirror_export", ("instance", "host"), _N,
           "target: export the incoming instance's disks over NBD on host (this node's "
           "IP) -> {host, port, exports}"),
    RpcDef("instance_mirror_unexport", ("instance",), _N, "target: remove the NBD exports"),
    RpcDef("instance_mirror_start", ("instance", "host", "port", "exports"), _N,
           "source: mirror every disk to the target's NBD exports"),
    RpcDef("instance_mirror_status", ("instance",), _U,
           "source: -> [{drive, offset, len (bytes), ready, status, error}]"),
    RpcDef("instance_mirror_finish", ("instance", "success"), _N,
           "source: end the mirror jobs (graceful after success) and drop the NBD clients"),
    # -- block devices -------------------------------------------------------
    RpcDef("blockdev_create", ("disk", "size", "owner", "on_primary", "info",
                               "exclusive_storage"), _N, "size MiB -> real path"),
    RpcDef("blockdev_remove", ("disk",), _N, ""),
    RpcDef("blockdev_assemble", ("disk", "instance", "on_primary", "idx"), _N,
           "-> [link_path, uri_or_null]"),
    RpcDef("blockdev_shutdown", ("disk",), _N, ""),
    RpcDef("blockdev_find", ("disk",), _N,
           "-> {dev_path, size (MiB), is_degraded: false, ldisk_status} or None"),
    RpcDef("blockdev_getdimensions", ("disks",), _N, "-> [[size_bytes, spindles] or None]"),
    RpcDef("blockdev_grow", ("disk", "amount", "dryrun", "backingstore", "es_flag"), _N,
           "amount MiB"),
    RpcDef("blockdev_rename", ("devlist",), _N, "devlist: [[disk, new_logical_id]]"),
    RpcDef("file_storage_dir_create", ("file_storage_dir",), _F, "virtual path"),
    RpcDef("file_storage_dir_remove", ("file_storage_dir",), _F, "virtual path, must be empty"),
    RpcDef("file_storage_dir_rename", ("old_file_storage_dir", "new_file_storage_dir"), _F, ""),
    RpcDef("file_storage_verify", ("storage_dirs", "expected_files", "disks",
                                   "expected_links"), _N,
           "disk checks of verify/verify-disks (corral.backend.storage_verify): "
           "storage_dirs, expected_files: virtual paths; disks: [[disk, [instance, idx] | "
           "null]]; expected_links: [\"<instance>:<idx>\"] | null -> {disks: [{status, size "
           "(bytes), message, link}], orphans: [virtual paths], orphan_count, unscanned}"),
    # -- OS ------------------------------------------------------------------
    RpcDef("os_diagnose", (), _F,
           "-> [[name, path, status, diagnose, variants, parameters, api_versions, trusted]]"),
    RpcDef("os_validate", ("required", "name", "checks", "params", "force_variant"), _F,
           "-> bool (False if OS missing and not required); RPCFail if invalid"),
    # -- import/export (disk transfers, see corral.impexp) ------------------
    RpcDef("import_start", ("opts", "instance", "component", "dest"), _N,
           "opts: {key_name, ca_pem, compress, magic, expected_size (MiB), connect_timeout, "
           "connect_retries, listen_host}; dest: [\"file\", virtual_path] | [\"raw\", disk] | "
           "[\"script\", disk, disk_index] -> transfer name"),
    RpcDef("export_start", ("opts", "host", "port", "instance", "component", "source"), _N,
           "as import_start; host:port is the importer's listen address -> transfer name"),
    RpcDef("impexp_status", ("names",), _F,
           "-> [status dict (recent_output, listen_port, connected, progress_mbytes, "
           "progress_throughput (MiB/s), progress_eta (s), progress_percent, exit_status, "
           "error_message, done) or None for unknown names]"),
    RpcDef("impexp_abort", ("name",), _N, "SIGTERM the transfer -> bool (was running)"),
    RpcDef("impexp_cleanup", ("name",), _N,
           "stop the transfer if running, undo a partial import, remove its directory"),
    # -- exports (corral.backend.export; layout in corral.export_format) ----
    RpcDef("export_info", ("path",), _F,
           "path: virtual export directory -> config.ini text (RPCFail if missing, "
           "corrupt or incomplete)"),
    RpcDef("finalize_export", ("instance", "snap_disks"), _N,
           "snap_disks: [disk | false] per disk, images in <export_dir>/<name>.new/<uuid>; "
           "writes config.ini, replaces <name> with <name>.new"),
    RpcDef("export_list", (), _F, "-> sorted export names (no <name>.new)"),
    RpcDef("export_remove", ("export",), _F, "remove <export_dir>/<export>"),
    # -- X509 keys of inter-cluster transfers --------------------------------
    RpcDef("x509_cert_create", ("validity",), _N,
           "validity in seconds -> [name, cert_pem] (key kept on the node)"),
    RpcDef("x509_cert_remove", ("name",), _N, ""),
)}
