"""Node-side transfer procedures with real transfer processes between two node
roots (node1 -> node2 on 127.0.2.x), real TLS certificates and real files."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from impexp.nodes import (  # tests/impexp/nodes.py
    EXPORT_DIR,
    FS,
    MIB,
    NODE2_IP,
    Nodes,
    create_disk,
    group_members,
    make_ca,
    make_node,
    node_pair,
    opts,
    pattern,
    pid_of,
    sha256,
    start_pair,
    status,
    wait_done,
    wait_group_gone,
    wait_listen,
    wait_progress,
    write_os,
)

from corral import errors
from corral.backend import impexp as be
from corral.impexp import compression
from corral.noded import dispatch
from corral.objects import Disk, Instance


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    """node1 and node2 (127.0.2.1/2) with certificates of one CA."""
    yield from node_pair(tmp_path)


SRC = f"{FS}/inst1/src.file.disk0"
DST = f"{FS}/inst1/dst.file.disk0"
ZERO_MIB_SHA = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58"

# 1 MiB of the disk every 0.1 s, with the size announced on EXP_SIZE_FD.
SLOW_EXPORT = """\
echo $(( {mib} * 1048576 )) >&$EXP_SIZE_FD
i=0
while [ $i -lt {mib} ]; do
  dd if="$EXPORT_DEVICE" bs=1M skip=$i count=1 status=none
  sleep 0.1
  i=$((i + 1))
done
"""
IMPORT_SCRIPT = 'exec dd of="$IMPORT_DEVICE" bs=1M conv=notrunc status=none\n'
FAST_EXPORT = 'echo $(( $DISK_0_SIZE * 1048576 )) >&$EXP_SIZE_FD\nexec cat "$EXPORT_DEVICE"\n'


def instance(disk: dict[str, Any], os_name: str) -> dict[str, Any]:
    inst = Instance(name="inst1", primary_node="uuid-node1", os=os_name,
                    disks=[Disk.model_validate(disk)])
    data = inst.to_dict()
    data["primary_node_name"] = "node1"
    return data


def first_mib_sha(path: Path) -> str:
    with open(path, "rb") as fh:
        data = fh.read(MIB)
    return hashlib.sha256(data).hexdigest()


def run_pair(nodes: Nodes, src_io: list[Any], dst_io: list[Any], o: dict[str, Any],
             export_opts: dict[str, Any] | None = None) -> tuple[dict, dict]:
    imp, exp = start_pair(nodes.n1, nodes.n2, src_io, dst_io, o, export_opts)
    est, ist = wait_done(nodes.n1, exp), wait_done(nodes.n2, imp)
    be.impexp_cleanup(nodes.n1, exp)
    be.impexp_cleanup(nodes.n2, imp)
    return est, ist


# -- successful transfers --------------------------------------------------------------
def test_raw_to_raw_64mib(nodes: Nodes) -> None:
    src = create_disk(nodes.n1, SRC, 64, pattern(64 * MIB))
    dst = create_disk(nodes.n2, DST, 64)
    imp, exp = start_pair(nodes.n1, nodes.n2, ["raw", src], ["raw", dst],
                          opts(expected_size=64))
    est, ist = wait_done(nodes.n1, exp), wait_done(nodes.n2, imp)
    assert (est["exit_status"], est["error_message"]) == (0, None), est
    assert (ist["exit_status"], ist["error_message"]) == (0, None), ist
    assert sha256(nodes.n1.real(SRC)) == sha256(nodes.n2.real(DST))
    for st in (est, ist):
        assert st["connected"] is True
        assert st["progress_bytes"] == 64 * MIB
        assert st["progress_mbytes"] == 64
        assert st["progress_percent"] == 100
        assert st["progress_throughput"] > 0
        assert st["progress_eta"] == 0
    assert est["mode"] == "export" and ist["mode"] == "import"
    assert ist["listen_port"] > 0
    # Each side saw the other's certificate.
    assert any("(node1)" in line for line in ist["recent_output"]), ist["recent_output"]
    assert any("(node2)" in line for line in est["recent_output"]), est["recent_output"]
    pids = pid_of(nodes.n2, imp), pid_of(nodes.n1, exp)
    be.impexp_cleanup(nodes.n1, exp)
    be.impexp_cleanup(nodes.n2, imp)
    assert os.listdir(nodes.n1.impexp_dir) == os.listdir(nodes.n2.impexp_dir) == []
    assert be.impexp_status(nodes.n2, [imp]) == [None]
    for pid in pids:
        assert group_members(pid) == []


@pytest.mark.parametrize("tool", ["gzip", "gzip-fast", "zstd", "lzop"])
def test_compression(nodes: Nodes, tool: str) -> None:
    try:
        compression.argv_for(tool, decompress=False)
    except errors.OpPrereqError:
        pytest.skip(f"{tool} is not installed")
    src = create_disk(nodes.n1, SRC, 64, pattern(64 * MIB, seed=3))
    dst = create_disk(nodes.n2, DST, 64)
    est, ist = run_pair(nodes, ["raw", src], ["raw", dst], opts(compress=tool))
    assert est["exit_status"] == ist["exit_status"] == 0, (est, ist)
    assert ist["progress_bytes"] == est["progress_bytes"] == 64 * MIB
    assert sha256(nodes.n1.real(SRC)) == sha256(nodes.n2.real(DST))


def test_compression_mismatch_fails(nodes: Nodes) -> None:
    src = create_disk(nodes.n1, SRC, 8, pattern(8 * MIB))
    dst = create_disk(nodes.n2, DST, 8)
    est, ist = run_pair(nodes, ["raw", src], ["raw", dst], opts(compress="gzip"),
                        opts(compress="none"))
    assert ist["exit_status"] != 0 and "gzip" in ist["error_message"], ist
    assert est["exit_status"] != 0
    assert first_mib_sha(nodes.n2.real(DST)) == ZERO_MIB_SHA


def test_raw_to_file_and_back(nodes: Nodes) -> None:
    data = pattern(16 * MIB, seed=5)
    src = create_disk(nodes.n1, SRC, 16, data)
    target = f"{EXPORT_DIR}/inst1.new/disk0.img"
    est, ist = run_pair(nodes, ["raw", src], ["file", target], opts())
    assert est["exit_status"] == ist["exit_status"] == 0, (est, ist)
    real = nodes.n2.real(target)
    assert sha256(real) == sha256(nodes.n1.real(SRC))
    assert os.listdir(real.parent) == ["disk0.img"]       # no temporary file left
    # Back: node2's export file into a disk of node1 (swap roles: node1 imports).
    back = create_disk(nodes.n1, f"{FS}/inst1/back.file.disk0", 16)
    imp = be.import_start(nodes.n1, opts(listen_host="127.0.2.1"), None, "disk0",
                          ["raw", back])
    port = wait_listen(nodes.n1, imp)
    exp = be.export_start(nodes.n2, opts(), "127.0.2.1", port, None, "disk0",
                          ["file", target])
    assert wait_done(nodes.n2, exp)["exit_status"] == 0
    assert wait_done(nodes.n1, imp)["exit_status"] == 0
    assert sha256(nodes.n1.real(f"{FS}/inst1/back.file.disk0")) == sha256(real)


def test_script_source_and_sink(nodes: Nodes) -> None:
    write_os(nodes.n1, "impexp-os", FAST_EXPORT, IMPORT_SCRIPT)
    write_os(nodes.n2, "impexp-os", FAST_EXPORT, IMPORT_SCRIPT)
    src = create_disk(nodes.n1, SRC, 8, pattern(8 * MIB, seed=7))
    dst = create_disk(nodes.n2, DST, 8)
    imp = be.import_start(nodes.n2, opts(listen_host=NODE2_IP),
                          instance(dst, "impexp-os"), "disk0", ["script", dst, 0])
    port = wait_listen(nodes.n2, imp)
    exp = be.export_start(nodes.n1, opts(), NODE2_IP, port, instance(src, "impexp-os"),
                          "disk0", ["script", src, 0])
    est, ist = wait_done(nodes.n1, exp), wait_done(nodes.n2, imp)
    assert est["exit_status"] == ist["exit_status"] == 0, (est, ist)
    assert est["progress_percent"] == 100      # size announced on EXP_SIZE_FD
    assert sha256(nodes.n1.real(SRC)) == sha256(nodes.n2.real(DST))
    logs = sorted(p.name for p in nodes.n2.os_log_dir.iterdir())
    assert any(n.startswith("import-impexp-os-inst1-disk0") for n in logs), logs


def test_progress_while_running(nodes: Nodes) -> None:
    write_os(nodes.n1, "impexp-slow", SLOW_EXPORT.format(mib=30), IMPORT_SCRIPT)
    src = create_disk(nodes.n1, SRC, 30, pattern(30 * MIB, seed=9))
    dst = create_disk(nodes.n2, DST, 30)
    imp = be.import_start(nodes.n2, opts(listen_host=NODE2_IP, expected_size=30), None,
                          "disk0", ["raw", dst])
    port = wait_listen(nodes.n2, imp)
    exp = be.export_start(nodes.n1, opts(), NODE2_IP, port, instance(src, "impexp-slow"),
                          "disk0", ["script", src, 0])
    wait_progress(nodes.n1, exp, 8 * MIB)
    time.sleep(1.2)                 # let the status be rewritten with a rate
    mid = status(nodes.n1, exp)
    assert not mid["done"] and mid["connected"]
    assert 0 < mid["progress_percent"] < 100, mid
    assert mid["progress_mbytes"] >= 8
    assert 3 < mid["progress_throughput"] < 30, mid       # about 10 MiB/s
    assert mid["progress_eta"] is not None and 0 < mid["progress_eta"] < 30, mid
    imid = status(nodes.n2, imp)
    assert 0 < imid["progress_percent"] < 100, imid
    assert wait_done(nodes.n1, exp)["exit_status"] == 0
    assert wait_done(nodes.n2, imp)["exit_status"] == 0
    assert sha256(nodes.n1.real(SRC)) == sha256(nodes.n2.real(DST))


def test_listen_address_from_ssconf(nodes: Nodes, tmp_path: Path) -> None:
    dst = create_disk(nodes.n2, DST, 1)
    imp = be.import_start(nodes.n2, opts(), None, "disk0", ["raw", dst])
    port = wait_listen(nodes.n2, imp)
    assert f"Listening on {NODE2_IP}:{port}" in status(nodes.n2, imp)["recent_output"]
    lonely = make_node(tmp_path / "lonely", "lonely", nodes.ca)
    disk = create_disk(lonely, DST, 1)
    with pytest.raises(errors.RPCFail, match="primary IP"):
        be.import_start(lonely, opts(), None, "disk0", ["raw", disk])
    assert os.listdir(lonely.impexp_dir) == []


# -- refused peers ---------------------------------------------------------------------
def test_wrong_magic_refused(nodes: Nodes) -> None:
    src = create_disk(nodes.n1, SRC, 4, pattern(4 * MIB))
    dst = create_disk(nodes.n2, DST, 4)
    est, ist = run_pair(nodes, ["raw", src], ["raw", dst], opts(magic="right-magic"),
                        opts(magic="wrong-magic"))
    assert ist["exit_status"] == 1 and "Magic value mismatch" in ist["error_message"], ist
    assert est["exit_status"] == 1, est
    assert ist["progress_bytes"] == 0
    assert first_mib_sha(nodes.n2.real(DST)) == ZERO_MIB_SHA


def test_peer_from_other_ca_refused(nodes: Nodes, tmp_path: Path) -> None:
    """An exporter whose certificate another CA signed is refused by the
    importer, even when it trusts our CA."""
    evil = make_node(tmp_path / "evil", "evil", make_ca("other"))
    src = create_disk(evil, SRC, 4, pattern(4 * MIB))
    dst = create_disk(nodes.n2, DST, 4)
    imp = be.import_start(nodes.n2, opts(listen_host=NODE2_IP), None, "disk0", ["raw", dst])
    port = wait_listen(nodes.n2, imp)
    exp = be.export_start(evil, opts(ca_pem=nodes.ca.cert), NODE2_IP, port, None, "disk0",
                          ["raw", src])
    ist, est = wait_done(nodes.n2, imp), wait_done(evil, exp)
    assert ist["exit_status"] == 1 and "TLS handshake" in ist["error_message"], ist
    assert "certificate" in ist["error_message"]
    assert est["exit_status"] == 1 and not ist["connected"]
    assert first_mib_sha(nodes.n2.real(DST)) == ZERO_MIB_SHA
    be.impexp_cleanup(evil, exp)


def test_importer_from_other_ca_refused(nodes: Nodes, tmp_path: Path) -> None:
    """The exporter does not send to an importer it cannot verify."""
    evil = make_node(tmp_path / "evil", "evil", make_ca("other"))
    dst = create_disk(evil, DST, 4)
    src = create_disk(nodes.n1, SRC, 4, pattern(4 * MIB))
    imp = be.import_start(evil, opts(listen_host=NODE2_IP, ca_pem=nodes.ca.cert), None,
                          "disk0", ["raw", dst])
    port = wait_listen(evil, imp)
    exp = be.export_start(nodes.n1, opts(), NODE2_IP, port, None, "disk0", ["raw", src])
    est = wait_done(nodes.n1, exp)
    assert est["exit_status"] == 1 and "certificate verify failed" in est["error_message"]
    assert est["progress_bytes"] == 0
    assert wait_done(evil, imp)["exit_status"] == 1
    assert first_mib_sha(evil.real(DST)) == ZERO_MIB_SHA
    be.impexp_cleanup(evil, imp)


# -- abort, cleanup, crashes ----------------------------------------------------------------
def _slow_pair(nodes: Nodes, dst_io: list[Any], mib: int = 60) -> tuple[str, str]:
    write_os(nodes.n1, "impexp-slow", SLOW_EXPORT.format(mib=mib), IMPORT_SCRIPT)
    src = create_disk(nodes.n1, SRC, mib, pattern(mib * MIB, seed=11))
    imp = be.import_start(nodes.n2, opts(listen_host=NODE2_IP), None, "disk0", dst_io)
    port = wait_listen(nodes.n2, imp)
    exp = be.export_start(nodes.n1, opts(), NODE2_IP, port, instance(src, "impexp-slow"),
                          "disk0", ["script", src, 0])
    return imp, exp


def test_abort_raw_import(nodes: Nodes) -> None:
    dst = create_disk(nodes.n2, DST, 60)
    imp, exp = _slow_pair(nodes, ["raw", dst])
    wait_progress(nodes.n2, imp, 3 * MIB)
    pids = pid_of(nodes.n2, imp), pid_of(nodes.n1, exp)
    assert be.impexp_abort(nodes.n2, imp) is True
    ist = wait_done(nodes.n2, imp)
    assert ist["exit_status"] == 1 and "aborted" in ist["error_message"].lower(), ist
    est = wait_done(nodes.n1, exp)
    assert est["exit_status"] == 1, est
    for pid in pids:                 # transfer processes, OS script and its sleep
        wait_group_gone(pid)
    # The partial data does not look like a disk: its start was zeroed.
    assert first_mib_sha(nodes.n2.real(DST)) == ZERO_MIB_SHA
    assert not (nodes.n2.impexp_dir / imp / "partial-output").exists()
    assert be.impexp_abort(nodes.n2, imp) is False
    be.impexp_cleanup(nodes.n2, imp)
    be.impexp_cleanup(nodes.n1, exp)
    assert os.listdir(nodes.n2.impexp_dir) == os.listdir(nodes.n1.impexp_dir) == []


def test_abort_exporter_fails_file_import(nodes: Nodes) -> None:
    target = f"{EXPORT_DIR}/inst1.new/disk0.img"
    imp, exp = _slow_pair(nodes, ["file", target])
    wait_progress(nodes.n2, imp, 3 * MIB)
    assert len(os.listdir(nodes.n2.real(target).parent)) == 1     # the temporary file
    assert be.impexp_abort(nodes.n1, exp) is True
    assert wait_done(nodes.n1, exp)["exit_status"] == 1
    ist = wait_done(nodes.n2, imp)
    assert ist["exit_status"] == 1, ist
    assert os.listdir(nodes.n2.real(target).parent) == []       # nothing left behind
    for name, node in ((imp, nodes.n2), (exp, nodes.n1)):
        wait_group_gone(pid_of(node, name))


def test_cleanup_of_running_transfer(nodes: Nodes) -> None:
    target = f"{EXPORT_DIR}/inst1.new/disk0.img"
    imp, exp = _slow_pair(nodes, ["file", target])
    wait_progress(nodes.n2, imp, 2 * MIB)
    pids = pid_of(nodes.n2, imp), pid_of(nodes.n1, exp)
    be.impexp_cleanup(nodes.n2, imp)
    be.impexp_cleanup(nodes.n1, exp)
    for pid in pids:
        wait_group_gone(pid)
    assert os.listdir(nodes.n2.impexp_dir) == os.listdir(nodes.n1.impexp_dir) == []
    assert os.listdir(nodes.n2.real(target).parent) == []
    assert be.impexp_status(nodes.n2, [imp, exp]) == [None, None]


def test_killed_process_reported_and_undone(nodes: Nodes) -> None:
    target = f"{EXPORT_DIR}/inst1.new/disk0.img"
    imp, exp = _slow_pair(nodes, ["file", target])
    wait_progress(nodes.n2, imp, 2 * MIB)
    pid = pid_of(nodes.n2, imp)
    os.kill(pid, signal.SIGKILL)          # no chance to clean up after itself
    ist = wait_done(nodes.n2, imp)
    assert ist["exit_status"] == -1 and "died" in ist["error_message"], ist
    assert len(os.listdir(nodes.n2.real(target).parent)) == 1     # partial file left
    assert wait_done(nodes.n1, exp)["exit_status"] == 1
    be.impexp_cleanup(nodes.n2, imp)
    assert os.listdir(nodes.n2.real(target).parent) == []
    wait_group_gone(pid)


# -- bad arguments ----------------------------------------------------------------------
def test_bad_arguments(nodes: Nodes, monkeypatch: pytest.MonkeyPatch,
                       tmp_path: Path) -> None:
    n2 = nodes.n2
    dst = create_disk(n2, DST, 1)
    raw = ["raw", dst]
    cases: list[tuple[dict[str, Any], Any, str, str]] = [
        ({"compress": "none"}, raw, "disk0", "magic"),
        (opts(magic="x y"), raw, "disk0", "magic"),
        (opts(bogus=1), raw, "disk0", "bogus"),
        (opts(compress="rar"), raw, "disk0", "Unknown compression tool"),
        (opts(), raw, "../disk0", "component"),
        (opts(), ["file", f"{FS}/inst1/x"], "disk0", "not below the export directory"),
        (opts(), ["file", f"{EXPORT_DIR}/../x"], "disk0", ".."),
        (opts(), ["file", EXPORT_DIR], "disk0", "not below"),
        (opts(), ["raw"], "disk0", "Invalid transfer endpoint"),
        (opts(), ["tape", dst], "disk0", "Invalid transfer endpoint"),
        (opts(), ["raw", dict(dst, logical_id=["loop", "/etc/passwd"])], "disk0",
         "not below the allowed"),
        (opts(), ["raw", dict(dst, logical_id=["loop", f"{FS}/inst1/missing"])], "disk0",
         "does not exist"),
        (opts(key_name="nokey", ca_pem=nodes.ca.cert), raw, "disk0", "not found"),
        (opts(key_name="nokey"), raw, "disk0", "ca_pem"),
        (opts(ca_pem="garbage"), raw, "disk0", "Invalid CA"),
    ]
    for o, io, component, msg in cases:
        o.setdefault("listen_host", NODE2_IP)
        with pytest.raises(errors.RPCFail, match=msg):
            be.import_start(n2, o, None, component, io)
    with pytest.raises(errors.RPCFail, match="not found in the export directory"):
        be.export_start(n2, opts(), NODE2_IP, 1234, None, "disk0",
                        ["file", f"{EXPORT_DIR}/none.img"])
    with pytest.raises(errors.RPCFail, match="importer address"):
        be.export_start(n2, opts(), NODE2_IP, 0, None, "disk0", raw)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(errors.RPCFail, match="'zstd'.*not installed"):
        be.import_start(n2, opts(compress="zstd", listen_host=NODE2_IP), None, "disk0", raw)
    monkeypatch.undo()
    assert os.listdir(n2.impexp_dir) == []              # nothing half-started
    with pytest.raises(errors.RPCFail, match="Invalid transfer name"):
        be.impexp_status(n2, ["../../etc"])
    assert be.impexp_status(n2, ["import-disk0-nothere"]) == [None]
    with pytest.raises(errors.RPCFail, match="Unknown transfer"):
        be.impexp_abort(n2, "import-disk0-nothere")
    assert be.impexp_cleanup(n2, "import-disk0-nothere") is None


def test_dispatch_table(nodes: Nodes) -> None:
    res = dispatch.call(nodes.n2, "impexp_status", [["export-disk0-none"]])
    assert (res.ok, res.payload) == (True, [None])
    res = dispatch.call(nodes.n2, "import_start", [opts(), None, "disk0"])
    assert not res.ok and "takes 4 arguments" in res.payload
    dst = create_disk(nodes.n2, DST, 1)
    res = dispatch.call(nodes.n2, "import_start",
                        [opts(listen_host=NODE2_IP), None, "disk0", ["raw", dst]])
    assert res.ok and res.payload.startswith("import-disk0-"), res.payload
    res = dispatch.call(nodes.n2, "impexp_abort", [res.payload])
    assert res.ok and res.payload is True
