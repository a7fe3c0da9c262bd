"""Development clusters (devcluster.py): up, replication to candidates, down."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from corral import daemons, devcluster, errors
from corral.config import ConfigStore
from corral.masterd.client import MasterClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free(ip: str, port: int) -> bool:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _replica_tags(root: str) -> list[str] | None:
    db = Path(root) / "var/lib/corral/config.db"
    if not db.exists():
        return None
    store = ConfigStore.open(db)
    try:
        return list(store.get_cluster().tags)
    except errors.ConfigurationError:
        return None
    finally:
        store.close()


def test_three_nodes_up_and_down(short_tmp: Path, loopback_base: Any) -> None:
    base = loopback_base(3)
    directory = short_tmp / "dc"
    try:
        dev = devcluster.up(3, directory, base=base, cluster_name="dev3")
        state = json.loads((directory / "devcluster.json").read_text())
        assert state["cluster_name"] == "dev3"
        assert [(n["name"], n["ip"]) for n in state["nodes"]] == \
            [(f"node{k}", f"{base}.{k}") for k in (1, 2, 3)]
        for node in dev.nodes:
            paths = node.paths
            assert daemons.daemon_running(paths, daemons.NODED), node.name
            link = paths.default_shared_file_storage_dir
            assert link.is_symlink() and link.resolve() == directory / "shared-file-storage"
        assert daemons.daemon_running(dev.master_paths, daemons.MASTERD)
        assert not any(daemons.daemon_running(n.paths, daemons.MASTERD) for n in dev.nodes[1:])

        with MasterClient(dev.master_paths) as client:
            rows = client.query_nodes(None, ["name", "pip", "master_candidate"])
            assert rows == [[f"node{k}", f"{base}.{k}", True] for k in (1, 2, 3)]
            # A config change reaches the other master candidates' replicas.
            client.wait_job(client.submit_job([{"OP_ID": "OP_TAGS_SET", "kind": "cluster",
                                                "tags": ["replicated"]}]), timeout=60)
        deadline = time.monotonic() + 20
        while not all(_replica_tags(n.root) == ["replicated"] for n in dev.nodes[1:]):
            assert time.monotonic() < deadline, "config change not replicated"
            time.sleep(0.2)

        # masterd refuses to run on a master candidate (it has a replica).
        with pytest.raises(errors.CorralError, match="not the master node"):
            daemons.start_masterd(dev.nodes[1].paths)
        assert not daemons.daemon_running(dev.nodes[1].paths, daemons.MASTERD)

        # A file on the shared storage is visible from every node.
        (dev.nodes[1].paths.default_shared_file_storage_dir / "probe").write_text("hi")
        assert (dev.nodes[2].paths.default_shared_file_storage_dir / "probe").read_text() == "hi"
    finally:
        notes = devcluster.down(directory)
    assert notes == [], notes
    assert devcluster._processes_using(directory.resolve()) == []
    for k in (1, 2, 3):
        root = directory / f"node{k}"
        assert not (root / "var/run/corral/noded.pid").exists()
        assert not (root / "var/run/corral/masterd.pid").exists()
        assert not (root / "var/run/corral/socket/corral-master").exists()
        assert _free(f"{base}.{k}", 1811)
    assert _free(f"{base}.1", 5080)
    assert directory.exists() and (directory / "devcluster.json").exists()
    assert devcluster.down(directory) == []          # idempotent
    devcluster.down(directory, purge=True)
    assert not directory.exists()


def test_down_kills_leftover_processes(short_tmp: Path, loopback_base: Any) -> None:
    base = loopback_base(1)
    directory = short_tmp / "dc"
    devcluster.up(1, directory, base=base)
    stray = subprocess.Popen(["sleep", "300"], cwd=directory / "node1")
    holder = subprocess.Popen(["sleep", "300"],
                              stdout=open(directory / "held-open.log", "w"))  # noqa: SIM115
    try:
        notes = devcluster.down(directory)
        assert stray.wait(10) is not None and holder.wait(10) is not None
        assert any(str(stray.pid) in n for n in notes)
        assert any(str(holder.pid) in n for n in notes)
        assert devcluster._processes_using(directory.resolve()) == []
    finally:
        for proc in (stray, holder):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_up_refuses_existing_directory(short_tmp: Path, loopback_base: Any) -> None:
    base = loopback_base(1)
    directory = short_tmp / "dc"
    devcluster.up(1, directory, base=base)
    try:
        with pytest.raises(errors.OpPrereqError) as info:
            devcluster.up(1, directory, base=base)
        assert info.value.ecode == errors.ECODE_STATE
    finally:
        devcluster.down(directory, purge=True)


def test_failed_up_stops_everything(short_tmp: Path, loopback_base: Any) -> None:
    """node2 cannot start (its address is taken): up fails and leaves nothing running."""
    base = loopback_base(2)
    directory = short_tmp / "dc"
    blocker = socket.socket()
    blocker.bind((f"{base}.2", 1811))
    blocker.listen(1)
    try:
        with pytest.raises(errors.CorralError):
            devcluster.up(2, directory, base=base)
    finally:
        blocker.close()
    assert devcluster._processes_using(directory.resolve()) == []
    assert _free(f"{base}.1", 1811) and _free(f"{base}.1", 5080)
    devcluster.down(directory, purge=True)


def test_invalid_arguments(short_tmp: Path) -> None:
    with pytest.raises(errors.OpPrereqError):
        devcluster.up(0, short_tmp / "x")
    with pytest.raises(errors.OpPrereqError):
        devcluster.up(2, short_tmp / "x", base="10.0.0")
    assert not (short_tmp / "x").exists()


def test_down_of_unknown_directory_is_harmless(short_tmp: Path) -> None:
    assert devcluster.down(short_tmp / "never-created") == []
    assert os.path.exists(short_tmp)


def test_down_removes_recorded_taps_and_mounts(short_tmp: Path) -> None:
    """Taps recorded by the KVM hypervisor and mounts below DIR do not survive down.

    No daemons are needed: down must clean up after a crashed cluster too.
    """
    directory = short_tmp / "dc"
    nic_dir = directory / "node1/var/run/corral/kvm-hypervisor/nic/inst1"
    nic_dir.mkdir(parents=True)
    tap = f"cortap{90000 + os.getpid() % 9999}"
    subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    (nic_dir / "0").write_text(tap + "\n")
    (nic_dir / "1").write_text("lo\n")             # never deleted: not a tap
    mnt = directory / "node1/mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "corral-test", str(mnt)], check=True)
    try:
        notes = devcluster.down(directory)
        assert f"deleted tap {tap}" in notes
        assert f"unmounted {mnt}" in notes
        assert not Path(f"/sys/class/net/{tap}").exists()
        assert Path("/sys/class/net/lo").exists()
        assert str(mnt) not in Path("/proc/mounts").read_text()
        assert devcluster.down(directory) == []
    finally:
        if Path(f"/sys/class/net/{tap}").exists():
            subprocess.run(["ip", "link", "delete", tap], check=False)
        if str(mnt) in Path("/proc/mounts").read_text():
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_shared_fixtures(dev_cluster: Any, master_client: Any, run_cli: Any) -> None:
    """The conftest fixtures other tests build on: a cluster, a client, the CLI."""
    cluster = dev_cluster(1, cluster_name="fixture-test")
    assert cluster.master.ip.startswith("127.")
    client = master_client(cluster)
    assert client.query_config_values(["cluster_name"]) == ["fixture-test"]
    result = run_cli(["gnt-cluster", "getmaster"], cluster)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "node1"
    result = run_cli(["gnt-cluster", "getmaster"], cluster.master_paths.root / "nowhere")
    assert result.returncode != 0
    assert "Cannot communicate with the master daemon" in result.stderr + result.stdout
