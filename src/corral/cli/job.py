"""``gnt-job`` / ``corral job``: the job queue.

Mirrors ``ganeti.client.gnt_job``: list (with status filters and
``--archived``), list-fields, info, watch, wait, cancel, archive,
autoarchive, change-priority.
"""

from __future__ import annotations

import json
from typing import Any

import click

from corral import constants as C
from corral import errors
from corral.cli import (
    CorralGroup,
    confirm,
    get_env,
    is_query_filter,
    list_filter,
    parse_field_list,
    print_log_entry,
    print_rows,
    root_option,
)
from corral.cli import output as o
from corral.cli.options import argument, list_opts, parse_timespec

DEFAULT_FIELDS = ["id", "status", "summary"]
PENDING = (C.JOB_STATUS_QUEUED, C.JOB_STATUS_WAITING)
ARCHIVE_TIMEOUT = 60.0      # seconds an autoarchive call may take

STATUS_FILTERS = {
    "pending": PENDING,
    "running": (C.JOB_STATUS_RUNNING,),
    "error": (C.JOB_STATUS_ERROR,),
    "finished": tuple(sorted(C.JOBS_FINALIZED)),
}


# Ganeti's job query fields: name -> (title, kind, doc).
JOB_FIELD_DEFS: dict[str, tuple[str, str, str]] = {
    "id": ("ID", "number", "Job ID"),
    "status": ("Status", "text", "Job status"),
    "priority": ("Priority", "number", "Current job priority"),
    "archived": ("Archived", "bool", "Whether job is archived"),
    "summary": ("Summary", "other", "List of per-opcode summaries"),
    "ops": ("OpCodes", "other", "List of all opcodes"),
    "opstatus": ("OpCode_status", "other", "List of opcode status"),
    "opresult": ("OpCode_result", "other", "List of opcode output"),
    "oplog": ("OpCode_log", "other", "List of opcode logs"),
    "opstart": ("OpCode_start", "other", "List of opcode start timestamps"),
    "opexec": ("OpCode_exec", "other", "List of opcode execution start timestamps"),
    "opend": ("OpCode_end", "other", "List of opcode end timestamps"),
    "oppriority": ("OpCode_prio", "other", "List of opcode priorities"),
    "received_ts": ("Received", "timestamp", "Timestamp of when job was received"),
    "start_ts": ("Start", "timestamp", "Timestamp of job start"),
    "end_ts": ("End", "timestamp", "Timestamp of job end"),
}


def job_field_definitions(fields: list[str] | None) -> list[dict[str, Any]]:
    """Definitions of job fields; exits 14 for unknown ones (jobs are queried
    with QueryJobs, whose fields are fixed)."""
    names = list(JOB_FIELD_DEFS) if fields is None else fields
    unknown = [f for f in names if f not in JOB_FIELD_DEFS]
    if unknown:
        o.err(f"Unknown field(s): {', '.join(unknown)}")
        raise click.exceptions.Exit(o.EXIT_UNKNOWN_FIELD)
    return [{"name": f, "title": JOB_FIELD_DEFS[f][0], "kind": JOB_FIELD_DEFS[f][1],
             "doc": JOB_FIELD_DEFS[f][2]} for f in names]


@click.group("job", cls=CorralGroup, aliases={"show": "info"})
@root_option
def job(root: str | None) -> None:
    """Job queue (gnt-job)."""


def _job_ids(values: tuple[str, ...] | list[str]) -> list[int]:
    ids = []
    for value in values:
        try:
            ids.append(int(value))
        except ValueError:
            raise errors.OpPrereqError(f"Invalid job ID '{value}'",
                                       errors.ECODE_INVAL) from None
    return ids


@job.command("list")
@argument("ids", nargs=-1, help="Job ids, or with -F one query filter (default: all)")
@list_opts
@click.option("--pending", "status_filter", flag_value="pending",
              help="Only queued or waiting jobs")
@click.option("--running", "status_filter", flag_value="running", help="Only running jobs")
@click.option("--error", "status_filter", flag_value="error", help="Only failed jobs")
@click.option("--finished", "status_filter", flag_value="finished",
              help="Only finished jobs")
@click.option("--archived", is_flag=True, help="Include archived jobs")
def list_(ids: tuple[str, ...], **opts: Any) -> int:
    """List jobs."""
    fields = parse_field_list(opts.get("fields"), DEFAULT_FIELDS)
    fdefs = job_field_definitions(fields)
    query = fields if "status" in fields else fields + ["status"]
    client = get_env().client
    if is_query_filter(ids, bool(opts.get("force_filter"))):
        qfilter = list_filter(ids, bool(opts.get("force_filter")), "id", isnumeric=True)
        rows = [[value for _, value in row]
                for row in client.query("job", query, qfilter)["data"]]
    else:
        rows = client.query_jobs(_job_ids(ids) or None, query, opts["archived"])
    wanted = STATUS_FILTERS.get(opts.get("status_filter") or "")
    status_idx = query.index("status")
    table = []
    for row in rows:
        if row is None:
            continue
        if wanted is not None and row[status_idx] not in wanted:
            continue
        table.append([[o.RS_NORMAL, v] for v in row[:len(fields)]])
    print_rows(fdefs, table, opts)
    return 0


@job.command("list-fields")
@argument("fields", nargs=-1, help="Fields to describe (default: all)")
@click.option("--no-headers", is_flag=True, help="Do not print column headers")
@click.option("--separator", default=None, help="Column separator (default: aligned columns)")
@click.option("--output", "output_format", type=click.Choice(["table", "json"]),
              default="table", help="Output format")
def list_fields(fields: tuple[str, ...], **opts: Any) -> int:
    """List the fields of 'list -o'."""
    fdefs = job_field_definitions(list(fields) or None)
    if opts.get("output_format") == "json":
        o.out(json.dumps(fdefs, indent=2))
        return 0
    rows = [[f["name"], f["kind"], f["title"], f["doc"]] for f in fdefs]
    heads = None if opts.get("no_headers") else ["Name", "Type", "Title", "Description"]
    for line in o.generate_table(heads, rows, [False] * 4, opts.get("separator")):
        o.out(line)
    return 0


INFO_FIELDS = ["id", "ops", "status", "received_ts", "start_ts", "end_ts", "opstatus",
               "oplog", "opresult", "opexec", "opstart", "opend"]


def _ts_delta(start: Any, end: Any) -> str:
    if not start or not end:
        return ""
    secs = (end[0] + end[1] / 1e6) - (start[0] + start[1] / 1e6)
    return f" (delta {secs:.6f}s)"


def job_info_document(v: dict[str, Any]) -> dict[str, Any]:
    """One job of ``gnt-job info`` (``ShowJobs`` layout, as YAML)."""
    doc: dict[str, Any] = {"Job ID": v.get("id"), "Status": v.get("status"),
                           "Received": o.format_time(v.get("received_ts"))}
    doc["Processing start"] = (o.format_time(v.get("start_ts")) +
                               _ts_delta(v.get("received_ts"), v.get("start_ts"))
                               if v.get("start_ts") else "unknown (not yet started)")
    doc["Processing end"] = (o.format_time(v.get("end_ts")) +
                             _ts_delta(v.get("start_ts"), v.get("end_ts"))
                             if v.get("end_ts") else "unknown (not yet finished)")
    ops = []
    n_ops = len(v.get("ops") or [])
    per_op = {k: (v.get(k) or [None] * n_ops) for k in
              ("opstatus", "opresult", "oplog", "opexec", "opstart", "opend")}
    for idx, op in enumerate(v.get("ops") or []):
        op = dict(op or {})
        entry: dict[str, Any] = {"OP_ID": op.pop("OP_ID", None),
                                 "Status": per_op["opstatus"][idx]}
        for key, title in (("opstart", "Processing start"), ("opexec", "Execution start"),
                           ("opend", "Processing end")):
            if per_op[key][idx] is not None:
                entry[title] = o.format_time(per_op[key][idx])
        entry["Input fields"] = {k: op[k] for k in sorted(op)}
        entry["Result"] = per_op["opresult"][idx]
        entry["Execution log"] = [
            {"Time": o.format_time(ts), "Type": ltype, "Content": msg}
            for _serial, ts, ltype, msg in (per_op["oplog"][idx] or [])]
        ops.append(entry)
    doc["Opcodes"] = ops
    return doc


@job.command("info")
@argument("ids", nargs=-1, required=True, help="Jobs to show")
def info(ids: tuple[str, ...]) -> int:
    """Show the details of jobs (YAML)."""
    client = get_env().client
    fields = INFO_FIELDS
    docs = []
    rc = 0
    for job_id in _job_ids(ids):
        row = client.query_jobs([job_id], fields, True)[0]
        if row is None:
            o.err(f"Job ID {job_id} not found")
            rc = 1
            continue
        docs.append(job_info_document(dict(zip(fields, row))))
    if docs:
        o.print_info(docs)
    return rc


def _follow(job_id: int, feedback: Any) -> int:
    try:
        get_env().client.wait_job(job_id, feedback)
    except errors.CorralError as exc:
        o.err(f"Job {job_id} failed: {o.format_error(exc)[1]}")
        return o.EXIT_FAILURE
    return 0


@job.command("watch")
@argument("job_id", type=int, help="Job to follow")
def watch(job_id: int) -> int:
    """Follow a job's log until it finishes."""
    msg = f"Output from job {job_id} follows"
    o.out(msg)
    o.out("-" * len(msg))
    return _follow(job_id, print_log_entry)


@job.command("wait")
@argument("job_id", type=int, help="Job to wait for")
def wait(job_id: int) -> int:
    """Wait for a job to finish, without output."""
    return _follow(job_id, None)


def _select_pending(ids: tuple[str, ...], status_filter: str | None, force: bool,
                    what: str) -> list[int]:
    """Job ids from arguments or a status filter (``_MultiJobAction``)."""
    if bool(ids) == (status_filter is not None):
        raise errors.OpPrereqError("Either a status filter or job ID(s) must be specified",
                                   errors.ECODE_INVAL)
    if status_filter is None:
        return _job_ids(ids)
    wanted = {"pending": PENDING, "queued": (C.JOB_STATUS_QUEUED,),
              "waiting": (C.JOB_STATUS_WAITING,)}[status_filter]
    rows = get_env().client.query_jobs(None, ["id", "status"], False)
    selected = sorted(r[0] for r in rows if r is not None and r[1] in wanted)
    if not selected:
        o.out("No jobs with the requested status")
        raise click.exceptions.Exit(0)
    for job_id in selected:
        o.out(str(job_id))
    confirm(f"{what} job(s) listed above?", force)
    return selected


def _selection_opts(fn: Any) -> Any:
    for deco in reversed([
        click.option("--pending", "status_filter", flag_value="pending",
                     help="Select all queued and waiting jobs"),
        click.option("--queued", "status_filter", flag_value="queued",
                     help="Select all queued jobs"),
        click.option("--waiting", "status_filter", flag_value="waiting",
                     help="Select all waiting jobs"),
        click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation"),
    ]):
        fn = deco(fn)
    return fn


@job.command("cancel")
@argument("ids", nargs=-1, help="Jobs to cancel (or a selection option)")
@_selection_opts
@click.option("--kill", is_flag=True, help="Kill running jobs too (needs --yes-do-it)")
@click.option("--yes-do-it", is_flag=True, help="Also cancel (kill) running jobs")
def cancel(ids: tuple[str, ...], **opts: Any) -> int:
    """Cancel queued or waiting jobs (running ones only with --kill)."""
    if opts["kill"] and not opts["yes_do_it"]:
        raise errors.OpPrereqError("The --kill option must be confirmed with --yes-do-it",
                                   errors.ECODE_INVAL)
    action = "KILL" if opts["kill"] else "Cancel"
    rc = 0
    client = get_env().client
    for job_id in _select_pending(ids, opts["status_filter"], opts["force"], action):
        ok, msg = client.cancel_job(job_id, opts["kill"])
        if not ok:
            rc = o.EXIT_FAILURE
        o.out(str(msg))
    return rc


@job.command("change-priority")
@argument("ids", nargs=-1, help="Jobs to change (or a selection option)")
@_selection_opts
@click.option("--priority", type=click.Choice(sorted(C.PRIORITY_NAMES)), required=True,
              help="New priority of the job")
def change_priority(ids: tuple[str, ...], **opts: Any) -> int:
    """Change the priority of unfinished jobs."""
    prio = C.PRIORITY_NAMES[opts["priority"]]
    rc = 0
    client = get_env().client
    for job_id in _select_pending(ids, opts["status_filter"], opts["force"],
                                  "Change priority of"):
        ok, msg = client.change_job_priority(job_id, prio)
        if not ok:
            rc = o.EXIT_FAILURE
        o.out(str(msg))
    return rc


@job.command("archive")
@argument("ids", nargs=-1, required=True, help="Jobs to archive")
def archive(ids: tuple[str, ...]) -> int:
    """Move finished jobs to the archive."""
    rc = 0
    client = get_env().client
    for job_id in _job_ids(ids):
        if not client.archive_job(job_id):
            o.err(f"Failed to archive job with ID '{job_id}'")
            rc = o.EXIT_FAILURE
    return rc


@job.command("autoarchive")
@argument("age",
          help=("Archive finished jobs older than this (timespec: 30s, 5m, 2h, 1d, 1w; all: every"
                " job)"))
def autoarchive(age: str) -> int:
    """Archive finished jobs older than AGE ('all', or e.g. 30m, 2h, 1d, 1w)."""
    seconds = -1 if age == "all" else parse_timespec(age)
    archived, left = get_env().client.auto_archive(seconds, ARCHIVE_TIMEOUT)
    o.out(f"Archived {archived} jobs, {left} unchecked left")
    return 0
