"""Fixtures: real noded processes on 127.0.1.x with their own state roots."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from corral.paths import Paths

from .nodedproc import NodedProcess, make_master


@pytest.fixture
def noded() -> Iterator[Callable[..., NodedProcess]]:
    """Factory ``noded(root, addr, token=None, port=None) -> started NodedProcess``;
    every daemon is stopped at the end of the test, even on failure."""
    started: list[NodedProcess] = []

    def start(root: Path, addr: str, token: str | None = None,
              port: int | None = None) -> NodedProcess:
        proc = NodedProcess(root, addr, port=port, token=token)
        started.append(proc)
        return proc.start()

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def master(tmp_path: Path) -> Paths:
    """A master state root with a cluster CA and the master's certificates."""
    return make_master(tmp_path / "master")
