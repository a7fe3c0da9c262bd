"""Overall and idle timeouts of transfer processes: real processes started by
noded's backend, a silent peer on loopback, a stalled OS export script."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from corral.backend import impexp as be
from corral.impexp.watchdog import Watchdog

from .nodes import (
    EXPORT_DIR,
    FS,
    MIB,
    NODE2_IP,
    Nodes,
    create_disk,
    opts,
    pid_of,
    refused,
    wait_done,
    wait_group_gone,
    wait_listen,
    write_os,
)

DST = f"{FS}/inst1/dst.file.disk0"


# -- the timer itself ---------------------------------------------------------------------
def test_idle_counts_only_once_connected() -> None:
    value = [0]
    wd = Watchdog(total=100.0, idle=5.0, progress=lambda: value[0], give_up=print)
    t0 = time.monotonic()
    assert wd.check(t0 + 50) is None                  # waiting for a peer: not idle
    wd.connected()
    now = time.monotonic()
    assert wd.check(now + 4) is None
    value[0] = 10                                     # data flowed at now + 4.5
    assert wd.check(now + 4.5) is None
    assert wd.check(now + 9) is None
    assert "no data for 5 seconds" in (wd.check(now + 10) or "")
    assert "not finished within 100 seconds" in (wd.check(t0 + 101) or "")


def test_zero_means_no_limit() -> None:
    wd = Watchdog(total=0, idle=0, progress=lambda: 0, give_up=print)
    wd.connected()
    assert wd.check(time.monotonic() + 1e6) is None


# -- real transfer processes --------------------------------------------------------------
def test_silent_peer_hits_the_idle_timeout(nodes: Nodes) -> None:
    """A peer that connects and sends nothing (no TLS hello even): the importer
    gives up after the idle timeout and stops listening."""
    dst = create_disk(nodes.n2, DST, 4)
    imp = be.import_start(nodes.n2, opts(listen_host=NODE2_IP, idle_timeout=2,
                                         connect_timeout=60, connect_retries=10),
                          None, "disk0", ["raw", dst])
    port = wait_listen(nodes.n2, imp)
    pid = pid_of(nodes.n2, imp)
    started = time.monotonic()
    with socket.create_connection((NODE2_IP, port), timeout=5) as silent:
        st = wait_done(nodes.n2, imp, timeout=30)
        elapsed = time.monotonic() - started
        assert st["exit_status"] == 1, st
        assert "no data for 2 seconds" in st["error_message"], st
        assert 1.5 < elapsed < 10, elapsed
        silent.settimeout(5)
        assert silent.recv(1) == b""                  # the importer closed its end
    wait_group_gone(pid)
    assert refused(NODE2_IP, port)
    be.impexp_cleanup(nodes.n2, imp)
    assert list(nodes.n2.impexp_dir.iterdir()) == []


def test_overall_timeout_while_listening(nodes: Nodes) -> None:
    """Nobody ever connects: the overall timeout ends the importer, whose
    file output is not left behind."""
    target = f"{EXPORT_DIR}/inst1.new/disk0.img"
    imp = be.import_start(nodes.n2, opts(listen_host=NODE2_IP, timeout=2,
                                         connect_timeout=60, connect_retries=10),
                          None, "disk0", ["file", target])
    port = wait_listen(nodes.n2, imp)
    st = wait_done(nodes.n2, imp, timeout=30)
    assert st["exit_status"] == 1 and "not finished within 2 seconds" in st["error_message"]
    wait_group_gone(pid_of(nodes.n2, imp))
    assert refused(NODE2_IP, port)
    assert not any(nodes.n2.real(target).parent.iterdir())


STALLED_EXPORT = """\
echo $(( 8 * 1048576 )) >&$EXP_SIZE_FD
dd if="$EXPORT_DEVICE" bs=1M count=1 status=none
exec sleep 600
"""


def test_stalled_source_times_out_both_ends(nodes: Nodes, tmp_path: Path) -> None:
    """The OS export script stops sending after 1 MiB: the exporter (no bytes
    from its source) and the importer (no bytes from the wire) both give up,
    and the script is stopped with them."""
    from corral.objects import Disk, Instance

    write_os(nodes.n1, "stall", STALLED_EXPORT, "exit 0\n")
    src = create_disk(nodes.n1, f"{FS}/inst1/src.file.disk0", 8)
    dst = create_disk(nodes.n2, DST, 8)
    inst = Instance(name="inst1", primary_node="uuid-node1", os="stall",
                    disks=[Disk.model_validate(src)]).to_dict()
    inst["primary_node_name"] = "node1"
    o = opts(listen_host=NODE2_IP, idle_timeout=3)
    imp = be.import_start(nodes.n2, o, None, "disk0", ["raw", dst])
    port = wait_listen(nodes.n2, imp)
    exp = be.export_start(nodes.n1, o, NODE2_IP, port, inst, "disk0", ["script", src, 0])
    pids = pid_of(nodes.n1, exp), pid_of(nodes.n2, imp)
    est = wait_done(nodes.n1, exp, timeout=40)
    ist = wait_done(nodes.n2, imp, timeout=40)
    assert est["exit_status"] == 1 and "no data for 3 seconds" in est["error_message"], est
    assert ist["exit_status"] == 1, ist
    assert est["progress_bytes"] == MIB
    for pid in pids:                                  # the script's sleep too
        wait_group_gone(pid)
    assert refused(NODE2_IP, port)


@pytest.mark.parametrize("bad", [-1, float("nan"), "x"])
def test_bad_timeouts_refused(nodes: Nodes, bad: object) -> None:
    from corral import errors

    dst = create_disk(nodes.n2, DST, 4)
    with pytest.raises(errors.RPCFail):
        be.import_start(nodes.n2, opts(listen_host=NODE2_IP, idle_timeout=bad), None,
                        "disk0", ["raw", dst])
    assert list(nodes.n2.impexp_dir.iterdir()) == []
