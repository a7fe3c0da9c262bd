"""Benchmark: cost of committing one changed instance vs. config size.

Builds configurations with 100, 1,000 and 10,000 instances (real SQLite in
a temporary directory) and prints the median time of a commit that updates
one instance. With commits that write only the changed rows, the median
stays flat as the cluster grows (it is dominated by the fsync of the WAL).

Usage: .venv/bin/python bench/config_commit.py [--sizes 100,1000,10000] [--commits 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from corral import constants as C
from corral.config import ConfigStore
from corral.objects import NIC, Cluster, Disk, Instance, Node, NodeGroup


def build(path: Path, n_instances: int, n_nodes: int = 40) -> ConfigStore:
    group = NodeGroup(name="default")
    master = Node(name="node0.example.com", primary_ip="127.0.1.1", group=group.uuid)
    cluster = Cluster(cluster_name="bench.example.com", master_node=master.uuid)
    store = ConfigStore.create(path, cluster, master, group)
    nodes = [Node(name=f"node{i}.example.com", primary_ip=f"127.0.2.{i}", group=group.uuid,
                  master_candidate=False) for i in range(1, n_nodes)]
    store.commit(add=nodes)
    node_uuids = [master.uuid] + [n.uuid for n in nodes]
    batch: list[Instance] = []
    for i in range(n_instances):
        pnode = node_uuids[i % len(node_uuids)]
        batch.append(Instance(
            name=f"inst{i}.example.com", primary_node=pnode, os="debootstrap+default",
            disk_template=C.DT_FILE, beparams={"maxmem": 512},
            nics=[NIC(mac=store.generate_mac())],
            disks=[Disk(iv_name="disk/0", size=10240, nodes=[pnode],
                        logical_id=[C.FD_LOOP, f"/srv/corral/file-storage/inst{i}/disk0"])]))
        if len(batch) == 1000:
            store.commit(add=batch)
            batch = []
    if batch:
        store.commit(add=batch)
    return store


def measure(store: ConfigStore, commits: int) -> list[float]:
    insts = list(store.get_instances().values())
    times: list[float] = []
    for k in range(commits):
        inst = insts[(k * 7919) % len(insts)]
        copy = store.get_instance(inst.uuid).model_copy(deep=True)
        copy.admin_state = C.ADMINST_UP if copy.admin_state != C.ADMINST_UP else C.ADMINST_DOWN
        start = time.perf_counter()
        store.commit(update=[copy])
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--commits", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'instances':>10} {'build s':>8} {'median ms':>10} {'p90 ms':>8} "
          f"{'db rows written':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            t0 = time.perf_counter()
            store = build(Path(tmp) / f"config-{size}.db", size)
            built = time.perf_counter() - t0
            try:
                before = store._conn.total_changes
                times = sorted(measure(store, args.commits))
                rows = (store._conn.total_changes - before) / args.commits
            finally:
                store.close()
            median = statistics.median(times) * 1000
            p90 = times[int(len(times) * 0.9)] * 1000
            print(f"{size:>10} {built:>8.2f} {median:>10.3f} {p90:>8.3f} {rows:>16.1f}")


if __name__ == "__main__":
    main()
