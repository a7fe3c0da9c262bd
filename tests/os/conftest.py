"""Fixtures of the OS definition boot tests: the guest kernel, a node's paths.

The guest kernel is prepared once into the cache the KVM tests share
(``/var/tmp/corral-test-guest``, override with ``CORRAL_TEST_GUEST_ROOT``);
``prepare_guest_kernel`` is idempotent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.guestkernel import GuestKernel, prepare_guest_kernel
from corral.paths import Paths

GUEST_CACHE = Path(os.environ.get("CORRAL_TEST_GUEST_ROOT", "/var/tmp/corral-test-guest"))


@pytest.fixture(scope="session")
def guest_kernel() -> GuestKernel:
    return prepare_guest_kernel(Paths.from_env(GUEST_CACHE))


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "root")
