"""``gnt-instance console`` and RAPI ``/2/instances/NAME/console`` on real clusters.

The KVM tests run a 2-node dev cluster with real qemu booting the busybox
OS on node2, and reach its serial console from node1 (the master's state
root) through node2's noded: non-interactively (``--until``, ``--lines``),
through a pipe, and on a pseudo-terminal (raw mode, Ctrl-] detaches, the
terminal is restored).
"""

from __future__ import annotations

import os
import pty
import select
import shlex
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral import constants as C

BOOT_TIMEOUT = 180
NOOP = "noop"
VENV_BIN = Path(sys.executable).parent

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def _run(client: Any, *ops: dict[str, Any]) -> list[Any]:
    return client.wait_job(client.submit_job(list(ops)), timeout=600)


def _rapi(cluster: Any, path: str) -> httpx.Response:
    users = cluster.master_paths.rapi_users
    users.parent.mkdir(parents=True, exist_ok=True)
    if not users.exists():
        users.write_text("reader secret read\n")
    base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
    with httpx.Client(verify=False, timeout=60, trust_env=False) as http:
        return http.get(f"{base}{path}", auth=("reader", "secret"))


# -- fake hypervisor: a "msg" console -------------------------------------------------------

@pytest.mark.integration
def test_fake_instance_console_is_a_message(dev_cluster: Callable[..., Any], run_cli: RunCli,
                                            ganeti_os_noop: Path) -> None:
    cluster = dev_cluster(1)
    with cluster.client(timeout=120) as client:
        _run(client, {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "f1", "mode": "create",
                      "disk_template": C.DT_DISKLESS, "os_type": NOOP, "pnode": "node1",
                      "disks": [], "nics": [], "name_check": False, "ip_check": False})
        res = run_cli(["gnt-instance", "console", "f1"], cluster)
        assert res.returncode == 0, res.stderr
        assert res.stdout == "Console not available for fake hypervisor\n"
        resp = _rapi(cluster, "/2/instances/f1/console")
        assert resp.status_code == 200
        assert resp.json() == {"instance": "f1", "kind": "msg",
                               "message": "Console not available for fake hypervisor"}
        _run(client, {"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "f1"})
        res = run_cli(["gnt-instance", "console", "f1"], cluster)
        assert res.returncode == 1
        assert "Instance f1 is not running" in res.stderr and "cannot get console" in res.stderr
        resp = _rapi(cluster, "/2/instances/f1/console")
        assert resp.status_code == 503 and "not running" in resp.json()["message"]
        assert _rapi(cluster, "/2/instances/nosuch/console").status_code == 404
        res = run_cli(["gnt-instance", "console", "nosuch"], cluster)
        assert res.returncode == 1 and "nosuch" in res.stderr


# -- KVM: the serial console through node2's noded -------------------------------------------

@pytest.fixture(scope="module")
def kvm_cluster(module_dev_cluster: Callable[..., Any]) -> Any:
    cluster = module_dev_cluster(2, hypervisors=(C.HT_KVM,))
    with cluster.client(timeout=120) as client:
        _run(client, {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "con1",
                      "mode": "create", "disk_template": C.DT_FILE,
                      "os_type": "busybox+default", "pnode": "node2", "disks": [{"size": 256}],
                      "nics": [{}], "name_check": False, "ip_check": False,
                      "beparams": {"maxmem": 128, "minmem": 128}})
    return cluster


def _console(run_cli: RunCli, cluster: Any, *args: str, input: str | None = None,
             timeout: float = BOOT_TIMEOUT + 60) -> subprocess.CompletedProcess[str]:
    """``gnt-instance console`` run with node1's (the master's) state root."""
    return run_cli(["gnt-instance", "console", *args], cluster, input=input, timeout=timeout)


@pytest.mark.integration
@pytest.mark.kvm
def test_until_lines_and_show_cmd(kvm_cluster: Any, run_cli: RunCli) -> None:
    node2 = kvm_cluster.node("node2")
    res = _console(run_cli, kvm_cluster, "con1", "--until", "login:",
                   "--timeout", str(BOOT_TIMEOUT))
    assert res.returncode == 0, res.stderr
    assert "login:" in res.stdout
    # The prompt was printed before this second look: the node's log has it.
    res = _console(run_cli, kvm_cluster, "con1", "--until", "login:", "--timeout", "20")
    assert res.returncode == 0 and "login:" in res.stdout
    res = _console(run_cli, kvm_cluster, "con1", "--lines", "3")
    assert res.returncode == 0 and "login:" in res.stdout
    assert "Linux version" not in res.stdout        # only the end of the boot
    # The whole boot is in the log, though nobody was attached during it.
    res = _console(run_cli, kvm_cluster, "con1", "--lines", "100000")
    assert res.returncode == 0 and "Linux version" in res.stdout
    res = _console(run_cli, kvm_cluster, "con1", "--until", "never-printed", "--timeout", "2")
    assert res.returncode == 1 and "not seen on the console of con1" in res.stderr

    res = _console(run_cli, kvm_cluster, "con1", "--show-cmd")
    assert res.returncode == 0
    assert res.stdout == f"gnt-instance console --node {node2.ip}:{node2.noded_port} con1\n"
    # The printed command works without the master, from any node's root.
    argv = shlex.split(res.stdout)
    for node in ("node1", "node2"):
        res = run_cli([*argv, "--until", "login:", "--timeout", "20"],
                      kvm_cluster.node(node).root)
        assert res.returncode == 0 and "login:" in res.stdout, res.stderr


@pytest.mark.integration
@pytest.mark.kvm
def test_pipe_session(kvm_cluster: Any, run_cli: RunCli) -> None:
    assert _console(run_cli, kvm_cluster, "con1", "--until", "login:",
                    "--timeout", str(BOOT_TIMEOUT)).returncode == 0
    # An interactive session sends no history: "login:" comes from getty,
    # answering the empty line.
    res = _console(run_cli, kvm_cluster, "con1", input="\n", timeout=60)
    assert res.returncode == 0, res.stderr
    assert "login:" in res.stdout
    res = _console(run_cli, kvm_cluster, "con1", "--send", r"\n", "--until", "login:",
                   "--timeout", "30")
    assert res.returncode == 0 and "login:" in res.stdout
    # Ctrl-] in the input detaches at once; what follows is not typed.
    start = time.monotonic()
    res = _console(run_cli, kvm_cluster, "con1", input="\x1droot\n", timeout=60)
    assert res.returncode == 0 and time.monotonic() - start < 20


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while needle not in got:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen; got {got[-500:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    return got


@pytest.mark.integration
@pytest.mark.kvm
def test_terminal_session(kvm_cluster: Any, run_cli: RunCli) -> None:
    assert _console(run_cli, kvm_cluster, "con1", "--until", "login:",
                    "--timeout", str(BOOT_TIMEOUT)).returncode == 0
    master_fd, slave_fd = pty.openpty()
    before = termios.tcgetattr(slave_fd)
    env = dict(os.environ, CORRAL_ROOT=str(kvm_cluster.master_paths.root))
    proc = subprocess.Popen([str(VENV_BIN / "gnt-instance"), "console", "con1"],
                            stdin=slave_fd, stdout=slave_fd, stderr=slave_fd, env=env)
    try:
        out = _read_until(master_fd, b"escape character is ^]", 60)
        assert b"Connected to the console of con1 on node2" in out
        # Raw mode: a carriage return goes through as is and getty answers.
        os.write(master_fd, b"\r")
        _read_until(master_fd, b"login:", 30)
        os.write(master_fd, b"\x1d")
        assert proc.wait(20) == 0
        # The terminal is back in its previous mode.
        assert termios.tcgetattr(slave_fd) == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master_fd)
        os.close(slave_fd)


@pytest.mark.integration
@pytest.mark.kvm
def test_rapi_console_and_stopped_instance(kvm_cluster: Any, run_cli: RunCli) -> None:
    node2 = kvm_cluster.node("node2")
    resp = _rapi(kvm_cluster, "/2/instances/con1/console")
    assert resp.status_code == 200, resp.text
    console = resp.json()
    assert console["instance"] == "con1" and console["kind"] == C.CONS_SSH
    assert console["host"] == node2.ip and console["user"] == "root"
    assert console["command"][-1].endswith("/con1.serial")
    with kvm_cluster.client(timeout=120) as client:
        _run(client, {"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "con1",
                      "timeout": 0})
        try:
            res = _console(run_cli, kvm_cluster, "con1", "--until", "login:")
            assert res.returncode == 1
            assert "Instance con1 is not running" in res.stderr
            assert "cannot get console" in res.stderr
            resp = _rapi(kvm_cluster, "/2/instances/con1/console")
            assert resp.status_code == 503
            # Directly on the node: refused with the node's reason.
            res = _console(run_cli, kvm_cluster, "con1", "--node",
                           f"{node2.ip}:{node2.noded_port}", "--lines", "5")
            assert res.returncode == 1
            assert "Instance con1 is not running on this node" in res.stderr
        finally:
            _run(client, {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "con1"})
