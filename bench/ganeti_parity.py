"""Corral next to Ganeti 3.0.2 on the workloads of issue 9's table.

Starts a dev cluster (fake hypervisor, loopback, ``--nodes`` nodes) and fills
it with diskless fake instances (1 MiB, no NICs, OS ``noop``), timing each
row of the table at the size Ganeti's anchor run used: CLI start, ``add`` at
empty and 500 instances, ``list`` at 50/500/N, RAPI ``GET /2/instances?bulk=1``
at 500/N, shutdown/start at 500, creates one per CLI call and in one bulk
submission, master/noded RSS. Prints min/median/max and the ratio of the
median to Ganeti's figure (rates: Ganeti / Corral, so < 1 always means Corral
is better), and the "server" time of list queries (the master's ``Query``
call through the LUXI-like socket, without CLI start).

``--instances N`` sets the size of the large rows (default 10,000, the
issue's; filling runs at 25-150 creates/s, so budget minutes); ``--quick``
uses 3 runs per row and N=1000. The fill stops when ``--fill-budget``
seconds are spent; then the large rows run at what was reached (printed).

    .venv/bin/python bench/ganeti_parity.py [--quick] [--instances N] [--nodes 2]
        [--only list,rapi,rss]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from _common import pid_from_file, rss_mib, spread, timed

from corral import devcluster
from corral.process import run_command

BIN = Path(sys.executable).parent      # the gnt-* scripts of this venv
OS_NAME = "noop"
BATCH = 200         # creates per submit_many call while filling
# MiB per instance: the fake hypervisor accounts the memory of running
# instances against the machine's real memory, so 10,000 of them must fit.
MEMORY = 1


def create_op(name: str, pnode: str) -> dict[str, Any]:
    return {"OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
            "disk_template": "diskless", "os_type": OS_NAME, "pnode": pnode, "disks": [],
            "nics": [], "name_check": False, "ip_check": False,
            "beparams": {"maxmem": MEMORY, "minmem": MEMORY}}


class Bench:
    """A dev cluster and the rows measured on it."""

    def __init__(self, directory: Path, nodes: int, runs: int) -> None:
        self.dev = devcluster.up(nodes, directory, base=devcluster.free_base(nodes),
                                 cluster_name="parity")
        self.client = self.dev.client(timeout=600)
        self.env = {"CORRAL_ROOT": self.dev.master.root}
        self.runs = runs
        self.count = 0
        self.rows: list[tuple[str, str, str, list[float], str]] = []

    # -- helpers ------------------------------------------------------------------
    def gnt(self, *argv: str) -> None:
        res = run_command([str(BIN / argv[0]), *argv[1:]], env=self.env, timeout=600)
        if res.failed:
            raise RuntimeError(f"{' '.join(argv)} failed: {res.fail_reason()}\n{res.output}")

    def pnode(self, i: int) -> str:
        return self.dev.nodes[i % len(self.dev.nodes)].name

    def add_cli(self) -> None:
        name = f"i{self.count}"
        self.gnt("gnt-instance", "add", "-t", "diskless", "-o", OS_NAME, "-n",
                 self.pnode(self.count), "--no-nics", "--no-name-check", "--no-ip-check",
                 "-B", f"maxmem={MEMORY},minmem={MEMORY}", name)
        self.count += 1

    def fill(self, target: int, deadline: float) -> float:
        """Create instances in bulk until ``target`` exist (or the deadline);
        returns creates per second."""
        start, first = time.perf_counter(), self.count
        while self.count < target and time.monotonic() < deadline:
            n = min(BATCH, target - self.count)
            jobs = [[create_op(f"i{self.count + k}", self.pnode(self.count + k))]
                    for k in range(n)]
            ids = []
            for ok, job_id in self.client.submit_many(jobs):
                if not ok:
                    raise RuntimeError(f"submit failed: {job_id}")
                ids.append(job_id)
            for job_id in ids:
                self.client.wait_job(job_id, timeout=600)
            self.count += n
        return (self.count - first) / (time.perf_counter() - start)

    def row(self, label: str, ganeti: str, goal: str, values: list[float],
            unit: str = "s") -> None:
        self.rows.append((label, ganeti, goal, values, unit))
        lo, med, hi = spread(values)
        print(f"  .. {label}: {lo:.3f}/{med:.3f}/{hi:.3f} {unit}", flush=True)

    def times(self, fn: Callable[[], object]) -> list[float]:
        return timed(fn, self.runs)

    def list_rows(self, at: str, ganeti: str, goal: str, name_ganeti: str = "",
                  name_goal: str = "") -> None:
        self.row(f"gnt-instance list, {at}", ganeti, goal,
                 self.times(lambda: self.gnt("gnt-instance", "list")))
        self.row(f"  server: Query(default fields), {at}", "", "", self.times(
            lambda: self.client.query("instance", LIST_FIELDS, None)))
        if name_goal:
            self.row(f"gnt-instance list -o name, {at}", name_ganeti, name_goal,
                     self.times(lambda: self.gnt("gnt-instance", "list", "-o", "name")))
            self.row(f"  server: Query(name), {at}", "", "", self.times(
                lambda: self.client.query("instance", ["name"], None)))

    def rapi_bulk(self, at: str, ganeti: str, goal: str) -> None:
        url = f"https://{self.dev.master.ip}:{self.dev.rapi_port}/2/instances?bulk=1"
        with httpx.Client(verify=False, timeout=600) as http:
            def get() -> None:
                r = http.get(url)
                r.raise_for_status()
                if len(r.json()) != self.count:
                    raise RuntimeError(f"RAPI returned {len(r.json())} of {self.count}")
            get()       # connection set up outside the timing
            self.row(f"RAPI GET /2/instances?bulk=1, {at}", ganeti, goal, self.times(get))

    def rss(self, at: str) -> None:
        master = pid_from_file(self.dev.master.paths.pid_file("masterd"))
        self.row(f"masterd RSS, {at}", "", "<= 200", [rss_mib(master)], "MiB")
        noded = [rss_mib(pid_from_file(n.paths.pid_file("noded"))) for n in self.dev.nodes]
        self.row(f"noded RSS (each node), {at}", "", "<= 60", noded, "MiB")

    def close(self) -> None:
        self.client.close()


@contextmanager
def bench_cluster(nodes: int, runs: int, prefix: str) -> Iterator[Bench]:
    """A :class:`Bench` on a new dev cluster below ``/tmp/<prefix>*``,
    stopped and removed afterwards."""
    top = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    bench = None
    try:
        bench = Bench(top, nodes, runs)
        yield bench
    finally:
        if bench is not None:
            bench.close()
        devcluster.down(top, purge=True)
        shutil.rmtree(top, ignore_errors=True)


LIST_FIELDS = ["name", "hypervisor", "os", "pnode", "status", "oper_ram"]
# Row groups of --only.
ROW_GROUPS = ("cli", "add", "list", "rapi", "ops", "rss")


def report(rows: list[tuple[str, str, str, list[float], str]]) -> None:
    print(f"\n{'workload':<44} {'Ganeti':>8} {'goal':>8} {'min':>8} {'median':>8} "
          f"{'max':>8} {'ratio':>6}")
    for label, ganeti, goal, values, unit in rows:
        lo, med, hi = spread(values)
        ratio = ""
        if ganeti:
            g = float(ganeti)
            ratio = f"{(g / med if unit == '/s' else med / g):.2f}"
        print(f"{label:<44} {ganeti:>8} {goal:>8} {lo:8.3f} {med:8.3f} {hi:8.3f} {ratio:>6}"
              f"  {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per row, N=1000")
    parser.add_argument("--instances", type=int, help="size of the large rows (10000)")
    parser.add_argument("--nodes", type=int, default=2, help="nodes of the dev cluster")
    parser.add_argument("--runs", type=int, help="runs per row (5; --quick: 3)")
    parser.add_argument("--only", help="comma list of row groups to time: "
                        f"{','.join(ROW_GROUPS)} (default: all; bulk creates always run)")
    parser.add_argument("--fill-budget", type=float, default=540,
                        help="seconds allowed for filling to --instances")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 5)
    large = args.instances or (1000 if args.quick else 10000)
    with bench_cluster(args.nodes, runs, "corral-parity-") as bench:
        print(f"{args.nodes}-node dev cluster, fake hypervisor, load {os.getloadavg()}",
              flush=True)
        only = set(args.only.split(",")) if args.only else set(ROW_GROUPS)
        if "cli" in only:
            bench.row("gnt-instance --help (CLI start)", "0.1", "<= 0.08",
                      bench.times(lambda: bench.gnt("gnt-instance", "--help")))
        if "add" in only:
            per_call = bench.times(bench.add_cli)
            bench.row("gnt-instance add, empty", "0.78", "<= 0.12", per_call)
            t0 = time.perf_counter()
            while bench.count < 50:
                bench.add_cli()
            rate = (50 - runs) / (time.perf_counter() - t0)
            bench.row("50 creates, one per CLI call", "1.8", ">= 15", [rate], "/s")
        else:
            bench.fill(50, time.monotonic() + 3600)
        if "list" in only:
            bench.list_rows("50 instances", "0.19", "<= 0.1")
        rate = bench.fill(500, time.monotonic() + 3600)
        bench.row("creates in bulk, 50 -> 500", "1.55", ">= 150", [rate], "/s")
        if "list" in only:
            bench.list_rows("500 instances", "0.23", "<= 0.1")
        if "rapi" in only:
            bench.rapi_bulk("500 instances", "0.15", "<= 0.05")
        if "ops" in only:
            stops, starts = [], []
            for _ in range(runs):
                stops += timed(lambda: bench.gnt("gnt-instance", "shutdown", "i7"), 1)
                starts += timed(lambda: bench.gnt("gnt-instance", "start", "i7"), 1)
            bench.row("gnt-instance shutdown, 500 instances", "0.66", "<= 0.1", stops)
            bench.row("gnt-instance start, 500 instances", "0.66", "<= 0.1", starts)
        if "rss" in only:
            bench.rss("500 instances")
        before = bench.count
        rate = bench.fill(large, time.monotonic() + args.fill_budget)
        bench.row(f"creates in bulk, {before} -> {bench.count}", "1.55", ">= 150",
                  [rate], "/s")
        at = f"{bench.count} instances"
        if "list" in only:
            bench.list_rows(at, "", "<= 0.3", "", "<= 0.15")
        if "rapi" in only:
            bench.rapi_bulk(at, "", "<= 0.6")
        if "rss" in only:
            bench.rss(at)
        report(bench.rows)
        print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
