"""Node side of OS definitions: diagnose and validate.

Mirrors ``ganeti.backend.DiagnoseOS`` and ``ValidateOS``; the procedures of
the same name in :mod:`corral.rpc.defs`, called as ``fn(paths, *args)``.
(Running OS scripts for an instance is in :mod:`corral.backend.instance`.)
"""

from __future__ import annotations

from typing import Any

from corral import errors, osdef
from corral.paths import Paths


def os_diagnose(paths: Paths) -> list[list[Any]]:
    """Every OS directory in the search path:
    ``[[name, path, status, diagnose, variants, parameters, api_versions, trusted]]``."""
    return osdef.diagnose_all(paths)


def os_validate(paths: Paths, required: bool, name: str, checks: list[str],
                params: dict[str, Any], force_variant: bool = False) -> bool:
    """Check that OS ``name`` (``os+variant``) exists here and accepts ``params``.

    Returns False when the OS is missing or invalid and not ``required``;
    True when valid. The variant must be one the OS lists (none given = the
    first) unless ``force_variant``. For API 20 OSes ``checks``
    (``["parameters"]``) are run by the OS's ``verify`` script with the
    ``OSP_*`` variables. Raises :class:`errors.RPCFail` otherwise.
    """
    try:
        os_def = osdef.find_os(paths, name)
    except errors.OSError_ as err:
        if required:
            raise errors.RPCFail(str(err), err.ecode) from None
        return False
    try:
        osdef.select_variant(os_def, name, force_variant)
        osdef.verify_parameters(os_def, name, dict(params or {}), list(checks or []))
    except errors.OSError_ as err:
        raise errors.RPCFail(str(err), err.ecode) from None
    return True
