"""Access rules, content types and error shapes of the RAPI server."""

from __future__ import annotations

import base64
import json
import warnings

import pytest

from corral.paths import Paths
from corral.rapi.users import ha1

from .conftest import READER, WRITER, FakeMaster, basic

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _assert_error(resp, code: int) -> dict:
    assert resp.status_code == code, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"code", "message", "explain"}
    assert body["code"] == code
    return body


def test_anonymous_get_allowed(client: TestClient) -> None:
    assert client.get("/2/nodes").status_code == 200
    assert client.get("/2/info").status_code == 200
    assert client.get("/2/jobs").status_code == 200


def test_anonymous_write_is_401_with_realm(client: TestClient, master: FakeMaster) -> None:
    resp = client.put("/2/instances/inst1/startup")
    _assert_error(resp, 401)
    assert resp.headers["www-authenticate"] == 'Basic realm="Ganeti Remote API"'
    assert master.jobs == {}


def test_read_only_user_cannot_write(client: TestClient, master: FakeMaster) -> None:
    resp = client.put("/2/instances/inst1/startup", headers=READER)
    _assert_error(resp, 403)
    assert master.jobs == {}


def test_user_without_known_options_cannot_write(client: TestClient) -> None:
    _assert_error(client.put("/2/instances/inst1/startup", headers=basic("odd", "oddpw")),
                  403)


def test_write_user_can_write(client: TestClient, master: FakeMaster) -> None:
    resp = client.put("/2/instances/inst1/startup", headers=WRITER)
    assert resp.status_code == 200, resp.text
    assert resp.json() == 100
    assert master.last_ops()[0]["OP_ID"] == "OP_INSTANCE_STARTUP"


def test_ha1_user_can_write(client: TestClient) -> None:
    resp = client.put("/2/instances/inst1/startup", headers=basic("hauser", "hapw"))
    assert resp.status_code == 200, resp.text


def test_wrong_password_401_even_on_anonymous_get(client: TestClient) -> None:
    _assert_error(client.get("/2/nodes", headers=basic("writer", "nope")), 401)
    _assert_error(client.get("/2/nodes", headers=basic("nobody", "x")), 401)


def test_other_schemes_401_basic_without_credentials_400(client: TestClient) -> None:
    _assert_error(client.get("/2/nodes", headers={"Authorization": "Digest abc"}), 401)
    _assert_error(client.get("/2/nodes", headers={"Authorization": "Basic"}), 400)
    _assert_error(client.get("/2/nodes", headers={"Authorization": "Basic !!!"}), 401)
    no_colon = base64.b64encode(b"writer").decode()
    _assert_error(client.get("/2/nodes", headers={"Authorization": f"Basic {no_colon}"}),
                  401)


def test_password_with_colon(paths: Paths, master: FakeMaster) -> None:
    from corral.rapi.server import create_app

    paths.rapi_users.write_text("colon a:b:c write\n")
    with TestClient(create_app(master, paths)) as c:
        assert c.put("/2/instances/inst1/startup", headers=basic("colon", "a:b:c")
                     ).status_code == 200


def test_wait_needs_write(client: TestClient, master: FakeMaster) -> None:
    job = master.submit_job([{"OP_ID": "OP_TEST_DELAY", "duration": 0}])
    body = {"fields": ["status"]}
    _assert_error(client.request("GET", f"/2/jobs/{job}/wait", json=body), 401)
    _assert_error(client.request("GET", f"/2/jobs/{job}/wait", json=body, headers=READER),
                  403)
    resp = client.request("GET", f"/2/jobs/{job}/wait", json=body, headers=WRITER)
    assert resp.status_code == 200
    assert resp.json() == {"job_info": ["success"], "log_entries": [[1, [1, 0], "message",
                                                                     "hello"]]}


def test_query_needs_read_or_write(client: TestClient) -> None:
    _assert_error(client.get("/2/query/node?fields=name"), 401)
    assert client.get("/2/query/node?fields=name", headers=READER).status_code == 200
    assert client.get("/2/query/node?fields=name", headers=WRITER).status_code == 200
    # A read-only user may PUT a query.
    resp = client.put("/2/query/node", json={"fields": ["name"]}, headers=READER)
    assert resp.status_code == 200
    # Query fields are anonymous.
    assert client.get("/2/query/node/fields").status_code == 200


def test_require_authentication(master: FakeMaster, paths: Paths) -> None:
    from corral.rapi.server import create_app

    with TestClient(create_app(master, paths, require_authentication=True)) as c:
        _assert_error(c.get("/2/nodes"), 401)
        assert c.get("/2/nodes", headers=READER).status_code == 200


def test_users_file_reloaded(client: TestClient, paths: Paths) -> None:
    newbie = basic("newbie", "pw")
    _assert_error(client.put("/2/instances/inst1/startup", headers=newbie), 401)
    paths.rapi_users.write_text(f"newbie {{HA1}}{ha1('newbie', 'pw')} write\n")
    import os
    st = paths.rapi_users.stat()
    os.utime(paths.rapi_users, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert client.put("/2/instances/inst1/startup", headers=newbie).status_code == 200
    _assert_error(client.put("/2/instances/inst1/startup", headers=WRITER), 401)


def test_missing_users_file_means_no_users(master: FakeMaster, tmp_path) -> None:
    from corral.rapi.server import create_app

    with TestClient(create_app(master, Paths(tmp_path))) as c:
        _assert_error(c.put("/2/instances/inst1/startup", headers=WRITER), 401)
        assert c.get("/2/nodes").status_code == 200


def test_unknown_uri_404_and_method_501(client: TestClient) -> None:
    body = _assert_error(client.get("/2/nothing"), 404)
    assert body["message"] == "Not Found"
    _assert_error(client.get("/2/instances/bad name"), 404)
    _assert_error(client.post("/version", headers=WRITER), 501)
    _assert_error(client.delete("/2/info", headers=WRITER), 501)
    _assert_error(client.put("/2/nodes", headers=WRITER), 501)
    # 501 comes before authentication, as in Ganeti.
    _assert_error(client.post("/version"), 501)


def test_body_content_type_and_json(client: TestClient, master: FakeMaster) -> None:
    resp = client.put("/2/instances/inst1/rename", content=b"new_name=x", headers={
        **WRITER, "Content-Type": "text/plain"})
    _assert_error(resp, 415)
    resp = client.put("/2/instances/inst1/rename", content=b"{not json", headers={
        **WRITER, "Content-Type": "application/json"})
    body = _assert_error(resp, 400)
    assert "JSON" in body["message"]
    # A body without a content type is taken as JSON (Ganeti is lenient).
    resp = client.put("/2/instances/inst1/rename", content=json.dumps({"new_name": "x"}),
                      headers=WRITER)
    assert resp.status_code == 200, resp.text
    # Content type matching ignores case and parameters.
    resp = client.put("/2/instances/inst1/rename", content=json.dumps({"new_name": "y"}),
                      headers={**WRITER, "Content-Type": "Application/JSON; charset=utf-8"})
    assert resp.status_code == 200, resp.text
    assert master.last_ops()[0]["new_name"] == "y"


@pytest.mark.parametrize("query", ["bulk=yes", "bulk=true", "bulk="])
def test_bool_args_parsed_with_int(client: TestClient, query: str) -> None:
    resp = client.get(f"/2/nodes?{query}")
    if query == "bulk=":
        # Blank values are dropped, like parse_qs does in Ganeti.
        assert resp.status_code == 200
        assert resp.json()[0] == {"id": "node1", "uri": "/2/nodes/node1"}
    else:
        body = _assert_error(resp, 400)
        assert "bulk" in body["message"]


def test_queue_full_and_drained_503(client: TestClient, master: FakeMaster) -> None:
    master.full = True
    _assert_error(client.put("/2/instances/inst1/startup", headers=WRITER), 503)
    master.full = False
    master.drained = True
    body = _assert_error(client.put("/2/instances/inst1/startup", headers=WRITER), 503)
    assert "drained" in body["message"]


def test_internal_error_is_500_without_details(client: TestClient,
                                               master: FakeMaster) -> None:
    def boom(*_a, **_k):
        raise RuntimeError("secret internals")
    master.query_cluster_info = boom  # type: ignore[method-assign]
    body = _assert_error(client.get("/2/info"), 500)
    assert "secret" not in body["message"]
