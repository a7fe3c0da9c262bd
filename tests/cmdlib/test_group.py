"""Node group LUs (cmdlib/group.py, cmdlib/group_evacuate.py) on a 3-node dev
cluster with the fake hypervisor: add, assign nodes, modify, remove, rename,
evacuate and instance change-group, success and failure paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import errors

pytestmark = pytest.mark.integration

JOB_TIMEOUT = 180


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any, ganeti_os_noop: Path) -> Any:
    return module_dev_cluster(3)


@pytest.fixture
def client(cluster: Any, master_client: Any) -> Any:
    return master_client(cluster)


def run(client: Any, op_id: str, **params: Any) -> Any:
    job_id = client.submit_job([{"OP_ID": op_id, **params}])
    return client.wait_job(job_id, timeout=JOB_TIMEOUT)[0]


def fail(client: Any, op_id: str, **params: Any) -> errors.CorralError:
    try:
        result = run(client, op_id, **params)
    except errors.CorralError as err:
        return err
    raise AssertionError(f"{op_id} unexpectedly succeeded: {result!r}")


def groups(client: Any, fields: list[str]) -> dict[str, dict[str, Any]]:
    rows = client.query("group", ["name", *fields])["data"]
    return {r[0][1]: {f: cell[1] for f, cell in zip(fields, r[1:])} for r in rows}


def node_groups(client: Any) -> dict[str, str]:
    rows = client.query("node", ["name", "group"])["data"]
    return {r[0][1]: r[1][1] for r in rows}


@pytest.fixture
def clean(client: Any) -> Any:
    """After the test: every instance removed, every node back in 'default',
    every other group removed (the module's cluster is shared)."""
    yield
    for name in [r[0][1] for r in client.query("instance", ["name"])["data"]]:
        run(client, "OP_INSTANCE_REMOVE", instance_name=name, ignore_failures=True,
            shutdown_timeout=0)
    names = groups(client, ["uuid"])
    if "default" not in names:
        first = next(n for n in names if names[n]["uuid"] == _default_uuid(client))
        run(client, "OP_GROUP_RENAME", group_name=first, new_name="default")
    run(client, "OP_GROUP_ASSIGN_NODES", group_name="default",
        nodes=["node1", "node2", "node3"], force=True)
    for name in groups(client, []):
        if name != "default":
            run(client, "OP_GROUP_REMOVE", group_name=name)


def _default_uuid(client: Any) -> str:
    rows = client.query("group", ["uuid", "ctime"])["data"]
    return min(rows, key=lambda r: r[1][1])[0][1]


def test_add_with_parameters_and_refusals(client: Any, clean: Any) -> None:
    run(client, "OP_GROUP_ADD", group_name="rack1", alloc_policy="last_resort",
        ndparams={"spindle_count": "4"}, diskparams={"file": {}},
        ipolicy={"vcpu-ratio": 2.0}, hv_state={"fake": {"mem_total": 1024}})
    info = groups(client, ["alloc_policy", "custom_ndparams", "ndparams", "custom_ipolicy",
                           "node_cnt", "serial_no"])["rack1"]
    assert info["alloc_policy"] == "last_resort"
    assert info["custom_ndparams"] == {"spindle_count": 4}       # typed by the LU
    assert info["ndparams"]["spindle_count"] == 4
    assert info["ndparams"]["ssh_port"] == C.NDC_DEFAULTS[C.ND_SSH_PORT]  # from the cluster
    assert info["custom_ipolicy"] == {"vcpu-ratio": 2.0}
    assert info["node_cnt"] == 0
    # An empty group verifies (nothing to ask the nodes).
    assert run(client, "OP_CLUSTER_VERIFY_GROUP", group_name="rack1") is True

    err = fail(client, "OP_GROUP_ADD", group_name="rack1")
    assert err.ecode == errors.ECODE_EXISTS
    err = fail(client, "OP_GROUP_ADD", group_name="rack2", ndparams={"bogus": 1})
    assert err.ecode == errors.ECODE_INVAL
    err = fail(client, "OP_GROUP_ADD", group_name="rack2", ndparams={"spindle_count": "x"})
    assert err.ecode == errors.ECODE_INVAL
    for bad in ({"alloc_policy": "sometimes"}, {"diskparams": {"floppy": {}}},
                {"group_name": "bad name!"}):
        with pytest.raises(errors.OpPrereqError) as exc:
            client.submit_job([{"OP_ID": "OP_GROUP_ADD", "group_name": "rack2", **bad}])
        assert exc.value.ecode == errors.ECODE_INVAL
    assert "rack2" not in groups(client, [])


def test_dry_run_adds_nothing(client: Any, clean: Any) -> None:
    run(client, "OP_GROUP_ADD", group_name="ghost", dry_run=True)
    assert "ghost" not in groups(client, [])


def test_assign_nodes_and_node_fields(client: Any, clean: Any) -> None:
    run(client, "OP_GROUP_ADD", group_name="rack1")
    uuid = groups(client, ["uuid"])["rack1"]["uuid"]
    run(client, "OP_GROUP_ASSIGN_NODES", group_name="rack1", nodes=["node2", "node3"])
    assert node_groups(client) == {"node1": "default", "node2": "rack1", "node3": "rack1"}
    rows = client.query("node", ["name", "group.uuid"])["data"]
    assert {r[0][1]: r[1][1] for r in rows}["node2"] == uuid
    info = groups(client, ["node_cnt", "node_list"])
    assert info["rack1"] == {"node_cnt": 2, "node_list": ["node2", "node3"]}
    assert info["default"] == {"node_cnt": 1, "node_list": ["node1"]}
    # Assigning again changes nothing; unknown nodes and groups are refused.
    run(client, "OP_GROUP_ASSIGN_NODES", group_name="rack1", nodes=["node2"])
    assert node_groups(client)["node2"] == "rack1"
    assert fail(client, "OP_GROUP_ASSIGN_NODES", group_name="rack1",
                nodes=["nosuchnode"]).ecode == errors.ECODE_NOENT
    assert fail(client, "OP_GROUP_ASSIGN_NODES", group_name="nosuchgroup",
                nodes=["node2"]).ecode == errors.ECODE_NOENT
    # The configuration stays consistent for verify.
    assert run(client, "OP_CLUSTER_VERIFY_CONFIG") is True


def test_set_params(client: Any, clean: Any) -> None:
    run(client, "OP_GROUP_ADD", group_name="rack1", ndparams={"spindle_count": 2},
        ipolicy={"vcpu-ratio": 2.0, "spindle-ratio": 8.0})
    changes = run(client, "OP_GROUP_SET_PARAMS", group_name="rack1",
                  alloc_policy="unallocable", ndparams={"spindle_count": None,
                                                        "ssh_port": 2222},
                  diskparams={"sharedfile": {}}, ipolicy={"vcpu-ratio": "default"})
    assert dict(changes) == {
        "ndparams": {"ssh_port": 2222}, "diskparams": {}, "alloc_policy": "unallocable",
        "ipolicy": {"spindle-ratio": 8.0}}
    info = groups(client, ["alloc_policy", "custom_ndparams", "ndparams", "custom_ipolicy",
                           "serial_no"])["rack1"]
    assert info["alloc_policy"] == "unallocable"
    assert info["custom_ndparams"] == {"ssh_port": 2222}
    assert info["ndparams"]["spindle_count"] == C.NDC_DEFAULTS[C.ND_SPINDLE_COUNT]
    assert info["custom_ipolicy"] == {"spindle-ratio": 8.0}
    assert info["serial_no"] == 2
    # Node parameters of a member node come from its group now.
    run(client, "OP_GROUP_ASSIGN_NODES", group_name="rack1", nodes=["node3"])
    rows = client.query("node", ["name", "ndparams"])["data"]
    assert {r[0][1]: r[1][1] for r in rows}["node3"]["ssh_port"] == 2222
    # Ganeti's ndp/<name> fields, filled, for groups and nodes.
    assert groups(client, ["ndp/ssh_port", "ndp/spindle_count"])["rack1"] == {
        "ndp/ssh_port": 2222, "ndp/spindle_count": C.NDC_DEFAULTS[C.ND_SPINDLE_COUNT]}
    rows = client.query("node", ["name", "ndp/ssh_port"])["data"]
    assert {r[0][1]: r[1][1] for r in rows} == {"node1": 22, "node2": 22, "node3": 2222}
    err = fail(client, "OP_GROUP_SET_PARAMS", group_name="rack1")
    assert err.ecode == errors.ECODE_INVAL and "at least one" in str(err)
    err = fail(client, "OP_GROUP_SET_PARAMS", group_name="rack1", ndparams={"nope": 1})
    assert err.ecode == errors.ECODE_INVAL
    assert groups(client, ["serial_no"])["rack1"]["serial_no"] == 2


def test_remove_refusals_and_removal(client: Any, clean: Any) -> None:
    err = fail(client, "OP_GROUP_REMOVE", group_name="default")
    assert err.ecode == errors.ECODE_STATE
    run(client, "OP_GROUP_ADD", group_name="rack1")
    run(client, "OP_GROUP_ASSIGN_NODES", group_name="rack1", nodes=["node3"])
    err = fail(client, "OP_GROUP_REMOVE", group_name="rack1")
    assert err.ecode == errors.ECODE_STATE and "node3" in str(err)
    run(client, "OP_GROUP_ASSIGN_NODES", group_name="default", nodes=["node3"])
    run(client, "OP_GROUP_REMOVE", group_name="rack1")
    assert set(groups(client, [])) == {"default"}
    assert fail(client, "OP_GROUP_REMOVE", group_name="nosuch").ecode == errors.ECODE_NOENT


def test_rename_default_group(client: Any, clean: Any) -> None:
    run(client, "OP_GROUP_ADD", group_name="rack1")
    assert fail(client, "OP_GROUP_RENAME", group_name="default",
                new_name="rack1").ecode == errors.ECODE_EXISTS
    assert run(client, "OP_GROUP_RENAME", group_name="default", new_name="main") == "main"
    assert node_groups(client) == {"node1": "main", "node2": "main", "node3": "main"}
    assert set(groups(client, [])) == {"main", "rack1"}


def test_tags_on_groups(client: Any, clean: Any) -> None:
    run(client, "OP_GROUP_ADD", group_name="rack1")
    run(client, "OP_TAGS_SET", kind="nodegroup", name="rack1", tags=["row:a", "cold"])
    assert sorted(client.query_tags("nodegroup", "rack1")) == ["cold", "row:a"]
    assert groups(client, ["tags"])["rack1"]["tags"] == ["row:a", "cold"]
    run(client, "OP_TAGS_DEL", kind="nodegroup", name="rack1", tags=["cold"])
    assert client.query_tags("nodegroup", "rack1") == ["row:a"]
    assert fail(client, "OP_TAGS_DEL", kind="nodegroup", name="rack1",
                tags=["cold"]).ecode == errors.ECODE_NOENT


def _create(client: Any, name: str, pnode: str, template: str, start: bool = True) -> None:
    run(client, "OP_INSTANCE_CREATE", instance_name=name, mode="create",
        disk_template=template, os_type="noop", pnode=pnode,
        disks=[] if template == C.DT_DISKLESS else [{"size": 16}], nics=[],
        name_check=False, ip_check=False, start=start,
        beparams={"maxmem": 64, "minmem": 64})


def _pnodes(client: Any) -> dict[str, str]:
    rows = client.query("instance", ["name", "pnode"])["data"]
    return {r[0][1]: r[1][1] for r in rows}


def _wait_children(client: Any, result: dict[str, Any]) -> None:
    for ok, job_id in result["jobs"]:
        assert ok, job_id
        client.wait_job(job_id, timeout=JOB_TIMEOUT)


def test_evacuate_to_least_loaded_nodes(client: Any, clean: Any) -> None:
    run(client, "OP_GROUP_ADD", group_name="rack1")
    run(client, "OP_GROUP_ASSIGN_NODES", group_name="rack1", nodes=["node2", "node3"])
    _create(client, "inst1", "node1", C.DT_SHARED_FILE)
    _create(client, "inst2", "node1", C.DT_DISKLESS, start=False)
    result = run(client, "OP_GROUP_EVACUATE", group_name="default", target_groups=["rack1"])
    assert len(result["jobs"]) == 2
    _wait_children(client, result)
    # One instance per target node: node2 first (name order), then node3.
    assert _pnodes(client) == {"inst1": "node2", "inst2": "node3"}
    # Nothing left to move: no jobs.
    assert run(client, "OP_GROUP_EVACUATE", group_name="default")["jobs"] == []
    # Back, one failover after the other (the second job depends on the first).
    result = run(client, "OP_GROUP_EVACUATE", group_name="rack1", sequential=True,
                 force_failover=True)
    ids = [job_id for _ok, job_id in result["jobs"]]
    _wait_children(client, result)
    assert _pnodes(client) == {"inst1": "node1", "inst2": "node1"}
    rows = client.query("job", ["id", "summary", "ops"], [str(i) for i in ids])["data"]
    assert [r[1][1] for r in rows] == [["INSTANCE_FAILOVER(inst1)"],
                                       ["INSTANCE_FAILOVER(inst2)"]]
    assert rows[1][2][1][0]["depends"] == [[ids[0], ["error", "success"]]]


def test_evacuate_refusals(client: Any, clean: Any) -> None:
    err = fail(client, "OP_GROUP_EVACUATE", group_name="default", iallocator="hail")
    assert err.ecode == errors.ECODE_INVAL and "allocator" in str(err)
    err = fail(client, "OP_GROUP_EVACUATE", group_name="default",
               target_groups=["default"])
    assert err.ecode == errors.ECODE_INVAL
    err = fail(client, "OP_GROUP_EVACUATE", group_name="default")
    assert err.ecode == errors.ECODE_INVAL and "no possible target groups" in str(err)
    run(client, "OP_GROUP_ADD", group_name="rack1", alloc_policy="unallocable")
    run(client, "OP_GROUP_ASSIGN_NODES", group_name="rack1", nodes=["node3"])
    _create(client, "inst1", "node1", C.DT_SHARED_FILE, start=False)
    err = fail(client, "OP_GROUP_EVACUATE", group_name="default")
    assert err.ecode == errors.ECODE_INVAL and "unallocable" in str(err)
    run(client, "OP_GROUP_SET_PARAMS", group_name="rack1", alloc_policy="preferred")
    _create(client, "local1", "node1", C.DT_FILE, start=False)
    err = fail(client, "OP_GROUP_EVACUATE", group_name="default")
    assert err.ecode == errors.ECODE_INVAL and "local1" in str(err)
    assert _pnodes(client) == {"inst1": "node1", "local1": "node1"}


def test_instance_change_group(client: Any, clean: Any) -> None:
    run(client, "OP_GROUP_ADD", group_name="rack1")
    run(client, "OP_GROUP_ADD", group_name="rack2", alloc_policy="last_resort")
    run(client, "OP_GROUP_ASSIGN_NODES", group_name="rack1", nodes=["node2"])
    run(client, "OP_GROUP_ASSIGN_NODES", group_name="rack2", nodes=["node3"])
    _create(client, "inst1", "node1", C.DT_SHARED_FILE)
    err = fail(client, "OP_INSTANCE_CHANGE_GROUP", instance_name="inst1",
               target_groups=["default"])
    assert err.ecode == errors.ECODE_INVAL and "used by the instance" in str(err)
    # Without targets every other group counts; preferred before last_resort.
    result = run(client, "OP_INSTANCE_CHANGE_GROUP", instance_name="inst1")
    _wait_children(client, result)
    assert _pnodes(client) == {"inst1": "node2"}
    result = run(client, "OP_INSTANCE_CHANGE_GROUP", instance_name="inst1",
                 target_groups=["rack2"])
    _wait_children(client, result)
    assert _pnodes(client) == {"inst1": "node3"}
    rows = client.query("instance", ["name", "status"])["data"]
    assert rows[0][1][1] == "running"
