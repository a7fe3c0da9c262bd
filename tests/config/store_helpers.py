"""Helpers for config store tests: build real SQLite stores in tmp_path."""

from __future__ import annotations

from pathlib import Path

from corral import constants as C
from corral.config import ConfigStore
from corral.objects import NIC, Cluster, Disk, Instance, Node, NodeGroup


def make_store(path: Path, master_name: str = "node1.example.com") -> ConfigStore:
    group = NodeGroup(name="default")
    node = Node(name=master_name, primary_ip="127.0.1.1", group=group.uuid)
    cluster = Cluster(cluster_name="cluster.example.com", master_node=node.uuid,
                      enabled_hypervisors=[C.HT_FAKE, C.HT_KVM])
    return ConfigStore.create(path, cluster, node, group)


def make_node(store: ConfigStore, name: str, ip: str, **kw: object) -> Node:
    group = next(iter(store.get_nodegroups()))
    kw.setdefault("master_candidate", False)
    return Node(name=name, primary_ip=ip, group=group, **kw)


def make_instance(store: ConfigStore, name: str, pnode: str | None = None,
                  macs: tuple[str, ...] = (), disks: int = 1, **kw: object) -> Instance:
    pnode = pnode or store.get_cluster().master_node
    dt = kw.pop("disk_template", C.DT_FILE if disks else C.DT_DISKLESS)
    return Instance(
        name=name, primary_node=pnode, os="debootstrap+default", disk_template=dt,
        nics=[NIC(mac=m) for m in macs],
        disks=[Disk(iv_name=f"disk/{i}", size=1024, nodes=[pnode],
                    logical_id=[C.FD_LOOP, f"/srv/corral/file-storage/{name}/disk{i}"])
               for i in range(disks)],
        **kw)


def snapshot(store: ConfigStore) -> dict[str, object]:
    """Comparable form of a store's whole content (cache side)."""
    full = store.export_all()
    return {"serial_no": full.serial_no,
            **{kind: sorted(objs, key=lambda d: d["uuid"])
               for kind, objs in full.upserts.items()}}


def disk_snapshot(path: Path) -> dict[str, object]:
    """Comparable form of what is on disk (through a second connection)."""
    other = ConfigStore.open(path)
    try:
        return snapshot(other)
    finally:
        other.close()
