"""CPU per job of masterd (and of all node daemons) next to wall figures.

On a shared machine wall times move with the load; the CPU a daemon spends
per job (``utime + stime`` from ``/proc/<pid>/stat``) does not, so this is
the figure to compare before and after a change of the job path. Starts a
dev cluster (fake hypervisor, ``--nodes`` nodes) like ``ganeti_parity.py``
and measures: ``--cli`` creates one per ``gnt-instance add``, ``--bulk``
creates in bulk submissions (after 50 instances), and shutdown/start of one
instance ``--runs`` times.

    .venv/bin/python bench/job_cost.py [--cli 10] [--bulk 300] [--runs 5] [--nodes 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _common import pid_from_file
from ganeti_parity import bench_cluster


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", type=int, default=10, help="creates one per CLI call")
    parser.add_argument("--bulk", type=int, default=300, help="creates in bulk")
    parser.add_argument("--runs", type=int, default=5, help="shutdown/start pairs")
    parser.add_argument("--nodes", type=int, default=2, help="nodes of the dev cluster")
    args = parser.parse_args()
    with bench_cluster(args.nodes, args.runs, "corral-jobcost-") as bench:
        master = pid_from_file(bench.dev.master.paths.pid_file("masterd"))
        nodeds = [pid_from_file(n.paths.pid_file("noded")) for n in bench.dev.nodes]

        def cpu() -> tuple[float, float]:
            return cpu_s(master), sum(cpu_s(p) for p in nodeds)

        def line(label: str, jobs: int, start: tuple[float, float], wall: str) -> None:
            end = cpu()
            print(f"{label:<34} {wall:<36} masterd {(end[0] - start[0]) / jobs * 1000:5.1f}"
                  f" ms/job, noded (all) {(end[1] - start[1]) / jobs * 1000:5.1f} ms/job",
                  flush=True)

        print(f"{args.nodes}-node dev cluster, load {os.getloadavg()}", flush=True)
        bench.add_cli()                              # warm-up
        start, walls = cpu(), []
        for _ in range(args.cli):
            t0 = time.perf_counter()
            bench.add_cli()
            walls.append(time.perf_counter() - t0)
        line(f"gnt-instance add x{args.cli}", args.cli, start,
             f"median {statistics.median(walls):.3f} s")
        bench.fill(50, time.monotonic() + 600)
        start, first = cpu(), bench.count
        rate = bench.fill(first + args.bulk, time.monotonic() + 600)
        line(f"bulk creates {first} -> {bench.count}", bench.count - first, start,
             f"{rate:.1f} creates/s")
        start, stops, starts = cpu(), [], []
        for _ in range(args.runs):
            for argv, out in (("shutdown", stops), ("start", starts)):
                t0 = time.perf_counter()
                bench.gnt("gnt-instance", argv, "i7")
                out.append(time.perf_counter() - t0)
        line("gnt-instance shutdown/start", 2 * args.runs, start,
             f"median {statistics.median(stops):.3f}/{statistics.median(starts):.3f} s")
        print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
