"""OS definitions (Ganeti OS API 10, 15, 20): discovery, environment, scripts.

Mirrors the OS half of ``ganeti.backend`` (``_TryOSFromDisk``, ``DiagnoseOS``,
``OSCoreEnv``, ``OSEnvironment``, ``ValidateOS``) and ``man/ganeti-os-interface``:
an OS is a directory in the search path (``Paths.os_search_path()``: Corral's
own directory, then ``/srv/ganeti/os``, ``/usr/share/ganeti/os``; the first
directory holding the name wins) with ``ganeti_api_version``, the scripts
``create`` (or ``create_untrusted``), ``import``, ``export``, ``rename``,
``verify`` (API 20), and optionally ``variants.list`` (API >= 15) and
``parameters.list`` (required for API 20). Existing Ganeti OS definitions
(e.g. Debian's ``ganeti-os-noop``) work unchanged.
"""

from __future__ import annotations

import datetime
import os
import re
import stat
from collections import deque
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from corral import constants as C
from corral import errors
from corral.paths import Paths, component_path
from corral.process import run_command

OS_API_FILE = "ganeti_api_version"
OS_VARIANTS_FILE = "variants.list"
OS_PARAMETERS_FILE = "parameters.list"

SCRIPT_CREATE = "create"
SCRIPT_CREATE_UNTRUSTED = "create_untrusted"
SCRIPT_IMPORT = "import"
SCRIPT_EXPORT = "export"
SCRIPT_RENAME = "rename"
SCRIPT_VERIFY = "verify"
OS_SCRIPTS = (SCRIPT_CREATE, SCRIPT_CREATE_UNTRUSTED, SCRIPT_IMPORT, SCRIPT_EXPORT,
              SCRIPT_RENAME, SCRIPT_VERIFY)

OS_VALIDATE_PARAMETERS = "parameters"
OS_VALIDATE_CALLS = frozenset({OS_VALIDATE_PARAMETERS})

# Log file prefixes as Ganeti's _InstanceLogName ("add" for the create script).
_LOG_KINDS = {SCRIPT_CREATE: "add", SCRIPT_IMPORT: "import", SCRIPT_EXPORT: "export",
              SCRIPT_RENAME: "rename", SCRIPT_VERIFY: "verify"}
_LOG_TAIL_LINES = 20
_SCRIPT_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"
_OS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DTS_BLOCK = frozenset({C.DT_PLAIN, C.DT_DRBD8, C.DT_BLOCK, C.DT_RBD, C.DT_EXT})


class OSDefinition(BaseModel):
    """A valid OS definition found on this node (Ganeti's ``objects.OS``).

    ``parameters`` is a list of ``(name, description)``; script attributes
    are absolute paths (None when the OS lacks the optional script).
    """

    name: str
    path: str
    api_versions: list[int]
    variants: list[str] = Field(default_factory=list)
    parameters: list[tuple[str, str]] = Field(default_factory=list)
    create_script: str | None = None
    create_untrusted_script: str | None = None
    import_script: str
    export_script: str
    rename_script: str
    verify_script: str | None = None

    @property
    def trusted(self) -> bool:
        """True when the OS has a ``create`` script run directly on the node."""
        return self.create_script is not None

    @property
    def supported_variants(self) -> list[str]:
        return list(self.variants)

    @property
    def api_version(self) -> int:
        """The highest API version both this OS and Corral speak."""
        return max(set(self.api_versions) & set(C.OS_API_VERSIONS))

    def script(self, kind: str) -> str:
        """Path of script ``kind``; raises OSError_ if this OS has none."""
        attr = {SCRIPT_CREATE: self.create_script,
                SCRIPT_CREATE_UNTRUSTED: self.create_untrusted_script,
                SCRIPT_IMPORT: self.import_script, SCRIPT_EXPORT: self.export_script,
                SCRIPT_RENAME: self.rename_script, SCRIPT_VERIFY: self.verify_script}
        if kind not in attr:
            raise errors.ProgrammerError(f"Unknown OS script kind '{kind}'")
        path = attr[kind]
        if path is None:
            raise errors.OSError_(f"OS '{self.name}' has no {kind} script", errors.ECODE_ENVIRON)
        return path


def split_os_name(name: str) -> tuple[str, str]:
    """``"debootstrap+buster"`` -> ``("debootstrap", "buster")``; no variant -> ``""``."""
    base, _, variant = name.partition("+")
    return base, variant


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _api_versions(os_dir: Path) -> list[int]:
    api_file = os_dir / OS_API_FILE
    try:
        st = os.stat(api_file)
    except OSError as err:
        raise errors.OSError_(f"Required file '{OS_API_FILE}' not found under path "
                              f"{os_dir}: {err.strerror}", errors.ECODE_ENVIRON) from None
    if not stat.S_ISREG(st.st_mode):
        raise errors.OSError_(f"File '{OS_API_FILE}' in {os_dir} is not a regular file",
                              errors.ECODE_ENVIRON)
    try:
        lines = _read_lines(api_file)
    except OSError as err:
        raise errors.OSError_(f"Error while reading the API version file at {api_file}: "
                              f"{err.strerror}", errors.ECODE_ENVIRON) from None
    try:
        return [int(v.strip()) for v in lines if v.strip()]
    except ValueError as err:
        raise errors.OSError_(f"API version(s) can't be converted to integer: {err}",
                              errors.ECODE_ENVIRON) from None


def load_os(name: str, os_dir: Path) -> OSDefinition:
    """Check the OS definition in ``os_dir`` and return it.

    Applies Ganeti's validity rules (for the highest *declared* API version):
    an API version in common with Corral; ``import``, ``export``, ``rename``
    and one of ``create``/``create_untrusted`` as executable regular files;
    ``verify`` and ``parameters.list`` for API 20. Raises
    :class:`errors.OSError_` (``ECODE_ENVIRON``) saying what is wrong.
    """
    versions = _api_versions(os_dir)
    if not set(versions) & set(C.OS_API_VERSIONS):
        raise errors.OSError_(
            f"API version mismatch for path '{os_dir}': found {versions}, "
            f"want {list(C.OS_API_VERSIONS)}", errors.ECODE_ENVIRON)
    top = max(versions)
    required = {SCRIPT_CREATE: False, SCRIPT_CREATE_UNTRUSTED: False, SCRIPT_IMPORT: True,
                SCRIPT_EXPORT: True, SCRIPT_RENAME: True}
    if top >= C.OS_API_V15:
        required[OS_VARIANTS_FILE] = False
    if top >= C.OS_API_V20:
        required[SCRIPT_VERIFY] = True
        required[OS_PARAMETERS_FILE] = True
    found: dict[str, str] = {}
    for filename, needed in required.items():
        fpath = os_dir / filename
        try:
            st = os.stat(fpath)
        except FileNotFoundError:
            if not needed:
                continue
            raise errors.OSError_(f"File '{filename}' under path '{os_dir}' is missing",
                                  errors.ECODE_ENVIRON) from None
        except OSError as err:
            raise errors.OSError_(f"File '{filename}' under path '{os_dir}' is not "
                                  f"accessible: {err.strerror}", errors.ECODE_ENVIRON) from None
        if not stat.S_ISREG(st.st_mode):
            raise errors.OSError_(f"File '{filename}' under path '{os_dir}' is not a "
                                  "regular file", errors.ECODE_ENVIRON)
        if filename in OS_SCRIPTS and not st.st_mode & stat.S_IXUSR:
            raise errors.OSError_(f"File '{filename}' under path '{os_dir}' is not "
                                  "executable", errors.ECODE_ENVIRON)
        found[filename] = str(fpath)
    if SCRIPT_CREATE not in found and SCRIPT_CREATE_UNTRUSTED not in found:
        raise errors.OSError_(f"A create script (trusted or untrusted) under path "
                              f"'{os_dir}' must exist", errors.ECODE_ENVIRON)
    variants: list[str] = []
    if OS_VARIANTS_FILE in found:
        try:
            variants = [v.strip() for v in _read_lines(Path(found[OS_VARIANTS_FILE]))
                        if v.strip() and not v.strip().startswith("#")]
        except OSError as err:
            raise errors.OSError_(f"Error while reading the OS variants file at "
                                  f"{found[OS_VARIANTS_FILE]}: {err.strerror}",
                                  errors.ECODE_ENVIRON) from None
    parameters: list[tuple[str, str]] = []
    if OS_PARAMETERS_FILE in found:
        try:
            for line in _read_lines(Path(found[OS_PARAMETERS_FILE])):
                parts = line.split(None, 1)
                if parts and not parts[0].startswith("#"):
                    parameters.append((parts[0], parts[1].strip() if len(parts) > 1 else ""))
        except OSError as err:
            raise errors.OSError_(f"Error while reading the OS parameters file at "
                                  f"{found[OS_PARAMETERS_FILE]}: {err.strerror}",
                                  errors.ECODE_ENVIRON) from None
    return OSDefinition(
        name=name, path=str(os_dir), api_versions=versions, variants=variants,
        parameters=parameters, create_script=found.get(SCRIPT_CREATE),
        create_untrusted_script=found.get(SCRIPT_CREATE_UNTRUSTED),
        import_script=found[SCRIPT_IMPORT], export_script=found[SCRIPT_EXPORT],
        rename_script=found[SCRIPT_RENAME], verify_script=found.get(SCRIPT_VERIFY))


def find_os(paths: Paths, name: str) -> OSDefinition:
    """The OS called ``name`` (a variant suffix is ignored) from the search path.

    The first search directory holding ``name`` wins, valid or not. Raises
    :class:`errors.OSError_`: ``ECODE_INVAL`` for a malformed name,
    ``ECODE_NOENT`` when not found, ``ECODE_ENVIRON`` when invalid.
    """
    base, _ = split_os_name(name)
    if not isinstance(base, str) or not _OS_NAME_RE.fullmatch(base):
        raise errors.OSError_(f"Invalid OS name {name!r}", errors.ECODE_INVAL)
    for top in paths.os_search_path():
        os_dir = component_path(top, base, what="OS name")
        if os_dir.is_dir():
            return load_os(base, os_dir)
    raise errors.OSError_(f"Directory for OS {base} not found in search path",
                          errors.ECODE_NOENT)


def diagnose_all(paths: Paths) -> list[list[Any]]:
    """Every OS directory of the search path, valid or not (Ganeti's DiagnoseOS).

    Returns rows ``[name, path, status, diagnose, variants, parameters,
    api_versions, trusted]``: ``parameters`` as ``[[name, doc], ...]``;
    invalid OSes have status False, the reason in ``diagnose`` and empty
    lists. A name present in several directories gives several rows, the
    one that is used first.
    """
    rows: list[list[Any]] = []
    for top in paths.os_search_path():
        try:
            names = sorted(n for n in os.listdir(top) if not n.startswith("."))
        except OSError:     # a search directory that does not exist here
            continue
        for name in names:
            os_dir = top / name
            if not os_dir.is_dir():
                continue
            try:
                osd = load_os(name, os_dir)
            except errors.OSError_ as err:
                rows.append([name, str(os_dir), False, str(err), [], [], [], True])
                continue
            rows.append([name, str(os_dir), True, "", osd.variants,
                         [list(p) for p in osd.parameters], osd.api_versions, osd.trusted])
    return rows


def select_variant(os_def: OSDefinition, os_name: str, force_variant: bool = False) -> str:
    """The variant to use for ``os_name`` (``name+variant``).

    No variant given: the first one the OS lists ("" if it has none). An
    unknown variant, or a variant for an OS without variants, raises
    :class:`errors.OSError_` (``ECODE_INVAL``) unless ``force_variant``.
    """
    _, variant = split_os_name(os_name)
    if not variant:
        return os_def.variants[0] if os_def.variants else ""
    if force_variant:
        return variant
    if not os_def.variants:
        raise errors.OSError_(f"OS '{os_def.name}' does not support variants "
                              f"('{variant}' passed)", errors.ECODE_INVAL)
    if variant not in os_def.variants:
        raise errors.OSError_(f"OS '{os_def.name}' does not support variant '{variant}' "
                              f"(supported: {', '.join(os_def.variants)})", errors.ECODE_INVAL)
    return variant


def os_core_environment(os_def: OSDefinition, os_name: str, osparams: dict[str, Any],
                        debug: int = 0, variant: str | None = None) -> dict[str, str]:
    """Variables every OS script gets (Ganeti's ``OSCoreEnv``).

    ``OS_API_VERSION`` (highest common version), ``OS_NAME``, ``DEBUG_LEVEL``,
    ``PATH``; ``OS_VARIANT`` from API 15 on (``variant``, else the one in
    ``os_name``, else the OS's first); ``OSP_<NAME>`` for each OS parameter
    from API 20 on (upper-cased, ``-`` -> ``_``).
    """
    api = os_def.api_version
    env = {"OS_API_VERSION": str(api), "OS_NAME": os_def.name,
           "DEBUG_LEVEL": str(int(debug)), "PATH": _SCRIPT_PATH}
    if api >= C.OS_API_V15:
        if variant is None:
            variant = split_os_name(os_name)[1] or (os_def.variants[0] if os_def.variants
                                                    else "")
        env["OS_VARIANT"] = variant
    if api >= C.OS_API_V20:
        for pname, pvalue in osparams.items():
            env["OSP_" + pname.upper().replace("-", "_")] = _env_str(pvalue)
    return env


def _env_str(value: Any) -> str:
    return "" if value is None else str(value)


def _network_env(prefix: str, net: dict[str, Any]) -> dict[str, str]:
    env = {f"{prefix}NETWORK_NAME": _env_str(net.get("name")),
           f"{prefix}NETWORK_UUID": _env_str(net.get("uuid")),
           f"{prefix}NETWORK_TAGS": " ".join(net.get("tags") or [])}
    for key, var in (("family", "FAMILY"), ("network", "SUBNET"), ("gateway", "GATEWAY"),
                     ("network6", "SUBNET6"), ("gateway6", "GATEWAY6"),
                     ("mac_prefix", "MAC_PREFIX")):
        if net.get(key):
            env[f"{prefix}NETWORK_{var}"] = _env_str(net[key])
    return env


def os_environment(os_def: OSDefinition, instance: dict[str, Any], disk_paths: list[str],
                   *, variant: str | None = None, debug: int = 0,
                   disk_uris: list[str | None] | None = None) -> dict[str, str]:
    """Full environment of an instance's OS script (Ganeti's ``OSEnvironment``).

    ``instance`` is the encoded instance of ``rpc/defs.py`` (filled params,
    ``primary_node_name``, ``secondary_node_names``); ``disk_paths`` the real
    paths of its assembled disks, in disk order (``disk_uris`` optional
    userspace URIs). Values are strings; the variables are those of Ganeti's
    ``ganeti-os-interface(7)``. Node names are sent as names, not UUIDs.
    """
    disks = instance.get("disks") or []
    nics = instance.get("nics") or []
    if len(disk_paths) != len(disks):
        raise errors.ProgrammerError(
            f"{len(disks)} disks but {len(disk_paths)} disk paths given")
    hvparams = instance.get("hvparams") or {}
    osparams = dict(instance.get("osparams") or {})
    osparams.update(instance.get("osparams_private") or {})
    env = os_core_environment(os_def, instance.get("os", os_def.name), osparams, debug,
                              variant)
    env["INSTANCE_NAME"] = instance["name"]
    env["INSTANCE_OS"] = _env_str(instance.get("os"))
    env["INSTANCE_UUID"] = _env_str(instance.get("uuid"))
    env["INSTANCE_CTIME"] = _env_str(instance.get("ctime"))
    env["INSTANCE_MTIME"] = _env_str(instance.get("mtime"))
    env["INSTANCE_PRIMARY_NODE"] = _env_str(instance.get("primary_node_name")
                                            or instance.get("primary_node"))
    env["INSTANCE_SECONDARY_NODES"] = " ".join(instance.get("secondary_node_names") or [])
    env["HYPERVISOR"] = _env_str(instance.get("hypervisor"))
    env["DISK_COUNT"] = str(len(disks))
    env["NIC_COUNT"] = str(len(nics))
    for idx, disk in enumerate(disks):
        pfx = f"DISK_{idx}_"
        env[pfx + "PATH"] = disk_paths[idx]
        uri = disk_uris[idx] if disk_uris and idx < len(disk_uris) else None
        if uri:
            env[pfx + "URI"] = uri
        env[pfx + "SIZE"] = _env_str(disk.get("size"))
        env[pfx + "ACCESS"] = _env_str(disk.get("mode", C.DISK_RDWR))
        env[pfx + "UUID"] = _env_str(disk.get("uuid"))
        if disk.get("name"):
            env[pfx + "NAME"] = disk["name"]
        if "disk_type" in hvparams:
            env[pfx + "FRONTEND_TYPE"] = _env_str(hvparams["disk_type"])
        dev_type = disk.get("dev_type")
        if dev_type in _DTS_BLOCK:
            env[pfx + "BACKEND_TYPE"] = "block"
        elif dev_type in C.DTS_FILEBASED:
            logical_id = disk.get("logical_id") or [C.FD_DEFAULT]
            env[pfx + "BACKEND_TYPE"] = f"file:{logical_id[0]}"
    for idx, nic in enumerate(nics):
        pfx = f"NIC_{idx}_"
        nicparams = nic.get("nicparams") or {}
        mode = nicparams.get(C.NIC_MODE, C.NIC_MODE_BRIDGED)
        link = nicparams.get(C.NIC_LINK, "")
        env[pfx + "MAC"] = _env_str(nic.get("mac"))
        env[pfx + "UUID"] = _env_str(nic.get("uuid"))
        if nic.get("name"):
            env[pfx + "NAME"] = nic["name"]
        if nic.get("ip"):
            env[pfx + "IP"] = nic["ip"]
        env[pfx + "MODE"] = _env_str(mode)
        if mode == C.NIC_MODE_BRIDGED:
            env[pfx + "BRIDGE"] = _env_str(link)
        if link:
            env[pfx + "LINK"] = _env_str(link)
        if nicparams.get(C.NIC_VLAN):
            env[pfx + "VLAN"] = _env_str(nicparams[C.NIC_VLAN])
        if nic.get("netinfo"):
            env.update(_network_env(pfx, nic["netinfo"]))
        if "nic_type" in hvparams:
            env[pfx + "FRONTEND_TYPE"] = _env_str(hvparams["nic_type"])
    for source, kind in ((instance.get("beparams") or {}, "BE"), (hvparams, "HV")):
        for key, value in source.items():
            env[f"INSTANCE_{kind}_{key}"] = _env_str(value)
    return env


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "\n".join(line.rstrip("\n") for line in deque(fh, maxlen=lines))
    except OSError as err:
        return f"(log file {path} unreadable: {err.strerror})"


def os_log_path(paths: Paths, kind: str, os_name: str, instance_name: str,
                component: str | None = None) -> Path:
    """``<os_log_dir>/<kind>-<os>-<instance>[-<component>]-<timestamp>.log``."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H_%M_%S_%f")
    comp = f"-{component}" if component else ""
    safe = [s.replace("/", "_") for s in (_LOG_KINDS.get(kind, kind), os_name)]
    return component_path(paths.os_log_dir, instance_name, prefix=f"{safe[0]}-{safe[1]}-",
                          suffix=f"{comp}-{stamp}.log", what="instance name")


def run_os_script(os_def: OSDefinition, kind: str, env: dict[str, str], paths: Paths,
                  instance_name: str, timeout: float, *, os_name: str | None = None,
                  component: str | None = None, stdin_fd: int | None = None,
                  stdout_fd: int | None = None, pass_fds: tuple[int, ...] = ()) -> Path:
    """Run script ``kind`` (create, import, export, rename) of ``os_def``.

    The environment is exactly ``env`` plus ``PATH=/sbin:/bin:/usr/sbin:/usr/bin``,
    the working directory the OS directory; stdout and stderr go to a log
    file in ``paths.os_log_dir`` (with ``stdout_fd``, stdout goes there
    instead: export). Returns the log file path. Raises
    :class:`errors.OSError_` (``ECODE_ENVIRON``) when the script fails or
    times out, with the last 20 lines of the log.
    """
    script = os_def.script(kind)
    log_path = os_log_path(paths, kind, os_name or os_def.name, instance_name, component)
    try:
        paths.os_log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise errors.OSError_(f"Cannot create the OS log directory {paths.os_log_dir}: "
                              f"{err.strerror}", errors.ECODE_ENVIRON) from None
    full_env = dict(env)
    full_env["PATH"] = _SCRIPT_PATH
    try:
        result = run_command([script], timeout=timeout, env=full_env, reset_env=True,
                             cwd=os_def.path, output_file=log_path, stdin_fd=stdin_fd,
                             stdout_fd=stdout_fd, pass_fds=pass_fds)
    except OSError as err:
        raise errors.OSError_(f"Cannot run the OS {kind} script {script}: {err.strerror}",
                              errors.ECODE_ENVIRON) from None
    if result.failed:
        raise errors.OSError_(
            f"OS {kind} script failed ({result.fail_reason()}), last lines in the log "
            f"file {log_path}:\n{_tail(log_path)}", errors.ECODE_ENVIRON)
    return log_path


def verify_parameters(os_def: OSDefinition, os_name: str, osparams: dict[str, Any],
                      checks: list[str], timeout: float = C.RPC_TMO_FAST - 30) -> None:
    """Validate OS parameters with the OS's ``verify`` script (API 20 only).

    ``checks`` lists what to verify (``["parameters"]``); with
    ``parameters`` unknown names are refused first. The script runs as
    ``verify <checks...>`` with the ``OSP_*`` variables. OSes below API 20
    accept anything. Raises :class:`errors.OSError_` (``ECODE_INVAL``).
    """
    unknown_checks = set(checks) - OS_VALIDATE_CALLS
    if unknown_checks:
        raise errors.OSError_(f"Unknown OS validation checks: "
                              f"{', '.join(sorted(unknown_checks))}", errors.ECODE_INVAL)
    if max(os_def.api_versions) < C.OS_API_V20:
        return
    if OS_VALIDATE_PARAMETERS in checks:
        supported = {p[0] for p in os_def.parameters}
        delta = sorted(set(osparams) - supported)
        if delta:
            raise errors.OSError_(f"The following parameters are not supported by the OS "
                                  f"{os_def.name}: {', '.join(delta)}", errors.ECODE_INVAL)
    env = os_core_environment(os_def, os_name, osparams)
    script = os_def.script(SCRIPT_VERIFY)
    try:
        result = run_command([script, *checks], timeout=timeout, env=env, reset_env=True,
                             cwd=os_def.path)
    except OSError as err:
        raise errors.OSError_(f"Cannot run the OS verify script {script}: {err.strerror}",
                              errors.ECODE_ENVIRON) from None
    if result.failed:
        raise errors.OSError_(f"OS validation script failed ({result.fail_reason()}), "
                              f"output: {result.output.strip()}", errors.ECODE_INVAL)
