"""Node side of out-of-band management: which programs may run, and how."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral import errors
from corral.backend.oob import check_oob_program, run_oob
from corral.paths import Paths

SCRIPT = """#!/bin/sh
echo "$1 $2" >> "$(dirname "$0")/calls"
case "$1" in
  power-status) echo '{"powered": true}' ;;
  health) echo '[["fan", "OK"]]' ;;
  power-cycle) echo "cannot cycle" >&2; exit 3 ;;
  power-on) sleep 5 ;;
esac
"""


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "oob"
    path.write_text(SCRIPT)
    path.chmod(0o755)
    return path


def test_runs_the_program_with_command_and_node(program: Path, tmp_path: Path) -> None:
    out = run_oob(Paths(tmp_path), str(program), "power-status", "node2", 10)
    assert out.strip() == '{"powered": true}'
    assert (tmp_path / "calls").read_text() == "power-status node2\n"


def test_failure_and_timeout_are_rpc_failures(program: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.RPCFail, match="exited with code 3; output: cannot cycle"):
        run_oob(Paths(tmp_path), str(program), "power-cycle", "node2", 10)
    with pytest.raises(errors.RPCFail, match="timed out after 1 s"):
        run_oob(Paths(tmp_path), str(program), "power-on", "node2", 1)


@pytest.mark.parametrize(("command", "node", "timeout", "message"), [
    ("reboot", "node2", 10, "Unknown out-of-band command"),
    ("health", "../etc", 10, "Invalid node name"),
    ("health", "-rf", 10, "Invalid node name"),
    ("health", "node2", 0, "Invalid out-of-band timeout"),
    ("health", "node2", True, "Invalid out-of-band timeout"),
])
def test_bad_arguments_are_refused_before_running(program: Path, tmp_path: Path, command: str,
                                                  node: str, timeout: object,
                                                  message: str) -> None:
    with pytest.raises(errors.RPCFail, match=message):
        run_oob(Paths(tmp_path), str(program), command, node, timeout)  # type: ignore[arg-type]
    assert not (tmp_path / "calls").exists()


def test_only_safe_programs_may_run(program: Path, tmp_path: Path) -> None:
    for bad in ("oob", "relative/oob", f"{tmp_path}/../{tmp_path.name}/oob", "", None, 3):
        with pytest.raises(errors.RPCFail, match="Invalid out-of-band program path"):
            check_oob_program(bad)
    with pytest.raises(errors.RPCFail, match="not found"):
        check_oob_program(str(tmp_path / "missing"))
    with pytest.raises(errors.RPCFail, match="not an executable file"):
        check_oob_program(str(tmp_path))
    program.chmod(0o644)
    with pytest.raises(errors.RPCFail, match="not an executable file"):
        check_oob_program(str(program))
    for mode in (0o775, 0o757):
        program.chmod(mode)
        with pytest.raises(errors.RPCFail, match="may be changed by other users"):
            check_oob_program(str(program))
    program.chmod(0o755)
    assert check_oob_program(str(program)) == str(program)
    assert os.access(program, os.X_OK)
