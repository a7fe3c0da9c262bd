"""The Master methods through the real unix-socket API of a running masterd
(single-node dev cluster, fake hypervisor)."""

from __future__ import annotations

import os
import re
import stat
import time
from typing import Any

import pytest

from corral import constants as C
from corral import crypto, errors
from corral.masterd.client import MasterClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any) -> Any:
    return module_dev_cluster(1, cluster_name="masterd-test")


@pytest.fixture
def client(cluster: Any) -> Any:
    with MasterClient(cluster.master_paths, timeout=60) as c:
        yield c


def _delay(duration: float, **kw: Any) -> dict[str, Any]:
    return {"OP_ID": "OP_TEST_DELAY", "duration": duration, **kw}


def _status(client: MasterClient, job_id: int) -> str:
    return client.query_jobs([job_id], ["status"])[0][0]


def _wait_status(client: MasterClient, job_id: int, statuses: set[str],
                 timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = _status(client, job_id)
        if status in statuses:
            return status
        assert time.monotonic() < deadline, f"job {job_id} stuck in {status}"
        time.sleep(0.05)


def test_socket_is_private(cluster: Any) -> None:
    st = os.stat(cluster.master_paths.master_socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


def test_cluster_info(client: MasterClient, cluster: Any) -> None:
    info = client.query_cluster_info()
    assert info["name"] == "masterd-test"
    assert info["master"] == "node1"
    assert info["protocol_version"] == C.PROTOCOL_VERSION
    assert info["os_api_version"] == 20
    assert info["enabled_hypervisors"] == ["fake"]
    assert info["default_hypervisor"] == "fake"
    assert set(info["hvparams"]) == {"fake"}
    assert info["beparams"]["default"]["maxmem"] == C.BEC_DEFAULTS["maxmem"]
    assert info["nicparams"]["default"]["mode"] == C.NIC_MODE_BRIDGED
    assert info["vg_name"] == info["volume_group_name"]
    assert info["drbd_helper"] == info["drbd_usermode_helper"]
    assert info["enabled_disk_templates"] == ["file", "sharedfile", "diskless"]
    for key in ("software_version", "config_version", "export_version", "architecture",
                "ndparams", "diskparams", "candidate_pool_size", "mac_prefix", "uuid",
                "ctime", "mtime", "tags", "file_storage_dir", "shared_file_storage_dir",
                "max_running_jobs", "ipolicy", "os_hvp", "osparams"):
        assert key in info, key


def test_config_values(client: MasterClient) -> None:
    assert client.query_config_values(["cluster_name", "master_node", "drain_flag"]) == \
        ["masterd-test", "node1", False]
    with pytest.raises(errors.OpPrereqError) as info:
        client.query_config_values(["no_such_field"])
    assert info.value.ecode == errors.ECODE_INVAL


def test_job_with_log_messages(client: MasterClient) -> None:
    job_id = client.submit_job([_delay(0.05, repeat=3)])
    assert isinstance(job_id, int)
    messages: list[Any] = []
    result = client.wait_job(job_id, messages.append, timeout=60)
    assert result == [None]
    texts = [m[2] for m in messages]
    assert texts == [f"Test delay iteration {i}/3" for i in (1, 2, 3)]
    assert all(m[1] == C.ELOG_MESSAGE and len(m[0]) == 2 for m in messages)
    row = client.query_jobs([job_id], ["id", "status", "summary", "opstatus"])[0]
    assert row == [job_id, "success", ["TEST_DELAY(0.05)"], ["success"]]
    info = client.call("QueryJobs", [job_id], ["oplog"])
    assert len(info[0][0][0]) == 3


def test_invalid_opcodes_are_refused(client: MasterClient) -> None:
    with pytest.raises(errors.OpPrereqError) as info:
        client.submit_job([{"OP_ID": "OP_NO_SUCH_THING"}])
    assert info.value.ecode == errors.ECODE_INVAL
    with pytest.raises(errors.OpPrereqError) as info:
        client.submit_job([{"OP_ID": "OP_TEST_DELAY"}])          # duration missing
    assert info.value.ecode == errors.ECODE_INVAL
    with pytest.raises(errors.OpPrereqError):
        client.submit_job([])


def test_failed_job_raises_the_opcode_error(client: MasterClient) -> None:
    job_id = client.submit_job([_delay(0, on_nodes=["no-such-node"])])
    with pytest.raises(errors.OpPrereqError) as info:
        client.wait_job(job_id, timeout=60)
    assert info.value.ecode == errors.ECODE_NOENT
    assert "no-such-node" in info.value.message
    status, opresult = client.query_jobs([job_id], ["status", "opresult"])[0]
    assert status == "error"
    assert opresult[0][0] == "OpPrereqError"


def test_wait_for_unknown_job(client: MasterClient) -> None:
    with pytest.raises(errors.JobQueueError) as info:
        client.wait_job(987654, timeout=10)
    assert info.value.ecode == errors.ECODE_NOENT
    assert client.query_jobs([987654], ["status"]) == [None]


def test_wait_for_job_change_times_out(client: MasterClient) -> None:
    job_id = client.submit_job([_delay(3)])
    _wait_status(client, job_id, {"running"})
    change = client.wait_for_job_change(job_id, ["status"], None, None, 5)
    assert change != "nochange"
    job_info, log_entries = change
    assert job_info == ["running"]
    serial = max((e[0] for e in log_entries), default=None)
    start = time.monotonic()
    assert client.wait_for_job_change(job_id, ["status"], job_info, serial, 0.5) == "nochange"
    assert 0.4 < time.monotonic() - start < 5
    client.wait_job(job_id, timeout=30)


@pytest.mark.slow
def test_wait_for_job_change_is_capped(client: MasterClient, cluster: Any) -> None:
    """A client asking for a very long wait gets an answer within the cap."""
    job_id = client.submit_job([_delay(35)])
    try:
        _wait_status(client, job_id, {"running"})
        start = time.monotonic()
        assert client.call("WaitForJobChange", job_id, ["status"], ["running"], 10**6, 3600,
                           timeout=120) == "nochange"
        assert time.monotonic() - start < 40
    finally:
        client.cancel_job(job_id, True)


def test_cancel_waiting_and_running_jobs(client: MasterClient) -> None:
    first = client.submit_job([_delay(2)])
    second = client.submit_job([_delay(0, depends=[[first, []]])])
    _wait_status(client, first, {"running"})
    ok, msg = client.cancel_job(second)
    assert ok, msg
    assert _wait_status(client, second, {"canceled"}) == "canceled"
    ok, msg = client.cancel_job(first)
    assert not ok and "no longer waiting" in msg.lower()
    assert client.wait_job(first, timeout=30) == [None]
    with pytest.raises(errors.OpExecError, match="canceled"):
        client.wait_job(second, timeout=10)


def test_submit_many_with_relative_dependency(client: MasterClient) -> None:
    results = client.submit_many([[_delay(0.2)], [_delay(0, depends=[[-1, ["success"]]])]])
    assert [ok for ok, _ in results] == [True, True]
    first, second = (job_id for _, job_id in results)
    assert second > first
    assert client.wait_job(second, timeout=30) == [None]
    assert _status(client, first) == "success"
    ops = client.query_jobs([second], ["ops"])[0][0]
    assert ops[0]["depends"] == [[first, ["success"]]]


def test_change_priority_of_waiting_job(client: MasterClient) -> None:
    first = client.submit_job([_delay(1)])
    second = client.submit_job([_delay(0, depends=[[first, []]])])
    ok, msg = client.change_job_priority(second, C.OP_PRIO_HIGH)
    assert ok, msg
    assert client.query_jobs([second], ["priority"])[0][0] == C.OP_PRIO_HIGH
    client.wait_job(second, timeout=30)
    ok, _msg = client.change_job_priority(second, C.OP_PRIO_LOW)
    assert not ok                    # finished jobs keep their priority


def test_drain_flag(client: MasterClient) -> None:
    assert client.set_drain_flag(True) is True
    try:
        assert client.query_config_values(["drain_flag"]) == [True]
        with pytest.raises(errors.JobQueueDrainError):
            client.submit_job([_delay(0)])
    finally:
        client.set_drain_flag(False)
    assert client.query_config_values(["drain_flag"]) == [False]
    client.wait_job(client.submit_job([_delay(0)]), timeout=30)


def test_archive(client: MasterClient) -> None:
    job_id = client.submit_job([_delay(0)])
    client.wait_job(job_id, timeout=30)
    assert client.archive_job(job_id) is True
    # Gone from the live list, still readable by id and in the archived list.
    assert [job_id] not in client.query_jobs(None, ["id"], False)
    assert [job_id] in client.query_jobs(None, ["id"], True)
    assert client.query_jobs([job_id], ["status", "archived"]) == [["success", True]]
    running = client.submit_job([_delay(1)])
    assert client.archive_job(running) is False
    client.wait_job(running, timeout=30)
    archived, remaining = client.auto_archive(-1, 30)
    assert archived >= 1 and remaining == 0
    assert client.query_jobs([running], ["archived"]) == [[True]]
    assert [running] not in client.query_jobs(None, ["id"], False)


def test_tags(client: MasterClient) -> None:
    assert client.query_tags("cluster", None) == []
    assert client.query_tags("node", "node1") == []
    assert client.query_tags("nodegroup", "default") == []
    with pytest.raises(errors.OpPrereqError) as info:
        client.query_tags("node", "node99")
    assert info.value.ecode == errors.ECODE_NOENT
    with pytest.raises(errors.OpPrereqError) as info:
        client.query_tags("volume", "x")
    assert info.value.ecode == errors.ECODE_INVAL
    job_id = client.submit_job([{"OP_ID": "OP_TAGS_SET", "kind": "cluster",
                                 "tags": ["masterd-tag"]}])
    client.wait_job(job_id, timeout=30)
    try:
        assert client.query_tags("cluster", None) == ["masterd-tag"]
    finally:
        client.wait_job(client.submit_job([{"OP_ID": "OP_TAGS_DEL", "kind": "cluster",
                                            "tags": ["masterd-tag"]}]), timeout=30)


def test_join_token(client: MasterClient, cluster: Any) -> None:
    token = client.create_join_token(120)
    assert re.match(r"^[0-9a-f]{8}\.[A-Za-z0-9_-]{32,}$", token)
    token_id, secret = crypto.parse_join_token(token)
    store = crypto.JoinTokenStore(cluster.master_paths)
    assert store.get_secret(token_id) == secret
    assert stat.S_IMODE(os.stat(cluster.master_paths.join_tokens).st_mode) == 0o600
    with pytest.raises(errors.OpPrereqError):
        client.create_join_token(0)
    store.consume(token_id)


def test_queries(client: MasterClient) -> None:
    assert client.query_nodes(None, ["name", "master_candidate"]) == [["node1", True]]
    assert client.query_nodes(["node1"], ["name"]) == [["node1"]]
    assert client.query_groups(None, ["name"]) == [["default"]]
    assert client.query_instances(None, ["name"]) == []
    with pytest.raises(errors.OpPrereqError):
        client.query_nodes(["node99"], ["name"])
    result = client.query("node", ["name", "role"], None)
    assert [f["name"] for f in result["fields"]] == ["name", "role"]
    assert result["data"] == [[[0, "node1"], [0, "M"]]]
    fields = client.query_fields("node", None)["fields"]
    assert {"name", "pip", "role"} <= {f["name"] for f in fields}
    jobs = client.query("job", ["id", "status"], None)
    assert all(row[1][1] in C.JOB_STATUS_ALL for row in jobs["data"])


def test_query_filters(client: MasterClient) -> None:
    def names(qfilter: Any) -> list[str]:
        return [row[0][1] for row in client.query("node", ["name"], qfilter)["data"]]

    assert names(None) == ["node1"]
    assert names(["node1"]) == ["node1"]
    assert names(["|", ["=", "name", "node1"]]) == ["node1"]
    assert names(["=~", "name", "^node"]) == ["node1"]
    assert names(["!", ["=", "name", "node1"]]) == []
    assert names(["&", ["?", "master_candidate"], ["=", "pip", client.query(
        "node", ["pip"], None)["data"][0][0][1]]]) == ["node1"]
    with pytest.raises(errors.OpPrereqError) as info:
        names(["=", "name", "node-unknown"])
    assert info.value.ecode == errors.ECODE_NOENT
    for bad in (["=", "name"], ["~~", "name", 1], "name", ["=~", "name", "("],
                ["=", "no_such_field", 1]):
        with pytest.raises(errors.OpPrereqError) as info:
            client.query("node", ["name"], bad)
        assert info.value.ecode == errors.ECODE_INVAL, bad


def test_query_unknown_fields_and_resources(client: MasterClient) -> None:
    result = client.query("node", ["name", "no_such_field"], None)
    assert result["fields"][1]["kind"] == "unknown"
    assert result["data"] == [[[0, "node1"], [1, None]]]
    assert client.query_fields("node", ["no_such_field"])["fields"][0]["kind"] == "unknown"
    with pytest.raises(errors.OpPrereqError) as info:
        client.query("spaceship", ["name"], None)
    assert info.value.ecode == errors.ECODE_INVAL
    with pytest.raises(errors.OpPrereqError) as info:
        client.query_nodes(None, ["name", "no_such_field"])
    assert info.value.ecode == errors.ECODE_INVAL


def test_query_jobs_and_locks(client: MasterClient) -> None:
    job_id = client.submit_job([_delay(0)])
    client.wait_job(job_id, timeout=30)
    result = client.query("job", ["id", "status"], ["=", "id", job_id])
    assert [f["name"] for f in result["fields"]] == ["id", "status"]
    assert result["data"] == [[[0, job_id], [0, "success"]]]
    ok = client.query("job", ["id"], ["&", ["=", "status", "success"], [">=", "id", job_id]])
    assert [job_id] in [[row[0][1]] for row in ok["data"]]
    assert {"id", "status", "summary"} <= {f["name"] for f in
                                           client.query_fields("job")["fields"]}
    running = client.submit_job([_delay(2)])
    _wait_status(client, running, {"running"})
    locks = client.query("lock", ["name", "mode", "owner"], None)["data"]
    bgl = [row for row in locks if row[0][1] == "cluster/BGL"]
    assert bgl and bgl[0][1][1] == "shared" and bgl[0][2][1]
    client.wait_job(running, timeout=30)


def test_bad_arguments_are_input_errors(client: MasterClient) -> None:
    for method, args in (("CancelJob", ["abc"]), ("WaitForJobChange", [1, ["status"], None,
                                                                        None, "soon"]),
                         ("ChangeJobPriority", [1, "high"]), ("QueryJobs", [["x"], ["id"]]),
                         ("AutoArchiveJobs", ["old", 1]), ("CreateJoinToken", ["long"]),
                         ("QueryConfigValues", ["cluster_name"]), ("ArchiveJob", [True])):
        with pytest.raises(errors.OpPrereqError) as info:
            client.call(method, *args)
        assert info.value.ecode == errors.ECODE_INVAL, method
