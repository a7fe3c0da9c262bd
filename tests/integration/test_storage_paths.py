"""Finding 2 of issue 8: the allowed file storage paths are node-local.

``PUT /2/modify`` with ``file_storage_dir`` used to rewrite every node's
``/etc/corral/file-storage-paths``, so any RAPI writer could widen path
confinement to ``/etc``. Now the cluster setting is checked against each
node's own list (written only by its administrator) and refused when a node
does not allow it; ``gnt-cluster verify`` reports a node whose list lacks the
cluster's storage directories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from corral import errors

pytestmark = pytest.mark.integration

DEFAULT_FS = "/srv/corral/file-storage"


@pytest.fixture(scope="module")
def cluster(module_dev_cluster: Any) -> Any:
    dev = module_dev_cluster(2)
    users = dev.master_paths.rapi_users
    users.parent.mkdir(parents=True, exist_ok=True)
    users.write_text("writer secret2 write\n")
    return dev


@pytest.fixture(scope="module")
def client(cluster: Any) -> Any:
    c = cluster.client()
    yield c
    c.close()


def _allowed_files(cluster: Any) -> dict[str, bytes]:
    return {n.name: n.paths.file_storage_paths.read_bytes() for n in cluster.nodes}


def _cluster_dirs(client: Any) -> tuple[str, str]:
    info = client.query_cluster_info()
    return info["file_storage_dir"], info["shared_file_storage_dir"]


def _put_modify(cluster: Any, body: dict[str, Any]) -> httpx.Response:
    base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
    with httpx.Client(verify=False, timeout=30, auth=("writer", "secret2")) as http:
        return http.put(f"{base}/2/modify", json=body)


def _verify(client: Any) -> tuple[bool, list[str]]:
    result = client.wait_job(client.submit_job([{"OP_ID": "OP_CLUSTER_VERIFY",
                                                  "error_codes": True}]), timeout=120)[0]
    lines: list[str] = []
    ok = True
    for success, job_id in result["jobs"]:
        assert success, job_id
        res = client.wait_job(job_id, feedback_fn=lambda e: lines.append(str(e[2])),
                              timeout=120)
        ok = ok and all(res)
    return ok, lines


def _set_allowed(cluster: Any, node: str, text: str) -> None:
    """What the node's administrator does (a local file edit)."""
    cluster.node(node).paths.file_storage_paths.write_text(text)


def test_rapi_cannot_widen_confinement_to_etc(cluster: Any, client: Any) -> None:
    before_files, before_dirs = _allowed_files(cluster), _cluster_dirs(client)
    for body in ({"file_storage_dir": "/etc"}, {"shared_file_storage_dir": "/etc/corral"},
                 {"file_storage_dir": "/"}, {"file_storage_dir": "/srv/../etc"}):
        r = _put_modify(cluster, body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.json()["code"] == 400
    assert _allowed_files(cluster) == before_files
    assert _cluster_dirs(client) == before_dirs


def test_dir_not_allowed_by_a_node_is_refused(cluster: Any, client: Any) -> None:
    before_dirs = _cluster_dirs(client)
    for n in cluster.nodes:
        (Path(n.root) / "srv/elsewhere").mkdir(parents=True, exist_ok=True)
    # Only node1's administrator allows /srv/elsewhere.
    _set_allowed(cluster, "node1", f"{DEFAULT_FS}\n/srv/elsewhere\n")
    before_files = _allowed_files(cluster)
    r = _put_modify(cluster, {"file_storage_dir": "/srv/elsewhere"})
    assert r.status_code == 200, r.text
    with pytest.raises(errors.OpPrereqError) as exc:
        client.wait_job(r.json(), timeout=120)
    assert exc.value.ecode == errors.ECODE_INVAL
    assert "node2" in str(exc.value) and "/srv/elsewhere" in str(exc.value)
    assert _allowed_files(cluster) == before_files
    assert _cluster_dirs(client) == before_dirs


def test_dir_allowed_by_every_node_is_accepted_without_rewriting(cluster: Any,
                                                                  client: Any) -> None:
    _, shared = _cluster_dirs(client)
    for n in cluster.nodes:
        _set_allowed(cluster, n.name, f"# local policy\n{DEFAULT_FS}\n{shared}\n/srv/elsewhere\n")
    before_files = _allowed_files(cluster)
    r = _put_modify(cluster, {"file_storage_dir": "/srv/elsewhere/"})
    assert r.status_code == 200, r.text
    client.wait_job(r.json(), timeout=120)
    assert _cluster_dirs(client) == ("/srv/elsewhere", shared)
    assert _allowed_files(cluster) == before_files      # byte-identical, comment kept
    ok, lines = _verify(client)
    assert ok, lines
    # Back to the default for the other tests of this module.
    client.wait_job(client.submit_job([{"OP_ID": "OP_CLUSTER_SET_PARAMS",
                                        "file_storage_dir": DEFAULT_FS}]), timeout=120)


def test_verify_reports_a_node_that_does_not_allow_the_cluster_dirs(cluster: Any,
                                                                    client: Any) -> None:
    file_dir, shared = _cluster_dirs(client)
    for n in cluster.nodes:
        _set_allowed(cluster, n.name, f"{file_dir}\n{shared}\n")
    ok, lines = _verify(client)
    assert ok, lines
    _set_allowed(cluster, "node2", f"{shared}\n")
    try:
        ok, lines = _verify(client)
        assert not ok
        bad = [line for line in lines if "ENODEFILESTORAGEPATHS" in line]
        assert bad and all("node2" in line for line in bad), lines
        assert any(file_dir in line for line in bad), bad
    finally:
        _set_allowed(cluster, "node2", f"{file_dir}\n{shared}\n")
    ok, lines = _verify(client)
    assert ok, lines
