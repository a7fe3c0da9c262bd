"""Instance exports in Ganeti's on-disk format: the export directory and ``config.ini``.

Mirrors what Ganeti 3.0 writes in ``backend.FinalizeExport`` and reads in
``LUInstanceCreate._ReadExportInfo`` / ``_ReadExportParams``, so that an
export written by Corral can be imported by Ganeti and the other way round:

* an export of instance ``NAME`` lives on one node in
  ``<export_dir>/NAME/`` (``/srv/corral/export`` as a virtual path); the
  data is first written to ``NAME.new/`` and the directory is renamed only
  after ``config.ini`` was written into it, so a directory named ``NAME``
  always holds a complete export;
* one file per exported disk, named by the disk's UUID, holding the output
  of the OS ``export`` script (or the raw disk when the instance has no
  OS); compression is only used in transit;
* ``config.ini`` (an INI file, :data:`C.EXPORT_VERSION` 0) with the sections
  ``[export]``, ``[instance]``, ``[hypervisor]``, ``[backend]``, ``[os]``
  and, only when asked for, ``[os_private]`` (Ganeti 3.0 always writes that
  section, with private OS parameters in clear text; Corral leaves it out
  by default).

Values are written as Ganeti does (``"%s" % value``: ``None`` becomes
``"None"``, booleans ``"True"``/``"False"``), and read back as strings;
turning them into typed parameters is the importer's job.
"""

from __future__ import annotations

import configparser
import io
import re
import time
from typing import Any

from pydantic import BaseModel, Field

from corral import constants as C
from corral import errors
from corral.paths import safe_component

SECT_EXPORT = "export"
SECT_INSTANCE = "instance"
SECT_HYPERVISOR = "hypervisor"
SECT_BACKEND = "backend"
SECT_OS = "os"
SECT_OS_PRIVATE = "os_private"

# The virtual export directory of every node (``Paths.export_dir`` with root /).
EXPORT_DIR = "/srv/corral/export"
NEW_SUFFIX = ".new"
# Export names are instance names: one path component, not hidden.
_NAME_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,254}$")

# Parameters the legacy (pre-2.1) export format kept in [instance].
_LEGACY_BE_KEYS = (C.BE_MAXMEM, C.BE_MINMEM, C.BE_MEMORY, C.BE_VCPUS, C.BE_AUTO_BALANCE,
                   C.BE_ALWAYS_FAILOVER, C.BE_SPINDLE_USE)


def check_export_name(name: Any) -> str:
    """Return ``name`` if it can name an export directory (an instance name:
    one visible path component). Raises OpPrereqError ``ECODE_INVAL``."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise errors.OpPrereqError(f"Invalid export name {name!r}", errors.ECODE_INVAL)
    return safe_component(name, "export name")


def new_dir_name(instance_name: str) -> str:
    """``NAME.new``: where an export is written before it is finalized."""
    return check_export_name(instance_name) + NEW_SUFFIX


def disk_file_path(instance_name: str, disk_uuid: str) -> str:
    """Virtual path of an exported disk image being written:
    ``<export_dir>/NAME.new/<disk uuid>``."""
    if not isinstance(disk_uuid, str) or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", disk_uuid):
        raise errors.OpPrereqError(f"Invalid disk UUID {disk_uuid!r}", errors.ECODE_INVAL)
    return f"{EXPORT_DIR}/{new_dir_name(instance_name)}/{disk_uuid}"


def _fmt(value: Any) -> str:
    """Ganeti's ``"%s" % value``."""
    return "%s" % (value,)


def _parser() -> configparser.RawConfigParser:
    # Raw: values are stored verbatim (no % interpolation); keys lower-cased
    # as Python 2's ConfigParser (which Ganeti uses) does.
    return configparser.RawConfigParser(interpolation=None, strict=False)


def build_config_ini(instance: dict[str, Any], disks: list[dict[str, Any] | None],
                     timestamp: int | None = None, include_private: bool = False) -> str:
    """The text of ``config.ini`` for ``instance``.

    ``instance`` is an RPC instance dict (``RpcRunner.encode_instance``: hv,
    be and OS parameters and NIC parameters filled); ``disks`` has one entry
    per exported disk position: the disk dict whose ``uuid`` names the image
    file, or None for a disk that was not exported. ``include_private``
    adds ``[os_private]`` with the private OS parameters in clear text.
    Mirrors ``backend.FinalizeExport``.
    """
    cfg = _parser()
    be = instance.get("beparams") or {}
    cfg.add_section(SECT_EXPORT)
    cfg.set(SECT_EXPORT, "version", "%d" % C.EXPORT_VERSION)
    cfg.set(SECT_EXPORT, "timestamp", "%d" % int(time.time() if timestamp is None
                                                 else timestamp))
    cfg.set(SECT_EXPORT, "source", _fmt(instance.get("primary_node")))
    cfg.set(SECT_EXPORT, "os", _fmt(instance.get("os")))
    cfg.set(SECT_EXPORT, "compression", "none")

    cfg.add_section(SECT_INSTANCE)
    ins = SECT_INSTANCE
    cfg.set(ins, "name", _fmt(instance.get("name")))
    cfg.set(ins, "maxmem", "%d" % int(be[C.BE_MAXMEM]))
    cfg.set(ins, "minmem", "%d" % int(be[C.BE_MINMEM]))
    # "memory" is deprecated, but old Ganeti versions read it.
    cfg.set(ins, "memory", "%d" % int(be[C.BE_MAXMEM]))
    cfg.set(ins, "vcpus", "%d" % int(be[C.BE_VCPUS]))
    cfg.set(ins, "disk_template", _fmt(instance.get("disk_template")))
    cfg.set(ins, "hypervisor", _fmt(instance.get("hypervisor")))
    cfg.set(ins, "tags", " ".join(instance.get("tags") or []))

    nics = instance.get("nics") or []
    for idx, nic in enumerate(nics):
        cfg.set(ins, f"nic{idx}_mac", _fmt(nic.get("mac")))
        cfg.set(ins, f"nic{idx}_ip", _fmt(nic.get("ip")))
        cfg.set(ins, f"nic{idx}_network", _fmt(nic.get("network")))
        cfg.set(ins, f"nic{idx}_name", _fmt(nic.get("name")))
        params = nic.get("nicparams") or {}
        for param in C.NICS_PARAMETER_TYPES:
            cfg.set(ins, f"nic{idx}_{param}", _fmt(params.get(param)))
    cfg.set(ins, "nic_count", "%d" % len(nics))

    total = 0
    for idx, disk in enumerate(disks):
        if not disk:
            continue
        total += 1
        cfg.set(ins, f"disk{idx}_ivname", _fmt(disk.get("iv_name")))
        cfg.set(ins, f"disk{idx}_dump", _fmt(disk.get("uuid")))
        cfg.set(ins, f"disk{idx}_size", "%d" % int(disk.get("size") or 0))
        cfg.set(ins, f"disk{idx}_name", _fmt(disk.get("name")))
    cfg.set(ins, "disk_count", "%d" % total)

    cfg.add_section(SECT_HYPERVISOR)
    for key, value in (instance.get("hvparams") or {}).items():
        if key not in C.HVC_GLOBALS:
            cfg.set(SECT_HYPERVISOR, key, _fmt(value))
    cfg.add_section(SECT_BACKEND)
    for key, value in be.items():
        cfg.set(SECT_BACKEND, key, _fmt(value))
    cfg.add_section(SECT_OS)
    for key, value in (instance.get("osparams") or {}).items():
        cfg.set(SECT_OS, key, _fmt(value))
    if include_private:
        cfg.add_section(SECT_OS_PRIVATE)
        for key, value in (instance.get("osparams_private") or {}).items():
            cfg.set(SECT_OS_PRIVATE, key, _fmt(value))
    out = io.StringIO()
    cfg.write(out)
    return out.getvalue()


# -- reading --------------------------------------------------------------------------

def none_if_none(value: str | None) -> str | None:
    """``None`` for a missing value, ``""`` or Ganeti's ``"None"``/``"none"``."""
    if value is None or value == "" or value.lower() == C.VALUE_NONE:
        return None
    return value


class ExportDisk(BaseModel):
    """One exported disk: ``dump`` is the image file name in the export
    directory (None when the disk was not exported), ``size`` in MiB."""

    index: int
    size: int
    dump: str | None = None
    iv_name: str | None = None
    name: str | None = None


class ExportNic(BaseModel):
    """One NIC as exported (values as strings; None when unset)."""

    mac: str | None = None
    ip: str | None = None
    network: str | None = None
    name: str | None = None
    mode: str | None = None
    link: str | None = None
    vlan: str | None = None


class ExportInfo(BaseModel):
    """The contents of a ``config.ini`` (see :func:`parse_config_ini`)."""

    version: int
    timestamp: int | None = None
    source: str | None = None
    os: str | None = None
    compression: str = "none"
    name: str | None = None
    disk_template: str | None = None
    hypervisor: str | None = None
    tags: list[str] = Field(default_factory=list)
    nics: list[ExportNic] = Field(default_factory=list)
    disks: list[ExportDisk] = Field(default_factory=list)
    hvparams: dict[str, str] | None = None      # None: no [hypervisor] section
    beparams: dict[str, str] = Field(default_factory=dict)
    osparams: dict[str, str] = Field(default_factory=dict)
    osparams_private: dict[str, str] = Field(default_factory=dict)


def _int(cfg: configparser.RawConfigParser, section: str, key: str) -> int:
    try:
        return int(cfg.get(section, key).strip())
    except ValueError:
        raise errors.OpPrereqError(f"Invalid value for '{key}' in the export's "
                                   f"[{section}] section", errors.ECODE_INVAL) from None


def parse_config_ini(text: str) -> ExportInfo:
    """Parse ``config.ini`` text (written by Corral or by Ganeti).

    Raises :class:`errors.OpPrereqError`: ``ECODE_INVAL`` when the text is
    not an INI file, lacks the ``[export]``/``[instance]`` sections or holds
    malformed numbers; ``ECODE_ENVIRON`` for an export version other than
    :data:`C.EXPORT_VERSION` (Ganeti's "Wrong export version").
    """
    cfg = _parser()
    try:
        cfg.read_string(text)
    except configparser.Error as err:
        raise errors.OpPrereqError(f"Corrupt export configuration: {err}",
                                   errors.ECODE_INVAL) from None
    for section in (SECT_EXPORT, SECT_INSTANCE):
        if not cfg.has_section(section):
            raise errors.OpPrereqError(f"Corrupt export configuration: no [{section}] "
                                       "section", errors.ECODE_INVAL)
    if not cfg.has_option(SECT_EXPORT, "version"):
        raise errors.OpPrereqError("Corrupt export configuration: no export version",
                                   errors.ECODE_INVAL)
    version = _int(cfg, SECT_EXPORT, "version")
    if version != C.EXPORT_VERSION:
        raise errors.OpPrereqError(f"Wrong export version {version} (wanted "
                                   f"{C.EXPORT_VERSION})", errors.ECODE_ENVIRON)

    def opt(section: str, key: str) -> str | None:
        return cfg.get(section, key) if cfg.has_option(section, key) else None

    ins = SECT_INSTANCE
    info = ExportInfo(
        version=version,
        timestamp=_int(cfg, SECT_EXPORT, "timestamp") if opt(SECT_EXPORT, "timestamp")
        else None,
        source=none_if_none(opt(SECT_EXPORT, "source")),
        os=none_if_none(opt(SECT_EXPORT, "os")),
        compression=opt(SECT_EXPORT, "compression") or "none",
        name=none_if_none(opt(ins, "name")),
        disk_template=none_if_none(opt(ins, "disk_template")),
        hypervisor=none_if_none(opt(ins, "hypervisor")),
        tags=(opt(ins, "tags") or "").split())
    for idx in range(C.MAX_NICS):
        if not cfg.has_option(ins, f"nic{idx}_mac"):
            break
        info.nics.append(ExportNic(**{
            key: none_if_none(opt(ins, f"nic{idx}_{key}"))
            for key in ("mac", "ip", "network", "name", "mode", "link", "vlan")}))
    for idx in range(C.MAX_DISKS):
        if not cfg.has_option(ins, f"disk{idx}_size"):
            continue
        info.disks.append(ExportDisk(
            index=idx, size=_int(cfg, ins, f"disk{idx}_size"),
            dump=none_if_none(opt(ins, f"disk{idx}_dump")),
            iv_name=none_if_none(opt(ins, f"disk{idx}_ivname")),
            name=none_if_none(opt(ins, f"disk{idx}_name"))))
    if cfg.has_section(SECT_HYPERVISOR):
        info.hvparams = dict(cfg.items(SECT_HYPERVISOR))
    if cfg.has_section(SECT_BACKEND):
        info.beparams = dict(cfg.items(SECT_BACKEND))
    else:
        # Old style: backend parameters in the main section.
        info.beparams = {k: v for k in _LEGACY_BE_KEYS
                         if (v := opt(ins, k)) is not None}
    if cfg.has_section(SECT_OS):
        info.osparams = dict(cfg.items(SECT_OS))
    if cfg.has_section(SECT_OS_PRIVATE):
        info.osparams_private = dict(cfg.items(SECT_OS_PRIVATE))
    return info


__all__ = ["EXPORT_DIR", "ExportDisk", "ExportInfo", "ExportNic", "NEW_SUFFIX",
           "build_config_ini", "check_export_name", "disk_file_path", "new_dir_name",
           "none_if_none", "parse_config_ini"]
