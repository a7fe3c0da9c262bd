"""corral.fileio.write_file_atomic: content, mode, times, and no partial files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from corral.fileio import write_file_atomic


def test_writes_content_mode_and_times(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file"
    write_file_atomic(target, "héllo", mode=0o640, atime=1000.0, mtime=2000.0)
    assert target.read_text(encoding="utf-8") == "héllo"
    st = target.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime == 2000.0
    write_file_atomic(target, b"new", durable=False)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(target.parent)) == ["file"]


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("old")
    # An impossible time fails after the temporary file was written.
    with pytest.raises((OverflowError, ValueError)):
        write_file_atomic(target, "new", atime=float("inf"), mtime=float("inf"))
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["file"]
