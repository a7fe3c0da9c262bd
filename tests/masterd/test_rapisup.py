"""masterd's supervision of the RAPI processes (real daemons): a killed RAPI
process is restarted and the port keeps answering, a killed masterd takes its
RAPI processes along (the port is free for the next masterd), a stopped
masterd stops them, and a taken RAPI port fails masterd's start."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from corral import daemons, errors
from corral.masterd.rapisup import bind_rapi_socket

pytestmark = pytest.mark.integration


def _wait(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _info(cluster: Any) -> int:
    resp = httpx.get(f"https://{cluster.master.ip}:{cluster.rapi_port}/2/info",
                     verify=False, timeout=30)
    return resp.status_code


def test_killed_rapi_process_is_restarted(module_dev_cluster: Any, run_cli: Any) -> None:
    cluster = module_dev_cluster(1)
    paths = cluster.master_paths
    before = daemons.all_daemon_pids(paths, daemons.RAPI)
    assert len(before) == 2 and _info(cluster) == 200
    victim = daemons.daemon_pid(paths, daemons.RAPI)
    os.kill(victim, signal.SIGKILL)
    # Connections wait in masterd's listen backlog meanwhile: no refusal.
    assert _info(cluster) == 200
    after = _wait(lambda: (p := daemons.all_daemon_pids(paths, daemons.RAPI)) and
                  len(p) == 2 and victim not in p and daemons.daemon_pid(paths, daemons.RAPI)
                  and p)
    assert victim not in after
    assert _info(cluster) == 200
    log = paths.daemon_log("masterd").read_text()
    assert f"RAPI daemon (pid {victim}) exited with code -9; restarting it" in log
    status = run_cli(["corral", "daemon", "status", "rapi"], paths.root)
    assert status.returncode == 0 and "rapi is running (pids" in status.stdout


def test_masterd_killed_takes_rapi_along(module_dev_cluster: Any) -> None:
    cluster = module_dev_cluster(1)
    paths = cluster.master_paths
    rapi = daemons.all_daemon_pids(paths, daemons.RAPI)
    masterd = daemons.daemon_pid(paths, daemons.MASTERD)
    assert rapi and masterd
    os.kill(masterd, signal.SIGKILL)
    _wait(lambda: not daemons.all_daemon_pids(paths, daemons.RAPI), timeout=20)
    # The next masterd can bind the port and serves RAPI again.
    daemons.start_masterd(paths)
    assert _info(cluster) == 200
    assert len(daemons.all_daemon_pids(paths, daemons.RAPI)) == 2


def test_stopped_masterd_stops_rapi(module_dev_cluster: Any) -> None:
    cluster = module_dev_cluster(1)
    paths = cluster.master_paths
    assert daemons.all_daemon_pids(paths, daemons.RAPI)
    assert daemons.stop_daemon(paths, daemons.MASTERD, timeout=30)
    assert daemons.all_daemon_pids(paths, daemons.RAPI) == []
    assert not paths.pid_file(daemons.RAPI).exists()
    # The port is free again.
    bind_rapi_socket(cluster.master.ip, cluster.rapi_port).close()

    # A taken RAPI port fails masterd's start with a clear message.
    blocker = socket.create_server((cluster.master.ip, cluster.rapi_port))
    try:
        with pytest.raises(errors.CorralError, match="Cannot listen for RAPI"):
            daemons.start_masterd(paths, timeout=20)
    finally:
        blocker.close()
    assert not daemons.daemon_running(paths, daemons.MASTERD)
    daemons.start_masterd(paths)
    assert _info(cluster) == 200
