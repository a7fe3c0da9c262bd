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
    # -- OS ------------------------------------------------------------------
    RpcDef("os_diagnose", (), _F,
           "-> [[name, path, status, diagnose, variants, parameters, api_versions, trusted]]"),
    RpcDef("os_validate", ("required", "name", "checks", "params", "force_variant"), _F,
           "-> bool (False if OS missing and not required); RPCFail if invalid"),
)}
