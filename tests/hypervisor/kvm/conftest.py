"""Fixtures of the KVM hypervisor tests: guest kernel, root disks, state roots.

The guest kernel is prepared once into a stable cache
(``/var/tmp/corral-test-guest``, override with ``CORRAL_TEST_GUEST_ROOT``) so
repeated runs reuse it; ``prepare_guest_kernel`` is idempotent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.guestkernel import GuestKernel, prepare_guest_kernel
from corral.hypervisor.base import BlockDevice
from corral.hypervisor.kvm import KVMHypervisor
from corral.hypervisor.kvm.console import SerialReader
from corral.objects import NIC, Instance
from corral.paths import Paths
from corral.process import run_command

from .kvm_guest_image import LOGIN_PROMPT, build_root_disk
from .kvm_helpers import Booted, kill_leftovers

GUEST_CACHE = Path(os.environ.get("CORRAL_TEST_GUEST_ROOT", "/var/tmp/corral-test-guest"))
BOOT_TIMEOUT = 90


@pytest.fixture(scope="session")
def guest_kernel() -> GuestKernel:
    return prepare_guest_kernel(Paths.from_env(GUEST_CACHE))


@pytest.fixture(scope="session")
def root_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_root_disk(tmp_path_factory.mktemp("guestdisk") / "root.img")


@pytest.fixture
def state_root() -> Iterator[Path]:
    """A short state root (unix socket paths must stay under 108 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="ck", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def hv(state_root: Path) -> Iterator[KVMHypervisor]:
    hyp = KVMHypervisor(Paths.from_env(state_root))
    yield hyp
    kill_leftovers(hyp)


@pytest.fixture
def disk_copy(root_image: Path, state_root: Path) -> Path:
    """A private copy of the root disk (two QEMUs cannot share a writable image)."""
    dest = state_root / "disk0.img"
    res = run_command(["cp", "--sparse=always", str(root_image), str(dest)], timeout=60)
    assert not res.failed, res.output
    return dest


@pytest.fixture
def make_instance(guest_kernel: GuestKernel) -> Callable[..., Instance]:
    def make(name: str | None = None, hvparams: dict | None = None,
             beparams: dict | None = None, nics: list[NIC] | None = None,
             **kwargs: object) -> Instance:
        hvp = {"kernel_path": str(guest_kernel.kernel_path),
               "initrd_path": str(guest_kernel.initrd_path),
               "root_path": "/dev/vda", "kernel_args": "ro quiet"}
        hvp.update(hvparams or {})
        return Instance(name=name or f"inst-{uuid.uuid4().hex[:6]}", primary_node="node1",
                        hypervisor="kvm", hvparams=hvp,
                        beparams={"maxmem": 128, "minmem": 128, "vcpus": 1, **(beparams or {})},
                        nics=nics or [], **kwargs)
    return make


@pytest.fixture
def boot() -> Iterator[Callable[..., Booted]]:
    readers: list[SerialReader] = []

    def start(hv: KVMHypervisor, instance: Instance, disks: list[BlockDevice],
              wait: bool = True) -> Booted:
        hv.start_instance(instance, disks, startup_paused=True)
        serial = SerialReader(hv.dirs.serial_socket(instance.name), reconnect=True)
        readers.append(serial)
        hv._monitor(instance.name).cont()
        if wait:
            serial.wait_for(LOGIN_PROMPT, BOOT_TIMEOUT)
        return Booted(hv, instance, serial)

    yield start
    for r in readers:
        r.close()
