"""Every on-disk path of a node, derived from one state root.

Mirrors ``ganeti.pathutils`` and ``ganeti.vcluster``: a node has a *root*
(``--root`` / ``CORRAL_ROOT``, default ``/``) and every file Corral reads or
writes lives below it, with Ganeti's layout (``var/lib/corral``,
``var/run/corral``, ``var/log/corral``, ``etc/corral/hooks``,
``srv/corral/...``). Several nodes can so share one machine in tests.

Paths stored in the cluster configuration (file storage directories, export
directory) are *virtual*: absolute paths as seen with root ``/``. A node turns
them into real paths with :meth:`Paths.real`, and checks with
:meth:`Paths.confine` that they stay inside an allowed directory.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral import errors

ENV_ROOT = "CORRAL_ROOT"

# Ganeti's system OS directories, searched after Corral's own.
SYSTEM_OS_DIRS = ("/srv/ganeti/os", "/usr/share/ganeti/os")


def default_root() -> Path:
    """The state root from ``CORRAL_ROOT``, or ``/``."""
    return Path(os.environ.get(ENV_ROOT) or "/")


def normalize_virtual(path: str) -> str:
    """Normalize a virtual absolute path and refuse ``..`` components.

    Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``) for relative paths
    or paths containing ``..`` (before normalization, so ``/a/../b`` is
    refused rather than silently rewritten).
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise errors.OpPrereqError(f"Path '{path}' is not absolute", errors.ECODE_INVAL)
    if "\x00" in path:
        raise errors.OpPrereqError("Path contains a NUL byte", errors.ECODE_INVAL)
    if ".." in path.split("/"):
        raise errors.OpPrereqError(f"Path '{path}' contains '..'", errors.ECODE_INVAL)
    return posixpath.normpath(path)


# Longest file name most file systems accept (NAME_MAX), in bytes.
MAX_COMPONENT_BYTES = 255


def safe_component(name: Any, what: str = "name") -> str:
    """Check that ``name`` is one safe path component and return it unchanged.

    The one confining helper for every path built from an instance, node,
    export, transfer, key, OS or console name (master and node side alike):
    a component is a non-empty string that is not ``.`` or ``..``, holds no
    ``/``, NUL or other control character and is at most
    :data:`MAX_COMPONENT_BYTES` bytes in UTF-8. ``what`` names the value in
    the error. Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``).
    """
    if not isinstance(name, str) or not name:
        raise errors.OpPrereqError(f"Invalid {what} {name!r}: not a non-empty string",
                                   errors.ECODE_INVAL)
    if name in (".", "..") or "/" in name or any(ord(c) < 0x20 or ord(c) == 0x7f
                                                 for c in name):
        raise errors.OpPrereqError(f"Invalid {what} {name!r}: not a single path component",
                                   errors.ECODE_INVAL)
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise errors.OpPrereqError(f"Invalid {what} {name!r}: not valid UTF-8",
                                   errors.ECODE_INVAL) from None
    if size > MAX_COMPONENT_BYTES:
        raise errors.OpPrereqError(f"Invalid {what}: {size} bytes, at most "
                                   f"{MAX_COMPONENT_BYTES} allowed", errors.ECODE_INVAL)
    return name


def component_path(directory: str | os.PathLike[str], name: Any, *, prefix: str = "",
                   suffix: str = "", what: str = "name") -> Path:
    """``directory / (prefix + name + suffix)`` with ``name`` checked by
    :func:`safe_component`, and the whole file name too (so a suffix cannot
    push it over the length limit). Raises :class:`errors.OpPrereqError`
    (``ECODE_INVAL``)."""
    safe_component(name, what)
    return Path(directory) / safe_component(f"{prefix}{name}{suffix}", what)


def is_below(path: str, base: str) -> bool:
    """True when normalized virtual ``path`` equals ``base`` or lies below it."""
    base = posixpath.normpath(base)
    return path == base or path.startswith(base.rstrip("/") + "/")


# Ganeti's _GetForbiddenFileStoragePaths: system directories that may never
# hold (or be below) an allowed file storage directory.
FORBIDDEN_FILE_STORAGE_PATHS = frozenset(
    ["/boot", "/dev", "/etc", "/home", "/proc", "/root", "/sys"]
    + [f"{pfx}/{d}" for pfx in ("", "/usr", "/usr/local")
       for d in ("bin", "lib", "lib32", "lib64", "sbin")])


def is_forbidden_file_storage_path(path: str) -> bool:
    """True for ``/`` and (paths below) system directories (normalized virtual path)."""
    return path == "/" or any(is_below(path, f) for f in FORBIDDEN_FILE_STORAGE_PATHS)


def check_storage_dir(path: Any) -> str:
    """A cluster file storage directory: absolute, no ``..``, not a system
    directory (Ganeti's ``CheckFileStoragePathAcceptance`` static part).
    Returns it normalized. Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``).
    """
    norm = normalize_virtual(path)
    if is_forbidden_file_storage_path(norm):
        raise errors.OpPrereqError(f"Path '{norm}' is a system directory and can never "
                                   "hold file storage", errors.ECODE_INVAL)
    return norm


@dataclass(frozen=True)
class Paths:
    """Paths of one node below ``root``."""

    root: Path

    @classmethod
    def from_env(cls, root: str | os.PathLike[str] | None = None) -> "Paths":
        return cls(Path(root) if root else default_root())

    # -- mapping of virtual paths -------------------------------------------------
    def real(self, virtual: str) -> Path:
        """Real path of a virtual absolute path on this node."""
        virtual = normalize_virtual(virtual)
        return self.root / virtual.lstrip("/")

    def virtual(self, real: str | os.PathLike[str]) -> str:
        """Virtual path of a real path below this root."""
        rel = os.path.relpath(os.fspath(real), os.fspath(self.root))
        if rel.startswith(".."):
            raise errors.ProgrammerError(f"{real} is not below root {self.root}")
        return "/" + ("" if rel == "." else rel)

    def confine(self, virtual: str, allowed: list[str] | tuple[str, ...]) -> Path:
        """Real path of ``virtual`` after checking it lies inside ``allowed``.

        ``allowed`` holds virtual directories. Symlinks are resolved on both
        sides, so a link pointing out of an allowed directory is refused.
        Raises :class:`errors.OpPrereqError` with ``ECODE_INVAL``.
        """
        norm = normalize_virtual(virtual)
        if not any(is_below(norm, a) for a in allowed):
            raise errors.OpPrereqError(
                f"Path '{virtual}' is not inside the allowed directories "
                f"({', '.join(allowed) or 'none configured'})", errors.ECODE_INVAL)
        real = self.real(norm)
        resolved = Path(os.path.realpath(real))
        for a in allowed:
            base = Path(os.path.realpath(self.real(a)))
            if resolved == base or base in resolved.parents:
                return real
        raise errors.OpPrereqError(
            f"Path '{virtual}' resolves outside the allowed directories",
            errors.ECODE_INVAL)

    # -- top-level directories ----------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.root / "var/lib/corral"

    @property
    def run_dir(self) -> Path:
        return self.root / "var/run/corral"

    @property
    def log_dir(self) -> Path:
        return self.root / "var/log/corral"

    @property
    def conf_dir(self) -> Path:
        return self.root / "etc/corral"

    @property
    def hooks_dir(self) -> Path:
        return self.conf_dir / "hooks"

    @property
    def os_dir(self) -> Path:
        """Corral's own OS directory on this node (first in the search path)."""
        return self.root / "srv/corral/os"

    @property
    def export_dir(self) -> Path:
        return self.root / "srv/corral/export"

    @property
    def default_file_storage_dir(self) -> Path:
        return self.root / "srv/corral/file-storage"

    @property
    def default_shared_file_storage_dir(self) -> Path:
        return self.root / "srv/corral/shared-file-storage"

    def os_search_path(self) -> list[Path]:
        """Directories searched for OS definitions, in order."""
        return [self.os_dir, *(Path(d) for d in SYSTEM_OS_DIRS)]

    # -- files in data_dir --------------------------------------------------------
    @property
    def config_db(self) -> Path:
        """The cluster configuration (SQLite) on the master and its replicas."""
        return self.data_dir / "config.db"

    @property
    def queue_db(self) -> Path:
        """The job queue (SQLite), on the master."""
        return self.data_dir / "queue.db"

    @property
    def cluster_cert(self) -> Path:
        """Cluster CA certificate and key (PEM); also noded's server certificate."""
        return self.data_dir / "server.pem"

    @property
    def client_cert(self) -> Path:
        """This node's client certificate and key, signed by the cluster CA."""
        return self.data_dir / "client.pem"

    @property
    def rapi_cert(self) -> Path:
        return self.data_dir / "rapi.pem"

    @property
    def rapi_users(self) -> Path:
        return self.data_dir / "rapi/users"

    @property
    def cluster_domain_secret(self) -> Path:
        return self.data_dir / "cluster-domain-secret"

    @property
    def ssconf_dir(self) -> Path:
        """Small files every node keeps about the cluster (master name, ...)."""
        return self.data_dir

    def ssconf(self, key: str) -> Path:
        return self.data_dir / f"ssconf_{key}"

    @property
    def join_tokens(self) -> Path:
        """Master side: outstanding node join tokens (secret, mode 0600)."""
        return self.data_dir / "join-tokens.json"

    @property
    def noded_state(self) -> Path:
        """Node side: join token and membership state of noded (mode 0600)."""
        return self.data_dir / "noded-state.json"

    @property
    def file_storage_paths(self) -> Path:
        """Allowed file storage directories (virtual paths, one per line)."""
        return self.conf_dir / "file-storage-paths"

    # -- files in run_dir ---------------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        return self.run_dir / "socket"

    @property
    def master_socket(self) -> Path:
        """Unix socket of masterd's client API (the LUXI equivalent)."""
        return self.socket_dir / "corral-master"

    def pid_file(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.pid"

    def hypervisor_run_dir(self, hv_name: str) -> Path:
        return self.run_dir / f"{hv_name}-hypervisor"

    @property
    def instance_disks_dir(self) -> Path:
        return self.run_dir / "instance-disks"

    @property
    def instance_reason_dir(self) -> Path:
        return self.run_dir / "instance-reason"

    @property
    def impexp_dir(self) -> Path:
        return self.run_dir / "import-export"

    @property
    def os_log_dir(self) -> Path:
        return self.log_dir / "os"

    def daemon_log(self, daemon: str) -> Path:
        return self.log_dir / f"{daemon}.log"

    def ensure_dirs(self) -> None:
        """Create the directory layout (idempotent)."""
        for d in (self.data_dir, self.data_dir / "rapi", self.run_dir, self.socket_dir,
                  self.log_dir, self.os_log_dir, self.hooks_dir, self.os_dir,
                  self.export_dir, self.default_file_storage_dir,
                  self.default_shared_file_storage_dir, self.instance_disks_dir,
                  self.instance_reason_dir, self.impexp_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
