"""Moving instances between nodes: ``gnt-instance failover|migrate|move|change-group``
and ``gnt-node migrate|evacuate``.

Mirrors the matching commands of ``ganeti.client.gnt_instance`` and
``gnt_node``: each builds its opcode and follows the job log (migration
progress and downtime appear there as they happen).
"""

from __future__ import annotations

from typing import Any

import click

from corral import constants as C
from corral.cli import build_op, confirm, submit_op
from corral.cli.cluster import wait_spawned_jobs
from corral.cli.instance import instance
from corral.cli.node import node
from corral.cli.options import argument, group_change_opts, submit_opts

_MODES = click.Choice(C.HT_MIGRATION_MODES)


def _migration_mode(opts: dict[str, Any]) -> str | None:
    if opts.get("non_live") and opts.get("migration_mode") not in (None,
                                                                   C.HT_MIGRATION_NONLIVE):
        raise click.UsageError("--non-live and --migration-mode live contradict each other")
    return C.HT_MIGRATION_NONLIVE if opts.get("non_live") else opts.get("migration_mode")


@instance.command("failover")
@argument("name", help="Instance to fail over")
@click.option("--ignore-consistency", is_flag=True,
              help="Go on even if the primary node is offline or unreachable")
@click.option("--shutdown-timeout", type=int, default=C.DEFAULT_SHUTDOWN_TIMEOUT,
              show_default=True,
              help="Seconds to wait for the instance to shut down before forcing it off")
@click.option("-n", "--target-node", default=None, help="Node to fail over to")
@click.option("-I", "--iallocator", default=None,
              help="Instance allocator choosing the target node (shared-storage templates)")
@click.option("--cleanup", is_flag=True, help="Clean up after a failed failover")
@click.option("--ignore-ipolicy", is_flag=True, help="Ignore instance policy violations")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@submit_opts
def failover(name: str, **opts: Any) -> int:
    """Stop an instance and start it on another node."""
    confirm(f"Failover will happen to image {name}. This requires a shutdown of the "
            "instance. Continue?", opts["force"])
    submit_op(build_op("OP_INSTANCE_FAILOVER", opts, instance_name=name,
                       ignore_consistency=opts["ignore_consistency"],
                       shutdown_timeout=opts["shutdown_timeout"],
                       target_node=opts["target_node"], iallocator=opts["iallocator"],
                       cleanup=opts["cleanup"], ignore_ipolicy=opts["ignore_ipolicy"]), opts)
    return 0


@instance.command("migrate")
@argument("name", help="Instance to migrate")
@click.option("--non-live", is_flag=True, help="Pause the instance while copying memory")
@click.option("--migration-mode", type=_MODES, default=None,
              help="Migration mode: live or non-live (default: the hypervisor's migration_mode)")
@click.option("--cleanup", is_flag=True, help="Repair after a failed migration")
@click.option("-n", "--target-node", default=None, help="Target node (shared-storage templates)")
@click.option("-I", "--iallocator", default=None,
              help="Instance allocator choosing the target node (shared-storage templates)")
@click.option("--allow-failover", is_flag=True,
              help="Fail over when the instance cannot be migrated")
@click.option("--ignore-ipolicy", is_flag=True, help="Ignore instance policy violations")
@click.option("--ignore-hvversions", is_flag=True,
              help="Migrate even if the hypervisor versions of the nodes differ")
@click.option("--no-runtime-changes", is_flag=True,
              help="Do not change the instance's memory to fit the target node (fail instead)")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@submit_opts
def migrate(name: str, **opts: Any) -> int:
    """Move a running instance to another node (live by default)."""
    what = "cleanup the migration of" if opts["cleanup"] else "migrate"
    confirm(f"Instance {name} will be migrated ({what}). Continue?", opts["force"])
    submit_op(build_op("OP_INSTANCE_MIGRATE", opts, instance_name=name,
                       mode=_migration_mode(opts), cleanup=opts["cleanup"],
                       target_node=opts["target_node"], iallocator=opts["iallocator"],
                       allow_failover=opts["allow_failover"],
                       ignore_ipolicy=opts["ignore_ipolicy"],
                       ignore_hvversions=opts["ignore_hvversions"],
                       allow_runtime_changes=not opts["no_runtime_changes"]), opts)
    return 0


@instance.command("move")
@argument("name", help="Instance to move")
@click.option("-n", "--target-node", required=True, help="Node to copy the instance to")
@click.option("--compress", default="none", show_default=True,
              help="Compression of the disk copy (none, gzip, zstd, ...)")
@click.option("--shutdown-timeout", type=int, default=C.DEFAULT_SHUTDOWN_TIMEOUT,
              show_default=True,
              help="Seconds to wait for the instance to shut down before forcing it off")
@click.option("--ignore-consistency", is_flag=True,
              help="Move even if the disks are not consistent (data may be lost)")
@click.option("--ignore-ipolicy", is_flag=True, help="Ignore instance policy violations")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@submit_opts
def move(name: str, **opts: Any) -> int:
    """Copy a stopped instance's disks to another node and start it there."""
    confirm(f"Instance {name} will be moved. This requires a shutdown of the instance. "
            "Continue?", opts["force"])
    submit_op(build_op("OP_INSTANCE_MOVE", opts, instance_name=name,
                       target_node=opts["target_node"], compress=opts["compress"],
                       shutdown_timeout=opts["shutdown_timeout"],
                       ignore_consistency=opts["ignore_consistency"],
                       ignore_ipolicy=opts["ignore_ipolicy"]), opts)
    return 0


@node.command("migrate")
@argument("name", help="Node whose primary instances to migrate")
@click.option("--non-live", is_flag=True,
              help="Migrate non-live (the instances pause during the copy)")
@click.option("--migration-mode", type=_MODES, default=None,
              help="Migration mode: live or non-live (default: the hypervisor's migration_mode)")
@click.option("-n", "--target-node", default=None,
              help="Target node of the instances (shared-storage templates)")
@click.option("-I", "--iallocator", default=None,
              help="Instance allocator choosing the target nodes")
@click.option("--ignore-ipolicy", is_flag=True, help="Ignore instance policy violations")
@click.option("--no-runtime-changes", is_flag=True,
              help="Do not change the instance's memory to fit the target node (fail instead)")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@submit_opts
def node_migrate(name: str, **opts: Any) -> int:
    """Live-migrate all primary instances away from a node."""
    confirm(f"Migrate all primary instances of node {name}?", opts["force"])
    result = submit_op(build_op("OP_NODE_MIGRATE", opts, node_name=name,
                                mode=_migration_mode(opts), target_node=opts["target_node"],
                                iallocator=opts["iallocator"],
                                ignore_ipolicy=opts["ignore_ipolicy"],
                                allow_runtime_changes=not opts["no_runtime_changes"]), opts)
    return wait_spawned_jobs(result)


@node.command("evacuate")
@argument("name", help="Node to evacuate")
@click.option("-p", "--primary-only", is_flag=True, help="Move only primary instances")
@click.option("-s", "--secondary-only", is_flag=True, help="Move only secondary instances")
@click.option("-n", "--new-secondary", "remote_node", default=None,
              help="Node to move the instances to")
@click.option("-I", "--iallocator", default=None, help="Instance allocator choosing the new nodes")
@click.option("--early-release", is_flag=True,
              help="Release the old disks' locks early (faster, less safe on failure)")
@click.option("--ignore-soft-errors", is_flag=True, help="Ignore the allocator's soft errors")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@submit_opts
def node_evacuate(name: str, **opts: Any) -> int:
    """Move instances off a node."""
    if opts["primary_only"] and opts["secondary_only"]:
        raise click.UsageError("--primary-only and --secondary-only are exclusive")
    mode = "primary-only" if opts["primary_only"] else \
        "secondary-only" if opts["secondary_only"] else "all"
    confirm(f"Evacuate the {mode.replace('-only', '')} instances of node {name}?",
            opts["force"])
    result = submit_op(build_op("OP_NODE_EVACUATE", opts, node_name=name, mode=mode,
                                remote_node=opts["remote_node"],
                                iallocator=opts["iallocator"],
                                early_release=opts["early_release"],
                                ignore_soft_errors=opts["ignore_soft_errors"] or None), opts)
    return wait_spawned_jobs(result)


@instance.command("change-group")
@argument("name", help="Name of the instance")
@group_change_opts
@submit_opts
def change_group(name: str, **opts: Any) -> int:
    """Move an instance to another node group."""
    result = submit_op(build_op("OP_INSTANCE_CHANGE_GROUP", opts, instance_name=name,
                                target_groups=list(opts["target_groups"]) or None,
                                iallocator=opts["iallocator"],
                                early_release=opts["early_release"]), opts)
    return wait_spawned_jobs(result, action="changing the group")
