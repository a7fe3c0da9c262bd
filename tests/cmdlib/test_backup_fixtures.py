"""Shared fixtures of the backup tests (not a test module itself).

``bcluster``: a 3-node dev cluster (fake hypervisor, file disks) per test
module, with test OS definitions on every node whose import/export scripts
really move the data:

* ``corral-dd``: ``export`` announces the size and ``cat``s the disk,
  ``import`` ``dd``s stdin onto the disk;
* ``corral-slow``: ``export`` sends 1 MiB every 0.2 s (to kill it midway);
* ``corral-failexp``: ``export`` sends 1 MiB, then fails;
* ``corral-failimp``: ``import`` reads a little, then fails.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from corral import errors
from corral.masterd.client import MasterClient

MIB = 1024 * 1024
JOB_TIMEOUT = 300.0
DD_OS = "corral-dd"
SLOW_OS = "corral-slow"
FAILEXP_OS = "corral-failexp"
FAILIMP_OS = "corral-failimp"

_EXPORT = ('set -e\nstat -L -c %s "$EXPORT_DEVICE" >&$EXP_SIZE_FD\n'
           'exec cat "$EXPORT_DEVICE"\n')
_IMPORT = 'set -e\nexec dd of="$IMPORT_DEVICE" bs=1M conv=notrunc status=none\n'
_SLOW_EXPORT = """set -e
size=$(stat -L -c %s "$EXPORT_DEVICE")
echo $size >&$EXP_SIZE_FD
i=0
while [ $i -lt $((size / 1048576)) ]; do
  dd if="$EXPORT_DEVICE" bs=1M skip=$i count=1 status=none
  sleep 0.2
  i=$((i + 1))
done
"""
_FAIL_EXPORT = ('dd if="$EXPORT_DEVICE" bs=1M count=1 status=none\n'
                'echo "simulated export failure" >&2\nexit 1\n')
_FAIL_IMPORT = ('dd bs=1M count=1 status=none >/dev/null\n'
                'echo "simulated import failure" >&2\nexit 1\n')
_OK = "exit 0\n"


def install_os(os_dir: Path, name: str, export: str = _EXPORT, imp: str = _IMPORT) -> None:
    d = os_dir / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "ganeti_api_version").write_text("20\n")
    (d / "parameters.list").write_text("")
    for script, body in (("create", _OK), ("rename", _OK), ("verify", _OK),
                         ("export", export), ("import", imp)):
        (d / script).write_text("#!/bin/sh\n" + body)
        (d / script).chmod(0o755)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            out.append(int(entry))
    return out


def processes_below(directory: str, needle: bytes) -> list[int]:
    """Live processes whose command line mentions ``directory`` and ``needle``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X") and directory.encode() in argv and needle in argv:
            out.append(int(entry))
    return out


class BackupEnv:
    """A dev cluster, its master client and helpers for export tests."""

    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.client = MasterClient(dev.master_paths, timeout=120.0)

    # -- jobs ---------------------------------------------------------------------
    def run(self, op: dict[str, Any], log: list[Any] | None = None) -> Any:
        job_id = self.client.submit_job([op])

        def feedback(entry: tuple[Any, str, Any]) -> None:
            if log is not None:
                log.append(entry[2])

        return self.client.wait_job(job_id, feedback, timeout=JOB_TIMEOUT)[0]

    def fail(self, op: dict[str, Any], log: list[Any] | None = None) -> errors.CorralError:
        try:
            result = self.run(op, log)
        except errors.CorralError as err:
            return err
        raise AssertionError(f"{op['OP_ID']} unexpectedly succeeded: {result!r}")

    def create(self, name: str, sizes: list[int], os_type: str = DD_OS,
               pnode: str = "node1", **kw: Any) -> None:
        op = {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
              "disks": [{"size": s} for s in sizes], "nics": [{}],
              "disk_template": "file" if sizes else "diskless", "os_type": os_type,
              "pnode": pnode, "name_check": False, "ip_check": False}
        op.update(kw)
        self.run(op)

    def export(self, name: str, target: str, log: list[Any] | None = None,
               **kw: Any) -> Any:
        op = {"OP_ID": "OP_BACKUP_EXPORT", "instance_name": name, "target_node": target,
              "shutdown_timeout": 10}
        op.update(kw)
        return self.run(op, log)

    def import_(self, name: str, pnode: str, log: list[Any] | None = None,
                **kw: Any) -> Any:
        op = {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "import",
              "pnode": pnode, "disks": [], "nics": [], "name_check": False,
              "ip_check": False}
        op.update(kw)
        return self.run(op, log)

    # -- state ----------------------------------------------------------------------
    def info(self, name: str, static: bool = True) -> dict[str, Any]:
        data = self.run({"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": [name],
                         "static": static})
        return data[name]

    def instances(self) -> list[str]:
        return sorted(self.run({"OP_ID": "OP_INSTANCE_QUERY_DATA", "static": True}))

    def status(self, name: str) -> str:
        rows = self.client.query("instance", ["name", "status"])["data"]
        return {r[0][1]: r[1][1] for r in rows}[name]

    def disk_files(self, name: str) -> list[Path]:
        info = self.info(name)
        node = self.dev.node(info["pnode"])
        return [node.paths.real(d["logical_id"][1]) for d in info["disks"]]

    def fill(self, name: str) -> list[str]:
        """Write random data (2 MiB) at the start of every disk; their checksums."""
        out = []
        for path in self.disk_files(name):
            with open(path, "r+b") as fh:
                fh.write(os.urandom(2 * MIB))
            out.append(sha256(path))
        return out

    def shas(self, name: str) -> list[str]:
        return [sha256(p) for p in self.disk_files(name)]

    def exports(self) -> dict[str, list[str]]:
        return self.run({"OP_ID": "OP_BACKUP_QUERY", "nodes": []})

    def export_dir(self, node: str) -> Path:
        return self.dev.node(node).paths.export_dir

    def export_entries(self) -> dict[str, list[str]]:
        """Every entry of every node's export directory (``.new`` and hidden too)."""
        return {n.name: sorted(os.listdir(n.paths.export_dir)) for n in self.dev.nodes}

    def transfer_dirs(self) -> list[str]:
        out = []
        for n in self.dev.nodes:
            if n.paths.impexp_dir.is_dir():
                out += [f"{n.name}:{e}" for e in os.listdir(n.paths.impexp_dir)]
        return out

    def stray_processes(self) -> list[int]:
        """Transfer processes, OS scripts and anything else started with a path
        of this cluster, except its daemons."""
        daemons = set(processes_below(self.dev.directory, b"corral.noded")) | \
            set(processes_below(self.dev.directory, b"corral.masterd")) | \
            set(processes_below(self.dev.directory, b"corral.rapi.main"))
        return sorted(set(processes_below(self.dev.directory, b"")) - daemons)

    def wait_no_strays(self, timeout: float = 20.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while self.stray_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.stray_processes()

    def remove_all(self) -> None:
        for name in self.instances():
            self.run({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                      "ignore_failures": True, "shutdown_timeout": 0})
        for _node, names in self.exports().items():
            for exp in names or []:
                self.run({"OP_ID": "OP_BACKUP_REMOVE", "instance_name": exp})


def make_cluster(factory: Any, n: int = 3, **kw: Any) -> BackupEnv:
    dev = factory(n, **kw)
    for node in dev.nodes:
        install_os(node.paths.os_dir, DD_OS)
        install_os(node.paths.os_dir, SLOW_OS, export=_SLOW_EXPORT)
        install_os(node.paths.os_dir, FAILEXP_OS, export=_FAIL_EXPORT)
        install_os(node.paths.os_dir, FAILIMP_OS, imp=_FAIL_IMPORT)
    return BackupEnv(dev)


@pytest.fixture(scope="module")
def bcluster(module_dev_cluster: Any) -> Iterator[BackupEnv]:
    env = make_cluster(module_dev_cluster)
    try:
        yield env
    finally:
        env.client.close()


@pytest.fixture
def benv(bcluster: BackupEnv) -> Iterator[BackupEnv]:
    """The module's cluster, emptied (instances and exports) after the test."""
    try:
        yield bcluster
    finally:
        bcluster.remove_all()
