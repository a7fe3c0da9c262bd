"""Cluster init and destroy (bootstrap.py) on a real state root."""

from __future__ import annotations

import json
import os
import ssl
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral import bootstrap, crypto, daemons, errors, ipolicy
from corral.config import ConfigStore
from corral.masterd.client import MasterClient
from corral.paths import Paths

pytestmark = pytest.mark.integration


def _tree(root: Path) -> dict[str, str]:
    """Every path below root with its kind (and symlink target)."""
    out = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            out[rel] = f"-> {os.readlink(path)}" if path.is_symlink() else \
                ("dir" if path.is_dir() else "file")
    return out


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _free(ip: str, port: int) -> bool:
    import socket
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


@pytest.fixture
def node_root(short_tmp: Path, loopback_base: Any) -> Any:
    base = loopback_base(1)
    paths = Paths(short_tmp / "node1")
    yield paths, f"{base}.1"
    bootstrap.destroy_cluster(paths)


def _init(paths: Paths, ip: str, **kw: Any) -> None:
    kw.setdefault("master_name", "node1")
    kw.setdefault("enabled_hypervisors", ["fake"])
    bootstrap.init_cluster(paths, "boot.example.com", ip, **kw)


def test_init_creates_files_and_daemons(node_root: Any) -> None:
    paths, ip = node_root
    log: list[Any] = []
    _init(paths, ip, file_storage_dir="/srv/corral/fs", feedback_fn=log.append,
          beparams={"maxmem": "256", "vcpus": 2}, nicparams={"link": "br-test"},
          hvparams={"fake": {"migration_mode": "non-live"}}, candidate_pool_size=3,
          ipolicy={"vcpu-ratio": 2, "std": {"memory-size": 256}})
    for path in (paths.cluster_cert, paths.client_cert, crypto.ca_cert_path(paths),
                 crypto.node_server_cert_path(paths), paths.rapi_cert,
                 paths.cluster_domain_secret, paths.config_db, paths.join_tokens.parent):
        assert path.exists(), path
    for secret in (paths.cluster_cert, paths.client_cert, crypto.node_server_cert_path(paths),
                   paths.rapi_cert, paths.cluster_domain_secret):
        assert _mode(secret) == 0o600, secret
    assert _mode(paths.data_dir) == 0o700
    ca_pem, _key = crypto.read_cluster_ca(paths)
    assert crypto.verify_issued_by(crypto.node_server_cert_path(paths).read_text(), ca_pem)
    assert crypto.verify_issued_by(paths.client_cert.read_text(), ca_pem)
    assert len(paths.cluster_domain_secret.read_text().strip()) == 64
    assert paths.ssconf("cluster_name").read_text().strip() == "boot.example.com"
    assert paths.ssconf("master_node").read_text().strip() == "node1"
    assert paths.ssconf("master_ip").read_text().strip() == ip
    assert paths.ssconf("node_list").read_text().split() == ["node1"]
    assert paths.file_storage_paths.read_text().split() == \
        ["/srv/corral/fs", "/srv/corral/shared-file-storage"]
    assert paths.real("/srv/corral/fs").is_dir()
    state = json.loads(paths.noded_state.read_text())
    assert state["joined"] is True and state["node_name"] == "node1"

    assert daemons.daemon_running(paths, daemons.NODED)
    assert daemons.daemon_running(paths, daemons.MASTERD)
    with MasterClient(paths) as client:
        info = client.query_cluster_info()
        assert info["name"] == "boot.example.com"
        assert info["master"] == "node1"
        assert info["beparams"]["default"]["maxmem"] == 256
        assert info["beparams"]["default"]["vcpus"] == 2
        assert info["nicparams"]["default"]["link"] == "br-test"
        assert info["hvparams"]["fake"]["migration_mode"] == "non-live"
        assert info["candidate_pool_size"] == 3
        assert info["file_storage_dir"] == "/srv/corral/fs"
        # The complete policy: Ganeti's defaults, the options, enabled templates.
        assert info["ipolicy"]["vcpu-ratio"] == 2.0
        assert info["ipolicy"]["std"]["memory-size"] == 256
        assert info["ipolicy"]["minmax"] == ipolicy.IPOLICY_DEFAULTS["minmax"]
        assert info["ipolicy"]["disk-templates"] == ["diskless", "file", "sharedfile"]
        jobs = client.query_jobs(None, ["summary", "status"])
        assert [["CLUSTER_POST_INIT"], "success"] in jobs

    cfg = ConfigStore.open(paths.config_db)
    try:
        node = cfg.get_master_node()
        assert (node.name, node.primary_ip, node.master_candidate) == ("node1", ip, True)
        assert cfg.get_nodegroup(node.group).name == "default"
    finally:
        cfg.close()

    # RAPI answers over HTTPS with the cluster's RAPI certificate.
    ctx = ssl.create_default_context(cafile=str(paths.rapi_cert))
    ctx.check_hostname = False
    with httpx.Client(verify=ctx, timeout=10) as http:
        resp = http.get(f"https://{ip}:5080/version")
    assert resp.status_code == 200 and resp.json() == 2


def test_init_refuses_existing_cluster(node_root: Any) -> None:
    paths, ip = node_root
    _init(paths, ip)
    before = paths.config_db.stat().st_mtime_ns
    with pytest.raises(errors.OpPrereqError) as info:
        _init(paths, ip)
    assert info.value.ecode == errors.ECODE_STATE
    assert paths.config_db.stat().st_mtime_ns == before
    assert daemons.masterd_answers(paths)


@pytest.mark.parametrize("kwargs, match", [
    ({"cluster_name": "bad name!"}, "cluster name"),
    ({"master_name": "-node"}, "master node name"),
    ({"primary_ip": "not-an-ip"}, "Invalid primary IP"),
    ({"primary_ip": "192.0.2.77"}, "not an address of this machine"),
    ({"noded_port": 0}, "node daemon port"),
    ({"rapi_port": 70000}, "RAPI port"),
    ({"enabled_hypervisors": []}, "At least one hypervisor"),
    ({"enabled_hypervisors": ["xen-pvm"]}, "not supported"),
    ({"enabled_hypervisors": ["nope"]}, "Unknown hypervisor"),
    ({"enabled_disk_templates": ["drbd"]}, "not supported"),
    ({"hvparams": {"fake": {"no_such_param": 1}}}, "Unknown hypervisor parameters"),
    ({"beparams": {"maxmem": "lots"}}, "maxmem"),
    ({"beparams": {"colour": "red"}}, "Unknown backend parameter"),
    ({"nicparams": {"mode": "telepathy"}}, "Invalid NIC mode"),
    ({"ndparams": {"spindle_count": "x"}}, "spindle_count"),
    ({"file_storage_dir": "relative/dir"}, "not absolute"),
    ({"shared_file_storage_dir": "/srv/../etc"}, "'..'"),
    ({"file_storage_dir": "/etc"}, "system directory"),
    ({"mac_prefix": "zz:00:00"}, "MAC prefix"),
    ({"master_netdev": "eth0; rm -rf"}, "network device"),
    ({"candidate_pool_size": 0}, "candidate pool size"),
    ({"ipolicy": {"vcpu-ratio": -1}}, "vcpu-ratio must be a positive number"),
    ({"ipolicy": {"std": {"memory-size": 1 << 20}}}, "std specs are not within"),
    ({"ipolicy": {"disk-templates": ["plain"]}}, "at least one disk template"),
    ({"ipolicy": {"minmax": "default"}}, "cannot unset"),
])
def test_invalid_parameters_change_nothing(short_tmp: Path, loopback_base: Any,
                                           kwargs: dict[str, Any], match: str) -> None:
    paths = Paths(short_tmp / "node1")
    ip = f"{loopback_base(1)}.1"
    args: dict[str, Any] = {"cluster_name": "boot.example.com", "primary_ip": ip,
                            "master_name": "node1", "enabled_hypervisors": ["fake"]}
    args.update(kwargs)
    with pytest.raises(errors.OpPrereqError, match=match) as info:
        bootstrap.init_cluster(paths, **args)
    assert info.value.ecode == errors.ECODE_INVAL
    assert not paths.root.exists()


def test_port_in_use_is_refused(short_tmp: Path, loopback_base: Any) -> None:
    import socket
    paths = Paths(short_tmp / "node1")
    ip = f"{loopback_base(1)}.1"
    blocker = socket.socket()
    blocker.bind((ip, 1811))
    blocker.listen(1)
    try:
        with pytest.raises(errors.OpPrereqError) as info:
            _init(paths, ip)
        assert info.value.ecode == errors.ECODE_STATE
    finally:
        blocker.close()
    assert not paths.root.exists()


def test_failed_init_leaves_root_as_it_was(short_tmp: Path, loopback_base: Any) -> None:
    paths = Paths(short_tmp / "node1")
    ip = f"{loopback_base(1)}.1"
    # Pre-existing content (as devcluster's shared storage link) must survive.
    shared = short_tmp / "shared"
    shared.mkdir()
    (shared / "user-file").write_text("keep me\n")
    link = paths.default_shared_file_storage_dir
    link.parent.mkdir(parents=True)
    link.symlink_to(shared)
    (paths.root / "etc").mkdir()
    (paths.root / "etc" / "unrelated").write_text("x\n")
    before = _tree(paths.root)
    with pytest.raises(errors.CorralError) as info:
        _init(paths, ip, masterd_args=["--no-such-option"])
    assert "masterd exited" in info.value.message
    assert "--no-such-option" in info.value.message       # the log tail is included
    assert _tree(paths.root) == before
    assert (shared / "user-file").read_text() == "keep me\n"
    assert _free(ip, 1811), "noded still listening after a failed init"
    assert not daemons.daemon_running(paths, daemons.NODED)


def test_destroy(node_root: Any) -> None:
    paths, ip = node_root
    _init(paths, ip)
    noded_pid = daemons.daemon_pid(paths, daemons.NODED)
    masterd_pid = daemons.daemon_pid(paths, daemons.MASTERD)
    with MasterClient(paths) as client:
        assert client.wait_job(client.submit_job([{"OP_ID": "OP_CLUSTER_DESTROY"}]),
                               timeout=60) == ["node1"]
    bootstrap.destroy_cluster(paths)
    assert not daemons._alive(noded_pid) and not daemons._alive(masterd_pid)
    for path in (paths.config_db, paths.queue_db, paths.cluster_cert, paths.client_cert,
                 paths.rapi_cert, crypto.ca_cert_path(paths), paths.cluster_domain_secret,
                 paths.noded_state, paths.ssconf("cluster_name"), paths.master_socket,
                 paths.join_tokens):
        assert not path.exists(), path
    assert paths.daemon_log("masterd").exists() and paths.daemon_log("noded").exists()
    assert _free(ip, 1811) and _free(ip, 5080)
    bootstrap.destroy_cluster(paths)         # idempotent
    # The root can hold a new cluster afterwards.
    _init(paths, ip)
    assert daemons.masterd_answers(paths)


def test_get_join_token(node_root: Any) -> None:
    paths, ip = node_root
    _init(paths, ip)
    token = bootstrap.get_join_token(paths, 60)
    token_id, secret = crypto.parse_join_token(token)
    assert crypto.JoinTokenStore(paths).get_secret(token_id) == secret


def test_get_join_token_without_masterd(short_tmp: Path) -> None:
    with pytest.raises(errors.CorralError) as info:
        bootstrap.get_join_token(Paths(short_tmp))
    assert info.value.ecode == errors.ECODE_ENVIRON


def test_too_long_root_is_refused(short_tmp: Path, loopback_base: Any) -> None:
    paths = Paths(short_tmp / ("x" * 90) / "node1")
    with pytest.raises(errors.OpPrereqError, match="too long") as info:
        _init(paths, f"{loopback_base(1)}.1")
    assert info.value.ecode == errors.ECODE_INVAL
    assert not paths.root.exists()


def test_init_keeps_and_checks_the_administrators_storage_paths(short_tmp: Path,
                                                                loopback_base: Any) -> None:
    """An existing allowed file storage paths file is the node's own: init
    neither rewrites it nor accepts storage directories it does not list."""
    paths = Paths(short_tmp / "node1")
    paths.conf_dir.mkdir(parents=True)
    paths.file_storage_paths.write_text("/srv/corral/file-storage\n")
    args: dict[str, Any] = {"cluster_name": "boot.example.com",
                            "primary_ip": f"{loopback_base(1)}.1", "master_name": "node1",
                            "enabled_hypervisors": ["fake"]}
    with pytest.raises(errors.OpPrereqError, match="not in the node's allowed") as info:
        bootstrap.init_cluster(paths, file_storage_dir="/srv/other", **args)
    assert info.value.ecode == errors.ECODE_INVAL
    assert paths.file_storage_paths.read_text() == "/srv/corral/file-storage\n"
    assert not paths.config_db.exists()

