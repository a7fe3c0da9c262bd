"""Fixtures for config store tests: a real SQLite store in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import make_store

from corral.config import ConfigStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConfigStore]:
    s = make_store(tmp_path / "config.db")
    yield s
    s.close()
