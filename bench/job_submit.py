"""Benchmark: submit_job throughput with an empty queue vs. 4,000 finished jobs.

Builds two job queues (real SQLite in a temporary directory): one empty and
one holding ``--finished`` finished jobs (written through the store, as the
queue would have left them), then times ``--jobs`` ``submit_job`` calls on
each with the scheduler paused (``max_running=0``) so only submission is
measured. Submitting writes only the new job's rows, so the rate should not
depend on how many jobs the queue already holds.

Usage: .venv/bin/python bench/job_submit.py [--jobs 500] [--finished 4000] [--no-fsync]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from corral import constants as C
from corral.jobs import JobQueue
from corral.jobs.model import QueuedJob, QueuedOpcode, now_ts
from corral.jobs.store import JobStore
from corral.opcodes import OpTestDelay

OP = {"OP_ID": "OP_TEST_DELAY", "duration": 0, "comment": "bench"}


def fill_finished(path: Path, count: int) -> None:
    """Store ``count`` finished two-opcode jobs with a log entry each."""
    store = JobStore(path, durable=False)
    op = OpTestDelay(duration=0, comment="bench")
    with store.transaction():
        for job_id in store.allocate_ids(count):
            ts = now_ts()
            ops = [QueuedOpcode(input=op.to_dict(), summary=op.summary(), priority=0,
                                status=C.OP_STATUS_SUCCESS, result=None, start_ts=ts,
                                exec_ts=ts, end_ts=ts) for _ in range(2)]
            job = QueuedJob(job_id, ops, received_ts=ts, start_ts=ts, end_ts=ts)
            store.insert_job(job)
            store.add_log(job_id, 0, [1, ts, C.ELOG_MESSAGE, "done"])
    store.close()


def measure(path: Path, jobs: int, durable: bool) -> tuple[float, float]:
    """Return (jobs per second, median seconds per submit)."""
    queue = JobQueue(path, lambda op, ctx: None, max_running=0, durable=durable)
    queue.start()
    try:
        times = []
        start = time.perf_counter()
        for _ in range(jobs):
            t0 = time.perf_counter()
            queue.submit_job([OP])
            times.append(time.perf_counter() - t0)
        total = time.perf_counter() - start
    finally:
        queue.stop(timeout=5)
    return jobs / total, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="submits to time")
    parser.add_argument("--finished", type=int, default=4000, help="finished jobs in the full queue")
    parser.add_argument("--no-fsync", action="store_true", help="synchronous=NORMAL")
    args = parser.parse_args()
    durable = not args.no_fsync
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        empty = Path(tmp) / "empty.db"
        full = Path(tmp) / "full.db"
        fill_finished(full, args.finished)
        print(f"submit_job, {args.jobs} jobs, fsync={'on' if durable else 'off'}")
        for label, path in (("empty queue", empty), (f"{args.finished} finished jobs", full)):
            rate, median = measure(path, args.jobs, durable)
            print(f"  {label:>22}: {rate:8.0f} jobs/s  (median {median * 1e3:.2f} ms/submit)")


if __name__ == "__main__":
    main()
