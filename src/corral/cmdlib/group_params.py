"""A node group's own parameters: checks and updates shared by group add/modify.

Mirrors the parameter parts of Ganeti's ``LUGroupAdd``/``LUGroupSetParams``:
``ndparams`` are typed like the cluster's (``NDS_PARAMETER_TYPES``), each
``diskparams`` sub-dict belongs to a known disk template, and a ``None``
value in an update removes the key (back to the cluster's value, Ganeti's
``-key`` / ``default`` syntax). The group keeps only its own values; the
cluster fills the rest (``Cluster.fill_nd``, ``Cluster.fill_diskparams``).

The group's instance policy is checked and updated by
:func:`corral.cmdlib.instance_policy.group_ipolicy_change` (``corral.ipolicy``
owns the policy's validation and the cluster->group fill).
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.common import validate_params
from corral.cmdlib.instance_utils import get_updated_params


def check_ndparams(ndparams: dict[str, Any] | None) -> dict[str, Any] | None:
    """Typed copy of ``ndparams`` (``None`` values kept: they reset a key).

    Raises OpPrereqError ECODE_INVAL for unknown keys or wrong types.
    """
    if ndparams is None:
        return None
    return validate_params(ndparams, C.NDS_PARAMETER_TYPES, "node")


def check_diskparams(diskparams: dict[str, dict[str, Any]] | None
                     ) -> dict[str, dict[str, Any]] | None:
    """``diskparams`` keyed by known disk templates (the opcode checks the
    template names; each sub-dict must be a dict). ECODE_INVAL otherwise."""
    if diskparams is None:
        return None
    for template, params in diskparams.items():
        if template not in C.DISK_TEMPLATES:
            raise errors.OpPrereqError(f"Unknown disk template '{template}'",
                                       errors.ECODE_INVAL)
        if not isinstance(params, dict):
            raise errors.OpPrereqError(f"Disk parameters of '{template}' must be a dict",
                                       errors.ECODE_INVAL)
    return diskparams


def check_state_dict(value: dict[str, Any] | None, what: str) -> dict[str, Any] | None:
    """``hv_state``/``disk_state``: a dict of dicts (stored as given, as
    Ganeti's static states are only read by the allocator)."""
    if value is None:
        return None
    for key, sub in value.items():
        if not isinstance(sub, dict):
            raise errors.OpPrereqError(f"Invalid {what} for '{key}': must be a dict",
                                       errors.ECODE_INVAL)
    return value


def update_diskparams(current: dict[str, dict[str, Any]],
                      updates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per template ``get_updated_params``; templates left empty are dropped."""
    out = {dt: dict(params) for dt, params in current.items()}
    for dt, params in updates.items():
        merged = get_updated_params(out.get(dt, {}), params)
        if merged:
            out[dt] = merged
        else:
            out.pop(dt, None)
    return out
