"""Start, stop, reboot, reinstall, rename and remove on a real dev cluster
(cmdlib/instance_operation.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import errors

try:
    from .test_instance_fixtures import (MARKER_OS, Env, env, icluster,  # noqa: F401
                                         read_head)
except ImportError:
    from test_instance_fixtures import MARKER_OS, Env, env, icluster, read_head  # noqa: F401

pytestmark = [pytest.mark.integration]

FILE_DIR = "/srv/corral/file-storage"


def _op(op_id: str, name: str, **kw: object) -> dict[str, object]:
    return {"OP_ID": op_id, "instance_name": name, **kw}


def test_shutdown_and_startup(env: Env) -> None:
    env.create("op1", disk_template="file", disks=[{"size": 4}])
    state = env.fake_state("node1", "op1")
    assert state.exists()
    links = env.node("node1").paths.instance_disks_dir
    assert (links / "op1:0").is_symlink()

    env.run1(_op("OP_INSTANCE_SHUTDOWN", "op1", timeout=5))
    assert not state.exists()
    assert not (links / "op1:0").exists()
    info = env.info("op1", static=False)
    assert (info["config_state"], info["run_state"]) == ("down", "down")

    env.run1(_op("OP_INSTANCE_STARTUP", "op1"))
    assert state.exists() and (links / "op1:0").is_symlink()
    info = env.info("op1", static=False)
    assert (info["config_state"], info["run_state"]) == ("up", "up")
    # Starting a running instance is fine and changes nothing.
    env.run1(_op("OP_INSTANCE_STARTUP", "op1"))
    assert state.exists()


def test_startup_one_off_beparams_and_no_remember(env: Env) -> None:
    env.create("op2", start=False)
    env.run1(_op("OP_INSTANCE_STARTUP", "op2", beparams={"maxmem": 200},
                 no_remember=True))
    state = env.fake_state("node1", "op2")
    assert state.read_text().split()[1] == "200"
    assert env.info("op2")["config_state"] == "down"       # not remembered
    assert env.info("op2")["be_instance"] == {}
    env.run1(_op("OP_INSTANCE_SHUTDOWN", "op2", no_remember=True))
    assert not state.exists()


def test_shutdown_of_stopped_instance_warns(env: Env) -> None:
    env.create("op3", start=False)
    logs: list[str] = []
    job = env.client.submit_job([_op("OP_INSTANCE_SHUTDOWN", "op3")])
    env.client.wait_job(job, feedback_fn=lambda e: logs.append(str(e[2])), timeout=60)
    assert any("was not running" in m for m in logs), logs
    assert env.info("op3")["config_state"] == "down"


@pytest.mark.parametrize("reboot_type", ["soft", "hard", "full"])
def test_reboot_running(env: Env, reboot_type: str) -> None:
    env.create("op4", disk_template="file", disks=[{"size": 4}])
    env.run1(_op("OP_INSTANCE_REBOOT", "op4", reboot_type=reboot_type,
                 shutdown_timeout=5))
    assert env.fake_state("node1", "op4").exists()
    assert env.info("op4", static=False)["run_state"] == "up"


def test_reboot_of_stopped_instance_starts_it(env: Env) -> None:
    env.create("op5", start=False)
    env.run1(_op("OP_INSTANCE_REBOOT", "op5", reboot_type="soft"))
    assert env.fake_state("node1", "op5").exists()
    assert env.info("op5")["config_state"] == "up"


def test_reinstall(env: Env) -> None:
    env.create("op6", disk_template="file", os_type="noop", disks=[{"size": 4}],
               start=False)
    (_, path), = env.disk_files("op6")
    assert read_head(path, 13) == bytes(13)
    env.run1(_op("OP_INSTANCE_REINSTALL", "op6", os_type=MARKER_OS))
    assert read_head(path, 20) == b"corral-marker op6 1\n"
    assert env.info("op6")["os"] == MARKER_OS
    assert not env.fake_state("node1", "op6").exists()
    assert env.info("op6")["config_state"] == "down"


def test_reinstall_refusals(env: Env) -> None:
    env.create("op7", disk_template="file", os_type=MARKER_OS, disks=[{"size": 4}])
    env.create("op7d", start=False)
    before = env.instances()
    err = env.fail(_op("OP_INSTANCE_REINSTALL", "op7"))
    assert err.ecode == errors.ECODE_STATE and "cannot reinstall" in err.message
    err = env.fail(_op("OP_INSTANCE_REINSTALL", "op7d"))
    assert err.ecode == errors.ECODE_INVAL and "has no disks" in err.message
    env.run1(_op("OP_INSTANCE_SHUTDOWN", "op7"))
    before = env.instances()
    err = env.fail(_op("OP_INSTANCE_REINSTALL", "op7", os_type="no-such-os"))
    assert err.ecode == errors.ECODE_INVAL
    assert env.instances() == before
    assert env.info("op7")["os"] == MARKER_OS


def test_rename_file_instance(env: Env) -> None:
    env.create("op8", disk_template="file", os_type=MARKER_OS,
               disks=[{"size": 8}, {"size": 4}], start=False)
    old_dir = env.real("node1", f"{FILE_DIR}/op8")
    assert old_dir.is_dir()
    assert env.run1(_op("OP_INSTANCE_RENAME", "op8", new_name="op8-new",
                        name_check=False, ip_check=False)) == "op8-new"
    assert "op8" not in env.instances() and "op8-new" in env.instances()
    assert not old_dir.exists()
    files = env.disk_files("op8-new")
    for _, path in files:
        assert path.parent == env.real("node1", f"{FILE_DIR}/op8-new") and path.is_file()
    # The OS rename script ran on the assembled disks.
    assert read_head(files[0][1], 20, offset=4096) == b"renamed op8 op8-new\n"
    assert not (env.node("node1").paths.instance_disks_dir / "op8-new:0").exists()
    env.run1(_op("OP_INSTANCE_STARTUP", "op8-new"))
    assert env.fake_state("node1", "op8-new").exists()


def test_rename_refusals(env: Env) -> None:
    env.create("op9", start=False)
    env.create("op9b")
    before = env.instances()
    err = env.fail(_op("OP_INSTANCE_RENAME", "op9", new_name="op9b", name_check=False,
                       ip_check=False))
    assert err.ecode == errors.ECODE_EXISTS
    err = env.fail(_op("OP_INSTANCE_RENAME", "op9b", new_name="op9c", name_check=False,
                       ip_check=False))
    assert err.ecode == errors.ECODE_STATE
    err = env.fail(_op("OP_INSTANCE_RENAME", "op9", new_name="op9c", name_check=False))
    assert err.ecode == errors.ECODE_INVAL
    err = env.fail(_op("OP_INSTANCE_RENAME", "nosuch", new_name="x", name_check=False,
                       ip_check=False))
    assert err.ecode == errors.ECODE_NOENT
    assert env.instances() == before


def test_remove_running_file_instance(env: Env) -> None:
    env.create("op10", disk_template="file", disks=[{"size": 4}])
    inst_dir = env.real("node1", f"{FILE_DIR}/op10")
    assert inst_dir.is_dir() and env.fake_state("node1", "op10").exists()
    env.run1(_op("OP_INSTANCE_REMOVE", "op10", shutdown_timeout=5))
    assert "op10" not in env.instances()
    assert not inst_dir.exists()
    assert not env.fake_state("node1", "op10").exists()


def test_remove_unknown_instance(env: Env) -> None:
    err = env.fail(_op("OP_INSTANCE_REMOVE", "nosuch"))
    assert err.ecode == errors.ECODE_NOENT


def test_offline_instance_cannot_start(env: Env) -> None:
    env.create("op11", start=False)
    env.run1({"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": "op11", "offline": True})
    before = env.instances()
    for op_id in ("OP_INSTANCE_STARTUP", "OP_INSTANCE_SHUTDOWN"):
        err = env.fail(_op(op_id, "op11"))
        assert err.ecode == errors.ECODE_STATE and "offline" in err.message
    err = env.fail(_op("OP_INSTANCE_REBOOT", "op11", reboot_type="hard"))
    assert err.ecode == errors.ECODE_STATE
    assert env.instances() == before
    assert not env.fake_state("node1", "op11").exists()


def _record_hooks(env: Env, hpaths: list[str]) -> dict[tuple[str, str], Path]:
    """Install env-recording hook scripts on node1; returns (hpath, phase) -> output."""
    outputs = {}
    root = Path(env.node("node1").root)
    for hpath in hpaths:
        for phase in ("pre", "post"):
            hook_dir = env.node("node1").paths.hooks_dir / f"{hpath}-{phase}.d"
            hook_dir.mkdir(parents=True, exist_ok=True)
            out = root / f"{hpath}-{phase}.env"
            script = hook_dir / "10-record"
            script.write_text(f"#!/bin/sh\nenv > {out}\n")
            script.chmod(0o755)
            outputs[(hpath, phase)] = out
    return outputs


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_operation_hooks(env: Env) -> None:
    hpaths = ["instance-start", "instance-stop", "instance-reboot", "instance-rename",
              "instance-remove"]
    outputs = _record_hooks(env, hpaths)
    try:
        env.create("op12", start=False)
        env.run1(_op("OP_INSTANCE_STARTUP", "op12", force=True))
        start = _read_env(outputs[("instance-start", "pre")])
        env.run1(_op("OP_INSTANCE_REBOOT", "op12", reboot_type="hard", shutdown_timeout=7))
        reboot = _read_env(outputs[("instance-reboot", "pre")])
        env.run1(_op("OP_INSTANCE_SHUTDOWN", "op12", timeout=9))
        stop = _read_env(outputs[("instance-stop", "pre")])
        env.run1(_op("OP_INSTANCE_RENAME", "op12", new_name="op12b", name_check=False,
                     ip_check=False))
        rename = _read_env(outputs[("instance-rename", "post")])
        env.run1(_op("OP_INSTANCE_REMOVE", "op12b", shutdown_timeout=11))
        remove_pre = _read_env(outputs[("instance-remove", "pre")])
        remove_post = _read_env(outputs[("instance-remove", "post")])
    finally:
        for hpath in hpaths:
            for phase in ("pre", "post"):
                (env.node("node1").paths.hooks_dir / f"{hpath}-{phase}.d" /
                 "10-record").unlink()
        for out in outputs.values():
            out.unlink(missing_ok=True)
    assert start["GANETI_FORCE"] == "True" and start["GANETI_INSTANCE_NAME"] == "op12"
    assert start["GANETI_OP_CODE"] == "OP_INSTANCE_STARTUP"
    assert (reboot["GANETI_REBOOT_TYPE"], reboot["GANETI_SHUTDOWN_TIMEOUT"],
            reboot["GANETI_IGNORE_SECONDARIES"]) == ("hard", "7", "False")
    assert stop["GANETI_TIMEOUT"] == "9"
    assert rename["GANETI_INSTANCE_NEW_NAME"] == "op12b"
    assert rename["GANETI_INSTANCE_NAME"] == "op12"
    assert rename["GANETI_POST_INSTANCE_NAME"] == "op12b"
    assert remove_pre["GANETI_SHUTDOWN_TIMEOUT"] == "11"
    assert remove_post["GANETI_HOOKS_PHASE"] == "post"
