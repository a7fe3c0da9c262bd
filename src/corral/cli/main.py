"""Entry points: ``corral`` and the ``gnt-*`` aliases.

``corral [--root DIR] cluster|node|instance|os|job|backup|debug|filter|dev-cluster|daemon ...``;
``gnt-cluster``, ``gnt-node``, ``gnt-instance``, ``gnt-os``, ``gnt-job``, ``gnt-backup``,
``gnt-debug`` and ``gnt-filter`` run the same command groups directly (each also takes
``--root``; the default root is ``$CORRAL_ROOT`` or ``/``).

A command group's module is imported only when the group is used, so that
each tool starts by loading only its own commands.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from corral import __version__
from corral.cli import CorralGroup, output, root_option

# Group name -> (module, attribute).
_GROUPS = {
    "cluster": ("corral.cli.cluster", "cluster"),
    "node": ("corral.cli.node", "node"),
    "instance": ("corral.cli.instance", "instance"),
    "os": ("corral.cli.os", "os_group"),
    "job": ("corral.cli.job", "job"),
    "dev-cluster": ("corral.cli.devcluster", "dev_cluster"),
    "daemon": ("corral.cli.daemon", "daemon"),
    "backup": ("corral.cli.backup", "backup"),
    "debug": ("corral.cli.debug", "debug"),
    "filter": ("corral.cli.filter", "filter_group"),
    "group": ("corral.cli.group", "group"),
    "network": ("corral.cli.network", "network"),
}
# Modules adding commands to a group: failover/migrate/move/evacuate, power/health,
# list-storage, batch-create, recreate-disks.
_EXTENSIONS = {"instance": ("corral.cli.migration", "corral.cli.batch", "corral.cli.recreate"),
               "node": ("corral.cli.migration", "corral.cli.oob", "corral.cli.storage")}
# Former module attributes of the groups (``main.instance``...).
_ATTRIBUTES = {attr: name for name, (_, attr) in _GROUPS.items()}


def load_group(name: str) -> click.Group:
    """The command group ``name`` (a key of ``_GROUPS``), with its extensions."""
    module, attr = _GROUPS[name]
    group: click.Group = getattr(importlib.import_module(module), attr)
    for extension in _EXTENSIONS.get(name, ()):
        importlib.import_module(extension)
    return group


class _LazyGroup(CorralGroup):
    """``corral``: its command groups are loaded when first looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_GROUPS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _GROUPS and cmd_name not in self.commands:
            self.add_command(load_group(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group("corral", cls=_LazyGroup)
@root_option
@click.version_option(__version__, prog_name="corral")
def corral(root: str | None) -> None:
    """Corral: a Ganeti-compatible cluster virtualization manager."""


def __getattr__(name: str) -> Any:
    if name in _ATTRIBUTES:
        return load_group(_ATTRIBUTES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _run(group: click.Group, prog_name: str) -> None:
    """Run ``group`` as program ``prog_name``; a reader closing stdout early
    (``gnt-job list | head``) ends it silently, also at the final flush."""
    if os.environ.get(f"_{prog_name.replace('-', '_')}_COMPLETE".upper()):
        # A shell completion request: names complete from the master.
        from corral.cli import completion

        completion.install(group)
    try:
        try:
            group.main(prog_name=prog_name)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        output.exit_closed_stdout()


def main() -> None:
    _run(corral, "corral")


def gnt_cluster() -> None:
    _run(load_group("cluster"), "gnt-cluster")


def gnt_node() -> None:
    _run(load_group("node"), "gnt-node")


def gnt_instance() -> None:
    _run(load_group("instance"), "gnt-instance")


def gnt_os() -> None:
    _run(load_group("os"), "gnt-os")


def gnt_job() -> None:
    _run(load_group("job"), "gnt-job")


def gnt_backup() -> None:
    _run(load_group("backup"), "gnt-backup")


def gnt_debug() -> None:
    _run(load_group("debug"), "gnt-debug")


def gnt_filter() -> None:
    _run(load_group("filter"), "gnt-filter")


def gnt_group() -> None:
    _run(load_group("group"), "gnt-group")


def gnt_network() -> None:
    _run(load_group("network"), "gnt-network")


if __name__ == "__main__":
    main()
