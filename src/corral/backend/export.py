"""Node side of instance exports and of the X509 keys of remote transfers.

Mirrors ``ganeti.backend.ExportInfo``, ``FinalizeExport``, ``ListExports``,
``RemoveExport``, ``CreateX509Certificate`` and ``RemoveX509Certificate``;
the procedures ``export_info``, ``finalize_export``, ``export_list``,
``export_remove``, ``x509_cert_create`` and ``x509_cert_remove`` of
:mod:`corral.rpc.defs`, called as ``fn(paths, *args)``.

The export directory is ``paths.export_dir`` (virtual ``/srv/corral/export``),
laid out as :mod:`corral.export_format` describes. Exports are finalized
atomically: ``config.ini`` is written (and synced) into ``NAME.new/`` first,
then ``NAME.new`` takes the place of ``NAME``; a directory whose name ends
in ``.new`` is never listed as an export.

X509 keys (``x509_cert_create``) live in
:func:`corral.backend.impexp.crypto_keys_dir` as ``<name>/key`` and
``<name>/cert`` (mode 0400), where the transfer processes find them by
name (``opts.key_name``). Failures raise :class:`errors.RPCFail`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


from corral import constants as C
from corral import crypto, errors, export_format
from corral.backend.impexp import crypto_keys_dir
from corral.backend.instance import decode_instance
from corral.fileio import fsync_dir, write_file_atomic
from corral.impexp import COMPONENT_RE
from corral.noded import state as noded_state
from corral.paths import Paths, component_path, is_below, normalize_virtual

log = logging.getLogger(__name__)

# Ganeti's _MAX_SSL_CERT_VALIDITY: keys of remote transfers live at most a week.
MAX_X509_VALIDITY = 7 * 24 * 3600
X509_KEY_FILE = "key"
X509_CERT_FILE = "cert"


def _fail(msg: str, ecode: str = errors.ECODE_INVAL) -> errors.RPCFail:
    return errors.RPCFail(msg, ecode)


def _export_root(paths: Paths) -> Path:
    return paths.export_dir


def _export_path(paths: Paths, name: Any) -> Path:
    """Real path of export (directory) ``name`` below the export directory."""
    try:
        export_format.check_export_name(name)
    except errors.OpPrereqError as err:
        raise _fail(str(err)) from None
    return component_path(_export_root(paths), name, what="export name")


# -- exports ---------------------------------------------------------------------------

def export_info(paths: Paths, path: str) -> str:
    """The ``config.ini`` text of the export in directory ``path``.

    ``path`` is a virtual path strictly below the export directory. The file
    must parse, have the ``[export]`` and ``[instance]`` sections, and every
    disk image it names must be present in the directory (so a half-copied
    export is refused here, before anything is created). Raises RPCFail:
    ``ECODE_NOENT`` when there is no export there, ``ECODE_INVAL`` when it is
    corrupt or incomplete.
    """
    base = export_format.EXPORT_DIR
    try:
        norm = normalize_virtual(path)
        if norm == base or not is_below(norm, base):
            raise errors.OpPrereqError(f"'{path}' is not below the export directory {base}")
        real = paths.confine(norm, [base])
    except errors.OpPrereqError as err:
        raise _fail(str(err)) from None
    conf = real / C.EXPORT_CONF_FILE
    try:
        text = conf.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(f"No export found in '{path}' (no {C.EXPORT_CONF_FILE})",
                    errors.ECODE_NOENT) from None
    except (OSError, UnicodeDecodeError) as err:
        raise _fail(f"Cannot read the export configuration in '{path}': {err}") from None
    try:
        info = export_format.parse_config_ini(text)
    except errors.OpPrereqError as err:
        raise _fail(f"Export info file doesn't have the required fields: {err}") from None
    for disk in info.disks:
        if disk.dump is None:
            continue
        image = real / disk.dump
        if "/" in disk.dump or disk.dump in (".", "..") or not image.is_file():
            raise _fail(f"Export in '{path}' is incomplete: the image '{disk.dump}' of "
                        f"disk {disk.index} is missing")
    return text


def finalize_export(paths: Paths, instance: dict[str, Any],
                    snap_disks: list[dict[str, Any] | bool | None]) -> None:
    """Write ``config.ini`` into ``NAME.new`` and make it the export ``NAME``.

    ``instance`` is the RPC instance dict (filled parameters);
    ``snap_disks`` has one entry per disk: the disk dict whose ``uuid``
    names the image in ``NAME.new``, or false for a disk that was not
    exported. An older export ``NAME`` is replaced. Raises RPCFail when an
    image is missing (``ECODE_NOENT``) or the files cannot be written.
    """
    inst = decode_instance(instance)
    if not isinstance(snap_disks, list):
        raise _fail("snap_disks must be a list")
    final = _export_path(paths, inst.name)
    new = _export_path(paths, export_format.new_dir_name(inst.name))
    disks: list[dict[str, Any] | None] = []
    for idx, disk in enumerate(snap_disks):
        if not disk:
            disks.append(None)
            continue
        if not isinstance(disk, dict) or not isinstance(disk.get("uuid"), str) or \
                not COMPONENT_RE.match(disk["uuid"]):
            raise _fail(f"Invalid disk {idx} for the export")
        if not (new / disk["uuid"]).is_file():
            raise _fail(f"The image of disk {idx} is missing in {new.name}",
                        errors.ECODE_NOENT)
        disks.append(disk)
    text = export_format.build_config_ini(instance, disks)
    try:
        new.mkdir(mode=0o750, parents=True, exist_ok=True)
        write_file_atomic(new / C.EXPORT_CONF_FILE, text, mode=0o640)
        old = None
        if final.exists():
            # Out of the way under a hidden name (never listed), then dropped.
            old = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
            os.rename(final, old)
        os.rename(new, final)
        fsync_dir(final.parent)
    except OSError as err:
        raise _fail(f"Cannot finalize the export of {inst.name}: {err}",
                    errors.ECODE_ENVIRON) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info("finalized export of %s (%d disk(s))", inst.name, sum(1 for d in disks if d))


def export_list(paths: Paths) -> list[str]:
    """Names of the exports on this node (sorted).

    Visible directories of the export directory, without the ``NAME.new``
    directories of exports in progress (Ganeti lists every visible entry).
    """
    root = _export_root(paths)
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return []
    except OSError as err:
        raise _fail(f"Cannot list the export directory: {err}", errors.ECODE_ENVIRON) \
            from None
    return sorted(e.name for e in entries
                  if not e.name.startswith(".") and e.is_dir() and not e.is_symlink()
                  and not e.name.endswith(export_format.NEW_SUFFIX))


def export_remove(paths: Paths, export: str) -> None:
    """Remove export ``export`` (also ``NAME.new``) from this node.

    Raises RPCFail ``ECODE_NOENT`` when there is no such export.
    """
    target = _export_path(paths, export)
    if target.is_symlink() or not target.is_dir():
        raise _fail(f"No export '{export}' on this node", errors.ECODE_NOENT)
    try:
        shutil.rmtree(target)
    except OSError as err:
        raise _fail(f"Error while removing the export: {err}", errors.ECODE_ENVIRON) \
            from None


# -- X509 keys of remote transfers -------------------------------------------------------

def _own_name(paths: Paths) -> str:
    try:
        name = noded_state.load_state(paths).node_name
    except errors.ConfigurationError:
        name = None
    return name or "corral-node"


def generate_x509(common_name: str, validity: int) -> tuple[str, str]:
    """A self-signed key and certificate for ``validity`` seconds; ``(key, cert)``."""
    return crypto.create_transfer_cert(common_name, validity)


def x509_cert_create(paths: Paths, validity: int) -> list[str]:
    """Create a key + self-signed certificate valid ``validity`` seconds (at
    most a week); returns ``[name, cert_pem]``. The key never leaves the node."""
    if isinstance(validity, bool) or not isinstance(validity, int) or validity <= 0:
        raise _fail(f"Invalid certificate validity {validity!r}")
    key_pem, cert_pem = generate_x509(_own_name(paths), min(validity, MAX_X509_VALIDITY))
    base = crypto_keys_dir(paths)
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d_%H_%M_%S")
        cert_dir = Path(tempfile.mkdtemp(prefix=f"x509-{stamp}-", dir=base))
    except OSError as err:
        raise _fail(f"Cannot create the key directory: {err}", errors.ECODE_ENVIRON) from None
    try:
        for fname, data in ((X509_KEY_FILE, key_pem), (X509_CERT_FILE, cert_pem)):
            fd = os.open(cert_dir / fname, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(data)
    except OSError as err:
        shutil.rmtree(cert_dir, ignore_errors=True)
        raise _fail(f"Cannot write the X509 key: {err}", errors.ECODE_ENVIRON) from None
    return [cert_dir.name, cert_pem]


def x509_cert_remove(paths: Paths, name: str) -> None:
    """Remove the key and certificate ``name`` made by :func:`x509_cert_create`.

    Raises RPCFail ``ECODE_NOENT`` if there is none by that name.
    """
    if not isinstance(name, str) or not COMPONENT_RE.match(name) or \
            not name.startswith("x509-"):
        raise _fail(f"Invalid X509 key name {name!r}")
    cert_dir = component_path(crypto_keys_dir(paths), name, what="X509 key name")
    if cert_dir.is_symlink() or not cert_dir.is_dir():
        raise _fail(f"No X509 key '{name}' on this node", errors.ECODE_NOENT)
    try:
        shutil.rmtree(cert_dir)
    except OSError as err:
        raise _fail(f"Cannot remove the X509 key '{name}': {err}", errors.ECODE_ENVIRON) \
            from None


__all__ = ["MAX_X509_VALIDITY", "export_info", "export_list", "export_remove",
           "finalize_export", "generate_x509", "x509_cert_create", "x509_cert_remove"]
