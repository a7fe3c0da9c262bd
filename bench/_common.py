"""Helpers shared by the benchmarks: a free loopback range for a dev cluster,
timing with min/median/max, daemon memory.

Benchmarks run as ``.venv/bin/python bench/<name>.py``, so this module is
imported as ``_common`` (the script's directory is on ``sys.path``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path



def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall seconds of ``runs`` calls of ``fn``."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def spread(values: Iterable[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    vals = list(values)
    return min(vals), statistics.median(vals), max(vals)


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def pid_from_file(path: Path) -> int:
    return int(path.read_text().split()[0])
