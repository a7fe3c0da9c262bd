"""Request -> opcode translation of the ``/2/groups`` resources (rapi/groups.py);
the answers of a real master are checked in tests/integration/test_groups.py."""

from __future__ import annotations

import warnings

from .conftest import READER, WRITER, FakeMaster

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _op(client: TestClient, master: FakeMaster, method: str, url: str,
        json: object = None) -> dict:
    resp = client.request(method, url, json=json, headers=WRITER)
    assert resp.status_code == 200, resp.text
    (op,) = master.last_ops()
    return op


def test_create_renames_name(client: TestClient, master: FakeMaster) -> None:
    op = _op(client, master, "POST", "/2/groups?dry-run=1",
             {"name": "rack1", "alloc_policy": "last_resort"})
    assert op["OP_ID"] == "OP_GROUP_ADD"
    assert (op["group_name"], op["alloc_policy"], op["dry_run"]) == \
        ("rack1", "last_resort", True)
    resp = client.post("/2/groups", json={"name": "a", "group_name": "b"}, headers=WRITER)
    assert resp.status_code == 400
    resp = client.post("/2/groups", json={"name": "a", "alloc_policy": "x"}, headers=WRITER)
    assert resp.status_code == 400 and "Invalid body parameters" in resp.text
    assert client.post("/2/groups", json={"name": "a"}, headers=READER).status_code == 403
    assert client.post("/2/groups", json={"name": "a"}).status_code == 401


def test_modify_accepts_custom_names(client: TestClient, master: FakeMaster) -> None:
    op = _op(client, master, "PUT", "/2/groups/rack1/modify",
             {"custom_ndparams": {"ssh_port": 22}, "custom_ipolicy": {"vcpu-ratio": 2.0},
              "custom_diskparams": {"file": {}}})
    assert op["OP_ID"] == "OP_GROUP_SET_PARAMS" and op["group_name"] == "rack1"
    assert op["ndparams"] == {"ssh_port": 22} and op["ipolicy"] == {"vcpu-ratio": 2.0}
    assert op["diskparams"] == {"file": {}} and op["dry_run"] is False
    resp = client.put("/2/groups/rack1/modify", json={"group_name": "other"},
                      headers=WRITER)
    assert resp.status_code == 400


def test_rename_assign_delete_tags(client: TestClient, master: FakeMaster) -> None:
    op = _op(client, master, "PUT", "/2/groups/rack1/rename", {"new_name": "rack2"})
    assert (op["OP_ID"], op["group_name"], op["new_name"]) == \
        ("OP_GROUP_RENAME", "rack1", "rack2")
    op = _op(client, master, "PUT", "/2/groups/rack1/assign-nodes?force=1&dry-run=1",
             {"nodes": ["node1", "node2"]})
    assert (op["OP_ID"], op["nodes"], op["force"], op["dry_run"]) == \
        ("OP_GROUP_ASSIGN_NODES", ["node1", "node2"], True, True)
    op = _op(client, master, "DELETE", "/2/groups/rack1")
    assert (op["OP_ID"], op["group_name"]) == ("OP_GROUP_REMOVE", "rack1")
    op = _op(client, master, "PUT", "/2/groups/rack1/tags?tag=a&tag=b")
    assert (op["OP_ID"], op["kind"], op["name"], op["tags"]) == \
        ("OP_TAGS_SET", "nodegroup", "rack1", ["a", "b"])
    assert client.put("/2/groups/rack1/rename", json={"new_name": "x"},
                      headers=READER).status_code == 403
