"""backend.hooks: run-parts semantics, status, environment, timeouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import constants as C
from corral import errors
from corral.backend.hooks import hooks_runner
from corral.paths import Paths


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "root")
    p.ensure_dirs()
    return p


def _script(directory: Path, name: str, body: str, mode: int = 0o755) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(body)
    path.chmod(mode)
    return path


def test_run_parts_semantics(paths: Paths) -> None:
    d = paths.hooks_dir / "instance-add-pre.d"
    _script(d, "20-fail", "#!/bin/sh\necho failing >&2\nexit 3\n")
    _script(d, "10-ok", "#!/bin/sh\necho hello $GANETI_INSTANCE_NAME\n")
    _script(d, "30-noexec", "#!/bin/sh\necho never\n", mode=0o644)
    _script(d, "40-bad.sh", "#!/bin/sh\necho never\n")          # '.' not allowed
    _script(d, "05 space", "#!/bin/sh\necho never\n")
    (d / "50-dir").mkdir()
    _script(d, "60-noshebang", "echo hi\n")
    res = hooks_runner(paths, "instance-add", "pre", {"GANETI_INSTANCE_NAME": "inst1"})
    assert res == [
        ["instance-add-pre.d/05 space", C.HKR_SKIP, ""],
        ["instance-add-pre.d/10-ok", C.HKR_SUCCESS, "hello inst1"],
        ["instance-add-pre.d/20-fail", C.HKR_FAIL, "failing"],
        ["instance-add-pre.d/30-noexec", C.HKR_SKIP, ""],
        ["instance-add-pre.d/40-bad.sh", C.HKR_SKIP, ""],
        ["instance-add-pre.d/50-dir", C.HKR_SKIP, ""],
        res[6],
    ]
    name, status, output = res[6]
    assert (name, status) == ("instance-add-pre.d/60-noshebang", C.HKR_FAIL)
    assert output.startswith("Hook script execution error:")


def test_missing_directory_and_other_phase(paths: Paths) -> None:
    _script(paths.hooks_dir / "node-add-post.d", "10-x", "#!/bin/sh\nexit 0\n")
    assert hooks_runner(paths, "node-add", "pre", {}) == []
    assert hooks_runner(paths, "node-add", "post", {}) == [
        ["node-add-post.d/10-x", C.HKR_SUCCESS, ""]]


def test_environment_is_cleared(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "s3cr3t")
    _script(paths.hooks_dir / "cluster-verify-post.d", "00-env",
            "#!/bin/sh\nenv\nread x && echo stdin-not-empty\nexit 0\n")
    env = {"GANETI_HOOKS_PHASE": "post", "GANETI_OP_CODE": "OP_CLUSTER_VERIFY_GROUP",
           "GANETI_NUM": 5, "GANETI_EMPTY": None}
    [[_, status, output]] = hooks_runner(paths, "cluster-verify", "post", env)
    assert status == C.HKR_SUCCESS
    lines = output.splitlines()
    names = {line.split("=", 1)[0] for line in lines} - {"PWD", "SHLVL", "_"}
    assert names == {"PATH", "GANETI_HOOKS_PHASE", "GANETI_OP_CODE", "GANETI_NUM",
                     "GANETI_EMPTY"}
    assert "PATH=/sbin:/bin:/usr/sbin:/usr/bin" in lines
    assert "GANETI_NUM=5" in lines and "GANETI_EMPTY=" in lines
    assert "s3cr3t" not in output and "stdin-not-empty" not in output


@pytest.mark.parametrize("env", [{"PATH": "/evil"}, {"LD_PRELOAD": "x"}, {"ganeti_x": "1"},
                                 {"GANETI_": "1"}, {"GANETI_A": "a\x00b"}, ["GANETI_A"]])
def test_refuses_non_ganeti_environment(paths: Paths, env) -> None:
    _script(paths.hooks_dir / "node-add-pre.d", "10-x", "#!/bin/sh\ntouch ran\n")
    with pytest.raises(errors.RPCFail):
        hooks_runner(paths, "node-add", "pre", env)


@pytest.mark.parametrize("hpath, phase", [("../etc", "pre"), ("a/b", "pre"), ("", "pre"),
                                          ("node-add", "during"), ("node-add", "../pre")])
def test_refuses_bad_hpath_or_phase(paths: Paths, hpath: str, phase: str) -> None:
    with pytest.raises(errors.RPCFail):
        hooks_runner(paths, hpath, phase, {})


def test_timeout_fails_the_script(paths: Paths) -> None:
    _script(paths.hooks_dir / "node-add-pre.d", "10-slow", "#!/bin/sh\necho start\nsleep 30\n")
    [[_, status, output]] = hooks_runner(paths, "node-add", "pre", {}, timeout=0.5)
    assert status == C.HKR_FAIL
    assert "timed out" in output
