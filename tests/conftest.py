"""Shared fixtures: development clusters, the master client, running the CLI.

* ``dev_cluster(n, **kw)``: factory; starts an ``n``-node cluster
  (:func:`corral.devcluster.up`) in a fresh short temporary directory on a
  free loopback range (127.0.2.x, 127.0.3.x, ...), stopped with
  :func:`corral.devcluster.down` at the end of the test even on failure.
* ``module_dev_cluster``: the same factory, clusters kept for the whole module.
* ``shared_cluster``: one 3-node cluster per test session on 127.0.1.x (or
  the next free range); tests using it must leave it as they found it.
* ``master_client(cluster_or_paths)``: a :class:`MasterClient`, closed after the test.
* ``run_cli(args, root, ...)``: run a console script (``corral``, ``gnt-*``)
  as a subprocess with ``CORRAL_ROOT=root``; returns ``CompletedProcess``.
* ``loopback_base(n)``, ``short_tmp``: a free 127.W.X range; a short temp directory.
* ``ganeti_os_noop``: makes sure Debian's ``ganeti-os-noop`` OS is installed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral.paths import Paths

VENV_BIN = Path(sys.executable).parent
NOOP_OS_DIR = Path("/usr/share/ganeti/os/noop")

_range_lock = threading.Lock()
# base -> open lock file: held while a cluster of this session uses the
# range, so concurrent test sessions on this machine pick different ranges.
_ranges_in_use: dict[str, Any] = {}
RANGE_LOCK_DIR = Path("/tmp/corral-test-ranges")


def _worker_index() -> int:
    """pytest-xdist worker number (0 without xdist)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else 0


def _addr_free(ip: str, port: int) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((ip, port))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def pick_base(n: int, first: int = 2, noded_port: int = C.DEFAULT_NODED_PORT,
              rapi_port: int = C.DEFAULT_RAPI_PORT) -> str:
    """A free ``127.W.X`` range for an ``n``-node cluster (W = xdist worker).

    Free means: not used by another cluster of this session and nodeK's
    noded port (and node1's RAPI port) can be bound.
    """
    worker = _worker_index()
    with _range_lock:
        for third in range(first, 255):
            base = f"127.{worker}.{third}"
            if base in _ranges_in_use:
                continue
            lock = _lock_range(base)
            if lock is None:
                continue
            ips = [f"{base}.{k}" for k in range(1, n + 1)]
            if all(_addr_free(ip, noded_port) for ip in ips) and \
                    _addr_free(ips[0], rapi_port):
                _ranges_in_use[base] = lock
                return base
            lock.close()
    raise RuntimeError("No free loopback address range for a dev cluster")


def _lock_range(base: str) -> Any:
    """An flock'ed file for ``base``, or None if another session holds it."""
    RANGE_LOCK_DIR.mkdir(mode=0o777, exist_ok=True)
    fh = open(RANGE_LOCK_DIR / f"{base}.lock", "a")  # noqa: SIM115 - kept open
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def release_base(base: str) -> None:
    with _range_lock:
        lock = _ranges_in_use.pop(base, None)
    if lock is not None:
        lock.close()


def short_tmpdir(prefix: str) -> Path:
    """A new directory with a short path (unix socket paths are limited to 107
    bytes, and each node's socket lives several levels below it)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")).resolve()


class _ClusterFactory:
    def __init__(self) -> None:
        self.created: list[tuple[Path, str]] = []

    def __call__(self, n: int = 1, **kwargs: Any) -> Any:
        from corral import devcluster

        base = kwargs.pop("base", None)
        own_base = base is None
        if own_base:
            base = pick_base(n, noded_port=kwargs.get("noded_port", C.DEFAULT_NODED_PORT),
                             rapi_port=kwargs.get("rapi_port", C.DEFAULT_RAPI_PORT))
        directory = short_tmpdir("corral-dc-")
        self.created.append((directory, base if own_base else ""))
        return devcluster.up(n, directory, base=base, **kwargs)

    def cleanup(self) -> None:
        from corral import devcluster

        for directory, base in reversed(self.created):
            try:
                devcluster.down(directory, purge=True)
            finally:
                if base:
                    release_base(base)
                shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def dev_cluster() -> Iterator[Callable[..., Any]]:
    """Factory: ``dev_cluster(n=1, **devcluster.up kwargs) -> DevCluster``."""
    factory = _ClusterFactory()
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture(scope="module")
def module_dev_cluster() -> Iterator[Callable[..., Any]]:
    """As ``dev_cluster``, but the clusters live until the end of the test module."""
    factory = _ClusterFactory()
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[Any]:
    """A 3-node dev cluster shared by the whole session (127.0.1.x if free)."""
    factory = _ClusterFactory()
    base = pick_base(3, first=1)
    try:
        yield factory(3, base=base)
    finally:
        factory.cleanup()
        release_base(base)


@pytest.fixture
def master_client() -> Iterator[Callable[[Any], Any]]:
    """``master_client(cluster_or_paths_or_root) -> MasterClient`` (closed after the test)."""
    from corral.masterd.client import MasterClient

    clients: list[MasterClient] = []

    def make(target: Any, timeout: float = 60.0) -> MasterClient:
        if hasattr(target, "master_paths"):
            paths = target.master_paths
        elif isinstance(target, Paths):
            paths = target
        else:
            paths = Paths(Path(target))
        client = MasterClient(paths, timeout=timeout)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _run_cli(args: list[str], root: Any, input: str | None = None,
             timeout: float = 300.0, env: dict[str, str] | None = None,
             check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a console script (``args[0]``, e.g. ``gnt-instance``) with CORRAL_ROOT=root."""
    if hasattr(root, "master_paths"):
        root = root.master_paths.root
    elif isinstance(root, Paths):
        root = root.root
    program = VENV_BIN / args[0]
    argv = [str(program) if program.exists() else args[0], *map(str, args[1:])]
    full_env = dict(os.environ)
    full_env["CORRAL_ROOT"] = str(root)
    full_env.update(env or {})
    return subprocess.run(argv, input=input, capture_output=True, text=True,
                          timeout=timeout, env=full_env, check=check)


@pytest.fixture(scope="session")
def rapi_users() -> Callable[[Any, str], None]:
    """``rapi_users(cluster, text)``: write the master's RAPI users file
    (``"user password write\n..."``, Ganeti's format)."""
    def write(cluster: Any, text: str) -> None:
        users = cluster.master_paths.rapi_users
        users.parent.mkdir(parents=True, exist_ok=True)
        users.write_text(text)
    return write


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_cli(args, root, input=None, timeout=300, env=None, check=False)``."""
    return _run_cli


@pytest.fixture(scope="session")
def ganeti_os_noop() -> Path:
    """The directory of Debian's ``noop`` OS definition, installed if missing."""
    if not NOOP_OS_DIR.is_dir():
        from corral.process import run_command

        res = run_command(["apt-get", "install", "-y", "ganeti-os-noop"], timeout=900,
                          env={"DEBIAN_FRONTEND": "noninteractive"})
        if res.failed or not NOOP_OS_DIR.is_dir():
            pytest.fail(f"Cannot install ganeti-os-noop: {res.fail_reason()}\n{res.output}")
    return NOOP_OS_DIR


@pytest.fixture
def loopback_base() -> Iterator[Callable[[int], str]]:
    """``loopback_base(n) -> "127.W.X"``: a free range for n nodes, released after the test."""
    taken: list[str] = []

    def take(n: int) -> str:
        base = pick_base(n)
        taken.append(base)
        return base

    yield take
    for base in taken:
        release_base(base)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (for state roots with sockets)."""
    directory = short_tmpdir("corral-t-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
