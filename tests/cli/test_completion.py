"""Shell completion (cli/completion.py): the scripts setup installs, which
parameters complete names, bash completing real names from a dev cluster,
and quiet nothing when no master answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from corral.cli import completion, main

VENV_BIN = Path(sys.executable).parent


def _params(group: str, *path: str) -> dict[str, click.Parameter]:
    command: click.Command = main.load_group(group)
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return {p.name: p for p in command.params if p.name}


def test_rules_pick_the_parameters_that_name_objects() -> None:
    def kind(group: str, path: tuple[str, ...], name: str) -> str | None:
        return completion.resource_of(group, path, _params(group, *path)[name])

    assert kind("instance", ("startup",), "names") == "instance"
    assert kind("instance", ("modify",), "name") == "instance"
    assert kind("instance", ("add",), "name") is None          # a new name
    assert kind("instance", ("add",), "node_spec") == "node"
    assert kind("instance", ("add",), "group_name") == "group"
    assert kind("instance", ("migrate",), "target_node") == "node"
    assert kind("node", ("modify",), "name") == "node"
    assert kind("node", ("add",), "name") is None
    assert kind("node", ("add",), "group") == "group"
    assert kind("cluster", ("repair-disk-sizes",), "instances") == "instance"
    assert kind("job", ("info",), "ids") is None
    assert kind("instance", ("add",), "os_type") is None


def test_install_covers_every_group_of_corral() -> None:
    assert completion.install(main.load_group("instance")) >= 15
    assert completion.install(main.corral) >= 25
    startup = main.load_group("instance").commands["startup"]
    names = next(p for p in startup.params if p.name == "names")
    assert "shell_complete" in vars(names)


def test_scripts_are_valid_bash_and_zsh(tmp_path: Path) -> None:
    written = completion.write_scripts(tmp_path)
    tools = set(completion.tool_groups())
    assert {"corral", "gnt-instance", "gnt-node"} <= tools
    per_tool = {p.name for p in written if p.parent.name == "completions"}
    assert per_tool == tools
    for shell in completion.SHELLS:
        path = tmp_path / "corral" / f"completion.{shell}"
        text = path.read_text()
        for tool in tools:
            assert completion.complete_var(tool) in text
        res = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True,
                             timeout=30, check=False)
        assert res.returncode == 0, res.stderr
    # zsh registers a completion function for every tool.
    code = (f"autoload -U compinit; compinit -u; source {tmp_path}/corral/completion.zsh; "
            "print ${_comps[gnt-instance]} ${_comps[corral]}")
    res = subprocess.run(["zsh", "-f", "-c", code], capture_output=True, text=True,
                         timeout=30, check=False)
    assert res.stdout.split() == ["_gnt_instance_completion", "_corral_completion"], res.stderr
    assert completion.main([]) == 2


def _bash_complete(script: Path, words: list[str], root: Path | str,
                   timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Complete the last of ``words`` as bash does on TAB: the installed
    script's function with COMP_WORDS/COMP_CWORD, printing COMPREPLY."""
    func = "_" + words[0].replace("-", "_") + "_completion"
    quoted = " ".join(f"'{w}'" for w in words)
    code = (f'source "{script}"; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; '
            f'{func} {words[0]}; printf "%s\\n" "${{COMPREPLY[@]}}"')
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
           "CORRAL_ROOT": str(root)}
    return subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)


def _replies(res: subprocess.CompletedProcess[str]) -> list[str]:
    assert res.returncode == 0 and res.stderr == "", res.stderr
    return sorted(line for line in res.stdout.splitlines() if line)


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("share")
    completion.write_scripts(directory)
    return directory / "corral" / "completion.bash"


def test_commands_and_options_complete_without_master(scripts: Path, tmp_path: Path) -> None:
    assert _replies(_bash_complete(scripts, ["gnt-instance", "reb"], tmp_path)) == ["reboot"]
    assert "--no-start" in _replies(_bash_complete(scripts, ["gnt-instance", "add", "--no-"],
                                                   tmp_path))
    assert _replies(_bash_complete(scripts, ["corral", "inst"], tmp_path)) == ["instance"]


def test_unreachable_master_completes_nothing_quietly(scripts: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    res = _bash_complete(scripts, ["gnt-instance", "startup", ""], tmp_path)
    assert _replies(res) == []
    assert time.monotonic() - start < completion.NAME_TIMEOUT + 10


@pytest.fixture(scope="module")
def named_cluster(module_dev_cluster: Callable[..., Any], ganeti_os_noop: Any
                  ) -> Iterator[Any]:
    cluster = module_dev_cluster(2)
    env = {**os.environ, "CORRAL_ROOT": str(cluster.master_paths.root)}
    for name in ("web1", "web2", "db1"):
        res = subprocess.run([str(VENV_BIN / "gnt-instance"), "add", "-t", "diskless", "-o",
                              "noop", "-n", "node1", "--no-ip-check", "--no-name-check",
                              "--no-start", name], capture_output=True, text=True, env=env,
                             timeout=300, check=False)
        assert res.returncode == 0, res.stdout + res.stderr
    yield cluster


@pytest.mark.integration
def test_bash_completes_names_from_the_master(scripts: Path, named_cluster: Any) -> None:
    root = named_cluster.master_paths.root
    assert _replies(_bash_complete(scripts, ["gnt-instance", "startup", "we"], root)) == \
        ["web1", "web2"]
    assert _replies(_bash_complete(scripts, ["gnt-instance", "info", "d"], root)) == ["db1"]
    assert _replies(_bash_complete(scripts, ["corral", "instance", "remove", "web"], root)) \
        == ["web1", "web2"]
    assert _replies(_bash_complete(scripts, ["gnt-node", "modify", "node"], root)) == \
        ["node1", "node2"]
    assert _replies(_bash_complete(scripts, ["gnt-instance", "add", "-n", "node1:"], root)) \
        == ["node1:node1", "node1:node2"]
    assert _replies(_bash_complete(scripts, ["gnt-instance", "add", "-g", ""], root)) == \
        ["default"]
    # A new instance's name is not completed.
    assert _replies(_bash_complete(scripts, ["gnt-instance", "add", "we"], root)) == []
