"""Benchmark: the query engine in one process, without daemons.

Builds a configuration of ``--instances`` instances shaped like those of
``bench/ganeti_parity.py`` (fake hypervisor, diskless, no NICs, 1 MiB, running)
on ``--nodes`` nodes, with live data saying every instance runs on its
primary node, and times the master's side of the parity rows: ``Query`` of
``gnt-instance list``'s default fields, of ``name`` only, and RAPI's
``/2/instances?bulk=1`` (field dicts, then JSON), each as wall and CPU
seconds (min/median/max over ``--runs``), plus the memory the master's
query caches hold afterwards (``tracemalloc``). Live data is a fixed
snapshot here, so every run sees a fresh one as it would after the live
cache's TTL (no reuse of whole rows between runs).

    .venv/bin/python bench/query_engine.py [--instances 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral import constants as C
from corral import wirejson
from corral.config import ConfigStore
from corral.masterd.gcfreeze import tune
from corral.masterd.master import Master
from corral.objects import Cluster, Instance, Node, NodeGroup
from corral.query import LiveData
from corral.rapi.base import query_dicts
from corral.rapi.instances import I_FIELDS

LIST_FIELDS = ["name", "hypervisor", "os", "pnode", "status", "oper_ram"]
BATCH = 1000


class _Context:
    """The part of ``MasterContext`` queries read (no RPC: see _Master)."""

    def __init__(self, cfg: ConfigStore) -> None:
        self.cfg = cfg
        self.rpc = None


def build_config(path: Path, instances: int, nodes: int) -> ConfigStore:
    group = NodeGroup(name="default")
    node_objs = [Node(name=f"node{k + 1}", primary_ip=f"127.0.1.{k + 1}", group=group.uuid,
                      master_candidate=True) for k in range(nodes)]
    cluster = Cluster(cluster_name="bench", master_node=node_objs[0].uuid)
    cfg = ConfigStore.create(path, cluster, node_objs[0], group)
    if nodes > 1:
        cfg.commit(add=node_objs[1:])
    for start in range(0, instances, BATCH):
        cfg.commit(add=[Instance(
            name=f"i{k}", primary_node=node_objs[k % nodes].uuid, os="noop",
            disk_template=C.DT_DISKLESS, admin_state=C.ADMINST_UP,
            beparams={C.BE_MAXMEM: 1, C.BE_MINMEM: 1})
            for k in range(start, min(start + BATCH, instances))])
    return cfg


def live_snapshot(cfg: ConfigStore) -> LiveData:
    """Every instance running on its primary node, as ``all_instances_info`` says."""
    return LiveData(instances={
        i.name: {"memory": 1, "vcpus": 1, "state": "running", "time": 1.0,
                 "node": i.primary_node} for i in cfg.get_instances().values()})


def timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return walls, cpus


def show(label: str, values: tuple[list[float], list[float]]) -> None:
    walls, cpus = values
    print(f"  {label:<34} wall {min(walls):.3f}/{statistics.median(walls):.3f}/"
          f"{max(walls):.3f} s  CPU {min(cpus):.3f}/{statistics.median(cpus):.3f}/"
          f"{max(cpus):.3f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-qbench-") as tmp:
        t0 = time.perf_counter()
        cfg = build_config(Path(tmp) / "config.db", args.instances, args.nodes)
        print(f"{args.instances} instances on {args.nodes} nodes built in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        master = Master(_Context(cfg))  # type: ignore[arg-type]
        snapshot = live_snapshot(cfg)
        # A new LiveData per query (as after the live cache's TTL), same content.
        master._live.get = lambda key, serial, gather: LiveData(  # type: ignore[method-assign]
            instances=snapshot.instances)
        tune()
        show("Query(list default fields)",
             timed(lambda: master.query("instance", LIST_FIELDS, None), args.runs))
        show("Query(name)", timed(lambda: master.query("instance", ["name"], None), args.runs))
        show("RAPI bulk: field dicts",
             timed(lambda: query_dicts(master, "instance", I_FIELDS, None), args.runs))
        dicts = query_dicts(master, "instance", I_FIELDS, None)
        show("RAPI bulk: wirejson.dumps", timed(lambda: wirejson.dumps(dicts), args.runs))
        dicts = []
        gc.collect()
        tracemalloc.start()
        master.query("instance", LIST_FIELDS, None)
        master.query("instance", ["name"], None)
        query_dicts(master, "instance", I_FIELDS, None)
        gc.collect()
        held, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  memory held after the three queries: {held / 2**20:.1f} MiB")
        cfg.close()


if __name__ == "__main__":
    main()
