"""``gnt-instance batch-create``: many instances from one JSON file.

Mirrors ``ganeti.client.gnt_instance.BatchCreate``: the file holds a JSON
list of OP_INSTANCE_CREATE parameter dicts; they are submitted wrapped in one
OP_INSTANCE_MULTI_ALLOC (validated by the master as a whole before anything
runs), then the spawned creation jobs are followed to their end.
"""

from __future__ import annotations

import json
from typing import Any

import click

from corral import errors
from corral.cli import build_op, get_env, print_log_entry, submit_op
from corral.cli import output as o
from corral.cli.instance import instance
from corral.cli.options import argument, submit_opts


def read_instance_definitions(path: str) -> list[dict[str, Any]]:
    """The list of instance dicts in ``path``; :class:`errors.OpPrereqError`
    (ECODE_INVAL) when it cannot be read or is not a JSON list of objects."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as err:
        raise errors.OpPrereqError(f"Can't parse the instance definition file: {err}",
                                   errors.ECODE_INVAL) from None
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise errors.OpPrereqError("The instance definition file is not a list of "
                                   "dictionaries", errors.ECODE_INVAL)
    return data


@instance.command("batch-create")
@argument("json_file", help="JSON file with a list of instance definitions",
          metavar="INSTANCES_FILE.json")
@click.option("-I", "--iallocator", default=None,
              help="Instance allocator choosing the nodes of instances that name none")
@submit_opts
def batch_create(json_file: str, iallocator: str | None, **opts: Any) -> int:
    """Create the instances defined in a JSON file (a list of
    OP_INSTANCE_CREATE parameter dicts) and wait for all of them."""
    definitions = read_instance_definitions(json_file)
    op = build_op("OP_INSTANCE_MULTI_ALLOC", opts, iallocator=iallocator,
                  instances=definitions)
    result = submit_op(op, opts)
    if opts.get("dry_run"):
        o.out(f"Would create: {', '.join(result.get('allocatable') or [])}")
        return o.EXIT_SUCCESS
    client = get_env().client
    bad = 0
    for ok, job in result.get("jobs") or []:
        if not ok:
            o.err(f"Failed to submit job: {job}")
            bad += 1
            continue
        o.out(f"Waiting for job {job} ...")
        try:
            client.wait_job(int(job), print_log_entry)
        except errors.CorralError as err:
            o.err(o.format_error(err)[1])
            bad += 1
    if bad:
        o.out(f"There were {bad} errors during the creation.")
        return o.EXIT_FAILURE
    o.out("All instances created successfully.")
    return o.EXIT_SUCCESS
