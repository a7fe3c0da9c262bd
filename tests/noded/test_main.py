"""noded start-up: the sweep of import/export transfers left by an earlier noded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from impexp.nodes import refused  # tests/impexp/nodes.py

from corral.backend import impexp as be
from corral.impexp import DAEMON_MODULE, PARTIAL_FILE, PID_FILE
from corral.impexp.status import TransferStatus, write_status
from corral.paths import Paths

from .nodedproc import NodedProcess, preinstall_joined

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _stale_dir(paths: Paths, name: str, partial: Path) -> Path:
    """A transfer directory whose process died without finishing (pid of a
    process that has exited), with a partial file import recorded."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    d = paths.impexp_dir / name
    d.mkdir(parents=True)
    (d / PID_FILE).write_text(f"{dead.pid}\n")
    write_status(d, TransferStatus(mode="import", component="disk0"))
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"half an image")
    (d / PARTIAL_FILE).write_text(json.dumps({"kind": "file", "path": str(partial)}))
    return d


def test_start_sweeps_stale_transfers(tmp_path: Path, master: Paths,
                                      loopback_base: Callable[[int], str],
                                      noded: Callable[..., NodedProcess]) -> None:
    addr = f"{loopback_base(1)}.1"
    paths = preinstall_joined(master, tmp_path / "node", "node1.test")
    paths.file_storage_paths.write_text("/srv/corral/file-storage\n")
    # A live importer "from the previous noded life", listening for a peer.
    opts: dict[str, Any] = {"magic": "sweep-magic", "listen_host": addr,
                            "connect_timeout": 60, "connect_retries": 10}
    target = "/srv/corral/export/inst1.new/disk0"
    live = be.import_start(paths, opts, None, "disk0", ["file", target])
    deadline = time.monotonic() + 20
    port = None
    while port is None and time.monotonic() < deadline:
        port = (be.impexp_status(paths, [live])[0] or {}).get("listen_port")
        time.sleep(0.05)
    assert port, "the importer did not listen"
    live_pid = int((paths.impexp_dir / live / PID_FILE).read_text())
    be._children.clear()            # as for a new noded: not a child of ours any more
    partial = paths.export_dir / "inst2.new" / ".disk0.partial"
    stale = _stale_dir(paths, "import-disk0-stale1", partial)
    stranger = paths.impexp_dir / "not-a-transfer"
    stranger.mkdir()

    proc = noded(tmp_path / "node", addr)

    assert sorted(os.listdir(paths.impexp_dir)) == ["not-a-transfer"]
    assert not stale.exists() and not partial.exists()
    deadline = time.monotonic() + 15
    while _alive(live_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(live_pid)
    assert refused(addr, port)
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and
                _cmd_has(p, DAEMON_MODULE, str(paths.impexp_dir))]
    log = paths.daemon_log("noded").read_text()
    assert f"sweep: removed stale transfer {live} (stopped its process {live_pid})" in log
    assert "sweep: removed stale transfer import-disk0-stale1" in log
    assert "removed 2 stale import/export transfer(s)" in log
    assert "ignoring not-a-transfer" in log
    # A second start finds nothing to sweep.
    proc.stop()
    noded(tmp_path / "node", addr)
    assert paths.daemon_log("noded").read_text().count("stale import/export") == 1


def _cmd_has(proc: Path, *needles: str) -> bool:
    try:
        argv = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return all(n.encode() in argv for n in needles)
