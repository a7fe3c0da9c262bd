"""``corral dev-cluster``: a multi-node cluster on this machine (loopback).

Thin wrapper around :mod:`corral.devcluster` (``up``/``down``).
"""

from __future__ import annotations

from typing import Any

import click

from corral import constants as C
from corral.cli import CorralGroup, print_log_entry
from corral.cli import output as o
from corral.cli.options import split_list


@click.group("dev-cluster", cls=CorralGroup)
def dev_cluster() -> None:
    """Development cluster of several nodes on this machine."""


@dev_cluster.command("up")
@click.option("-n", "--nodes", type=int, default=3, show_default=True, help="Number of nodes")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False),
              help="Directory holding the nodes' state roots")
@click.option("--hypervisors", default=C.HT_FAKE, show_default=True,
              help="Comma-separated enabled hypervisors")
@click.option("--disk-templates", default=",".join(C.DEFAULT_ENABLED_DISK_TEMPLATES),
              show_default=True, help="Comma-separated disk templates to enable")
@click.option("--base", default="127.0.1", show_default=True,
              help="First three octets of the nodes' loopback addresses")
@click.option("--noded-port", type=int, default=C.DEFAULT_NODED_PORT, show_default=True,
              help="TCP port of the node daemons (each node has its own loopback address)")
@click.option("--rapi-port", type=int, default=C.DEFAULT_RAPI_PORT, show_default=True,
              help="TCP port of the remote API")
@click.option("--name", "cluster_name", default="corral-dev", show_default=True,
              help="Name of the cluster")
def up(**opts: Any) -> int:
    """Create and start a dev cluster."""
    from corral import devcluster

    dev = devcluster.up(opts["nodes"], opts["directory"],
                        hypervisors=split_list(opts["hypervisors"]) or [C.HT_FAKE],
                        disk_templates=split_list(opts["disk_templates"]) or [],
                        base=opts["base"], noded_port=opts["noded_port"],
                        cluster_name=opts["cluster_name"], rapi_port=opts["rapi_port"],
                        feedback_fn=print_log_entry)
    o.out(f"Cluster {dev.cluster_name} is up with {len(dev.nodes)} node(s):")
    for node in dev.nodes:
        o.out(f"  {node.name} {node.ip}:{node.noded_port} root {node.root}")
    o.out(f"RAPI: https://{dev.master.ip}:{dev.rapi_port}/")
    o.out(f"Use it with: export CORRAL_ROOT={dev.master.root}")
    return 0


@dev_cluster.command("down")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False),
              help="Directory holding the dev cluster (as given to 'up')")
@click.option("--purge", is_flag=True, help="Also delete the directory")
def down(directory: str, purge: bool) -> int:
    """Stop every daemon of a dev cluster (idempotent)."""
    from corral import devcluster

    for note in devcluster.down(directory, purge=purge):
        o.err(note)
    return 0
