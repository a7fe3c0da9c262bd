"""``gnt-debug`` / ``corral debug``: tools to exercise the master.

Mirrors ``ganeti.client.gnt_debug``: ``delay`` (OP_TEST_DELAY), ``submit-job``
(serialized opcode lists from JSON files), ``locks`` (the lock query) and
``test-jobqueue`` (OP_TEST_JQUEUE: log messages reach the client in order, a
failing opcode fails its job, the jobs after it still run).
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from corral import constants as C
from corral import errors
from corral.cli import (
    CorralGroup,
    build_op,
    generic_list,
    get_env,
    root_option,
    submit_job,
)
from corral.cli import output as o
from corral.cli.options import argument, list_opts, submit_opts

# The query kind of locks (Ganeti's constants.QR_LOCK).
QR_LOCK = "lock"
LOCK_FIELDS = ["name", "mode", "owner", "pending"]
# Seconds test-jobqueue waits for one of its jobs.
TEST_JOB_TIMEOUT = 60.0


@click.group("debug", cls=CorralGroup)
@root_option
def debug(root: str | None) -> None:
    """Debugging and testing of the master (gnt-debug)."""


@debug.command("delay")
@argument("duration", help="Seconds to sleep", type=float)
@click.option("--no-master", "on_master", flag_value=False, default=True,
              help="Do not sleep on the master, only on the nodes given with -n")
@click.option("-n", "--node", "on_nodes", multiple=True, metavar="NODE",
              help="Also sleep on this node (repeatable)")
@click.option("-r", "--repeat", type=click.IntRange(min=0), default=0, show_default=True,
              help="Number of times to repeat the sleep")
@click.option("-i", "--interruptible", is_flag=True,
              help="Allow the opcode to be interrupted (canceled) while sleeping")
@click.option("-l", "--no-locks", "no_locks", is_flag=True,
              help="Do not take the node locks while sleeping on the nodes")
@submit_opts
def delay(duration: float, on_master: bool, on_nodes: tuple[str, ...], repeat: int,
          interruptible: bool, no_locks: bool, **opts: Any) -> int:
    """Sleep DURATION seconds on the master and/or nodes (OP_TEST_DELAY)."""
    if duration < 0:
        raise errors.OpPrereqError("The delay must not be negative", errors.ECODE_INVAL)
    op = build_op("OP_TEST_DELAY", opts, duration=duration, on_master=on_master,
                  on_nodes=list(on_nodes), repeat=repeat, interruptible=interruptible,
                  no_locks=no_locks)
    submit_job([op], opts)
    return 0


def _load_opcodes(path: str) -> list[dict[str, Any]]:
    """The opcode dicts of a ``submit-job`` file (a JSON list of objects)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as err:
        raise errors.OpPrereqError(f"Cannot read {path}: {err.strerror}",
                                   errors.ECODE_INVAL) from None
    except ValueError as err:
        raise errors.OpPrereqError(f"{path} is not valid JSON: {err}",
                                   errors.ECODE_INVAL) from None
    if not isinstance(data, list) or not all(isinstance(op, dict) and "OP_ID" in op
                                             for op in data):
        raise errors.OpPrereqError(f"{path} must hold a JSON list of opcodes "
                                   "(objects with an OP_ID)", errors.ECODE_INVAL)
    return data


@debug.command("submit-job")
@argument("files", help="JSON files, each holding a list of opcodes", nargs=-1,
          required=True, metavar="OPCODES_FILE...")
@click.option("--verbose", "-v", is_flag=True, help="Print each job id as it is submitted")
@click.option("--timing-stats", is_flag=True,
              help="Print how long building, submitting and running the jobs took")
@click.option("--job-repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Submit each job this many times")
@click.option("--op-repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repeat each opcode this many times inside its job")
@click.option("--each", is_flag=True,
              help="Submit each opcode as a job of its own instead of one job per file")
def submit_job_cmd(files: tuple[str, ...], verbose: bool, timing_stats: bool,
                   job_repeat: int, op_repeat: int, each: bool) -> int:
    """Submit the opcodes of JSON files as jobs and wait for them.

    Each file holds a JSON list of opcodes (``[{"OP_ID": "OP_TEST_DELAY",
    "duration": 1}]``); every file becomes one job (``--each``: one job per
    opcode). Exits 1 when a job fails.
    """
    t_start = time.monotonic()
    jobs: list[list[dict[str, Any]]] = []
    for path in files:
        ops = [dict(op) for op in _load_opcodes(path) for _ in range(op_repeat)]
        for _ in range(job_repeat):
            jobs.extend([[op] for op in ops] if each else [ops])
    t_built = time.monotonic()
    client = get_env().client
    results = client.submit_many(jobs)
    t_submitted = time.monotonic()
    job_ids: list[int] = []
    failed = 0
    for ok, value in results:
        if not ok:
            o.err(f"Job submission failed: {value}")
            failed += 1
            continue
        job_ids.append(int(value))
        if verbose:
            o.out(f"Submitted job {value}")
    for job_id in job_ids:
        try:
            client.wait_job(job_id, None)
            o.out(f"Job {job_id}: success")
        except errors.CorralError as err:
            o.out(f"Job {job_id}: failed: {err}")
            failed += 1
    t_done = time.monotonic()
    if timing_stats:
        o.out(f"Timing: build {t_built - t_start:.3f} s, submit {t_submitted - t_built:.3f} s,"
              f" exec {t_done - t_submitted:.3f} s, total {t_done - t_start:.3f} s "
              f"({len(jobs)} jobs)")
    return 1 if failed else 0


@debug.command("locks")
@list_opts
@click.option("--interval", type=click.FloatRange(min=0.1), default=None,
              help="Print the locks again every INTERVAL seconds until interrupted")
def locks(interval: float | None, **opts: Any) -> int:
    """Show the master's locks: name, mode, owners and pending acquires."""
    while True:
        generic_list(QR_LOCK, LOCK_FIELDS, (), opts)
        if interval is None:
            return 0
        o.out("")
        time.sleep(interval)


def _run_test_job(ops: list[dict[str, Any]], fail_expected: bool
                  ) -> tuple[list[tuple[str, Any]], Exception | None]:
    """Run one job, collecting its ``(log_type, message)`` entries."""
    seen: list[tuple[str, Any]] = []
    client = get_env().client
    job_id = client.submit_job(ops)
    try:
        client.wait_job(job_id, lambda entry: seen.append((entry[1], entry[2])),
                        timeout=TEST_JOB_TIMEOUT)
    except errors.OpExecError as err:
        if not fail_expected:
            raise
        return seen, err
    return seen, None


@debug.command("test-jobqueue")
def test_jobqueue() -> int:
    """Check the job queue end to end: log messages, failures, job order.

    Mirrors ``gnt-debug test-jobqueue``: a job's log messages must reach the
    client in order; an opcode asked to fail must fail its job (and stop the
    opcodes after it); a following job must still run. Exits 1 on the first
    check that does not hold.
    """
    messages = [f"Testing job queue message {i}" for i in range(5)]
    checks: list[tuple[str, bool]] = []
    seen, _ = _run_test_job([build_op("OP_TEST_JQUEUE", None, log_messages=messages)],
                            fail_expected=False)
    got = [msg for kind, msg in seen if kind == C.ELOG_JQUEUE_TEST]
    checks.append(("log messages arrive in order", got == messages))
    ops = [build_op("OP_TEST_JQUEUE", None, fail=True),
           build_op("OP_TEST_JQUEUE", None, log_messages=["must not run"])]
    seen, err = _run_test_job(ops, fail_expected=True)
    checks.append(("a failing opcode fails its job", err is not None))
    checks.append(("opcodes after a failure do not run",
                   all(msg != "must not run" for _, msg in seen)))
    seen, _ = _run_test_job([build_op("OP_TEST_JQUEUE", None, log_messages=["after"])],
                            fail_expected=False)
    checks.append(("the queue runs jobs after a failed one",
                   [msg for _, msg in seen] == ["after"]))
    for what, ok in checks:
        o.out(f"{'ok' if ok else 'FAILED'}: {what}")
    if all(ok for _, ok in checks):
        o.out("Job queue test successful")
        return 0
    return 1
