"""A development cluster of several nodes on one machine (``corral dev-cluster``).

Mirrors Ganeti's "virtual cluster" (``vcluster``) set-up: node K has its own
state root ``DIR/nodeK`` and listens on ``{base}.K`` (loopback addresses, so
nothing leaves the machine). node1 is the master; the other nodes are added
with join tokens, exactly as real nodes are. Every node's shared file
storage directory is a symlink to ``DIR/shared-file-storage``, so
``sharedfile`` disks are visible on all nodes. ``DIR/devcluster.json``
describes the cluster for :func:`down` and for tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corral import constants as C
from corral import daemons, errors
from corral.paths import Paths
from corral.process import run_command

log = logging.getLogger(__name__)

STATE_FILE = "devcluster.json"
SHARED_DIR = "shared-file-storage"
# Valid interface names (nothing that could walk out of /sys/class/net).
_TAP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
NODE_ADD_TIMEOUT = 120.0            # seconds per node
# The dev cluster's instance policy bounds: test and demo instances are tiny
# (no NIC, disks of a few MiB) and some tests ask for absurd sizes to reach
# the resource checks, so its bounds start at zero and are practically
# unlimited instead of Ganeti's defaults (1 NIC, 1 GiB disks, 32 GiB memory).
DEV_IPOLICY_BOUNDS: dict[str, dict[str, int]] = {
    "min": {"memory-size": 0, "cpu-count": 0, "disk-count": 0, "disk-size": 0,
            "nic-count": 0, "spindle-use": 0},
    "max": {"memory-size": 1 << 40, "cpu-count": 1 << 10, "disk-count": C.MAX_DISKS,
            "disk-size": 1 << 40, "nic-count": C.MAX_NICS, "spindle-use": 1 << 10},
}


@dataclass
class DevNode:
    name: str
    ip: str
    root: str
    noded_port: int

    @property
    def paths(self) -> Paths:
        return Paths(Path(self.root))


@dataclass
class DevCluster:
    """What :func:`up` created; stored as ``DIR/devcluster.json``."""

    directory: str
    cluster_name: str
    nodes: list[DevNode]
    rapi_port: int = C.DEFAULT_RAPI_PORT
    taps: list[str] = field(default_factory=list)
    # Linux bridges made for the cluster's bridged NICs (kvm), deleted by down.
    bridges: list[str] = field(default_factory=list)

    @property
    def master(self) -> DevNode:
        return self.nodes[0]

    @property
    def master_paths(self) -> Paths:
        return self.master.paths

    def node(self, name: str) -> DevNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def client(self, timeout: float = 60.0) -> Any:
        """A :class:`~corral.masterd.client.MasterClient` for the master."""
        from corral.masterd.client import MasterClient
        return MasterClient(self.master_paths, timeout=timeout)

    def save(self) -> None:
        path = Path(self.directory) / STATE_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DevCluster | None:
        """The cluster described in ``directory``, or None if there is none."""
        try:
            data = json.loads((Path(directory) / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise errors.CorralError(f"Corrupt {STATE_FILE} in {directory}: {exc}",
                                     errors.ECODE_ENVIRON) from None
        data["nodes"] = [DevNode(**n) for n in data.get("nodes", [])]
        return cls(**data)


def _node_ip(base: str, k: int) -> str:
    parts = base.split(".")
    if len(parts) != 3 or parts[0] != "127" or not all(p.isdigit() and 0 <= int(p) < 256
                                                       for p in parts):
        raise errors.OpPrereqError(f"Base '{base}' must be the first three octets of a "
                                   "loopback address (127.x.y)", errors.ECODE_INVAL)
    return f"{base}.{k}"


def free_base(n: int, first: int = 40) -> str:
    """A ``127.0.X`` range where nodes 1..n can bind noded's port and node1
    the RAPI port (for benchmarks; tests use their own locked ranges).

    Raises ``CorralError`` (ECODE_ENVIRON) when every range is taken.
    """
    for third in range(first, 250):
        base = f"127.0.{third}"
        binds = [(f"{base}.{k}", C.DEFAULT_NODED_PORT) for k in range(1, n + 1)]
        try:
            for ip, port in [*binds, (f"{base}.1", C.DEFAULT_RAPI_PORT)]:
                with socket.socket() as s:
                    s.bind((ip, port))
        except OSError:
            continue
        return base
    raise errors.CorralError("No free loopback range for a dev cluster",
                             errors.ECODE_ENVIRON)


def up(n: int, directory: str | os.PathLike[str],
       hypervisors: Iterable[str] = (C.HT_FAKE,),
       disk_templates: Iterable[str] = (C.DT_FILE, C.DT_SHARED_FILE, C.DT_DISKLESS),
       base: str = "127.0.1", noded_port: int = C.DEFAULT_NODED_PORT,
       cluster_name: str = "corral-dev", rapi_port: int = C.DEFAULT_RAPI_PORT,
       feedback_fn: Any = None) -> DevCluster:
    """Create and start an ``n``-node cluster below ``directory``.

    Node K (1-based) has root ``directory/nodeK`` and IP ``{base}.K``; node1
    is the master; the instance policy's bounds are :data:`DEV_IPOLICY_BOUNDS`.
    Raises ``OpPrereqError`` (ECODE_INVAL) for bad arguments,
    ECODE_STATE if ``directory`` already holds a cluster; if a step fails,
    everything started so far is stopped (:func:`down`) and the error
    re-raised.
    """
    from corral.bootstrap import init_cluster

    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 254:
        raise errors.OpPrereqError(f"Invalid number of nodes {n!r} (1-254)",
                                   errors.ECODE_INVAL)
    directory = Path(directory).resolve()
    if (directory / STATE_FILE).exists():
        raise errors.OpPrereqError(f"{directory} already holds a dev cluster; run "
                                   "'down' first", errors.ECODE_STATE)
    nodes = [DevNode(name=f"node{k}", ip=_node_ip(base, k), root=str(directory / f"node{k}"),
                     noded_port=noded_port) for k in range(1, n + 1)]
    for node in nodes:
        if (Path(node.root) / "var/lib/corral/config.db").exists():
            raise errors.OpPrereqError(f"{node.root} already holds a cluster configuration",
                                       errors.ECODE_STATE)
    directory.mkdir(parents=True, exist_ok=True)
    dev = DevCluster(directory=str(directory), cluster_name=cluster_name, nodes=nodes,
                     rapi_port=rapi_port)
    shared = directory / SHARED_DIR
    shared.mkdir(exist_ok=True)
    for node in nodes:
        _link_shared_storage(node.paths, shared)
    dev.save()
    hypervisors = list(hypervisors)
    try:
        master = nodes[0]
        hvparams, nicparams = _kvm_setup(dev, hypervisors)
        init_cluster(master.paths, cluster_name, master.ip, master_name=master.name,
                     noded_port=noded_port, enabled_hypervisors=hypervisors,
                     enabled_disk_templates=list(disk_templates), rapi_port=rapi_port,
                     hvparams=hvparams, nicparams=nicparams, feedback_fn=feedback_fn,
                     ipolicy={"minmax": [DEV_IPOLICY_BOUNDS]})
        for node in nodes[1:]:
            add_node(dev, node, feedback_fn)
    except BaseException as exc:
        log.debug("dev-cluster up failed (%s); stopping it", exc, exc_info=True)
        down(directory)
        raise
    return dev


def bridge_name(directory: str | os.PathLike[str]) -> str:
    """The bridge of the dev cluster in ``directory`` (at most 15 characters)."""
    digest = hashlib.sha1(os.fsencode(Path(directory).resolve())).hexdigest()[:8]
    return f"crlbr{digest}"


def _kvm_setup(dev: DevCluster, hypervisors: list[str]
               ) -> tuple[dict[str, dict[str, Any]] | None, dict[str, Any] | None]:
    """For kvm: a guest kernel (shared by all nodes on this machine) and a
    bridge without uplink for bridged NICs. Returns (hvparams, nicparams)."""
    if C.HT_KVM not in hypervisors:
        return None, None
    from corral.guestkernel import prepare_guest_kernel

    guest = prepare_guest_kernel(dev.master.paths)
    bridge = bridge_name(dev.directory)
    if not Path(f"/sys/class/net/{bridge}").exists():
        res = run_command(["ip", "link", "add", "name", bridge, "type", "bridge"], timeout=10)
        if res.failed:
            raise errors.OpPrereqError(f"Cannot create bridge {bridge}: {res.output.strip()}",
                                       errors.ECODE_ENVIRON)
    dev.bridges.append(bridge)
    dev.save()
    res = run_command(["ip", "link", "set", bridge, "up"], timeout=10)
    if res.failed:
        raise errors.OpPrereqError(f"Cannot bring bridge {bridge} up: {res.output.strip()}",
                                   errors.ECODE_ENVIRON)
    # Loopback has bandwidth to spare, and under TCG QEMU 7.2 occasionally
    # loses dirty pages in slow multi-pass live migrations (measured: about
    # 1 guest in 20 at 16 MiB/s, none in 40 at 1000 MiB/s).
    hvparams = {C.HT_KVM: {"kernel_path": str(guest.kernel_path),
                           "initrd_path": str(guest.initrd_path),
                           "migration_bandwidth": 1000}}
    return hvparams, {C.NIC_MODE: C.NIC_MODE_BRIDGED, C.NIC_LINK: bridge}


def _link_shared_storage(paths: Paths, shared: Path) -> None:
    link = paths.default_shared_file_storage_dir
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        if Path(os.readlink(link)) == shared:
            return
        link.unlink()
    elif link.exists():
        raise errors.OpPrereqError(f"{link} exists and is not a symlink",
                                   errors.ECODE_STATE)
    link.symlink_to(shared, target_is_directory=True)


def add_node(dev: DevCluster, node: DevNode, feedback_fn: Any = None) -> None:
    """Start ``node``'s noded with a fresh join token and add it to ``dev``."""
    with dev.client() as client:
        token = client.create_join_token(600)
        paths = node.paths
        paths.ensure_dirs()
        daemons.start_noded(paths, node.ip, node.noded_port, join_token=token)
        job_id = client.submit_job([{"OP_ID": "OP_NODE_ADD", "node_name": node.name,
                                     "primary_ip": node.ip, "noded_port": node.noded_port}])
        client.wait_job(job_id, feedback_fn, timeout=NODE_ADD_TIMEOUT)


# -- down -------------------------------------------------------------------------------

def down(directory: str | os.PathLike[str], purge: bool = False) -> list[str]:
    """Stop everything of the dev cluster in ``directory``; idempotent.

    Stops masterd and every noded, then kills any process still using files
    below ``directory`` (working directory, command line or open files),
    deletes the tap devices listed in the state file, and unmounts whatever
    is mounted below it. With ``purge`` the directory is removed too.
    Returns messages about what had to be forced (empty when all was clean).
    """
    directory = Path(directory).resolve()
    notes: list[str] = []
    dev = DevCluster.load(directory)
    roots = [Path(n.root) for n in dev.nodes] if dev else sorted(directory.glob("node*"))
    for root in roots:
        paths = Paths(root)
        for name in (daemons.MASTERD, daemons.NODED):
            try:
                daemons.stop_daemon(paths, name)
            except errors.CorralError as err:
                notes.append(str(err))
    for pid in _processes_using(directory):
        notes.append(f"killed process {pid} ({' '.join(_cmdline(pid))[:80]})")
        daemons.kill_pid(pid, timeout=5)
    taps = list(dev.taps) if dev else []
    for root in roots:
        taps += [t for t in _recorded_taps(Paths(root)) if t not in taps]
    for tap in taps:
        # Only existing tun/tap devices (they have tun_flags), never lo or a NIC.
        if _TAP_RE.match(tap) and Path(f"/sys/class/net/{tap}/tun_flags").exists():
            res = run_command(["ip", "link", "delete", tap], timeout=10)
            notes.append(f"deleted tap {tap}" if not res.failed
                         else f"could not delete tap {tap}: {res.output.strip()}")
    for bridge in (dev.bridges if dev else []):
        # Only bridges this cluster made (recorded in its state file).
        if Path(f"/sys/class/net/{bridge}/bridge").exists():
            res = run_command(["ip", "link", "delete", bridge, "type", "bridge"], timeout=10)
            if res.failed:
                notes.append(f"could not delete bridge {bridge}: {res.output.strip()}")
    for mount in _mounts_below(directory):
        res = run_command(["umount", "-l", mount], timeout=30)
        notes.append(f"unmounted {mount}" if not res.failed
                     else f"could not unmount {mount}: {res.output.strip()}")
    for root in roots:
        with contextlib.suppress(FileNotFoundError):
            Paths(root).master_socket.unlink()
    if purge and directory.exists():
        shutil.rmtree(directory)
    for note in notes:
        log.warning("dev-cluster down: %s", note)
    return notes


def _recorded_taps(paths: Paths) -> list[str]:
    """Tap devices the KVM hypervisor recorded for instances of this node
    (``<run_dir>/kvm-hypervisor/nic/<instance>/<seq>``)."""
    nic_dir = paths.hypervisor_run_dir(C.HT_KVM) / "nic"
    taps = []
    for path in sorted(nic_dir.glob("*/*")):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            name = path.read_text().strip()
            if name:
                taps.append(name)
    return taps


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _is_below(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _protected_pids() -> set[int]:
    """This process and its ancestors: never killed."""
    pids = set()
    pid = os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _processes_using(directory: Path) -> list[int]:
    """Pids whose cwd, command line or open files are below ``directory``."""
    dirname = str(directory)
    protected = _protected_pids()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in protected:
            continue
        try:
            if _uses(entry, dirname):
                found.append(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue            # exited meanwhile
    return found


def _uses(proc: Path, dirname: str) -> bool:
    try:
        stat = (proc / "stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    except OSError:
        return False
    with contextlib.suppress(PermissionError, OSError):
        if _is_below(os.readlink(proc / "cwd"), dirname):
            return True
    with contextlib.suppress(OSError):
        args = (proc / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
        if any(a == dirname or a.endswith("=" + dirname) or dirname + "/" in a
               for a in args):
            return True
    with contextlib.suppress(PermissionError, OSError):
        for fd in (proc / "fd").iterdir():
            with contextlib.suppress(OSError):
                if _is_below(os.readlink(fd), dirname):
                    return True
    return False


def _mounts_below(directory: Path) -> list[str]:
    """Mount points below ``directory``, deepest first."""
    dirname = str(directory)
    mounts = []
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 2:
            continue
        # /proc/mounts escapes spaces etc. as octal (\040).
        point = fields[1].encode().decode("unicode_escape")
        if _is_below(point, dirname):
            mounts.append(point)
    return sorted(set(mounts), key=len, reverse=True)


def wait_for_processes_gone(directory: str | os.PathLike[str], timeout: float = 10.0) -> bool:
    """True once no process uses ``directory`` (for tests)."""
    deadline = time.monotonic() + timeout
    while _processes_using(Path(directory).resolve()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


__all__ = ["DevCluster", "DevNode", "add_node", "down", "up", "wait_for_processes_gone"]
