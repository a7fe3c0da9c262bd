"""Help texts of every command (whatever ``main._GROUPS`` lists when the test
runs) and the man pages generated from them (cli/manpages.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click
import pytest

from corral.cli import main, manpages


def _all_commands() -> list[tuple[str, click.Command]]:
    commands: list[tuple[str, click.Command]] = [("corral", main.corral)]
    for name in sorted(main._GROUPS):
        commands.append((name, main.load_group(name)))
        for path, command in manpages.iter_commands(main.load_group(name)):
            commands.append((" ".join((name, *path)), command))
    return commands


def _undocumented(command: click.Command) -> list[str]:
    """Options without help, and arguments neither with help (options.argument)
    nor named in the command's help text."""
    ctx = click.Context(command)
    missing = []
    for param in command.params:
        if isinstance(param, click.Option):
            if not param.hidden and not (param.help or "").strip():
                missing.append("/".join(param.opts))
        elif isinstance(param, click.Argument):
            metavar = param.make_metavar(ctx).strip("[].")
            if not (getattr(param, "help", None) or metavar in (command.help or "")):
                missing.append(metavar)
    return missing


def test_every_option_and_argument_has_help() -> None:
    commands = _all_commands()
    assert len(commands) > 80
    missing = {path: found for path, command in commands
               if (found := _undocumented(command))}
    assert missing == {}, (
        "options without help= (write one, from Ganeti's man page) and arguments "
        f"without help (use corral.cli.options.argument): {missing}")
    assert all((command.help or "").strip() for _, command in commands), \
        [path for path, command in commands if not (command.help or "").strip()]


def test_undocumented_option_is_found() -> None:
    """The walk above does fail on a command that lacks help texts."""
    @click.command()
    @click.argument("thing")
    @click.option("--flag", is_flag=True)
    @click.option("--ok", is_flag=True, help="Documented")
    def bare(thing: str, flag: bool, ok: bool) -> None:
        """Do it."""

    assert _undocumented(bare) == ["THING", "--flag"]


def test_escape_keeps_roff_control_characters_literal() -> None:
    assert manpages.escape(".hidden\n'quote\nback\\slash") == \
        "\\&.hidden\n\\&'quote\nback\\eslash"


def _render(page: Path) -> tuple[str, str]:
    """(text as man shows it, groff warnings) of ``page``."""
    env = {**os.environ, "LC_ALL": "C", "MANWIDTH": "250", "MAN_KEEP_FORMATTING": ""}
    shown = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                           env=env, timeout=60, check=True)
    lint = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    return shown.stdout, lint.stderr + shown.stderr


def test_man_pages_render_and_list_every_option(tmp_path: Path) -> None:
    written = manpages.write_pages(tmp_path)
    by_name = {p.name: p for p in written}
    tools = manpages.tools()
    assert {"gnt-instance", "gnt-node", "gnt-cluster", "gnt-job"} <= set(tools)
    assert set(by_name) == {f"{t}.8" for t in tools} | {"corral.8"}
    documented_groups = set()
    for tool, group in [*tools.items(), ("corral", None)]:
        text, warnings = _render(by_name[f"{tool}.8"])
        assert warnings == "", f"{tool}: {warnings}"
        assert f"{tool} - " in text and "SEE ALSO" in text
        groups = [group] if group else [g for g in main._GROUPS if g not in tools.values()]
        for name in groups:
            documented_groups.add(name)
            for path, command in manpages.iter_commands(main.load_group(name)):
                prefix = "" if group else name + " "
                assert f"{tool} {prefix}{' '.join(path)} " in text, (tool, path)
                for param in command.params:
                    for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", []):
                        if isinstance(param, click.Option) and not param.hidden:
                            assert opt in text, (tool, path, opt)
                    if isinstance(param, click.Option) and param.help and not param.hidden:
                        assert " ".join(param.help.split()[:4]) in " ".join(text.split()), \
                            (tool, path, param.help)
        if group in ("instance", "node", "job"):
            assert "QUERY FILTERS" in text and "not master_candidate" in text
    assert documented_groups == set(main._GROUPS)


def test_main_writes_pages_and_rejects_bad_usage(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert manpages.main([]) == 2
    assert "usage:" in capsys.readouterr().err
    assert manpages.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out.split()
    assert str(tmp_path / "man8" / "gnt-instance.8") in out
    assert (tmp_path / "man8" / "gnt-instance.8").read_text().startswith(".TH GNT\\-INSTANCE 8")
