"""Failover and migration (LUInstanceFailover, LUInstanceMigrate, TLMigrateInstance).

Unit tests of the template capabilities and the migration status loop, then
integration tests on real dev clusters with the fake hypervisor, whose state
file ``<node root>/var/run/corral/fake-hypervisor/<name>`` shows where an
instance runs, and Debian's ``noop`` OS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import daemons, errors
from corral.cmdlib.instance_migration_run import instance_moved
from corral.objects import Disk, Instance
from corral.storage import capabilities as caps

NOOP = "noop"


# -- unit: template capabilities -------------------------------------------------------
@pytest.mark.parametrize("template", [C.DT_SHARED_FILE, C.DT_DISKLESS, C.DT_DRBD8,
                                      C.DT_RBD, C.DT_EXT, C.DT_BLOCK, C.DT_GLUSTER])
def test_mirrored_templates_allow_failover_and_migrate(template: str) -> None:
    cap = caps.get_capabilities(template)
    assert cap.failover and cap.migrate
    caps.check_template_allows([template], caps.ACTION_FAILOVER)
    caps.check_template_allows([template], caps.ACTION_MIGRATE)
    assert not caps.needs_disk_mirror(template)


@pytest.mark.parametrize("template", [C.DT_FILE, C.DT_PLAIN])
def test_local_templates_refuse_failover(template: str) -> None:
    cap = caps.get_capabilities(template)
    assert cap.move and not cap.failover
    with pytest.raises(errors.OpPrereqError, match=f"disk layout '{template}' does not "
                                                   "allow failovers") as exc:
        caps.check_template_allows([template], caps.ACTION_FAILOVER)
    assert exc.value.ecode == errors.ECODE_STATE


def test_file_migration_needs_a_mirroring_hypervisor() -> None:
    assert caps.needs_disk_mirror(C.DT_FILE)
    caps.check_template_allows([C.DT_FILE], caps.ACTION_MIGRATE)
    with pytest.raises(errors.OpPrereqError, match="'file' does not allow migrations with "
                                                   "the fake hypervisor") as exc:
        caps.check_disk_mirror_supported(C.DT_FILE, C.HT_FAKE)
    assert exc.value.ecode == errors.ECODE_STATE
    caps.check_disk_mirror_supported(C.DT_SHARED_FILE, C.HT_FAKE)
    caps.check_disk_mirror_supported(C.DT_FILE, C.HT_KVM)       # KVM mirrors local disks
    with pytest.raises(errors.OpPrereqError, match="'plain' does not allow migrations"):
        caps.check_template_allows([C.DT_PLAIN], caps.ACTION_MIGRATE)
    assert caps.templates_allowing(caps.ACTION_MOVE) == C.DTS_COPYABLE
    with pytest.raises(errors.OpPrereqError):
        caps.get_capabilities("bogus")


def test_instance_moved_changes_primary_and_disk_nodes() -> None:
    disk = Disk(dev_type=C.DT_SHARED_FILE, nodes=["n1"],
                children=[Disk(dev_type=C.DT_SHARED_FILE, nodes=["n1", "n3"])])
    inst = Instance(name="i1", primary_node="n1", disks=[disk])
    moved = instance_moved(inst, "n1", "n2")
    assert moved.primary_node == "n2"
    assert moved.disks[0].nodes == ["n2"]
    assert moved.disks[0].children[0].nodes == ["n2", "n3"]
    assert inst.primary_node == "n1" and inst.disks[0].nodes == ["n1"]


# -- integration ------------------------------------------------------------------------
def _create_op(name: str, pnode: str, template: str = C.DT_SHARED_FILE,
               **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {
        "OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
        "disk_template": template, "os_type": NOOP, "pnode": pnode,
        "disks": [] if template == C.DT_DISKLESS else [{"size": 16}],
        "nics": [], "name_check": False, "ip_check": False,
        "beparams": {"maxmem": 64, "minmem": 64},
    }
    op.update(extra)
    return op


def run_job(client: Any, *ops: dict[str, Any], log: list[str] | None = None) -> list[Any]:
    """Submit one job, wait for it; its log messages are appended to ``log``."""
    def feedback(entry: Any) -> None:
        if log is not None:
            log.append(str(entry[2]))
    return client.wait_job(client.submit_job(list(ops)), feedback_fn=feedback, timeout=300)


def instances(client: Any) -> dict[str, dict[str, Any]]:
    fields = ["name", "pnode", "status", "admin_state", "serial_no", "disk_template"]
    rows = client.query("instance", fields)["data"]
    return {row[0][1]: {f: cell[1] for f, cell in zip(fields, row)} for row in rows}


def fake_state(cluster: Any, node: str, instance: str) -> Path:
    return cluster.node(node).paths.hypervisor_run_dir("fake") / instance


def disk_link(cluster: Any, node: str, instance: str, idx: int = 0) -> Path:
    return cluster.node(node).paths.instance_disks_dir / f"{instance}:{idx}"


def runs_on(cluster: Any, instance: str) -> list[str]:
    """Nodes whose fake hypervisor runs ``instance``."""
    return [n.name for n in cluster.nodes if fake_state(cluster, n.name, instance).exists()]


def install_env_hook(cluster: Any, hpath: str, out_dir: Path) -> None:
    """A hook on every node writing its GANETI_ environment to
    ``out_dir/<node>-<phase>``."""
    for node in cluster.nodes:
        for phase in ("pre", "post"):
            d = node.paths.hooks_dir / f"{hpath}-{phase}.d"
            d.mkdir(parents=True, exist_ok=True)
            script = d / "10-env"
            script.write_text(f"#!/bin/sh\nenv | grep ^GANETI_ | sort > "
                              f"{out_dir}/{node.name}-$GANETI_HOOKS_PHASE\n")
            script.chmod(0o755)


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any, ganeti_os_noop: Path) -> Any:
    return module_dev_cluster(3)


@pytest.fixture
def client(cluster: Any, master_client: Any) -> Any:
    return master_client(cluster)


@pytest.fixture
def make_instance(client: Any) -> Any:
    """``make_instance(name, pnode, template, **op)``; removed after the test."""
    made: list[str] = []

    def make(name: str, pnode: str = "node1", template: str = C.DT_SHARED_FILE,
             **extra: Any) -> str:
        run_job(client, _create_op(name, pnode, template, **extra))
        made.append(name)
        return name

    yield make
    for name in made:
        run_job(client, {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                         "shutdown_timeout": 5, "ignore_failures": True})


def _migrate(name: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": name, "target_node": target,
            **extra}


def _failover(name: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": name, "target_node": target,
            "shutdown_timeout": 5, **extra}


pytestmark_integration = pytest.mark.integration


@pytestmark_integration
def test_migrate_live_and_non_live_there_and_back(cluster, client, make_instance, tmp_path):
    make_instance("mig-sf")
    make_instance("mig-dl", template=C.DT_DISKLESS)
    out = tmp_path / "hooks"
    out.mkdir()
    install_env_hook(cluster, "instance-migrate", out)
    try:
        log: list[str] = []
        run_job(client, _migrate("mig-sf", "node2", mode="live"), log=log)
        insts = instances(client)
        assert insts["mig-sf"]["pnode"] == "node2"
        assert insts["mig-sf"]["status"] == "running"
        assert runs_on(cluster, "mig-sf") == ["node2"]
        assert disk_link(cluster, "node2", "mig-sf").is_symlink()
        assert not disk_link(cluster, "node1", "mig-sf").exists()
        assert "* starting memory transfer" in log
        assert any(line.startswith("* memory transfer complete in ") for line in log)
        assert "* done" in log
        pre = read_env(out / "node1-pre")
        assert pre["GANETI_HOOKS_PATH"] == "instance-migrate"
        assert pre["GANETI_MIGRATE_LIVE"] == "True"
        assert pre["GANETI_MIGRATE_CLEANUP"] == "False"
        assert (pre["GANETI_OLD_PRIMARY"], pre["GANETI_NEW_PRIMARY"]) == ("node1", "node2")
        assert pre["GANETI_OLD_SECONDARY"] == pre["GANETI_NEW_SECONDARY"] == ""
        assert pre["GANETI_INSTANCE_PRIMARY"] == "node1"
        post = read_env(out / "node2-post")
        assert post["GANETI_POST_INSTANCE_PRIMARY"] == "node2"
        assert not (out / "node3-pre").exists()      # neither source nor target

        # back, non-live (live=False), then the diskless one with the hv default
        for f in out.iterdir():
            f.unlink()
        run_job(client, _migrate("mig-sf", "node1", live=False))
        assert read_env(out / "node1-pre")["GANETI_MIGRATE_LIVE"] == "False"
        run_job(client, _migrate("mig-dl", "node3"))
        assert read_env(out / "node3-pre")["GANETI_MIGRATE_LIVE"] == "True"
    finally:
        for node in cluster.nodes:
            for phase in ("pre", "post"):
                hook = node.paths.hooks_dir / f"instance-migrate-{phase}.d" / "10-env"
                hook.unlink(missing_ok=True)
    insts = instances(client)
    assert insts["mig-sf"]["pnode"] == "node1" and runs_on(cluster, "mig-sf") == ["node1"]
    assert disk_link(cluster, "node1", "mig-sf").is_symlink()
    assert not disk_link(cluster, "node2", "mig-sf").exists()
    assert insts["mig-dl"]["pnode"] == "node3" and runs_on(cluster, "mig-dl") == ["node3"]
    assert insts["mig-dl"]["status"] == "running"


@pytestmark_integration
def test_failover_running_and_stopped(cluster, client, make_instance, tmp_path):
    make_instance("fo-run", "node2")
    make_instance("fo-down", start=False)
    out = tmp_path / "hooks"
    out.mkdir()
    install_env_hook(cluster, "instance-failover", out)
    try:
        log: list[str] = []
        run_job(client, _failover("fo-run", "node3"), log=log)
        assert "* shutting down instance on source node" in log
        env = read_env(out / "node3-pre")
        assert (env["GANETI_OLD_PRIMARY"], env["GANETI_NEW_PRIMARY"]) == ("node2", "node3")
        assert env["GANETI_IGNORE_CONSISTENCY"] == "False"
        assert env["GANETI_SHUTDOWN_TIMEOUT"] == "5"
        assert env["GANETI_FAILOVER_CLEANUP"] == "False"
        assert (out / "node1-pre").exists()         # the master
        assert not (out / "node2-pre").exists()     # old primary: post phase only
        assert (out / "node2-post").exists()
    finally:
        for node in cluster.nodes:
            for phase in ("pre", "post"):
                (node.paths.hooks_dir / f"instance-failover-{phase}.d" / "10-env").unlink(
                    missing_ok=True)
    run_job(client, _failover("fo-down", "node2"))
    insts = instances(client)
    assert insts["fo-run"]["pnode"] == "node3" and insts["fo-run"]["status"] == "running"
    assert runs_on(cluster, "fo-run") == ["node3"]
    assert insts["fo-down"]["pnode"] == "node2" and insts["fo-down"]["status"] == "ADMIN_down"
    assert runs_on(cluster, "fo-down") == []


@pytestmark_integration
def test_file_instances_refused(cluster, client, make_instance):
    make_instance("loc1", template=C.DT_FILE)
    before = instances(client)["loc1"]
    cases = [(_migrate("loc1", "node2"), "'file' does not allow migrations"),
             (_migrate("loc1", "node2", allow_failover=True),
              "'file' does not allow migrations"),
             (_failover("loc1", "node2"), "'file' does not allow failovers")]
    for op, text in cases:
        with pytest.raises(errors.OpPrereqError, match=text) as exc:
            run_job(client, op)
        assert exc.value.ecode == errors.ECODE_STATE
    assert instances(client)["loc1"] == before
    assert runs_on(cluster, "loc1") == ["node1"]


@pytestmark_integration
def test_bad_targets_and_arguments(cluster, client, make_instance):
    make_instance("args1")
    before = instances(client)["args1"]
    cases = [
        ({"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "args1"},
         errors.ECODE_INVAL, "No iallocator or node given"),
        (_migrate("args1", "node2", iallocator="hail"), errors.ECODE_INVAL,
         "not implemented"),
        (_migrate("args1", "node1"), errors.ECODE_STATE, "to its primary"),
        (_migrate("args1", "node9"), errors.ECODE_NOENT, "node9"),
        (_migrate("args1", "node2", live=True, mode="live"), errors.ECODE_INVAL,
         "Only one of"),
        (_failover("args1", "node2", cleanup=True), errors.ECODE_INVAL, "Cleanup"),
    ]
    for op, ecode, text in cases:
        with pytest.raises(errors.CorralError, match=text) as exc:
            run_job(client, op)
        assert exc.value.ecode == ecode, (op, exc.value)
    assert instances(client)["args1"] == before
    assert runs_on(cluster, "args1") == ["node1"]


@pytestmark_integration
def test_stopped_instance_migrate_or_fall_back(cluster, client, make_instance):
    make_instance("stop1", start=False)
    with pytest.raises(errors.OpPrereqError, match="Can't migrate, please use failover") \
            as exc:
        run_job(client, _migrate("stop1", "node2"))
    assert exc.value.ecode == errors.ECODE_STATE
    log: list[str] = []
    run_job(client, _migrate("stop1", "node2", allow_failover=True), log=log)
    assert any("switching to failover" in line for line in log)
    assert instances(client)["stop1"]["pnode"] == "node2"
    assert runs_on(cluster, "stop1") == []


@pytestmark_integration
def test_failed_migration_leaves_instance_on_source(cluster, client, make_instance):
    make_instance("fail1")
    before = instances(client)["fail1"]
    # Something already "runs" under that name on the target: accept fails.
    blocker = fake_state(cluster, "node2", "fail1")
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("0\n64\n1\n")
    log: list[str] = []
    with pytest.raises(errors.OpExecError, match="Could not pre-migrate instance fail1") \
            as exc:
        run_job(client, _migrate("fail1", "node2"), log=log)
    assert "already running" in str(exc.value)
    assert "Migration failed, aborting" in log
    assert instances(client)["fail1"] == before
    assert runs_on(cluster, "fail1") == ["node1"]
    assert not disk_link(cluster, "node2", "fail1").exists()
    assert disk_link(cluster, "node1", "fail1").is_symlink()
    # ... and a later migration works
    run_job(client, _migrate("fail1", "node2"))
    assert runs_on(cluster, "fail1") == ["node2"]


@pytestmark_integration
def test_cleanup_after_interrupted_migration(cluster, client, make_instance):
    make_instance("cl1")
    # The guest ended up on node3 but the config still says node1.
    os.rename(fake_state(cluster, "node1", "cl1"), fake_state(cluster, "node3", "cl1"))
    assert instances(client)["cl1"]["status"] == C.INSTST_WRONGNODE
    log: list[str] = []
    run_job(client, _migrate("cl1", "node3", cleanup=True), log=log)
    assert any("instance running on target node (node3), updating config" in line
               for line in log)
    insts = instances(client)
    assert insts["cl1"]["pnode"] == "node3" and insts["cl1"]["status"] == "running"
    assert disk_link(cluster, "node3", "cl1").is_symlink()
    assert not disk_link(cluster, "node1", "cl1").exists()

    # Running where the config says: confirmed, nothing changes.
    serial = instances(client)["cl1"]["serial_no"]
    log.clear()
    run_job(client, _migrate("cl1", "node2", cleanup=True), log=log)
    assert any("confirmed to be running on its primary node (node3)" in line for line in log)
    assert instances(client)["cl1"]["pnode"] == "node3"
    assert instances(client)["cl1"]["serial_no"] == serial
    assert runs_on(cluster, "cl1") == ["node3"]

    # Running nowhere: refused.
    fake_state(cluster, "node3", "cl1").unlink()
    with pytest.raises(errors.OpExecError, match="does not seem to be running at all"):
        run_job(client, _migrate("cl1", "node2", cleanup=True))
    run_job(client, {"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "cl1"})


@pytest.mark.integration
def test_failover_from_offline_node(dev_cluster, master_client, ganeti_os_noop):
    cluster = dev_cluster(3)
    client = master_client(cluster)
    run_job(client, _create_op("off1", "node2"))
    run_job(client, _create_op("off2", "node2", C.DT_DISKLESS, start=False))
    node2 = cluster.node("node2")
    daemons.stop_daemon(node2.paths, "noded")
    # Unreachable but not marked offline: the failover cannot stop the instance.
    with pytest.raises(errors.OpExecError, match="Could not shutdown instance off1 on "
                                                 "node node2"):
        run_job(client, _failover("off1", "node3"))
    assert instances(client)["off1"]["pnode"] == "node2"
    run_job(client, {"OP_ID": "OP_NODE_SET_PARAMS", "node_name": "node2", "offline": True})
    assert instances(client)["off1"]["status"] == C.INSTST_NODEOFFLINE

    with pytest.raises(errors.OpPrereqError, match="node2 .* is offline") as exc:
        run_job(client, _failover("off1", "node3"))
    assert exc.value.ecode == errors.ECODE_STATE
    with pytest.raises(errors.OpPrereqError, match="offline"):
        run_job(client, _migrate("off1", "node3"))
    assert instances(client)["off1"]["pnode"] == "node2"

    log: list[str] = []
    run_job(client, _failover("off1", "node3", ignore_consistency=True), log=log)
    assert any("node2 is offline: not contacting it" in line for line in log)
    run_job(client, _failover("off2", "node1", ignore_consistency=True))
    insts = instances(client)
    assert insts["off1"]["pnode"] == "node3" and insts["off1"]["status"] == "running"
    assert insts["off2"]["pnode"] == "node1" and insts["off2"]["status"] == "ADMIN_down"
    assert fake_state(cluster, "node3", "off1").exists()
    # node2 was never contacted: its (stale) state is untouched
    assert fake_state(cluster, "node2", "off1").exists()
