"""RAPI against a real masterd over HTTPS: ``?dry-run=1`` on every write
resource changes nothing (issue 8, finding 3), malformed requests get 400/413
with Ganeti's error body and never a 5xx (finding 4), and a property-based
fuzz test of every write resource (no 5xx; a refused request changes
nothing)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from corral import constants as C
from corral.config import db
from corral.rapi.server import MAX_BODY_SIZE

from .cluster_helpers import WRITER, add_write_user, create_body

pytestmark = pytest.mark.integration

INST = "inst1"
NOOP = "noop"


class Rapi:
    """An HTTPS client of the cluster's RAPI with a write user."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
        self.http = httpx.Client(base_url=base, verify=False, timeout=60, auth=WRITER)

    def wait_job(self, job_id: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.http.get(f"/2/jobs/{job_id}").json()
            if job["status"] in C.JOBS_FINALIZED:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish")

    def config_dump(self) -> str:
        """Every stored config object and the serial, read without masterd."""
        uri = f"file:{self.cluster.master_paths.config_db}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            meta = db.read_meta(conn)
            objs = {kind: sorted((r for r in db.iter_rows(conn, kind)),
                                 key=lambda r: json.dumps(r, sort_keys=True))
                    for kind in db.KINDS}
        return json.dumps({"serial": meta[db.META_SERIAL], "objects": objs}, sort_keys=True)

    def node_state(self) -> dict[str, Any]:
        """What a real (non-dry) operation would change on the node: the
        instance's running state and the files of the node's storage, run
        and data directories (databases aside: jobs are recorded there)."""
        paths = self.cluster.master_paths
        files = []
        for top in (paths.root / "srv", paths.run_dir, paths.data_dir, paths.conf_dir):
            for dirpath, _dirs, names in os.walk(top):
                files.extend(str(Path(dirpath, n)) for n in names if ".db" not in n)
        inst = self.http.get(f"/2/instances/{INST}").json()
        return {"oper_state": inst["oper_state"], "files": sorted(files)}


@pytest.fixture(scope="module")
def rapi(module_dev_cluster: Any) -> Iterator[Rapi]:
    cluster = module_dev_cluster(1)
    add_write_user(cluster)
    client = Rapi(cluster)
    job = client.http.post("/2/instances", json=create_body(INST)).json()
    assert client.wait_job(job)["status"] == "success"
    try:
        yield client
    finally:
        client.http.close()


# Every RAPI write resource: (method, path, body).
WRITES: list[tuple[str, str, Any]] = [
    ("PUT", "/2/modify", {"candidate_pool_size": 7, "maintain_node_health": True}),
    ("PUT", "/2/tags?tag=dry", None),
    ("DELETE", "/2/tags?tag=dry", None),
    ("PUT", "/2/nodes/node1/tags?tag=dry", None),
    ("DELETE", "/2/nodes/node1/tags?tag=dry", None),
    ("PUT", f"/2/instances/{INST}/tags?tag=dry", None),
    ("DELETE", f"/2/instances/{INST}/tags?tag=dry", None),
    ("PUT", "/2/nodes/node1/role", "drained"),
    ("POST", "/2/nodes/node1/modify", {"master_candidate": True}),
    ("POST", "/2/instances", create_body("drycreate")),
    ("DELETE", f"/2/instances/{INST}", None),
    ("POST", f"/2/instances/{INST}/reboot", None),
    ("PUT", f"/2/instances/{INST}/shutdown", None),
    ("PUT", f"/2/instances/{INST}/startup", None),
    ("POST", f"/2/instances/{INST}/reinstall", {"os": NOOP, "start": True}),
    ("PUT", f"/2/instances/{INST}/rename", {"new_name": "renamed1", "name_check": False,
                                            "ip_check": False}),
    ("PUT", f"/2/instances/{INST}/modify", {"beparams": {"maxmem": 192, "minmem": 192}}),
    ("PUT", f"/2/instances/{INST}/activate-disks", None),
    ("PUT", f"/2/instances/{INST}/deactivate-disks", None),
    ("POST", f"/2/instances/{INST}/disk/0/grow", {"amount": 16}),
    ("PUT", f"/2/instances/{INST}/prepare-export?mode=local", None),
    ("PUT", f"/2/instances/{INST}/export", {"mode": "local", "destination": "node1"}),
    ("DELETE", "/2/jobs/1", None),
    ("PUT", "/2/redistribute-config", None),
    ("POST", f"/2/instances/{INST}/recreate-disks", {"disks": [0]}),
    ("POST", "/2/instances-multi-alloc", {"instances": [create_body("drymulti")]}),
    ("PUT", f"/2/instances/{INST}/migrate", {"mode": "live", "target_node": "node1"}),
    ("PUT", f"/2/instances/{INST}/failover", {"target_node": "node1"}),
    ("POST", "/2/nodes/node1/evacuate", {"mode": "primary-only", "remote_node": "node1"}),
    ("POST", "/2/nodes/node1/migrate", {"mode": "live"}),
    ("POST", "/2/filters", {"action": "REJECT"}),
    ("PUT", "/2/filters/dry-rule", {"action": "PAUSE"}),
    ("DELETE", "/2/filters/dry-rule", None),
]
# Filter rule changes bypass the job queue: a dry run answers null.
NO_JOB = ("/2/jobs/", "/2/filters")


def _with_arg(path: str, arg: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}{arg}"


@pytest.mark.parametrize("method,path,body", WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_dry_run_changes_nothing(rapi: Rapi, method: str, path: str, body: Any) -> None:
    config, node = rapi.config_dump(), rapi.node_state()
    resp = rapi.http.request(method, _with_arg(path, "dry-run=1"), json=body)
    assert resp.status_code in (200, 400, 404), resp.text
    if resp.status_code == 200 and path.startswith("/2/filters"):
        assert resp.json() is None
    elif resp.status_code == 200 and not path.startswith("/2/jobs/"):
        job = rapi.wait_job(resp.json())
        assert all(op["dry_run"] for op in job["ops"]), job["ops"]
        if job["status"] != "success":
            # Refused in the prerequisites (e.g. grow of a diskless
            # instance): a prerequisite error, nothing half-done.
            errs = [r for s, r in zip(job["opstatus"], job["opresult"]) if s == "error"]
            assert errs and errs[0][0] == "OpPrereqError", job
    assert rapi.config_dump() == config
    assert rapi.node_state() == node


def test_dry_run_in_body_conflicts_with_query(rapi: Rapi) -> None:
    resp = rapi.http.put("/2/modify?dry-run=1", json={"dry_run": False})
    assert resp.status_code == 400 and "static" in resp.json()["message"]


def test_cluster_modify_without_dry_run_changes_config(rapi: Rapi) -> None:
    """The control: the same request without dry-run does change the config."""
    before = rapi.config_dump()
    job = rapi.http.put("/2/modify", json={"candidate_pool_size": 9}).json()
    assert rapi.wait_job(job)["status"] == "success"
    assert rapi.config_dump() != before
    assert rapi.http.get("/2/info").json()["candidate_pool_size"] == 9


def test_unknown_instance_is_404_with_shared_live_data(rapi: Rapi) -> None:
    """Live data is gathered for all instances at once; unknown names are
    still refused by the query."""
    assert rapi.http.get(f"/2/instances/{INST}").json()["name"] == INST
    resp = rapi.http.get("/2/instances/nosuch")
    assert resp.status_code == 404 and resp.json()["code"] == 404


def test_job_cancel_dry_run_keeps_job(rapi: Rapi) -> None:
    job = rapi.http.put("/2/tags?tag=later", json=None).json()
    rapi.wait_job(job)
    resp = rapi.http.delete(f"/2/jobs/{job}?dry-run=1")
    assert resp.status_code == 200 and resp.json()[0] is False
    assert rapi.http.get(f"/2/jobs/{job}").json()["status"] == "success"


# -- malformed requests (finding 4) ------------------------------------------------------

def _raw(rapi: Rapi, method: str, path: str, content: bytes,
         headers: dict[str, str] | None = None) -> httpx.Response:
    return rapi.http.request(method, path, content=content,
                             headers={"Content-Type": "application/json", **(headers or {})})


MALFORMED: list[tuple[str, str, bytes, int]] = [
    ("PUT", "/2/modify", b"[" * 100000 + b"]" * 100000, 400),
    ("PUT", "/2/modify", b'{"a":' * 40 + b"1" + b"}" * 40, 400),
    ("PUT", "/2/modify", b'{"candidate_pool_size": NaN}', 400),
    ("PUT", "/2/modify", b'{"candidate_pool_size": Infinity}', 400),
    ("PUT", "/2/modify", b'{"candidate_pool_size": -Infinity}', 400),
    ("PUT", "/2/modify", b'{"candidate_pool_size": 1e999}', 400),
    ("PUT", "/2/modify", b'{"candidate_pool_size": 18446744073709551616}', 400),
    ("PUT", "/2/modify", b'{"candidate_pool_size": 9' + b"9" * 5000 + b"}", 400),
    ("PUT", "/2/modify", b'{"x": "\xff\xfe"}', 400),
    ("PUT", "/2/modify", b"{", 400),
    ("DELETE", "/2/jobs/18446744073709551616", b"", 400),
    ("DELETE", "/2/jobs/9223372036854775808", b"", 400),
    ("POST", f"/2/instances/{INST}/disk/99999999999999999999999/grow", b'{"amount": 1}',
     400),
    ("GET", "/2/instances?bulk=abc", b"", 400),
    ("GET", "/2/instances?bulk=99999999999999999999999", b"", 400),
    ("GET", "/2/instances?bulk=%ff", b"", 400),
    ("PUT", "/2/tags?tag=%ff%fe", b"", 400),
]


@pytest.mark.parametrize("method,path,content,status", MALFORMED,
                         ids=[f"{m} {p[:40]} {c[:20]!r}" for m, p, c, _ in MALFORMED])
def test_malformed_request_is_refused(rapi: Rapi, method: str, path: str, content: bytes,
                                      status: int) -> None:
    config = rapi.config_dump()
    resp = _raw(rapi, method, path, content)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"code", "message", "explain"} and body["code"] == status
    assert rapi.config_dump() == config


def test_body_size_limit(rapi: Rapi) -> None:
    config = rapi.config_dump()
    big = b'{"comment": "' + b"x" * MAX_BODY_SIZE + b'"}'
    resp = _raw(rapi, "PUT", "/2/modify", big)
    assert resp.status_code == 413 and resp.json()["code"] == 413

    def chunks() -> Iterator[bytes]:      # no Content-Length: checked while reading
        for _ in range(MAX_BODY_SIZE // 65536 + 2):
            yield b" " * 65536

    resp = rapi.http.put("/2/modify", content=chunks(),
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert rapi.config_dump() == config


def test_access_log(rapi: Rapi) -> None:
    rapi.http.get("/2/info?reason=secretish")
    rapi.http.put("/2/modify", json={"bogus": 1})
    deadline = time.monotonic() + 10     # a writer thread writes the lines
    paths = rapi.cluster.master_paths
    while True:
        # The RAPI daemon's log (Ganeti: rapi-access.log beside rapi-daemon.log).
        log = paths.daemon_log("rapi").read_text()
        lines = [line for line in log.splitlines() if "corral.rapi.access" in line]
        if any('"PUT /2/modify" 400' in line for line in lines) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert any('writer "GET /2/info" 200' in line for line in lines), lines[-5:]
    assert any('writer "PUT /2/modify" 400' in line for line in lines), lines[-5:]
    assert "secretish" not in log and "bogus" not in "\n".join(lines)
    masterd_log = paths.daemon_log("masterd").read_text()
    assert "uvicorn.access" not in log and "uvicorn.access" not in masterd_log


# -- property-based fuzzing --------------------------------------------------------------

# Every write resource with the fields its opcode takes (valid-ish names).
FUZZ_TARGETS: list[tuple[str, str, list[str]]] = [
    ("PUT", "/2/modify", ["candidate_pool_size", "max_running_jobs", "beparams", "hvparams",
                          "file_storage_dir", "mac_prefix", "maintain_node_health"]),
    ("PUT", "/2/tags", []), ("DELETE", "/2/tags", []),
    ("PUT", "/2/nodes/node1/tags", []), ("DELETE", "/2/nodes/node1/tags", []),
    ("PUT", f"/2/instances/{INST}/tags", []), ("DELETE", f"/2/instances/{INST}/tags", []),
    ("PUT", "/2/nodes/node1/role", []),
    ("POST", "/2/nodes/node1/modify", ["master_candidate", "offline", "drained",
                                       "ndparams", "powered"]),
    ("POST", "/2/instances", ["__version__", "name", "os", "mode", "disk_template", "disks",
                              "nics", "pnode", "beparams", "hvparams", "osparams",
                              "file_storage_dir", "name_check", "ip_check"]),
    ("DELETE", f"/2/instances/{INST}", ["shutdown_timeout"]),
    ("POST", f"/2/instances/{INST}/reboot", ["shutdown_timeout", "reboot_type"]),
    ("PUT", f"/2/instances/{INST}/shutdown", ["timeout", "force"]),
    ("PUT", f"/2/instances/{INST}/startup", []),
    ("POST", f"/2/instances/{INST}/reinstall", ["os", "start", "osparams"]),
    ("PUT", f"/2/instances/{INST}/rename", ["new_name", "name_check", "ip_check"]),
    ("PUT", f"/2/instances/{INST}/modify", ["beparams", "hvparams", "disks", "nics",
                                            "custom_beparams", "os_name"]),
    ("PUT", f"/2/instances/{INST}/activate-disks", []),
    ("PUT", f"/2/instances/{INST}/deactivate-disks", []),
    ("POST", f"/2/instances/{INST}/disk/0/grow", ["amount", "absolute", "wait_for_sync"]),
    ("PUT", f"/2/instances/{INST}/prepare-export", []),
    ("PUT", f"/2/instances/{INST}/export", ["mode", "destination", "shutdown",
                                            "remove_instance"]),
    ("DELETE", "/2/jobs/1", []),
    ("PUT", "/2/redistribute-config", []),
    ("POST", f"/2/instances/{INST}/recreate-disks", ["disks", "nodes", "iallocator"]),
    ("POST", "/2/instances-multi-alloc", ["instances", "iallocator",
                                          "opportunistic_locking"]),
    ("PUT", f"/2/instances/{INST}/migrate", ["mode", "cleanup", "target_node",
                                             "allow_failover"]),
    ("PUT", f"/2/instances/{INST}/failover", ["target_node", "ignore_consistency",
                                              "shutdown_timeout"]),
    ("POST", "/2/nodes/node1/evacuate", ["mode", "remote_node", "iallocator"]),
    ("POST", "/2/nodes/node1/migrate", ["mode", "target_node", "live"]),
    ("POST", "/2/filters", ["priority", "predicates", "action", "reason"]),
    ("PUT", "/2/filters/fuzz-rule", ["priority", "predicates", "action", "reason"]),
    ("DELETE", "/2/filters/fuzz-rule", []),
]

HOSTILE_STRINGS = ["", ".", "..", "../../etc", "/etc/passwd", "a/b", "$(id)", "x\ny",
                   "\x00", "ü" * 3, "\ud7ff", "A" * 300, "node1", INST, NOOP, "diskless",
                   "%s%n", "' OR 1=1 --"]
INT_EDGES = [0, -1, 1, 2 ** 31, 2 ** 63 - 1, -(2 ** 63), 2 ** 63, 2 ** 64, 10 ** 30]

scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(INT_EDGES), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@st.composite
def raw_bodies(draw: st.DrawFn, fields: list[str]) -> bytes:
    """Encoded bodies: valid-ish field dicts with hostile values, or hostile text."""
    kind = draw(st.integers(0, 5))
    if kind <= 2 and fields:
        body = draw(st.dictionaries(st.sampled_from(fields), values, max_size=5))
        if draw(st.booleans()):
            body["dry_run"] = draw(scalars)
        return json.dumps(body).encode()
    if kind == 3:
        return json.dumps(draw(values)).encode()
    if kind == 4:
        special = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999",
                                        "18446744073709551616", "-9223372036854775809"]))
        key = draw(st.sampled_from(fields or ["x"]))
        return f'{{"{key}": {special}}}'.encode()
    depth = draw(st.integers(30, 3000))
    return b"[" * depth + b"]" * depth


QUERY_ARGS = st.lists(st.tuples(
    st.sampled_from(["dry-run", "tag", "force", "reason", "bulk", "no_remember", "type",
                     "mode", "static", "ignore_size", "auto-promote"]),
    st.one_of(st.sampled_from(["0", "1", "abc", "", "99999999999999999999999", "%ff",
                               "-1", "1" * 40]), st.text(max_size=10))), max_size=4)


def _query(args: list[tuple[str, str]], dry: bool) -> str:
    from urllib.parse import quote

    # "%ff" is sent as is (a non-UTF-8 escape); everything else is quoted.
    parts = [f"{k}={v if v == '%ff' else quote(v)}" for k, v in args
             if k != "dry-run"]
    if dry:
        parts.append("dry-run=1")
    return "&".join(parts)


FUZZ_EXAMPLES = 2100


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_write_resources(rapi: Rapi, data: st.DataObject) -> None:
    """No 5xx; a refused request leaves the config as it was; an accepted
    one is a dry run (the query always asks for one, except for the few
    requests that hypothesis sends without ``dry-run``: those must be
    refused or be harmless tag changes)."""
    method, path, fields = data.draw(st.sampled_from(FUZZ_TARGETS))
    body = data.draw(raw_bodies(fields))
    args = data.draw(QUERY_ARGS)
    query = _query(args, dry=True)
    before = rapi.config_dump()
    resp = _raw(rapi, method, f"{path}?{query}", body)
    assert resp.status_code < 500, (method, path, query, body[:200], resp.text)
    event(f"HTTP {resp.status_code}")
    if resp.status_code >= 400:
        assert set(resp.json()) == {"code", "message", "explain"}
        assert rapi.config_dump() == before, (method, path, body[:200])
    elif path.startswith(NO_JOB):
        assert rapi.config_dump() == before
    else:
        job = rapi.wait_job(resp.json())
        assert all(op["dry_run"] for op in job["ops"])
        assert rapi.config_dump() == before, (method, path, body[:200], job)
