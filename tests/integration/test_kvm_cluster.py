"""Acceptance tests of KVM instances on a real 2-node dev cluster.

Real qemu (TCG here, KVM where hardware virtualization exists) booting the
busybox OS shipped with Corral: creation on node2, graceful and forced
shutdown, startup, soft and hard reboot seen on the serial console, removal
leaving nothing behind, a qemu killed behind Corral's back, and a node daemon
restart that does not disturb running instances.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import daemons
from corral.hypervisor.kvm.console import SerialReader

pytestmark = [pytest.mark.integration, pytest.mark.kvm]

BOOT_TIMEOUT = 120
READY = r"corral-guest: {name} ready"


@pytest.fixture(scope="module")
def kvm_cluster(module_dev_cluster: Any) -> Any:
    return module_dev_cluster(2, hypervisors=(C.HT_KVM,))


@pytest.fixture
def client(kvm_cluster: Any) -> Any:
    with kvm_cluster.client(timeout=120) as c:
        yield c


def _run(client: Any, *ops: dict[str, Any]) -> list[Any]:
    return client.wait_job(client.submit_job(list(ops)), timeout=600)


def _create(client: Any, name: str, node: str, os_type: str = "busybox+default") -> None:
    _run(client, {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
                  "disk_template": "file", "os_type": os_type, "pnode": node,
                  "disks": [{"size": 256}], "nics": [{}], "name_check": False,
                  "ip_check": False, "beparams": {"maxmem": 128, "minmem": 128}})


def _status(client: Any, name: str) -> str:
    rows = client.query("instance", ["name", "status"])["data"]
    return {r[0][1]: r[1][1] for r in rows}[name]


def _kvm_dir(cluster: Any, node: str) -> Path:
    return cluster.node(node).paths.hypervisor_run_dir(C.HT_KVM)


def _serial(cluster: Any, node: str, name: str) -> Path:
    return _kvm_dir(cluster, node) / "ctrl" / f"{name}.serial"


def _qemu_pids(name: str) -> list[int]:
    """Pids of qemu processes started with ``-name <name>`` (exact argv match)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or b"qemu-system" not in argv[0]:
            continue
        for i, arg in enumerate(argv[:-1]):
            if arg == b"-name" and argv[i + 1].split(b",")[0] == name.encode():
                pids.append(int(proc.name))
    return pids


def _verify(client: Any) -> tuple[bool, list[str]]:
    result = _run(client, {"OP_ID": "OP_CLUSTER_VERIFY"})[0]
    lines: list[str] = []
    ok = True
    for success, job_id in result["jobs"]:
        assert success, job_id
        res = client.wait_job(job_id, feedback_fn=lambda e: lines.append(e[2]), timeout=120)
        ok = ok and all(res)
    return ok, lines


def test_lifecycle_on_node2(kvm_cluster: Any, client: Any) -> None:
    name = "kvm1"
    _create(client, name, "node2")
    assert _status(client, name) == "running"
    with SerialReader(_serial(kvm_cluster, "node2", name), reconnect=True) as console:
        console.wait_for(READY.format(name=name), BOOT_TIMEOUT)
        console.wait_for("login:", BOOT_TIMEOUT)

        # Graceful shutdown: the guest sees the power button and powers off.
        t0 = time.monotonic()
        _run(client, {"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": name,
                      "timeout": 60})
        assert time.monotonic() - t0 < 55
        console.wait_for("power button pressed", 10)
        assert not _qemu_pids(name)
        assert _status(client, name) == "ADMIN_down"

        mark = len(console.text())
        _run(client, {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": name})
        console.wait_for(READY.format(name=name), BOOT_TIMEOUT, start=mark)
        console.wait_for("login:", BOOT_TIMEOUT, start=mark)

        for kind in ("soft", "hard"):
            mark = len(console.text())
            _run(client, {"OP_ID": "OP_INSTANCE_REBOOT", "instance_name": name,
                          "reboot_type": kind, "shutdown_timeout": 60})
            console.wait_for(READY.format(name=name), BOOT_TIMEOUT, start=mark)
            console.wait_for("login:", BOOT_TIMEOUT, start=mark)
        assert _status(client, name) == "running"

        # A guest that ignores the power button is stopped after the timeout.
        mark = len(console.text())
        console.send("root\n")
        console.wait_for("#", 30, start=mark)
        # $((6*7)) keeps the marker out of the echoed command line.
        console.send("killall acpid; echo acpid-gone-$((6*7))\n")
        console.wait_for("acpid-gone-42", 30, start=mark)
        mark = len(console.text())
        t0 = time.monotonic()
        _run(client, {"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": name, "timeout": 6})
        elapsed = time.monotonic() - t0
        assert elapsed >= 6, (elapsed, console.text()[mark:])
        assert "power button pressed" not in console.text()[mark:]
        assert not _qemu_pids(name)

    kvm_dir = _kvm_dir(kvm_cluster, "node2")
    _run(client, {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": name})
    taps = [f.read_text().strip() for f in (kvm_dir / "nic" / name).glob("*")]
    assert taps and all(Path(f"/sys/class/net/{t}").exists() for t in taps)
    _run(client, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                  "shutdown_timeout": 30})
    assert not _qemu_pids(name)
    assert not list(kvm_dir.glob(f"ctrl/{name}.*"))
    assert not (kvm_dir / "pid" / name).exists()
    assert not (kvm_dir / "nic" / name).exists()
    assert not any(Path(f"/sys/class/net/{t}").exists() for t in taps)
    storage = kvm_cluster.node("node2").paths.root / "srv/corral/file-storage" / name
    assert not storage.exists()


def test_qemu_killed_behind_corrals_back(kvm_cluster: Any, client: Any) -> None:
    name = "kvm2"
    _create(client, name, "node1")
    with SerialReader(_serial(kvm_cluster, "node1", name), reconnect=True) as console:
        console.wait_for("login:", BOOT_TIMEOUT)
    pids = _qemu_pids(name)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _qemu_pids(name) and time.monotonic() < deadline:
        time.sleep(0.2)

    assert _status(client, name) == "ERROR_down"
    ok, lines = _verify(client)
    assert not ok
    assert any(name in line and "not running" in line for line in lines), lines

    mark = 0
    _run(client, {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": name})
    with SerialReader(_serial(kvm_cluster, "node1", name), reconnect=True) as console:
        console.wait_for("login:", BOOT_TIMEOUT, start=mark)
    assert _status(client, name) == "running"
    ok, lines = _verify(client)
    assert ok, lines
    _run(client, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                  "shutdown_timeout": 30})


def test_noded_restart_keeps_instances_running(kvm_cluster: Any, client: Any) -> None:
    name = "kvm3"
    _create(client, name, "node2")
    with SerialReader(_serial(kvm_cluster, "node2", name), reconnect=True) as console:
        console.wait_for("login:", BOOT_TIMEOUT)
    pids = _qemu_pids(name)
    node2 = kvm_cluster.node("node2")
    assert daemons.stop_daemon(node2.paths, daemons.NODED)
    assert _qemu_pids(name) == pids
    daemons.start_noded(node2.paths, node2.ip, node2.noded_port)
    assert _qemu_pids(name) == pids
    assert _status(client, name) == "running"
    ok, lines = _verify(client)
    assert ok, lines
    # Corral still manages it after the restart.
    _run(client, {"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": name, "timeout": 60})
    assert not _qemu_pids(name)
    _run(client, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                  "shutdown_timeout": 30})


@pytest.mark.slow
def test_debootstrap_instance_reaches_login(kvm_cluster: Any, client: Any) -> None:
    """Debian's unmodified ganeti-instance-debootstrap, through the cluster."""
    from corral.debootstrap_os import configure_debootstrap

    configure_debootstrap()
    name = "deb1"
    _run(client, {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
                  "disk_template": "file", "os_type": "debootstrap+default", "pnode": "node1",
                  "disks": [{"size": 2048}], "nics": [{}], "name_check": False,
                  "ip_check": False, "beparams": {"maxmem": 256, "minmem": 256}})
    with SerialReader(_serial(kvm_cluster, "node1", name), reconnect=True) as console:
        console.wait_for(f"{name} login:", 600)
    assert _status(client, name) == "running"
    _run(client, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                  "shutdown_timeout": 60})
    assert not _qemu_pids(name)


def test_failover_from_an_offline_node(kvm_cluster: Any, client: Any) -> None:
    """node2 dies (noded and qemu gone) and is marked offline; the guest on
    shared storage comes up on node1 with ``failover --ignore-consistency``."""
    name = "kvm4"
    _run(client, {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
                  "disk_template": "sharedfile", "os_type": "busybox+default",
                  "pnode": "node2", "disks": [{"size": 256}], "nics": [],
                  "name_check": False, "ip_check": False,
                  "beparams": {"maxmem": 128, "minmem": 128}})
    with SerialReader(_serial(kvm_cluster, "node2", name), reconnect=True) as console:
        console.wait_for("login:", BOOT_TIMEOUT)
    node2 = kvm_cluster.node("node2")
    assert daemons.stop_daemon(node2.paths, daemons.NODED)
    for pid in _qemu_pids(name):
        os.kill(pid, signal.SIGKILL)
    try:
        _run(client, {"OP_ID": "OP_NODE_SET_PARAMS", "node_name": "node2", "offline": True})
        assert _status(client, name) == "ERROR_nodeoffline"
        with pytest.raises(Exception) as exc:
            _run(client, {"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": name,
                          "target_node": "node1", "shutdown_timeout": 10})
        assert "node2" in str(exc.value)
        _run(client, {"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": name,
                      "target_node": "node1", "ignore_consistency": True,
                      "shutdown_timeout": 10})
        with SerialReader(_serial(kvm_cluster, "node1", name), reconnect=True) as console:
            console.wait_for(READY.format(name=name), BOOT_TIMEOUT)
        assert _status(client, name) == "running"
        assert len(_qemu_pids(name)) == 1
    finally:
        daemons.start_noded(node2.paths, node2.ip, node2.noded_port)
        _run(client, {"OP_ID": "OP_NODE_SET_PARAMS", "node_name": "node2", "offline": False})
    _run(client, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                  "shutdown_timeout": 30})
