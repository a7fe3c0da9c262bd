"""Remote (inter-cluster) import/export: the protocol helpers (HMACs as Ganeti
computes them, signed certificates) and moves between two real dev clusters
(fake hypervisor) through OP_BACKUP_PREPARE, OP_INSTANCE_CREATE remote-import
and OP_BACKUP_EXPORT remote."""

from __future__ import annotations

import datetime
import hashlib
import hmac
from pathlib import Path
from typing import Any, Iterator

import pytest

from corral import errors
from corral.backend.export import generate_x509
from corral.cli.backup import follow_job, move_instance_remote
from corral.cmdlib import backup_remote as rie
from corral.paths import Paths

try:
    from .test_backup_fixtures import DD_OS, FAILIMP_OS, BackupEnv, make_cluster
except ImportError:
    from test_backup_fixtures import DD_OS, FAILIMP_OS, BackupEnv, make_cluster

CDS = "0123456789abcdef0123456789abcdef"


# -- protocol helpers -------------------------------------------------------------------
def ganeti_hmac(key: str, text: str, salt: str) -> str:
    """Ganeti's utils.Sha1Hmac, written out."""
    return hmac.new(key.encode(), (salt + text).encode(), hashlib.sha1).hexdigest()


def test_hmacs_are_ganetis() -> None:
    assert rie.sha1_hmac(CDS, "text", "salt") == ganeti_hmac(CDS, "text", "salt")
    assert rie.sha1_hmac(CDS, "text") == hmac.new(CDS.encode(), b"text",
                                                  hashlib.sha1).hexdigest()
    assert rie.verify_sha1_hmac(CDS, "text", ganeti_hmac(CDS, "text", "s1"), "s1")
    assert not rie.verify_sha1_hmac(CDS, "text", ganeti_hmac(CDS, "text", "s1"), "s2")
    assert not rie.verify_sha1_hmac(CDS, "text", None, "s1")
    version, digest, salt = rie.compute_remote_export_handshake(CDS)
    assert version == 0 and digest == ganeti_hmac(CDS, "0:Hi, I'm Ganeti", salt)
    assert len(salt) == 16
    assert rie.check_remote_export_handshake(CDS, [version, digest, salt]) is None
    assert "domain secret" in rie.check_remote_export_handshake("other" * 8,
                                                                [version, digest, salt])
    other = [1, ganeti_hmac(CDS, "1:Hi, I'm Ganeti", "ab"), "ab"]
    assert "protocol" in rie.check_remote_export_handshake(CDS, other)
    assert "Invalid data" in rie.check_remote_export_handshake(CDS, "junk")


def test_disk_info_and_key_name() -> None:
    info = rie.compute_remote_import_disk_info(CDS, "salt1", 1, "127.0.0.5", 4242, "magic1")
    assert info == ["127.0.0.5", 4242, "magic1",
                    ganeti_hmac(CDS, "1:127.0.0.5:4242:magic1", "salt1"), "salt1"]
    assert rie.check_remote_export_disk_info(CDS, 1, info) == ("127.0.0.5", 4242, "magic1")
    for bad_idx, bad in ((0, info), (1, info[:4]), (1, [*info[:2], "other", *info[3:]]),
                         (1, ["", *info[1:]])):
        with pytest.raises(errors.OpPrereqError) as exc:
            rie.check_remote_export_disk_info(CDS, bad_idx, bad)
        assert exc.value.ecode == errors.ECODE_INVAL
    name = rie.compute_x509_key_name(CDS, "x509-key-1")
    assert rie.check_x509_key_name(CDS, name) == "x509-key-1"
    with pytest.raises(errors.OpPrereqError, match="HMAC"):
        rie.check_x509_key_name(CDS, ["x509-key-2", *name[1:]])
    assert rie.disk_magic("base", "inst", 3) == hashlib.sha1(b"0baseinst3").hexdigest()


def test_signed_certificates() -> None:
    _, cert = generate_x509("node1", 3600)
    signed = rie.sign_x509_certificate(cert, CDS, "abc123")
    header, body = signed.split("\n\n", 1)
    assert header == f"X-Ganeti-Signature: abc123/{ganeti_hmac(CDS, body, 'abc123')}"
    assert rie.load_signed_x509_certificate(signed, CDS, "CA") == body == cert
    with pytest.raises(errors.OpPrereqError, match="signature is invalid"):
        rie.load_signed_x509_certificate(signed, "another-secret-xxxxxxxx", "CA")
    with pytest.raises(errors.OpPrereqError, match="missing"):
        rie.load_signed_x509_certificate(cert, CDS, "CA")
    tampered = signed.replace(body, generate_x509("node2", 3600)[1])
    with pytest.raises(errors.OpPrereqError, match="invalid"):
        rie.load_signed_x509_certificate(tampered, CDS, "CA")
    with pytest.raises(errors.OpPrereqError, match="Missing"):
        rie.load_signed_x509_certificate(None, CDS, "CA")


def test_expired_certificate_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _, cert = generate_x509("node1", 60)
    signed = rie.sign_x509_certificate(cert, CDS, "abc")
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)

    class _Later(datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime.datetime:
            return later

    monkeypatch.setattr(rie.datetime, "datetime", _Later)
    with pytest.raises(errors.OpPrereqError, match="expired"):
        rie.load_signed_x509_certificate(signed, CDS, "CA")


def test_domain_secret_file(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    with pytest.raises(errors.OpPrereqError) as exc:
        rie.read_cluster_domain_secret(paths)
    assert exc.value.ecode == errors.ECODE_ENVIRON
    secret = rie.write_cluster_domain_secret(paths)
    assert len(secret) == 64 and rie.read_cluster_domain_secret(paths) == secret
    assert rie.write_cluster_domain_secret(paths, f"{CDS}\nignored\n") == CDS
    assert rie.read_cluster_domain_secret(paths) == CDS
    assert paths.cluster_domain_secret.stat().st_mode & 0o777 == 0o400
    for bad in ("short", "with spaces in the secret", ""):
        with pytest.raises(errors.OpPrereqError):
            rie.write_cluster_domain_secret(paths, bad)
    assert rie.read_cluster_domain_secret(paths) == CDS


# -- two clusters ---------------------------------------------------------------------------
class Clusters:
    def __init__(self, a: BackupEnv, b: BackupEnv) -> None:
        self.a, self.b = a, b


@pytest.fixture(scope="module")
def clusters(module_dev_cluster: Any) -> Iterator[Clusters]:
    a = make_cluster(module_dev_cluster, 2)
    b = make_cluster(module_dev_cluster, 1, cluster_name="corral-dev-b")
    rie.write_cluster_domain_secret(b.dev.master_paths,
                                    rie.read_cluster_domain_secret(a.dev.master_paths))
    try:
        yield Clusters(a, b)
    finally:
        a.client.close()
        b.client.close()


@pytest.fixture
def cl(clusters: Clusters) -> Iterator[Clusters]:
    try:
        yield clusters
    finally:
        clusters.a.remove_all()
        clusters.b.remove_all()


def keys_left(env: BackupEnv) -> list[str]:
    out = []
    for node in env.dev.nodes:
        d = node.paths.run_dir / "crypto"
        out += [p.name for p in d.iterdir()] if d.is_dir() else []
    return out


def test_move_between_clusters(cl: Clusters) -> None:
    a, b = cl.a, cl.b
    keys_before = (keys_left(a), keys_left(b))
    a.create("inst1", [12, 4], pnode="node2", beparams={"maxmem": 64, "minmem": 64},
             tags=["moved"], nics=[{"ip": "192.0.2.9"}])
    shas = a.fill("inst1")
    mac = a.info("inst1")["nics"][0][3]
    log: list[Any] = []
    name = move_instance_remote(a.client, b.client, "inst1", "node1", dest_name="inst1b",
                                compress="gzip", shutdown_timeout=10,
                                feedback=lambda e: log.append(e[2]))
    assert name == "inst1b"
    info = b.info("inst1b")
    assert b.shas("inst1b") == shas
    assert (info["os"], info["config_state"], info["tags"]) == (DD_OS, "up", ["moved"])
    assert info["be_instance"]["maxmem"] == 64
    assert info["nics"][0][2:4] == ["192.0.2.9", mac]
    assert b.status("inst1b") == "running"
    assert a.status("inst1") == "running"                    # the source was restarted
    assert any("MiB" in str(m) for m in log)
    assert (keys_left(a), keys_left(b)) == keys_before
    assert a.transfer_dirs() == [] and b.transfer_dirs() == []
    assert a.wait_no_strays() == [] and b.wait_no_strays() == []


def test_move_and_remove_source(cl: Clusters, run_cli: Any) -> None:
    a, b = cl.a, cl.b
    a.create("inst2", [6], start=False)
    shas = a.fill("inst2")
    res = run_cli(["corral", "backup", "move-remote", "inst2", "--dest-root",
                   str(b.dev.master_paths.root), "-n", "node1", "--remove-instance",
                   "--shutdown-timeout", "10"], a.dev.master_paths.root)
    assert res.returncode == 0, res.stderr
    assert "moved to inst2" in res.stdout
    assert "inst2" not in a.instances()
    assert b.shas("inst2") == shas
    assert b.info("inst2")["config_state"] == "down"         # it was down at the source


def test_remote_import_checks(cl: Clusters) -> None:
    a, b = cl.a, cl.b
    a.create("inst3", [4])
    prep = a.run({"OP_ID": "OP_BACKUP_PREPARE", "instance_name": "inst3", "mode": "remote"})
    assert set(prep) == {"handshake", "x509_key_name", "x509_ca"}
    assert a.run({"OP_ID": "OP_BACKUP_PREPARE", "instance_name": "inst3",
                  "mode": "local"}) is None
    base = {"OP_ID": "OP_INSTANCE_CREATE", "mode": "remote-import", "instance_name": "x1",
            "pnode": "node1", "os_type": DD_OS, "disk_template": "file",
            "disks": [{"size": 4}], "nics": [], "name_check": False, "ip_check": False,
            "source_handshake": prep["handshake"], "source_x509_ca": prep["x509_ca"],
            "source_instance_name": "inst3"}
    bad_handshake = [0, "0" * 40, prep["handshake"][2]]
    cases = [({"source_handshake": bad_handshake}, "domain secret"),
             ({"source_handshake": None}, "Missing source handshake"),
             ({"source_x509_ca": prep["x509_ca"].replace("Signature: ", "Signature: 0")},
              "signature"),
             ({"source_x509_ca": None}, "Missing source X509 CA"),
             ({"source_instance_name": None}, "Missing source instance name"),
             ({"snode": "node1"}, "secondary")]
    for extra, text in cases:
        op = dict(base)
        op.update(extra)
        err = b.fail(op)
        assert isinstance(err, errors.OpPrereqError) and err.ecode == errors.ECODE_INVAL
        assert text in str(err), (extra, err)
    assert b.instances() == []
    # The source refuses tampered destinations.
    exp = {"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "inst3", "mode": "remote",
           "x509_key_name": prep["x509_key_name"], "destination_x509_ca": prep["x509_ca"],
           "target_node": [rie.compute_remote_import_disk_info(
               rie.read_cluster_domain_secret(a.dev.master_paths), "s1", 0, "127.0.0.1",
               1234, "magic-value")]}
    for extra, text in (({"target_node": [["127.0.0.1", 1234, "magic-value", "0" * 40,
                                           "s1"]]}, "HMAC is wrong"),
                        ({"target_node": []}, "disks"),
                        ({"x509_key_name": ["x509-other", *prep["x509_key_name"][1:]]},
                         "key name"),
                        ({"destination_x509_ca": None}, "Missing destination")):
        op = dict(exp)
        op.update(extra)
        err = a.fail(op)
        assert isinstance(err, errors.OpPrereqError) and text in str(err), (extra, err)
    assert a.status("inst3") == "running"


def test_domain_secret_mismatch(cl: Clusters, tmp_path: Path) -> None:
    a, b = cl.a, cl.b
    a.create("inst4", [4])
    shared = rie.read_cluster_domain_secret(b.dev.master_paths)
    rie.write_cluster_domain_secret(b.dev.master_paths)        # a new, different secret
    try:
        with pytest.raises(errors.OpPrereqError, match="domain secret"):
            move_instance_remote(a.client, b.client, "inst4", "node1", shutdown_timeout=5)
        assert b.instances() == []
        assert a.status("inst4") == "running"
    finally:
        rie.write_cluster_domain_secret(b.dev.master_paths, shared)


def test_failed_remote_import_cleans_up_both_sides(cl: Clusters) -> None:
    """The destination's OS import script fails: no instance there, the
    source instance runs again, no keys, transfers or processes left."""
    a, b = cl.a, cl.b
    a.create("inst5", [4])
    keys_before = (keys_left(a), keys_left(b))
    prep = a.run({"OP_ID": "OP_BACKUP_PREPARE", "instance_name": "inst5", "mode": "remote"})
    job = b.client.submit_job([{
        "OP_ID": "OP_INSTANCE_CREATE", "mode": "remote-import", "instance_name": "inst5",
        "pnode": "node1", "os_type": FAILIMP_OS, "disk_template": "file",
        "disks": [{"size": 4}], "nics": [], "name_check": False, "ip_check": False,
        "source_handshake": prep["handshake"], "source_x509_ca": prep["x509_ca"],
        "source_instance_name": "inst5", "source_shutdown_timeout": 5}])
    info, serial = follow_job(b.client, job, None, 120, until_log_type="remote-import")
    assert len(info["disks"]) == 1 and "X-Ganeti-Signature" in info["x509_ca"]
    err = a.fail({"OP_ID": "OP_BACKUP_EXPORT", "instance_name": "inst5", "mode": "remote",
                  "target_node": info["disks"], "x509_key_name": prep["x509_key_name"],
                  "destination_x509_ca": info["x509_ca"], "shutdown_timeout": 5})
    assert "Export failed" in str(err)
    with pytest.raises(errors.OpExecError, match="importing the disks"):
        follow_job(b.client, job, None, 300, after_serial=serial)
    assert b.instances() == []
    assert a.status("inst5") == "running"
    assert (keys_left(a), keys_left(b)) == keys_before
    assert a.transfer_dirs() == [] and b.transfer_dirs() == []
    assert a.wait_no_strays() == [] and b.wait_no_strays() == []


# -- RAPI resources used by move-instance style tools -----------------------------------------
def test_rapi_prepare_export_and_export(tmp_path: Path) -> None:
    from rapi.conftest import USERS_FILE, WRITER, FakeMaster, TestClient

    from corral.rapi.server import create_app

    paths = Paths(tmp_path)
    paths.rapi_users.parent.mkdir(parents=True)
    paths.rapi_users.write_text(USERS_FILE)
    master = FakeMaster()
    with TestClient(create_app(master, paths)) as client:
        resp = client.put("/2/instances/inst1/prepare-export?mode=remote", headers=WRITER)
        assert resp.status_code == 200, resp.text
        (op,) = master.last_ops()
        assert (op["OP_ID"], op["instance_name"], op["mode"]) == \
            ("OP_BACKUP_PREPARE", "inst1", "remote")
        resp = client.put("/2/instances/inst1/export", headers=WRITER,
                          json={"destination": "node2", "shutdown": False,
                                "remove_instance": False, "compress": "zstd"})
        assert resp.status_code == 200, resp.text
        (op,) = master.last_ops()
        assert (op["OP_ID"], op["target_node"], op["shutdown"], op["compress"]) == \
            ("OP_BACKUP_EXPORT", "node2", False, "zstd")
        disks = [["127.0.0.1", 1234, "magic", "hmac", "salt"]]
        resp = client.put("/2/instances/inst1/export", headers=WRITER,
                          json={"mode": "remote", "destination": disks,
                                "x509_key_name": ["k", "h", "s"],
                                "destination_x509_ca": "pem"})
        assert resp.status_code == 200, resp.text
        assert master.last_ops()[0]["target_node"] == disks
        assert client.put("/2/instances/inst1/export", json={"destination": "node2"}
                          ).status_code == 401
        assert client.put("/2/instances/inst1/export", headers=WRITER,
                          json={"destination": "node2", "bogus": 1}).status_code == 400
