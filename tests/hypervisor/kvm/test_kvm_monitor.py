"""The synchronous QMP wrapper against a real (paused, diskless) QEMU."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.hypervisor.kvm.monitor import (
    CommandFailed,
    MonitorError,
    MonitorUnavailable,
    QmpMonitor,
)

pytestmark = pytest.mark.kvm


@pytest.fixture
def qemu() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="ckm", dir="/tmp"))
    sock = tmp / "q.qmp"
    proc = subprocess.Popen(
        ["qemu-system-x86_64", "-nodefaults", "-display", "none", "-machine", "pc",
         "-accel", "tcg", "-m", "64", "-S", "-device", "virtio-balloon-pci,id=balloon0",
         "-qmp", f"unix:{sock},server=on,wait=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    yield sock
    proc.kill()
    proc.wait()
    sock.unlink(missing_ok=True)
    tmp.rmdir()


def test_status_cont_stop(qemu: Path) -> None:
    mon = QmpMonitor(qemu)
    assert mon.query_status()["status"] == "prelaunch"
    mon.cont()
    assert mon.query_status()["status"] == "running"
    mon.stop()
    assert mon.query_status()["status"] == "paused"


def test_balloon_and_cpus(qemu: Path) -> None:
    mon = QmpMonitor(qemu)
    assert mon.query_balloon() == 64
    cpus = mon.query_cpus_fast()
    assert len(cpus) == 1 and "thread-id" in cpus[0]


def test_migration_parameters_roundtrip(qemu: Path) -> None:
    mon = QmpMonitor(qemu)
    mon.migrate_set_parameters(max_bandwidth=64 * 1024 * 1024, downtime_limit=50)
    params = mon.execute("query-migrate-parameters")
    assert params["max-bandwidth"] == 64 * 1024 * 1024 and params["downtime-limit"] == 50
    mon.migrate_set_capabilities({"xbzrle": True})
    caps = {c["capability"]: c["state"] for c in mon.execute("query-migrate-capabilities")}
    assert caps["xbzrle"] is True
    assert "status" not in mon.query_migrate()     # no migration yet


def test_failed_command_keeps_error_class(qemu: Path) -> None:
    with pytest.raises(CommandFailed) as exc:
        QmpMonitor(qemu).execute("no-such-command")
    assert exc.value.error_class == "CommandNotFound"


def test_several_commands_one_connection(qemu: Path) -> None:
    status, balloon = QmpMonitor(qemu).execute_many([("query-status", None),
                                                     ("query-balloon", None)])
    assert status["status"] == "prelaunch" and balloon["actual"] == 64 * 1024 * 1024


def test_usable_inside_a_running_event_loop(qemu: Path) -> None:
    async def inside() -> str:
        return QmpMonitor(qemu).query_status()["status"]
    assert asyncio.run(inside()) == "prelaunch"


def test_quit_ends_qemu(qemu: Path) -> None:
    QmpMonitor(qemu).quit()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            QmpMonitor(qemu, timeout=1).query_status()
        except MonitorError:
            return
        time.sleep(0.1)
    pytest.fail("QEMU still answers after quit")


def test_missing_socket(tmp_path: Path) -> None:
    with pytest.raises(MonitorUnavailable, match="Cannot connect"):
        QmpMonitor(tmp_path / "none.qmp", timeout=2).query_status()


def test_silent_socket_times_out(tmp_path: Path) -> None:
    path = tmp_path / "silent.qmp"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    try:
        start = time.monotonic()
        with pytest.raises(MonitorError):
            QmpMonitor(path, timeout=1).query_status()
        assert time.monotonic() - start < 5
    finally:
        srv.close()
