"""The migration sequence (cmdlib/instance_migration_run.py).

Unit tests of the status and mirror loops with scripted node answers (the
fake hypervisor completes at once and cannot mirror), then end-to-end KVM
migrations on a 2-node dev cluster: real QEMU (TCG here) running the busybox
OS in its ``tick`` variant, whose console prints ``tick N`` every 100 ms, so
the counter shows the guest kept running across the move.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import errors
from corral.cmdlib.instance_migration_run import MigrationRun
from corral.hypervisor.kvm.console import SerialReader
from corral.objects import Instance
from corral.rpc.client import RpcResult

MIB = 1024 * 1024


# -- unit: status and mirror loops ---------------------------------------------------
class _StubRpc:
    """Answers from scripted lists per procedure; everything else succeeds."""

    def __init__(self, **answers: list[Any]) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.calls: list[tuple[str, str, list[Any]]] = []

    def call_one(self, procedure: str, node: str, args: list[Any]) -> RpcResult:
        self.calls.append((procedure, node, args))
        if procedure in self.answers:
            item = self.answers[procedure].pop(0)
            if isinstance(item, str):
                return RpcResult(node, procedure, fail_msg=item)
            return RpcResult(node, procedure, payload=item)
        return RpcResult(node, procedure, payload=None)

    def encode_instance(self, inst: Instance) -> dict[str, Any]:
        return {"name": inst.name}

    def procs(self, prefix: str) -> list[tuple[str, str]]:
        return [(p, n) for p, n, _ in self.calls if p.startswith(prefix)]


class _StubNode:
    def __init__(self, name: str) -> None:
        self.name = name


class _StubCfg:
    def get_node(self, uuid: str) -> _StubNode:
        return _StubNode(uuid)


class _StubLU:
    def __init__(self, rpc: _StubRpc) -> None:
        self.rpc, self.cfg = rpc, _StubCfg()
        self.warnings: list[str] = []

    def log_warning(self, msg: str) -> None:
        self.warnings.append(msg)


def _run(rpc: _StubRpc, **kw: Any) -> MigrationRun:
    inst = Instance(name="inst1", primary_node="src")     # diskless: no disk RPCs
    return MigrationRun(_StubLU(rpc), inst, "src", "tgt", live=True,  # type: ignore[arg-type]
                        sleep=lambda _s: None, **kw)


def test_status_loop_reports_progress_and_downtime() -> None:
    rpc = _StubRpc(instance_get_migration_status=[
        {"status": "setup"},
        {"status": "active", "transferred_ram": 32 * MIB, "total_ram": 128 * MIB},
        {"status": "active", "transferred_ram": 32 * MIB, "total_ram": 128 * MIB},
        {"status": "active", "transferred_ram": 96 * MIB, "total_ram": 128 * MIB},
        {"status": "completed", "transferred_ram": 130 * MIB, "total_ram": 128 * MIB,
         "downtime_ms": 13}])
    lines: list[str] = []
    _run(rpc)._wait_for_transfer(lines.append)
    assert lines[0] == "* starting memory transfer"
    assert lines[1] == "* memory transfer progress: 25.0 % (32.0 MiB of 128.0 MiB)"
    assert lines[2] == "* memory transfer progress: 75.0 % (96.0 MiB of 128.0 MiB)"
    assert lines[3].startswith("* memory transfer complete in ")
    assert lines[3].endswith(": 130.0 MiB transferred, 128.0 MiB of guest memory, "
                             "downtime 13 ms")
    assert len(lines) == 4
    assert not rpc.answers["instance_get_migration_status"]


@pytest.mark.parametrize("bad", [{"status": "failed"}, {"status": "cancelled"},
                                 {"status": "none"}, "node src unreachable"])
def test_status_loop_aborts_on_failure(bad: dict[str, Any] | str) -> None:
    rpc = _StubRpc(instance_get_migration_status=[
        {"status": "active", "transferred_ram": 1, "total_ram": 2}, bad])
    lines: list[str] = []
    with pytest.raises(errors.OpExecError, match="Could not migrate instance inst1"):
        _run(rpc)._wait_for_transfer(lines.append)
    assert "Migration failed, aborting" in lines
    finalize = [(p, n, a[-1]) for p, n, a in rpc.calls if p.startswith("instance_finalize")]
    assert finalize == [("instance_finalize_migration_dst", "tgt", False),
                        ("instance_finalize_migration_src", "src", True)]


def test_mirror_loop_progress_then_ready() -> None:
    def job(drive: str, offset: int, length: int, ready: bool = False) -> dict[str, Any]:
        return {"drive": drive, "offset": offset, "len": length, "ready": ready,
                "status": "ready" if ready else "running", "error": None}
    rpc = _StubRpc(
        instance_mirror_export=[{"host": "127.0.0.2", "port": 4000,
                                 "exports": ["disk0", "disk1"]}],
        instance_mirror_status=[
            [job("disk0", 0, 64 * MIB), job("disk1", 0, 64 * MIB)],
            [job("disk0", 64 * MIB, 64 * MIB, True), job("disk1", 0, 64 * MIB)],
            [job("disk0", 64 * MIB, 64 * MIB, True), job("disk1", 64 * MIB, 64 * MIB, True)]])
    lines: list[str] = []
    _run(rpc, disk_mirror=True)._mirror_disks(lines.append, "127.0.0.2")
    start = [a for p, _, a in rpc.calls if p == "instance_mirror_start"]
    assert start == [[{"name": "inst1"}, "127.0.0.2", 4000, ["disk0", "disk1"]]]
    assert lines[1] == "* disk mirror progress: 0.0 % (0.0 MiB of 128.0 MiB)"
    assert lines[2] == "* disk mirror progress: 50.0 % (64.0 MiB of 128.0 MiB)"
    assert lines[3].startswith("* disks mirrored in ") and "(128.0 MiB)" in lines[3]


def test_mirror_failure_cancels_before_the_target_goes() -> None:
    rpc = _StubRpc(
        instance_mirror_export=[{"host": "127.0.0.2", "port": 4000, "exports": ["disk0"]}],
        instance_mirror_status=[[{"drive": "disk0", "offset": 0, "len": 1, "ready": False,
                                  "status": "concluded", "error": "Input/output error"}]])
    lines: list[str] = []
    with pytest.raises(errors.OpExecError, match="disk0: Input/output error"):
        _run(rpc, disk_mirror=True)._mirror_disks(lines.append, "127.0.0.2")
    order = [p for p, _, _ in rpc.calls]
    assert order.index("instance_mirror_finish") < order.index(
        "instance_finalize_migration_dst")
    finish = [a[-1] for p, _, a in rpc.calls if p == "instance_mirror_finish"]
    assert finish == [False]


# -- KVM on a dev cluster ----------------------------------------------------------------
BOOT_TIMEOUT = 180
# QEMU 7.2's TCG loses dirty pages now and then when a live migration needs
# many passes (a slow link): the guest crashes on the target although QEMU
# says "completed" (notes/this-machine-and-qemu.md; bare QEMU does the same:
# ~1 in 15 at 16 MiB/s, none in 40 at 1000 MiB/s). A fast limit keeps the
# transfer to one or two passes.
FAST_MIB_S = 1000
SUM_RE = r"{tag}=([0-9a-f]{{32}})"


def _qemu_pids(name: str) -> list[int]:
    """Live processes whose command line has ``-name <name>`` (QEMU's)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        for i, arg in enumerate(argv[:-1]):
            if arg == b"-name" and argv[i + 1].split(b",")[0] == name.encode() \
                    and state != "Z":
                pids.append(int(proc.name))
    return pids


def _kvm_files(cluster: Any, node: str, name: str) -> list[Path]:
    """Everything of ``name`` left in ``node``'s KVM runtime dirs and disk links."""
    paths = cluster.node(node).paths
    kvm = paths.hypervisor_run_dir(C.HT_KVM)
    found = [p for p in (kvm / "pid" / name, kvm / "conf" / f"{name}.runtime",
                         kvm / "nic" / name) if p.exists()]
    found += list((kvm / "ctrl").glob(f"{name}.*"))
    found += list(paths.instance_disks_dir.glob(f"{name}:*"))
    return found


def _storage_dir(cluster: Any, node: str, name: str) -> Path:
    return cluster.node(node).paths.root / "srv/corral/file-storage" / name


class Console:
    """The serial console of an instance on one node."""

    def __init__(self, cluster: Any, node: str, name: str, timeout: float = 60) -> None:
        sock = cluster.node(node).paths.hypervisor_run_dir(C.HT_KVM) / "ctrl" / \
            f"{name}.serial"
        deadline = time.monotonic() + timeout
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.reader = SerialReader(sock, connect_timeout=max(deadline - time.monotonic(), 1))
        self.seq = 0

    def close(self) -> None:
        self.reader.close()

    def ticks(self) -> list[int]:
        return [int(n) for n in re.findall(r"tick (\d+)\r?\n", self.reader.text())]

    def wait_ticks(self, count: int, timeout: float = 60) -> list[int]:
        deadline = time.monotonic() + timeout
        while len(self.ticks()) < count:
            assert time.monotonic() < deadline, self.reader.text()[-2000:]
            time.sleep(0.1)
        return self.ticks()

    def run(self, command: str, tag: str, pattern: str, timeout: float = 60) -> str:
        """Run ``command`` in the guest shell; wait for ``tag=<pattern>``."""
        start = len(self.reader.text())
        self.reader.send(command + "\n")
        m = self.reader.wait_for(f"{tag}={pattern}", timeout, start)
        return m.group(1)

    def login(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            start = len(self.reader.text())
            try:
                self.reader.wait_for(r"login:", 5, max(start - 200, 0))
                break
            except TimeoutError:
                assert time.monotonic() < deadline, self.reader.text()[-2000:]
                self.reader.send("\n")      # the prompt may have come before we connected
        start = len(self.reader.text())
        self.reader.send("root\n")
        self.reader.wait_for(r"#", 30, start)
        self.run("echo IN''=yes", "IN", "(yes)")

    def write_data(self) -> str:
        return self.run("dd if=/dev/urandom of=/root/data bs=1k count=512 2>/dev/null; sync; "
                        "md5sum /root/data | sed 's/^/SUM=/'", "SUM", "([0-9a-f]{32})")

    def data_sum(self) -> str:
        self.seq += 1
        tag = f"CHK{self.seq}"
        return self.run(f"md5sum /root/data | sed 's/^/{tag}=/'", tag, "([0-9a-f]{32})")


def _submit(client: Any, op: dict[str, Any]) -> int:
    return client.submit_job([op])


def _wait(client: Any, job_id: int, log: list[str]) -> Any:
    return client.wait_job(job_id, feedback_fn=lambda e: log.append(str(e[2])), timeout=600)


def _pnode(client: Any, name: str) -> tuple[str, str]:
    rows = client.query("instance", ["name", "pnode", "status"])["data"]
    return {r[0][1]: (r[1][1], r[2][1]) for r in rows}[name]


def _set_bandwidth(client: Any, mib_s: int) -> None:
    _wait(client, _submit(client, {"OP_ID": "OP_CLUSTER_SET_PARAMS",
                                   "hvparams": {C.HT_KVM: {"migration_bandwidth": mib_s}}}),
          [])


@pytest.fixture(scope="module")
def kvm_cluster(module_dev_cluster: Any) -> Any:
    cluster = module_dev_cluster(2, hypervisors=(C.HT_KVM,))
    with cluster.client(timeout=120) as client:
        _set_bandwidth(client, FAST_MIB_S)
    return cluster


@pytest.fixture
def kvm_client(kvm_cluster: Any) -> Any:
    with kvm_cluster.client(timeout=120) as c:
        yield c


@pytest.fixture
def kvm_instance(kvm_client: Any) -> Any:
    """``make(name, template, node)``: a busybox+tick instance, removed after the test."""
    made: list[str] = []

    def make(name: str, template: str, node: str = "node1") -> str:
        _wait(kvm_client, _submit(kvm_client, {
            "OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
            "disk_template": template, "os_type": "busybox+tick", "pnode": node,
            "disks": [{"size": 64}], "nics": [], "name_check": False, "ip_check": False,
            "beparams": {"maxmem": 128, "minmem": 128}}), [])
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            _wait(kvm_client, _submit(kvm_client, {
                "OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                "shutdown_timeout": 10, "ignore_failures": True}), [])
        except errors.CorralError:
            pass
        for pid in _qemu_pids(name):
            subprocess.run(["kill", "-9", str(pid)], check=False)


def _migrate_and_watch(cluster: Any, client: Any, name: str, src: str, dst: str,
                       src_console: Console, **op: Any) -> tuple[Console, list[str]]:
    """Migrate ``name`` while watching both consoles; checks the counter went
    on without a restart. Returns the target's console and the job log."""
    before = src_console.wait_ticks(len(src_console.ticks()) + 3)
    job = _submit(client, {"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": name,
                           "target_node": dst, **op})
    dst_console = Console(cluster, dst, name, timeout=120)
    log: list[str] = []
    _wait(client, job, log)
    assert _pnode(client, name) == (dst, "running")
    last_src = max(src_console.ticks() or before)
    after = dst_console.wait_ticks(5)
    text = dst_console.reader.text()
    assert after[0] > last_src - 1 and after[0] <= last_src + 30, (last_src, after[:5])
    assert after == sorted(after)
    assert "tick 1\r\n" not in text and "ready" not in text, text[-1500:]
    src_console.close()
    assert len(_qemu_pids(name)) == 1
    assert not _kvm_files(cluster, src, name)
    return dst_console, log


@pytest.mark.integration
@pytest.mark.kvm
def test_kvm_migrations_keep_the_guest_running(kvm_cluster, kvm_client, kvm_instance):
    name = kvm_instance("mk-sf", C.DT_SHARED_FILE)
    console = Console(kvm_cluster, "node1", name)
    console.login()
    data = console.write_data()

    console, log = _migrate_and_watch(kvm_cluster, kvm_client, name, "node1", "node2",
                                      console, mode="live")
    assert any(line.startswith("* memory transfer progress: ") for line in log), log
    done = [line for line in log if line.startswith("* memory transfer complete in ")]
    assert done and re.search(r"downtime \d+ ms", done[0]), log
    assert console.data_sum() == data

    console, log = _migrate_and_watch(kvm_cluster, kvm_client, name, "node2", "node1",
                                      console)
    assert console.data_sum() == data
    console, log = _migrate_and_watch(kvm_cluster, kvm_client, name, "node1", "node2",
                                      console, mode="non-live")
    assert "* migrating instance to node1 (non-live)" not in log
    assert "* migrating instance to node2 (non-live)" in log
    assert console.data_sum() == data
    console.close()

    # Failover restarts the guest on the other node; the data survives.
    log = []
    _wait(kvm_client, _submit(kvm_client, {"OP_ID": "OP_INSTANCE_FAILOVER",
                                           "instance_name": name, "target_node": "node1",
                                           "shutdown_timeout": 30}), log)
    assert _pnode(kvm_client, name) == ("node1", "running")
    console = Console(kvm_cluster, "node1", name)
    try:
        console.login()
        assert console.data_sum() == data
    finally:
        console.close()
    assert len(_qemu_pids(name)) == 1 and not _kvm_files(kvm_cluster, "node2", name)


@pytest.mark.integration
@pytest.mark.kvm
def test_kvm_local_disk_migration(kvm_cluster, kvm_client, kvm_instance):
    name = kvm_instance("mk-file", C.DT_FILE)
    console = Console(kvm_cluster, "node1", name)
    console.login()
    data = console.write_data()
    assert _storage_dir(kvm_cluster, "node1", name).is_dir()

    for src, dst in (("node1", "node2"), ("node2", "node1")):
        console, log = _migrate_and_watch(kvm_cluster, kvm_client, name, src, dst, console)
        assert any(line.startswith("* disks mirrored in ") for line in log), log
        assert f"* removing the instance's disks on source node {src}" in log
        assert console.data_sum() == data
        assert not _storage_dir(kvm_cluster, src, name).exists()
        assert len(list(_storage_dir(kvm_cluster, dst, name).iterdir())) == 1
    console.close()


@pytest.mark.integration
@pytest.mark.kvm
@pytest.mark.parametrize("template", [C.DT_SHARED_FILE, C.DT_FILE])
def test_kvm_target_killed_mid_migration(kvm_cluster, kvm_client, kvm_instance, template):
    name = kvm_instance(f"mk-kill-{template}", template)
    console = Console(kvm_cluster, "node1", name)
    console.login()
    data = console.write_data()
    _set_bandwidth(kvm_client, 1)
    try:
        job = _submit(kvm_client, {"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": name,
                                   "target_node": "node2"})
        log: list[str] = []
        result: list[BaseException] = []

        def wait() -> None:
            try:
                _wait(kvm_client, job, log)
            except BaseException as err:  # noqa: BLE001 - handed to the test thread
                result.append(err)
        waiter = threading.Thread(target=wait)
        waiter.start()
        deadline = time.monotonic() + 300
        while not any(line.startswith("* memory transfer progress") for line in log):
            assert time.monotonic() < deadline and waiter.is_alive(), log
            time.sleep(0.1)
        pid_file = kvm_cluster.node("node2").paths.hypervisor_run_dir(C.HT_KVM) / "pid" / name
        target_pid = int(pid_file.read_text())
        subprocess.run(["kill", "-9", str(target_pid)], check=True)
        waiter.join(300)
    finally:
        _set_bandwidth(kvm_client, FAST_MIB_S)
    assert result and isinstance(result[0], errors.OpExecError), (result, log)
    assert "Migration failed, aborting" in log
    assert _pnode(kvm_client, name) == ("node1", "running")
    assert not _kvm_files(kvm_cluster, "node2", name)
    assert not _storage_dir(kvm_cluster, "node2", name).exists()
    assert len(_qemu_pids(name)) == 1
    mark = len(console.ticks())
    console.wait_ticks(mark + 5)
    assert console.data_sum() == data
    console.close()
