"""Node side of instances: start/stop/reboot, queries, OS create/rename, migration.

Mirrors ``ganeti.backend`` (``StartInstance``, ``InstanceShutdown``,
``InstanceReboot``, ``GetInstanceInfo``, ``GetAllInstancesInfo``,
``GetInstanceList``, ``InstanceBalloonMemory``, ``InstanceOsAdd``,
``RunRenameInstance``, ``GetInstanceConsoleInfo`` and the migration calls).
Every function is the procedure of the same name in :mod:`corral.rpc.defs`,
called as ``fn(paths, *args)``. ``instance`` arguments are the encoded
instance of ``RpcRunner.encode_instance`` (filled hv/be/os params plus
``primary_node_name``/``secondary_node_names``). Failures raise
:class:`errors.RPCFail`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from pydantic import BaseModel, ValidationError

from corral import constants as C
from corral.fileio import write_file_atomic
from corral import errors, osdef
from corral.backend.blockdev import (
    decode_disk,
    device_of,
    remove_disk_links,
    symlink_disk,
)
from corral.hypervisor import get_hypervisor, get_hypervisor_class
from corral.hypervisor.base import BaseHypervisor, BlockDevice
from corral.objects import NIC, Instance, Node, NodeGroup
from corral.paths import Paths, component_path, safe_component

log = logging.getLogger(__name__)

REASON_SRC_NODED = "gnt:daemon:noded"
_STOP_RETRY_INTERVAL = 5.0      # seconds between graceful stop requests (Ganeti: 5)
_POLL_INTERVAL = 0.1
_OS_SCRIPT_TIMEOUT = C.RPC_TMO_1DAY - 60


# -- decoding ----------------------------------------------------------------------
def _strip(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k in model.model_fields}


def decode_instance(data: Any) -> Instance:
    """An :class:`Instance` from its encoded dict.

    Keys the model does not know (``primary_node_name``,
    ``secondary_node_names``, NIC ``netinfo``, ...) are dropped. Raises
    :class:`errors.RPCFail` (``ECODE_INVAL``) for malformed data.
    """
    if isinstance(data, Instance):
        return data
    if not isinstance(data, dict):
        raise errors.RPCFail(f"Invalid instance data: {type(data).__name__}",
                             errors.ECODE_INVAL)
    clean = _strip(Instance, data)
    try:
        clean["nics"] = [_strip(NIC, n) for n in data.get("nics") or []]
        clean["disks"] = [decode_disk(d) for d in data.get("disks") or []]
        inst = Instance.model_validate(clean)
    except (ValidationError, AttributeError) as err:
        raise errors.RPCFail(f"Invalid instance data: {err}", errors.ECODE_INVAL) from None
    # Defence in depth: the name becomes file names on this node, whatever
    # the master checked.
    safe_component(inst.name, "instance name")
    return inst


def _decode_model(model: type[BaseModel], data: Any, what: str) -> Any:
    if data is None or isinstance(data, model):
        return data
    if not isinstance(data, dict):
        raise errors.RPCFail(f"Invalid {what} data", errors.ECODE_INVAL)
    try:
        return model.model_validate(_strip(model, data))
    except ValidationError as err:
        raise errors.RPCFail(f"Invalid {what} data: {err}", errors.ECODE_INVAL) from None


def _hypervisor(paths: Paths, name: str) -> BaseHypervisor:
    try:
        return get_hypervisor(name, paths)
    except errors.OpPrereqError as err:
        raise errors.RPCFail(str(err), err.ecode) from None


def _running(hv: BaseHypervisor, inst: Instance) -> bool:
    try:
        return inst.name in hv.list_instances(inst.hvparams)
    except errors.HypervisorError as err:
        raise errors.RPCFail(f"Cannot list instances of {hv.NAME}: {err}",
                             errors.ECODE_ENVIRON) from None


# -- reason trail ------------------------------------------------------------------
def _extend_reason(reason: Any, source: str) -> list[list[Any]]:
    trail = [list(r) for r in reason or []]
    trail.append([f"{REASON_SRC_NODED}:{source}", "", time.time_ns()])
    return trail


def store_reason_trail(paths: Paths, instance_name: str, trail: list[list[Any]]) -> None:
    """Write the reason trail to ``instance_reason_dir/<name>`` (JSON, atomic)."""
    try:
        write_file_atomic(component_path(paths.instance_reason_dir, instance_name,
                                         what="instance name"), json.dumps(trail),
                          mode=0o644, durable=False)
    except OSError as err:
        log.warning("cannot store the reason trail of %s: %s", instance_name, err)


# -- queries -----------------------------------------------------------------------
def _info_dict(info: Any) -> dict[str, Any]:
    return {"memory": info.memory, "vcpus": info.vcpus, "state": info.state,
            "time": info.cpu_time}


def instance_info(paths: Paths, instance_name: str, hname: str,
                  hvparams: dict[str, Any] | None) -> dict[str, Any] | None:
    """``{memory (MiB), vcpus, state, time}`` of a running instance, else None."""
    try:
        info = _hypervisor(paths, hname).get_instance_info(instance_name, hvparams)
    except errors.HypervisorError as err:
        raise errors.RPCFail(f"Error getting information on instance {instance_name}: "
                             f"{err}", errors.ECODE_ENVIRON) from None
    return None if info is None else _info_dict(info)


def all_instances_info(paths: Paths, hypervisor_list: list[str],
                       all_hvparams: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{name: {memory, vcpus, state, time}}`` over the given hypervisors."""
    out: dict[str, dict[str, Any]] = {}
    for hname in hypervisor_list:
        hvparams = (all_hvparams or {}).get(hname)
        try:
            infos = _hypervisor(paths, hname).get_all_instances_info(hvparams)
        except errors.HypervisorError as err:
            raise errors.RPCFail(f"Error enumerating instances (hypervisor {hname}): {err}",
                                 errors.ECODE_ENVIRON) from None
        for info in infos:
            value = _info_dict(info)
            prev = out.get(info.name)
            if prev is not None and (prev["memory"], prev["vcpus"]) != (value["memory"],
                                                                        value["vcpus"]):
                raise errors.RPCFail(f"Instance {info.name} is running twice with "
                                     "different parameters", errors.ECODE_STATE)
            out[info.name] = value
    return out


def instance_list(paths: Paths, hypervisor_list: list[str],
                  all_hvparams: dict[str, Any] | None) -> list[str]:
    """Names of the instances running under the given hypervisors."""
    names: list[str] = []
    for hname in hypervisor_list:
        try:
            names.extend(_hypervisor(paths, hname).list_instances(
                (all_hvparams or {}).get(hname)))
        except errors.HypervisorError as err:
            raise errors.RPCFail(f"Error enumerating instances (hypervisor {hname}): {err}",
                                 errors.ECODE_ENVIRON) from None
    return names


# -- start / stop / reboot ---------------------------------------------------------
def _gather_block_devices(paths: Paths, inst: Instance) -> list[BlockDevice]:
    """Link each (already assembled) disk as ``<instance>:<idx>``."""
    devices = []
    for idx, disk in enumerate(inst.disks):
        dev = device_of(paths, disk.to_dict())
        try:
            status = dev.find()
        except errors.BlockDeviceError as err:
            raise errors.RPCFail(f"Cannot access block device {idx} of {inst.name}: {err}",
                                 errors.ECODE_ENVIRON) from None
        if status is None:
            raise errors.RPCFail(f"Cannot access block device {idx} of {inst.name}: "
                                 f"{dev.dev_path} not found (disks not activated?)",
                                 errors.ECODE_STATE)
        link = symlink_disk(paths, inst.name, idx, status["dev_path"])
        devices.append(BlockDevice(disk, link, None))
    return devices


def _start(paths: Paths, inst: Instance, startup_paused: bool) -> None:
    hv = _hypervisor(paths, inst.hypervisor)
    if _running(hv, inst):
        log.info("instance %s already running, not starting", inst.name)
        return
    devices = _gather_block_devices(paths, inst)
    try:
        hv.start_instance(inst, devices, bool(startup_paused))
    except errors.HypervisorError as err:
        remove_disk_links(paths, inst.name)
        raise errors.RPCFail(f"Hypervisor error: {err}", err.ecode) from None


def instance_start(paths: Paths, instance: dict[str, Any], startup_paused: bool,
                   reason: list[Any] | None) -> None:
    """Start an instance whose disks are assembled; no-op if it runs already."""
    inst = decode_instance(instance)
    _start(paths, inst, startup_paused)
    store_reason_trail(paths, inst.name, _extend_reason(reason, "start"))


def _shutdown(paths: Paths, inst: Instance, timeout: float) -> None:
    """Ganeti's InstanceShutdown: graceful stop retried, then forced."""
    hv = _hypervisor(paths, inst.hypervisor)
    if not _running(hv, inst):
        log.info("instance %s not running, doing nothing", inst.name)
    else:
        deadline = time.monotonic() + max(float(timeout or 0), 0.0)
        tried = False
        while _running(hv, inst):
            remaining = deadline - time.monotonic()
            if tried and remaining <= 0:
                break
            try:
                hv.stop_instance(inst, retry=tried, timeout=max(math.ceil(remaining), 0))
            except errors.HypervisorError as err:
                if not _running(hv, inst):
                    break
                raise errors.RPCFail(f"Failed to stop instance '{inst.name}': {err}",
                                     err.ecode) from None
            tried = True
            wait_until = min(time.monotonic() + _STOP_RETRY_INTERVAL, deadline)
            while time.monotonic() < wait_until and _running(hv, inst):
                time.sleep(_POLL_INTERVAL)
        if _running(hv, inst):
            log.warning("shutdown of %s unsuccessful, forcing", inst.name)
            try:
                hv.stop_instance(inst, force=True)
            except errors.HypervisorError as err:
                if _running(hv, inst):
                    raise errors.RPCFail(f"Failed to force stop instance {inst.name}: "
                                         f"{err}", err.ecode) from None
            if _running(hv, inst):
                raise errors.RPCFail(f"Could not shutdown instance {inst.name} even by "
                                     "destroy", errors.ECODE_STATE)
    try:
        hv.cleanup_instance(inst.name)
    except errors.HypervisorError as err:
        log.warning("post-shutdown cleanup of %s failed: %s", inst.name, err)
    remove_disk_links(paths, inst.name)


def instance_shutdown(paths: Paths, instance: dict[str, Any], timeout: float,
                      reason: list[Any] | None) -> None:
    """Stop an instance, gracefully within ``timeout`` seconds, then by force."""
    inst = decode_instance(instance)
    _shutdown(paths, inst, timeout)
    store_reason_trail(paths, inst.name, _extend_reason(reason, "shutdown"))


def instance_reboot(paths: Paths, instance: dict[str, Any], reboot_type: str,
                    shutdown_timeout: float, reason: list[Any] | None) -> None:
    """Soft reboot (the guest sees a reboot) or hard (forced stop + start).

    ``full`` reboots are done by the master (shutdown, disks, start).
    """
    inst = decode_instance(instance)
    hv = _hypervisor(paths, inst.hypervisor)
    if not _running(hv, inst):
        raise errors.RPCFail(f"Cannot reboot instance {inst.name} that is not running",
                             errors.ECODE_STATE)
    if reboot_type == C.INSTANCE_REBOOT_SOFT:
        try:
            hv.reboot_instance(inst)
        except errors.HypervisorError as err:
            raise errors.RPCFail(f"Failed to soft reboot instance '{inst.name}': {err}",
                                 err.ecode) from None
    elif reboot_type == C.INSTANCE_REBOOT_HARD:
        try:
            hv.stop_instance(inst, force=True)
            hv.cleanup_instance(inst.name)
        except errors.HypervisorError as err:
            raise errors.RPCFail(f"Failed to hard reboot instance '{inst.name}': {err}",
                                 err.ecode) from None
        _start(paths, inst, False)
    else:
        raise errors.RPCFail(f"Invalid reboot_type received: '{reboot_type}'",
                             errors.ECODE_INVAL)
    store_reason_trail(paths, inst.name, _extend_reason(reason, "reboot"))


def instance_balloon_memory(paths: Paths, instance: dict[str, Any], memory: int) -> None:
    """Set the runtime memory (MiB); nothing to do if the instance is down."""
    inst = decode_instance(instance)
    hv = _hypervisor(paths, inst.hypervisor)
    if not _running(hv, inst):
        log.info("instance %s is not running, cannot balloon", inst.name)
        return
    try:
        hv.balloon_instance_memory(inst, int(memory))
    except errors.HypervisorError as err:
        raise errors.RPCFail(f"Failed to balloon instance memory: {err}", err.ecode) from None


def instance_console_info(paths: Paths, instance: dict[str, Any], primary_node: Any,
                          node_group: Any, hvparams: dict[str, Any],
                          beparams: dict[str, Any]) -> dict[str, Any]:
    """How to reach the console: an ``InstanceConsole`` dict."""
    inst = decode_instance(instance)
    node = _decode_model(Node, primary_node, "node")
    group = _decode_model(NodeGroup, node_group, "node group")
    try:
        cls = get_hypervisor_class(inst.hypervisor)
        console = cls.get_instance_console(inst, node, group, hvparams or {}, beparams or {})
    except (errors.OpPrereqError, errors.HypervisorError) as err:
        raise errors.RPCFail(f"Cannot get console of {inst.name}: {err}", err.ecode) from None
    return console.model_dump(mode="json")


# -- OS scripts --------------------------------------------------------------------
def _os_for(paths: Paths, inst: Instance) -> osdef.OSDefinition:
    try:
        os_def = osdef.find_os(paths, inst.os)
    except errors.OSError_ as err:
        raise errors.RPCFail(str(err), err.ecode) from None
    if not os_def.trusted:
        raise errors.RPCFail(f"OS '{os_def.name}' has only an untrusted create script; "
                             "installing through a helper VM is not supported",
                             errors.ECODE_ENVIRON)
    return os_def


def _disk_paths(paths: Paths, inst: Instance) -> list[str]:
    out = []
    for idx, disk in enumerate(inst.disks):
        status = device_of(paths, disk.to_dict()).find()
        if status is None:
            raise errors.RPCFail(f"Cannot access block device {idx} of {inst.name} "
                                 "(disks not activated?)", errors.ECODE_STATE)
        out.append(status["dev_path"])
    return out


def instance_os_add(paths: Paths, instance: dict[str, Any], reinstall: bool,
                    debug: int) -> None:
    """Run the OS ``create`` script on the instance's assembled disks.

    ``INSTANCE_REINSTALL=1`` on reinstall. Output goes to
    ``os_log_dir/add-<os>-<instance>-<time>.log``; a failure reports its tail.
    """
    inst = decode_instance(instance)
    os_def = _os_for(paths, inst)
    env = osdef.os_environment(os_def, instance, _disk_paths(paths, inst), debug=int(debug))
    if reinstall:
        env["INSTANCE_REINSTALL"] = "1"
    try:
        osdef.run_os_script(os_def, osdef.SCRIPT_CREATE, env, paths, inst.name,
                            timeout=_OS_SCRIPT_TIMEOUT, os_name=inst.os)
    except errors.OSError_ as err:
        raise errors.RPCFail(str(err), err.ecode) from None


def instance_run_rename(paths: Paths, instance: dict[str, Any], old_name: str,
                        debug: int) -> None:
    """Run the OS ``rename`` script (``OLD_INSTANCE_NAME``; new name in ``INSTANCE_NAME``)."""
    inst = decode_instance(instance)
    os_def = _os_for(paths, inst)
    env = osdef.os_environment(os_def, instance, _disk_paths(paths, inst), debug=int(debug))
    env["OLD_INSTANCE_NAME"] = old_name
    try:
        osdef.run_os_script(os_def, osdef.SCRIPT_RENAME, env, paths,
                            f"{old_name}-{inst.name}", timeout=C.RPC_TMO_SLOW - 60,
                            os_name=inst.os)
    except errors.OSError_ as err:
        raise errors.RPCFail(str(err), err.ecode) from None


# -- migration (procedures not yet in rpc/defs.py; Ganeti's argument order) ---------
def _hv_call(what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except errors.HypervisorError as err:
        raise errors.RPCFail(f"{what}: {err}", err.ecode) from None


def migration_info(paths: Paths, instance: dict[str, Any]) -> str:
    """Source side: opaque data for the target's ``accept_instance``."""
    inst = decode_instance(instance)
    hv = _hypervisor(paths, inst.hypervisor)
    return _hv_call("Failed to fetch migration information", hv.migration_info, inst)


def accept_instance(paths: Paths, instance: dict[str, Any], info: str, target: str) -> None:
    """Target side: prepare to receive the instance (``target`` = this node's IP)."""
    inst = decode_instance(instance)
    hv = _hypervisor(paths, inst.hypervisor)
    _gather_block_devices(paths, inst)
    _hv_call("Failed to accept instance", hv.accept_instance, inst, info, target)


def instance_migrate(paths: Paths, cluster_name: str, instance: dict[str, Any], target: str,
                     live: bool) -> None:
    """Source side: start migrating to ``target`` (an IP address)."""
    inst = decode_instance(instance)
    hv = _hypervisor(paths, inst.hypervisor)
    _hv_call("Failed to migrate instance", hv.migrate_instance, cluster_name, inst, target,
             bool(live))


def instance_get_migration_status(paths: Paths, instance: dict[str, Any]) -> dict[str, Any]:
    """Source side: a ``MigrationStatus`` dict."""
    inst = decode_instance(instance)
    hv = _hypervisor(paths, inst.hypervisor)
    status = _hv_call("Failed to get migration status", hv.get_migration_status, inst)
    return status.model_dump(mode="json")


def instance_finalize_migration_src(paths: Paths, instance: dict[str, Any], success: bool,
                                    live: bool) -> None:
    inst = decode_instance(instance)
    hv = _hypervisor(paths, inst.hypervisor)
    _hv_call("Failed to finalize the migration on the source",
             hv.finalize_migration_source, inst, bool(success), bool(live))
    if success:
        remove_disk_links(paths, inst.name)


def instance_finalize_migration_dst(paths: Paths, instance: dict[str, Any], info: str,
                                    success: bool) -> None:
    inst = decode_instance(instance)
    hv = _hypervisor(paths, inst.hypervisor)
    _hv_call("Failed to finalize the migration on the target",
             hv.finalize_migration_dst, inst, info, bool(success))
