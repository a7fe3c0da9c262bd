"""Node side of exports (export_info, finalize_export, export_list, export_remove)
and the X509 keys of remote transfers, on real node state roots; the keys are
also used for a real TLS transfer between two nodes of *different* CAs."""

from __future__ import annotations

import configparser
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from corral import crypto, errors
from corral.backend import export as be
from corral.backend import impexp
from corral.export_format import EXPORT_DIR, build_config_ini
from corral.noded import dispatch
from corral.objects import Disk, Instance
from corral.paths import Paths

from impexp.nodes import (  # tests/impexp/nodes.py
    FS,
    MIB,
    NODE2_IP,
    create_disk,
    make_ca,
    make_node,
    opts,
    pattern,
    sha256,
    wait_done,
    wait_listen,
)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "node")
    p.ensure_dirs()
    return p


def instance_dict(name: str = "inst1", disks: list[Disk] | None = None) -> dict[str, Any]:
    inst = Instance(name=name, primary_node="uuid-node1", os="busybox+default",
                    disk_template="file", disks=disks or [])
    data = inst.to_dict()
    data["beparams"] = {"maxmem": 128, "minmem": 128, "vcpus": 1}
    data["hvparams"] = {"acpi": True}
    return data


def new_export(paths: Paths, name: str, sizes: list[int]) -> tuple[dict, list[Disk]]:
    """An export in progress: ``<name>.new/<uuid>`` images of ``sizes`` KiB."""
    disks = [Disk(iv_name=f"disk/{i}", size=1) for i in range(len(sizes))]
    new = paths.export_dir / f"{name}.new"
    new.mkdir(parents=True)
    for disk, kib in zip(disks, sizes):
        (new / disk.uuid).write_bytes(b"x" * kib * 1024)
    return instance_dict(name, disks), disks


def complete_export(paths: Paths, name: str, sizes: list[int]) -> list[Disk]:
    inst, disks = new_export(paths, name, sizes)
    be.finalize_export(paths, inst, [d.to_dict() for d in disks])
    return disks


# -- finalize_export -----------------------------------------------------------------------
def test_finalize_writes_config_and_renames(paths: Paths) -> None:
    inst, disks = new_export(paths, "inst1", [4, 2])
    be.finalize_export(paths, inst, [d.to_dict() for d in disks])
    final = paths.export_dir / "inst1"
    assert not (paths.export_dir / "inst1.new").exists()
    assert sorted(p.name for p in final.iterdir()) == sorted([d.uuid for d in disks] +
                                                             ["config.ini"])
    cfg = configparser.RawConfigParser()
    cfg.read(final / "config.ini")
    assert cfg.get("instance", "disk0_dump") == disks[0].uuid
    assert cfg.get("instance", "disk_count") == "2"
    assert cfg.get("export", "source") == "uuid-node1"
    assert be.export_list(paths) == ["inst1"]


def test_finalize_replaces_an_older_export(paths: Paths) -> None:
    old = complete_export(paths, "inst1", [1])
    new = complete_export(paths, "inst1", [2])
    names = {p.name for p in (paths.export_dir / "inst1").iterdir()}
    assert names == {new[0].uuid, "config.ini"} and old[0].uuid not in names
    assert [p.name for p in paths.export_dir.iterdir()] == ["inst1"]   # no leftovers


def test_finalize_refuses_missing_images(paths: Paths) -> None:
    inst, disks = new_export(paths, "inst1", [1, 1])
    (paths.export_dir / "inst1.new" / disks[1].uuid).unlink()
    with pytest.raises(errors.RPCFail, match="image of disk 1 is missing"):
        be.finalize_export(paths, inst, [d.to_dict() for d in disks])
    assert not (paths.export_dir / "inst1").exists()
    assert not (paths.export_dir / "inst1.new" / "config.ini").exists()
    assert be.export_list(paths) == []


def test_finalize_with_failed_disk(paths: Paths) -> None:
    inst, disks = new_export(paths, "inst1", [1, 1])
    be.finalize_export(paths, inst, [disks[0].to_dict(), False])
    cfg = configparser.RawConfigParser()
    cfg.read(paths.export_dir / "inst1" / "config.ini")
    assert cfg.get("instance", "disk_count") == "1"
    assert not cfg.has_option("instance", "disk1_dump")


def test_finalize_bad_disks(paths: Paths) -> None:
    inst, _ = new_export(paths, "inst1", [])
    with pytest.raises(errors.RPCFail):
        be.finalize_export(paths, inst, [{"uuid": "../../x"}])
    with pytest.raises(errors.RPCFail):
        be.finalize_export(paths, inst, "nope")   # type: ignore[arg-type]


# -- export_info ---------------------------------------------------------------------------
def test_export_info(paths: Paths) -> None:
    complete_export(paths, "inst1", [1])
    text = be.export_info(paths, f"{EXPORT_DIR}/inst1")
    assert "[export]" in text and "name = inst1" in text


@pytest.mark.parametrize("path", ["/etc", "/srv/corral/export", "/srv/corral/export/../x",
                                  "relative/path", "/srv/corral/exports/inst1"])
def test_export_info_refuses_paths_outside(paths: Paths, path: str) -> None:
    with pytest.raises(errors.RPCFail):
        be.export_info(paths, path)


def test_export_info_missing_corrupt_incomplete(paths: Paths) -> None:
    with pytest.raises(errors.RPCFail, match="No export found") as exc:
        be.export_info(paths, f"{EXPORT_DIR}/nothere")
    assert exc.value.ecode == errors.ECODE_NOENT
    bad = paths.export_dir / "bad"
    bad.mkdir()
    (bad / "config.ini").write_text("[instance]\nname = bad\n")
    with pytest.raises(errors.RPCFail, match="required fields") as exc:
        be.export_info(paths, f"{EXPORT_DIR}/bad")
    assert exc.value.ecode == errors.ECODE_INVAL
    disks = complete_export(paths, "inst2", [1])
    (paths.export_dir / "inst2" / disks[0].uuid).unlink()
    with pytest.raises(errors.RPCFail, match="incomplete"):
        be.export_info(paths, f"{EXPORT_DIR}/inst2")


def test_export_info_symlink_out_refused(paths: Paths, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.ini").write_text(build_config_ini(instance_dict(), []))
    (paths.export_dir / "evil").symlink_to(outside)
    with pytest.raises(errors.RPCFail, match="outside"):
        be.export_info(paths, f"{EXPORT_DIR}/evil")


# -- export_list / export_remove ----------------------------------------------------------
def test_list_skips_new_hidden_and_files(paths: Paths) -> None:
    complete_export(paths, "b-inst", [1])
    complete_export(paths, "a-inst", [1])
    new_export(paths, "c-inst", [1])
    (paths.export_dir / ".hidden").mkdir()
    (paths.export_dir / "stray-file").write_text("x")
    assert be.export_list(paths) == ["a-inst", "b-inst"]


def test_list_without_directory(tmp_path: Path) -> None:
    assert be.export_list(Paths(tmp_path / "empty")) == []


def test_remove(paths: Paths) -> None:
    complete_export(paths, "inst1", [1])
    new_export(paths, "inst1", [1])
    be.export_remove(paths, "inst1.new")
    be.export_remove(paths, "inst1")
    assert list(paths.export_dir.iterdir()) == []
    with pytest.raises(errors.RPCFail) as exc:
        be.export_remove(paths, "inst1")
    assert exc.value.ecode == errors.ECODE_NOENT


@pytest.mark.parametrize("name", ["..", ".", "../node", "a/b", "", ".hidden"])
def test_remove_refuses_bad_names(paths: Paths, name: str) -> None:
    with pytest.raises(errors.RPCFail):
        be.export_remove(paths, name)
    assert paths.export_dir.is_dir()


# -- X509 keys ---------------------------------------------------------------------------
def test_x509_create_and_remove(paths: Paths) -> None:
    name, cert_pem = be.x509_cert_create(paths, 3600)
    key_dir = impexp.crypto_keys_dir(paths) / name
    assert name.startswith("x509-")
    for fname in ("key", "cert"):
        assert stat.S_IMODE((key_dir / fname).stat().st_mode) == 0o400
    assert (key_dir / "cert").read_text() == cert_pem
    cert = crypto.load_certificate(cert_pem)
    assert cert.issuer == cert.subject                 # self-signed
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 3600 <= lifetime.total_seconds() <= 3600 + 600
    assert "PRIVATE KEY" not in cert_pem
    be.x509_cert_remove(paths, name)
    assert not key_dir.exists()
    with pytest.raises(errors.RPCFail) as exc:
        be.x509_cert_remove(paths, name)
    assert exc.value.ecode == errors.ECODE_NOENT


def test_x509_validity_capped_and_checked(paths: Paths) -> None:
    _, cert_pem = be.x509_cert_create(paths, 10 * 365 * 86400)
    cert = crypto.load_certificate(cert_pem)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.total_seconds() <= be.MAX_X509_VALIDITY + 600
    for bad in (0, -5, "1d", True):
        with pytest.raises(errors.RPCFail):
            be.x509_cert_create(paths, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["../../etc", "x509-../x", "other", "", "x509-a/b"])
def test_x509_remove_refuses_bad_names(paths: Paths, name: str) -> None:
    with pytest.raises(errors.RPCFail):
        be.x509_cert_remove(paths, name)


def test_dispatch_table(paths: Paths) -> None:
    res = dispatch.call(paths, "export_list", [])
    assert (res.ok, res.payload) == (True, [])
    res = dispatch.call(paths, "export_remove", ["nothere"])
    assert not res.ok and "No export" in res.payload
    res = dispatch.call(paths, "x509_cert_create", [60])
    assert res.ok and res.payload[0].startswith("x509-")
    res = dispatch.call(paths, "x509_cert_remove", [res.payload[0]])
    assert res.ok


# -- a transfer between clusters with the X509 keys -----------------------------------------
def test_transfer_with_x509_keys_between_two_cas(tmp_path: Path) -> None:
    """node1 (cluster A) sends a disk to node2 (cluster B): each side uses its
    own X509 key and pins the other's certificate, as in a remote export."""
    n1 = make_node(tmp_path / "a1", "node1", make_ca("cluster-a"), "127.0.2.1")
    n2 = make_node(tmp_path / "b1", "node2", make_ca("cluster-b"), NODE2_IP)
    src_vpath, dst_vpath = f"{FS}/inst1/src.disk0", f"{FS}/inst1/dst.disk0"
    src = create_disk(n1, src_vpath, 8, pattern(8 * MIB))
    dst = create_disk(n2, dst_vpath, 8)
    key1, cert1 = be.x509_cert_create(n1, 3600)
    key2, cert2 = be.x509_cert_create(n2, 3600)
    names: list[tuple[Paths, str]] = []
    try:
        imp = impexp.import_start(n2, opts(key_name=key2, ca_pem=cert1,
                                           listen_host=NODE2_IP), None, "disk0", ["raw", dst])
        names.append((n2, imp))
        port = wait_listen(n2, imp)
        exp = impexp.export_start(n1, opts(key_name=key1, ca_pem=cert2), NODE2_IP, port,
                                  None, "disk0", ["raw", src])
        names.append((n1, exp))
        est, ist = wait_done(n1, exp), wait_done(n2, imp)
        assert est["exit_status"] == 0 and ist["exit_status"] == 0, (est, ist)
        assert sha256(n1.real(src_vpath)) == sha256(n2.real(dst_vpath))
    finally:
        for node, name in names:
            impexp.impexp_cleanup(node, name)


def test_transfer_with_unpinned_peer_key_fails(tmp_path: Path) -> None:
    """The exporter presents a key the importer was not told about: refused."""
    n1 = make_node(tmp_path / "a1", "node1", make_ca("cluster-a"), "127.0.2.1")
    n2 = make_node(tmp_path / "b1", "node2", make_ca("cluster-b"), NODE2_IP)
    src = create_disk(n1, f"{FS}/inst1/src.disk0", 1, b"secret data")
    dst = create_disk(n2, f"{FS}/inst1/dst.disk0", 1)
    key1, _ = be.x509_cert_create(n1, 3600)
    _, other = be.x509_cert_create(n1, 3600)          # not key1's certificate
    key2, cert2 = be.x509_cert_create(n2, 3600)
    names: list[tuple[Paths, str]] = []
    try:
        imp = impexp.import_start(n2, opts(key_name=key2, ca_pem=other,
                                           listen_host=NODE2_IP, connect_retries=0),
                                  None, "disk0", ["raw", dst])
        names.append((n2, imp))
        port = wait_listen(n2, imp)
        exp = impexp.export_start(n1, opts(key_name=key1, ca_pem=cert2, connect_retries=0),
                                  NODE2_IP, port, None, "disk0", ["raw", src])
        names.append((n1, exp))
        est = wait_done(n1, exp)
        assert est["exit_status"] != 0
        with open(n2.real(f"{FS}/inst1/dst.disk0"), "rb") as fh:
            assert b"secret data" not in fh.read()
    finally:
        for node, name in names:
            impexp.impexp_cleanup(node, name)
    assert os.listdir(n2.impexp_dir) == []
