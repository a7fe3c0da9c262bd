"""Shell completion (bash, zsh) of ``corral`` and the ``gnt-*`` tools.

Commands and options complete through click's own mechanism
(``_GNT_INSTANCE_COMPLETE=bash_complete``, driven by the script click
generates). Instance, node, group and network names complete from the
master daemon: :func:`install` gives the arguments and options that name
such objects a ``shell_complete`` asking the master for the names, with a
short timeout and silently nothing when the master cannot be reached (a
completion must never print an error into the command line being typed).

Which parameters name what is decided by rules over parameter names
(:data:`GROUP_PARAMS`, :data:`PARAMS`), so commands added later are covered
without changes here. :func:`install` is only called when a completion is
requested (``main._run``), so plain command starts do not load this module.

Usage: ``python -m corral.cli.completion DIR`` writes the scripts:
``DIR/corral/completion.bash`` and ``DIR/corral/completion.zsh`` (all
tools, to source from a shell's rc file; zsh after ``compinit``) and
``DIR/bash-completion/completions/<tool>`` (loaded on demand by the
bash-completion package when ``DIR`` is in ``XDG_DATA_DIRS``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
from click.shell_completion import CompletionItem, get_completion_class

from corral import errors
from corral.fileio import write_file_atomic

# Seconds a completion waits for the master daemon (connect and reply).
NAME_TIMEOUT = 3.0
SHELLS = ("bash", "zsh")

# Arguments naming an object of the group's own kind ("gnt-node modify NAME").
GROUP_PARAMS: dict[str, dict[str, str]] = {
    "instance": {"name": "instance", "names": "instance"},
    "node": {"name": "node", "names": "node"},
    "group": {"name": "group", "names": "group", "group_name": "group"},
    "network": {"name": "network", "names": "network", "network_name": "network"},
    "backup": {"name": "instance"},
}
# Parameters naming an object in any group (``-n PNODE``, ``-g GROUP``...).
PARAMS: dict[str, str] = {
    "instances": "instance",
    "node_spec": "node", "node": "node", "nodes": "node", "pnode": "node",
    "target_node": "node", "new_secondary": "node", "snode": "node",
    "group": "group", "group_name": "group", "node_group": "group",
}
# Commands whose NAME argument is a new object (nothing to complete).
CREATING = frozenset({"add", "init", "import"})


def complete_var(prog_name: str) -> str:
    """The environment variable click reads to complete ``prog_name``."""
    return f"_{prog_name.replace('-', '_').replace('.', '_')}_COMPLETE".upper()


def _root(ctx: click.Context) -> str | None:
    c: click.Context | None = ctx
    while c is not None:
        if c.params.get("root"):
            return str(c.params["root"])
        c = c.parent
    return None


def object_names(ctx: click.Context, resource: str) -> list[str]:
    """Names of every ``resource`` (instance, node, group, network) the master
    knows; ``[]`` if it cannot be asked within :data:`NAME_TIMEOUT` seconds."""
    from corral.masterd.client import MasterClient
    from corral.paths import Paths

    try:
        client = MasterClient(Paths.from_env(_root(ctx)), timeout=NAME_TIMEOUT)
        result = client.query(resource, ["name"], None)
    except (errors.CorralError, OSError, ValueError):
        return []
    rows = result.get("data", []) if isinstance(result, dict) else []
    return sorted(str(row[0][1]) for row in rows if row and row[0][1] is not None)


def name_completer(resource: str) -> Callable[[click.Context, click.Parameter, str],
                                               list[CompletionItem]]:
    """A click ``shell_complete`` callback for names of ``resource``."""
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str
                 ) -> list[CompletionItem]:
        # "-n pnode:snode": complete the part after the colon as a node too.
        prefix, _, rest = incomplete.rpartition(":") if param.name == "node_spec" \
            else ("", "", incomplete)
        head = prefix + ":" if prefix else ""
        return [CompletionItem(head + name) for name in object_names(ctx, resource)
                if name.startswith(rest)]
    return complete


def resource_of(group: str, path: tuple[str, ...], param: click.Parameter) -> str | None:
    """The kind of object ``param`` of command ``group path...`` names, if any."""
    if param.name is None:
        return None
    if isinstance(param, click.Argument) and path and path[-1] in CREATING \
            and param.name == "name":
        return None
    own = GROUP_PARAMS.get(group, {})
    if isinstance(param, click.Argument) and param.name in own:
        return own[param.name]
    return PARAMS.get(param.name) or (own.get(param.name) if param.name != "name" else None)


def _attach(param: click.Parameter, resource: str) -> None:
    complete = name_completer(resource)

    def shell_complete(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        return complete(ctx, param, incomplete)

    # An instance attribute: click calls ``param.shell_complete(ctx, incomplete)``.
    param.shell_complete = shell_complete  # type: ignore[method-assign]


def install(command: click.Command, group: str | None = None,
            path: tuple[str, ...] = ()) -> int:
    """Attach name completion to every parameter below ``command`` that names
    an instance/node/group/network; returns how many were attached.

    ``group`` (``instance``...) defaults to ``command``'s name when that is
    one of ``main._GROUPS``; below ``corral`` each group's own name.
    """
    from corral.cli.main import _GROUPS

    if group is None and command.name in _GROUPS:
        group = command.name
    count = 0
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                count += install(sub, group, path + (name,)) if group else install(sub)
        return count
    for param in command.params:
        resource = resource_of(group or "", path, param)
        if resource is not None:
            _attach(param, resource)
            count += 1
    return count


def tool_groups() -> dict[str, click.Command]:
    """``corral`` and every ``gnt-*`` tool -> its click command."""
    from corral.cli.main import corral, load_group
    from corral.cli.manpages import tools

    result: dict[str, click.Command] = {"corral": corral}
    for tool, name in tools().items():
        result[tool] = load_group(name)
    return result


def script(tool: str, command: click.Command, shell: str) -> str:
    """The completion script click generates for ``tool`` in ``shell``."""
    cls = get_completion_class(shell)
    if cls is None:
        raise errors.ProgrammerError(f"No completion for shell {shell!r}")
    return cls(command, {}, tool, complete_var(tool)).source()


def write_scripts(directory: str | Path) -> list[Path]:
    """Write the completion scripts below ``directory`` (see the module doc)."""
    directory = Path(directory)
    written: list[Path] = []
    combined: dict[str, list[str]] = {shell: [] for shell in SHELLS}
    for tool, command in tool_groups().items():
        for shell in SHELLS:
            combined[shell].append(script(tool, command, shell))
        path = directory / "bash-completion" / "completions" / tool
        write_file_atomic(path, combined["bash"][-1], mode=0o644)
        written.append(path)
    for shell in SHELLS:
        path = directory / "corral" / f"completion.{shell}"
        header = f"# Completion of corral and the gnt-* tools ({shell}); source this file.\n"
        write_file_atomic(path, header + "\n".join(combined[shell]), mode=0o644)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m corral.cli.completion DIR", file=sys.stderr)
        return 2
    for path in write_scripts(args[0]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
