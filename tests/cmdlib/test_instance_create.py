"""OP_INSTANCE_CREATE on a real dev cluster (cmdlib/instance_create.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral import errors

try:
    from .test_instance_fixtures import (FAIL_OS, JOB_TIMEOUT, MARKER_OS, STRAY_OS, Env,
                                         env, file_size_mib, icluster,  # noqa: F401
                                         read_head)
except ImportError:
    from test_instance_fixtures import (FAIL_OS, JOB_TIMEOUT, MARKER_OS, STRAY_OS, Env,
                                        env, file_size_mib, icluster,  # noqa: F401
                                        read_head)

pytestmark = [pytest.mark.integration]

SHARED_DIR = "/srv/corral/shared-file-storage"
FILE_DIR = "/srv/corral/file-storage"


def test_create_diskless_running(env: Env) -> None:
    assert env.create("inst1", nics=[{}]) == ["node1"]
    info = env.info("inst1", static=False)
    assert info["config_state"] == "up" and info["run_state"] == "up"
    assert info["disk_template"] == "diskless" and info["disks"] == []
    assert info["os"] == "noop" and info["hypervisor"] == "fake"
    mac = info["nics"][0][3]
    assert mac.startswith("aa:00:00:") and info["nics"][0][4] == "bridged"
    state = env.fake_state("node1", "inst1")
    assert state.read_text().split()[1] == "128"       # maxmem default, MiB


def test_create_file_instance_with_marker_os(env: Env) -> None:
    env.create("inst-f", disk_template="file", os_type=MARKER_OS, pnode="node2",
               disks=[{"size": "32M"}, {"size": 16, "name": "data", "mode": "ro"}],
               beparams={"memory": 256, "vcpus": 2}, start=False)
    info = env.info("inst-f")
    assert info["config_state"] == "down" and info["pnode"] == "node2"
    assert [(d["iv_name"], d["size"], d["mode"], d["name"]) for d in info["disks"]] == \
        [("disk/0", 32, "rw", None), ("disk/1", 16, "ro", "data")]
    assert info["be_instance"] == {"maxmem": 256, "minmem": 256, "vcpus": 2}
    for idx, disk in enumerate(info["disks"]):
        driver, vpath = disk["logical_id"]
        assert driver == "loop"
        assert vpath == f"{FILE_DIR}/inst-f/{disk['uuid']}.file.disk{idx}"
    files = env.disk_files("inst-f")
    assert [file_size_mib(p) for _, p in files] == [32, 16]
    assert read_head(files[0][1], 22) == b"corral-marker inst-f 0"
    assert not env.fake_state("node2", "inst-f").exists()
    assert not env.real("node1", f"{FILE_DIR}/inst-f").exists()


def test_create_file_in_subdirectory(env: Env) -> None:
    env.create("inst-sub", disk_template="file", disks=[{"size": 8}],
               file_storage_dir="tenant/a", start=False)
    (_, path), = env.disk_files("inst-sub")
    assert path.parent == env.real("node1", f"{FILE_DIR}/tenant/a/inst-sub")
    assert file_size_mib(path) == 8


def test_create_sharedfile_visible_on_all_nodes(env: Env) -> None:
    env.create("inst-s", disk_template="sharedfile", os_type=MARKER_OS,
               disks=[{"size": 8}])
    info = env.info("inst-s")
    vpath = info["disks"][0]["logical_id"][1]
    assert vpath.startswith(f"{SHARED_DIR}/inst-s/") and vpath.endswith(".sharedfile.disk0")
    for node in ("node1", "node2"):
        assert read_head(env.real(node, vpath), 22) == b"corral-marker inst-s 0"
    assert env.fake_state("node1", "inst-s").exists()


def test_default_disk_template_is_first_enabled(env: Env) -> None:
    env.create("inst-d", disk_template=None, disks=[{"size": 4}], start=False)
    assert env.info("inst-d")["disk_template"] == "file"


def test_identify_defaults_drops_default_values(env: Env) -> None:
    env.create("inst-id", beparams={"maxmem": 128, "vcpus": 2}, identify_defaults=True,
               nics=[{"mode": "bridged", "link": "br7"}], start=False)
    info = env.info("inst-id")
    assert info["be_instance"] == {"vcpus": 2}
    assert info["nics"][0][4:6] == ["bridged", "br7"]


def test_no_install_leaves_disk_untouched(env: Env) -> None:
    env.create("inst-ni", disk_template="file", os_type=MARKER_OS, disks=[{"size": 4}],
               no_install=True, start=False)
    (_, path), = env.disk_files("inst-ni")
    assert read_head(path, 16) == bytes(16)


def test_dry_run_changes_nothing(env: Env) -> None:
    before = env.instances()
    assert env.create("inst-dry", dry_run=True) == ["node1"]
    assert env.instances() == before
    assert not env.fake_state("node1", "inst-dry").exists()


def test_name_check_resolves_localhost(env: Env) -> None:
    # "localhost" resolves through /etc/hosts, so no DNS traffic leaves the machine.
    env.create("localhost", name_check=True, ip_check=True, start=False)
    assert "localhost" in env.instances()


def test_name_check_failure_is_resolver_error(env: Env) -> None:
    # A label longer than 63 characters fails before any DNS query is sent.
    name = "x" * 64 + ".example"
    err = env.fail({"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
                    "disks": [], "nics": [], "disk_template": "diskless", "os_type": "noop",
                    "pnode": "node1", "ip_check": False})
    assert isinstance(err, errors.OpPrereqError) and err.ecode == errors.ECODE_RESOLVER
    assert "--no-name-check" in err.message


def _create_op(name: str, **kw: Any) -> dict[str, Any]:
    op = {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
          "disks": [], "nics": [], "disk_template": "diskless", "os_type": "noop",
          "pnode": "node1", "name_check": False, "ip_check": False}
    op.update(kw)
    return op


@pytest.mark.parametrize("kw, ecode, text", [
    ({"pnode": "nosuchnode"}, errors.ECODE_NOENT, "nosuchnode"),
    ({"disk_template": "file", "disks": [{"size": -1}]}, errors.ECODE_INVAL, "negative"),
    ({"disk_template": "file", "disks": [{"size": 0}]}, errors.ECODE_INVAL, "positive"),
    ({"disk_template": "file", "disks": [{"size": 4}], "file_storage_dir": "a/../../x"},
     errors.ECODE_INVAL, ".."),
    ({"disk_template": "file", "disks": [{"size": 4}], "file_storage_dir": "/etc"},
     errors.ECODE_INVAL, "relative"),
    ({"disks": [{"size": 4}]}, errors.ECODE_INVAL, "Diskless"),
    ({"disk_template": "plain", "disks": [{"size": 4}]}, errors.ECODE_STATE, "not enabled"),
    ({"hypervisor": "kvm"}, errors.ECODE_STATE, "not enabled"),
    ({"os_type": None}, errors.ECODE_INVAL, "OS"),
    ({"os_type": "no-such-os"}, errors.ECODE_INVAL, "no-such-os"),
    ({"no_install": True}, errors.ECODE_INVAL, "no_install"),
    ({"mode": "import"}, errors.ECODE_NOENT, "No export found"),
    ({"pnode": None, "iallocator": "hail"}, errors.ECODE_INVAL, "not implemented"),
    ({"pnode": None}, errors.ECODE_INVAL, "primary node"),
    ({"beparams": {"maxmem": 128, "minmem": 256}}, errors.ECODE_INVAL, "Minimum memory"),
    ({"beparams": {"bogus": 1}}, errors.ECODE_INVAL, "bogus"),
    ({"beparams": {"vcpus": "many"}}, errors.ECODE_INVAL, "vcpus"),
    ({"hvparams": {"migration_mode": "sideways"}}, errors.ECODE_INVAL, "migration_mode"),
    ({"hvparams": {"no_such_param": 1}}, errors.ECODE_INVAL, "no_such_param"),
    ({"nics": [{"mac": "not-a-mac"}]}, errors.ECODE_INVAL, "MAC"),
    ({"nics": [{"ip": "300.1.2.3"}]}, errors.ECODE_INVAL, "IP"),
    ({"nics": [{"mode": "routed"}]}, errors.ECODE_INVAL, "Routed"),
    ({"nics": [{"network": "net1"}]}, errors.ECODE_NOENT, "Network 'net1' not found"),
    ({"nics": [{"name": "a"}, {"name": "a"}]}, errors.ECODE_NOTUNIQUE, "not unique"),
    ({"beparams": {"memory": 10 ** 9}}, errors.ECODE_NORES, "Not enough memory"),
    ({"ip_check": True}, errors.ECODE_INVAL, "name check"),
])
def test_refusals_change_nothing(env: Env, kw: dict[str, Any], ecode: str, text: str) -> None:
    before = env.instances()
    err = env.fail(_create_op("bad-inst", **kw))
    assert isinstance(err, errors.OpPrereqError), err
    assert err.ecode == ecode, err
    assert text in err.message, err.message
    assert env.instances() == before
    assert not env.real("node1", f"{FILE_DIR}/bad-inst").exists()
    assert not env.fake_state("node1", "bad-inst").exists()


def test_duplicate_name_and_mac(env: Env) -> None:
    env.create("inst-dup", nics=[{"mac": "aa:00:00:11:22:33"}], start=False)
    before = env.instances()
    err = env.fail(_create_op("inst-dup"))
    assert err.ecode == errors.ECODE_EXISTS and "already in the cluster" in err.message
    err = env.fail(_create_op("inst-dup2", nics=[{"mac": "AA:00:00:11:22:33"}]))
    assert err.ecode == errors.ECODE_NOTUNIQUE
    assert env.instances() == before


def test_failing_os_install_cleans_up_everything(env: Env) -> None:
    before = env.instances()
    err = env.fail(_create_op("inst-bad-os", disk_template="file", os_type=FAIL_OS,
                              disks=[{"size": 4}, {"size": 4}]))
    assert isinstance(err, errors.OpExecError)
    assert "OS create script" in err.message and "cleaned up" in err.message
    assert "simulated OS install failure" in err.message
    assert env.instances() == before
    assert not env.real("node1", f"{FILE_DIR}/inst-bad-os").exists()
    assert not env.fake_state("node1", "inst-bad-os").exists()
    links = env.node("node1").paths.instance_disks_dir
    assert not [p for p in links.iterdir() if p.name.startswith("inst-bad-os:")]


def test_hooks_get_instance_environment(env: Env) -> None:
    outputs = {}
    for phase in ("pre", "post"):
        hook_dir = env.node("node1").paths.hooks_dir / f"instance-add-{phase}.d"
        hook_dir.mkdir(parents=True, exist_ok=True)
        out = Path(env.node("node1").root) / f"hook-{phase}.env"
        script = hook_dir / "10-record"
        script.write_text(f"#!/bin/sh\nenv > {out}\n")
        script.chmod(0o755)
        outputs[phase] = (script, out)
    try:
        env.create("inst-hook", disk_template="file", disks=[{"size": 4}],
                   nics=[{"mac": "aa:00:00:44:55:66"}])
        pre = dict(line.split("=", 1) for line in outputs["pre"][1].read_text().splitlines()
                   if "=" in line)
        post = outputs["post"][1].read_text()
    finally:
        for script, out in outputs.values():
            script.unlink()
            out.unlink(missing_ok=True)
    assert pre["GANETI_HOOKS_PATH"] == "instance-add"
    assert pre["GANETI_OP_CODE"] == "OP_INSTANCE_CREATE"
    assert pre["GANETI_INSTANCE_NAME"] == "inst-hook"
    assert pre["GANETI_INSTANCE_PRIMARY"] == "node1"
    assert pre["GANETI_INSTANCE_DISK_TEMPLATE"] == "file"
    assert pre["GANETI_INSTANCE_DISK_COUNT"] == "1"
    assert pre["GANETI_INSTANCE_NIC0_MAC"] == "aa:00:00:44:55:66"
    assert pre["GANETI_INSTANCE_STATUS"] == "up"
    assert pre["GANETI_ADD_MODE"] == "create"
    assert "GANETI_POST_INSTANCE_NAME=inst-hook" in post


def test_failing_pre_hook_aborts_creation(env: Env) -> None:
    hook_dir = env.node("node1").paths.hooks_dir / "instance-add-pre.d"
    hook_dir.mkdir(parents=True, exist_ok=True)
    script = hook_dir / "20-refuse"
    script.write_text("#!/bin/sh\necho refused by policy\nexit 1\n")
    script.chmod(0o755)
    try:
        before = env.instances()
        err = env.fail(_create_op("inst-veto", disk_template="file", disks=[{"size": 4}]))
    finally:
        script.unlink()
    assert isinstance(err, errors.HooksAbort) and "refused by policy" in err.message
    assert env.instances() == before
    assert not env.real("node1", f"{FILE_DIR}/inst-veto").exists()


def _verify(env: Env) -> tuple[bool, list[str]]:
    """Run OP_CLUSTER_VERIFY (error codes on); returns (all ok, log lines)."""
    result = env.run1({"OP_ID": "OP_CLUSTER_VERIFY", "error_codes": True})
    lines: list[str] = []
    ok = True
    for submitted, job_id in result["jobs"]:
        assert submitted, job_id
        res = env.client.wait_job(job_id, feedback_fn=lambda e: lines.append(e[2]),
                                  timeout=JOB_TIMEOUT)
        ok = ok and all(res)
    return ok, lines


def test_incomplete_instance_is_marked_refused_reported_and_removable(env: Env) -> None:
    job_id = env.client.submit_job([_create_op("inst-half", disk_template="file",
                                               os_type=STRAY_OS, disks=[{"size": 4}])])
    with pytest.raises(errors.OpExecError, match="cleanup was incomplete"):
        env.client.wait_job(job_id, timeout=JOB_TIMEOUT)
    stray = env.real("node1", f"{FILE_DIR}/inst-half/stray")
    assert stray.exists()
    # Left in the configuration, but marked: not shown as a stopped instance.
    rows = env.client.query("instance", ["name", "status", "creating_job"],
                            qfilter=["=", "name", "inst-half"])["data"]
    assert [[cell[1] for cell in row] for row in rows] == \
        [["inst-half", "ADMIN_creating", job_id]]
    for op_id in ("OP_INSTANCE_STARTUP", "OP_INSTANCE_REINSTALL",
                  "OP_INSTANCE_ACTIVATE_DISKS"):
        err = env.fail({"OP_ID": op_id, "instance_name": "inst-half"})
        assert isinstance(err, errors.OpPrereqError), err
        assert err.ecode == errors.ECODE_STATE and "not completely created" in err.message
    ok, lines = _verify(env)
    assert not ok
    assert [line for line in lines if "EINSTANCEINCOMPLETE" in line] == [
        (f"  - ERROR:EINSTANCEINCOMPLETE:instance:inst-half:instance was left half-created "
         f"by job {job_id} (status error); remove it with 'gnt-instance remove'")]

    stray.unlink()
    env.run1({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "inst-half"})
    assert "inst-half" not in env.instances()
    assert not env.real("node1", f"{FILE_DIR}/inst-half").exists()
    ok, lines = _verify(env)
    assert ok and not [line for line in lines if "inst-half" in line], lines


def test_complete_instance_is_not_marked(env: Env) -> None:
    job_id = env.client.submit_job([_create_op("inst-whole", disk_template="file",
                                               disks=[{"size": 4}])])
    env.client.wait_job(job_id, timeout=JOB_TIMEOUT)
    rows = env.client.query("instance", ["status", "creating_job", "admin_state"],
                            qfilter=["=", "name", "inst-whole"])["data"]
    assert [[cell[1] for cell in row] for row in rows] == [["running", None, "up"]]
