"""Node side of live migration with local disks (disk mirroring over NBD).

The master's ``TLMigrateInstance`` drives these procedures around the usual
migration calls for instances whose disks are local to the primary node
(``file``): the target exports the empty disks of its incoming instance,
the source mirrors its disks there, the memory migrates, then both ends
drop the mirror. Only the KVM hypervisor implements it
(:mod:`corral.hypervisor.kvm.mirror`). Every function is the procedure of
the same name in :mod:`corral.rpc.defs`, called as ``fn(paths, *args)``;
failures raise :class:`errors.RPCFail`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from corral import constants as C
from corral import errors
from corral.backend.instance import decode_instance
from corral.paths import Paths


def _name(instance: dict[str, Any]) -> str:
    inst = decode_instance(instance)
    if inst.hypervisor != C.HT_KVM:
        raise errors.RPCFail(f"Hypervisor {inst.hypervisor} cannot mirror the disks of "
                             f"instance {inst.name}", errors.ECODE_INVAL)
    return inst.name


def _address(host: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(host)))
    except ValueError:
        raise errors.RPCFail(f"Invalid disk mirror address {host!r}: an IP address of a "
                             "node is required", errors.ECODE_INVAL) from None


def _mirror_call(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except errors.HypervisorError as err:
        raise errors.RPCFail(f"{what}: {err}", err.ecode) from None


def instance_mirror_export(paths: Paths, instance: dict[str, Any],
                           host: str) -> dict[str, Any]:
    """Target: export the incoming instance's disks over NBD on ``host``
    (this node's IP) -> ``{host, port, exports}``."""
    from corral.hypervisor.kvm import mirror
    return _mirror_call("Cannot export the disks for mirroring", mirror.start_export, paths,
                        _name(instance), _address(host))


def instance_mirror_unexport(paths: Paths, instance: dict[str, Any]) -> None:
    """Target: remove the NBD exports (idempotent)."""
    from corral.hypervisor.kvm import mirror
    _mirror_call("Cannot remove the disk exports", mirror.stop_export, paths,
                 _name(instance))


def instance_mirror_start(paths: Paths, instance: dict[str, Any], host: str, port: int,
                          exports: list[str]) -> None:
    """Source: mirror every disk to the target's exports at ``host``:``port``."""
    from corral.hypervisor.kvm import mirror
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise errors.RPCFail(f"Invalid disk mirror port {port!r}", errors.ECODE_INVAL)
    if not isinstance(exports, list) or not all(isinstance(e, str) for e in exports):
        raise errors.RPCFail(f"Invalid export names {exports!r}", errors.ECODE_INVAL)
    _mirror_call("Cannot start mirroring the disks", mirror.start_mirror, paths,
                 _name(instance), _address(host), port, exports)


def instance_mirror_status(paths: Paths, instance: dict[str, Any]) -> list[dict[str, Any]]:
    """Source: ``[{drive, offset, len (bytes), ready, status, error}]``."""
    from corral.hypervisor.kvm import mirror
    return _mirror_call("Cannot get the disk mirror status", mirror.mirror_status, paths,
                        _name(instance))


def instance_mirror_finish(paths: Paths, instance: dict[str, Any], success: bool) -> None:
    """Source: end the mirror jobs (gracefully after a completed migration,
    forcibly otherwise) and drop the NBD client nodes."""
    from corral.hypervisor.kvm import mirror
    _mirror_call("Cannot end the disk mirror", mirror.finish_mirror, paths,
                 _name(instance), bool(success))
