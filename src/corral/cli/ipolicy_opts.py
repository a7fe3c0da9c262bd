"""Instance policy options of ``gnt-cluster init/modify`` and ``gnt-group add/modify``.

Mirrors Ganeti's ``--ipolicy-*`` and ``--specs-*`` options
(``cli_opts.IPOLICY_*``, ``SPECS_*``) and ``cli.CreateIPolicyFromOpts``:

* ``--ipolicy-bounds-specs min:memory-size=128,...,spindle-use=1/max:...//min:...``
  (one or more ``min``/``max`` pairs, each spec complete; sizes take units);
* ``--ipolicy-std-specs memory-size=128,cpu-count=1,...`` (cluster only);
* ``--ipolicy-disk-templates file,diskless``;
* ``--ipolicy-vcpu-ratio``, ``--ipolicy-spindle-ratio``, ``--ipolicy-memory-ratio``;
* the older ``--specs-mem-size min=128,max=4G,std=1G`` (and ``--specs-cpu-count``,
  ``--specs-disk-count``, ``--specs-disk-size``, ``--specs-nic-count``; cluster only),
  which change one parameter of the single bounds pair and of ``std``.

For a group, ``default`` as a value of ``--ipolicy-bounds-specs``,
``--ipolicy-disk-templates`` or a ratio makes the group inherit the
cluster's value again. Parse errors raise :class:`errors.ParameterError`
(ECODE_INVAL); the policy itself is checked by the opcode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from corral import errors
from corral import ipolicy as ip
from corral.cli.options import parse_ident_kv, parse_kv, unescape_and_split
from corral.values import parse_size

_RATIO_OPTIONS = {"ipolicy_vcpu_ratio": ip.IPOLICY_VCPU_RATIO,
                  "ipolicy_spindle_ratio": ip.IPOLICY_SPINDLE_RATIO,
                  "ipolicy_memory_ratio": ip.IPOLICY_MEMORY_RATIO}
# --specs-* option (click parameter name) -> spec parameter.
SPLIT_SPECS_OPTIONS = {"specs_mem_size": ip.ISPEC_MEM_SIZE,
                       "specs_cpu_count": ip.ISPEC_CPU_COUNT,
                       "specs_disk_count": ip.ISPEC_DISK_COUNT,
                       "specs_disk_size": ip.ISPEC_DISK_SIZE,
                       "specs_nic_count": ip.ISPEC_NIC_COUNT}
_SPLIT_KEYS = (ip.ISPECS_MIN, ip.ISPECS_MAX, ip.ISPECS_STD)


def _spec_value(param: str, value: Any, where: str) -> int:
    """One spec value as an int (MiB with units for the sizes)."""
    try:
        if param in ip.ISPECS_SIZE_PARAMETERS:
            return parse_size(value)
        if isinstance(value, bool):
            raise ValueError
        number = int(value)
        if number < 0:
            raise ValueError
        return number
    except (TypeError, ValueError, errors.OpPrereqError):
        raise errors.ParameterError(
            f"Invalid value '{value}' for {param} in {where}") from None


def parse_spec(spec: Mapping[str, Any], where: str, complete: bool) -> dict[str, int]:
    """``{param: text}`` -> ``{param: int}`` (``cli._ParseISpec``); unknown
    parameters, and missing ones when ``complete``, are errors."""
    unknown = sorted(set(spec) - set(ip.ISPECS_PARAMETERS))
    if unknown:
        raise errors.ParameterError(f"Unknown parameter(s) in {where} specs: "
                                    f"{', '.join(unknown)} (known: "
                                    f"{', '.join(ip.ISPECS_PARAMETERS)})")
    missing = [p for p in ip.ISPECS_PARAMETERS if p not in spec]
    if complete and missing:
        raise errors.ParameterError(f"Missing parameters in ipolicy spec {where}: "
                                    f"{', '.join(missing)}")
    return {k: _spec_value(k, v, f"{where} specs") for k, v in spec.items()}


def parse_bounds_specs(value: str, allow_default: bool = False
                       ) -> list[dict[str, dict[str, int]]] | str:
    """``min:k=v,.../max:k=v,...//min:...`` -> the ``minmax`` list
    (``check_multilist_ident_key_val`` and ``_InitISpecsFromFullOpts``).

    With ``allow_default``, ``default`` gives ``"default"`` (a group
    inherits the cluster's bounds again).
    """
    opt = "--ipolicy-bounds-specs"
    if allow_default and value.strip() == ip.VALUE_DEFAULT:
        return ip.VALUE_DEFAULT
    minmax = []
    for line in value.split("//"):
        pair: dict[str, dict[str, int]] = {}
        for elem in line.split("/"):
            if not elem:
                raise errors.ParameterError(f"Empty section in option '{opt}'")
            ident, spec = parse_ident_kv(elem, opt, parse_prefixes=False)
            if ident not in ip.ISPECS_MINMAX_KEYS:
                raise errors.ParameterError(
                    f"Invalid key in bounds instance specifications: {ident} (use min and max)")
            if ident in pair:
                raise errors.ParameterError(
                    f"Duplicated parameter '{ident}' in parsing {opt}: {elem}")
            pair[ident] = parse_spec(spec or {}, ident, complete=True)
        missing = [k for k in ip.ISPECS_MINMAX_KEYS if k not in pair]
        if missing:
            raise errors.ParameterError(f"Missing instance specification in {opt}: "
                                        f"{', '.join(missing)}")
        minmax.append(pair)
    return minmax


def parse_ratio(value: str, opt: str, allow_default: bool) -> float | str:
    """A ratio option (Ganeti's ``maybefloat``): a positive number, or
    ``default`` when ``allow_default``."""
    if allow_default and value.strip().lower() == ip.VALUE_DEFAULT:
        return ip.VALUE_DEFAULT
    try:
        number = float(value)
    except ValueError:
        raise errors.ParameterError(f"Invalid value '{value}' for option {opt}: "
                                    "expected a number") from None
    if not number > 0:
        raise errors.ParameterError(f"Invalid value '{value}' for option {opt}: "
                                    "must be positive")
    return number


def parse_split_specs(opts: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """The ``--specs-*`` options -> ``{min|max|std: {param: int}}`` (only
    what was given)."""
    out: dict[str, dict[str, int]] = {}
    for name, param in SPLIT_SPECS_OPTIONS.items():
        text = opts.get(name)
        if not text:
            continue
        opt = "--" + name.replace("_", "-")
        for key, value in parse_kv(text, opt, parse_prefixes=False).items():
            if key not in _SPLIT_KEYS:
                raise errors.ParameterError(f"Invalid key '{key}' in option {opt} "
                                            "(use min, max, std)")
            out.setdefault(key, {})[param] = _spec_value(param, value, opt)
    return out


def apply_split_specs(base: Mapping[str, Any], split: Mapping[str, Mapping[str, int]]
                      ) -> dict[str, Any]:
    """``minmax`` and ``std`` of ``base`` (a complete policy) changed by
    parsed ``--specs-*`` values (``cli._InitISpecsFromSplitOpts``).

    ``base`` must have a single bounds pair when ``min`` or ``max`` is
    given: with several, which one to change is ambiguous.
    """
    out: dict[str, Any] = {}
    if ip.ISPECS_MIN in split or ip.ISPECS_MAX in split:
        pairs = base.get(ip.ISPECS_MINMAX) or []
        if len(pairs) != 1:
            raise errors.ParameterError(
                "The --specs-* options need a policy with one bounds pair; this one has "
                f"{len(pairs)}: use --ipolicy-bounds-specs")
        out[ip.ISPECS_MINMAX] = [{key: {**pairs[0][key], **split.get(key, {})}
                                  for key in ip.ISPECS_MINMAX_KEYS}]
    if ip.ISPECS_STD in split:
        out[ip.ISPECS_STD] = {**base.get(ip.ISPECS_STD, {}), **split[ip.ISPECS_STD]}
    return out


def ipolicy_from_options(opts: Mapping[str, Any], group: bool = False,
                         base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The opcode's ``ipolicy`` from parsed click options
    (``cli.CreateIPolicyFromOpts``); only the keys given.

    ``group``: a node group's options (no std, ``default`` values allowed).
    ``base``: the complete policy the ``--specs-*`` options change (the
    cluster's current one; Ganeti's defaults for ``init``); needed only
    when such an option is given. Raises :class:`errors.ParameterError`.
    """
    split = {} if group else parse_split_specs(opts)
    bounds = opts.get("ipolicy_bounds_specs")
    std = None if group else opts.get("ipolicy_std_specs")
    if split and (bounds is not None or std is not None):
        raise errors.ParameterError("A --specs-xxx option cannot be specified together "
                                    "with any --ipolicy-xxx-specs option")
    policy: dict[str, Any] = {}
    if split:
        policy.update(apply_split_specs(base if base is not None else ip.IPOLICY_DEFAULTS,
                                        split))
    if bounds is not None:
        policy[ip.ISPECS_MINMAX] = parse_bounds_specs(bounds, allow_default=group)
    if std is not None:
        policy[ip.ISPECS_STD] = parse_spec(parse_kv(std, "--ipolicy-std-specs"),
                                           ip.ISPECS_STD, complete=False)
    templates = opts.get("ipolicy_disk_templates")
    if templates is not None:
        names = [t.strip() for t in unescape_and_split(templates) if t.strip()]
        policy[ip.IPOLICY_DTS] = (ip.VALUE_DEFAULT if group and names == [ip.VALUE_DEFAULT]
                                  else names)
    for name, key in _RATIO_OPTIONS.items():
        value = opts.get(name)
        if value is not None:
            policy[key] = parse_ratio(value, "--" + name.replace("_", "-"), group)
    return policy


def ipolicy_options(group: bool = False) -> Callable[[Any], Any]:
    """Click decorator adding the policy options (group: Ganeti's
    ``gnt-group`` set, without std and --specs-*)."""
    default_help = " ('default': inherit the cluster's)" if group else ""
    options = [
        click.option("--ipolicy-bounds-specs", "ipolicy_bounds_specs", default=None,
                     metavar="min:K=V,.../max:K=V,...[//...]",
                     help="Complete instance specs limits: one or more min/max pairs "
                          "(keys memory-size, cpu-count, disk-count, disk-size, "
                          "nic-count, spindle-use)" + default_help),
        click.option("--ipolicy-disk-templates", "ipolicy_disk_templates", default=None,
                     metavar="TEMPLATE,...",
                     help="Comma-separated list of allowed disk templates" + default_help),
        click.option("--ipolicy-vcpu-ratio", "ipolicy_vcpu_ratio", default=None,
                     metavar="RATIO",
                     help="The maximum allowed vcpu-to-cpu ratio" + default_help),
        click.option("--ipolicy-spindle-ratio", "ipolicy_spindle_ratio", default=None,
                     metavar="RATIO",
                     help="The maximum allowed instances to spindle ratio" + default_help),
        click.option("--ipolicy-memory-ratio", "ipolicy_memory_ratio", default=None,
                     metavar="RATIO",
                     help="The maximum allowed instance memory to node memory ratio "
                          "(memory over-commitment)" + default_help),
    ]
    if not group:
        options.append(click.option(
            "--ipolicy-std-specs", "ipolicy_std_specs", default=None, metavar="K=V,...",
            help="Standard instance specs (memory-size and disk-size in MiB or with a unit)"))
        for name, param in SPLIT_SPECS_OPTIONS.items():
            unit = " (in MiB or with a unit)" if param in ip.ISPECS_SIZE_PARAMETERS else ""
            options.append(click.option(
                "--" + name.replace("_", "-"), name, default=None, metavar="min=N,max=N,std=N",
                help=f"{param} specs: list of key=value, where key is one of min, max, "
                     f"std{unit}"))

    def wrap(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn
    return wrap


def format_ipolicy_info(custom: Mapping[str, Any], effective: Mapping[str, Any],
                        is_cluster: bool) -> dict[str, Any]:
    """The ``Instance policy`` block of ``gnt-cluster info`` / ``gnt-group
    info`` (``cli.FormatPolicyInfo``): for a group, inherited values read
    ``default (VALUE)``."""
    if is_cluster:
        custom = effective
    own_minmax = custom.get(ip.ISPECS_MINMAX)
    bounds = []
    for idx, pair in enumerate(own_minmax or effective[ip.ISPECS_MINMAX]):
        bounds.append({f"{key}/{idx}": {param: (value if own_minmax else
                                                f"default ({value})")
                                        for param, value in sorted(pair[key].items())}
                       for key in ip.ISPECS_MINMAX_KEYS})
    out: dict[str, Any] = {"bounds specs": bounds}
    if is_cluster:
        out[ip.ISPECS_STD] = dict(sorted(effective[ip.ISPECS_STD].items()))
    own_dts = custom.get(ip.IPOLICY_DTS)
    out["allowed disk templates"] = (", ".join(own_dts) if own_dts else
                                     f"default ({', '.join(effective[ip.IPOLICY_DTS])})")
    for key in ip.IPOLICY_PARAMETERS:
        if key in effective:
            out[key] = str(custom[key]) if key in custom else f"default ({effective[key]})"
    return out
