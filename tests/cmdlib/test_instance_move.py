"""OP_INSTANCE_MOVE on a real 2-node dev cluster (fake hypervisor, file disks).

The instance's disks hold known data, written into the disk files on node1
before the move; after it the copies on node2 must be byte-identical, the
files on node1 gone, and the instance's primary node node2 (running there
if it was running before).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from impexp.nodes import TransferKiller  # tests/impexp/nodes.py

from corral import daemons, errors
from corral.masterd.client import MasterClient

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
JOB_TIMEOUT = 300.0
FILE_DIR = "/srv/corral/file-storage"


class Cluster:
    """A dev cluster, its master client and helpers."""

    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.client = MasterClient(dev.master_paths, timeout=120.0)

    def run(self, op: dict[str, Any], log: list[str] | None = None) -> Any:
        job_id = self.client.submit_job([op])

        def feedback(entry: tuple[Any, str, Any]) -> None:
            if log is not None:
                log.append(str(entry[2]))

        return self.client.wait_job(job_id, feedback, timeout=JOB_TIMEOUT)[0]

    def fail(self, op: dict[str, Any]) -> errors.CorralError:
        try:
            result = self.run(op)
        except errors.CorralError as err:
            return err
        raise AssertionError(f"{op['OP_ID']} unexpectedly succeeded: {result!r}")

    def create(self, name: str, sizes: list[int], template: str = "file",
               start: bool = True) -> None:
        self.run({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
                  "disks": [{"size": s} for s in sizes], "nics": [],
                  "disk_template": template, "os_type": "noop", "pnode": "node1",
                  "name_check": False, "ip_check": False, "start": start})

    def move(self, name: str, log: list[str] | None = None, **kw: Any) -> Any:
        op = {"OP_ID": "OP_INSTANCE_MOVE", "instance_name": name, "target_node": "node2",
              "shutdown_timeout": 10}
        op.update(kw)
        return self.run(op, log)

    def info(self, name: str) -> dict[str, Any]:
        return self.run({"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": [name],
                         "static": True})[name]

    def disk_files(self, name: str) -> list[Path]:
        info = self.info(name)
        node = self.dev.node(info["pnode"])
        return [node.paths.real(d["logical_id"][1]) for d in info["disks"]]

    def running_on(self, node: str, name: str) -> bool:
        """The fake hypervisor's state file exists while the instance runs."""
        return (self.dev.node(node).paths.hypervisor_run_dir("fake") / name).exists()

    def remove(self, name: str) -> None:
        self.run({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                  "ignore_failures": True, "shutdown_timeout": 0})


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any, ganeti_os_noop: Path) -> Iterator[Cluster]:
    c = Cluster(module_dev_cluster(2))
    try:
        yield c
    finally:
        c.client.close()


@pytest.fixture
def instance(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A name for the test's instance; removed afterwards wherever it is."""
    name = f"mv-{request.node.name.split('[')[0][5:][:20].replace('_', '-')}"
    try:
        yield name
    finally:
        try:
            cluster.remove(name)
        except errors.CorralError:
            pass


def fill(path: Path, seed: int) -> str:
    """Write known data over the whole disk file; returns its sha256."""
    size = path.stat().st_size
    block = hashlib.sha512(str(seed).encode()).digest() * (MIB // 64)
    with open(path, "r+b") as fh:
        for offset in range(0, size, MIB):
            fh.write(block if offset % (4 * MIB) else os.urandom(MIB))
    return sha256(path)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def no_transfers_left(cluster: Cluster) -> None:
    for node in cluster.dev.nodes:
        assert os.listdir(node.paths.impexp_dir) == [], node.name


def test_move_running_instance(cluster: Cluster, instance: str) -> None:
    cluster.create(instance, [64])
    assert cluster.running_on("node1", instance)
    [src] = cluster.disk_files(instance)
    digest = fill(src, 1)
    log: list[str] = []
    cluster.move(instance, log)
    info = cluster.info(instance)
    assert info["pnode"] == "node2"
    [dst] = cluster.disk_files(instance)
    assert str(dst).startswith(cluster.dev.node("node2").root)
    assert dst.name != src.name                     # a new file name on the target
    assert sha256(dst) == digest
    assert not src.exists() and not src.parent.exists()
    assert cluster.running_on("node2", instance) and not cluster.running_on("node1", instance)
    assert info["config_state"] == "up"
    assert any(line.startswith("disk/0: transfer complete, 64 MiB") for line in log), log
    assert any("Shutting down instance" in line for line in log), log
    no_transfers_left(cluster)


def test_move_stopped_instance_two_disks_gzip(cluster: Cluster, instance: str) -> None:
    cluster.create(instance, [16, 32], start=False)
    srcs = cluster.disk_files(instance)
    digests = [fill(p, i) for i, p in enumerate(srcs)]
    cluster.move(instance, compress="gzip")
    assert cluster.info(instance)["pnode"] == "node2"
    dsts = cluster.disk_files(instance)
    assert [sha256(p) for p in dsts] == digests
    assert [p.stat().st_size for p in dsts] == [16 * MIB, 32 * MIB]
    assert not any(p.exists() for p in srcs)
    assert not cluster.running_on("node2", instance)
    # ... and back again.
    cluster.move(instance, target_node="node1")
    assert [sha256(p) for p in cluster.disk_files(instance)] == digests
    assert cluster.info(instance)["pnode"] == "node1"
    no_transfers_left(cluster)


def test_failed_copy_keeps_instance_on_source(cluster: Cluster, instance: str) -> None:
    cluster.create(instance, [8])
    [src] = cluster.disk_files(instance)
    digest = fill(src, 3)
    impexp_dir = cluster.dev.node("node2").paths.impexp_dir
    shutil.rmtree(impexp_dir)
    impexp_dir.write_text("not a directory\n")     # node2 cannot start the import
    target_dir = cluster.dev.node("node2").paths.real(str(Path(
        cluster.info(instance)["disks"][0]["logical_id"][1]).parent))
    try:
        err = cluster.fail({"OP_ID": "OP_INSTANCE_MOVE", "instance_name": instance,
                            "target_node": "node2", "shutdown_timeout": 10})
    finally:
        impexp_dir.unlink()
        impexp_dir.mkdir()
    assert "Errors during disk copy" in str(err)
    info = cluster.info(instance)
    assert info["pnode"] == "node1" and cluster.disk_files(instance) == [src]
    assert sha256(src) == digest
    assert cluster.running_on("node1", instance)          # restarted on the source
    assert not cluster.running_on("node2", instance)
    assert not target_dir.exists() or os.listdir(target_dir) == []  # target disks removed


def test_refusals(cluster: Cluster, instance: str) -> None:
    cluster.create(instance, [4], start=False)
    err = cluster.fail({"OP_ID": "OP_INSTANCE_MOVE", "instance_name": instance,
                        "target_node": "node1"})
    assert "already on the node node1" in str(err)
    err = cluster.fail({"OP_ID": "OP_INSTANCE_MOVE", "instance_name": instance,
                        "target_node": "node2", "compress": "rar"})
    assert "Unknown compression tool" in str(err)
    err = cluster.fail({"OP_ID": "OP_INSTANCE_MOVE", "instance_name": instance,
                        "target_node": "node2", "compress": "lzop"})
    assert "Compression tool not allowed" in str(err)     # known, not enabled
    err = cluster.fail({"OP_ID": "OP_INSTANCE_MOVE", "instance_name": instance,
                        "target_node": "node9"})
    assert isinstance(err, errors.OpPrereqError)
    assert cluster.info(instance)["pnode"] == "node1"
    shared = f"{instance}-sh"
    cluster.create(shared, [4], template="sharedfile", start=False)
    try:
        err = cluster.fail({"OP_ID": "OP_INSTANCE_MOVE", "instance_name": shared,
                            "target_node": "node2"})
        assert "not suitable for copying" in str(err)
    finally:
        cluster.remove(shared)


# -- failures that must leave nothing behind --------------------------------------------------
def instance_dir(cluster: Cluster, node: str, name: str) -> Path:
    return cluster.dev.node(node).paths.real(f"{FILE_DIR}/{name}")


def test_killed_target_transfer_leaves_nothing(cluster: Cluster, instance: str) -> None:
    cluster.create(instance, [64])
    [src] = cluster.disk_files(instance)
    digest = fill(src, 4)
    with TransferKiller(cluster.dev.node("node2").paths, "import") as killer:
        err = cluster.fail({"OP_ID": "OP_INSTANCE_MOVE", "instance_name": instance,
                            "target_node": "node2", "shutdown_timeout": 10})
    assert killer.pid is not None
    assert "Errors during disk copy" in str(err)
    target_dir = instance_dir(cluster, "node2", instance)
    assert not target_dir.exists(), os.listdir(target_dir)
    info = cluster.info(instance)
    assert info["pnode"] == "node1" and cluster.disk_files(instance) == [src]
    assert sha256(src) == digest
    assert cluster.running_on("node1", instance) and not cluster.running_on("node2", instance)
    no_transfers_left(cluster)
    cluster.remove(instance)
    assert not instance_dir(cluster, "node1", instance).exists()


def leftover_errors(cluster: Cluster) -> list[str]:
    """The ENODELEFTOVER lines of a verify of the default group."""
    log: list[str] = []
    cluster.run({"OP_ID": "OP_CLUSTER_VERIFY_GROUP", "group_name": "default",
                 "error_codes": True}, log)
    return [line for line in log if "ENODELEFTOVER" in line]


def test_leftover_on_unreachable_target_recorded_then_removed(cluster: Cluster,
                                                               instance: str) -> None:
    """The target's noded stops while its import starts: the failed move
    cannot remove its copy there, records it, verify reports it; after
    noded's restart the next job locking the node (a new move) removes it,
    verify is clean again and a later remove succeeds."""
    cluster.create(instance, [32])
    [src] = cluster.disk_files(instance)
    digest = fill(src, 5)
    node2 = cluster.dev.node("node2")
    target_dir = instance_dir(cluster, "node2", instance)

    def stop_noded(_pid: int) -> None:
        assert daemons.stop_daemon(node2.paths, daemons.NODED, timeout=30)

    try:
        with TransferKiller(node2.paths, "import", before=stop_noded) as killer:
            log: list[str] = []
            job_id = cluster.client.submit_job([{
                "OP_ID": "OP_INSTANCE_MOVE", "instance_name": instance,
                "target_node": "node2", "shutdown_timeout": 10}])
            try:
                cluster.client.wait_job(job_id, lambda e: log.append(str(e[2])),
                                        timeout=JOB_TIMEOUT)
                raise AssertionError("the move succeeded")
            except errors.OpExecError as err:
                assert "Errors during disk copy" in str(err)
        assert killer.pid is not None
        assert any("recorded it" in line for line in log), log
        # The copy is still on node2 (nobody could remove it) ...
        [copy] = os.listdir(target_dir)
        # ... the instance is fine on node1 ...
        assert cluster.info(instance)["pnode"] == "node1"
        assert sha256(src) == digest and cluster.running_on("node1", instance)
        # ... and verify says what is left, with the job that left it.
        lines = leftover_errors(cluster)
        assert any(f"disk file {FILE_DIR}/{instance}/{copy}" in line and
                   f"failed job {job_id}" in line and ":node:node2:" in line
                   for line in lines), lines
        assert any(f"storage directory {FILE_DIR}/{instance}" in line for line in lines)
    finally:
        if not daemons.daemon_running(node2.paths, daemons.NODED):
            daemons.start_noded(node2.paths, node2.ip, node2.noded_port)
    # noded's restart swept the transfer it had left.
    no_transfers_left(cluster)
    assert leftover_errors(cluster)                       # still there: not yet removed
    log = []
    cluster.move(instance, log)                           # locks node2: removes it first
    assert any(f"Removed the leftover disk file {FILE_DIR}/{instance}/{copy} of job "
               f"{job_id} from node node2" in line for line in log), log
    [moved] = cluster.disk_files(instance)
    assert os.listdir(target_dir) == [moved.name] and moved.name != copy
    assert sha256(moved) == digest
    assert leftover_errors(cluster) == []
    cluster.remove(instance)
    assert not target_dir.exists()
