"""Shared fixtures and helpers of the instance logical unit tests.

Not a test module itself: ``test_instance_*.py`` import from it. The
``icluster`` fixture is a 2-node dev cluster (fake hypervisor; file,
sharedfile and diskless templates) per test module, with three test OS
definitions installed on every node:

* ``corral-marker``: ``create`` writes ``corral-marker <name> <reinstall>``
  at the start of disk 0; ``rename`` writes ``renamed <old> <new>`` at byte 4096.
* ``corral-fail``: ``create`` fails.
* ``corral-stray``: ``create`` leaves a stray file next to disk 0 and fails,
  so the create's cleanup cannot remove the storage directory.
* Debian's ``noop`` (from ``ganeti-os-noop``, found in the system OS dir).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from corral import errors
from corral.masterd.client import MasterClient

MARKER_OS = "corral-marker"
FAIL_OS = "corral-fail"
STRAY_OS = "corral-stray"
JOB_TIMEOUT = 180.0

_MARKER_CREATE = """#!/bin/sh
set -e
[ "${DISK_COUNT:-0}" -ge 1 ] || exit 0
printf 'corral-marker %s %s\\n' "$INSTANCE_NAME" "${INSTANCE_REINSTALL:-0}" | \\
  dd of="$DISK_0_PATH" conv=notrunc status=none
"""
_MARKER_RENAME = """#!/bin/sh
set -e
[ "${DISK_COUNT:-0}" -ge 1 ] || exit 0
printf 'renamed %s %s\\n' "$OLD_INSTANCE_NAME" "$INSTANCE_NAME" | \\
  dd of="$DISK_0_PATH" bs=1 seek=4096 conv=notrunc status=none
"""
_FAIL_CREATE = """#!/bin/sh
echo "simulated OS install failure" >&2
exit 1
"""
_STRAY_CREATE = """#!/bin/sh
touch "$(dirname "$(readlink -f "$DISK_0_PATH")")/stray"
echo "simulated OS install failure leaving a stray file" >&2
exit 1
"""
_OK = "#!/bin/sh\nexit 0\n"


def _write(path: Path, text: str, executable: bool = False) -> None:
    path.write_text(text)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def install_test_os(os_dir: Path, name: str, create: str, rename: str = _OK) -> None:
    """An API 20 OS definition ``name`` below ``os_dir``."""
    d = os_dir / name
    d.mkdir(parents=True, exist_ok=True)
    _write(d / "ganeti_api_version", "20\n")
    _write(d / "parameters.list", "")
    _write(d / "create", create, True)
    _write(d / "rename", rename, True)
    for script in ("import", "export", "verify"):
        _write(d / script, _OK, True)


@dataclass
class Env:
    """A dev cluster plus a client, with helpers for the tests."""

    dev: Any
    client: MasterClient

    # -- jobs ------------------------------------------------------------------------
    def run(self, *ops: dict[str, Any]) -> list[Any]:
        """Submit one job with ``ops``, wait, return the opcode results."""
        job_id = self.client.submit_job(list(ops))
        return self.client.wait_job(job_id, timeout=JOB_TIMEOUT)

    def run1(self, op: dict[str, Any]) -> Any:
        return self.run(op)[0]

    def fail(self, op: dict[str, Any]) -> errors.CorralError:
        """Submit ``op``, expect it to fail; return the error."""
        try:
            result = self.run1(op)
        except errors.CorralError as err:
            return err
        raise AssertionError(f"{op['OP_ID']} unexpectedly succeeded: {result!r}")

    def create(self, name: str, **kw: Any) -> Any:
        op = {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
              "disks": [], "nics": [], "disk_template": "diskless", "os_type": "noop",
              "pnode": "node1", "name_check": False, "ip_check": False}
        op.update(kw)
        return self.run1(op)

    # -- state -----------------------------------------------------------------------
    def info(self, name: str, static: bool = True) -> dict[str, Any]:
        data = self.run1({"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": [name],
                          "static": static})
        return data[name]

    def instances(self) -> dict[str, tuple[int, str]]:
        """Instance name -> (serial_no, config_state): a config snapshot."""
        data = self.run1({"OP_ID": "OP_INSTANCE_QUERY_DATA", "static": True})
        return {n: (d["serial_no"], d["config_state"]) for n, d in data.items()}

    def node(self, name: str) -> Any:
        return self.dev.node(name)

    def fake_state(self, node: str, instance: str) -> Path:
        """The fake hypervisor's state file (present while the instance runs)."""
        return self.node(node).paths.hypervisor_run_dir("fake") / instance

    def real(self, node: str, virtual: str) -> Path:
        return self.node(node).paths.real(virtual)

    def disk_files(self, name: str) -> list[tuple[str, Path]]:
        """(node, real path) of each disk of a file-based instance."""
        info = self.info(name)
        out = []
        for disk in info["disks"]:
            out.append((info["pnode"], self.real(info["pnode"], disk["logical_id"][1])))
        return out

    def remove_all(self) -> None:
        for name in self.instances():
            self.run1({"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": name,
                       "ignore_failures": True, "shutdown_timeout": 0})


@pytest.fixture(scope="module")
def icluster(module_dev_cluster: Any, ganeti_os_noop: Path) -> Iterator[Env]:
    dev = module_dev_cluster(2)
    for node in dev.nodes:
        os_dir = node.paths.os_dir
        install_test_os(os_dir, MARKER_OS, _MARKER_CREATE, _MARKER_RENAME)
        install_test_os(os_dir, FAIL_OS, _FAIL_CREATE)
        install_test_os(os_dir, STRAY_OS, _STRAY_CREATE)
    client = MasterClient(dev.master_paths, timeout=120.0)
    try:
        yield Env(dev, client)
    finally:
        client.close()


@pytest.fixture
def env(icluster: Env) -> Iterator[Env]:
    """The module's cluster, with every instance removed after the test."""
    try:
        yield icluster
    finally:
        icluster.remove_all()


def read_head(path: Path, size: int = 64, offset: int = 0) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def file_size_mib(path: Path) -> int:
    return os.stat(path).st_size // (1024 * 1024)
