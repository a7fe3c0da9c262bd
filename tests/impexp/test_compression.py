"""Compression tools of the transfer stream."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral import errors
from corral.impexp import compression


def test_known_tools() -> None:
    assert compression.check_known("none") == "none"
    assert compression.check_known("zstd") == "zstd"
    with pytest.raises(errors.OpPrereqError, match="Unknown compression tool 'rar'") as err:
        compression.check_known("rar")
    assert err.value.ecode == errors.ECODE_INVAL


def test_argv() -> None:
    assert compression.argv_for("none", decompress=True) is None
    argv = compression.argv_for("gzip-fast", decompress=False)
    assert argv is not None and os.path.isabs(argv[0]) and argv[1:] == ["-1", "-c"]
    assert compression.argv_for("zstd", decompress=True)[1:] == ["-q", "-d", "-c"]


def test_missing_program(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(errors.OpPrereqError, match="'zstd'.*not installed") as err:
        compression.argv_for("zstd", decompress=False)
    assert err.value.ecode == errors.ECODE_ENVIRON
