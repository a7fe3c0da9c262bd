"""Disk checks of cluster verify, OP_CLUSTER_VERIFY_DISKS / OP_GROUP_VERIFY_DISKS and
OP_CLUSTER_REPAIR_DISK_SIZES (cmdlib/cluster_disks.py, cmdlib/disk_checks.py) on a
real 2-node dev cluster with file disks and the fake hypervisor; the
``gnt-cluster`` commands through ``run_cli``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import daemons, errors

try:
    from .test_instance_fixtures import Env, env, icluster, install_test_os  # noqa: F401
except ImportError:
    from test_instance_fixtures import Env, env, icluster, install_test_os  # noqa: F401

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
FILE_DIR = "/srv/corral/file-storage"
SHARED_DIR = "/srv/corral/shared-file-storage"
SLOW_OS = "corral-slow"
_SLOW_CREATE = "#!/bin/sh\nsleep 4\nexit 0\n"


def remove_stray(env: Env) -> None:
    """Remove what :func:`drop` made (and links the test registered)."""
    for path in env.stray:  # type: ignore[attr-defined]
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            for child in sorted(path.rglob("*"), reverse=True):
                child.rmdir() if child.is_dir() else child.unlink()
            path.rmdir()
    env.stray.clear()  # type: ignore[attr-defined]


@pytest.fixture
def denv(env: Env) -> Iterator[Env]:
    """The module's cluster; files dropped into storage dirs are removed after the test."""
    env.stray = []  # type: ignore[attr-defined]
    try:
        yield env
    finally:
        remove_stray(env)


def drop(env: Env, node: str, virtual: str, size_mib: int) -> Path:
    """A sparse file of ``size_mib`` MiB at ``virtual`` on ``node``, removed after the test."""
    real = env.real(node, virtual)
    top = real
    while not top.parent.exists():
        top = top.parent
    real.parent.mkdir(parents=True, exist_ok=True)
    with open(real, "wb") as fh:
        fh.truncate(size_mib * MIB)
    env.stray.append(top if top != real else real)  # type: ignore[attr-defined]
    return real


def verify(env: Env, **params: Any) -> tuple[bool, list[str]]:
    """Run OP_CLUSTER_VERIFY and its jobs; (all jobs returned True, log lines)."""
    result = env.run1({"OP_ID": "OP_CLUSTER_VERIFY", **params})
    lines: list[str] = []
    ok = True
    for submitted, job_id in result["jobs"]:
        assert submitted, job_id
        res = env.client.wait_job(job_id, feedback_fn=lambda e: lines.append(e[2]),
                                  timeout=120)
        ok = ok and all(res)
    return ok, lines


def verify_disks(env: Env) -> list[Any]:
    """The OP_GROUP_VERIFY_DISKS results of an OP_CLUSTER_VERIFY_DISKS."""
    result = env.run1({"OP_ID": "OP_CLUSTER_VERIFY_DISKS"})
    assert len(result["jobs"]) == 1      # one node group
    return [env.client.wait_job(job_id, timeout=120)[0] for _ok, job_id in result["jobs"]]


def errors_of(lines: list[str]) -> list[str]:
    return [line for line in lines if "ERROR" in line]


def file_instance(env: Env, name: str, size: str = "8M", pnode: str = "node1",
                  template: str = C.DT_FILE, **kw: Any) -> Path:
    env.create(name, disk_template=template, disks=[{"size": size}], pnode=pnode, **kw)
    ((node, path),) = env.disk_files(name)
    assert node == pnode and path.is_file()
    return path


def disk_size(env: Env, name: str) -> int:
    return env.info(name)["disks"][0]["size"]


# -- cluster verify ---------------------------------------------------------------------
def test_clean_cluster_verifies_clean(denv: Env) -> None:
    file_instance(denv, "clean1")
    file_instance(denv, "clean2", pnode="node2", template=C.DT_SHARED_FILE)
    denv.create("clean3")                    # diskless
    ok, lines = verify(denv)
    assert ok, "\n".join(lines)
    assert errors_of(lines) == [] and not any("WARNING" in line for line in lines)
    assert "* Verifying instance disks and orphan files" in lines


def test_missing_disk(denv: Env) -> None:
    path = file_instance(denv, "miss1")
    vpath = denv.info("miss1")["disks"][0]["logical_id"][1]
    path.unlink()
    ok, lines = verify(denv)
    assert not ok
    assert errors_of(lines) == [
        f"  - ERROR: instance miss1: disk/0 ({vpath}) missing on node node1"]
    ok, lines = verify(denv, error_codes=True)
    assert not ok
    assert errors_of(lines) == [
        f"  - ERROR:EINSTANCEMISSINGDISK:instance:miss1:disk/0 ({vpath}) missing on node node1"]
    # Ignored codes become warnings and verify succeeds (Ganeti's -I).
    ok, lines = verify(denv, ignore_errors=["EINSTANCEMISSINGDISK"])
    assert ok and errors_of(lines) == []
    assert any("WARNING: instance miss1: disk/0" in line for line in lines)


def test_truncated_and_unusable_disks(denv: Env) -> None:
    path = file_instance(denv, "short1", size="8M")
    os.truncate(path, 3 * MIB)
    ok, lines = verify(denv, error_codes=True)
    assert not ok
    assert errors_of(lines) == [
        ("  - ERROR:EINSTANCEFAULTYDISK:instance:short1:disk/0 on node1 is smaller than "
         f"recorded: 3 MiB ({3 * MIB} bytes), configuration says 8 MiB")]
    path.unlink()
    path.mkdir()
    try:
        ok, lines = verify(denv, error_codes=True)
    finally:
        path.rmdir()
    assert not ok
    (line,) = errors_of(lines)
    assert line.startswith("  - ERROR:EINSTANCEFAULTYDISK:instance:short1:disk/0 on node1 "
                           "is unusable:") and "is not a regular file" in line


def test_orphan_files_and_links(denv: Env) -> None:
    file_instance(denv, "keep1")
    big = f"{FILE_DIR}/moved1/6f1c.file.disk0"     # what a failed move leaves behind
    drop(denv, "node2", big, 256)
    drop(denv, "node1", f"{SHARED_DIR}/junk.img", 1)
    link = denv.node("node2").paths.instance_disks_dir / "ghost:0"
    link.symlink_to("/nowhere")
    denv.stray.append(link)  # type: ignore[attr-defined]
    ok, lines = verify(denv, error_codes=True)
    assert not ok
    assert sorted(errors_of(lines)) == sorted([
        f"  - ERROR:ENODEORPHANLV:node:node2:file {big} is unknown",
        # The shared dir is one directory seen by every node.
        f"  - ERROR:ENODEORPHANLV:node:node1:file {SHARED_DIR}/junk.img is unknown",
        f"  - ERROR:ENODEORPHANLV:node:node2:file {SHARED_DIR}/junk.img is unknown",
        ("  - ERROR:ENODEORPHANLV:node:node2:disk link "
         "/var/run/corral/instance-disks/ghost:0 is unknown")])
    # An export is not an orphan, even while it is being written.
    remove_stray(denv)
    drop(denv, "node1", "/srv/corral/export/keep1.new/disk0", 1)
    ok, lines = verify(denv)
    assert ok, "\n".join(errors_of(lines))


def test_grown_disk_warns_and_repair_fixes(denv: Env) -> None:
    path = file_instance(denv, "grown1", size="8M")
    file_instance(denv, "same1", size="8M")
    os.truncate(path, 24 * MIB)
    ok, lines = verify(denv)
    assert ok, "\n".join(lines)
    assert any("WARNING: instance grown1: disk/0 on node1 is larger than recorded: 24 MiB, "
               "configuration says 8 MiB" in line for line in lines)
    dry = denv.run1({"OP_ID": "OP_CLUSTER_REPAIR_DISK_SIZES", "dry_run": True})
    assert dry == [["grown1", 0, "size", 24]]
    assert disk_size(denv, "grown1") == 8
    assert denv.run1({"OP_ID": "OP_CLUSTER_REPAIR_DISK_SIZES",
                      "instances": ["same1"]}) == []
    assert denv.run1({"OP_ID": "OP_CLUSTER_REPAIR_DISK_SIZES"}) == [["grown1", 0, "size", 24]]
    assert disk_size(denv, "grown1") == 24
    assert denv.run1({"OP_ID": "OP_CLUSTER_REPAIR_DISK_SIZES"}) == []
    ok, lines = verify(denv)
    assert ok and not any("larger than recorded" in line for line in lines)


def test_repair_bad_input(denv: Env) -> None:
    err = denv.fail({"OP_ID": "OP_CLUSTER_REPAIR_DISK_SIZES", "instances": ["nosuch"]})
    assert isinstance(err, errors.OpPrereqError) and err.ecode == errors.ECODE_NOENT
    err = denv.fail({"OP_ID": "OP_CLUSTER_REPAIR_DISK_SIZES", "instances": [""]})
    assert err.ecode == errors.ECODE_INVAL
    err = denv.fail({"OP_ID": "OP_GROUP_VERIFY_DISKS", "group_name": "nosuch"})
    assert err.ecode == errors.ECODE_NOENT


def test_verify_waits_for_jobs_holding_instance_locks(denv: Env) -> None:
    """A create in progress (disk made, OS installing) is never seen half-done."""
    for node in denv.dev.nodes:
        install_test_os(node.paths.os_dir, SLOW_OS, _SLOW_CREATE)
    create = denv.client.submit_job([{
        "OP_ID": "OP_INSTANCE_CREATE", "instance_name": "slow1", "mode": "create",
        "disks": [{"size": "8M"}], "nics": [], "disk_template": C.DT_FILE,
        "os_type": SLOW_OS, "pnode": "node1", "name_check": False, "ip_check": False}])
    deadline = time.monotonic() + 60
    while denv.client.query_jobs([create], ["status"])[0][0] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ok, lines = verify(denv)
    assert ok, "\n".join(lines)
    denv.client.wait_job(create, timeout=60)
    group_job = max(j for (j,) in denv.client.query_jobs(None, ["id"]))
    ((opexec,),) = denv.client.query_jobs([group_job], ["opexec"])
    ((opend,),) = denv.client.query_jobs([create], ["opend"])
    assert tuple(opexec) >= tuple(opend)


# -- verify-disks -----------------------------------------------------------------------
def test_verify_disks(denv: Env) -> None:
    assert verify_disks(denv) == [[{}, [], {}]]
    path = file_instance(denv, "vd1")                       # running: disks active
    file_instance(denv, "vd2", start=False)                 # disks not active
    file_instance(denv, "vd3")
    assert verify_disks(denv) == [[{}, [], {}]]
    vpath = denv.info("vd1")["disks"][0]["logical_id"][1]
    path.unlink()
    (denv.node("node1").paths.instance_disks_dir / "vd3:0").unlink()
    ((node_errors, needs, missing),) = verify_disks(denv)
    assert node_errors == {} and needs == ["vd3"] and missing == {"vd1": [["node1", vpath]]}
    denv.run1({"OP_ID": "OP_INSTANCE_ACTIVATE_DISKS", "instance_name": "vd3"})
    assert verify_disks(denv) == [[{}, [], {"vd1": [["node1", vpath]]}]]


# -- gnt-cluster ------------------------------------------------------------------------
def test_cli_verify_and_verify_disks(denv: Env, run_cli: Any) -> None:
    root = denv.dev
    path = file_instance(denv, "cli1")
    file_instance(denv, "cli2")
    res = run_cli(["gnt-cluster", "verify"], root, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ERROR" not in res.stdout
    res = run_cli(["gnt-cluster", "verify-disks"], root, timeout=120)
    assert res.returncode == 0 and "No disks need to be activated." in res.stdout

    (denv.node("node1").paths.instance_disks_dir / "cli2:0").unlink()
    res = run_cli(["gnt-cluster", "verify-disks"], root, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Activating disks for instance 'cli2'" in res.stdout
    assert (denv.node("node1").paths.instance_disks_dir / "cli2:0").is_symlink()

    vpath = denv.info("cli1")["disks"][0]["logical_id"][1]
    path.unlink()
    res = run_cli(["gnt-cluster", "verify", "--error-codes"], root, timeout=120)
    assert res.returncode == 1
    assert "ERROR:EINSTANCEMISSINGDISK:instance:cli1:disk/0" in res.stdout
    res = run_cli(["gnt-cluster", "verify-disks"], root, timeout=120)
    assert res.returncode == 1
    assert f"Instance cli1 has missing disks:\n\tnode1 {vpath}\n" in res.stdout
    assert "You need to replace or recreate disks" in res.stdout


def test_cli_repair_disk_sizes(denv: Env, run_cli: Any) -> None:
    path = file_instance(denv, "rep1", size="8M")
    os.truncate(path, 16 * MIB)
    res = run_cli(["gnt-cluster", "repair-disk-sizes", "--dry-run", "rep1"], denv.dev,
                  timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Disk 0 of instance rep1 has mismatched size: recorded 8, actual 16 (dry run" \
        in res.stdout
    assert disk_size(denv, "rep1") == 8
    res = run_cli(["gnt-cluster", "repair-disk-sizes", "rep1"], denv.dev, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Disk 0 of instance rep1 has mismatched size, correcting: recorded 8, actual 16" \
        in res.stdout
    assert disk_size(denv, "rep1") == 16
    res = run_cli(["gnt-cluster", "repair-disk-sizes", "nosuch"], denv.dev, timeout=120)
    assert res.returncode == 1 and "nosuch" in res.stderr


def test_verify_disks_with_a_dead_node(denv: Env) -> None:
    file_instance(denv, "dn1", pnode="node2")
    vpath = denv.info("dn1")["disks"][0]["logical_id"][1]
    node2 = denv.node("node2")
    assert daemons.stop_daemon(node2.paths, daemons.NODED)
    try:
        ((node_errors, needs, missing),) = verify_disks(denv)
        ok, lines = verify(denv, error_codes=True)
    finally:
        daemons.start_noded(node2.paths, node2.ip, node2.noded_port)
    assert list(node_errors) == ["node2"] and node_errors["node2"]
    assert needs == [] and missing == {"dn1": [["node2", vpath]]}
    # verify names the node once (node_verify), not once more for the disk checks.
    assert not ok
    assert any(line.startswith("  - ERROR:ENODERPC:node:node2:") for line in lines)
    assert not any("cannot verify disks" in line for line in lines)
