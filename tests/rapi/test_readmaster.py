"""The RAPI daemon's master (reads served by the RAPI processes, writes by
masterd) against a real cluster: read-your-writes across RAPI processes,
errors of forwarded calls, reads while masterd's client API is away."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from corral import constants as C
from corral import daemons

from .cluster_helpers import WRITER, add_write_user, create_body

pytestmark = pytest.mark.integration

INST = "ryw1"


class Rapi:
    """RAPI requests, each on a new connection unless ``keep`` (so that
    consecutive requests reach either RAPI process)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.base = f"https://{cluster.master.ip}:{cluster.rapi_port}"

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=self.base, verify=False, timeout=60, auth=WRITER) as http:
            return http.request(method, path, **kw)

    def job_done(self, job_id: Any, timeout: float = 60) -> dict[str, Any]:
        """Poll ``/2/jobs/ID`` (as RAPI clients do) until the job ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.request("GET", f"/2/jobs/{job_id}").json()
            if job["status"] in C.JOBS_FINALIZED:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture(scope="module")
def rapi(module_dev_cluster: Any) -> Iterator[Rapi]:
    cluster = module_dev_cluster(1)
    add_write_user(cluster)
    yield Rapi(cluster)


def test_served_by_rapi_processes_not_masterd(rapi: Rapi) -> None:
    paths = rapi.cluster.master_paths
    assert rapi.request("GET", "/2/info").json()["name"]
    pids = daemons.all_daemon_pids(paths, daemons.RAPI)
    assert len(pids) == 2
    deadline = time.monotonic() + 10    # worker 0's pid file; the access log's writer
    while time.monotonic() < deadline and (
            daemons.daemon_pid(paths, daemons.RAPI) is None or
            '"GET /2/info" 200' not in paths.daemon_log("rapi").read_text()):
        time.sleep(0.1)
    assert daemons.daemon_pid(paths, daemons.RAPI) in pids
    assert '"GET /2/info" 200' in paths.daemon_log("rapi").read_text()
    assert '"GET /2/info"' not in paths.daemon_log("masterd").read_text()


def test_read_your_writes(rapi: Rapi) -> None:
    """Once /2/jobs/ID says success, the next GET shows the change (on any
    RAPI process: every request opens a new connection)."""
    job = rapi.request("POST", "/2/instances", json=create_body(INST)).json()
    assert rapi.job_done(job)["status"] == "success"
    assert rapi.request("GET", f"/2/instances/{INST}").status_code == 200
    for k in range(6):
        maxmem = 130 + k
        job = rapi.request("PUT", f"/2/instances/{INST}/modify",
                           json={"beparams": {"maxmem": maxmem, "minmem": 128}}).json()
        assert rapi.job_done(job)["status"] == "success"
        info = rapi.request("GET", f"/2/instances/{INST}").json()
        assert info["beparams"]["maxmem"] == maxmem
        bulk = rapi.request("GET", "/2/instances?bulk=1").json()
        assert [i["beparams"]["maxmem"] for i in bulk if i["name"] == INST] == [maxmem]
        tag = f"t{k}"
        job = rapi.request("PUT", f"/2/instances/{INST}/tags?tag={tag}").json()
        assert rapi.job_done(job)["status"] == "success"
        assert tag in rapi.request("GET", f"/2/instances/{INST}/tags").json()
    job = rapi.request("DELETE", f"/2/instances/{INST}").json()
    assert rapi.job_done(job)["status"] == "success"
    assert rapi.request("GET", f"/2/instances/{INST}").status_code == 404


def test_forwarded_errors_keep_their_meaning(rapi: Rapi, master_client: Any) -> None:
    with master_client(rapi.cluster) as client:
        client.set_drain_flag(True)
        try:
            resp = rapi.request("POST", "/2/instances", json=create_body("drained1"))
            assert resp.status_code == 503 and "drained" in resp.json()["message"]
        finally:
            client.set_drain_flag(False)
    # Validated again by masterd: an unknown job is masterd's answer.
    assert rapi.request("DELETE", "/2/jobs/999999").json()[0] is False
    locks = rapi.request("GET", "/2/query/lock?fields=name,mode").json()
    assert "data" in locks and [f["name"] for f in locks["fields"]] == ["name", "mode"]


def test_reads_go_on_while_masterd_api_is_away(rapi: Rapi) -> None:
    """Reads do not need masterd; a write without it is 502, not a 5xx crash."""
    sock = rapi.cluster.master_paths.master_socket
    hidden = sock.with_name(sock.name + ".away")
    sock.rename(hidden)
    try:
        assert rapi.request("GET", "/2/instances?bulk=1").status_code == 200
        assert rapi.request("GET", "/2/jobs").status_code == 200
        resp = rapi.request("PUT", "/2/tags?tag=x")
        assert resp.status_code == 502, resp.text
        assert "unreachable" in resp.json()["message"]
    finally:
        hidden.rename(sock)
    job = rapi.request("PUT", "/2/tags?tag=x").json()
    assert rapi.job_done(job)["status"] == "success"
