"""Master side of disk transfers: run import/export pairs between two nodes.

Mirrors ``ganeti.masterd.instance`` (``TransferInstanceData``,
``ImportExportLoop``, ``DiskTransfer``): for each (source, destination)
pair the import is started on the destination node, its ``listen_port`` is
read from ``impexp_status``, the export is started on the source node
towards the destination's primary IP, and both are polled every second.
Progress goes to the job log; on failure, timeout or job cancel both sides
are aborted, and in every case both are cleaned up (``impexp_cleanup``;
recorded as leftovers on a node that does not answer).
Disks are transferred one after the other.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from corral import errors
from corral.cmdlib.leftovers import KIND_TRANSFER, remove_or_record
from corral.impexp import compression
from corral.objects import Instance, Node

if TYPE_CHECKING:
    from corral.cmdlib.base import LogicalUnit

FeedbackFn = Callable[[str], None]
IoArg = list[Any]


# Ganeti's DISK_TRANSFER_CONNECT_TIMEOUT (60 s for an intra-cluster transfer
# to connect), as RIE_CONNECT_ATTEMPT_TIMEOUT-long attempts: the importer
# stops listening after connect * (connect_retries + 1) seconds.
DISK_TRANSFER_CONNECT_ATTEMPT = 20.0
DISK_TRANSFER_CONNECT_RETRIES = 2


@dataclass
class TransferTimeouts:
    """Timeouts (seconds) and intervals of :func:`transfer_disks`.

    ``total`` and ``idle`` go to both transfer processes (``timeout``,
    ``idle_timeout``; None: their defaults, :mod:`corral.impexp.watchdog`).
    """

    listen: float = 60.0              # until the importer reports its port
    connect: float = DISK_TRANSFER_CONNECT_ATTEMPT
    connect_retries: int = DISK_TRANSFER_CONNECT_RETRIES
    total: float | None = None
    idle: float | None = None
    poll_interval: float = 1.0
    progress_interval: float = 5.0    # between progress lines in the job log
    status_failures: int = 30         # consecutive failed status calls tolerated


def format_eta(seconds: int | None) -> str | None:
    """``mm:ss`` (or ``h:mm:ss``), None when unknown."""
    if seconds is None:
        return None
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_progress(label: str, status: dict[str, Any]) -> str:
    """``disk/0: 123 MiB sent, 45.6 MiB/s, ETA 00:12, 37%`` from an exporter status."""
    parts = [f"{label}: {status.get('progress_mbytes') or 0} MiB sent"]
    if status.get("progress_throughput") is not None:
        parts.append(f"{status['progress_throughput']:.1f} MiB/s")
    eta = format_eta(status.get("progress_eta"))
    if eta is not None:
        parts.append(f"ETA {eta}")
    if status.get("progress_percent") is not None:
        parts.append(f"{status['progress_percent']}%")
    return ", ".join(parts)


def _io_label(io: IoArg, idx: int) -> str:
    if len(io) > 1 and isinstance(io[1], dict) and io[1].get("iv_name"):
        return str(io[1]["iv_name"])
    return f"disk/{idx}"


def _expected_mib(io: IoArg) -> int | None:
    if io and io[0] == "raw" and len(io) > 1 and isinstance(io[1], dict):
        size = io[1].get("size")
        return int(size) if isinstance(size, int) and size > 0 else None
    return None


class _Failed(Exception):
    """One transfer failed; the message was already reported."""


class DiskTransfer:
    """One import/export pair; :meth:`run` returns True on success.

    Raises only :class:`errors.JobCanceled` (after aborting both sides).
    """

    def __init__(self, lu: "LogicalUnit", label: str, component: str, src: Node, dst: Node,
                 instance: dict[str, Any], source_io: IoArg, dest_io: IoArg, compress: str,
                 feedback_fn: FeedbackFn, timeouts: TransferTimeouts) -> None:
        self.lu = lu
        self.label = label
        self.component = component
        self.src, self.dst = src, dst
        self.instance = instance
        self.source_io, self.dest_io = source_io, dest_io
        self.feedback_fn = feedback_fn
        self.tmo = timeouts
        self.opts: dict[str, Any] = {
            "key_name": None, "ca_pem": None, "compress": compress,
            "magic": secrets.token_hex(16), "expected_size": _expected_mib(source_io),
            "connect_timeout": timeouts.connect, "connect_retries": timeouts.connect_retries,
            "listen_host": dst.primary_ip,
        }
        for key, value in (("timeout", timeouts.total), ("idle_timeout", timeouts.idle)):
            if value is not None:
                self.opts[key] = value
        self.imp: str | None = None
        self.exp: str | None = None

    # -- helpers ------------------------------------------------------------------
    def _warn(self, msg: str) -> None:
        self.lu.log_warning(f"{self.label}: {msg}")

    def _fail(self, msg: str) -> "_Failed":
        self._warn(msg)
        return _Failed(msg)

    def _check_canceled(self) -> None:
        check = getattr(getattr(self.lu, "op_ctx", None), "check_canceled", None)
        if check is not None:
            check()

    def _status(self, node: Node, name: str, failures: list[int]) -> dict[str, Any] | None:
        """The status of ``name`` on ``node``; None when the call failed (counted)."""
        res = self.lu.rpc.call_one("impexp_status", node.uuid, [[name]])
        if res.fail_msg:
            failures[0] += 1
            if failures[0] >= self.tmo.status_failures:
                raise self._fail(f"cannot get the transfer status from node {node.name}: "
                                 f"{res.fail_msg}")
            return None
        failures[0] = 0
        payload = res.payload
        status = payload[0] if isinstance(payload, list) and payload else None
        if status is None:
            raise self._fail(f"transfer {name} vanished from node {node.name}")
        return status

    # -- phases -------------------------------------------------------------------
    def _start_import(self) -> int:
        res = self.lu.rpc.call_one("import_start", self.dst.uuid,
                                   [self.opts, self.instance, self.component, self.dest_io])
        if res.fail_msg:
            raise self._fail(f"could not start the import on node {self.dst.name}: "
                             f"{res.fail_msg}")
        self.imp = res.payload
        deadline = time.monotonic() + self.tmo.listen
        failures = [0]
        while True:
            status = self._status(self.dst, self.imp, failures)
            if status is not None:
                if status.get("done"):
                    raise self._fail(f"the import on node {self.dst.name} failed before "
                                     f"listening: {status.get('error_message')}")
                if status.get("listen_port"):
                    return int(status["listen_port"])
            if time.monotonic() > deadline:
                raise self._fail(f"the import on node {self.dst.name} did not start "
                                 f"listening within {self.tmo.listen:.0f} s")
            self._check_canceled()
            time.sleep(min(0.2, self.tmo.poll_interval))

    def _start_export(self, port: int) -> None:
        res = self.lu.rpc.call_one("export_start", self.src.uuid,
                                   [self.opts, self.dst.primary_ip, port, self.instance,
                                    self.component, self.source_io])
        if res.fail_msg:
            raise self._fail(f"could not start the export on node {self.src.name}: "
                             f"{res.fail_msg}")
        self.exp = res.payload

    def _wait(self) -> None:
        assert self.imp is not None and self.exp is not None
        started = time.monotonic()
        connect_deadline = started + self.tmo.connect * (self.tmo.connect_retries + 1) + 30
        last_report = started
        imp_fail, exp_fail = [0], [0]
        exp_st: dict[str, Any] | None = None
        while True:
            self._check_canceled()
            time.sleep(self.tmo.poll_interval)
            exp_st = self._status(self.src, self.exp, exp_fail) or exp_st
            imp_st = self._status(self.dst, self.imp, imp_fail)
            if any(st is not None and st.get("done") and st.get("exit_status") != 0
                   for st in (exp_st, imp_st)):
                raise self._fail(self._failure_text(exp_st, imp_st))
            if exp_st is not None and imp_st is not None and exp_st.get("done") and \
                    imp_st.get("done"):
                elapsed = max(time.monotonic() - started, 1e-3)
                mib = (imp_st.get("progress_bytes") or 0) / (1024 * 1024)
                self.feedback_fn(f"{self.label}: transfer complete, {mib:.0f} MiB in "
                                 f"{elapsed:.1f} s ({mib / elapsed:.1f} MiB/s)")
                return
            now = time.monotonic()
            connected = bool(exp_st and exp_st.get("connected"))
            if not connected and now > connect_deadline:
                raise self._fail(f"no connection between {self.src.name} and "
                                 f"{self.dst.name} after {now - started:.0f} s")
            if exp_st is not None and connected and \
                    now - last_report >= self.tmo.progress_interval:
                self.feedback_fn(format_progress(self.label, exp_st))
                last_report = now

    def _failure_text(self, exp_st: dict[str, Any] | None,
                      imp_st: dict[str, Any] | None) -> str:
        """Both sides' errors: the side that noticed first is often not the
        cause, so give the other side a moment to finish and report too."""
        assert self.imp is not None and self.exp is not None
        deadline = time.monotonic() + 3.0
        sides = [("export", self.src, self.exp, exp_st), ("import", self.dst, self.imp, imp_st)]
        while time.monotonic() < deadline and \
                not all(st is not None and st.get("done") for *_, st in sides):
            time.sleep(0.2)
            sides = [(side, node, name, st if st is not None and st.get("done") else
                      self._status(node, name, [0]) or st)
                     for side, node, name, st in sides]
        texts = [f"the {side} on node {node.name} failed: "
                 f"{st.get('error_message') or 'unknown error'}"
                 for side, node, _, st in sides
                 if st is not None and st.get("done") and st.get("exit_status") != 0]
        return "; ".join(texts)

    def _abort(self) -> None:
        for node, name in ((self.src, self.exp), (self.dst, self.imp)):
            if name is not None:
                res = self.lu.rpc.call_one("impexp_abort", node.uuid, [name])
                if res.fail_msg:
                    self._warn(f"could not abort {name} on node {node.name}: {res.fail_msg}")

    def _cleanup(self) -> None:
        # A node that does not answer keeps the transfer as a recorded
        # leftover; its own timeouts end the process meanwhile.
        for node, name in ((self.src, self.exp), (self.dst, self.imp)):
            if name is not None:
                remove_or_record(self.lu, node.uuid, KIND_TRANSFER, name)

    def run(self) -> bool:
        try:
            self.feedback_fn(f"{self.label}: sending from {self.src.name} to "
                             f"{self.dst.name} (compression {self.opts['compress']})")
            port = self._start_import()
            self._start_export(port)
            self._wait()
            return True
        except _Failed:
            self._abort()
            return False
        except BaseException:
            self._abort()
            raise
        finally:
            self._cleanup()


def transfer_disks(lu: "LogicalUnit", src_node_uuid: str, dst_node_uuid: str,
                   instance: Instance, pairs: list[tuple[IoArg, IoArg]], compress: str,
                   feedback_fn: FeedbackFn, *, stop_on_failure: bool = False,
                   timeouts: TransferTimeouts | None = None) -> list[bool]:
    """Copy each ``(source_io, dest_io)`` from the source node to the destination node.

    ``source_io``/``dest_io`` are ``impexp_io`` arguments (``["raw",
    disk_dict]``, ``["file", virtual_path]``, ``["script", disk_dict, idx]``);
    ``compress`` is ``none`` or a tool name (checked here, and on the nodes
    for availability). Returns one bool per pair; with ``stop_on_failure``
    the pairs after a failed one are not tried (False). Failures are
    reported as warnings in the job log. Raises :class:`errors.OpPrereqError`
    for unknown nodes or compression tools, and :class:`errors.JobCanceled`
    when the job is canceled (both sides aborted and cleaned up first).
    Mirrors ``masterd.instance.TransferInstanceData``.
    """
    compression.check_known(compress)
    src = lu.cfg.get_node(src_node_uuid)
    dst = lu.cfg.get_node(dst_node_uuid)
    if src is None or dst is None:
        raise errors.OpPrereqError("Unknown source or destination node for the transfer",
                                   errors.ECODE_NOENT)
    tmo = timeouts or TransferTimeouts()
    encoded = lu.rpc.encode_instance(instance)
    results: list[bool] = []
    for idx, (source_io, dest_io) in enumerate(pairs):
        if stop_on_failure and results and not results[-1]:
            results.append(False)
            continue
        transfer = DiskTransfer(lu, _io_label(source_io, idx), f"disk{idx}", src, dst, encoded,
                                list(source_io), list(dest_io), compress, feedback_fn, tmo)
        results.append(transfer.run())
    return results


__all__ = ["DiskTransfer", "TransferTimeouts", "format_eta", "format_progress",
           "transfer_disks"]
