"""Acceptance tests of exports and imports with real qemu guests.

A 3-node KVM dev cluster: the busybox guest on node1 writes a marker file
into its root file system; the instance is exported to node2 (shut down,
streamed through the OS export script, restarted), imported as a new
instance on node3, which boots (under its new name: the OS rename script
ran) and reads the marker back. A second export to another node leaves the
export on exactly one node. Killing the transfer process midway fails the
export but leaves the instance running, no export and no process behind.
Finally the instance moves to a second dev cluster in remote mode and
boots there with its data.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import errors
from corral.cli.backup import move_instance_remote
from corral.cmdlib.backup_remote import read_cluster_domain_secret, write_cluster_domain_secret
from corral.hypervisor.kvm.console import SerialReader

pytestmark = [pytest.mark.integration, pytest.mark.kvm, pytest.mark.slow]

BOOT_TIMEOUT = 180
JOB_TIMEOUT = 900
READY = r"corral-guest: {name} ready"
MARKER = "4242-corral-backup-marker"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def kvm3(module_dev_cluster: Any) -> Any:
    return module_dev_cluster(3, hypervisors=(C.HT_KVM,))


@pytest.fixture(scope="module")
def client(kvm3: Any) -> Any:
    with kvm3.client(timeout=120) as c:
        yield c


def _run(client: Any, op: dict[str, Any], log: list[Any] | None = None) -> Any:
    def feedback(entry: tuple[Any, str, Any]) -> None:
        if log is not None:
            log.append(entry[2])
    return client.wait_job(client.submit_job([op]), feedback, timeout=JOB_TIMEOUT)[0]


def _serial(cluster: Any, node: str, name: str) -> Path:
    return cluster.node(node).paths.hypervisor_run_dir(C.HT_KVM) / "ctrl" / f"{name}.serial"


def _status(client: Any, name: str) -> str:
    rows = client.query("instance", ["name", "status"])["data"]
    return {r[0][1]: r[1][1] for r in rows}[name]


def _login(console: SerialReader, name: str, start: int = 0) -> None:
    console.wait_for(READY.format(name=name), BOOT_TIMEOUT, start=start)
    console.wait_for("login:", BOOT_TIMEOUT, start=start)
    mark = len(console.text())
    console.send("root\n")
    console.wait_for("#", 30, start=mark)


def _shell(console: SerialReader, command: str, expect: str, timeout: float = 60) -> None:
    mark = len(console.text())
    console.send(command + "\n")
    console.wait_for(expect, timeout, start=mark)


def _create(client: Any, name: str, node: str, sizes: list[int], **kw: Any) -> None:
    op = {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
          "disk_template": "file", "os_type": "busybox+default", "pnode": node,
          "disks": [{"size": s} for s in sizes], "nics": [{}], "name_check": False,
          "ip_check": False, "beparams": {"maxmem": 128, "minmem": 128}}
    op.update(kw)
    _run(client, op)


def _transfer_processes(cluster: Any) -> list[int]:
    """Transfer processes and OS scripts started for this cluster."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state in ("Z", "X") or cluster.directory.encode() not in argv:
            continue
        if b"corral.impexp.daemon" in argv or b"/srv/corral/os/" in argv:
            out.append(int(entry))
    return out


def _group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                out.append(int(entry))
    return out


def test_export_import_boot(kvm3: Any, client: Any, run_cli: Any) -> None:
    name, copy = "bk1", "bk1copy"
    _create(client, name, "node1", [128])
    with SerialReader(_serial(kvm3, "node1", name), reconnect=True) as console:
        _login(console, name)
        _shell(console, f"echo {MARKER} > /root/marker; sync; echo wrote-$((6*7))",
               "wrote-42")
    log: list[Any] = []
    assert _run(client, {"OP_ID": "OP_BACKUP_EXPORT", "instance_name": name,
                         "target_node": "node2", "shutdown_timeout": 60}, log) == \
        [True, [True]]
    assert any("MiB" in str(m) for m in log)
    assert _status(client, name) == "running"
    res = run_cli(["gnt-backup", "list", "--no-headers"], kvm3)
    assert res.returncode == 0 and res.stdout.split() == ["node2", name], res.stdout

    # Import on node3, stopped first: the disk holds the exported image.
    _run(client, {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": copy, "mode": "import",
                  "src_node": "node2", "src_path": name, "pnode": "node3", "disks": [],
                  "nics": [], "name_check": False, "ip_check": False, "start": False})
    info = _run(client, {"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": [copy],
                         "static": True})[copy]
    assert info["pnode"] == "node3" and [d["size"] for d in info["disks"]] == [128]
    _run(client, {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": copy})
    with SerialReader(_serial(kvm3, "node3", copy), reconnect=True) as console:
        _login(console, copy)           # the rename script gave it its new host name
        _shell(console, "cat /root/marker", MARKER)
    assert _status(client, copy) == "running"

    # A second export to another node: the export is then on exactly one node.
    res = run_cli(["gnt-backup", "export", "-n", "node3", "--shutdown-timeout", "60", name],
                  kvm3)
    assert res.returncode == 0, res.stderr
    res = run_cli(["gnt-backup", "list", "--no-headers"], kvm3)
    assert res.stdout.split() == ["node3", name], res.stdout
    assert _status(client, name) == "running"
    _run(client, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": copy,
                  "shutdown_timeout": 30})


def test_killed_export_transfer(kvm3: Any, client: Any) -> None:
    name = "bk2"
    # disk/1 holds 512 MiB of random data: gzip makes its transfer take a while.
    _create(client, name, "node1", [64, 512], start=False)
    info = _run(client, {"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": [name],
                         "static": True})[name]
    data_disk = kvm3.node("node1").paths.real(info["disks"][1]["logical_id"][1])
    with open(data_disk, "r+b") as fh:
        for _ in range(512):
            fh.write(os.urandom(MIB))
    _run(client, {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": name})
    with SerialReader(_serial(kvm3, "node1", name), reconnect=True) as console:
        console.wait_for(READY.format(name=name), BOOT_TIMEOUT)
    before = _run(client, {"OP_ID": "OP_BACKUP_QUERY", "nodes": []})

    impexp_dir = kvm3.node("node1").paths.impexp_dir
    outcome: dict[str, Any] = {}

    def export() -> None:
        try:
            outcome["result"] = _run(client, {
                "OP_ID": "OP_BACKUP_EXPORT", "instance_name": name, "target_node": "node2",
                "compress": "gzip", "shutdown_timeout": 60})
        except errors.CorralError as err:
            outcome["error"] = err

    thread = threading.Thread(target=export)
    thread.start()
    pid = None
    deadline = time.monotonic() + 300
    while pid is None and time.monotonic() < deadline and thread.is_alive():
        for entry in (os.listdir(impexp_dir) if impexp_dir.is_dir() else []):
            status = impexp_dir / entry / "status"
            if entry.startswith("export-disk1-") and status.exists() and \
                    '"progress_bytes": 0,' not in status.read_text():
                pid = int((impexp_dir / entry / "pid").read_text())
        time.sleep(0.1)
    assert pid is not None, f"no running transfer of disk/1 seen: {outcome}"
    os.kill(pid, signal.SIGKILL)
    thread.join(JOB_TIMEOUT)
    assert "error" in outcome, outcome
    assert "Export failed" in str(outcome["error"])

    assert _status(client, name) == "running"
    with SerialReader(_serial(kvm3, "node1", name), reconnect=True) as console:
        console.wait_for(READY.format(name=name), BOOT_TIMEOUT)
    assert _run(client, {"OP_ID": "OP_BACKUP_QUERY", "nodes": []}) == before
    for node in kvm3.nodes:
        assert not [e for e in os.listdir(node.paths.export_dir) if e.startswith(name)]
        assert not node.paths.impexp_dir.is_dir() or os.listdir(node.paths.impexp_dir) == []
    deadline = time.monotonic() + 30
    while (_transfer_processes(kvm3) or _group_members(pid)) and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert _transfer_processes(kvm3) == [] and _group_members(pid) == []
    _run(client, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                  "shutdown_timeout": 30})


def test_move_to_another_cluster(kvm3: Any, client: Any, module_dev_cluster: Any) -> None:
    other = module_dev_cluster(1, hypervisors=(C.HT_KVM,), cluster_name="corral-kvm-b")
    write_cluster_domain_secret(other.master_paths,
                                read_cluster_domain_secret(kvm3.master_paths))
    name = "bk3"
    _create(client, name, "node2", [96])
    with SerialReader(_serial(kvm3, "node2", name), reconnect=True) as console:
        _login(console, name)
        _shell(console, f"echo {MARKER} > /root/marker; sync; echo wrote-$((6*7))",
               "wrote-42")
    log: list[Any] = []
    with other.client(timeout=120) as dst:
        new = move_instance_remote(client, dst, name, "node1", dest_name="bk1remote",
                                   compress="zstd", shutdown_timeout=60,
                                   feedback=lambda e: log.append(e[2]))
        assert new == "bk1remote"
        assert _status(dst, new) == "running"
        with SerialReader(_serial(other, "node1", new), reconnect=True) as console:
            _login(console, new)
            _shell(console, "cat /root/marker", MARKER)
        _run(dst, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": new,
                   "shutdown_timeout": 30})
    assert any("remote" in str(m).lower() or "listening" in str(m) for m in log)
    assert _status(client, name) == "running"               # the source came back
    assert _transfer_processes(kvm3) == [] and _transfer_processes(other) == []
    _run(client, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                  "shutdown_timeout": 30})
