"""Benchmark: start time of the command-line tools (``<tool> --help``).

For each entry point (``corral`` and the ``gnt-*`` tools of this
environment's bin directory) prints the time spent importing modules (sum of
``python -X importtime``'s self times, interpreter start-up included) and the
CPU time (user + system) and wall time of ``<tool> --help``, min/median/max
over ``--runs`` runs (the CPU time is what a busy machine does not inflate), next to
Ganeti 3.0's ~0.1 s on this machine (ratio = median / Ganeti; goal 0.08 s).
Each tool runs once first with bytecode writing allowed, so the timed runs
load compiled modules as an installed CLI does. Also prints the interpreter's
own start-up (``python -c pass``) for reference.

Usage: .venv/bin/python bench/cli_start.py [--runs 10] [--tool gnt-instance ...]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TOOLS = ("corral", "gnt-cluster", "gnt-node", "gnt-instance", "gnt-os", "gnt-job",
         "gnt-backup")
GANETI_S = 0.1
GOAL_S = 0.08


def _env(write_bytecode: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def import_seconds(argv: list[str]) -> float:
    """Sum of the self times ``-X importtime`` reports for ``argv``."""
    res = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True,
                         text=True, env=_env(False), check=True, timeout=60)
    total_us = 0
    for line in res.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            total_us += int(line.split("|")[0].split(":")[1])
    return total_us / 1e6


def run_seconds(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU user+system) seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, env=_env(False), check=True, timeout=60)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def stats(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per tool")
    parser.add_argument("--tool", action="append", choices=TOOLS,
                        help="only this tool (repeatable; default: all)")
    args = parser.parse_args()
    tools = args.tool or list(TOOLS)
    base = [run_seconds([sys.executable, "-c", "pass"])[0] for _ in range(args.runs)]
    print(f"{args.runs} runs each; Ganeti 3.0: ~{GANETI_S:.2f} s, goal <= {GOAL_S:.2f} s; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"  {'python -c pass':>14}: wall min/median/max "
          "{:.3f}/{:.3f}/{:.3f} s".format(*stats(base)))
    print(f"  {'tool --help':>14}  {'imports min/med':>16}  {'CPU min/med':>12}"
          f"  {'wall min/med/max (s)':>21}  {'Ganeti (s)':>10}  {'ratio':>5}")
    for tool in tools:
        script = str(BIN / tool)
        subprocess.run([script, "--help"], stdout=subprocess.DEVNULL, env=_env(True),
                       check=True, timeout=60)                     # compile once
        imports = [import_seconds([script, "--help"]) for _ in range(args.runs)]
        runs = [run_seconds([script, "--help"]) for _ in range(args.runs)]
        imin, imed, _ = stats(imports)
        cmin, cmed, _ = stats([cpu for _, cpu in runs])
        wmin, wmed, wmax = stats([wall for wall, _ in runs])
        print(f"  {tool:>14}  {imin:10.3f}/{imed:.3f}  {cmin:6.3f}/{cmed:.3f}"
              f"  {wmin:9.3f}/{wmed:.3f}/{wmax:.3f}  {GANETI_S:10.2f}  {wmed / GANETI_S:5.2f}")


if __name__ == "__main__":
    main()
