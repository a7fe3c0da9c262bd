"""The OS definitions shipped with Corral: installation into a node's OS
directory, and the busybox OS's scripts run as a node runs them (through
``corral.osdef``) on raw image files. Booting the images: tests/os/."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from corral import bundled_os, errors, osdef
from corral import constants as C
from corral.objects import NIC, Disk, Instance
from corral.paths import Paths
from corral.process import run_command

MIB = 1024 * 1024
NAME = "inst1.example.com"
SCRIPTS = ("create", "import", "export", "rename", "verify")


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "root")


@pytest.fixture
def busybox_os(paths: Paths) -> osdef.OSDefinition:
    bundled_os.install_bundled_os(paths)
    return osdef.find_os(paths, "busybox")


def make_instance(os_name: str = "busybox", nics: list[NIC] | None = None,
                  **kw: Any) -> Instance:
    return Instance(name=NAME, primary_node="node-uuid-1", os=os_name,
                    hypervisor=C.HT_KVM,
                    disks=[Disk(dev_type=C.DT_FILE, logical_id=["loop", "/x/disk0"], size=64)],
                    nics=nics or [], beparams={"maxmem": 128, "minmem": 128, "vcpus": 1},
                    **kw)


def encode(inst: Instance) -> dict[str, Any]:
    data = inst.to_dict()
    data["primary_node_name"] = "node1.example.com"
    data["secondary_node_names"] = []
    return data


def raw_disk(tmp_path: Path, name: str = "disk0.img", size_mib: int = 64) -> Path:
    path = tmp_path / name
    with open(path, "wb") as fh:
        fh.truncate(size_mib * MIB)
    return path


def debugfs_cat(image: Path, path: str) -> str:
    res = run_command(["debugfs", "-R", f"cat {path}", str(image)], timeout=30)
    assert not res.failed, res.output
    return res.stdout


def fsck_clean(image: Path) -> None:
    res = run_command(["e2fsck", "-f", "-n", str(image)], timeout=60)
    assert res.exit_code == 0, res.output


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def create(osd: osdef.OSDefinition, paths: Paths, disk: Path, inst: Instance) -> Path:
    env = osdef.os_environment(osd, encode(inst), [str(disk)])
    return osdef.run_os_script(osd, osdef.SCRIPT_CREATE, env, paths, inst.name,
                               timeout=120, os_name=inst.os)


# -- installation ----------------------------------------------------------------------
def test_shipped_os_is_a_valid_api20_definition(busybox_os: osdef.OSDefinition,
                                                paths: Paths) -> None:
    assert bundled_os.bundled_os_names() == ["busybox"]
    osd = busybox_os
    assert osd.api_versions == [20] and osd.api_version == C.OS_API_V20
    assert osd.trusted
    assert osd.variants == ["default", "tick"]
    assert [p[0] for p in osd.parameters] == ["root_password", "dhcp", "ip_prefix"]
    assert all(desc for _, desc in osd.parameters)
    assert osdef.select_variant(osd, "busybox") == "default"
    assert osdef.select_variant(osd, "busybox+tick") == "tick"
    with pytest.raises(errors.OSError_, match="does not support variant 'nope'"):
        osdef.select_variant(osd, "busybox+nope")
    rows = [r for r in osdef.diagnose_all(paths) if r[0] == "busybox"]
    assert len(rows) == 1 and rows[0][2] is True, rows
    for script in SCRIPTS:
        mode = os.stat(Path(osd.path) / script).st_mode
        assert stat.S_IMODE(mode) == 0o755, script
    assert stat.S_IMODE(os.stat(Path(osd.path) / "common.sh").st_mode) == 0o644


def test_install_is_idempotent_and_atomic(paths: Paths) -> None:
    assert bundled_os.install_bundled_os(paths) == ["busybox"]
    link = paths.os_dir / "busybox"
    assert link.is_symlink()
    target = os.readlink(link)
    assert target.startswith(".busybox-") and (paths.os_dir / target).is_dir()
    before = sorted(p.name for p in paths.os_dir.iterdir())
    assert bundled_os.install_bundled_os(paths) == []          # identical: skipped
    assert os.readlink(link) == target
    assert sorted(p.name for p in paths.os_dir.iterdir()) == before

    # A modified installed copy is repaired.
    (link / "create").write_text("#!/bin/sh\nexit 1\n")
    assert bundled_os.install_bundled_os(paths) == ["busybox"]
    assert "mkfs.ext4" in (link / "create").read_text()
    assert stat.S_IMODE((link / "create").stat().st_mode) == 0o755
    assert bundled_os.install_bundled_os(paths) == []


def test_install_replaces_directory_and_stale_versions(paths: Paths) -> None:
    paths.os_dir.mkdir(parents=True)
    old = paths.os_dir / "busybox"
    old.mkdir()
    (old / "create").write_text("old hand-made copy")
    stale = paths.os_dir / ".busybox-0000000000000000"
    stale.mkdir()
    (stale / "create").write_text("stale")
    other = paths.os_dir / "someone-elses-os"
    other.mkdir()
    assert bundled_os.install_bundled_os(paths) == ["busybox"]
    assert old.is_symlink()
    assert "mkfs.ext4" in (old / "create").read_text()
    assert not stale.exists()
    assert other.is_dir()                                      # not ours: untouched
    names = {p.name for p in paths.os_dir.iterdir()}
    assert names == {"busybox", os.readlink(old), "someone-elses-os"}


def test_install_tree_of_another_os(tmp_path: Path) -> None:
    files = {"ganeti_api_version": (b"20\n", 0o644), "create": (b"#!/bin/sh\n", 0o755),
             "sub/helper": (b"x", 0o644)}
    assert bundled_os.install_os_tree(tmp_path, "demo", files) is True
    assert bundled_os.install_os_tree(tmp_path, "demo", files) is False
    assert (tmp_path / "demo/sub/helper").read_bytes() == b"x"
    files["sub/helper"] = (b"y", 0o644)
    assert bundled_os.install_os_tree(tmp_path, "demo", files) is True
    assert (tmp_path / "demo/sub/helper").read_bytes() == b"y"
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".demo-")]) == 1


def test_install_fails_on_unwritable_os_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "root"
    blocker.write_text("a file where the state root should be")
    with pytest.raises(errors.OSError_, match="Cannot create the OS directory") as exc:
        bundled_os.install_bundled_os(Paths(blocker))
    assert exc.value.ecode == errors.ECODE_ENVIRON


# -- create ---------------------------------------------------------------------------
def test_create_writes_ext4_root(busybox_os: osdef.OSDefinition, paths: Paths,
                                 tmp_path: Path) -> None:
    disk = raw_disk(tmp_path)
    inst = make_instance(nics=[NIC(mac="AA:00:00:12:34:56", ip="192.0.2.10")],
                         osparams={"ip_prefix": "28"})
    log = create(busybox_os, paths, disk, inst)
    assert "creating the ext4 root file system of inst1.example.com (default)" in \
        log.read_text()
    assert os.path.getsize(disk) == 64 * MIB                   # whole disk, not resized
    fsck_clean(disk)
    assert debugfs_cat(disk, "/etc/hostname") == f"{NAME}\n"
    assert debugfs_cat(disk, "/etc/corral/variant") == "default\n"
    net = debugfs_cat(disk, "/etc/corral/network")
    assert "NIC_MAC=aa:00:00:12:34:56\n" in net and "NIC_IP=192.0.2.10\n" in net
    assert "NIC_PREFIX=28\n" in net and "NIC_DHCP=no\n" in net
    assert f"127.0.1.1 {NAME} inst1\n" in debugfs_cat(disk, "/etc/hosts")
    assert debugfs_cat(disk, "/etc/shadow").startswith("root::")   # no password
    assert "::respawn:/usr/sbin/corral-getty" in debugfs_cat(disk, "/etc/inittab")
    assert "getty -L 0 ttyS0" in debugfs_cat(disk, "/usr/sbin/corral-getty")
    listing = run_command(["debugfs", "-R", "stat /sbin/init", str(disk)], timeout=30)
    assert "Type: symlink" in listing.stdout and "../bin/busybox" in listing.stdout
    busybox = run_command(["debugfs", "-R", "stat /bin/busybox", str(disk)], timeout=30)
    assert "Mode:  0755" in busybox.stdout


def test_create_keeps_preallocated_disk_allocated(busybox_os: osdef.OSDefinition,
                                                   paths: Paths, tmp_path: Path) -> None:
    """File disks are preallocated (storage/file.py); mkfs must not discard
    (punch) them, or the space promised to the instance goes back to the node."""
    disk = tmp_path / "disk0.img"
    with open(disk, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, 64 * MIB)
    create(busybox_os, paths, disk, make_instance())
    fsck_clean(disk)
    st = disk.stat()
    assert st.st_size == 64 * MIB
    assert st.st_blocks * 512 >= st.st_size


def test_create_tick_variant_and_root_password(busybox_os: osdef.OSDefinition,
                                               paths: Paths, tmp_path: Path) -> None:
    disk = raw_disk(tmp_path)
    inst = make_instance("busybox+tick", osparams={"dhcp": "yes"},
                         osparams_private={"root_password": "s3cret-pw"})
    log = create(busybox_os, paths, disk, inst)
    assert debugfs_cat(disk, "/etc/corral/variant") == "tick\n"
    assert "NIC_DHCP=yes" in debugfs_cat(disk, "/etc/corral/network")
    shadow = debugfs_cat(disk, "/etc/shadow")
    assert shadow.startswith("root:$6$")
    assert "s3cret-pw" not in shadow and "s3cret-pw" not in log.read_text()
    stat_out = run_command(["debugfs", "-R", "stat /etc/shadow", str(disk)], timeout=30)
    assert "Mode:  0600" in stat_out.stdout


def test_create_refuses_small_or_missing_disk(busybox_os: osdef.OSDefinition, paths: Paths,
                                              tmp_path: Path) -> None:
    small = raw_disk(tmp_path, "small.img", size_mib=8)
    with pytest.raises(errors.OSError_, match="too small"):
        create(busybox_os, paths, small, make_instance())
    assert small.read_bytes() == bytes(8 * MIB)                 # left untouched
    inst = make_instance()
    env = osdef.os_environment(busybox_os, encode(inst), [str(tmp_path / "missing.img")])
    with pytest.raises(errors.OSError_, match="does not exist"):
        osdef.run_os_script(busybox_os, "create", env, paths, inst.name, timeout=60)
    inst0 = make_instance().model_copy(update={"disks": []})
    env0 = osdef.os_environment(busybox_os, encode(inst0), [])
    with pytest.raises(errors.OSError_, match="at least one disk"):
        osdef.run_os_script(busybox_os, "create", env0, paths, inst.name, timeout=60)


# -- rename ---------------------------------------------------------------------------
def test_rename_changes_hostname_inside(busybox_os: osdef.OSDefinition, paths: Paths,
                                        tmp_path: Path) -> None:
    disk = raw_disk(tmp_path)
    create(busybox_os, paths, disk, make_instance())
    renamed = make_instance().model_copy(update={"name": "web2.example.org"})
    env = osdef.os_environment(busybox_os, encode(renamed), [str(disk)])
    env["OLD_INSTANCE_NAME"] = NAME
    log = osdef.run_os_script(busybox_os, "rename", env, paths, NAME, timeout=60)
    assert f"renamed {NAME} -> web2.example.org" in log.read_text()
    assert debugfs_cat(disk, "/etc/hostname") == "web2.example.org\n"
    assert "127.0.1.1 web2.example.org web2\n" in debugfs_cat(disk, "/etc/hosts")
    out = run_command(["debugfs", "-R", "stat /etc/hostname", str(disk)], timeout=30)
    assert "Mode:  0644" in out.stdout and "User:     0" in out.stdout
    fsck_clean(disk)


def test_rename_refuses_foreign_disk(busybox_os: osdef.OSDefinition, paths: Paths,
                                     tmp_path: Path) -> None:
    disk = raw_disk(tmp_path)
    disk.write_bytes(b"not a file system" * 1000)
    env = osdef.os_environment(busybox_os, encode(make_instance()), [str(disk)])
    env["OLD_INSTANCE_NAME"] = "old"
    with pytest.raises(errors.OSError_, match="not a busybox OS disk|cannot read"):
        osdef.run_os_script(busybox_os, "rename", env, paths, NAME, timeout=60)


# -- export / import ------------------------------------------------------------------
def export_disk(osd: osdef.OSDefinition, paths: Paths, disk: Path, dump: Path
                ) -> bytes:
    """Run export into ``dump``; return what it wrote on ``EXP_SIZE_FD``."""
    size_r, size_w = os.pipe()
    try:
        env = osdef.os_environment(osd, encode(make_instance()), [str(disk)])
        env.update(EXPORT_INDEX="0", EXPORT_DEVICE=str(disk), EXPORT_DISK_PATH=str(disk),
                   EXP_SIZE_FD=str(size_w))
        with open(dump, "wb") as out:
            osdef.run_os_script(osd, "export", env, paths, NAME, timeout=120,
                                component="disk0", stdout_fd=out.fileno(),
                                pass_fds=(size_w,))
        os.close(size_w)
        size_w = -1
        with os.fdopen(size_r, "rb") as fh:
            size_r = -1
            return fh.read()
    finally:
        for fd in (size_r, size_w):
            if fd >= 0:
                os.close(fd)


def import_disk(osd: osdef.OSDefinition, paths: Paths, dump: Path, target: Path) -> Path:
    env = osdef.os_environment(osd, encode(make_instance()), [str(target)])
    env.update(IMPORT_INDEX="0", IMPORT_DEVICE=str(target), IMPORT_DISK_PATH=str(target))
    with open(dump, "rb") as inp:
        return osdef.run_os_script(osd, "import", env, paths, NAME, timeout=120,
                                   component="disk0", stdin_fd=inp.fileno())


def test_export_import_round_trip(busybox_os: osdef.OSDefinition, paths: Paths,
                                  tmp_path: Path) -> None:
    disk = raw_disk(tmp_path)
    create(busybox_os, paths, disk, make_instance())
    dump = tmp_path / "disk0.dump"
    assert export_disk(busybox_os, paths, disk, dump) == f"{64 * MIB}\n".encode()
    assert sha256(dump) == sha256(disk)
    target = raw_disk(tmp_path, "target.img")
    target.write_bytes(os.urandom(MIB) + bytes(63 * MIB))      # old content overwritten
    import_disk(busybox_os, paths, dump, target)
    assert sha256(target) == sha256(disk)


def test_import_into_larger_disk_grows_file_system(busybox_os: osdef.OSDefinition,
                                                   paths: Paths, tmp_path: Path) -> None:
    disk = raw_disk(tmp_path)
    create(busybox_os, paths, disk, make_instance())
    dump = tmp_path / "disk0.dump"
    export_disk(busybox_os, paths, disk, dump)
    target = raw_disk(tmp_path, "big.img", size_mib=96)
    log = import_disk(busybox_os, paths, dump, target)
    assert "growing the file system" in log.read_text()
    fsck_clean(target)
    header = run_command(["dumpe2fs", "-h", str(target)], timeout=30).stdout
    fields = dict(line.split(":", 1) for line in header.splitlines() if ":" in line)
    assert int(fields["Block count"]) * int(fields["Block size"]) == 96 * MIB
    assert debugfs_cat(target, "/etc/hostname") == f"{NAME}\n"


def test_export_of_missing_disk_fails(busybox_os: osdef.OSDefinition, paths: Paths,
                                      tmp_path: Path) -> None:
    env = osdef.os_environment(busybox_os, encode(make_instance()), [str(tmp_path / "x")])
    env["EXPORT_DEVICE"] = str(tmp_path / "missing")
    with open(tmp_path / "out", "wb") as out, \
            pytest.raises(errors.OSError_, match="does not exist"):
        osdef.run_os_script(busybox_os, "export", env, paths, NAME, timeout=60,
                            stdout_fd=out.fileno())


# -- verify ---------------------------------------------------------------------------
def test_verify_parameters(busybox_os: osdef.OSDefinition) -> None:
    osd = busybox_os
    osdef.verify_parameters(osd, "busybox", {}, ["parameters"])
    osdef.verify_parameters(osd, "busybox+tick", {"root_password": "a b:c$d", "dhcp": "yes",
                                                  "ip_prefix": "16"}, ["parameters"])
    for params, message in (({"dhcp": "maybe"}, "invalid value 'maybe' for parameter dhcp"),
                            ({"ip_prefix": "33"}, "invalid value '33' for parameter ip_prefix"),
                            ({"ip_prefix": "x1"}, "invalid value 'x1' for parameter ip_prefix"),
                            ({"root_password": "a\nb"}, "no newlines")):
        with pytest.raises(errors.OSError_, match=message) as exc:
            osdef.verify_parameters(osd, "busybox", params, ["parameters"])
        assert exc.value.ecode == errors.ECODE_INVAL
    with pytest.raises(errors.OSError_, match="not supported by the OS busybox: colour"):
        osdef.verify_parameters(osd, "busybox", {"colour": "red"}, ["parameters"])


def test_verify_script_refuses_unknown_parameter(busybox_os: osdef.OSDefinition) -> None:
    """The script itself refuses what osdef would let through (another caller)."""
    script = busybox_os.script(osdef.SCRIPT_VERIFY)
    res = run_command([script, "parameters"], timeout=30, reset_env=True,
                      env={"OS_API_VERSION": "20", "OSP_COLOUR": "red"},
                      cwd=busybox_os.path)
    assert res.exit_code == 1 and "unknown OS parameter: colour" in res.stderr
    res = run_command([script, "everything"], timeout=30, reset_env=True,
                      env={"OS_API_VERSION": "20"}, cwd=busybox_os.path)
    assert res.exit_code == 1 and "unknown verification 'everything'" in res.stderr
    res = run_command([script, "parameters"], timeout=30, reset_env=True,
                      env={"OS_API_VERSION": "20", "OSP_DHCP": "no"}, cwd=busybox_os.path)
    assert res.exit_code == 0, res.output
