"""Procedure name -> backend function, and the call convention around it.

Mirrors the ``perspective_*`` methods of Ganeti's ``server/noded.py``: each
procedure of :data:`corral.rpc.defs.CALLS` maps to the function of the same
name in one ``corral.backend`` module, called as ``fn(paths, *args)``.
Modules are imported at call time, so a backend module that is missing or
broken only fails its own procedures, with a clear message.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Callable

from corral import errors
from corral.paths import Paths
from corral.rpc.client import decompress_content
from corral.rpc.defs import CALLS

log = logging.getLogger(__name__)

_BACKEND_MODULES: dict[str, tuple[str, ...]] = {
    "corral.backend.node": (
        "version", "node_info", "node_verify", "node_has_ip_address", "node_leave_cluster",
        "test_delay", "bridges_exist", "hypervisor_validate_params"),
    "corral.backend.oob": ("run_oob",),
    "corral.backend.files": ("upload_file_single", "write_ssconf_files"),
    "corral.backend.hooks": ("hooks_runner",),
    "corral.backend.config_replica": ("config_update",),
    "corral.backend.instance": (
        "instance_info", "all_instances_info", "instance_list", "instance_start",
        "instance_shutdown", "instance_reboot", "instance_balloon_memory", "instance_os_add",
        "instance_run_rename", "instance_console_info",
        "migration_info", "accept_instance", "instance_migrate",
        "instance_get_migration_status", "instance_finalize_migration_dst",
        "instance_finalize_migration_src"),
    "corral.backend.blockdev": (
        "blockdev_create", "blockdev_remove", "blockdev_assemble", "blockdev_shutdown",
        "blockdev_find", "blockdev_getdimensions", "blockdev_grow", "blockdev_rename",
        "file_storage_dir_create", "file_storage_dir_remove", "file_storage_dir_rename"),
    "corral.backend.storage_verify": ("file_storage_verify",),
    "corral.backend.storage_units": ("storage_list",),
    "corral.backend.os": ("os_diagnose", "os_validate"),
    "corral.backend.disk_mirror": (
        "instance_mirror_export", "instance_mirror_unexport", "instance_mirror_start",
        "instance_mirror_status", "instance_mirror_finish"),
    "corral.backend.impexp": (
        "import_start", "export_start", "impexp_status", "impexp_abort", "impexp_cleanup"),
    "corral.backend.export": (
        "export_info", "finalize_export", "export_list", "export_remove",
        "x509_cert_create", "x509_cert_remove"),
}

# procedure -> backend module name
PROCEDURES: dict[str, str] = {proc: mod for mod, procs in _BACKEND_MODULES.items()
                              for proc in procs}

# Argument names whose values travel as [encoding, data] (Ganeti's ED_COMPRESS).
_COMPRESSED_ARGS = frozenset({"content"})


class UnknownProcedure(LookupError):
    """The procedure is not served by this daemon (HTTP 404)."""


@dataclass
class DispatchResult:
    """``ok``/``payload`` form the ``[ok, payload]`` reply; ``leave`` asks
    noded to go back to unjoined mode after replying."""

    ok: bool
    payload: Any
    leave: bool = False


def resolve(procedure: str) -> Callable[..., Any]:
    """The backend function of ``procedure``.

    Raises :class:`UnknownProcedure`, or :class:`errors.RPCFail` when its
    module cannot be imported or lacks the function.
    """
    module_name = PROCEDURES.get(procedure)
    if module_name is None:
        raise UnknownProcedure(procedure)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise errors.RPCFail(f"Procedure {procedure} is not available on this node: "
                             f"cannot load {module_name} ({err})") from None
    fn = getattr(module, procedure, None)
    if not callable(fn):
        raise errors.RPCFail(f"Procedure {procedure} is not implemented by {module_name}")
    return fn


def _decode_args(procedure: str, args: list[Any]) -> list[Any]:
    rdef = CALLS.get(procedure)
    if rdef is None:
        return args
    if len(args) != len(rdef.args):
        raise errors.RPCFail(f"Procedure {procedure} takes {len(rdef.args)} arguments "
                             f"({', '.join(rdef.args)}), got {len(args)}")
    return [decompress_content(a) if name in _COMPRESSED_ARGS else a
            for name, a in zip(rdef.args, args)]


def call(paths: Paths, procedure: str, args: list[Any]) -> DispatchResult:
    """Run one procedure; every failure becomes ``DispatchResult(False, message)``.

    Raises only :class:`UnknownProcedure`. Blocking: run it in a thread pool.
    """
    if procedure not in PROCEDURES:
        raise UnknownProcedure(procedure)
    try:
        fn = resolve(procedure)
        payload = fn(paths, *_decode_args(procedure, args))
    except errors.QuitCorralException as err:
        return DispatchResult(True, err.message or "Node left the cluster", leave=True)
    except errors.CorralError as err:
        log.warning("%s failed: %s", procedure, err)
        return DispatchResult(False, str(err) or type(err).__name__)
    except Exception as err:  # noqa: BLE001 - the node must answer whatever happened
        log.exception("%s: unexpected error in backend function", procedure)
        return DispatchResult(False, f"Error while executing backend function: {err}")
    return DispatchResult(True, payload)
