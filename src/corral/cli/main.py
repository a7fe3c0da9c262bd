"""Entry points: ``corral`` and the ``gnt-*`` aliases.

``corral [--root DIR] cluster|node|instance|os|job|backup|dev-cluster|daemon ...``;
``gnt-cluster``, ``gnt-node``, ``gnt-instance``, ``gnt-os``, ``gnt-job`` and ``gnt-backup``
run the same command groups directly (each also takes ``--root``; the
default root is ``$CORRAL_ROOT`` or ``/``).
"""

from __future__ import annotations

import sys

import click

from corral import __version__
from corral.cli import CorralGroup, output, root_option
from corral.cli.backup import backup
from corral.cli.cluster import cluster
from corral.cli.daemon import daemon
from corral.cli.devcluster import dev_cluster
from corral.cli.instance import instance
from corral.cli.job import job
from corral.cli import migration  # noqa: F401 - adds failover/migrate/move/evacuate
from corral.cli.node import node
from corral.cli.os import os_group


@click.group("corral", cls=CorralGroup)
@root_option
@click.version_option(__version__, prog_name="corral")
def corral(root: str | None) -> None:
    """Corral: a Ganeti-compatible cluster virtualization manager."""


for _group in (cluster, node, instance, os_group, job, dev_cluster, daemon, backup):
    corral.add_command(_group)


def _run(group: click.Group, prog_name: str) -> None:
    """Run ``group`` as program ``prog_name``; a reader closing stdout early
    (``gnt-job list | head``) ends it silently, also at the final flush."""
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
    _run(cluster, "gnt-cluster")


def gnt_node() -> None:
    _run(node, "gnt-node")


def gnt_instance() -> None:
    _run(instance, "gnt-instance")


def gnt_os() -> None:
    _run(os_group, "gnt-os")


def gnt_job() -> None:
    _run(job, "gnt-job")


def gnt_backup() -> None:
    _run(backup, "gnt-backup")


if __name__ == "__main__":
    main()
