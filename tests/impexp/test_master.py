"""Master side: ``transfer_disks`` driving real transfers between two node roots.

The LU is a stand-in whose RPC runner calls the node procedures through
noded's dispatch table in this process (no daemons), with the real
transfer processes and TLS between 127.0.2.1 and 127.0.2.2.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest

from corral import errors
from corral.impexp.master import TransferTimeouts, format_eta, format_progress, transfer_disks
from corral.noded import dispatch
from corral.objects import Disk, Instance, Node
from corral.paths import Paths
from corral.rpc.client import RpcResult

from .nodes import (
    FS,
    MIB,
    NODE1_IP,
    NODE2_IP,
    Nodes,
    create_disk,
    group_members,
    pattern,
    sha256,
    wait_group_gone,
    write_os,
)

SLOW_EXPORT = """\
echo $(( $DISK_0_SIZE * 1048576 )) >&$EXP_SIZE_FD
i=0
while [ $i -lt $DISK_0_SIZE ]; do
  dd if="$EXPORT_DEVICE" bs=1M skip=$i count=1 status=none
  sleep 0.1
  i=$((i + 1))
done
"""


class FakeCfg:
    def __init__(self, node_map: dict[str, Node]) -> None:
        self.node_map = node_map

    def get_node(self, uuid: str) -> Node | None:
        return self.node_map.get(uuid)


class FakeRpc:
    """Calls procedures of the node roots in-process, recording the calls."""

    def __init__(self, roots: dict[str, Paths], cfg: FakeCfg) -> None:
        self.roots = roots
        self.cfg = cfg
        self.calls: list[tuple[str, str]] = []

    def call_one(self, procedure: str, node_uuid: str, args: list[Any],
                 timeout: float | None = None) -> RpcResult:
        self.calls.append((procedure, node_uuid))
        res = dispatch.call(self.roots[node_uuid], procedure, list(args))
        node = self.cfg.get_node(node_uuid)
        name = node.name if node else node_uuid
        if res.ok:
            return RpcResult(name, procedure, payload=res.payload, node_uuid=node_uuid)
        return RpcResult(name, procedure, fail_msg=str(res.payload), node_uuid=node_uuid)

    def encode_instance(self, instance: Instance) -> dict[str, Any]:
        data = instance.to_dict()
        data["primary_node_name"] = self.cfg.get_node(instance.primary_node).name
        return data


class FakeOpCtx:
    def __init__(self) -> None:
        self.cancel_after: int | None = None
        self.checks = 0

    def check_canceled(self) -> None:
        self.checks += 1
        if self.cancel_after is not None and self.checks > self.cancel_after:
            raise errors.JobCanceled("Job 1 canceled")


class FakeLU:
    def __init__(self, nodes: Nodes) -> None:
        n1 = Node(uuid="uuid-node1", name="node1", primary_ip=NODE1_IP)
        n2 = Node(uuid="uuid-node2", name="node2", primary_ip=NODE2_IP)
        self.cfg = FakeCfg({n1.uuid: n1, n2.uuid: n2})
        self.rpc = FakeRpc({n1.uuid: nodes.n1, n2.uuid: nodes.n2}, self.cfg)
        self.op_ctx = FakeOpCtx()
        self.warnings: list[str] = []

    def log_warning(self, msg: str) -> None:
        self.warnings.append(msg)


def make_instance(disks: list[dict[str, Any]], os_name: str = "") -> Instance:
    return Instance(name="inst1", primary_node="uuid-node1", os=os_name,
                    disks=[Disk.model_validate(d) for d in disks])


FAST = TransferTimeouts(connect=5, connect_retries=1, poll_interval=0.2,
                        progress_interval=0.5)


def assert_clean(nodes: Nodes) -> None:
    assert os.listdir(nodes.n1.impexp_dir) == os.listdir(nodes.n2.impexp_dir) == []


def test_two_disks(nodes: Nodes) -> None:
    lu = FakeLU(nodes)
    srcs = [create_disk(nodes.n1, f"{FS}/inst1/s{i}", 16, pattern(16 * MIB, i), f"disk/{i}")
            for i in range(2)]
    dsts = [create_disk(nodes.n2, f"{FS}/inst1/d{i}", 16, None, f"disk/{i}") for i in range(2)]
    log: list[str] = []
    pairs = [(["raw", s], ["raw", d]) for s, d in zip(srcs, dsts, strict=True)]
    result = transfer_disks(lu, "uuid-node1", "uuid-node2", make_instance(srcs), pairs,
                            "zstd", log.append, timeouts=FAST)
    assert result == [True, True], lu.warnings
    for i in range(2):
        assert sha256(nodes.n1.real(f"{FS}/inst1/s{i}")) == \
            sha256(nodes.n2.real(f"{FS}/inst1/d{i}"))
    assert any(re.match(r"disk/0: transfer complete, 16 MiB in", line) for line in log), log
    assert any(line.startswith("disk/1: sending from node1 to node2 (compression zstd)")
               for line in log), log
    assert lu.warnings == []
    assert_clean(nodes)
    assert ("impexp_cleanup", "uuid-node1") in lu.rpc.calls
    assert ("impexp_cleanup", "uuid-node2") in lu.rpc.calls


def test_progress_in_job_log(nodes: Nodes) -> None:
    lu = FakeLU(nodes)
    write_os(nodes.n1, "impexp-slow", SLOW_EXPORT, "exit 1\n")
    src = create_disk(nodes.n1, f"{FS}/inst1/s0", 20, pattern(20 * MIB))
    dst = create_disk(nodes.n2, f"{FS}/inst1/d0", 20)
    log: list[str] = []
    result = transfer_disks(lu, "uuid-node1", "uuid-node2",
                            make_instance([src], "impexp-slow"),
                            [(["script", src, 0], ["raw", dst])], "none", log.append,
                            timeouts=FAST)
    assert result == [True], lu.warnings
    progress = [line for line in log if " MiB sent" in line]
    assert progress, log
    pattern_re = r"^disk/0: \d+ MiB sent, \d+\.\d MiB/s, ETA \d\d:\d\d, \d+%$"
    assert any(re.match(pattern_re, line) for line in progress), progress
    assert sha256(nodes.n1.real(f"{FS}/inst1/s0")) == sha256(nodes.n2.real(f"{FS}/inst1/d0"))
    assert_clean(nodes)


def test_import_fails_mid_transfer(nodes: Nodes) -> None:
    """A destination smaller than the source: the importer fails, both sides
    are aborted and cleaned up, and the result says so."""
    lu = FakeLU(nodes)
    src = create_disk(nodes.n1, f"{FS}/inst1/s0", 16, pattern(16 * MIB))
    dst = create_disk(nodes.n2, f"{FS}/inst1/d0", 8)
    result = transfer_disks(lu, "uuid-node1", "uuid-node2", make_instance([src]),
                            [(["raw", src], ["raw", dst])], "none", lambda m: None,
                            timeouts=FAST)
    assert result == [False]
    assert any("more data than the device" in w for w in lu.warnings), lu.warnings
    assert all(w.startswith("disk/0: ") for w in lu.warnings)
    assert_clean(nodes)


STALLED_EXPORT = """\
dd if="$EXPORT_DEVICE" bs=1M count=1 status=none
exec sleep 600
"""


def test_idle_timeout_reaches_both_sides(nodes: Nodes) -> None:
    """``TransferTimeouts.idle`` is the transfer processes' idle timeout: a
    source that stops sending fails the transfer within it, nothing left."""
    lu = FakeLU(nodes)
    write_os(nodes.n1, "impexp-stall", STALLED_EXPORT, "exit 1\n")
    src = create_disk(nodes.n1, f"{FS}/inst1/s0", 8, pattern(8 * MIB))
    dst = create_disk(nodes.n2, f"{FS}/inst1/d0", 8)
    tmo = TransferTimeouts(connect=5, connect_retries=1, poll_interval=0.2, idle=2)
    started = time.monotonic()
    result = transfer_disks(lu, "uuid-node1", "uuid-node2",
                            make_instance([src], "impexp-stall"),
                            [(["script", src, 0], ["raw", dst])], "none", lambda m: None,
                            timeouts=tmo)
    assert result == [False]
    assert time.monotonic() - started < 30
    assert any("no data for 2 seconds" in w for w in lu.warnings), lu.warnings
    assert_clean(nodes)


def test_start_failure_and_stop_on_failure(nodes: Nodes) -> None:
    lu = FakeLU(nodes)
    src = create_disk(nodes.n1, f"{FS}/inst1/s0", 4, pattern(4 * MIB))
    missing = dict(src, logical_id=["loop", f"{FS}/inst1/missing"])
    dst = create_disk(nodes.n2, f"{FS}/inst1/d0", 4)
    pairs = [(["raw", src], ["raw", missing]), (["raw", src], ["raw", dst])]
    result = transfer_disks(lu, "uuid-node1", "uuid-node2", make_instance([src]), pairs,
                            "none", lambda m: None, stop_on_failure=True, timeouts=FAST)
    assert result == [False, False]
    assert "could not start the import on node node2" in lu.warnings[0]
    assert [c for c in lu.rpc.calls if c[0] == "import_start"] == \
        [("import_start", "uuid-node2")]                  # the second pair was not tried
    # Without stop_on_failure the second pair is copied.
    lu2 = FakeLU(nodes)
    result = transfer_disks(lu2, "uuid-node1", "uuid-node2", make_instance([src]), pairs,
                            "none", lambda m: None, timeouts=FAST)
    assert result == [False, True]
    assert_clean(nodes)


def test_cancel_aborts_both_sides(nodes: Nodes) -> None:
    lu = FakeLU(nodes)
    write_os(nodes.n1, "impexp-slow", SLOW_EXPORT, "exit 1\n")
    src = create_disk(nodes.n1, f"{FS}/inst1/s0", 40, pattern(40 * MIB))
    dst = create_disk(nodes.n2, f"{FS}/inst1/d0", 40)
    lu.op_ctx.cancel_after = 10
    pids: list[int] = []
    real_call = lu.rpc.call_one

    def spy(procedure: str, node_uuid: str, args: list[Any], timeout: float | None = None):
        res = real_call(procedure, node_uuid, args, timeout)
        if procedure in ("import_start", "export_start") and not res.fail_msg:
            root = lu.rpc.roots[node_uuid]
            pids.append(int((root.impexp_dir / res.payload / "pid").read_text()))
        return res

    lu.rpc.call_one = spy  # type: ignore[method-assign]
    with pytest.raises(errors.JobCanceled):
        transfer_disks(lu, "uuid-node1", "uuid-node2", make_instance([src], "impexp-slow"),
                       [(["script", src, 0], ["raw", dst])], "gzip", lambda m: None,
                       timeouts=FAST)
    assert [c[0] for c in lu.rpc.calls if c[0] in ("impexp_abort", "impexp_cleanup")] == \
        ["impexp_abort", "impexp_abort", "impexp_cleanup", "impexp_cleanup"]
    assert len(pids) == 2
    for pid in pids:
        wait_group_gone(pid)
        assert group_members(pid) == []
    assert_clean(nodes)
    with open(nodes.n2.real(f"{FS}/inst1/d0"), "rb") as fh:
        assert fh.read(MIB) == bytes(MIB)           # partial data marked invalid


def test_bad_arguments(nodes: Nodes) -> None:
    lu = FakeLU(nodes)
    with pytest.raises(errors.OpPrereqError, match="Unknown compression tool"):
        transfer_disks(lu, "uuid-node1", "uuid-node2", make_instance([]), [], "rar",
                       lambda m: None)
    with pytest.raises(errors.OpPrereqError, match="Unknown source or destination"):
        transfer_disks(lu, "uuid-node1", "uuid-nodeX", make_instance([]), [], "none",
                       lambda m: None)
    assert transfer_disks(lu, "uuid-node1", "uuid-node2", make_instance([]), [], "none",
                          lambda m: None) == []


def test_formatting() -> None:
    assert format_eta(None) is None
    assert format_eta(12) == "00:12"
    assert format_eta(3725) == "1:02:05"
    st = {"progress_mbytes": 123, "progress_throughput": 45.6, "progress_eta": 12,
          "progress_percent": 37}
    assert format_progress("disk/0", st) == "disk/0: 123 MiB sent, 45.6 MiB/s, ETA 00:12, 37%"
    assert format_progress("disk/1", {"progress_mbytes": None}) == "disk/1: 0 MiB sent"
