"""The hypervisor interface every hypervisor implements.

Mirrors ``ganeti.hypervisor.hv_base.BaseHypervisor`` (names in PEP 8 form:
``StartInstance`` -> :meth:`BaseHypervisor.start_instance`). Hypervisor
objects live on nodes (called by ``backend/``); the master only uses the
classes for parameter syntax checks and console information. Nothing here
knows about jobs, locks or the cluster configuration.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

from corral import constants as C
from corral import errors
from corral.objects import Disk, Instance, InstanceConsole, MigrationStatus, Node, NodeGroup
from corral.paths import Paths


class BlockDevice(NamedTuple):
    """A disk ready for an instance: the Disk, its link path on the node, and
    an optional userspace URI (``None`` for kernel block devices/files)."""

    disk: Disk
    link_path: str
    uri: str | None = None


class InstanceInfo(NamedTuple):
    """What :meth:`BaseHypervisor.get_instance_info` returns: ``memory`` in
    MiB, ``state`` one of ``C.HV_STATE_*``, ``cpu_time`` in seconds."""

    name: str
    id: int
    memory: int
    vcpus: int
    state: int
    cpu_time: float


@dataclass(frozen=True)
class ParamCheck:
    """Check of one hvparam: ``syntax_fn`` runs on the master (value only),
    ``node_fn`` on the node (e.g. a file exists). Each returns True if valid."""

    required: bool
    syntax_fn: Callable[[Any], bool] | None = None
    syntax_msg: str | None = None
    node_fn: Callable[[Any], bool] | None = None
    node_msg: str | None = None


def _is_abs_path(v: Any) -> bool:
    return isinstance(v, str) and os.path.isabs(v) and os.path.normpath(v) == v


def _is_net_port(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65535


def _is_nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_CPU_MASK_RE = re.compile(r"^(all|\d+(-\d+)?(,\d+(-\d+)?)*)$")


def _is_cpu_mask(v: Any) -> bool:
    return isinstance(v, str) and bool(_CPU_MASK_RE.match(v))


def _is_multi_cpu_mask(v: Any) -> bool:
    return isinstance(v, str) and all(_is_cpu_mask(p) for p in v.split(":"))


REQ_FILE_CHECK = ParamCheck(True, _is_abs_path, "must be an absolute normalized path",
                            os.path.isfile, "not found or not a file")
OPT_FILE_CHECK = ParamCheck(False, lambda v: v == "" or _is_abs_path(v),
                            "must be an absolute normalized path",
                            lambda v: v == "" or os.path.isfile(v), "not found or not a file")
REQ_DIR_CHECK = ParamCheck(True, _is_abs_path, "must be an absolute normalized path",
                           os.path.isdir, "not found or not a directory")
OPT_DIR_CHECK = ParamCheck(False, lambda v: v == "" or _is_abs_path(v),
                           "must be an absolute normalized path",
                           lambda v: v == "" or os.path.isdir(v), "not found or not a directory")
NET_PORT_CHECK = ParamCheck(True, _is_net_port, "must be a network port (0 < p < 65535)")
OPT_NET_PORT_CHECK = ParamCheck(False, lambda v: v in (None, 0) or _is_net_port(v),
                                "must be a network port (0 < p < 65535)")
CPU_MASK_CHECK = ParamCheck(False, _is_cpu_mask, "must be a CPU mask like 0-2,5 or all")
MULTI_CPU_MASK_CHECK = ParamCheck(False, _is_multi_cpu_mask,
                                  "must be a per-vCPU list of CPU masks like 0:1-2:all")
NONNEGATIVE_INT_CHECK = ParamCheck(True, _is_nonneg_int, "must be a non-negative integer")
OPT_NONNEGATIVE_INT_CHECK = ParamCheck(False, _is_nonneg_int, "must be a non-negative integer")
NO_CHECK = ParamCheck(False)
REQUIRED_CHECK = ParamCheck(True)
MIGRATION_MODE_CHECK = ParamCheck(True, lambda v: v in C.HT_MIGRATION_MODES,
                                  f"must be one of {', '.join(C.HT_MIGRATION_MODES)}")
BOOL_CHECK = ParamCheck(False, lambda v: isinstance(v, bool), "must be a boolean")


def param_in_set(required: bool, values: tuple[Any, ...] | set[Any] | frozenset[Any]) -> ParamCheck:
    vals = tuple(values)
    return ParamCheck(required, lambda v: v in vals,
                      f"must be one of {', '.join(repr(x) for x in vals)}")


class BaseHypervisor:
    """Abstract hypervisor. Implementations override every method documented
    as "must"; the others have Ganeti's default behaviour.

    Raise :class:`errors.HypervisorError` for failures; the backend turns it
    into an RPC failure with the message.
    """

    NAME: ClassVar[str] = ""
    PARAMETERS: ClassVar[dict[str, ParamCheck]] = {}
    CAN_MIGRATE: ClassVar[bool] = False
    ANCILLARY_FILES: ClassVar[list[str]] = []
    ANCILLARY_FILES_OPT: ClassVar[list[str]] = []

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    # -- lifecycle (must) ---------------------------------------------------------
    def start_instance(self, instance: Instance, block_devices: list[BlockDevice],
                       startup_paused: bool) -> None:
        """Start ``instance`` (its hvparams/beparams are already filled)."""
        raise NotImplementedError

    def stop_instance(self, instance: Instance | None, force: bool = False,
                      retry: bool = False, name: str | None = None,
                      timeout: int | None = None) -> None:
        """Stop an instance: gracefully, or at once when ``force``.

        ``name`` allows stopping by name only (with ``force``). ``timeout``
        is the graceful shutdown time in seconds.
        """
        raise NotImplementedError

    def cleanup_instance(self, instance_name: str) -> None:
        """Remove runtime leftovers after the instance stopped."""

    def reboot_instance(self, instance: Instance) -> None:
        """Soft-reboot the instance (the guest sees a reboot request)."""
        raise NotImplementedError

    def list_instances(self, hvparams: dict[str, Any] | None = None) -> list[str]:
        """Names of the instances running on this node."""
        raise NotImplementedError

    def get_instance_info(self, instance_name: str,
                          hvparams: dict[str, Any] | None = None) -> InstanceInfo | None:
        """Live data of one instance, or None if it is not running here."""
        raise NotImplementedError

    def get_all_instances_info(self, hvparams: dict[str, Any] | None = None) -> list[InstanceInfo]:
        raise NotImplementedError

    def get_node_info(self, hvparams: dict[str, Any] | None = None) -> dict[str, Any]:
        """Node resources: ``memory_total``, ``memory_free``, ``memory_dom0``
        (MiB), ``cpu_total``, ``cpu_dom0``, ``cpu_nodes``, ``cpu_sockets``,
        optionally ``hv_version`` (list of ints)."""
        raise NotImplementedError

    @classmethod
    def get_instance_console(cls, instance: Instance, primary_node: Node,
                             node_group: NodeGroup | None, hvparams: dict[str, Any],
                             beparams: dict[str, Any]) -> InstanceConsole:
        raise NotImplementedError

    def verify(self, hvparams: dict[str, Any] | None = None) -> str | None:
        """Node-side health check: None when fine, else an error message."""
        raise NotImplementedError

    def verify_instance(self, instance: Instance) -> bool:
        return True

    def restore_instance(self, instance: Instance, block_devices: list[BlockDevice]) -> None:
        """Fix a running instance whose state :meth:`verify_instance` found wrong."""

    # -- migration ----------------------------------------------------------------
    def migration_info(self, instance: Instance) -> str:
        """Source side: opaque data handed to the target's accept_instance."""
        return ""

    def accept_instance(self, instance: Instance, info: str, target: str) -> None:
        """Target side: prepare to receive ``instance`` (target = its IP)."""
        raise errors.HypervisorError(f"{self.NAME} does not support migration")

    def migrate_instance(self, cluster_name: str, instance: Instance, target: str,
                         live: bool) -> None:
        """Source side: start migrating to ``target`` (an IP address)."""
        raise errors.HypervisorError(f"{self.NAME} does not support migration")

    def get_migration_status(self, instance: Instance) -> MigrationStatus:
        raise errors.HypervisorError(f"{self.NAME} does not support migration")

    def finalize_migration_source(self, instance: Instance, success: bool, live: bool) -> None:
        pass

    def finalize_migration_dst(self, instance: Instance, info: str, success: bool) -> None:
        pass

    @staticmethod
    def versions_safe_for_migration(src: list[int] | None, target: list[int] | None) -> bool:
        return src == target

    def balloon_instance_memory(self, instance: Instance, mem: int) -> None:
        """Set the runtime memory of a running instance (MiB)."""
        raise errors.HypervisorError(f"{self.NAME} does not support ballooning")

    # -- hotplug (not supported unless overridden) -------------------------------
    def hotplug_supported(self, instance: Instance) -> None:
        raise errors.HypervisorError(f"Hotplug is not supported by {self.NAME}")

    # -- parameters ---------------------------------------------------------------
    @classmethod
    def check_parameter_syntax(cls, hvparams: dict[str, Any]) -> None:
        """Master side: refuse unknown keys, missing required keys, bad syntax.

        Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``).
        """
        unknown = set(hvparams) - set(cls.PARAMETERS)
        if unknown:
            raise errors.OpPrereqError(
                f"Unknown hypervisor parameters for {cls.NAME}: {', '.join(sorted(unknown))}",
                errors.ECODE_INVAL)
        for key, check in cls.PARAMETERS.items():
            if key not in hvparams:
                if check.required:
                    raise errors.OpPrereqError(
                        f"Hypervisor parameter '{key}' is required for {cls.NAME}",
                        errors.ECODE_INVAL)
                continue
            value = hvparams[key]
            if check.required and value in (None, ""):
                raise errors.OpPrereqError(
                    f"Hypervisor parameter '{key}' must not be empty", errors.ECODE_INVAL)
            if check.syntax_fn is not None and value not in (None, "") \
                    and not check.syntax_fn(value):
                raise errors.OpPrereqError(
                    f"Hypervisor parameter '{key}' {check.syntax_msg} (got {value!r})",
                    errors.ECODE_INVAL)

    @classmethod
    def validate_parameters(cls, hvparams: dict[str, Any]) -> None:
        """Node side: run the node checks. Raises :class:`errors.HypervisorError`."""
        for key, check in cls.PARAMETERS.items():
            if key in hvparams and check.node_fn is not None and hvparams[key] not in (None, ""):
                if not check.node_fn(hvparams[key]):
                    raise errors.HypervisorError(
                        f"Parameter '{key}' fails validation on this node: "
                        f"{check.node_msg} ({hvparams[key]!r})")

    def powercycle_node(self, hvparams: dict[str, Any] | None = None) -> None:
        raise errors.HypervisorError("Power-cycling nodes is disabled in Corral")

    @classmethod
    def get_ancillary_files(cls) -> tuple[list[str], list[str]]:
        return list(cls.ANCILLARY_FILES), list(cls.ANCILLARY_FILES_OPT)


def get_linux_node_info(meminfo_path: str = "/proc/meminfo",
                        cpuinfo_path: str = "/proc/cpuinfo") -> dict[str, Any]:
    """Memory (MiB) and CPU counts of this machine, as Ganeti's GetLinuxNodeInfo."""
    mem: dict[str, int] = {}
    with open(meminfo_path, encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                mem[key] = int(parts[0])  # kB
    total = mem.get("MemTotal", 0) // 1024
    free = (mem.get("MemFree", 0) + mem.get("Buffers", 0) + mem.get("Cached", 0)) // 1024
    cpus = 0
    sockets: set[str] = set()
    with open(cpuinfo_path, encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith("processor"):
                cpus += 1
            elif line.startswith("physical id"):
                sockets.add(line.split(":", 1)[1].strip())
    return {
        "memory_total": total,
        "memory_free": free,
        "memory_dom0": max(total - free, 0),
        "cpu_total": cpus,
        "cpu_dom0": cpus,
        "cpu_nodes": 1,
        "cpu_sockets": max(len(sockets), 1),
    }
