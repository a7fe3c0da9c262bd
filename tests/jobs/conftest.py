"""Fixtures for job queue tests: a real SQLite queue in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from jobqueue_helpers import Runner

from corral.jobs import JobQueue


@pytest.fixture
def runner() -> Iterator[Runner]:
    r = Runner()
    yield r
    r.release_all()


@pytest.fixture
def make_queue(tmp_path: Path, runner: Runner) -> Iterator[Callable[..., JobQueue]]:
    """Build started queues on ``tmp_path/queue.db``; all are stopped at the end."""
    queues: list[JobQueue] = []

    def make(max_running: int = 5, run_opcode=None, path: Path | None = None) -> JobQueue:
        q = JobQueue(path or tmp_path / "queue.db", run_opcode or runner,
                     max_running=max_running, durable=False)
        q.start()
        queues.append(q)
        return q

    yield make
    runner.release_all()
    for q in queues:
        q.stop(timeout=10)


@pytest.fixture
def queue(make_queue) -> JobQueue:
    return make_queue()
