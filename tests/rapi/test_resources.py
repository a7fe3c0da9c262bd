"""Request -> opcode translation and answer shapes of the RAPI resources."""

from __future__ import annotations

import warnings

import pytest

from .conftest import WRITER, FakeMaster

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _ok(resp) -> object:
    assert resp.status_code == 200, resp.text
    return resp.json()


def _reason_sources(op: dict) -> list[str]:
    return [entry[0] for entry in op["reason"]]


# -- simple resources ----------------------------------------------------------------------

def test_root_version_features(client: TestClient) -> None:
    assert _ok(client.get("/")) is None
    assert _ok(client.get("/2")) is None
    assert _ok(client.get("/version")) == 2
    assert sorted(_ok(client.get("/2/features"))) == sorted([
        "instance-create-reqv1", "instance-reinstall-reqv1", "node-migrate-reqv1",
        "node-evac-res1"])


def test_info_has_aliases(client: TestClient) -> None:
    info = _ok(client.get("/2/info"))
    assert info["name"] == "cluster.example"
    assert info["vg_name"] == "" and info["drbd_helper"] == ""


def test_os_list_runs_diagnose_and_waits(client: TestClient, master: FakeMaster) -> None:
    names = _ok(client.get("/2/os"))
    assert names == ["noop", "debootstrap+default", "debootstrap+minimal"]
    (op,) = master.last_ops()
    assert op["OP_ID"] == "OP_OS_DIAGNOSE"
    assert op["output_fields"][:2] == ["name", "variants"]
    assert master.waits, "the job must have been waited for"
    assert _reason_sources(op) == ["gnt:library:rlib2:os"]


# -- instances -----------------------------------------------------------------------------

CREATE_BODY = {"__version__": 1, "name": "web1", "os": "noop", "mode": "create",
               "disk_template": "diskless", "disks": [], "nics": [{}],
               "hvparams": {"usb_devices": "a b"}}


def test_instance_create_translation(client: TestClient, master: FakeMaster) -> None:
    job = _ok(client.post("/2/instances?dry-run=1&reason=because", json=CREATE_BODY,
                          headers=WRITER))
    assert job == 100
    (op,) = master.last_ops()
    assert op["OP_ID"] == "OP_INSTANCE_CREATE"
    assert op["instance_name"] == "web1" and op["os_type"] == "noop"
    assert "name" not in op and "os" not in op and "__version__" not in op
    assert op["dry_run"] is True
    assert op["hvparams"] == {"usb_devices": "a,b"}
    assert op["reason"][0][:2] == ["gnt:user", "because"]
    assert op["reason"][1][:2] == ["gnt:library:rlib2:instances", ""]
    assert isinstance(op["reason"][1][2], int)


@pytest.mark.parametrize("version,expected", [(None, "no longer supported"),
                                              (0, "no longer supported"),
                                              (2, "Unsupported request data version")])
def test_instance_create_needs_version_1(client: TestClient, master: FakeMaster,
                                         version, expected: str) -> None:
    body = dict(CREATE_BODY)
    if version is None:
        del body["__version__"]
    else:
        body["__version__"] = version
    resp = client.post("/2/instances", json=body, headers=WRITER)
    assert resp.status_code == 400
    assert expected in resp.json()["message"]
    assert master.jobs == {}


def test_instance_create_both_names_and_bad_params(client: TestClient,
                                                   master: FakeMaster) -> None:
    resp = client.post("/2/instances", json={**CREATE_BODY, "instance_name": "x"},
                       headers=WRITER)
    assert resp.status_code == 400 and "renamed" in resp.json()["message"]
    resp = client.post("/2/instances", json={**CREATE_BODY, "bogus": 1}, headers=WRITER)
    assert resp.status_code == 400
    assert resp.json()["message"].startswith("Invalid body parameters:")
    assert "bogus" in resp.json()["message"]
    resp = client.post("/2/instances", json={**CREATE_BODY, "dry_run": True},
                       headers=WRITER)
    assert resp.status_code == 400 and "static" in resp.json()["message"]
    resp = client.post("/2/instances", json=[1, 2], headers=WRITER)
    assert resp.status_code == 400
    assert master.jobs == {}


def test_depends_pass_through(client: TestClient, master: FakeMaster) -> None:
    _ok(client.put("/2/instances/inst1/shutdown", json={"depends": [[7, ["success"]]]},
                   headers=WRITER))
    assert master.last_ops()[0]["depends"] == [[7, ["success"]]]


def test_instances_list_and_bulk(client: TestClient) -> None:
    assert _ok(client.get("/2/instances")) == [{"id": "inst1", "uri": "/2/instances/inst1"}]
    (inst,) = _ok(client.get("/2/instances?bulk=1"))
    assert inst["name"] == "inst1"
    assert inst["beparams"]["memory"] == inst["beparams"]["maxmem"] == 256
    # Fields the query does not know are still present, as null.
    assert "nic.bridges" in inst and inst["nic.bridges"] is None
    assert inst["tags"] == ["web"]


def test_instance_get_and_404(client: TestClient) -> None:
    inst = _ok(client.get("/2/instances/inst1"))
    assert inst["pnode"] == "node1" and inst["beparams"]["memory"] == 256
    resp = client.get("/2/instances/nosuch")
    assert resp.status_code == 404
    assert "nosuch" in resp.json()["message"]


def test_instance_delete(client: TestClient, master: FakeMaster) -> None:
    _ok(client.delete("/2/instances/inst1?dry-run=1", headers=WRITER))
    (op,) = master.last_ops()
    assert op["OP_ID"] == "OP_INSTANCE_REMOVE"
    assert op["instance_name"] == "inst1" and op["ignore_failures"] is False
    assert op["dry_run"] is True
    _ok(client.request("DELETE", "/2/instances/inst1", json={"shutdown_timeout": 5},
                       headers=WRITER))
    assert master.last_ops()[0]["shutdown_timeout"] == 5


def test_instance_info_returns_job(client: TestClient, master: FakeMaster) -> None:
    job = _ok(client.get("/2/instances/inst1/info?static=1"))
    (op,) = master.jobs[job]["ops"]
    assert op["OP_ID"] == "OP_INSTANCE_QUERY_DATA"
    assert op["instances"] == ["inst1"] and op["static"] is True


def test_reboot_defaults_to_hard(client: TestClient, master: FakeMaster) -> None:
    _ok(client.post("/2/instances/inst1/reboot", headers=WRITER))
    op = master.last_ops()[0]
    assert op["reboot_type"] == "hard" and op["ignore_secondaries"] is False
    _ok(client.post("/2/instances/inst1/reboot?type=soft&ignore_secondaries=1",
                    json={"shutdown_timeout": 3}, headers=WRITER))
    op = master.last_ops()[0]
    assert (op["reboot_type"], op["ignore_secondaries"], op["shutdown_timeout"]) == \
        ("soft", True, 3)
    assert _reason_sources(op) == ["gnt:library:rlib2:instances_name_reboot"]
    resp = client.post("/2/instances/inst1/reboot?type=violent", headers=WRITER)
    assert resp.status_code == 400


def test_startup_shutdown(client: TestClient, master: FakeMaster) -> None:
    _ok(client.put("/2/instances/inst1/startup?force=1&no_remember=1", json={"x": 1},
                   headers=WRITER))
    op = master.last_ops()[0]
    assert op["OP_ID"] == "OP_INSTANCE_STARTUP"
    assert op["force"] is True and op["no_remember"] is True and "x" not in op
    _ok(client.put("/2/instances/inst1/shutdown", json={"timeout": 7}, headers=WRITER))
    op = master.last_ops()[0]
    assert op["OP_ID"] == "OP_INSTANCE_SHUTDOWN" and op["timeout"] == 7


def test_reinstall(client: TestClient, master: FakeMaster) -> None:
    _ok(client.post("/2/instances/inst1/reinstall", json={"os": "debootstrap+minimal",
                                                         "osparams": {"a": "b"}},
                    headers=WRITER))
    ops = master.last_ops()
    assert [o["OP_ID"] for o in ops] == ["OP_INSTANCE_SHUTDOWN", "OP_INSTANCE_REINSTALL",
                                         "OP_INSTANCE_STARTUP"]
    assert ops[1]["os_type"] == "debootstrap+minimal" and ops[1]["osparams"] == {"a": "b"}
    _ok(client.post("/2/instances/inst1/reinstall", json={"start": False}, headers=WRITER))
    assert len(master.last_ops()) == 2
    # Legacy query arguments.
    _ok(client.post("/2/instances/inst1/reinstall?os=noop&nostartup=1", headers=WRITER))
    ops = master.last_ops()
    assert len(ops) == 2 and ops[1]["os_type"] == "noop"
    # Body and query arguments together are refused (even ?reason=).
    resp = client.post("/2/instances/inst1/reinstall?reason=x", json={"os": "noop"},
                       headers=WRITER)
    assert resp.status_code == 400
    resp = client.post("/2/instances/inst1/reinstall", json={"start": "yes"},
                       headers=WRITER)
    assert resp.status_code == 400


def test_rename_modify_disks(client: TestClient, master: FakeMaster) -> None:
    _ok(client.put("/2/instances/inst1/rename", json={"new_name": "inst2",
                                                      "ip_check": False,
                                                      "name_check": False},
                   headers=WRITER))
    op = master.last_ops()[0]
    assert (op["OP_ID"], op["new_name"], op["ip_check"]) == ("OP_INSTANCE_RENAME", "inst2",
                                                             False)
    resp = client.put("/2/instances/inst1/rename", json={}, headers=WRITER)
    assert resp.status_code == 400 and "new_name" in resp.json()["message"]
    _ok(client.put("/2/instances/inst1/modify", json={
        "custom_beparams": {"maxmem": 512}, "disks": [["add", -1, {"size": 1024}]]},
        headers=WRITER))
    op = master.last_ops()[0]
    assert op["OP_ID"] == "OP_INSTANCE_SET_PARAMS"
    assert op["beparams"] == {"maxmem": 512} and op["disks"] == [["add", -1,
                                                                   {"size": 1024}]]
    resp = client.put("/2/instances/inst1/modify", json={"instance_name": "other"},
                      headers=WRITER)
    assert resp.status_code == 400 and "static" in resp.json()["message"]
    _ok(client.post("/2/instances/inst1/disk/0/grow", json={"amount": 256},
                    headers=WRITER))
    op = master.last_ops()[0]
    assert (op["OP_ID"], op["disk"], op["amount"]) == ("OP_INSTANCE_GROW_DISK", 0, 256)
    _ok(client.put("/2/instances/inst1/activate-disks?ignore_size=1", headers=WRITER))
    assert master.last_ops()[0]["ignore_size"] is True
    _ok(client.put("/2/instances/inst1/deactivate-disks?force=1", headers=WRITER))
    assert master.last_ops()[0]["force"] is True


# -- tags ----------------------------------------------------------------------------------

def test_tags(client: TestClient, master: FakeMaster) -> None:
    assert _ok(client.get("/2/tags")) == ["c1", "c2"]
    assert _ok(client.get("/2/instances/inst1/tags")) == ["web"]
    assert _ok(client.get("/2/nodes/node1/tags")) == ["a"]
    assert client.get("/2/nodes/nosuch/tags").status_code == 404
    _ok(client.put("/2/instances/inst1/tags?tag=a&tag=b&dry-run=1", json=["ignored"],
                   headers=WRITER))
    op = master.last_ops()[0]
    assert op["OP_ID"] == "OP_TAGS_SET"
    assert (op["kind"], op["name"], op["tags"], op["dry_run"]) == ("instance", "inst1",
                                                                   ["a", "b"], True)
    _ok(client.delete("/2/tags?tag=c1", headers=WRITER))
    op = master.last_ops()[0]
    assert (op["OP_ID"], op["kind"], op["name"], op["tags"]) == ("OP_TAGS_DEL", "cluster",
                                                                 None, ["c1"])


# -- nodes ---------------------------------------------------------------------------------

def test_nodes_list_bulk_and_single(client: TestClient) -> None:
    assert _ok(client.get("/2/nodes")) == [{"id": "node1", "uri": "/2/nodes/node1"},
                                           {"id": "node2", "uri": "/2/nodes/node2"}]
    bulk = _ok(client.get("/2/nodes?bulk=1"))
    assert [n["name"] for n in bulk] == ["node1", "node2"]
    assert bulk[0]["role"] == "M" and "dtotal" in bulk[0]
    node = _ok(client.get("/2/nodes/node1"))
    assert node["secondary_ip"] == node["sip"] == "127.0.9.1"
    assert client.get("/2/nodes/nosuch").status_code == 404


def test_node_role(client: TestClient, master: FakeMaster) -> None:
    assert _ok(client.get("/2/nodes/node1/role")) == "master"
    assert _ok(client.get("/2/nodes/node2/role")) == "drained"
    _ok(client.put("/2/nodes/node2/role?auto-promote=1", json="regular", headers=WRITER))
    op = master.last_ops()[0]
    assert op["OP_ID"] == "OP_NODE_SET_PARAMS"
    assert (op["master_candidate"], op["offline"], op["drained"], op["auto_promote"]) == \
        (False, False, False, True)
    _ok(client.put("/2/nodes/node2/role?force=1", json="offline", headers=WRITER))
    op = master.last_ops()[0]
    assert (op["offline"], op["master_candidate"], op["force"]) == (True, None, True)
    resp = client.put("/2/nodes/node2/role", json="master", headers=WRITER)
    assert resp.status_code == 400
    resp = client.put("/2/nodes/node2/role", json={"role": "regular"}, headers=WRITER)
    assert resp.status_code == 400


def test_node_modify(client: TestClient, master: FakeMaster) -> None:
    _ok(client.post("/2/nodes/node2/modify", json={"drained": False, "vm_capable": True},
                    headers=WRITER))
    op = master.last_ops()[0]
    assert (op["node_name"], op["drained"], op["vm_capable"]) == ("node2", False, True)
    resp = client.post("/2/nodes/node2/modify", json={"node_name": "x"}, headers=WRITER)
    assert resp.status_code == 400


# -- cluster -------------------------------------------------------------------------------

def test_cluster_modify(client: TestClient, master: FakeMaster) -> None:
    _ok(client.put("/2/modify", json={"candidate_pool_size": 5}, headers=WRITER))
    op = master.last_ops()[0]
    assert op["OP_ID"] == "OP_CLUSTER_SET_PARAMS" and op["candidate_pool_size"] == 5
    assert _reason_sources(op) == ["gnt:library:rlib2:cluster_modify"]
    resp = client.put("/2/modify", json={"compression_tools": ["gzip"]}, headers=WRITER)
    assert resp.status_code == 403
    resp = client.put("/2/modify?compression_tools=gzip", json={}, headers=WRITER)
    assert resp.status_code == 403
    resp = client.put("/2/modify", json={"candidate_pool_size": "many"}, headers=WRITER)
    assert resp.status_code == 400


# -- jobs ----------------------------------------------------------------------------------

def test_jobs(client: TestClient, master: FakeMaster) -> None:
    a = master.submit_job([{"OP_ID": "OP_TEST_DELAY", "duration": 0}])
    b = master.submit_job([{"OP_ID": "OP_TEST_DELAY", "duration": 1}])
    assert _ok(client.get("/2/jobs")) == [{"id": a, "uri": f"/2/jobs/{a}"},
                                          {"id": b, "uri": f"/2/jobs/{b}"}]
    bulk = _ok(client.get("/2/jobs?bulk=1"))
    assert [j["id"] for j in bulk] == [a, b]
    assert "oplog" not in bulk[0] and "opresult" not in bulk[0]
    assert bulk[0]["summary"] == ["TEST_DELAY"]
    job = _ok(client.get(f"/2/jobs/{a}"))
    assert set(job) == {"id", "ops", "status", "summary", "opstatus", "received_ts",
                        "start_ts", "end_ts", "oplog", "opresult"}
    assert job["status"] == "success"
    assert client.get("/2/jobs/999").status_code == 404
    assert _ok(client.delete(f"/2/jobs/{a}", headers=WRITER)) == [True, f"Job {a} canceled"]


def test_job_wait(client: TestClient, master: FakeMaster) -> None:
    job = master.submit_job([{"OP_ID": "OP_TEST_DELAY", "duration": 0}])
    url = f"/2/jobs/{job}/wait"
    assert _ok(client.request("GET", url, json={"fields": ["status"],
                                                "previous_job_info": ["success"],
                                                "previous_log_serial": 1},
                              headers=WRITER)) is None
    assert master.waits[-1] == (job, ["status"], ["success"], 1, 10.0)
    for bad in ({}, {"fields": "status"}, {"fields": [], "previous_job_info": 3},
                {"fields": [], "previous_log_serial": "1"}):
        resp = client.request("GET", url, json=bad, headers=WRITER)
        assert resp.status_code == 400, bad
    resp = client.request("GET", "/2/jobs/999/wait", json={"fields": ["status"]},
                          headers=WRITER)
    assert resp.status_code == 404


# -- query ---------------------------------------------------------------------------------

def test_query(client: TestClient) -> None:
    hdr = WRITER
    res = _ok(client.get("/2/query/node?fields=name,%20role", headers=hdr))
    assert [f["name"] for f in res["fields"]] == ["name", "role"]
    assert res["data"] == [[[0, "node1"], [0, "M"]], [[0, "node2"], [0, "D"]]]
    res = _ok(client.put("/2/query/instance", json={"fields": ["name", "status"],
                                                    "qfilter": ["inst1"]}, headers=hdr))
    assert res["data"] == [[[0, "inst1"], [0, "running"]]]
    res = _ok(client.put("/2/query/node?fields=name", json={"filter": ["node2"]},
                         headers=hdr))
    assert res["data"] == [[[0, "node2"]]]
    assert client.get("/2/query/node", headers=hdr).status_code == 400
    assert client.get("/2/query/node?fields=nosuch", headers=hdr).status_code == 400
    assert client.get("/2/query/bogus?fields=name", headers=hdr).status_code == 404
    fields = _ok(client.get("/2/query/node/fields?fields=name"))
    assert [f["name"] for f in fields["fields"]] == ["name"]
