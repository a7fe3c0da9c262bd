"""noded end to end: unjoined mode, the join protocol, mutual TLS, dispatch
conventions, leaving the cluster. Real daemons on 127.0.1.x, real TLS."""

from __future__ import annotations

import json
import os
import ssl
import stat
import time
from pathlib import Path

import httpx
import pytest

from corral import constants as C
from corral import crypto, errors
from corral.noded import state as noded_state
from corral.noded.join import join_node
from corral.paths import Paths
from corral.rpc import NodeClient

from .nodedproc import free_port, make_master, preinstall_joined

pytestmark = pytest.mark.integration

ADDR = "127.0.1.21"
ADDR2 = "127.0.1.22"


def _insecure() -> httpx.Client:
    return httpx.Client(verify=crypto.client_ssl_context(None), trust_env=False, timeout=10)


def _join(master: Paths, node, token_store, name: str = "node1.test",
          cluster: str = "cluster.test", timeout: float = 20) -> None:
    ca_cert, ca_key = crypto.read_cluster_ca(master)
    join_node(master, node.addr, node.port, token_store, name, "uuid-node1", cluster, ca_cert,
              ca_key, {"cluster_name": cluster, "master_node": "master.test"},
              timeout=timeout)


# -- unjoined mode --------------------------------------------------------------------------

def test_unjoined_serves_only_join(tmp_path: Path, noded, master: Paths) -> None:
    store = crypto.JoinTokenStore(master)
    token = store.create()
    token_id, secret = crypto.parse_join_token(token)
    node = noded(tmp_path / "n1", ADDR, token=token)
    base = f"https://{ADDR}:{node.port}"
    with _insecure() as client:
        for proc in ("version", "node_info", "upload_file_single", "node_leave_cluster"):
            resp = client.post(f"{base}/{proc}", content=b"[]")
            assert resp.status_code == 403
            assert "not joined" in resp.json()["detail"]
        assert client.get(f"{base}/docs").status_code == 403
        assert client.get(f"{base}/openapi.json").status_code == 403
        info = client.get(f"{base}/join_info").json()
    assert info["token_id"] == token_id
    assert info["protocol_version"] == C.PROTOCOL_VERSION
    # The proof is bound to the certificate the node presents.
    fp = crypto.fingerprint(ssl.get_server_certificate((ADDR, node.port)))
    assert info["proof"] == crypto.join_node_proof(secret, fp)
    # The secret is neither logged nor readable by others.
    assert secret not in node.paths.daemon_log("noded").read_text()
    assert stat.S_IMODE(os.stat(node.paths.noded_state).st_mode) == 0o600


def test_join_with_wrong_token_is_refused(tmp_path: Path, noded, master: Paths) -> None:
    store = crypto.JoinTokenStore(master)
    token = store.create()
    token_id, secret = crypto.parse_join_token(token)
    node = noded(tmp_path / "n1", ADDR, token=token)
    fp = crypto.fingerprint(ssl.get_server_certificate((ADDR, node.port)))
    ca_cert, ca_key = crypto.read_cluster_ca(master)
    certs = crypto.issue_node_certs(ca_cert, ca_key, "node1.test")
    body = {"token_id": token_id, "cluster_name": "cluster.test", "node_name": "node1.test",
            "node_uuid": "u-1", "ca_cert_pem": ca_cert, "server_pem": certs.server_pem,
            "client_pem": certs.client_pem, "ssconf": {}}
    url = f"https://{ADDR}:{node.port}/join"
    with _insecure() as client:
        wrong_secret = dict(body, hmac=crypto.join_hmac("x" * 43, fp, "node1.test",
                                                        "cluster.test"))
        assert client.post(url, json=wrong_secret).status_code == 403
        wrong_fp = dict(body, hmac=crypto.join_hmac(secret, "00" * 32, "node1.test",
                                                    "cluster.test"))
        assert client.post(url, json=wrong_fp).status_code == 403
        # An HMAC for another node name does not work for this one.
        other_name = dict(body, hmac=crypto.join_hmac(secret, fp, "node2.test",
                                                      "cluster.test"))
        assert client.post(url, json=other_name).status_code == 403
        wrong_id = dict(body, token_id="0badc0de",
                        hmac=crypto.join_hmac(secret, fp, "node1.test", "cluster.test"))
        assert client.post(url, json=wrong_id).status_code == 403
        assert client.post(url, content=b"{not json").status_code == 400
        assert client.post(url, json={"token_id": token_id}).status_code == 400
    assert not crypto.node_certs_present(node.paths)
    assert secret not in node.paths.daemon_log("noded").read_text()
    # The token is still usable after failed attempts.
    _join(master, node, store)
    assert crypto.node_certs_present(node.paths)


def test_join_then_mutual_tls(tmp_path: Path, noded, master: Paths) -> None:
    store = crypto.JoinTokenStore(master)
    token = store.create()
    token_id, _ = crypto.parse_join_token(token)
    node = noded(tmp_path / "n1", ADDR, token=token)
    _join(master, node, store)

    # Token consumed on both sides; node state and files written.
    assert store.get_secret(token_id) is None
    st = noded_state.load_state(node.paths)
    assert (st.joined, st.node_name, st.cluster_name, st.join_token) == \
        (True, "node1.test", "cluster.test", None)
    assert node.paths.ssconf("cluster_name").read_text() == "cluster.test\n"
    # The allowed file storage paths are the node's own defaults, not the master's.
    assert node.paths.file_storage_paths.read_text() == \
        "/srv/corral/file-storage\n/srv/corral/shared-file-storage\n"
    for path in (crypto.node_server_cert_path(node.paths), node.paths.client_cert,
                 crypto.ca_cert_path(node.paths)):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not node.paths.cluster_cert.exists()    # the CA key stays on the master

    url = f"https://{ADDR}:{node.port}/version"
    # The cluster client certificate works.
    with NodeClient(ADDR, node.port, master, name="node1.test") as client:
        res = client.call("version")
    assert res.payload == C.PROTOCOL_VERSION and res.fail_msg is None
    # Without a client certificate: TLS failure, no HTTP answer.
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        with _insecure() as client:
            client.post(url, content=b"[]")
    # A client certificate from another CA: refused as well.
    other = make_master(tmp_path / "other", cluster_name="other.test")
    other_ctx = crypto.client_ssl_context(None, other.client_cert)
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        with httpx.Client(verify=other_ctx, trust_env=False, timeout=10) as client:
            client.post(url, content=b"[]")
    # A certificate of the cluster CA but for servers only: refused (EKU).
    server_cert_ctx = crypto.client_ssl_context(None, crypto.node_server_cert_path(master))
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        with httpx.Client(verify=server_cert_ctx, trust_env=False, timeout=10) as client:
            client.post(url, content=b"[]")
    # The master does not accept a node whose certificate is from another CA.
    with NodeClient(ADDR, node.port, other, name="node1.test") as client:
        res = client.call("version")
    assert res.fail_msg and "node1.test" in res.fail_msg and "certificate verify failed" \
        in res.fail_msg


def test_join_failures_on_master_side(tmp_path: Path, noded, master: Paths) -> None:
    store = crypto.JoinTokenStore(master)
    # Nothing listens.
    class _Gone:
        addr, port = ADDR2, free_port(ADDR2)
    with pytest.raises(errors.OpPrereqError, match="Cannot reach") as exc:
        _join(master, _Gone, store, timeout=5)
    assert exc.value.ecode == errors.ECODE_ENVIRON
    # A node started without a token.
    plain = noded(tmp_path / "plain", ADDR2)
    with pytest.raises(errors.OpPrereqError, match="without a join token"):
        _join(master, plain, store)
    plain.stop()
    # A node whose token the master does not know.
    other = make_master(tmp_path / "other")
    foreign = noded(tmp_path / "foreign", ADDR, token=crypto.JoinTokenStore(other).create())
    with pytest.raises(errors.OpPrereqError, match="unknown, expired or already used"):
        _join(master, foreign, store)
    foreign.stop()
    # A node that knows the token id but not the secret (or someone in the middle).
    token_id, _ = crypto.parse_join_token(store.create())
    fake = noded(tmp_path / "fake", ADDR, token=f"{token_id}.{'A' * 43}")
    with pytest.raises(errors.OpPrereqError, match="cannot prove"):
        _join(master, fake, store)
    assert not crypto.node_certs_present(fake.paths)
    assert store.get_secret(token_id) is not None     # not consumed by failures


def test_rpc_conventions(tmp_path: Path, noded, master: Paths) -> None:
    node_paths = preinstall_joined(master, tmp_path / "n1", "node1.test")
    node = noded(node_paths.root, ADDR)
    base = f"https://{ADDR}:{node.port}"
    ctx = crypto.client_ssl_context(crypto.load_ca_cert_pem(master), master.client_cert)
    with httpx.Client(verify=ctx, trust_env=False, timeout=10) as client:
        resp = client.get(f"{base}/version")
        assert resp.status_code == 400
        resp = client.post(f"{base}/no_such_procedure", content=b"[]")
        assert resp.status_code == 404
        assert "no_such_procedure" in resp.json()["detail"]
        assert client.post(f"{base}/version", content=b'{"a": 1}').status_code == 400
        assert client.post(f"{base}/version", content=b"[1").status_code == 400
        assert client.post(f"{base}/version", content=b"").json() == [True, C.PROTOCOL_VERSION]
        # Wrong number of arguments: a failed call, not a crash.
        ok, msg = client.post(f"{base}/version", content=b"[1]").json()
        assert ok is False and "takes 0 arguments" in msg
        # RPCFail -> [false, message].
        ok, msg = client.post(f"{base}/bridges_exist", json=[["nosuchbr0"]]).json()
        assert (ok, msg) == (False, "Missing bridges nosuchbr0")
        # Any other exception -> [false, "Error while executing backend function: ..."].
        ok, msg = client.post(f"{base}/node_verify",
                              json=[{"filelist": 5}, "cluster.test", {}]).json()
        assert ok is False and msg.startswith("Error while executing backend function: ")
        # test_delay runs in the thread pool: a parallel call is not blocked.
        ok, _ = client.post(f"{base}/test_delay", json=[0]).json()
        assert ok is True
    assert "Traceback" in node.paths.daemon_log("noded").read_text()


def test_upload_allow_list_over_rpc(tmp_path: Path, noded, master: Paths) -> None:
    node_paths = preinstall_joined(master, tmp_path / "n1", "node1.test")
    node = noded(node_paths.root, ADDR)
    big = os.urandom(4096)
    with NodeClient(ADDR, node.port, master, name="node1.test") as client:
        res = client.call("upload_file_single",
                          ["/var/lib/corral/ssconf_master_node", "master.test\n", 0o644,
                           None, None, None, None])
        assert res.fail_msg is None
        res = client.call("upload_file_single",
                          ["/var/lib/corral/rapi/users", big, 0o600, None, None, 1000, 2000])
        assert res.fail_msg is None
        for bad in ("/etc/passwd", "/var/lib/corral/../../../etc/passwd",
                    "/var/lib/corral/config.db", "/var/lib/corral/ssconf_x/../../x",
                    "var/lib/corral/ca.pem", "/var/lib/corral/noded.pem"):
            res = client.call("upload_file_single", [bad, "x", 0o644, None, None, None, None])
            assert res.fail_msg is not None and "not in the list of files" in res.fail_msg, bad
    ssconf = node_paths.ssconf("master_node")
    assert ssconf.read_text() == "master.test\n"
    assert stat.S_IMODE(ssconf.stat().st_mode) == 0o644
    users = node_paths.rapi_users
    assert users.read_bytes() == big
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert users.stat().st_mtime == 2000
    assert not (node_paths.root / "etc/passwd").exists()
    assert not (node_paths.data_dir / "config.db").exists()
    assert crypto.node_certs_present(node_paths)


def test_hooks_over_rpc_see_only_ganeti_env(tmp_path: Path, noded, master: Paths) -> None:
    node_paths = preinstall_joined(master, tmp_path / "n1", "node1.test")
    hook_dir = node_paths.hooks_dir / "instance-start-post.d"
    hook_dir.mkdir(parents=True)
    script = hook_dir / "10-env"
    script.write_text("#!/bin/sh\nenv\n")
    script.chmod(0o755)
    node = noded(node_paths.root, ADDR)
    env = {"GANETI_HOOKS_VERSION": "2", "GANETI_INSTANCE_NAME": "inst1"}
    with NodeClient(ADDR, node.port, master, name="node1.test") as client:
        res = client.call("hooks_runner", ["instance-start", "post", env])
        bad = client.call("hooks_runner", ["instance-start", "post", {"LD_PRELOAD": "/x"}])
    assert res.fail_msg is None
    [[name, status, output]] = res.payload
    assert (name, status) == ("instance-start-post.d/10-env", C.HKR_SUCCESS)
    keys = {line.split("=", 1)[0] for line in output.splitlines()}
    keys -= {"PWD", "SHLVL", "_"}      # set by the shell itself
    assert keys == {"PATH", "GANETI_HOOKS_VERSION", "GANETI_INSTANCE_NAME"}
    assert "PATH=/sbin:/bin:/usr/sbin:/usr/bin" in output.splitlines()
    assert bad.fail_msg is not None and "LD_PRELOAD" in bad.fail_msg


def test_leave_cluster_returns_to_unjoined(tmp_path: Path, noded, master: Paths) -> None:
    store = crypto.JoinTokenStore(master)
    token = store.create()
    token_id, secret = crypto.parse_join_token(token)
    node = noded(tmp_path / "n1", ADDR, token=token)
    _join(master, node, store)
    with NodeClient(ADDR, node.port, master, name="node1.test") as client:
        res = client.call("node_leave_cluster", [False])
        assert res.fail_msg is None and res.payload == "Node left the cluster"
        # Refused at once (503 while switching), then the unjoined server's
        # self-signed certificate fails verification.
        res = client.call("version")
        assert res.fail_msg is not None
        deadline = time.monotonic() + 10
        while "certificate verify failed" not in res.fail_msg and time.monotonic() < deadline:
            assert "503" in res.fail_msg
            time.sleep(0.05)
            client.close()
            res = client.call("version")
    assert "certificate verify failed" in res.fail_msg
    assert not crypto.node_certs_present(node.paths)
    assert not node.paths.noded_state.exists()
    assert not node.paths.ssconf("cluster_name").exists()
    base = f"https://{ADDR}:{node.port}"
    with _insecure() as client:
        info = client.get(f"{base}/join_info").json()
        assert info["token_id"] is None
        fp = crypto.fingerprint(ssl.get_server_certificate((ADDR, node.port)))
        ca_cert, ca_key = crypto.read_cluster_ca(master)
        certs = crypto.issue_node_certs(ca_cert, ca_key, "node1.test")
        replay = {"token_id": token_id,
                  "hmac": crypto.join_hmac(secret, fp, "node1.test", "cluster.test"),
                  "cluster_name": "cluster.test", "node_name": "node1.test",
                  "node_uuid": "u-1", "ca_cert_pem": ca_cert, "server_pem": certs.server_pem,
                  "client_pem": certs.client_pem}
        assert client.post(f"{base}/join", json=replay).status_code == 403
    # Restarted with the used token: the master refuses it (consumed).
    node.stop()
    again = noded(node.paths.root, ADDR, token=token, port=node.port)
    with pytest.raises(errors.OpPrereqError, match="already used"):
        _join(master, again, store)


def test_sigterm_pid_file_and_single_instance(tmp_path: Path, noded, master: Paths) -> None:
    node_paths = preinstall_joined(master, tmp_path / "n1", "node1.test")
    node = noded(node_paths.root, ADDR)
    pid_file = node_paths.pid_file("noded")
    assert int(pid_file.read_text()) == node.proc.pid
    # A second noded for the same root refuses to start.
    import subprocess
    import sys
    second = subprocess.run([sys.executable, "-m", "corral.noded.main", "--root",
                             str(node_paths.root), "--bind", ADDR2, "--port",
                             str(free_port(ADDR2))], capture_output=True, text=True, timeout=30)
    assert second.returncode == 1 and "already running" in second.stderr
    # An open keep-alive connection does not delay a clean stop.
    client = NodeClient(ADDR, node.port, master)
    assert client.call("version").fail_msg is None
    assert node.stop(timeout=5) == 0
    client.close()
    assert not pid_file.exists()
    assert "noded stopped" in node_paths.daemon_log("noded").read_text()


def test_joined_node_ignores_new_token(tmp_path: Path, noded, master: Paths) -> None:
    node_paths = preinstall_joined(master, tmp_path / "n1", "node1.test")
    node = noded(node_paths.root, ADDR, token=crypto.JoinTokenStore(master).create())
    with NodeClient(ADDR, node.port, master) as client:
        assert client.call("version").payload == C.PROTOCOL_VERSION
    assert noded_state.load_state(node_paths).join_token is None
    assert json.loads(node_paths.noded_state.read_text())["joined"] is True


def test_failed_install_keeps_node_unjoined_with_token(tmp_path: Path, noded,
                                                       master: Paths) -> None:
    store = crypto.JoinTokenStore(master)
    token = store.create()
    node = noded(tmp_path / "n1", ADDR, token=token)
    blocker = node.paths.ssconf("cluster_name")
    (blocker / "x").mkdir(parents=True)          # the ssconf file cannot be written
    with pytest.raises(errors.OpPrereqError, match="refused to join: Cannot install"):
        _join(master, node, store)
    assert not crypto.node_certs_present(node.paths)
    assert noded_state.load_state(node.paths).join_token == token
    (blocker / "x").rmdir()
    blocker.rmdir()
    _join(master, node, store)
    assert crypto.node_certs_present(node.paths)
