"""Live migration of local disks: NBD export on the target, block mirror on the source.

What Proxmox calls ``--with-local-disks`` and libvirt ``--copy-storage-all``:
before the memory migration, every disk of the running instance is copied
to empty disks of the same size on the target node, and guest writes keep
both copies equal until the guest stops on the source.

* target (its incoming QEMU already started by ``accept_instance``):
  :func:`start_export` runs ``nbd-server-start`` on the target node's own
  address and ``block-export-add`` (writable) for each disk;
* source: :func:`start_mirror` adds an NBD client node per disk
  (``blockdev-add``) and starts ``blockdev-mirror`` (``sync: full``,
  ``copy-mode: write-blocking``, so once a job is *ready* each guest write
  completes only when it is on both nodes); :func:`mirror_status` reports
  progress; after the memory migration completed (the source guest is
  stopped), :func:`finish_mirror` cancels the ready jobs (which ends them
  without switching the source over) and removes the client nodes, and the
  target drops its exports with :func:`stop_export`.

On failure :func:`finish_mirror` with ``success=False`` force-cancels the
jobs before the target QEMU is killed, so the source guest never waits for
a dead target. Names of jobs, nodes and exports are ``corral-mirror-diskN``
(``diskN`` is the drive id of :mod:`corral.hypervisor.kvm.cmdline`). The
NBD traffic only flows between the two nodes' addresses: the server binds
to the target's IP given by the master.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

from corral import errors
from corral.hypervisor.kvm.monitor import (
    CommandFailed,
    MonitorError,
    MonitorUnavailable,
    QmpMonitor,
)
from corral.hypervisor.kvm.runtime import KvmRuntime, RuntimeDirs
from corral.paths import Paths

log = logging.getLogger(__name__)

PREFIX = "corral-mirror-"
QMP_TIMEOUT = 30.0
CANCEL_TIMEOUT = 60.0
CONNECT_ATTEMPTS = 5
_LEGACY_DISK_TYPES = ("sd", "mtd", "pflash")     # drives without an id (cmdline)


class _Monitor(QmpMonitor):
    """QMP that retries a failed connection: a QEMU busy emitting events
    (a failing block job) can break the capabilities negotiation. No command
    was sent when connecting fails, so retrying is always safe."""

    def execute_many(self, commands: list[tuple[str, dict[str, Any] | None]],
                     timeout: float | None = None) -> list[Any]:
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                return super().execute_many(commands, timeout)
            except MonitorUnavailable as err:
                if attempt + 1 == CONNECT_ATTEMPTS or not Path(self.socket_path).exists():
                    raise
                log.info("QMP connection to %s failed (%s), retrying", self.socket_path, err)
                time.sleep(0.2)
        raise AssertionError("unreachable")


def _monitor(paths: Paths, name: str) -> QmpMonitor:
    return _Monitor(RuntimeDirs(paths).qmp_socket(name), timeout=QMP_TIMEOUT)


def drive_ids(paths: Paths, name: str) -> list[str]:
    """Drive ids (``disk0``...) of the instance's disks, from its runtime file.

    Raises :class:`errors.HypervisorError` if there is no runtime file or
    the disk type has no drive ids to mirror.
    """
    runtime: KvmRuntime = RuntimeDirs(paths).load_runtime(name)
    disk_type = str(runtime.hvparams.get("disk_type") or "")
    if disk_type in _LEGACY_DISK_TYPES:
        raise errors.HypervisorError(f"Disks of type {disk_type} of instance {name} cannot "
                                     "be mirrored")
    return [f"disk{idx}" for idx in range(len(runtime.disks))]


def _pick_port(host: str) -> int:
    """A free TCP port on ``host`` (the kernel's choice)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, 0))
        except OSError as err:
            raise errors.HypervisorError(f"Cannot bind to {host} for the disk mirror: "
                                         f"{err}") from err
        return int(sock.getsockname()[1])


# -- target ------------------------------------------------------------------------
def start_export(paths: Paths, name: str, host: str, port: int = 0) -> dict[str, Any]:
    """Export the disks of the incoming instance ``name`` over NBD on ``host``.

    ``port`` 0 picks a free port. Returns ``{"host", "port", "exports":
    [drive ids]}`` (the export names). Raises :class:`errors.HypervisorError`;
    nothing stays exported then.
    """
    drives = drive_ids(paths, name)
    monitor = _monitor(paths, name)
    nodes = {b.get("device"): (b.get("inserted") or {}).get("node-name")
             for b in monitor.execute("query-block")}
    missing = [d for d in drives if not nodes.get(d)]
    if missing:
        raise errors.HypervisorError(f"Instance {name} has no block node for drive(s) "
                                     f"{', '.join(missing)}")
    port = port or _pick_port(host)
    monitor.execute("nbd-server-start", {"addr": {"type": "inet", "data": {
        "host": host, "port": str(port)}}})
    try:
        for drive in drives:
            monitor.execute("block-export-add", {
                "type": "nbd", "id": PREFIX + drive, "node-name": nodes[drive],
                "name": drive, "writable": True})
    except MonitorError:
        stop_export(paths, name)
        raise
    log.info("exporting disks %s of %s on %s:%d", drives, name, host, port)
    return {"host": host, "port": port, "exports": drives}


def stop_export(paths: Paths, name: str) -> None:
    """Remove the NBD exports of ``name`` and stop its NBD server (idempotent).

    Raises :class:`errors.HypervisorError` only if QEMU refuses; a QEMU
    that is gone has nothing left to stop.
    """
    monitor = _monitor(paths, name)
    try:
        exports = monitor.execute("query-block-exports")
    except MonitorError:
        if RuntimeDirs(paths).alive_pid(name) is None:
            return
        raise
    for exp in exports:
        if str(exp.get("id", "")).startswith(PREFIX):
            monitor.execute("block-export-del", {"id": exp["id"], "mode": "hard"})
    _wait(lambda: not [e for e in monitor.execute("query-block-exports")
                       if str(e.get("id", "")).startswith(PREFIX)],
          CANCEL_TIMEOUT, f"NBD exports of {name} to go away")
    try:
        monitor.execute("nbd-server-stop")
    except CommandFailed as err:
        log.debug("nbd-server-stop of %s: %s", name, err)


# -- source ------------------------------------------------------------------------
def start_mirror(paths: Paths, name: str, host: str, port: int,
                 exports: list[str]) -> None:
    """Mirror each drive of ``name`` to the export of the same name on
    ``host``:``port``. Raises :class:`errors.HypervisorError`; no job or
    client node is left then."""
    drives = drive_ids(paths, name)
    if sorted(exports) != sorted(drives):
        raise errors.HypervisorError(f"The target exports {exports} but instance {name} "
                                     f"has drives {drives}")
    monitor = _monitor(paths, name)
    try:
        for drive in drives:
            node = PREFIX + drive
            monitor.execute("blockdev-add", {
                "driver": "nbd", "node-name": node, "export": drive,
                "server": {"type": "inet", "host": host, "port": str(port)}})
            monitor.execute("blockdev-mirror", {
                "job-id": node, "device": drive, "target": node, "sync": "full",
                "copy-mode": "write-blocking", "auto-dismiss": False})
    except MonitorError:
        finish_mirror(paths, name, success=False)
        raise
    log.info("mirroring disks %s of %s to %s:%d", drives, name, host, port)


def mirror_status(paths: Paths, name: str) -> list[dict[str, Any]]:
    """One dict per mirror job: ``{drive, offset, len (bytes), ready, status,
    error}``; a job that vanished is reported with status ``missing``."""
    drives = drive_ids(paths, name)
    jobs = {j.get("device"): j for j in _monitor(paths, name).execute("query-block-jobs")}
    out = []
    for drive in drives:
        job = jobs.get(PREFIX + drive)
        if job is None:
            out.append({"drive": drive, "offset": 0, "len": 0, "ready": False,
                        "status": "missing", "error": "no mirror job"})
            continue
        out.append({"drive": drive, "offset": int(job.get("offset") or 0),
                    "len": int(job.get("len") or 0), "ready": bool(job.get("ready")),
                    "status": str(job.get("status") or ""), "error": job.get("error")})
    return out


def finish_mirror(paths: Paths, name: str, success: bool) -> None:
    """End the mirror jobs of ``name`` and remove their NBD client nodes.

    ``success``: the memory migration completed, so the ready jobs are
    cancelled gracefully (in-flight writes reach the target first);
    otherwise they are force-cancelled. Idempotent; a QEMU that is gone has
    nothing to finish. Raises :class:`errors.HypervisorError` when QEMU
    refuses or a job does not end within the timeout.
    """
    if RuntimeDirs(paths).alive_pid(name) is None:
        return
    monitor = _monitor(paths, name)

    def ours() -> dict[str, dict[str, Any]]:
        return {j["device"]: j for j in monitor.execute("query-block-jobs")
                if str(j.get("device", "")).startswith(PREFIX)}

    for job_id, job in ours().items():
        if job.get("status") not in ("concluded", "null", "aborting"):
            try:
                monitor.execute("block-job-cancel", {"device": job_id, "force": not success})
            except CommandFailed as err:
                log.warning("cancelling mirror job %s of %s: %s", job_id, name, err)
    _wait(lambda: all(j.get("status") in ("concluded", "null") for j in ours().values()),
          CANCEL_TIMEOUT, f"the disk mirror jobs of {name} to end")
    for job_id, job in ours().items():
        if job.get("error"):
            log.warning("mirror job %s of %s ended with: %s", job_id, name, job["error"])
        monitor.execute("job-dismiss", {"id": job_id})
    nodes = {n.get("node-name") for n in monitor.execute("query-named-block-nodes",
                                                         {"flat": True})}
    for node in sorted(n for n in nodes if n and n.startswith(PREFIX)):
        monitor.execute("blockdev-del", {"node-name": node})


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise errors.HypervisorError(f"Timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)

