"""The transfer process's command line and its failures before any data flows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from corral.impexp import DAEMON_MODULE, IO_FILE
from corral.impexp.daemon import parse_args
from corral.impexp.endpoints import IoSpec
from corral.impexp.status import read_status

from .nodes import NODE2_IP


def test_parse_args() -> None:
    args = parse_args(["/d", "import", "--key", "k", "--cert", "c", "--ca", "a", "--host",
                       NODE2_IP, "--io", "/d/io.json", "--magic", "abcde",
                       "--expected-size", "64", "--compress", "zstd"])
    assert (args.mode, args.port, args.expected_size, args.compress) == \
        ("import", 0, 64, "zstd")
    base = ["/d", "export", "--key", "k", "--cert", "c", "--ca", "a", "--host", NODE2_IP,
            "--io", "/d/io.json"]
    with pytest.raises(SystemExit):
        parse_args([*base, "--magic", "bad magic!", "--port", "1"])
    with pytest.raises(SystemExit):
        parse_args([*base, "--magic", "abcde"])           # export without --port


def run_daemon(status_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", DAEMON_MODULE, str(status_dir), *extra],
                          capture_output=True, text=True, timeout=60, check=False)


def test_missing_key_reported_in_status(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.write_bytes(b"x" * 4096)
    (tmp_path / IO_FILE).write_text(IoSpec(kind="raw", path=str(disk)).model_dump_json())
    missing = str(tmp_path / "missing.pem")
    res = run_daemon(tmp_path, "export", "--key", missing, "--cert", missing, "--ca", missing,
                     "--host", NODE2_IP, "--port", "9", "--io", str(tmp_path / IO_FILE),
                     "--magic", "abcdef")
    assert res.returncode == 1
    st = read_status(tmp_path)
    assert st is not None and st.done and st.exit_status == 1
    assert "Cannot load TLS key" in (st.error_message or "")
    assert not st.connected


def test_unreadable_endpoint(tmp_path: Path) -> None:
    res = run_daemon(tmp_path, "import", "--key", "k", "--cert", "c", "--ca", "a", "--host",
                     NODE2_IP, "--io", str(tmp_path / "nothere.json"), "--magic", "abcdef")
    assert res.returncode == 1
    assert "Cannot read the endpoint description" in res.stderr
    st = read_status(tmp_path)
    assert st is not None and st.done and st.exit_status == 1
    assert "Cannot read the endpoint description" in (st.error_message or "")
