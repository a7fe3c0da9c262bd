"""Each job's start and end in the daemon log (jobs/execution.py): id,
opcode summaries, final status, duration and the error of a failed opcode."""

from __future__ import annotations

import logging
import re

import pytest
from jobqueue_helpers import delay, jq, wait_final

LOGGER = "corral.jobs.execution"


def _lines(caplog: pytest.LogCaptureFixture, job_id: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.INFO
            and r.getMessage().startswith(f"Job {job_id} ")]


def test_success_logs_start_and_end(queue, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    job_id = queue.submit_job([delay(0.05), jq()])
    assert wait_final(queue, job_id) == "success"
    queue.stop(timeout=10)           # the end line is written after the final commit
    start, end = _lines(caplog, job_id)
    assert start == f"Job {job_id} started: TEST_DELAY(0.05), TEST_JQUEUE"
    m = re.fullmatch(rf"Job {job_id} ended after (\d+\.\d+) s: success", end)
    assert m and float(m.group(1)) >= 0.05


def test_failure_logs_error(queue, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    job_id = queue.submit_job([delay(0), jq(fail=True), delay(0)])
    assert wait_final(queue, job_id) == "error"
    queue.stop(timeout=10)
    _, end = _lines(caplog, job_id)
    assert end.startswith(f"Job {job_id} ended after ")
    assert end.endswith(": error: TEST_JQUEUE error: OpExecError: Opcode failure was "
                        "requested (wrong_state)")
