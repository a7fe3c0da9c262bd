"""Disk helpers and OP_INSTANCE_{ACTIVATE,DEACTIVATE}_DISKS / OP_INSTANCE_GROW_DISK
(cmdlib/instance_storage.py)."""

from __future__ import annotations

import posixpath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import constants as C
from corral import errors
from corral.cmdlib.instance_storage import (check_storage_subdir, generate_disk_template,
                                            storage_dir_of, update_iv_names)
from corral.objects import Cluster, Instance
from corral.process import run_command

try:
    from .test_instance_fixtures import Env, env, file_size_mib, icluster  # noqa: F401
except ImportError:
    from test_instance_fixtures import Env, env, file_size_mib, icluster  # noqa: F401

integration = pytest.mark.integration
FILE_DIR = "/srv/corral/file-storage"


# -- pure helpers --------------------------------------------------------------------
class _Cfg:
    def __init__(self) -> None:
        self.cluster = Cluster(cluster_name="c", master_node="m",
                               file_storage_dir="/srv/fs", shared_file_storage_dir="/srv/sfs")

    def get_cluster(self) -> Cluster:
        return self.cluster


def test_generate_file_disks() -> None:
    disks = generate_disk_template(_Cfg(), C.DT_FILE, "inst1", "pn",  # type: ignore[arg-type]
                                   [{"size": 10}, {"size": 20, "mode": "ro", "name": "d"}],
                                   "sub/x", None, base_index=2)
    assert [d.iv_name for d in disks] == ["disk/2", "disk/3"]
    assert [(d.size, d.mode, d.name, d.nodes, d.dev_type) for d in disks] == \
        [(10, "rw", None, ["pn"], "file"), (20, "ro", "d", ["pn"], "file")]
    for idx, disk in zip((2, 3), disks):
        assert disk.logical_id == ["loop", f"/srv/fs/sub/x/inst1/{disk.uuid}.file.disk{idx}"]
    inst = Instance(name="inst1", primary_node="pn", disk_template=C.DT_FILE, disks=disks)
    assert storage_dir_of(inst) == "/srv/fs/sub/x/inst1"
    update_iv_names(inst.disks)
    assert [d.iv_name for d in inst.disks] == ["disk/0", "disk/1"]


def test_generate_sharedfile_and_diskless() -> None:
    disks = generate_disk_template(_Cfg(), C.DT_SHARED_FILE, "i", "pn",  # type: ignore[arg-type]
                                   [{"size": 1}], None, "blktap")
    assert disks[0].logical_id == ["blktap", f"/srv/sfs/i/{disks[0].uuid}.sharedfile.disk0"]
    cfg: Any = _Cfg()
    assert generate_disk_template(cfg, C.DT_DISKLESS, "i", "pn", [], None, None) == []


@pytest.mark.parametrize("template, specs, subdir", [
    (C.DT_DISKLESS, [{"size": 1}], None),
    (C.DT_FILE, [{"size": 0}], None),
    (C.DT_FILE, [], None),
    (C.DT_FILE, [{"size": 1, "adopt": "x"}], None),
    (C.DT_FILE, [{"size": 1, "provider": "p"}], None),
    (C.DT_FILE, [{"size": 1}], "/abs"),
    (C.DT_FILE, [{"size": 1}], "a/../b"),
    (C.DT_FILE, [{"size": 1}], ".."),
    (C.DT_PLAIN, [{"size": 1}], None),
    (C.DT_FILE, [{"size": 1}] * (C.MAX_DISKS + 1), None),
])
def test_generate_refusals(template: str, specs: list[dict[str, Any]],
                           subdir: str | None) -> None:
    with pytest.raises(errors.OpPrereqError) as exc:
        generate_disk_template(_Cfg(), template, "i", "pn", specs, subdir,  # type: ignore[arg-type]
                               None)
    assert exc.value.ecode == errors.ECODE_INVAL


_SEGMENT = st.text(alphabet="ab.-_/", min_size=0, max_size=12)


@given(_SEGMENT)
def test_storage_subdir_never_escapes(subdir: str) -> None:
    """Whatever is accepted stays strictly below the cluster directory."""
    try:
        norm = check_storage_subdir(subdir)
    except errors.OpPrereqError as err:
        assert err.ecode == errors.ECODE_INVAL
        assert subdir.startswith("/") or ".." in subdir.split("/")
        return
    if norm is None:
        return
    joined = posixpath.normpath(posixpath.join("/base", norm, "inst"))
    assert joined.startswith("/base/") and not norm.startswith("/")


# -- on a cluster ----------------------------------------------------------------------
def _op(op_id: str, name: str, **kw: object) -> dict[str, object]:
    return {"OP_ID": op_id, "instance_name": name, **kw}


@integration
def test_activate_and_deactivate_disks(env: Env) -> None:
    env.create("st1", disk_template="file", disks=[{"size": 4}, {"size": 4}], start=False)
    links = env.node("node1").paths.instance_disks_dir
    result = env.run1(_op("OP_INSTANCE_ACTIVATE_DISKS", "st1"))
    assert [r[:2] for r in result] == [["node1", "disk/0"], ["node1", "disk/1"]]
    assert result[0][2] == str(links / "st1:0") and (links / "st1:0").is_symlink()
    env.run1(_op("OP_INSTANCE_DEACTIVATE_DISKS", "st1"))
    assert not (links / "st1:0").exists() and not (links / "st1:1").exists()


@integration
def test_deactivate_disks_of_running_instance_refused(env: Env) -> None:
    env.create("st2", disk_template="file", disks=[{"size": 4}])
    err = env.fail(_op("OP_INSTANCE_DEACTIVATE_DISKS", "st2"))
    assert err.ecode == errors.ECODE_STATE
    assert (env.node("node1").paths.instance_disks_dir / "st2:0").is_symlink()


@integration
def test_grow_disk(env: Env) -> None:
    env.create("st3", disk_template="file", disks=[{"size": 8}, {"size": 4}], start=False)
    env.run1(_op("OP_INSTANCE_GROW_DISK", "st3", disk=1, amount=12))
    assert [d["size"] for d in env.info("st3")["disks"]] == [8, 16]
    assert [file_size_mib(p) for _, p in env.disk_files("st3")] == [8, 16]
    env.run1(_op("OP_INSTANCE_GROW_DISK", "st3", disk=0, amount=32, absolute=True))
    assert [file_size_mib(p) for _, p in env.disk_files("st3")] == [32, 16]
    assert [d["size"] for d in env.info("st3")["disks"]] == [32, 16]
    # Disks of a stopped instance are shut down again afterwards.
    assert not (env.node("node1").paths.instance_disks_dir / "st3:0").exists()


@integration
def test_grow_disk_sharedfile_running(env: Env) -> None:
    env.create("st4", disk_template="sharedfile", disks=[{"size": 4}])
    env.run1(_op("OP_INSTANCE_GROW_DISK", "st4", disk=0, amount=4))
    (_, path), = env.disk_files("st4")
    assert file_size_mib(path) == 8
    assert (env.node("node1").paths.instance_disks_dir / "st4:0").is_symlink()


@integration
def test_grow_disk_refusals(env: Env) -> None:
    env.create("st5", disk_template="file", disks=[{"size": 8}], start=False)
    env.create("st5d", start=False)
    before = env.instances()
    err = env.fail(_op("OP_INSTANCE_GROW_DISK", "st5", disk=0, amount=4, absolute=True))
    assert err.ecode == errors.ECODE_STATE and "smaller" in err.message
    err = env.fail(_op("OP_INSTANCE_GROW_DISK", "st5", disk=3, amount=4))
    assert err.ecode == errors.ECODE_INVAL
    err = env.fail(_op("OP_INSTANCE_GROW_DISK", "st5d", disk=0, amount=4))
    assert err.ecode == errors.ECODE_INVAL and "does not support growing" in err.message
    err = env.fail(_op("OP_INSTANCE_GROW_DISK", "st5", disk=0, amount=-4))
    assert err.ecode == errors.ECODE_INVAL
    assert env.instances() == before
    assert [file_size_mib(p) for _, p in env.disk_files("st5")] == [8]



@integration
def test_grow_disk_refused_beyond_free_space(env: Env) -> None:
    """A file disk on a node filesystem with little room: growing beyond its
    free space is refused before anything changes (config and file)."""
    mnt = env.real("node1", f"{FILE_DIR}/small")
    mnt.mkdir(parents=True, exist_ok=True)
    res = run_command(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)],
                      timeout=30)
    assert not res.failed, res.output
    try:
        env.create("st6", disk_template="file", disks=[{"size": 16}], start=False,
                   file_storage_dir="small")
        (_, path), = env.disk_files("st6")
        assert path.parent.parent == mnt
        before = env.instances()
        err = env.fail(_op("OP_INSTANCE_GROW_DISK", "st6", disk=0, amount=64))
        assert err.ecode == errors.ECODE_NORES and "Not enough disk space" in err.message
        err = env.fail(_op("OP_INSTANCE_GROW_DISK", "st6", disk=0, amount=80, absolute=True))
        assert err.ecode == errors.ECODE_NORES
        assert env.instances() == before
        assert [d["size"] for d in env.info("st6")["disks"]] == [16]
        assert file_size_mib(path) == 16
        env.run1(_op("OP_INSTANCE_GROW_DISK", "st6", disk=0, amount=8))
        assert file_size_mib(path) == 24 and path.stat().st_blocks * 512 >= 24 * 1024 * 1024
        env.run1({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "st6",
                  "ignore_failures": True, "shutdown_timeout": 0})
    finally:
        run_command(["umount", str(mnt)], timeout=30)
