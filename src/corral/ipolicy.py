"""Instance policies (ipolicy): defaults, validation, inheritance and checks.

Mirrors Ganeti 3.0's ``constants.IPOLICY_DEFAULTS``/``ISPECS_*``,
``objects.FillIPolicy``, ``objects.InstancePolicy.CheckParameterSyntax``,
``cmdlib.common.GetUpdatedIPolicy``/``CheckIpolicyVsDiskTemplates``/
``ComputeIPolicySpecViolation`` and ``cli.PrintIPolicyCommand``.

A policy is a plain dict with Ganeti's JSON keys (htools and RAPI clients
read it from ``/2/info`` and ``/2/groups``)::

    {"minmax": [{"min": SPEC, "max": SPEC}, ...],  # one or more bounds pairs
     "std": SPEC,                  # the standard instance (capacity planning)
     "disk-templates": [str, ...], # templates instances may use
     "vcpu-ratio": 4.0,            # virtual CPUs per physical CPU of a node
     "spindle-ratio": 32.0,        # instance spindles per node spindle
     "memory-ratio": 1.0}          # instance memory per node memory

    SPEC = {"memory-size": MiB, "cpu-count": int, "disk-count": int,
            "disk-size": MiB (of each disk), "nic-count": int, "spindle-use": int}

The cluster's policy is complete; a node group stores only what it overrides
and inherits the rest (:func:`filled_ipolicy`). ``memory-ratio`` comes from
Ganeti's memory over-commitment design (2.17); Ganeti 3.0 does not have it,
and htools ignores it.

Only the standard library and :mod:`corral.errors` are used: the CLI imports
this module.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from typing import Any

from corral import errors

# Spec parameters (Ganeti's ISPEC_*).
ISPEC_MEM_SIZE = "memory-size"
ISPEC_CPU_COUNT = "cpu-count"
ISPEC_DISK_COUNT = "disk-count"
ISPEC_DISK_SIZE = "disk-size"
ISPEC_NIC_COUNT = "nic-count"
ISPEC_SPINDLE_USE = "spindle-use"
ISPECS_PARAMETERS = (ISPEC_MEM_SIZE, ISPEC_CPU_COUNT, ISPEC_DISK_COUNT, ISPEC_DISK_SIZE,
                     ISPEC_NIC_COUNT, ISPEC_SPINDLE_USE)
# Parameters given in MiB, which the command line accepts with units.
ISPECS_SIZE_PARAMETERS = (ISPEC_MEM_SIZE, ISPEC_DISK_SIZE)

# Policy keys (Ganeti's ISPECS_*, IPOLICY_*).
ISPECS_MINMAX = "minmax"
ISPECS_MIN = "min"
ISPECS_MAX = "max"
ISPECS_STD = "std"
ISPECS_MINMAX_KEYS = (ISPECS_MIN, ISPECS_MAX)
IPOLICY_DTS = "disk-templates"
IPOLICY_VCPU_RATIO = "vcpu-ratio"
IPOLICY_SPINDLE_RATIO = "spindle-ratio"
IPOLICY_MEMORY_RATIO = "memory-ratio"
IPOLICY_PARAMETERS = (IPOLICY_VCPU_RATIO, IPOLICY_SPINDLE_RATIO, IPOLICY_MEMORY_RATIO)
IPOLICY_ALL_KEYS = frozenset({ISPECS_MINMAX, ISPECS_STD, IPOLICY_DTS, *IPOLICY_PARAMETERS})

VALUE_DEFAULT = "default"

# Ganeti's disk templates, sorted as Ganeti's IPOLICY_DEFAULTS lists them.
# (Kept here rather than imported from constants to keep this module light.)
_ALL_DISK_TEMPLATES = ("blockdev", "diskless", "drbd", "ext", "file", "gluster", "plain",
                       "rbd", "sharedfile")
DT_DISKLESS = "diskless"

# Ganeti 3.0's defaults ("quite arbitrary - there are no good defaults, these
# must be customised per-site").
ISPECS_MINMAX_DEFAULTS: dict[str, dict[str, int]] = {
    ISPECS_MIN: {ISPEC_MEM_SIZE: 128, ISPEC_CPU_COUNT: 1, ISPEC_DISK_COUNT: 1,
                 ISPEC_DISK_SIZE: 1024, ISPEC_NIC_COUNT: 1, ISPEC_SPINDLE_USE: 1},
    ISPECS_MAX: {ISPEC_MEM_SIZE: 32768, ISPEC_CPU_COUNT: 8, ISPEC_DISK_COUNT: 16,
                 ISPEC_DISK_SIZE: 1024 * 1024, ISPEC_NIC_COUNT: 8, ISPEC_SPINDLE_USE: 12},
}
IPOLICY_DEFAULTS: dict[str, Any] = {
    ISPECS_MINMAX: [ISPECS_MINMAX_DEFAULTS],
    ISPECS_STD: {ISPEC_MEM_SIZE: 128, ISPEC_CPU_COUNT: 1, ISPEC_DISK_COUNT: 1,
                 ISPEC_DISK_SIZE: 1024, ISPEC_NIC_COUNT: 1, ISPEC_SPINDLE_USE: 1},
    IPOLICY_DTS: list(_ALL_DISK_TEMPLATES),
    IPOLICY_VCPU_RATIO: 4.0,
    IPOLICY_SPINDLE_RATIO: 32.0,
    IPOLICY_MEMORY_RATIO: 1.0,
}


def _fail(message: str) -> errors.OpPrereqError:
    return errors.OpPrereqError(f"Invalid instance policy: {message}", errors.ECODE_INVAL)


# -- inheritance ------------------------------------------------------------------------

def default_ipolicy(enabled_disk_templates: Iterable[str] | None = None) -> dict[str, Any]:
    """A copy of Ganeti's default policy.

    With ``enabled_disk_templates``, ``disk-templates`` keeps only those
    (in the defaults' order), as ``gnt-cluster init`` stores it.
    """
    policy = copy.deepcopy(IPOLICY_DEFAULTS)
    if enabled_disk_templates is not None:
        enabled = set(enabled_disk_templates)
        policy[IPOLICY_DTS] = [dt for dt in policy[IPOLICY_DTS] if dt in enabled]
    return policy


def fill_ipolicy(defaults: Mapping[str, Any], custom: Mapping[str, Any] | None
                 ) -> dict[str, Any]:
    """``objects.FillIPolicy``: ``custom`` over ``defaults`` (both unchanged).

    A key of ``custom`` replaces the whole default value (``minmax``,
    ``disk-templates``, ratios), except ``std``, filled value by value.
    """
    out = copy.deepcopy(dict(custom or {}))
    for key, value in defaults.items():
        if key not in out:
            out[key] = copy.deepcopy(value)
        elif key == ISPECS_STD:
            out[key] = {**value, **out[key]}
    return out


def cluster_ipolicy(stored: Mapping[str, Any] | None,
                    enabled_disk_templates: Iterable[str]) -> dict[str, Any]:
    """The cluster's complete policy from its stored one.

    ``gnt-cluster init`` stores a complete policy; a configuration written
    before policies existed has an empty one, which gets Ganeti's defaults
    with the disk templates restricted to the enabled ones (as Ganeti's
    configuration upgrade does).
    """
    return fill_ipolicy(default_ipolicy(enabled_disk_templates), stored)


def filled_ipolicy(cluster_policy: Mapping[str, Any],
                   group_policy: Mapping[str, Any] | None) -> dict[str, Any]:
    """A node group's effective policy: its own keys over the cluster's.

    ``cluster_policy`` is the cluster's complete policy (see
    :func:`cluster_ipolicy`); ``group_policy`` the group's custom keys.
    Ganeti: ``Cluster.SimpleFillIPolicy`` / ``CalculateGroupIPolicy``.
    """
    return fill_ipolicy(cluster_policy, group_policy)


def group_ipolicy(cluster: Any, group: Any | None) -> dict[str, Any]:
    """The effective policy of ``group`` (a ``NodeGroup``, or None for the
    cluster's own) in ``cluster`` (a ``Cluster``): the value of the group
    query field ``ipolicy`` and of ``/2/groups?bulk=1``."""
    policy = cluster_ipolicy(cluster.ipolicy, cluster.enabled_disk_templates)
    return filled_ipolicy(policy, group.ipolicy if group is not None else None)


# -- validation -------------------------------------------------------------------------

def _spec_int(value: Any, where: str) -> int:
    """A spec value as an int >= 0 (strings of digits accepted, as Ganeti's
    ``ForceDictType``)."""
    if isinstance(value, bool):
        raise _fail(f"{where} must be an integer, not {value!r}")
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            raise _fail(f"{where} must be an integer, not {value!r}")
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise _fail(f"{where} must be an integer, not {value!r}")
    if value < 0:
        raise _fail(f"{where} must not be negative ({value})")
    return value


def normalize_spec(spec: Any, where: str, complete: bool) -> dict[str, int]:
    """Check one spec dict and convert its values to ints.

    ``complete``: every parameter of :data:`ISPECS_PARAMETERS` is required.
    Raises ``OpPrereqError`` (ECODE_INVAL) for unknown or missing
    parameters and values that are not integers >= 0.
    """
    if not isinstance(spec, Mapping):
        raise _fail(f"{where} specs must be a dict, not {type(spec).__name__}")
    unknown = sorted(set(spec) - set(ISPECS_PARAMETERS))
    if unknown:
        raise _fail(f"unknown parameter(s) in {where} specs: {', '.join(map(str, unknown))}"
                    f" (known: {', '.join(ISPECS_PARAMETERS)})")
    missing = [p for p in ISPECS_PARAMETERS if p not in spec]
    if complete and missing:
        raise _fail(f"missing parameter(s) in {where} specs: {', '.join(missing)}")
    return {k: _spec_int(v, f"{where}/{k}") for k, v in spec.items()}


def normalize_minmax(value: Any) -> list[dict[str, dict[str, int]]]:
    """Check a ``minmax`` list (complete ``min`` and ``max`` specs in each
    pair, ``min <= max``); returns it with int values.

    Raises ``OpPrereqError`` (ECODE_INVAL).
    """
    if not isinstance(value, list):
        raise _fail(f"{ISPECS_MINMAX} must be a list of {{min, max}} pairs")
    if not value:
        raise _fail("empty minmax specifications")
    out = []
    for idx, pair in enumerate(value):
        if not isinstance(pair, Mapping):
            raise _fail(f"minmax/{idx} must be a dict with keys min and max")
        keys = set(pair)
        if keys != set(ISPECS_MINMAX_KEYS):
            bad = sorted(map(str, keys - set(ISPECS_MINMAX_KEYS)))
            missing = sorted(set(ISPECS_MINMAX_KEYS) - keys)
            raise _fail(f"minmax/{idx} needs exactly the keys min and max" +
                        (f"; unknown: {', '.join(bad)}" if bad else "") +
                        (f"; missing: {', '.join(missing)}" if missing else ""))
        norm = {k: normalize_spec(pair[k], f"{k}/{idx}", True) for k in ISPECS_MINMAX_KEYS}
        for param in ISPECS_PARAMETERS:
            low, high = norm[ISPECS_MIN][param], norm[ISPECS_MAX][param]
            if low > high:
                raise _fail(f"min/max values of {param} in minmax/{idx} are inverted: "
                            f"min {low} > max {high}")
        out.append(norm)
    return out


def _ratio(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _fail(f"{key} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(f"{key} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise _fail(f"{key} must be a positive number, not {value!r}")
    return number


def normalize_disk_templates(value: Any) -> list[str]:
    """Check a ``disk-templates`` list: not empty, only Ganeti's templates."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _fail(f"{IPOLICY_DTS} must be a list of disk templates")
    templates = list(value)
    if not templates:
        raise _fail("the policy must allow at least one disk template")
    unknown = sorted(str(t) for t in templates if t not in _ALL_DISK_TEMPLATES)
    if unknown:
        raise _fail(f"unknown disk template(s) {', '.join(unknown)} (known: "
                    f"{', '.join(_ALL_DISK_TEMPLATES)})")
    return list(dict.fromkeys(templates))


def check_ipolicy(policy: Mapping[str, Any], check_std: bool) -> dict[str, Any]:
    """Validate a policy (complete or a group's partial one) and return it
    with normalised values (ints in specs, floats for ratios).

    ``InstancePolicy.CheckParameterSyntax``: only known keys; each minmax
    pair complete with ``min <= max``; known, non-empty disk templates;
    positive ratios; with ``check_std``, ``std`` is complete and within
    one of the bounds pairs. Raises ``OpPrereqError`` (ECODE_INVAL).
    """
    if not isinstance(policy, Mapping):
        raise _fail("the policy must be a dict")
    unknown = sorted(map(str, set(policy) - IPOLICY_ALL_KEYS))
    if unknown:
        raise _fail(f"unknown key(s) {', '.join(unknown)} (known: "
                    f"{', '.join(sorted(IPOLICY_ALL_KEYS))})")
    out: dict[str, Any] = dict(policy)
    if ISPECS_MINMAX in policy:
        out[ISPECS_MINMAX] = normalize_minmax(policy[ISPECS_MINMAX])
    if ISPECS_STD in policy:
        out[ISPECS_STD] = normalize_spec(policy[ISPECS_STD], ISPECS_STD, check_std)
    elif check_std:
        raise _fail("missing key std")
    if IPOLICY_DTS in policy:
        out[IPOLICY_DTS] = normalize_disk_templates(policy[IPOLICY_DTS])
    for key in IPOLICY_PARAMETERS:
        if key in policy:
            out[key] = _ratio(key, policy[key])
    if check_std and ISPECS_MINMAX in out:
        _check_std_within_bounds(out[ISPECS_STD], out[ISPECS_MINMAX])
    return out


def _check_std_within_bounds(std: dict[str, int], minmax: list[dict[str, dict[str, int]]]
                             ) -> None:
    outside: list[str] = []
    for idx, pair in enumerate(minmax):
        bad = [f"{p}={std[p]} not in [{pair[ISPECS_MIN][p]}, {pair[ISPECS_MAX][p]}]"
               for p in ISPECS_PARAMETERS
               if not pair[ISPECS_MIN][p] <= std[p] <= pair[ISPECS_MAX][p]]
        if not bad:
            return
        outside.append(f"minmax/{idx}: {', '.join(bad)}")
    raise _fail("the std specs are not within the bounds of any minmax pair ("
                + "; ".join(outside) + ")")


def check_ipolicy_vs_disk_templates(policy: Mapping[str, Any],
                                    enabled_disk_templates: Iterable[str]) -> None:
    """Refuse a policy allowing templates the cluster has not enabled
    (``CheckIpolicyVsDiskTemplates``); OpPrereqError ECODE_INVAL."""
    enabled = set(enabled_disk_templates)
    not_enabled = [dt for dt in policy.get(IPOLICY_DTS, []) if dt not in enabled]
    if not_enabled:
        raise errors.OpPrereqError("The following disk templates are allowed by the ipolicy, but "
                                   "not enabled on the cluster: "
                                   f"{', '.join(sorted(not_enabled))}", errors.ECODE_INVAL)


def _is_reset(value: Any) -> bool:
    # Ganeti: a false value, "default" or ["default"] removes a group's key.
    return (value in (None, VALUE_DEFAULT, [VALUE_DEFAULT], "", [], {})
            or (isinstance(value, (int, float)) and not isinstance(value, bool)
                and value == 0))


def check_ipolicy_update(update: Any, group_policy: bool = False) -> dict[str, Any]:
    """Syntax check of an opcode's ``ipolicy`` (no configuration needed, so
    it runs before any lock); returns it with normalised values.

    Known keys only; for a group (``group_policy``) ``"default"`` (or an
    empty value) resets a key and ``std`` is refused (Ganeti: std is
    cluster-wide); the cluster's keys cannot be reset; other values as in
    :func:`check_ipolicy` (``std`` may be partial). Raises
    ``OpPrereqError`` (ECODE_INVAL).
    """
    if not isinstance(update, Mapping):
        raise _fail("the policy must be a dict")
    given: dict[str, Any] = {}
    resets: dict[str, Any] = {}
    for key, value in update.items():
        if key not in IPOLICY_ALL_KEYS:
            raise _fail(f"unknown key {key} (known: {', '.join(sorted(IPOLICY_ALL_KEYS))})")
        if _is_reset(value):
            if not group_policy:
                raise _fail(f"cannot unset attribute '{key}' on the cluster")
            resets[key] = VALUE_DEFAULT
        elif key == ISPECS_STD and group_policy:
            raise _fail("std cannot appear in group instance specs")
        else:
            given[key] = value
    return {**check_ipolicy(given, check_std=False), **resets}


def updated_ipolicy(old: Mapping[str, Any], update: Mapping[str, Any],
                    group_policy: bool = False) -> dict[str, Any]:
    """``GetUpdatedIPolicy``: ``old`` changed by the opcode's ``update``.

    Each key of ``update`` replaces the old value (``std`` is merged value
    by value); a group's ``"default"`` removes the key, so that it is
    inherited again (see :func:`check_ipolicy_update`). The result is
    checked with :func:`check_ipolicy` (``std`` complete and within bounds
    for the cluster only). Raises ``OpPrereqError`` (ECODE_INVAL).
    """
    policy = copy.deepcopy(dict(old))
    for key, value in check_ipolicy_update(update, group_policy).items():
        if value == VALUE_DEFAULT:
            policy.pop(key, None)
        elif key == ISPECS_STD:
            policy[key] = {**old.get(key, {}), **value}
        else:
            policy[key] = value
    return check_ipolicy(policy, check_std=not group_policy)


def group_ipolicy_update(cluster_policy: Mapping[str, Any], current: Mapping[str, Any],
                         update: Mapping[str, Any],
                         enabled_disk_templates: Iterable[str]) -> dict[str, Any]:
    """Validate a node group's policy change; return its new custom policy.

    For OP_GROUP_ADD (``current`` empty) and OP_GROUP_SET_PARAMS:
    ``update`` as in :func:`updated_ipolicy` with ``group_policy``; the
    group's filled policy must be valid and allow only enabled disk
    templates (Ganeti's ``LUGroupAdd/LUGroupSetParams._CheckIpolicy``).
    Raises ``OpPrereqError`` (ECODE_INVAL).
    """
    new = updated_ipolicy(current, update, group_policy=True)
    filled = filled_ipolicy(cluster_policy, new)
    check_ipolicy(filled, check_std=False)
    check_ipolicy_vs_disk_templates(filled, enabled_disk_templates)
    return new


# -- violations -------------------------------------------------------------------------

def _range_violation(name: str, qualifier: str, bounds: Mapping[str, Mapping[str, int]],
                     value: Any) -> str | None:
    if value is None or value == "auto":
        return None
    low = bounds[ISPECS_MIN].get(name, value)
    high = bounds[ISPECS_MAX].get(name, value)
    if low <= value <= high:
        return None
    fqn = f"{name}/{qualifier}" if qualifier else name
    return f"{fqn} value {value} is not in range [{low}, {high}]"


def spec_violations(policy: Mapping[str, Any], spec: Mapping[str, Any],
                    disk_templates: list[str]) -> list[str]:
    """What of an instance spec breaks ``policy`` (a filled policy).

    ``spec``: ``memory-size`` (MiB), ``cpu-count``, ``disk-count``,
    ``disk-size`` (list of MiB, one per disk), ``nic-count``,
    ``spindle-use``; a missing or None value is not checked.
    ``disk_templates``: the template of each disk. Returns messages such
    as ``"memory-size value 64 is not in range [128, 32768]"``: the
    template checks, plus the violations of the bounds pair that fits
    best. ``ComputeIPolicyInstanceSpecViolation`` /
    ``ComputeIPolicySpecViolation``.
    """
    disk_sizes = list(spec.get(ISPEC_DISK_SIZE) or [])
    disk_count = spec.get(ISPEC_DISK_COUNT)
    tests: list[tuple[str, str, Any]] = [
        (ISPEC_MEM_SIZE, "", spec.get(ISPEC_MEM_SIZE)),
        (ISPEC_CPU_COUNT, "", spec.get(ISPEC_CPU_COUNT)),
        (ISPEC_NIC_COUNT, "", spec.get(ISPEC_NIC_COUNT)),
        (ISPEC_SPINDLE_USE, "", spec.get(ISPEC_SPINDLE_USE)),
    ] + [(ISPEC_DISK_SIZE, str(idx), size) for idx, size in enumerate(disk_sizes)]
    allowed = list(policy[IPOLICY_DTS])
    out: list[str] = []
    if disk_count:
        tests.append((ISPEC_DISK_COUNT, "", disk_count))
    elif disk_count == 0 and DT_DISKLESS not in allowed:
        # The disk count is not checked for a diskless instance; its template is.
        out.append(f"Disk template {DT_DISKLESS} is not allowed (allowed templates: "
                   f"{', '.join(allowed)})")
    forbidden = sorted(set(disk_templates) - set(allowed))
    if forbidden:
        out.append(f"Disk template {', '.join(forbidden)} is not allowed (allowed "
                   f"templates: {', '.join(allowed)})")
    best: list[str] | None = None
    for bounds in policy[ISPECS_MINMAX]:
        errs = [msg for msg in (_range_violation(name, qual, bounds, value)
                                for name, qual, value in tests) if msg]
        if best is None or len(errs) < len(best):
            best = errs
    return out + (best or [])


# -- command line -----------------------------------------------------------------------

def _spec_text(spec: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(spec.items()))


def ipolicy_command_args(policy: Mapping[str, Any], is_group: bool) -> str:
    """The options recreating ``policy``'s specs, each preceded by a space
    (``cli.PrintIPolicyCommand``): `` --ipolicy-std-specs k=v,...`` (not for
    groups) and `` --ipolicy-bounds-specs min:k=v,.../max:k=v,...//min:...``.
    """
    parts: list[str] = []
    std = policy.get(ISPECS_STD)
    if not is_group and std:
        parts.append(f" --ipolicy-std-specs {_spec_text(std)}")
    pairs = [f"min:{_spec_text(p[ISPECS_MIN])}/max:{_spec_text(p[ISPECS_MAX])}"
             for p in policy.get(ISPECS_MINMAX) or []
             if p.get(ISPECS_MIN) and p.get(ISPECS_MAX)]
    if pairs:
        parts.append(" --ipolicy-bounds-specs " + "//".join(pairs))
    return "".join(parts)


def rapi_ipolicy(policy: Any) -> Any:
    """``policy`` as Ganeti 3.0's RAPI shows it: without ``memory-ratio``
    (a Corral key Ganeti 3.0 does not have; its htools refuse policies with
    unknown keys, so ``/2/info`` and ``/2/groups`` leave it out)."""
    if not isinstance(policy, dict):
        return policy
    return {k: v for k, v in policy.items() if k != IPOLICY_MEMORY_RATIO}
