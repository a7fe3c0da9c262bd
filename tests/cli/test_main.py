"""The console entry points (cli/main.py) as a shell runs them: a reader that
closes the pipe early, and the message when no master daemon answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.cli.output import EXIT_BROKEN_PIPE

VENV_BIN = Path(sys.executable).parent


def _env(root: Path | str) -> dict[str, str]:
    env = dict(os.environ)
    env["CORRAL_ROOT"] = str(root)
    return env


def _run_into_closed_pipe(argv: list[str], root: Path | str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with stdout on a pipe whose reader has already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([str(VENV_BIN / argv[0]), *argv[1:]], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120,
                              env=_env(root), check=False)
    finally:
        os.close(write_end)


@pytest.mark.integration
@pytest.mark.parametrize("argv", [["gnt-job", "list"], ["gnt-instance", "list-fields"],
                                  ["gnt-instance", "--help"], ["corral", "node", "list"]])
def test_closed_stdout_ends_quietly(shared_cluster: Any, argv: list[str]) -> None:
    res = _run_into_closed_pipe(argv, shared_cluster.master_paths.root)
    assert res.stderr == ""
    assert res.returncode == EXIT_BROKEN_PIPE


@pytest.mark.integration
def test_pipe_into_head(shared_cluster: Any) -> None:
    """``gnt-instance list-fields | head -n 2`` in a shell: two lines, no traceback."""
    gnt = VENV_BIN / "gnt-instance"
    script = f'"{gnt}" list-fields | head -n 2; echo "status=${{PIPESTATUS[0]}}"'
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                         env=_env(shared_cluster.master_paths.root), check=False)
    lines = res.stdout.splitlines()
    assert len(lines) == 3 and lines[0].split()[0] == "Name"
    assert lines[2] in ("status=0", f"status={EXIT_BROKEN_PIPE}")
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr
    assert res.stderr == ""


@pytest.mark.parametrize("how", ["env", "option"])
def test_no_master_daemon_says_where_it_looked(tmp_path: Path, how: str) -> None:
    gnt = str(VENV_BIN / "gnt-cluster")
    argv = [gnt, "getmaster"] if how == "env" else [gnt, "--root", str(tmp_path), "getmaster"]
    env = _env(tmp_path if how == "env" else "/nonexistent-root")
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env,
                         check=False)
    assert res.returncode == 1
    socket = tmp_path / "var/run/corral/socket/corral-master"
    assert f"Cannot communicate with the master daemon at {socket}" in res.stderr
    assert f"state root {tmp_path} (from --root, else $CORRAL_ROOT" in res.stderr
    assert "CORRAL_ROOT must name the state root of the master node" in res.stderr


# Modules the command-line tools must not load to start or to send a request:
# the opcode models (validation is masterd's), web frameworks, httpx (its CLI
# pulls in rich and pygments), and yaml (only ``info`` output needs it).
HEAVY = ("corral.opcodes", "pydantic", "fastapi", "starlette", "uvicorn", "httpx", "httpcore",
         "rich", "pygments", "yaml", "corral.rapi")

_PROBE = """
import contextlib, io, json, sys
import corral.cli.main as m
for name in m._GROUPS:
    group = m.load_group(name)
    with contextlib.redirect_stdout(io.StringIO()):
        group.main(["--help"], prog_name=name, standalone_mode=False)
import corral.masterd.client
print(json.dumps(sorted(sys.modules)))
"""


def test_cli_start_loads_no_heavy_module() -> None:
    res = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    loaded = json.loads(res.stdout)
    assert "corral.cli.instance" in loaded and "corral.masterd.client" in loaded
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY
             or any(m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
