"""Node side: files the master distributes (ssconf, CA certificate, RAPI files).

Mirrors ``backend.UploadFile`` and ``ssconf.WriteSsconfFiles``: only files on
an allow-list may be written, every write is atomic (temp file, fsync,
rename) with the requested mode.
"""

from __future__ import annotations

import grp
import logging
import pwd
import re
from pathlib import Path
from typing import Any

from corral import errors
from corral.fileio import write_file_atomic
from corral.paths import Paths, normalize_virtual

log = logging.getLogger(__name__)

# Virtual paths the master may upload (Ganeti: _ALLOWED_UPLOAD_FILES). The
# allowed file storage paths file is not among them: it is node-local and
# written only by the node's administrator (see ensure_file_storage_paths).
ALLOWED_UPLOAD_FILES = frozenset({
    "/var/lib/corral/ca.pem",
    "/var/lib/corral/rapi.pem",
    "/var/lib/corral/rapi/users",
    "/var/lib/corral/cluster-domain-secret",
})
_SSCONF_KEY_RE = re.compile(r"^[a-z_]+$")
_SSCONF_UPLOAD_RE = re.compile(r"^/var/lib/corral/ssconf_[a-z_]+$")
SSCONF_FILE_MODE = 0o644
MAX_SSCONF_SIZE = 128 * 1024


def is_upload_allowed(file_name: str) -> bool:
    """True when ``file_name`` (virtual path) is on the upload allow-list."""
    return file_name in ALLOWED_UPLOAD_FILES or bool(_SSCONF_UPLOAD_RE.match(file_name))


def _resolve_id(value: Any, kind: str) -> int | None:
    if value is None or value == -1 or value == "":
        return None
    if isinstance(value, bool):
        raise errors.RPCFail(f"Invalid {kind} {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return (pwd.getpwnam(value).pw_uid if kind == "user"
                    else grp.getgrnam(value).gr_gid)
        except KeyError:
            raise errors.RPCFail(f"Unknown {kind} '{value}'") from None
    raise errors.RPCFail(f"Invalid {kind} {value!r}")


def _as_bytes(content: Any) -> bytes:
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode("utf-8")
    from corral.rpc.client import decompress_content  # [enc, data] when called directly
    return decompress_content(content)


def upload_file_single(paths: Paths, file_name: str, content: Any, mode: int, uid: Any,
                       gid: Any, atime: float | None, mtime: float | None) -> None:
    """Write one allowed file (Ganeti's ``UploadFile``).

    ``file_name`` is a virtual path from :data:`ALLOWED_UPLOAD_FILES` or an
    ssconf file; ``content`` bytes (noded decodes ``[enc, data]``); ``mode``
    an int; ``uid``/``gid`` ids or names (None/-1: unchanged); ``atime``/
    ``mtime`` seconds (both or neither). Raises :class:`errors.RPCFail`.
    """
    if not isinstance(file_name, str):
        raise errors.RPCFail(f"Invalid file name {file_name!r}")
    try:
        norm = normalize_virtual(file_name)
    except errors.OpPrereqError:
        norm = None
    if norm is None or norm != file_name or not is_upload_allowed(norm):
        raise errors.RPCFail(
            f"File {file_name!r} is not in the list of files that may be uploaded")
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
        raise errors.RPCFail(f"Invalid file mode {mode!r}")
    data = _as_bytes(content)
    try:
        write_file_atomic(paths.real(norm), data, mode, _resolve_id(uid, "user"),
                          _resolve_id(gid, "group"), atime, mtime)
    except OSError as err:
        raise errors.RPCFail(f"Cannot write {file_name}: {err}") from None
    log.info("uploaded %s (%d bytes, mode %o)", file_name, len(data), mode)


def write_ssconf_files(paths: Paths, values: dict[str, Any]) -> None:
    """Write ``ssconf_<key>`` files (Ganeti's ``ssconf.WriteSsconfFiles``).

    ``values`` maps keys (``[a-z_]+``) to text (lists are joined by newlines).
    Raises :class:`errors.RPCFail` for bad keys or values; nothing is written
    then.
    """
    if not isinstance(values, dict):
        raise errors.RPCFail("ssconf values must be a dict")
    prepared: list[tuple[Path, bytes]] = []
    for key, value in values.items():
        if not isinstance(key, str) or not _SSCONF_KEY_RE.match(key):
            raise errors.RPCFail(f"Invalid ssconf key {key!r}")
        if isinstance(value, (list, tuple)):
            value = "\n".join(str(v) for v in value)
        elif value is None:
            value = ""
        elif not isinstance(value, str):
            value = str(value)
        data = value.encode("utf-8")
        if len(data) > MAX_SSCONF_SIZE:
            raise errors.RPCFail(f"ssconf value of {key} is too large ({len(data)} bytes)")
        if data and not data.endswith(b"\n"):
            data += b"\n"
        prepared.append((paths.ssconf(key), data))
    try:
        for path, data in prepared:
            write_file_atomic(path, data, SSCONF_FILE_MODE)
    except OSError as err:
        raise errors.RPCFail(f"Cannot write ssconf files: {err}") from None


def read_ssconf(paths: Paths, key: str) -> str | None:
    """The value of one ssconf key on this node (stripped), or None."""
    if not _SSCONF_KEY_RE.match(key):
        raise errors.ProgrammerError(f"Invalid ssconf key {key!r}")
    try:
        return paths.ssconf(key).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def remove_ssconf_files(paths: Paths) -> None:
    """Remove every ``ssconf_*`` file of this node."""
    for path in paths.ssconf_dir.glob("ssconf_*"):
        if _SSCONF_KEY_RE.match(path.name[len("ssconf_"):]):
            path.unlink(missing_ok=True)


def write_file_storage_paths(paths: Paths, allowed: list[str]) -> None:
    """Write the allowed file storage directories (virtual, one per line).

    Raises :class:`errors.RPCFail` for relative paths or ``..``.
    """
    lines = []
    for entry in allowed:
        try:
            lines.append(normalize_virtual(entry))
        except errors.OpPrereqError as err:
            raise errors.RPCFail(f"Invalid file storage path: {err}") from None
    text = "".join(f"{line}\n" for line in lines)
    try:
        write_file_atomic(paths.file_storage_paths, text.encode("utf-8"), 0o644)
    except OSError as err:
        raise errors.RPCFail(f"Cannot write {paths.file_storage_paths}: {err}") from None


def ensure_file_storage_paths(paths: Paths, defaults: list[str]) -> bool:
    """Create the allowed file storage paths file with ``defaults`` if it is missing.

    Called by the node's own setup (``corral-noded`` start, cluster init),
    never through the API: an existing file is the administrator's and is
    left alone. Returns True when the file was created. Raises
    :class:`errors.RPCFail` as :func:`write_file_storage_paths`.
    """
    if paths.file_storage_paths.exists():
        return False
    write_file_storage_paths(paths, defaults)
    return True


def read_file_storage_paths(paths: Paths) -> list[str]:
    """Allowed file storage directories of this node (virtual paths; comments
    and blank lines skipped, relative or ``..`` entries ignored)."""
    try:
        text = paths.file_storage_paths.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(normalize_virtual(line))
        except errors.OpPrereqError:
            log.warning("ignoring invalid file storage path %r in %s", line,
                        paths.file_storage_paths)
    return out
