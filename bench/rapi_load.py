"""Benchmark: RAPI under 200 concurrent readers and 50 concurrent writers.

Starts a one-node dev cluster (fake hypervisor, diskless instances), adds a
RAPI user with write access, then for ``--duration`` seconds drives
``--readers`` concurrent readers (a mix of ``GET /2/info``, ``/2/instances``,
``/2/instances?bulk=1``, ``/2/instances/NAME`` and ``/2/jobs``) and
``--writers`` concurrent writers (each creates its own instance, then loops
over modify, shutdown and startup, waiting for every job through
``/2/jobs/ID`` like a real client) over HTTPS with keep-alive connections.
Prints throughput and p50/p99 latency per kind next to the reference of
issue 8 (14 requests/s, median 15 s under 200 readers + 100 creates) as
ratios. Goal: reads above 500 requests/s with p99 under 1 s.

It also prints the CPU time of masterd, noded and the RAPI processes per
request, and how idle the machine was (other load included: the figures
depend on what else runs).

The load runs in ``--procs`` client processes (the client costs CPU too;
one Python process cannot drive 250 TLS connections at full speed).

Usage: .venv/bin/python bench/rapi_load.py [--duration 30] [--readers 200]
       [--writers 50] [--procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import random
import shutil
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from corral import constants as C
from corral import devcluster

# Issue 8's figures (before the fix): whole RAPI throughput and median latency.
REF_RPS = 14.0
REF_MEDIAN_S = 15.0
GOAL_READ_RPS = 500.0
GOAL_READ_P99_S = 1.0
USER, PASSWORD = "bench", "benchpw"
READ_PATHS = ("/2/info", "/2/instances", "/2/instances?bulk=1", "/2/instances/{name}",
              "/2/jobs")
JOB_POLL_INTERVAL = 0.2


def create_body(name: str) -> dict[str, Any]:
    return {"__version__": 1, "name": name, "mode": "create", "disk_template": "diskless",
            "os": "noop", "pnode": "node1", "disks": [], "nics": [], "name_check": False,
            "ip_check": False, "beparams": {"maxmem": 128, "minmem": 128}}


class Recorder:
    """Latencies (seconds) and failures per request kind."""

    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}

    def add(self, kind: str, seconds: float, ok: bool) -> None:
        self.lat.setdefault(kind, []).append(seconds)
        if not ok:
            self.errors[kind] = self.errors.get(kind, 0) + 1


class Conn:
    """One keep-alive HTTPS connection speaking minimal HTTP/1.1 (a light
    client: the load generator shares the CPU with the daemons it measures,
    and a full HTTP client library costs more per request than the server)."""

    def __init__(self, host: str, port: int, ssl_ctx: ssl.SSLContext) -> None:
        self.host, self.port, self.ssl_ctx = host, port, ssl_ctx
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None,
                      auth: str | None = None) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl_ctx)
        assert self.reader is not None
        data = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if auth:
            head += f"Authorization: Basic {auth}\r\n"
        if data:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(data)}\r\n\r\n"
        try:
            self.writer.write(head.encode() + data)
            lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            status = int(lines[0].split()[1])
            length = next(int(line.split(b":", 1)[1]) for line in lines
                          if line.lower().startswith(b"content-length:"))
            payload = json.loads(await self.reader.readexactly(length))
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
            self.writer.close()
            self.reader = self.writer = None
            raise
        if any(line.lower() == b"connection: close" for line in lines):
            self.writer.close()
            self.reader = self.writer = None
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _timed(rec: Recorder, kind: str, conn: Conn, method: str, path: str,
                 body: Any = None, auth: str | None = None) -> tuple[int, Any] | None:
    t0 = time.perf_counter()
    try:
        status, payload = await conn.request(method, path, body, auth)
    except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
        rec.add(kind, time.perf_counter() - t0, False)
        return None
    rec.add(kind, time.perf_counter() - t0, status == 200)
    return status, payload


async def reader(conn: Conn, rec: Recorder, names: list[str], stop: float,
                 seed: int) -> None:
    rnd = random.Random(seed)
    while time.monotonic() < stop:
        path = rnd.choice(READ_PATHS)
        kind = "read " + path.split("?")[0].replace("{name}", "NAME") + \
            ("?bulk=1" if "bulk" in path else "")
        await _timed(rec, kind, conn, "GET", path.format(name=rnd.choice(names)))


async def wait_job(conn: Conn, rec: Recorder, job_id: Any, stop: float) -> None:
    while time.monotonic() < stop + 60:
        got = await _timed(rec, "write-poll /2/jobs/ID", conn, "GET", f"/2/jobs/{job_id}")
        if got is not None and got[0] == 200 and got[1]["status"] in C.JOBS_FINALIZED:
            return
        await asyncio.sleep(JOB_POLL_INTERVAL)


async def writer(conn: Conn, rec: Recorder, name: str, stop: float, jobs: Recorder) -> None:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    steps = [("create", "POST", "/2/instances", create_body(name)),
             ("modify", "PUT", f"/2/instances/{name}/modify",
              {"beparams": {"maxmem": 128, "minmem": 128}}),
             ("shutdown", "PUT", f"/2/instances/{name}/shutdown", None),
             ("startup", "PUT", f"/2/instances/{name}/startup", None)]
    i = 0
    while time.monotonic() < stop:
        kind, method, path, body = steps[i]
        i = i + 1 if i + 1 < len(steps) else 1
        t0 = time.perf_counter()
        got = await _timed(rec, f"write {kind}", conn, method, path, body, auth)
        if got is None or got[0] != 200:
            await asyncio.sleep(0.5)
            continue
        await wait_job(conn, rec, got[1], stop)
        jobs.add(f"job {kind} (submit to end)", time.perf_counter() - t0, True)


async def drive(host: str, port: int, readers: int, writers: int, duration: float,
                prefix: str, names: list[str]) -> tuple[Recorder, Recorder]:
    rec, jobs = Recorder(), Recorder()
    ssl_ctx = ssl.create_default_context()
    ssl_ctx.check_hostname = False
    ssl_ctx.verify_mode = ssl.CERT_NONE
    # One keep-alive connection per simulated client.
    conns = [Conn(host, port, ssl_ctx) for _ in range(readers + writers)]
    stop = time.monotonic() + duration
    tasks = [reader(conns[k], rec, names, stop, k) for k in range(readers)]
    tasks += [writer(conns[readers + k], rec, f"{prefix}w{k}", stop, jobs)
              for k in range(writers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for conn in conns:
            conn.close()
    return rec, jobs


def _proc(args: tuple[str, int, int, int, float, str, list[str]]) -> tuple[dict, dict, dict]:
    rec, jobs = asyncio.run(drive(*args))
    return rec.lat, rec.errors, jobs.lat


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (seconds)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _daemon_pids(paths: Any) -> dict[str, list[int]]:
    """Pids of masterd, noded and the RAPI processes of the master node."""
    from corral import daemons

    return {name: daemons.all_daemon_pids(paths, name)
            for name in (daemons.MASTERD, daemons.NODED, daemons.RAPI)}


def _machine_idle() -> float:
    """Idle CPU seconds of the whole machine since boot (all CPUs)."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(lat: dict[str, list[float]], errs: dict[str, int], duration: float) -> None:
    print(f"{'kind':<32} {'req':>6} {'err':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} | "
          f"{'req/s vs 14':>11} {'p50 vs 15 s':>11}")
    groups: dict[str, list[float]] = {}
    for kind in sorted(lat):
        if kind.startswith("read"):
            groups.setdefault("ALL READS", []).extend(lat[kind])
        elif kind.startswith("write"):
            groups.setdefault("ALL WRITES (incl. polls)", []).extend(lat[kind])
    rows = sorted(lat.items()) + sorted(groups.items())
    for kind, values in rows:
        n = len(values)
        err = sum(e for k, e in errs.items() if k == kind or
                  (kind == "ALL READS" and k.startswith("read")) or
                  (kind.startswith("ALL WRITES") and k.startswith("write")))
        rps = n / duration
        p50, p99 = _pct(values, 0.5), _pct(values, 0.99)
        ratio_rps = f"{rps / REF_RPS:>10.1f}x" if not kind.startswith("job") else ""
        ratio_lat = f"{REF_MEDIAN_S / p50:>10.0f}x" if not kind.startswith("job") else ""
        print(f"{kind:<32} {n:>6} {err:>4} {rps:>8.1f} {p50 * 1000:>8.1f} "
              f"{p99 * 1000:>8.1f} | {ratio_rps:>11} {ratio_lat:>11}")
    reads = groups.get("ALL READS", [])
    if reads:
        rps, p99 = len(reads) / duration, _pct(reads, 0.99)
        ok = rps > GOAL_READ_RPS and p99 < GOAL_READ_P99_S
        print(f"goal: reads > {GOAL_READ_RPS:.0f} req/s and p99 < {GOAL_READ_P99_S:.0f} s: "
              f"{'met' if ok else 'NOT met'} ({rps:.0f} req/s, p99 {p99 * 1000:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--instances", type=int, default=20,
                        help="instances created before the load (read targets)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="corral-rl-", dir="/tmp"))
    cluster = devcluster.up(1, directory, disk_templates=(C.DT_DISKLESS,),
                            base=devcluster.free_base(1, first=60))
    try:
        users = cluster.master_paths.rapi_users
        users.parent.mkdir(parents=True, exist_ok=True)
        users.write_text(f"{USER} {PASSWORD} write\n")
        base = f"https://{cluster.master.ip}:{cluster.rapi_port}"
        names = [f"pre{k}" for k in range(args.instances)]
        with httpx.Client(base_url=base, verify=False, timeout=120) as http:
            ids = [http.post("/2/instances", json=create_body(n), auth=(USER, PASSWORD))
                   .json() for n in names]
            for job_id in ids:
                while http.get(f"/2/jobs/{job_id}").json()["status"] not in C.JOBS_FINALIZED:
                    time.sleep(0.2)
        per = [(cluster.master.ip, cluster.rapi_port, args.readers // args.procs,
                args.writers // args.procs, args.duration,
                f"p{k}", names) for k in range(args.procs)]
        pids = _daemon_pids(cluster.master_paths)
        cpu0 = {name: sum(map(_cpu_seconds, group)) for name, group in pids.items()}
        idle0 = _machine_idle()
        t0 = time.monotonic()
        with multiprocessing.get_context("spawn").Pool(args.procs) as pool:
            results = pool.map(_proc, per)
        elapsed = time.monotonic() - t0
        cpu = {name: sum(map(_cpu_seconds, group)) - cpu0[name] for name, group in pids.items()}
        idle = (_machine_idle() - idle0) / elapsed / os.cpu_count()
        lat: dict[str, list[float]] = {}
        errs: dict[str, int] = {}
        for part_lat, part_err, part_jobs in results:
            for src in (part_lat, part_jobs):
                for kind, values in src.items():
                    lat.setdefault(kind, []).extend(values)
            for kind, n in part_err.items():
                errs[kind] = errs.get(kind, 0) + n
        with open("/proc/loadavg") as fh:
            load = fh.read().split()[:3]
        print(f"RAPI load: {args.readers} readers + {args.writers} writers, {args.duration:.0f}"
              f" s (wall {elapsed:.1f} s), {args.procs} client processes, HTTPS keep-alive, "
              f"load average {' '.join(load)}")
        print(f"reference (issue 8): {REF_RPS:.0f} req/s, median {REF_MEDIAN_S:.0f} s")
        report(lat, errs, args.duration)
        total = sum(len(v) for k, v in lat.items() if not k.startswith("job"))
        jobs = sum(len(v) for k, v in lat.items() if k.startswith("job"))
        for name, seconds in cpu.items():
            procs = f" ({len(pids[name])} processes)" if len(pids[name]) > 1 else ""
            print(f"{name}{procs} CPU: {seconds:.1f} s ({seconds / elapsed * 100:.0f} % of a core) "
                  f"for {total} requests ({seconds / max(total, 1) * 1000:.2f} ms per "
                  f"request) and {jobs} jobs")
        print(f"machine idle: {idle * 100:.0f} % of {os.cpu_count()} CPUs (other load "
              "included)")
    finally:
        devcluster.down(cluster.directory, purge=True)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
