"""Two node state roots with real cluster certificates, for transfer tests.

Used by ``tests/impexp`` and ``tests/backend/test_impexp.py``: node1 and
node2 get certificates issued by one cluster CA (made with
:mod:`corral.crypto`), file storage, and node2's importer listens on
127.0.2.2. Every transfer left over by a test is cleaned up (processes
killed, directories removed) by :func:`node_pair`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from corral import constants as C
from corral import crypto
from corral.backend import blockdev as bd
from corral.backend import impexp as be
from corral.objects import Disk
from corral.paths import Paths

MIB = 1024 * 1024
FS = "/srv/corral/file-storage"
EXPORT_DIR = "/srv/corral/export"
NODE1_IP = "127.0.2.1"
NODE2_IP = "127.0.2.2"


@dataclass
class CA:
    cert: str
    key: str


@dataclass
class Nodes:
    ca: CA
    n1: Paths
    n2: Paths


def make_ca(name: str = "impexp-test") -> CA:
    cert, key = crypto.create_cluster_ca(name)
    return CA(cert, key)


def make_node(root: Path, name: str, ca: CA, ip: str | None = None) -> Paths:
    """A node root with the CA, node certificates, file storage and (with
    ``ip``) the noded state + ssconf that tell the node its address."""
    paths = Paths(root)
    paths.ensure_dirs()
    crypto.install_node_certs(paths, ca.cert, crypto.issue_node_certs(ca.cert, ca.key, name))
    paths.file_storage_paths.write_text(f"{FS}\n")
    if ip is not None:
        from corral.noded import state

        state.record_joined(paths, "impexp-test", name, f"uuid-{name}")
        paths.ssconf("node_primary_ips").write_text(f"{name} {ip}\nother 127.0.0.9\n")
    return paths


def file_disk(vpath: str, size_mib: int, iv_name: str = "disk/0") -> dict[str, Any]:
    return Disk(dev_type=C.DT_FILE, logical_id=[C.FD_LOOP, vpath], size=size_mib,
                iv_name=iv_name).to_dict()


def create_disk(paths: Paths, vpath: str, size_mib: int, data: bytes | None = None,
                iv_name: str = "disk/0") -> dict[str, Any]:
    """Create a file disk; write ``data`` at its start. Returns the disk dict."""
    disk = file_disk(vpath, size_mib, iv_name)
    bd.blockdev_create(paths, disk, size_mib, "inst1", True, "", False)
    if data:
        with open(paths.real(vpath), "r+b") as fh:
            fh.write(data)
    return disk


def pattern(size: int, seed: int = 1) -> bytes:
    """Data that is half random (incompressible), half repetitive text."""
    half = size // 2
    text = (b"corral impexp test data %d\n" % seed) * ((size - half) // 25 + 1)
    return os.urandom(half) + text[:size - half]


def sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def status(paths: Paths, name: str) -> dict[str, Any]:
    st = be.impexp_status(paths, [name])[0]
    assert st is not None, f"transfer {name} unknown"
    return st


def wait_listen(paths: Paths, name: str, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(paths, name)
        if st["listen_port"]:
            return int(st["listen_port"])
        assert not st["done"], st
        time.sleep(0.05)
    raise AssertionError(f"{name} did not listen within {timeout}s")


def wait_done(paths: Paths, name: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(paths, name)
        if st["done"]:
            return st
        time.sleep(0.05)
    raise AssertionError(f"{name} not done within {timeout}s: {status(paths, name)}")


def wait_progress(paths: Paths, name: str, min_bytes: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(paths, name)
        assert not st["done"], st
        if st["progress_bytes"] >= min_bytes:
            return st
        time.sleep(0.05)
    raise AssertionError(f"{name} made no progress: {status(paths, name)}")


def opts(magic: str = "corral-magic-1", compress: str = "none", **extra: Any) -> dict:
    data = {"magic": magic, "compress": compress, "connect_timeout": 10,
            "connect_retries": 2}
    data.update(extra)
    return data


def start_pair(n_src: Paths, n_dst: Paths, src_io: list[Any], dst_io: list[Any],
               import_opts: dict[str, Any], export_opts: dict[str, Any] | None = None,
               instance: dict[str, Any] | None = None) -> tuple[str, str]:
    """Start the import on ``n_dst`` (listening on NODE2_IP) and the export on
    ``n_src``; returns ``(import_name, export_name)``."""
    iopts = dict(import_opts)
    iopts.setdefault("listen_host", NODE2_IP)
    imp = be.import_start(n_dst, iopts, instance, "disk0", dst_io)
    port = wait_listen(n_dst, imp)
    exp = be.export_start(n_src, dict(export_opts or import_opts), NODE2_IP, port, instance,
                          "disk0", src_io)
    return imp, exp


def refused(ip: str, port: int) -> bool:
    """True when nothing listens on ``ip:port`` (a connect attempt is refused)."""
    try:
        with socket.create_connection((ip, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def pid_of(paths: Paths, name: str) -> int:
    return int((paths.impexp_dir / name / "pid").read_text())


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            out.append(int(entry))
    return out


def wait_group_gone(pgid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        assert time.monotonic() < deadline, f"processes {group_members(pgid)} still running"
        time.sleep(0.05)


def write_os(paths: Paths, name: str, export_body: str, import_body: str) -> None:
    """An API-10 OS definition in the node's own OS directory."""
    d = paths.os_dir / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "ganeti_api_version").write_text("10\n")
    scripts = {"create": "exit 0\n", "rename": "exit 0\n", "export": export_body,
               "import": import_body}
    for script, body in scripts.items():
        path = d / script
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)


def cleanup_all(paths: Paths) -> None:
    try:
        names = os.listdir(paths.impexp_dir)
    except FileNotFoundError:
        return
    for name in names:
        if be.NAME_RE.match(name):
            be.impexp_cleanup(paths, name)


def node_pair(tmp_path: Path) -> Iterator[Nodes]:
    """node1 and node2 of one cluster CA; leftover transfers cleaned up.

    The body of the ``nodes`` fixtures (tests/impexp/conftest.py and
    tests/backend/test_impexp.py).
    """
    ca = make_ca()
    n1 = make_node(tmp_path / "node1", "node1", ca, NODE1_IP)
    n2 = make_node(tmp_path / "node2", "node2", ca, NODE2_IP)
    try:
        yield Nodes(ca, n1, n2)
    finally:
        cleanup_all(n1)
        cleanup_all(n2)


class TransferKiller:
    """Kills the first transfer process of ``mode`` that appears on a node,
    after running ``before(pid)`` (e.g. stopping that node's noded); with
    ``kill=False`` only runs ``before``."""

    def __init__(self, paths: Any, mode: str,
                 before: Callable[[int], None] | None = None, kill: bool = True) -> None:
        self.dir = paths.impexp_dir
        self.mode = mode
        self.before = before
        self.kill = kill
        self.pid: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set() and self.pid is None:
            for entry in (os.listdir(self.dir) if self.dir.is_dir() else []):
                pid_file = self.dir / entry / "pid"
                if entry.startswith(f"{self.mode}-") and pid_file.is_file():
                    try:
                        pid = int(pid_file.read_text())
                    except (ValueError, OSError):
                        continue
                    if self.before is not None:
                        self.before(pid)
                    if self.kill:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
                    self.pid = pid
                    return
            time.sleep(0.01)
