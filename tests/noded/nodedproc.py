"""Helpers for tests that run real corral-noded processes on 127.0.1.x."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from corral import crypto
from corral.noded import state as noded_state
from corral.paths import Paths

START_TIMEOUT = 20.0


def free_port(addr: str) -> int:
    """A port that can currently be bound on ``addr``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((addr, 0))
        return sock.getsockname()[1]


def tcp_answers(addr: str, port: int) -> bool:
    try:
        socket.create_connection((addr, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def make_master(root: Path, cluster_name: str = "cluster.test",
                node_name: str = "master.test") -> Paths:
    """A master state root with the cluster CA and the master's own certificates."""
    paths = Paths(root)
    paths.ensure_dirs()
    crypto.init_cluster_certs(paths, cluster_name, node_name)
    return paths


def preinstall_joined(master: Paths, root: Path, node_name: str, node_uuid: str = "uuid-x",
                      cluster_name: str = "cluster.test") -> Paths:
    """Make ``root`` a joined node without the join protocol (certificates copied)."""
    paths = Paths(root)
    paths.ensure_dirs()
    ca_cert, ca_key = crypto.read_cluster_ca(master)
    crypto.install_node_certs(paths, ca_cert, crypto.issue_node_certs(ca_cert, ca_key, node_name))
    noded_state.record_joined(paths, cluster_name, node_name, node_uuid)
    return paths


class NodedProcess:
    """One corral-noded subprocess; :meth:`stop` is safe to call twice."""

    def __init__(self, root: Path, addr: str, port: int | None = None,
                 token: str | None = None) -> None:
        self.paths = Paths(root)
        self.addr = addr
        self.port = port or free_port(addr)
        self.token = token
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "NodedProcess":
        self.paths.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("CORRAL_JOIN_TOKEN", None)
        if self.token is not None:
            env["CORRAL_JOIN_TOKEN"] = self.token
        self.stderr_path = self.paths.root / "noded.stderr"
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "corral.noded.main", "--root", str(self.paths.root),
                 "--bind", self.addr, "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"noded exited with {self.proc.returncode}:\n{self.log_tail()}")
            if tcp_answers(self.addr, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"noded did not come up:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in (self.stderr_path, self.paths.daemon_log("noded")):
            try:
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
            except FileNotFoundError:
                pass
        return "\n".join(out)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
