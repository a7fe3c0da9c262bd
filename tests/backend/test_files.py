"""backend.files: upload allow-list, atomic writes, ssconf."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import errors
from corral.backend import files
from corral.paths import Paths
from corral.rpc import compress_content


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "root")
    p.ensure_dirs()
    return p


@pytest.mark.parametrize("name, mode", [
    ("/var/lib/corral/ca.pem", 0o600),
    ("/var/lib/corral/rapi.pem", 0o600),
    ("/var/lib/corral/rapi/users", 0o640),
    ("/var/lib/corral/cluster-domain-secret", 0o400),
    ("/var/lib/corral/ssconf_master_node", 0o644),
])
def test_upload_allowed(paths: Paths, name: str, mode: int) -> None:
    files.upload_file_single(paths, name, b"content\n", mode, None, None, 100, 200)
    real = paths.real(name)
    st_ = real.stat()
    assert (st_.st_atime, st_.st_mtime) == (100, 200)
    assert stat.S_IMODE(st_.st_mode) == mode
    assert real.read_bytes() == b"content\n"
    assert [p.name for p in real.parent.iterdir() if p.name.startswith(".")] == []


def test_upload_encoded_content_and_overwrite(paths: Paths) -> None:
    name = "/var/lib/corral/ca.pem"
    files.upload_file_single(paths, name, compress_content(b"A" * 10000), 0o600, -1, -1,
                             None, None)
    assert paths.real(name).read_bytes() == b"A" * 10000
    files.upload_file_single(paths, name, "new", 0o644, os.getuid(), os.getgid(), None, None)
    assert paths.real(name).read_text() == "new"
    assert stat.S_IMODE(paths.real(name).stat().st_mode) == 0o644


@pytest.mark.parametrize("name", [
    "/etc/passwd", "/etc/shadow", "/var/lib/corral/config.db", "/var/lib/corral/noded.pem",
    "/var/lib/corral/client.pem", "/var/lib/corral/server.pem",
    "/var/lib/corral/../../../etc/passwd", "/var/lib/corral/rapi/../ca.pem",
    "/var/lib/corral/ssconf_X", "/var/lib/corral/ssconf_a/b", "/var/lib/corral/ssconf_",
    "var/lib/corral/ca.pem", "//var/lib/corral/ca.pem", "/var/lib/corral/ca.pem/",
    "/var/lib/corral/ca.pem\x00", "",
    # Node-local: written by the node's administrator, never by the master.
    "/etc/corral/file-storage-paths",
])
def test_upload_refused(paths: Paths, name: str) -> None:
    before = sorted(str(p) for p in paths.root.rglob("*"))
    with pytest.raises(errors.RPCFail, match="not in the list of files that may be uploaded"):
        files.upload_file_single(paths, name, b"x", 0o644, None, None, None, None)
    assert sorted(str(p) for p in paths.root.rglob("*")) == before


def test_upload_bad_mode_and_owner(paths: Paths) -> None:
    for mode in (-1, 0o10000, "644", True):
        with pytest.raises(errors.RPCFail, match="Invalid file mode"):
            files.upload_file_single(paths, "/var/lib/corral/ca.pem", b"x", mode, None, None,
                                     None, None)
    with pytest.raises(errors.RPCFail, match="Unknown user"):
        files.upload_file_single(paths, "/var/lib/corral/ca.pem", b"x", 0o600,
                                 "no-such-user-xyz", None, None, None)
    assert not paths.real("/var/lib/corral/ca.pem").exists()


@given(st.text(alphabet="abc/._-", max_size=40))
def test_allow_list_is_exact(suffix: str) -> None:
    name = "/var/lib/corral/" + suffix
    allowed = files.is_upload_allowed(name)
    if allowed:
        assert name in files.ALLOWED_UPLOAD_FILES or (
            suffix.startswith("ssconf_") and "/" not in suffix and "." not in suffix)


def test_write_ssconf_files(paths: Paths) -> None:
    files.write_ssconf_files(paths, {"cluster_name": "c.test", "node_list": ["a", "b"],
                                     "empty": ""})
    assert paths.ssconf("cluster_name").read_text() == "c.test\n"
    assert paths.ssconf("node_list").read_text() == "a\nb\n"
    assert paths.ssconf("empty").read_text() == ""
    assert stat.S_IMODE(paths.ssconf("cluster_name").stat().st_mode) == 0o644
    assert files.read_ssconf(paths, "node_list") == "a\nb"
    assert files.read_ssconf(paths, "missing") is None
    for bad in ({"../x": "1"}, {"Upper": "1"}, {"a-b": "1"}, {"": "1"}, {"ok": "x" * 200000}):
        with pytest.raises(errors.RPCFail):
            files.write_ssconf_files(paths, {"first": "written?", **bad})
        assert not paths.ssconf("first").exists()
    files.remove_ssconf_files(paths)
    assert list(paths.data_dir.glob("ssconf_*")) == []


def test_file_storage_paths(paths: Paths) -> None:
    files.write_file_storage_paths(paths, ["/srv/a", "/srv/b/"])
    paths.file_storage_paths.write_text(paths.file_storage_paths.read_text()
                                        + "# comment\n\nrelative/x\n/srv/../etc\n")
    assert files.read_file_storage_paths(paths) == ["/srv/a", "/srv/b"]
    with pytest.raises(errors.RPCFail):
        files.write_file_storage_paths(paths, ["/srv/../etc"])


def test_write_file_atomic_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "d"
    (target / "inside").mkdir(parents=True)      # rename over a non-empty directory fails
    with pytest.raises(OSError):
        files.write_file_atomic(target, b"new", 0o600)
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
    assert [p.name for p in target.iterdir()] == ["inside"]


def test_ensure_file_storage_paths_keeps_the_administrators_file(paths: Paths) -> None:
    assert files.ensure_file_storage_paths(paths, ["/srv/a"])
    assert files.read_file_storage_paths(paths) == ["/srv/a"]
    paths.file_storage_paths.write_text("# mine\n/srv/b\n")
    assert not files.ensure_file_storage_paths(paths, ["/srv/a"])
    assert paths.file_storage_paths.read_text() == "# mine\n/srv/b\n"
