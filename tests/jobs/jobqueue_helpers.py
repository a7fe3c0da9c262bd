"""Helpers for job queue tests: a scriptable run_opcode and waiting helpers."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from corral import constants as C
from corral import errors
from corral.jobs import JobQueue, OpContext
from corral.opcodes import OpCode, OpTestDelay, OpTestJqueue


def delay(duration: float = 0.0, **extra: Any) -> dict[str, Any]:
    """An OP_TEST_DELAY opcode dict."""
    return {"OP_ID": "OP_TEST_DELAY", "duration": duration, **extra}


def jq(**params: Any) -> dict[str, Any]:
    """An OP_TEST_JQUEUE opcode dict."""
    return {"OP_ID": "OP_TEST_JQUEUE", **params}


class Runner:
    """A run_opcode for tests, driven by the opcode's ``comment``.

    * ``wait:<key>``: stay ``waiting`` (as if blocked on locks) until
      ``release(key)``, checking for cancellation meanwhile;
    * ``run:<key>``: once running, block until ``release(key)``;
    * ``unserializable``: return a value JSON cannot encode;
    * ``submit``: submit one follow-up OP_TEST_DELAY job through the context.

    OpTestDelay sleeps ``duration``; OpTestJqueue logs ``log_messages`` and
    raises OpExecError if ``fail``.
    """

    def __init__(self) -> None:
        self.events: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.lock = threading.Lock()
        self.started: list[tuple[int, int]] = []  # (job id, op index) in start order
        self.running = 0
        self.max_running = 0
        self.priorities: dict[int, int] = {}

    def release(self, key: str) -> None:
        self.events[key].set()

    def release_all(self) -> None:
        for event in list(self.events.values()):
            event.set()

    def __call__(self, op: OpCode, ctx: OpContext) -> Any:
        comment = op.comment or ""
        with self.lock:
            self.started.append((ctx.job_id, ctx.op_index))
            self.priorities[ctx.job_id] = ctx.priority
        if comment.startswith("wait:"):
            event = self.events[comment[5:]]
            while not event.wait(0.01):
                ctx.check_canceled()
        ctx.notify_running()
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if isinstance(op, OpTestDelay):
                time.sleep(op.duration)
            if isinstance(op, OpTestJqueue):
                for message in op.log_messages:
                    ctx.feedback(message)
                if op.fail:
                    raise errors.OpExecError("Opcode failure was requested", errors.ECODE_STATE)
            if comment.startswith("run:"):
                self.events[comment[4:]].wait(30)
            if comment == "unserializable":
                return {"value": object()}
            if comment == "submit":
                return ctx.submit_jobs([[OpTestDelay(duration=0)]])
            return {"job": ctx.job_id, "op": ctx.op_index}
        finally:
            with self.lock:
                self.running -= 1


def wait_status(queue: JobQueue, job_id: int, statuses: set[str] | str,
                timeout: float = 10.0) -> str:
    """Wait (with wait_for_job_change) until the job reaches one of ``statuses``."""
    if isinstance(statuses, str):
        statuses = {statuses}
    deadline = time.monotonic() + timeout
    prev = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"job {job_id} is {prev}, not in {statuses}")
        res = queue.wait_for_job_change(job_id, ["status"], prev, None, min(remaining, 1.0))
        if res == "nochange":
            continue
        prev = res[0]
        if prev[0] in statuses:
            return prev[0]


def wait_final(queue: JobQueue, job_id: int, timeout: float = 10.0) -> str:
    return wait_status(queue, job_id, set(C.JOBS_FINALIZED), timeout)


def field(queue: JobQueue, job_id: int, name: str) -> Any:
    (row,) = queue.query_jobs([job_id], [name])
    assert row is not None, f"job {job_id} unknown"
    return row[0]
