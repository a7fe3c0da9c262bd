"""Instance policies in logical units (cmdlib/instance_policy.py and its callers):
OP_CLUSTER_SET_PARAMS ipolicy, refusals on create/modify/grow-disk unless
ignore_ipolicy, cluster verify warnings, group inheritance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral import errors
from corral import ipolicy as ip
from corral.cmdlib.instance_policy import (
    check_target_node_ipolicy,
    group_instances,
    group_ipolicy_change,
    instance_violations,
    new_violations,
    verify_group_instances,
)
from corral.config import ConfigStore
from corral.objects import NIC, Cluster, Disk, Instance, Node, NodeGroup

try:
    from .test_instance_fixtures import Env, env, icluster  # noqa: F401
except ImportError:
    from test_instance_fixtures import Env, env, icluster  # noqa: F401

integration = pytest.mark.integration

SPEC_MIN = {"memory-size": 128, "cpu-count": 1, "disk-count": 1, "disk-size": 4,
            "nic-count": 0, "spindle-use": 0}
SPEC_MAX = {"memory-size": 512, "cpu-count": 2, "disk-count": 2, "disk-size": 64,
            "nic-count": 2, "spindle-use": 4}
STD = {"memory-size": 128, "cpu-count": 1, "disk-count": 1, "disk-size": 16,
       "nic-count": 1, "spindle-use": 1}
POLICY = {"minmax": [{"min": SPEC_MIN, "max": SPEC_MAX}], "std": STD,
          "disk-templates": ["file", "diskless"], "vcpu-ratio": 2.0}


def _set_policy(env: Env, **policy: Any) -> list[Any]:
    return env.run1({"OP_ID": "OP_CLUSTER_SET_PARAMS", "ipolicy": policy})


def _cluster_policy(env: Env) -> dict[str, Any]:
    return env.run1({"OP_ID": "OP_CLUSTER_QUERY"})["ipolicy"]


def _run_logged(env: Env, op: dict[str, Any]) -> tuple[Any, list[str]]:
    """Run one opcode; return its result and the job's log messages."""
    messages: list[str] = []
    job_id = env.client.submit_job([op])
    (result,) = env.client.wait_job(job_id, lambda entry: messages.append(str(entry[2])),
                                    timeout=180.0)
    return result, messages


@pytest.fixture
def penv(env: Env) -> Any:
    """The module's cluster with the test policy; the dev policy put back after."""
    saved = _cluster_policy(env)
    _set_policy(env, **POLICY)
    yield env
    env.remove_all()
    _set_policy(env, **{k: saved[k] for k in ("minmax", "std", "disk-templates",
                                              "vcpu-ratio")})


def _file(name: str, sizes: tuple[int, ...] = (16,), **kw: Any) -> dict[str, Any]:
    """Parameters of OP_INSTANCE_CREATE for a stopped file instance."""
    return {"instance_name": name, "disk_template": "file", "start": False,
            "disks": [{"size": s} for s in sizes], "os_type": "noop", **kw}


def _create(**kw: Any) -> dict[str, Any]:
    """OP_INSTANCE_CREATE with Env.create's defaults (diskless, no NIC, node1)."""
    return {"OP_ID": "OP_INSTANCE_CREATE", "mode": "create",
            "disks": [], "nics": [], "disk_template": "diskless", "os_type": "noop",
            "pnode": "node1", "name_check": False, "ip_check": False, "start": False, **kw}


def _refused(env: Env, op: dict[str, Any], *texts: str) -> str:
    err = env.fail(op)
    assert isinstance(err, errors.OpPrereqError), err
    assert err.ecode == errors.ECODE_INVAL
    for text in texts:
        assert text in err.message, err.message
    return err.message


# -- cluster policy ----------------------------------------------------------------------
@integration
def test_cluster_set_params_ipolicy(penv: Env) -> None:
    policy = _cluster_policy(penv)
    assert policy == {**POLICY, "spindle-ratio": 32.0, "memory-ratio": 1.0}
    # Only the keys given change; std is merged value by value.
    _set_policy(penv, std={"nic-count": 0}, **{"spindle-ratio": 8})
    policy = _cluster_policy(penv)
    assert policy["std"] == {**STD, "nic-count": 0} and policy["spindle-ratio"] == 8.0
    op = {"OP_ID": "OP_CLUSTER_SET_PARAMS"}
    for ipolicy, text in (
            ({"minmax": [{"min": SPEC_MAX, "max": SPEC_MIN}]}, "are inverted"),
            ({"minmax": [{"min": SPEC_MIN}]}, "missing: max"),
            ({"std": {"memory-size": 1024}}, "std specs are not within"),
            ({"disk-templates": ["plain"]}, "not enabled on the cluster: plain"),
            ({"disk-templates": ["floppy"]}, "unknown disk template"),
            ({"vcpu-ratio": "default"}, "cannot unset"),
            ({"cpu-ratio": 1}, "unknown key cpu-ratio")):
        _refused(penv, {**op, "ipolicy": ipolicy}, text)
    assert _cluster_policy(penv) == policy
    # A template the policy allows cannot be disabled alone (Ganeti).
    _refused(penv, {**op, "enabled_disk_templates": ["file", "sharedfile"]},
             "allowed by the ipolicy, but not enabled on the cluster: diskless")


# -- create --------------------------------------------------------------------------------
@integration
def test_create_refused_unless_ignored(penv: Env) -> None:
    msg = _refused(penv, _create(**_file("ip1", (16, 128, 8),
                                         beparams={"maxmem": 1024, "vcpus": 2})),
                   "violates policy", "memory-size value 1024 is not in range [128, 512]",
                   "disk-count value 3 is not in range [1, 2]",
                   "disk-size/1 value 128 is not in range [4, 64]")
    assert "Instance allocation to group" in msg and "(default)" in msg
    assert "ip1" not in penv.instances()
    _refused(penv, _create(**_file("ip2"), nics=[{}, {}, {}]),
             "nic-count value 3 is not in range [0, 2]")
    assert "ip2" not in penv.instances()
    # With ignore_ipolicy: created, with a warning in the job log.
    _, log = _run_logged(penv, _create(**_file("ip1", beparams={"maxmem": 1024}),
                                       ignore_ipolicy=True))
    assert penv.info("ip1")["be_actual"]["maxmem"] == 1024
    assert any("memory-size value 1024" in m and "--ignore-ipolicy" in m for m in log), log


@integration
def test_create_disk_template_not_allowed(penv: Env) -> None:
    _set_policy(penv, **{"disk-templates": ["file"]})
    _refused(penv, _create(instance_name="ip3"),
             "Disk template diskless is not allowed (allowed templates: file)")
    assert "ip3" not in penv.instances()


# -- modify and grow-disk ------------------------------------------------------------------
def _mod(name: str, **kw: Any) -> dict[str, Any]:
    return {"OP_ID": "OP_INSTANCE_SET_PARAMS", "instance_name": name, **kw}


@integration
def test_modify_refused_unless_ignored(penv: Env) -> None:
    penv.create("ip4", **_file("ip4"))
    before = penv.instances()["ip4"]
    _refused(penv, _mod("ip4", beparams={"maxmem": 1024}),
             "memory-size value 1024 is not in range [128, 512]")
    # Ganeti checks minmem against the memory bounds too.
    _refused(penv, _mod("ip4", beparams={"minmem": 64}),
             "memory-size value 64 is not in range [128, 512]")
    _refused(penv, _mod("ip4", disks=[["add", -1, {"size": 8}], ["add", -1, {"size": 8}]]),
             "disk-count value 3 is not in range [1, 2]")
    _refused(penv, _mod("ip4", nics=[["add", -1, {}]] * 3),
             "nic-count value 3 is not in range [0, 2]")
    assert penv.instances()["ip4"] == before
    # Within the policy, and beyond it with ignore_ipolicy.
    penv.run1(_mod("ip4", beparams={"maxmem": 256}))
    penv.run1(_mod("ip4", beparams={"vcpus": 4}, ignore_ipolicy=True))
    info = penv.info("ip4")
    assert info["be_actual"]["maxmem"] == 256 and info["be_actual"]["vcpus"] == 4
    # Changes that do not touch the specs are not refused for a violating instance.
    penv.run1(_mod("ip4", osparams={}, os_name="noop"))


@integration
def test_grow_disk_policy(penv: Env) -> None:
    penv.create("ip5", **_file("ip5", (16,)))
    grow = {"OP_ID": "OP_INSTANCE_GROW_DISK", "instance_name": "ip5", "disk": 0,
            "amount": 64, "wait_for_sync": False}
    _refused(penv, grow, "Growing disk 0 violates policy",
             "disk-size/0 value 80 is not in range [4, 64]")
    assert penv.info("ip5")["disks"][0]["size"] == 16
    penv.run1({**grow, "ignore_ipolicy": True})
    assert penv.info("ip5")["disks"][0]["size"] == 80


# -- verify and warnings -----------------------------------------------------------------
@integration
def test_verify_warns_and_policy_change_warns(penv: Env) -> None:
    penv.create("ip6", **_file("ip6"))
    _, log = _run_logged(penv, {"OP_ID": "OP_CLUSTER_SET_PARAMS", "ipolicy": {
        "minmax": [{"min": {**SPEC_MIN, "disk-size": 32}, "max": SPEC_MAX}],
        "std": {"disk-size": 32}}})
    assert any("After the ipolicy change the following instances violate them: ip6" in m
               for m in log), log
    ok, log = _run_logged(penv, {"OP_ID": "OP_CLUSTER_VERIFY_GROUP", "group_name": "default",
                                 "error_codes": True})
    lines = [m for m in log if "EINSTANCEPOLICY" in m]
    assert lines == ["  - WARNING:EINSTANCEPOLICY:instance:ip6:disk-size/0 value 16 is not "
                     "in range [32, 64]"], log
    assert ok is True       # a warning: verify still passes


# -- group inheritance, on a real configuration store ---------------------------------
def _store(tmp_path: Path) -> tuple[ConfigStore, NodeGroup, NodeGroup]:
    default = NodeGroup(name="default")
    node1 = Node(name="node1", primary_ip="127.0.0.1", group=default.uuid)
    cluster = Cluster(cluster_name="c", master_node=node1.uuid,
                      enabled_disk_templates=["file", "diskless"],
                      ipolicy=ip.default_ipolicy(["file", "diskless"]))
    store = ConfigStore.create(tmp_path / "config.db", cluster, node1, default)
    small = NodeGroup(name="small", ipolicy={"minmax": [
        {"min": {**SPEC_MIN, "disk-size": 1}, "max": {**SPEC_MAX, "disk-size": 1024}}]})
    node2 = Node(name="node2", primary_ip="127.0.0.2", group=small.uuid)
    store.commit(add=[small, node2])
    for name, node, size in (("big", node1, 2048), ("tiny", node2, 10), ("bad", node1, 10)):
        store.commit(add=[Instance(name=name, primary_node=node.uuid, disk_template="file",
                                   nics=[NIC()], beparams={"maxmem": 256},
                                   disks=[Disk(size=size, nodes=[node.uuid])])])
    return store, store.get_nodegroup(default.uuid), store.get_nodegroup(small.uuid)


def test_group_policy_inheritance(tmp_path: Path) -> None:
    store, default, small = _store(tmp_path)
    try:
        cluster = store.get_cluster()
        small_policy = ip.group_ipolicy(cluster, small)
        assert small_policy["minmax"] == small.ipolicy["minmax"]
        assert small_policy["std"] == cluster.ipolicy["std"]        # inherited
        assert small_policy["disk-templates"] == ["diskless", "file"]
        assert [i.name for i in group_instances(store, small)] == ["tiny"]
        assert verify_group_instances(store, small, group_instances(store, small)) == []
        assert verify_group_instances(store, default, group_instances(store, default)) == [
            ("bad", "disk-size/0 value 10 is not in range [1024, 1048576]")]
        big = store.get_instance_by_name("big")
        assert instance_violations(cluster, small_policy, big) == [
            "disk-size/0 value 2048 is not in range [1, 1024]"]
        # A cluster change newly breaking "big" (default group) but not "tiny"
        # (its group overrides the bounds): only "big" is named.
        tighter = ip.updated_ipolicy(cluster.ipolicy, {"minmax": [
            {"min": ip.IPOLICY_DEFAULTS["minmax"][0]["min"],
             "max": {**ip.IPOLICY_DEFAULTS["minmax"][0]["max"], "disk-size": 1500}}]})
        assert new_violations(store, tighter) == ["big"]
        # A group change: "tiny" would break a bigger minimum in its group.
        grown = {"minmax": [{"min": {**SPEC_MIN, "disk-size": 100},
                             "max": {**SPEC_MAX, "disk-size": 1024}}]}
        assert new_violations(store, cluster.ipolicy, {small.uuid: grown}) == ["tiny"]
    finally:
        store.close()


class _LU:
    """What check_target_node_ipolicy uses of a logical unit: the config and
    the job log."""

    def __init__(self, cfg: ConfigStore) -> None:
        self.cfg = cfg
        self.warnings: list[str] = []

    def log_warning(self, message: str) -> None:
        self.warnings.append(message)


def test_target_node_policy(tmp_path: Path) -> None:
    store, _default, _small = _store(tmp_path)
    try:
        lu = _LU(store)
        big = store.get_instance_by_name("big")
        node1 = store.get_node_by_name("node1")
        node2 = store.get_node_by_name("node2")
        # Same group: never checked.
        check_target_node_ipolicy(lu, store.get_instance_by_name("bad"), node1.uuid, False)
        # To the "small" group, whose bounds "big" breaks.
        with pytest.raises(errors.OpPrereqError) as exc:
            check_target_node_ipolicy(lu, big, node2.uuid, False)
        assert exc.value.ecode == errors.ECODE_INVAL
        assert exc.value.message == (
            "Instance does not meet target node group's (small) instance policy: "
            "disk-size/0 value 2048 is not in range [1, 1024]")
        assert lu.warnings == []
        check_target_node_ipolicy(lu, big, node2.uuid, True)
        assert lu.warnings == [exc.value.message]
        # Back to the default group: "tiny"'s 10 MiB disk is below its 1 GiB minimum.
        with pytest.raises(errors.OpPrereqError, match="target node group's \\(default\\)"):
            check_target_node_ipolicy(lu, store.get_instance_by_name("tiny"), node1.uuid,
                                      False)
    finally:
        store.close()


def test_group_ipolicy_change(tmp_path: Path) -> None:
    store, _default, small = _store(tmp_path)
    try:
        lu = _LU(store)
        # A new group: only what it overrides is kept.
        assert group_ipolicy_change(lu, None, {"vcpu-ratio": "8"}) == {"vcpu-ratio": 8.0}
        # An existing group: keys replaced or reset; "tiny" newly breaks.
        grown = [{"min": {**SPEC_MIN, "disk-size": 100},
                  "max": {**SPEC_MAX, "disk-size": 1024}}]
        new = group_ipolicy_change(lu, small, {"minmax": grown, "spindle-ratio": 4})
        assert new == {"minmax": grown, "spindle-ratio": 4.0}
        assert lu.warnings == ["After the ipolicy change the following instances violate "
                               "them: tiny"]
        assert group_ipolicy_change(lu, small, {"minmax": "default"}) == {}
        for update, text in (({"std": {"memory-size": 128}}, "std cannot appear"),
                             ({"disk-templates": ["plain"]}, "not enabled on the cluster"),
                             ({"minmax": [{"min": SPEC_MAX, "max": SPEC_MIN}]}, "inverted")):
            with pytest.raises(errors.OpPrereqError, match=text) as exc:
                group_ipolicy_change(lu, small, update)
            assert exc.value.ecode == errors.ECODE_INVAL
        assert store.get_nodegroup(small.uuid).ipolicy == small.ipolicy   # nothing stored
    finally:
        store.close()
