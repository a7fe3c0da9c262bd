"""Fixtures of the transfer tests: two node roots of one cluster CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .nodes import Nodes, node_pair


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    """node1 and node2 (127.0.2.1/2) with certificates of one CA; every
    transfer left over is stopped and removed afterwards."""
    yield from node_pair(tmp_path)
