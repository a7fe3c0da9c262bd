"""What the daemons log (daemon_log.py, jobs/execution.py): each job's start
and end in masterd.log, and none of the libraries' per-request lines."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_masterd_logs_jobs_not_http_requests(shared_cluster: Any, master_client: Any) -> None:
    client = master_client(shared_cluster)
    # on_nodes makes masterd call every node daemon (RPC over httpx).
    ok = client.submit_job([{"OP_ID": "OP_TEST_DELAY", "duration": 0,
                             "on_nodes": [n.name for n in shared_cluster.nodes]}])
    failed = client.submit_job([{"OP_ID": "OP_TEST_DELAY", "duration": 0,
                                 "on_nodes": ["no-such-node.example.com"]}])
    client.wait_job(ok, timeout=60)
    with pytest.raises(Exception):  # noqa: B017 - any error; its text is checked in the log
        client.wait_job(failed, timeout=60)
    text = shared_cluster.master_paths.daemon_log("masterd").read_text()
    assert f"Job {ok} started: TEST_DELAY(0.0)" in text
    assert re.search(rf"Job {ok} ended after \d+\.\d+ s: success\n", text)
    assert re.search(rf"Job {failed} ended after \d+\.\d+ s: error: TEST_DELAY\(0\.0\) error: "
                     r"OpPrereqError: .*no-such-node", text)
    assert "HTTP Request:" not in text
    for node in shared_cluster.nodes:
        noded = node.paths.daemon_log("noded").read_text()
        assert '"POST /' not in noded          # uvicorn's per-request access lines
