"""OP_BACKUP_EXPORT/QUERY/REMOVE and OP_INSTANCE_CREATE mode import on a real
3-node dev cluster (fake hypervisor, file disks, OS scripts that move the
data): data arrives byte-identical, failures leave no export that looks
valid and nothing of a half-imported instance."""

from __future__ import annotations

import configparser
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from corral import errors

try:
    from .test_backup_fixtures import (  # noqa: F401
        DD_OS, FAILEXP_OS, FAILIMP_OS, MIB, SLOW_OS, BackupEnv, bcluster, benv,
        group_members, sha256)
except ImportError:
    from test_backup_fixtures import (  # noqa: F401
        DD_OS, FAILEXP_OS, FAILIMP_OS, MIB, SLOW_OS, BackupEnv, bcluster, benv,
        group_members, sha256)

pytestmark = [pytest.mark.integration]

FILE_DIR = "/srv/corral/file-storage"


def config_ini(env: BackupEnv, node: str, name: str) -> configparser.RawConfigParser:
    cfg = configparser.RawConfigParser()
    cfg.read(env.export_dir(node) / name / "config.ini")
    return cfg


def assert_clean(env: BackupEnv) -> None:
    """No export in progress anywhere, no transfer left, no stray process."""
    for node, entries in env.export_entries().items():
        assert not [e for e in entries if e.endswith(".new") or e.startswith(".")], \
            (node, entries)
    assert env.transfer_dirs() == []
    assert env.wait_no_strays() == []


# -- local export and import ----------------------------------------------------------------
def test_export_then_import_elsewhere(benv: BackupEnv) -> None:
    benv.create("inst1", [16, 8], beparams={"maxmem": 64, "minmem": 32},
                tags=["backup-test"])
    shas = benv.fill("inst1")
    log: list[Any] = []
    assert benv.export("inst1", "node2", log) == [True, [True, True]]
    assert benv.status("inst1") == "running"              # restarted after the export
    assert any("Shutting down instance inst1" in str(m) for m in log)
    assert any("MiB/s" in str(m) for m in log)
    assert benv.exports() == {"node1": [], "node2": ["inst1"], "node3": []}

    info = benv.info("inst1")
    exp_dir = benv.export_dir("node2") / "inst1"
    uuids = [d["uuid"] for d in info["disks"]]
    assert sorted(os.listdir(exp_dir)) == sorted(uuids + ["config.ini"])
    assert [sha256(exp_dir / u) for u in uuids] == shas
    cfg = config_ini(benv, "node2", "inst1")
    assert cfg.get("export", "os") == DD_OS
    assert cfg.get("instance", "disk1_dump") == uuids[1]
    assert cfg.get("instance", "nic0_mac") == info["nics"][0][3]
    assert (cfg.get("instance", "maxmem"), cfg.get("instance", "minmem")) == ("64", "32")
    assert_clean(benv)

    log = []
    assert benv.import_("inst2", "node3", log, src_node="node2", src_path="inst1") == \
        ["node3"]
    new = benv.info("inst2")
    assert new["pnode"] == "node3" and new["config_state"] == "up"
    assert benv.shas("inst2") == shas
    assert [d["size"] for d in new["disks"]] == [16, 8]
    assert (new["os"], new["disk_template"], new["tags"]) == (DD_OS, "file", ["backup-test"])
    assert new["be_actual"]["maxmem"] == 64 and new["be_actual"]["minmem"] == 32
    # The export's MAC is taken by inst1: a new one was generated.
    assert new["nics"][0][3] != info["nics"][0][3]
    assert any("import" in str(m) for m in log)
    assert benv.status("inst2") == "running"
    assert_clean(benv)


def test_progress_in_the_job_log(benv: BackupEnv) -> None:
    benv.create("inst1", [40], os_type=SLOW_OS)          # 5 MiB/s: about 8 s
    log: list[Any] = []
    assert benv.export("inst1", "node2", log) == [True, [True]]
    progress = [str(m) for m in log if "MiB sent" in str(m)]
    assert progress, log
    assert re.search(r"^disk/0: \d+ MiB sent, [\d.]+ MiB/s, ETA \d\d:\d\d, \d+%$",
                     progress[0]), progress


def test_second_export_replaces_the_first(benv: BackupEnv) -> None:
    benv.create("inst1", [8])
    benv.fill("inst1")
    benv.export("inst1", "node2")
    shas = benv.fill("inst1")
    assert benv.export("inst1", "node3", compress="gzip") == [True, [True]]
    assert benv.exports() == {"node1": [], "node2": [], "node3": ["inst1"]}
    uuid = benv.info("inst1")["disks"][0]["uuid"]
    assert sha256(benv.export_dir("node3") / "inst1" / uuid) == shas[0]
    # Again to the same node: replaced in place.
    shas = benv.fill("inst1")
    benv.export("inst1", "node3")
    assert sha256(benv.export_dir("node3") / "inst1" / uuid) == shas[0]
    assert benv.export_entries()["node3"] == ["inst1"]
    assert_clean(benv)


def test_compression_tools(benv: BackupEnv) -> None:
    benv.create("inst1", [8])
    shas = benv.fill("inst1")
    assert benv.export("inst1", "node2", compress="zstd") == [True, [True]]
    benv.import_("inst2", "node3", src_node="node2", src_path="inst1", compress="zstd")
    assert benv.shas("inst2") == shas
    # lzop is known but not enabled in the cluster; "lz4-nope" is unknown.
    for tool in ("lzop", "lz4-nope"):
        err = benv.fail({"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "inst1",
                         "target_node": "node2", "compress": tool})
        assert isinstance(err, errors.OpPrereqError) and err.ecode == errors.ECODE_INVAL
    tools = benv.run({"OP_ID": "OP_CLUSTER_QUERY"})["compression_tools"]
    benv.run({"OP_ID": "OP_CLUSTER_SET_PARAMS",
              "compression_tools": [t for t in tools if t != "zstd"]})
    try:
        err = benv.fail({"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "inst1",
                         "target_node": "node2", "compress": "zstd"})
        assert err.ecode == errors.ECODE_INVAL and "not allowed" in str(err)
    finally:
        benv.run({"OP_ID": "OP_CLUSTER_SET_PARAMS", "compression_tools": tools})
    assert benv.status("inst1") == "running"


def test_noshutdown_of_running_file_instance_refused(benv: BackupEnv) -> None:
    benv.create("inst1", [8])
    err = benv.fail({"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "inst1",
                     "target_node": "node2", "shutdown": False})
    assert isinstance(err, errors.OpPrereqError) and err.ecode == errors.ECODE_STATE
    assert "snapshots" in str(err)
    assert benv.status("inst1") == "running"
    assert benv.exports() == {"node1": [], "node2": [], "node3": []}


def test_noshutdown_of_stopped_instance(benv: BackupEnv) -> None:
    benv.create("inst1", [8], start=False)
    shas = benv.fill("inst1")
    assert benv.export("inst1", "node1", shutdown=False) == [True, [True]]
    info = benv.info("inst1")
    assert info["config_state"] == "down"
    assert benv.status("inst1") == "ADMIN_down"
    uuid = info["disks"][0]["uuid"]
    assert sha256(benv.export_dir("node1") / "inst1" / uuid) == shas[0]


def test_export_and_remove_then_reimport(benv: BackupEnv) -> None:
    benv.create("inst1", [8])
    shas = benv.fill("inst1")
    mac = benv.info("inst1")["nics"][0][3]
    files = benv.disk_files("inst1")
    assert benv.export("inst1", "node2", remove_instance=True) == [True, [True]]
    assert "inst1" not in benv.instances()
    assert not any(f.exists() for f in files)
    benv.import_("inst1", "node1", src_node="node2")       # src_path defaults to the name
    info = benv.info("inst1")
    assert benv.shas("inst1") == shas
    assert info["nics"][0][3] == mac                         # same name: same MAC


def test_import_finds_the_export_without_source_node(benv: BackupEnv) -> None:
    benv.create("inst1", [8])
    shas = benv.fill("inst1")
    benv.export("inst1", "node3")
    benv.import_("inst2", "node2", src_path="inst1", start=False)
    assert benv.shas("inst2") == shas
    assert benv.info("inst2")["config_state"] == "down"
    assert benv.status("inst2") == "ADMIN_down"


def test_diskless_export_and_import(benv: BackupEnv) -> None:
    benv.create("inst1", [], nics=[{}, {"ip": "192.0.2.7"}])
    assert benv.export("inst1", "node2") == [True, []]
    cfg = config_ini(benv, "node2", "inst1")
    assert cfg.get("instance", "disk_count") == "0"
    benv.import_("inst2", "node3", src_node="node2", src_path="inst1")
    info = benv.info("inst2")
    assert info["disk_template"] == "diskless" and len(info["nics"]) == 2
    assert info["nics"][1][2] == "192.0.2.7"


# -- failures of exports ---------------------------------------------------------------------
def test_failed_disk_export_leaves_nothing(benv: BackupEnv) -> None:
    benv.create("inst1", [8], os_type=FAILEXP_OS)
    log: list[Any] = []
    err = benv.fail({"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "inst1",
                     "target_node": "node2", "shutdown_timeout": 10}, log)
    assert isinstance(err, errors.OpExecError)
    assert "Export failed" in str(err) and "disk(s) 0" in str(err)
    assert any("simulated export failure" in str(m) or "failed" in str(m) for m in log)
    assert benv.status("inst1") == "running"
    assert benv.exports() == {"node1": [], "node2": [], "node3": []}
    assert_clean(benv)


def test_failed_export_does_not_remove_the_instance(benv: BackupEnv) -> None:
    benv.create("inst1", [4], os_type=FAILEXP_OS)
    err = benv.fail({"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "inst1",
                     "target_node": "node3", "remove_instance": True,
                     "shutdown_timeout": 5})
    assert "Export failed" in str(err)
    assert benv.status("inst1") == "running"
    assert all(p.exists() for p in benv.disk_files("inst1"))
    assert_clean(benv)


def test_failed_export_keeps_the_previous_export(benv: BackupEnv) -> None:
    benv.create("inst1", [8])
    shas = benv.fill("inst1")
    benv.export("inst1", "node2")
    benv.run({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "inst1", "timeout": 0})
    benv.run({"OP_ID": "OP_INSTANCE_REINSTALL", "instance_name": "inst1",
              "os_type": FAILEXP_OS})
    benv.fail({"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "inst1",
               "target_node": "node2"})
    assert benv.exports()["node2"] == ["inst1"]
    uuid = benv.info("inst1")["disks"][0]["uuid"]
    assert sha256(benv.export_dir("node2") / "inst1" / uuid) == shas[0]
    assert benv.status("inst1") == "ADMIN_down"
    assert_clean(benv)


def test_transfer_killed_midway(benv: BackupEnv) -> None:
    benv.create("inst1", [24], os_type=SLOW_OS)
    benv.fill("inst1")
    impexp_dir = benv.dev.node("node1").paths.impexp_dir
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = benv.export("inst1", "node2")
        except errors.CorralError as err:
            outcome["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    pid = None
    deadline = time.monotonic() + 60
    while pid is None and time.monotonic() < deadline:
        for entry in (os.listdir(impexp_dir) if impexp_dir.is_dir() else []):
            status = impexp_dir / entry / "status"
            if entry.startswith("export-") and status.exists() and \
                    '"progress_bytes": 0,' not in status.read_text():
                pid = int((impexp_dir / entry / "pid").read_text())
        time.sleep(0.1)
    assert pid is not None, "no export transfer with progress on node1"
    os.kill(pid, signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive()
    assert "error" in outcome, outcome
    assert "Export failed" in str(outcome["error"])
    assert benv.status("inst1") == "running"
    assert benv.exports() == {"node1": [], "node2": [], "node3": []}
    assert_clean(benv)
    deadline = time.monotonic() + 20
    while group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_members(pid) == []


# -- failures of imports ----------------------------------------------------------------------
def _nothing_created(benv: BackupEnv, name: str, before: list[str]) -> None:
    assert benv.instances() == before
    for node in benv.dev.nodes:
        assert not (node.paths.real(FILE_DIR) / name).exists()
    assert_clean(benv)


def test_import_of_missing_export(benv: BackupEnv) -> None:
    before = benv.instances()
    err = benv.fail({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst9",
                     "mode": "import", "src_node": "node2", "src_path": "nothere",
                     "pnode": "node1", "disks": [], "nics": [], "name_check": False,
                     "ip_check": False})
    assert isinstance(err, errors.OpPrereqError) and err.ecode == errors.ECODE_NOENT
    err = benv.fail({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst9",
                     "mode": "import", "pnode": "node1", "disks": [], "nics": [],
                     "name_check": False, "ip_check": False})
    assert isinstance(err, errors.OpPrereqError) and err.ecode == errors.ECODE_NOENT
    err = benv.fail({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst9",
                     "mode": "import", "src_path": "/srv/corral/export/x", "pnode": "node1",
                     "disks": [], "nics": [], "name_check": False, "ip_check": False})
    assert err.ecode == errors.ECODE_INVAL                   # absolute path needs src_node
    _nothing_created(benv, "inst9", before)


def test_import_of_corrupt_or_incomplete_export(benv: BackupEnv) -> None:
    benv.create("inst1", [8])
    benv.export("inst1", "node2")
    exp = benv.export_dir("node2") / "inst1"
    uuid = benv.info("inst1")["disks"][0]["uuid"]
    before = benv.instances()
    good = (exp / "config.ini").read_text()
    for text, word in (("garbage without sections", "required fields"),
                       (good.replace("version = 0", "version = 7"), "version"),
                       (good.replace("[instance]", "[nothing]"), "required fields")):
        (exp / "config.ini").write_text(text)
        err = benv.fail({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst9",
                         "mode": "import", "src_node": "node2", "src_path": "inst1",
                         "pnode": "node1", "disks": [], "nics": [], "name_check": False,
                         "ip_check": False})
        assert isinstance(err, errors.OpPrereqError), err
        assert err.ecode in (errors.ECODE_INVAL, errors.ECODE_ENVIRON), err
        assert word in str(err)
    (exp / "config.ini").write_text(good)
    (exp / uuid).unlink()
    err = benv.fail({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst9",
                     "mode": "import", "src_node": "node2", "src_path": "inst1",
                     "pnode": "node1", "disks": [], "nics": [], "name_check": False,
                     "ip_check": False})
    assert isinstance(err, errors.OpPrereqError) and "incomplete" in str(err)
    _nothing_created(benv, "inst9", before)


def test_failed_import_transfer_removes_everything(benv: BackupEnv) -> None:
    benv.create("inst1", [8])
    benv.export("inst1", "node2")
    before = benv.instances()
    err = benv.fail({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": "inst9",
                     "mode": "import", "src_node": "node2", "src_path": "inst1",
                     "os_type": FAILIMP_OS, "pnode": "node3", "disks": [], "nics": [],
                     "name_check": False, "ip_check": False})
    assert isinstance(err, errors.OpExecError)
    assert "importing the disks" in str(err) and "cleaned up" in str(err)
    _nothing_created(benv, "inst9", before)
    assert benv.exports()["node2"] == ["inst1"]              # the export is untouched


# -- an export in Ganeti's layout ---------------------------------------------------------------
GANETI_CONFIG = """\
[export]
version = 0
timestamp = 1467042346
source = 0ac2d5a1-9b65-4ea4-a9f7-0e1c4c39a6c1
os = {os}
compression = none

[instance]
name = web1.example.com
maxmem = 96
minmem = 64
memory = 96
vcpus = 2
disk_template = file
hypervisor = fake
tags = web prod
nic0_mac = aa:00:00:45:d5:2e
nic0_ip = 192.0.2.44
nic0_network = None
nic0_mode = bridged
nic0_link = xen-br0
nic0_vlan =
nic_count = 1
disk0_ivname = disk/0
disk0_dump = a9e1f3a7-6d3c-4f93-9c0e-2fbd0c7d9a10.file.disk0
disk0_size = 12
disk_count = 1

[hypervisor]
migration_mode = live

[backend]
spindle_use = 1
maxmem = 96
always_failover = False
minmem = 64
vcpus = 2
auto_balance = True

[os]

[os_private]

"""


def test_import_of_a_ganeti_export(benv: BackupEnv) -> None:
    exp = benv.export_dir("node2") / "web1.example.com"
    exp.mkdir()
    try:
        (exp / "config.ini").write_text(GANETI_CONFIG.format(os=DD_OS))
        image = exp / "a9e1f3a7-6d3c-4f93-9c0e-2fbd0c7d9a10.file.disk0"
        image.write_bytes(os.urandom(12 * MIB))
        assert benv.exports()["node2"] == ["web1.example.com"]
        benv.import_("web1", "node1", src_node="node2", src_path="web1.example.com")
        info = benv.info("web1")
        assert benv.shas("web1") == [sha256(image)]
        assert [d["size"] for d in info["disks"]] == [12]
        assert (info["os"], info["hypervisor"], info["tags"]) == (DD_OS, "fake",
                                                                  ["web", "prod"])
        assert info["nics"][0][2:5] == ["192.0.2.44", "aa:00:00:45:d5:2e", "bridged"]
        assert info["be_actual"]["vcpus"] == 2 and info["be_actual"]["maxmem"] == 96
    finally:
        benv.run({"OP_ID": "OP_BACKUP_REMOVE", "instance_name": "web1.example.com"})
    assert benv.exports()["node2"] == []


# -- query and remove ----------------------------------------------------------------------------
def test_query_and_remove(benv: BackupEnv) -> None:
    benv.create("inst1", [4])
    benv.export("inst1", "node2")
    assert benv.run({"OP_ID": "OP_BACKUP_QUERY", "nodes": ["node2"]}) == {"node2": ["inst1"]}
    err = benv.fail({"OP_ID": "OP_BACKUP_QUERY", "nodes": ["node7"]})
    assert err.ecode == errors.ECODE_NOENT
    benv.run({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "inst1", "shutdown_timeout": 0})
    # Exports of removed instances can be removed too.
    benv.run({"OP_ID": "OP_BACKUP_REMOVE", "instance_name": "inst1"})
    assert benv.exports() == {"node1": [], "node2": [], "node3": []}
    log: list[Any] = []
    benv.run({"OP_ID": "OP_BACKUP_REMOVE", "instance_name": "inst1"}, log)
    assert any("not found" in str(m) for m in log)


def test_export_argument_checks(benv: BackupEnv) -> None:
    benv.create("inst1", [4])
    cases = [
        ({"target_node": "node9"}, errors.ECODE_NOENT),
        ({"target_node": "node2", "zero_free_space": True}, errors.ECODE_INVAL),
        ({"target_node": "node2", "shutdown": False, "remove_instance": True},
         errors.ECODE_STATE),
        ({"target_node": "node2", "mode": "remote"}, errors.ECODE_INVAL),
        ({"target_node": ["x"], "mode": "local"}, errors.ECODE_INVAL),
    ]
    for extra, ecode in cases:
        op = {"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "inst1"}
        op.update(extra)
        err = benv.fail(op)
        assert err.ecode == ecode, (extra, err)
    err = benv.fail({"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "nope",
                     "target_node": "node2"})
    assert err.ecode == errors.ECODE_NOENT
    assert benv.status("inst1") == "running"


def test_export_hooks(benv: BackupEnv) -> None:
    out = Path(benv.dev.directory) / "hook-env"
    for node in benv.dev.nodes:
        hook_dir = node.paths.hooks_dir / "instance-export-post.d"
        hook_dir.mkdir(parents=True, exist_ok=True)
        script = hook_dir / "10-record"
        script.write_text(f"#!/bin/sh\nenv | grep ^GANETI_ | sort > {out}.{node.name}\n")
        script.chmod(0o755)
    try:
        benv.create("inst1", [4])
        benv.export("inst1", "node3")
        env = dict(line.split("=", 1) for line in
                   Path(f"{out}.node3").read_text().splitlines())
        assert env["GANETI_EXPORT_MODE"] == "local"
        assert env["GANETI_EXPORT_NODE"] == "node3"
        assert env["GANETI_EXPORT_DO_SHUTDOWN"] == "True"
        assert env["GANETI_INSTANCE_NAME"] == "inst1"
        assert env["GANETI_HOOKS_PATH"] == "instance-export"
        assert Path(f"{out}.node1").exists() and not Path(f"{out}.node2").exists()
    finally:
        for node in benv.dev.nodes:
            (node.paths.hooks_dir / "instance-export-post.d" / "10-record").unlink()


# -- the command line ----------------------------------------------------------------------------
def test_gnt_backup_commands(benv: BackupEnv, run_cli: Any) -> None:
    root = benv.dev.master_paths.root
    benv.create("inst1", [4])
    shas = benv.fill("inst1")
    res = run_cli(["gnt-backup", "export", "-n", "node2", "--transport-compression", "gzip",
                   "inst1"], root)
    assert res.returncode == 0, res.stderr
    assert "Finalizing export on node2" in res.stdout
    res = run_cli(["gnt-backup", "list"], root)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["Node", "Export", "node2", "inst1"]
    res = run_cli(["gnt-backup", "list", "--no-headers", "-n", "node1"], root)
    assert res.stdout.strip() == ""
    res = run_cli(["gnt-backup", "import", "-n", "node3", "--src-node", "node2",
                   "--src-dir", "inst1", "--no-name-check", "--no-ip-check", "inst2"], root)
    assert res.returncode == 0, res.stderr
    assert benv.shas("inst2") == shas
    res = run_cli(["gnt-backup", "export", "-n", "node2", "--noshutdown", "inst1"], root)
    assert res.returncode == 1 and "wrong_state" in res.stderr
    res = run_cli(["gnt-backup", "remove", "inst1"], root)
    assert res.returncode == 0, res.stderr
    res = run_cli(["gnt-backup", "list", "--no-headers"], root)
    assert res.stdout.strip() == ""
    res = run_cli(["gnt-backup", "list-fields"], root)
    assert "node" in res.stdout and "export" in res.stdout
