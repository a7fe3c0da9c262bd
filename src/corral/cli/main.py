"""Entry points: ``corral`` and the ``gnt-*`` aliases.

``corral [--root DIR] cluster|node|instance|os|job|backup|dev-cluster|daemon ...``;
``gnt-cluster``, ``gnt-node``, ``gnt-instance``, ``gnt-os``, ``gnt-job`` and ``gnt-backup``
run the same command groups directly (each also takes ``--root``; the
default root is ``$CORRAL_ROOT`` or ``/``).
"""

from __future__ import annotations

import click

from corral import __version__
from corral.cli import CorralGroup, root_option
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


def main() -> None:
    corral.main(prog_name="corral")


def gnt_cluster() -> None:
    cluster.main(prog_name="gnt-cluster")


def gnt_node() -> None:
    node.main(prog_name="gnt-node")


def gnt_instance() -> None:
    instance.main(prog_name="gnt-instance")


def gnt_os() -> None:
    os_group.main(prog_name="gnt-os")


def gnt_job() -> None:
    job.main(prog_name="gnt-job")


def gnt_backup() -> None:
    backup.main(prog_name="gnt-backup")


if __name__ == "__main__":
    main()
