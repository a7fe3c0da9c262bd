"""backend.node: version, node_info, node_verify and small node checks."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from corral import constants as C
from corral import crypto, errors
from corral.backend import files, node
from corral.noded import state as noded_state
from corral.paths import Paths


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "root")
    p.ensure_dirs()
    files.write_file_storage_paths(p, ["/srv/corral/file-storage"])
    noded_state.record_joined(p, "cluster.test", "node1.test", "uuid-1")
    return p


def test_version(paths: Paths) -> None:
    assert node.version(paths) == C.PROTOCOL_VERSION


def test_node_info_storage_and_hypervisor(paths: Paths) -> None:
    info = node.node_info(paths, [[C.DT_FILE, "/srv/corral/file-storage"],
                                  [C.DT_FILE, "/srv/corral/file-storage/not-yet-created"]],
                          [[C.HT_FAKE, {}]])
    assert info["name"] == "node1.test"
    assert info["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    first, second = info["storage"]
    assert first["type"] == C.DT_FILE and first["name"] == "/srv/corral/file-storage"
    assert 0 <= first["storage_free"] <= first["storage_size"]
    assert second["storage_size"] == first["storage_size"]     # same file system
    [hv] = info["hv"]
    assert hv["memory_total"] > 0 and hv["cpu_total"] >= 1


@pytest.mark.parametrize("unit, msg", [
    ([C.DT_FILE, "/etc"], "not inside the allowed"),
    ([C.DT_FILE, "/srv/corral/file-storage/../../etc"], "contains '..'"),
    (["lvm-vg", "xenvg"], "not supported"),
    (["file"], "expected [type, name]"),
])
def test_node_info_refuses_bad_units(paths: Paths, unit, msg) -> None:
    with pytest.raises(errors.RPCFail) as exc:
        node.node_info(paths, [unit], [])
    assert msg in str(exc.value)


def test_node_info_unknown_hypervisor(paths: Paths) -> None:
    with pytest.raises(errors.RPCFail, match="Hypervisor xen-pvm"):
        node.node_info(paths, [], [[C.HT_XEN_PVM, {}]])


def test_node_verify(paths: Paths) -> None:
    target = paths.real("/var/lib/corral/ssconf_cluster_name")
    files.write_ssconf_files(paths, {"cluster_name": "cluster.test"})
    listener = socket.create_server(("127.0.1.41", 0))
    open_port = listener.getsockname()[1]
    closed = socket.create_server(("127.0.1.41", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        res = node.node_verify(paths, {
            "version": None,
            "filelist": ["/var/lib/corral/ssconf_cluster_name", "/var/lib/corral/missing"],
            "hypervisor": [C.HT_FAKE, C.HT_XEN_PVM],
            "instancelist": [C.HT_FAKE],
            "nodelist": {"up": ["127.0.1.41", open_port], "down": ["127.0.1.41", closed_port]},
            "file_storage_paths": ["/srv/corral/file-storage", "/srv/other"],
            "unknown_check": 1,
        }, "cluster.test", {C.HT_FAKE: {}})
    finally:
        listener.close()
    assert res["version"] == [C.PROTOCOL_VERSION, C.RELEASE_VERSION]
    assert res["filelist"] == {
        "/var/lib/corral/ssconf_cluster_name": hashlib.sha256(target.read_bytes()).hexdigest(),
        "/var/lib/corral/missing": None}
    assert res["hypervisor"][C.HT_FAKE] is None
    assert "xen-pvm" in res["hypervisor"][C.HT_XEN_PVM]
    assert res["instancelist"] == []
    assert res["nodelist"]["up"] is None
    assert "failed" in res["nodelist"]["down"]
    assert res["file_storage_paths"] == [
        "File storage directory '/srv/other' is not in the node's allowed file storage paths"]
    assert "unknown_check" not in res


def test_node_verify_forbidden_storage_path(paths: Paths) -> None:
    files.write_file_storage_paths(paths, ["/etc", "/srv/corral/file-storage"])
    res = node.node_verify(paths, {"file_storage_paths": []}, "c", {})
    assert len(res["file_storage_paths"]) == 1 and "'/etc'" in res["file_storage_paths"][0]


def test_node_has_ip_address(paths: Paths) -> None:
    assert node.node_has_ip_address(paths, "127.0.1.42") is True
    assert node.node_has_ip_address(paths, "192.0.2.77") is False   # TEST-NET, not ours
    with pytest.raises(errors.RPCFail, match="Invalid IP"):
        node.node_has_ip_address(paths, "not-an-ip")


def test_test_delay(paths: Paths) -> None:
    node.test_delay(paths, 0.01)
    for bad in (-1, "1", True, 10**6):
        with pytest.raises(errors.RPCFail):
            node.test_delay(paths, bad)


def test_bridges_exist(paths: Paths) -> None:
    node.bridges_exist(paths, [])
    with pytest.raises(errors.RPCFail, match="^Missing bridges nobr1, nobr2$"):
        node.bridges_exist(paths, ["nobr1", "nobr2"])
    with pytest.raises(errors.RPCFail, match="Invalid bridge"):
        node.bridges_exist(paths, ["../../etc"])


def test_hypervisor_validate_params(paths: Paths) -> None:
    node.hypervisor_validate_params(paths, C.HT_FAKE, {"migration_mode": "live"})
    with pytest.raises(errors.RPCFail, match="node1.test"):
        node.hypervisor_validate_params(paths, "nohv", {})


def test_node_leave_cluster_removes_cluster_files(paths: Paths, tmp_path: Path) -> None:
    crypto.init_cluster_certs(paths, "cluster.test", "node1.test")
    files.write_ssconf_files(paths, {"cluster_name": "c", "master_node": "m"})
    paths.rapi_cert.write_text("x")
    paths.config_db.write_text("x")
    keep = paths.real("/srv/corral/file-storage/inst1.disk0")
    keep.write_text("data")
    with pytest.raises(errors.QuitCorralException):
        node.node_leave_cluster(paths, False)
    assert not crypto.node_certs_present(paths)
    assert not paths.cluster_cert.exists() and not paths.rapi_cert.exists()
    assert not paths.config_db.exists() and not paths.noded_state.exists()
    assert list(paths.data_dir.glob("ssconf_*")) == []
    assert keep.read_text() == "data"           # instance data is not touched


def test_node_verify_refuses_system_dirs_even_below_an_allowed_root(paths: Paths) -> None:
    # "/" is never an effective allowed entry, so it cannot make /etc acceptable.
    files.write_file_storage_paths(paths, ["/", "/srv/corral/file-storage"])
    res = node.node_verify(paths, {"file_storage_paths": ["/etc", "/etc/corral/x",
                                                          "/srv/corral/file-storage/sub"]},
                           "c", {})
    problems = res["file_storage_paths"]
    assert [p for p in problems if "'/etc'" in p and "system directory" in p]
    assert [p for p in problems if "'/etc/corral/x'" in p]
    assert not [p for p in problems if "/srv/corral/file-storage/sub" in p]
