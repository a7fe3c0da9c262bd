"""OS definitions shipped with Corral, installed into a node's OS directory.

Corral carries its own OS definitions (Ganeti OS API) as package data under
``corral/data/os/<name>/``; today that is ``busybox``, a tiny ext4 guest
made with busybox-static and e2fsprogs only. A node installs them into
``Paths.os_dir`` (``<root>/srv/corral/os``, first in the OS search path) at
start; the node daemon calls :func:`install_bundled_os`.

Layout after installation::

    srv/corral/os/busybox -> .busybox-<digest>     (symlink, swapped atomically)
    srv/corral/os/.busybox-<digest>/...             (the files, scripts 0755)

Each installed version lives in a hidden directory named after a digest of
its contents (names starting with ``.`` are not OS definitions for
``osdef.diagnose_all``), and the OS name is a symlink replaced with one
``rename(2)``: a script running while the OS is updated finishes with the
old files, the next one sees the new ones, and no reader ever finds the OS
missing or half copied. An OS whose installed files already match is left
alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from corral import errors
from corral.osdef import OS_SCRIPTS
from corral.paths import Paths

log = logging.getLogger(__name__)

DATA_PACKAGE = "corral"
DATA_OS_DIR = ("data", "os")
_EXEC_MODE = 0o755
_FILE_MODE = 0o644


def bundled_os_root() -> Traversable:
    """The package-data directory holding the bundled OS definitions."""
    node = resources.files(DATA_PACKAGE)
    for part in DATA_OS_DIR:
        node = node / part
    return node


def bundled_os_names() -> list[str]:
    """Names of the OS definitions shipped with Corral, sorted."""
    root = bundled_os_root()
    if not root.is_dir():
        return []
    return sorted(e.name for e in root.iterdir()
                  if e.is_dir() and not e.name.startswith((".", "_")))


def _collect(node: Traversable, prefix: str = "") -> dict[str, tuple[bytes, int]]:
    """``relative path -> (content, mode)`` of every file below ``node``.

    Scripts of the OS API (top level ``create``, ``import``, ...) and files
    that are executable in the package are installed 0755, others 0644.
    """
    out: dict[str, tuple[bytes, int]] = {}
    for entry in sorted(node.iterdir(), key=lambda e: e.name):
        if entry.name in ("__pycache__",) or entry.name.endswith((".pyc", "~")):
            continue
        rel = f"{prefix}{entry.name}"
        if entry.is_dir():
            out.update(_collect(entry, rel + "/"))
            continue
        data = entry.read_bytes()
        executable = not prefix and entry.name in OS_SCRIPTS
        if not executable and isinstance(entry, Path):
            executable = bool(entry.stat().st_mode & stat.S_IXUSR)
        out[rel] = (data, _EXEC_MODE if executable else _FILE_MODE)
    return out


def _digest(files: dict[str, tuple[bytes, int]]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        data, mode = files[rel]
        h.update(f"{rel}\0{mode:o}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:16]


def _matches(directory: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    """True when ``directory`` holds exactly ``files`` (content and mode)."""
    found: set[str] = set()
    for dirpath, _dirnames, filenames in os.walk(directory):
        for fname in filenames:
            full = Path(dirpath) / fname
            rel = full.relative_to(directory).as_posix()
            found.add(rel)
            if rel not in files:
                return False
            data, mode = files[rel]
            st = full.lstat()
            if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode:
                return False
            if full.read_bytes() != data:
                return False
    return found == set(files)


def _write_tree(directory: Path, files: dict[str, tuple[bytes, int]]) -> None:
    for rel, (data, mode) in files.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.parent.chmod(0o755)
        with open(target, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        target.chmod(mode)
    directory.chmod(0o755)


def _replace_with_symlink(link: Path, target_name: str) -> None:
    """Make ``link`` a symlink to ``target_name`` in one rename.

    A real directory in the way (an older, hand-made copy) is moved aside
    first and removed afterwards.
    """
    tmp_link = link.with_name(f".{link.name}.link-{os.getpid()}")
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(target_name)
    aside: Path | None = None
    if link.exists() and not link.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{link.name}.old-", dir=link.parent))
        os.rename(link, aside / link.name)
    os.replace(tmp_link, link)
    if aside is not None:
        shutil.rmtree(aside)


def _remove_stale(os_dir: Path, name: str, keep: str) -> None:
    """Remove hidden versions of ``name`` other than ``keep``."""
    for entry in os_dir.iterdir():
        if entry.name != keep and entry.name.startswith(f".{name}-") and \
                entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def install_os_tree(os_dir: Path, name: str, files: dict[str, tuple[bytes, int]]) -> bool:
    """Install one OS definition ``name`` with ``files`` into ``os_dir``.

    ``files`` maps relative paths to ``(content, mode)``. Returns True when
    something changed, False when the installed copy already matched.
    Raises ``OSError`` on file system errors.
    """
    link = os_dir / name
    version = f".{name}-{_digest(files)}"
    current = os_dir / version
    complete = current.is_dir() and not current.is_symlink() and _matches(current, files)
    if complete and link.is_symlink() and os.readlink(link) == version:
        _remove_stale(os_dir, name, version)
        return False
    if not complete:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.new-", dir=os_dir))
        try:
            _write_tree(tmp, files)
            if current.is_symlink() or current.is_file():
                current.unlink()
            elif current.exists():      # a copy modified by hand
                shutil.rmtree(current)
            os.rename(tmp, current)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _replace_with_symlink(link, version)
    _remove_stale(os_dir, name, version)
    return True


def install_bundled_os(paths: Paths) -> list[str]:
    """Install or update every OS definition shipped with Corral on this node.

    Copies ``corral/data/os/<name>/`` into ``paths.os_dir`` as described in
    the module docstring: atomically, with the OS API scripts executable,
    skipping an OS whose installed files are identical. Idempotent; safe to
    call at every node daemon start.

    Returns the names of the OS definitions that were installed or updated
    (empty when all were up to date). Raises :class:`errors.OSError_`
    (``ECODE_ENVIRON``) when the OS directory cannot be written.
    """
    changed: list[str] = []
    try:
        paths.os_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise errors.OSError_(f"Cannot create the OS directory {paths.os_dir}: "
                              f"{err.strerror}", errors.ECODE_ENVIRON) from None
    root = bundled_os_root()
    for name in bundled_os_names():
        files = _collect(root / name)
        try:
            if install_os_tree(paths.os_dir, name, files):
                changed.append(name)
                log.info("installed bundled OS %s into %s", name, paths.os_dir)
        except OSError as err:
            raise errors.OSError_(f"Cannot install the bundled OS {name} into "
                                  f"{paths.os_dir}: {err.strerror or err}",
                                  errors.ECODE_ENVIRON) from None
    return changed
