"""Ganeti's command-line value syntax and the options shared by commands.

Mirrors ``ganeti.cli_opts``: ``-B key=val,key=val`` (a bare ``key`` is True,
``no_key`` False, ``-key`` None), ``-H hv:key=val``, ``--disk N:size=10G,...``,
``--net N:...``, commas escaped with a backslash, sizes with unit suffixes,
``yes``/``no`` flags, timespecs such as ``1d``. Parse errors raise
:class:`errors.ParameterError` (ECODE_INVAL), printed as ``Failure: ...``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import click

from corral import constants as C
from corral import errors
from corral.values import parse_size

NO_PREFIX = "no_"
UN_PREFIX = "-"


def unescape_and_split(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` unless escaped (``utils.UnescapeAndSplit``).

    ``\\,`` is a literal separator character; an even number of
    backslashes before ``sep`` does not escape it; finally every
    ``\\<char>`` becomes ``<char>``.
    """
    result: list[str] = []
    pending = text.split(sep)
    while pending:
        elem = pending.pop(0)
        n_back = len(elem) - len(elem.rstrip("\\"))
        if n_back % 2 == 1 and pending:
            pending.insert(0, elem + sep + pending.pop(0))
            continue
        result.append(elem)
    return [re.sub(r"\\(.)", r"\1", elem, flags=re.DOTALL) for elem in result]


def parse_kv(data: str | None, opt: str = "", parse_prefixes: bool = True) -> dict[str, Any]:
    """``key=val,key2,no_key3,-key4`` -> ``{key: "val", key2: True, key3:
    False, key4: None}`` (``cli._SplitKeyVal``).

    Raises :class:`errors.ParameterError` for duplicate keys, empty keys and
    bare keys when ``parse_prefixes`` is False.
    """
    result: dict[str, Any] = {}
    if not data:
        return result
    for elem in unescape_and_split(data):
        val: Any
        if "=" in elem:
            key, val = elem.split("=", 1)
        elif parse_prefixes:
            if elem.startswith(NO_PREFIX):
                key, val = elem[len(NO_PREFIX):], False
            elif elem.startswith(UN_PREFIX):
                key, val = elem[len(UN_PREFIX):], None
            else:
                key, val = elem, True
        else:
            raise errors.ParameterError(f"Missing value for key '{elem}' in option {opt}")
        if not key:
            raise errors.ParameterError(f"Empty key in option {opt}: '{data}'")
        if key in result:
            raise errors.ParameterError(f"Duplicate key '{key}' in option {opt}")
        result[key] = val
    return result


def parse_ident_kv(value: str, opt: str = "", parse_prefixes: bool = True
                   ) -> tuple[str, dict[str, Any] | bool | None]:
    """``ident:key=val,...`` -> ``(ident, {...})`` (``cli._SplitIdentKeyVal``).

    ``no_ident`` gives ``(ident, False)`` and ``-ident`` (not followed by a
    digit) ``(ident, None)``: removal of a whole parameter group.
    """
    ident, rest = value.split(":", 1) if ":" in value else (value, "")
    if parse_prefixes and ident.startswith(NO_PREFIX):
        if rest:
            raise errors.ParameterError("Cannot pass options when removing parameter "
                                        f"groups: {value}")
        return ident[len(NO_PREFIX):], False
    if (parse_prefixes and ident.startswith(UN_PREFIX)
            and (len(ident) <= len(UN_PREFIX) or not ident[len(UN_PREFIX)].isdigit())):
        if rest:
            raise errors.ParameterError("Cannot pass options when removing parameter "
                                        f"groups: {value}")
        return ident[len(UN_PREFIX):], None
    if not ident:
        raise errors.ParameterError(f"Missing identifier in option {opt}: '{value}'")
    return ident, parse_kv(rest, opt, parse_prefixes)


def parse_multi_ident_kv(values: tuple[str, ...] | list[str], opt: str
                         ) -> dict[str, Any]:
    """Several ``-H hv:k=v`` options -> ``{hv: {k: v}}``; an ident repeated
    is an error."""
    result: dict[str, Any] = {}
    for value in values:
        ident, params = parse_ident_kv(value, opt)
        if ident in result:
            raise errors.ParameterError(f"Duplicate identifier '{ident}' in option {opt}")
        result[ident] = params
    return result


_BOOL_TRUE = {"true", "yes", "on", "1", "y"}
_BOOL_FALSE = {"false", "no", "off", "0", "n"}


def parse_bool(value: Any, what: str = "value") -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _BOOL_TRUE:
        return True
    if text in _BOOL_FALSE:
        return False
    raise errors.ParameterError(f"Invalid boolean {what}: '{value}'")


def force_dict_type(params: dict[str, Any], types: dict[str, str],
                    allow_none: bool = False) -> dict[str, Any]:
    """Convert string values by type name (``utils.ForceDictType``).

    Types: ``size`` (MiB, unit suffixes), ``int``, ``float``, ``bool``,
    ``string``. Unknown keys are kept as given (the opcode's LU decides).
    ``None`` ("reset to default") is kept only with ``allow_none``.
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        kind = types.get(key)
        if value is None:
            if not allow_none:
                raise errors.ParameterError(f"Parameter '{key}' cannot be reset here")
            out[key] = None
            continue
        try:
            if kind == "size":
                out[key] = parse_size(value)
            elif kind == "int":
                out[key] = int(value)
            elif kind == "float":
                out[key] = float(value)
            elif kind == "bool":
                out[key] = parse_bool(value, f"value for '{key}'")
            else:
                out[key] = value
        except (TypeError, ValueError, errors.OpPrereqError):
            raise errors.ParameterError(
                f"Invalid value '{value}' for parameter '{key}' ({kind})") from None
    return out


def _type_names_from_defaults(defaults: dict[str, Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    for key, default in defaults.items():
        if isinstance(default, bool):
            names[key] = "bool"
        elif isinstance(default, int):
            names[key] = "int"
        elif isinstance(default, float):
            names[key] = "float"
        else:
            names[key] = "string"
    return names


def hv_param_types(hypervisor: str) -> dict[str, str]:
    """Types of a hypervisor's parameters, derived from their defaults."""
    return _type_names_from_defaults(dict(C.HVC_DEFAULTS.get(hypervisor, {})))


def convert_hvparams(hypervisor: str, params: dict[str, Any],
                     allow_none: bool = False) -> dict[str, Any]:
    return force_dict_type(params, hv_param_types(hypervisor), allow_none)


def parse_hvparams_option(values: tuple[str, ...] | list[str], allow_none: bool
                          ) -> dict[str, dict[str, Any]]:
    """Repeated ``-H hv:key=val,...`` values -> ``{hv: {key: typed value}}``.

    Values are converted to the types of the hypervisor's defaults;
    ``allow_none`` lets ``key=default`` reset a parameter (modify commands).
    Raises :class:`errors.ParameterError` for ``-H -hv`` (removal of a whole
    hypervisor's parameters) and for values of the wrong type.
    """
    parsed = parse_multi_ident_kv(values, "-H")
    out: dict[str, dict[str, Any]] = {}
    for hv, params in parsed.items():
        if not isinstance(params, dict):
            raise errors.ParameterError(f"Cannot remove the parameters of hypervisor '{hv}'")
        out[hv] = convert_hvparams(hv, params, allow_none)
    return out


def parse_yes_no(value: str | None, opt: str) -> bool | None:
    """``yes``/``no`` option values (``-C yes``); None when not given."""
    if value is None:
        return None
    text = value.strip().lower()
    if text == "yes":
        return True
    if text == "no":
        return False
    raise errors.ParameterError(f"Invalid value '{value}' for option {opt}: use yes or no")


def parse_node_spec(spec: str | None) -> tuple[str | None, str | None]:
    """``-n pnode[:snode]`` -> ``(pnode, snode)``."""
    if not spec:
        return None, None
    if ":" in spec:
        pnode, snode = spec.split(":", 1)
        return pnode or None, snode or None
    return spec, None


def _index(ident: str, kind: str) -> int:
    try:
        idx = int(ident)
    except ValueError:
        raise errors.OpPrereqError(f"Invalid {kind} index passed: '{ident}'",
                                   errors.ECODE_INVAL) from None
    if idx < 0:
        raise errors.OpPrereqError(f"Invalid {kind} index passed: '{ident}'",
                                   errors.ECODE_INVAL)
    return idx


def parse_disks(values: tuple[str, ...] | list[str], os_size: str | None,
                disk_template: str | None) -> list[dict[str, Any]]:
    """``--disk N:size=..,mode=..`` / ``-s SIZE`` -> OP_INSTANCE_CREATE disks.

    Follows ``GenericInstanceCreate``: diskless takes no disks; otherwise
    ``--disk`` or ``-s`` (not both) is required; gaps in the indices are
    errors; sizes are converted to MiB. Raises ``OpPrereqError``/``ParameterError``.
    """
    if disk_template == C.DT_DISKLESS:
        if values or os_size is not None:
            raise errors.OpPrereqError("Diskless instance but disk information passed",
                                       errors.ECODE_INVAL)
        return []
    if values and os_size is not None:
        raise errors.OpPrereqError("Please use either the '--disk' or '-s' option",
                                   errors.ECODE_INVAL)
    if os_size is not None:
        return [{C.IDISK_SIZE: parse_size(os_size)}]
    if not values:
        raise errors.OpPrereqError("No disk information specified", errors.ECODE_INVAL)
    by_index: dict[int, dict[str, Any]] = {}
    for value in values:
        ident, params = parse_ident_kv(value, "--disk")
        idx = _index(ident, "disk")
        if not isinstance(params, dict):
            raise errors.OpPrereqError(f"Invalid disk/{idx} value: expected dict",
                                       errors.ECODE_INVAL)
        if idx in by_index:
            raise errors.OpPrereqError(f"Duplicate disk index {idx}", errors.ECODE_INVAL)
        by_index[idx] = _disk_params(idx, params)
    return _dense(by_index, "disk")


def _disk_params(idx: int, params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    if C.IDISK_SIZE in params:
        if C.IDISK_ADOPT in params:
            raise errors.OpPrereqError(f"Only one of 'size' and 'adopt' allowed for disk {idx}",
                                       errors.ECODE_INVAL)
        try:
            params[C.IDISK_SIZE] = parse_size(params[C.IDISK_SIZE])
        except errors.OpPrereqError as err:
            raise errors.OpPrereqError(f"Invalid disk size for disk {idx}: {err}",
                                       errors.ECODE_INVAL) from None
    elif C.IDISK_ADOPT not in params:
        raise errors.OpPrereqError(f"Missing size or adoption source for disk {idx}",
                                   errors.ECODE_INVAL)
    if C.IDISK_SPINDLES in params:
        try:
            params[C.IDISK_SPINDLES] = int(params[C.IDISK_SPINDLES])
        except (TypeError, ValueError):
            raise errors.OpPrereqError(f"Invalid spindles for disk {idx}",
                                       errors.ECODE_INVAL) from None
    return params


def _dense(by_index: dict[int, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    count = max(by_index) + 1 if by_index else 0
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        raise errors.OpPrereqError(f"Missing {kind} index(es) {missing}: {kind}s must be "
                                   "numbered from 0 without gaps", errors.ECODE_INVAL)
    return [by_index[i] for i in range(count)]


def parse_nics(values: tuple[str, ...] | list[str], no_nics: bool) -> list[dict[str, Any]]:
    """``--net N:mac=..,link=..`` / ``--no-nics`` -> OP_INSTANCE_CREATE nics.

    Without either option the instance gets one NIC with default
    parameters (Ganeti's behaviour).
    """
    if values and no_nics:
        raise errors.OpPrereqError("Cannot specify both --net and --no-nics",
                                   errors.ECODE_INVAL)
    if no_nics:
        return []
    if not values:
        return [{}]
    by_index: dict[int, dict[str, Any]] = {}
    for value in values:
        ident, params = parse_ident_kv(value, "--net")
        idx = _index(ident, "NIC")
        if not isinstance(params, dict):
            raise errors.OpPrereqError(f"Invalid nic/{idx} value: expected dict",
                                       errors.ECODE_INVAL)
        if idx in by_index:
            raise errors.OpPrereqError(f"Duplicate NIC index {idx}", errors.ECODE_INVAL)
        unknown = set(params) - C.INIC_PARAMS
        if unknown:
            raise errors.OpPrereqError(f"Unknown NIC parameters: {', '.join(sorted(unknown))}",
                                       errors.ECODE_INVAL)
        by_index[idx] = params
    return _dense(by_index, "NIC")


DDM_ADD = "add"
DDM_REMOVE = "remove"
DDM_MODIFY = "modify"
DDM_ATTACH = "attach"
DDM_DETACH = "detach"
_DDM_ALL = (DDM_ADD, DDM_REMOVE, DDM_MODIFY, DDM_ATTACH, DDM_DETACH)


def parse_modifications(values: tuple[str, ...] | list[str], kind: str
                        ) -> list[list[Any]]:
    """``--disk``/``--net`` of ``modify`` -> ``[[action, index, params]]``.

    Mirrors ``_ConvertNicDiskModifications``: ``add:...`` adds at the end
    (index -1), ``remove`` removes the last item, ``N:add,...``,
    ``N:remove``, ``N:modify,...`` (or just ``N:...``) act on item N
    (a number or a name). Disk sizes are converted to MiB.
    """
    result: list[list[Any]] = []
    for value in values:
        ident, params = parse_ident_kv(value, f"--{kind}")
        if not isinstance(params, dict):
            raise errors.OpPrereqError(f"Invalid {kind} modification '{value}'",
                                       errors.ECODE_INVAL)
        params = dict(params)
        identifier: Any
        if ident in (DDM_ADD, DDM_REMOVE, DDM_ATTACH, DDM_DETACH):
            action, identifier = ident, -1
        else:
            given = [op for op in _DDM_ALL if op in params]
            if len(given) > 1:
                raise errors.OpPrereqError(
                    "Cannot do more than one of the following operations at the same "
                    f"time: {', '.join(_DDM_ALL)}", errors.ECODE_INVAL)
            action = given[0] if given else DDM_MODIFY
            for op in given:
                params.pop(op)
            identifier = int(ident) if re.fullmatch(r"-?\d+", ident) else ident
        if action in (DDM_REMOVE, DDM_DETACH) and params:
            raise errors.OpPrereqError("Not accepting parameters on removal/detach",
                                       errors.ECODE_INVAL)
        if kind == "disk" and C.IDISK_SIZE in params:
            params[C.IDISK_SIZE] = parse_size(params[C.IDISK_SIZE])
        if kind == "disk" and action == DDM_ADD and C.IDISK_SIZE not in params \
                and C.IDISK_ADOPT not in params:
            raise errors.OpPrereqError("Missing required parameter 'size'",
                                       errors.ECODE_INVAL)
        result.append([action, identifier, params])
    return result


_TIMESPEC_RE = re.compile(r"^(\d+)([smhdw]?)$")
_TIMESPEC_MULT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_timespec(value: str) -> int:
    """``30``, ``30s``, ``5m``, ``2h``, ``1d``, ``1w`` -> seconds (``ParseTimespec``)."""
    m = _TIMESPEC_RE.match(value.strip())
    if not m:
        raise errors.OpPrereqError(f"Invalid time specification '{value}'",
                                   errors.ECODE_INVAL)
    return int(m.group(1)) * _TIMESPEC_MULT[m.group(2)]


def split_list(value: str | None) -> list[str] | None:
    """``a,b,c`` -> ``["a", "b", "c"]`` (None stays None; blanks dropped)."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


# -- shared click options ---------------------------------------------------------------

class HelpArgument(click.Argument):
    """A click argument with a help text (click's own have none), shown in
    ``--help`` under "Arguments" and in the man pages."""

    def __init__(self, param_decls: list[str], required: bool | None = None,
                 help: str | None = None, **attrs: Any) -> None:
        super().__init__(param_decls, required=required, **attrs)
        self.help = help


def argument(*param_decls: str, help: str, **attrs: Any
             ) -> Callable[[Any], Any]:
    """``click.argument`` with a required ``help`` text (:class:`HelpArgument`)."""
    return click.argument(*param_decls, cls=HelpArgument, help=help, **attrs)


def _compose(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrap(fn: Any) -> Any:
        for deco in reversed(decorators):
            fn = deco(fn)
        return fn
    return wrap


submit_opts = _compose(
    click.option("--submit", "submit_only", is_flag=True,
                 help="Submit the job and print its id instead of waiting"),
    click.option("--print-jobid", "print_jobid", is_flag=True,
                 help="Print the job id on the first line, then wait"),
    click.option("--priority", type=click.Choice(sorted(C.PRIORITY_NAMES)), default=None,
                 help="Priority of the submitted job"),
    click.option("--reason", default=None, help="Reason for the change (reason trail)"),
    click.option("--dry-run", "dry_run", is_flag=True,
                 help="Only check the prerequisites, change nothing"),
    click.option("-d", "--debug", count=True, help="Debug level"),
)
"""Options of every command that submits a job: --submit, --print-jobid,
--priority, --reason, --dry-run, -d."""

list_opts = _compose(
    click.option("-o", "--output-fields", "fields", default=None,
                 help="Comma-separated fields; a leading '+' adds to the defaults"),
    click.option("--no-headers", is_flag=True, help="Do not print column headers"),
    click.option("--separator", default=None, help="Column separator (default: aligned)"),
    click.option("--units", type=click.Choice(["h", "m", "g", "t"]), default=None,
                 help="Units of sizes (human, MiB, GiB, TiB)"),
    click.option("--output", "output_format", type=click.Choice(["table", "json"]),
                 default="table", help="Output format"),
    click.option("-v", "--verbose", is_flag=True, help="Verbose status of missing values"),
    click.option("-F", "--filter", "force_filter", is_flag=True,
                 help="Treat the argument as a query filter such as 'pnode == \"node1\" "
                      "and admin_state' (see QUERY FILTERS in the man page); a single argument "
                      "with filter characters is one anyway"),
)
"""Options of every ``list`` command."""


group_change_opts = _compose(
    click.option("--to", "target_groups", multiple=True, metavar="GROUP",
                 help="Target group (repeatable; default: every other group)"),
    click.option("-I", "--iallocator", default=None,
                 help="Instance allocator (Corral has none yet: refused)"),
    click.option("--early-release", is_flag=True,
                 help="Release locks early (replicated disks only)"),
)
"""Options of ``gnt-group evacuate`` and ``gnt-instance change-group``."""

instance_spec_opts = _compose(
    click.option("-t", "--disk-template", default=None, type=click.Choice(C.DISK_TEMPLATES),
                 help="Disk template of the instance's disks"),
    click.option("-n", "--node", "node_spec", default=None, metavar="PNODE[:SNODE]",
                 help=("Primary node, and secondary node for mirrored templates "
                       "(PNODE:SNODE); or use -I")),
    click.option("-I", "--iallocator", default=None,
                 help=("Instance allocator plugin choosing the node(s) (default: the "
                       "cluster's default iallocator)")),
    click.option("-g", "--node-group", "group_name", default=None,
                 help="Node group to place the instance in (with an iallocator)"),
    click.option("--disk", "disks", multiple=True, metavar="N:size=SIZE,mode=ro|rw,...",
                 help=("Disk N: size (unit suffixes M, G, T), mode (ro|rw), vg, name, "
                       "spindles, adopt, ... (repeatable)")),
    click.option("-s", "--os-size", "os_size", default=None,
                 help="Size of the single disk (unit suffixes M, G, T), instead of --disk"),
    click.option("--net", "nets", multiple=True, metavar="N:mac=..,ip=..,link=..,...",
                 help=("NIC N: mac (auto|generate|address), ip, mode, link, network, name, "
                       "vlan (repeatable)")),
    click.option("--no-nics", is_flag=True,
                 help="Create the instance without network interfaces"),
    click.option("-B", "--backend-parameters", "beparams", default=None,
                 help=("Backend parameters: KEY=VAL,... (maxmem, minmem, vcpus, "
                       "auto_balance, always_failover, spindle_use)")),
    click.option("-H", "--hypervisor-parameters", "hvparams", default=None,
                 metavar="HV[:KEY=VAL,...]",
                 help="Hypervisor and its parameters for this instance: HV:KEY=VAL,..."),
    click.option("-O", "--os-parameters", "osparams", default=None,
                 help="OS parameters: KEY=VAL,..."),
    click.option("--file-storage-dir", default=None,
                 help=("Directory of the instance's disk files, relative to the cluster's "
                       "file storage directory")),
    click.option("--file-driver", default=None, type=click.Choice(C.FILE_DRIVERS),
                 help="Driver of file-based disks (loop or blktap)"),
    click.option("--no-ip-check", "ip_check", flag_value=False, default=True,
                 help="Do not check that the instance's IP address is unused (no ping)"),
    click.option("--no-name-check", "name_check", flag_value=False, default=True,
                 help="Do not check that the instance name resolves (implies --no-ip-check)"),
)
"""Options describing a new instance (``gnt-instance add``, ``gnt-backup
import``): placement (-t, -n, -I, -g), disks, NICs, parameters, checks."""

remember_opts = _compose(
    click.option("--no-remember", is_flag=True,
                 help=("Do not record the new state in the configuration (the watcher may "
                       "change it back)")),
    click.option("--ignore-offline", is_flag=True,
                 help=("Ignore the instance's primary node being offline (only update the "
                       "configuration)")),
)
"""--no-remember and --ignore-offline of startup and shutdown."""
