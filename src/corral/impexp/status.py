"""The status file of one transfer and its progress figures.

Mirrors Ganeti's ``impexpd.StatusFile`` / ``objects.ImportExportStatus``:
a JSON document rewritten atomically (temp file + rename) by the transfer
process about once a second, read by noded's ``impexp_status``.

Fields: ``mode``, ``component``, ``recent_output`` (last lines, list of
str), ``listen_port`` (importer), ``connected``, ``progress_bytes``
(Corral extension), ``progress_mbytes`` (MiB, int), ``progress_throughput``
(MiB/s, float), ``progress_eta`` (seconds, int), ``progress_percent`` (int),
``exit_status`` (0 success; set when done), ``error_message``, ``done``,
``mtime``. Progress counts *uncompressed* bytes: read from the source on
the exporter, written to the destination on the importer.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from corral.fileio import write_file_atomic
from corral.impexp import MIB, STATUS_FILE

RECENT_LINES = 20
THROUGHPUT_WINDOW = 10.0        # seconds of samples for the throughput figure


class TransferStatus(BaseModel):
    """One transfer's status (see the module docstring for the fields)."""

    mode: str = ""
    component: str = ""
    recent_output: list[str] = Field(default_factory=list)
    listen_port: int | None = None
    connected: bool = False
    progress_bytes: int = 0
    progress_mbytes: int | None = None
    progress_throughput: float | None = None
    progress_eta: int | None = None
    progress_percent: int | None = None
    exit_status: int | None = None
    error_message: str | None = None
    done: bool = False
    mtime: float = 0.0


def write_status(status_dir: Path, status: TransferStatus) -> None:
    """Write ``status_dir/status`` atomically. Raises ``OSError``."""
    status.mtime = time.time()
    data = json.dumps(status.model_dump(mode="json"), sort_keys=True)
    write_file_atomic(status_dir / STATUS_FILE, data, mode=0o644, durable=False)


def read_status(status_dir: Path) -> TransferStatus | None:
    """The status in ``status_dir``, or None if it is missing or unreadable."""
    try:
        text = (status_dir / STATUS_FILE).read_text(encoding="utf-8")
        return TransferStatus.model_validate(json.loads(text))
    except (OSError, ValueError, ValidationError):
        return None


class Meter:
    """Counts transferred bytes; only one thread calls :meth:`add`."""

    def __init__(self, expected_bytes: int | None = None) -> None:
        self.bytes = 0
        self.expected_bytes = expected_bytes
        self.started: float | None = None
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, n: int) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.bytes += n

    def figures(self) -> dict[str, Any]:
        """Progress fields of :class:`TransferStatus` for the current count."""
        now = time.monotonic()
        done = self.bytes
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > THROUGHPUT_WINDOW:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        if now - t0 < 0.5 and self.started is not None and now - self.started >= 0.05:
            t0, b0 = self.started, 0
        rate = (done - b0) / (now - t0) if now - t0 > 0.05 else None   # bytes/s
        out: dict[str, Any] = {
            "progress_bytes": done,
            "progress_mbytes": done // MIB,
            "progress_throughput": round(rate / MIB, 1) if rate is not None else None,
            "progress_eta": None,
            "progress_percent": None,
        }
        expected = self.expected_bytes
        if expected:
            out["progress_percent"] = min(100, int(100 * done / expected))
            if rate:
                out["progress_eta"] = max(0, int(round((expected - done) / rate)))
        return out


class StatusWriter:
    """Keeps the status of the running transfer and writes it.

    :meth:`update` changes fields and writes at once; a reporter thread
    (:meth:`start_reporter`) rewrites the progress every ``interval`` seconds.
    """

    def __init__(self, status_dir: Path, mode: str, component: str, meter: Meter,
                 interval: float = 1.0) -> None:
        self.status_dir = status_dir
        self.meter = meter
        self.interval = interval
        self._status = TransferStatus(mode=mode, component=component)
        self._recent: collections.deque[str] = collections.deque(maxlen=RECENT_LINES)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add_output(self, text: str) -> None:
        """Append lines to ``recent_output`` (written with the next update)."""
        with self._lock:
            for line in text.splitlines():
                if line.strip():
                    self._recent.append(line.rstrip()[:500])

    def update(self, **fields: Any) -> None:
        """Set fields, refresh the progress figures and write the file."""
        with self._lock:
            if self._status.done:
                return
            for key, value in fields.items():
                setattr(self._status, key, value)
            self._write_locked()

    def _write_locked(self) -> None:
        for key, value in self.meter.figures().items():
            setattr(self._status, key, value)
        self._status.recent_output = list(self._recent)
        try:
            write_status(self.status_dir, self._status)
        except OSError:
            pass    # the directory was removed (cleanup); nothing left to report to

    def finish(self, exit_status: int, error: str | None) -> None:
        """Write the final status (``done``); later updates are ignored."""
        self._stop.set()
        with self._lock:
            if self._status.done:
                return
            self._status.exit_status = exit_status
            self._status.error_message = error
            self._status.done = True
            self._write_locked()

    def start_reporter(self) -> None:
        def run() -> None:
            while not self._stop.wait(self.interval):
                with self._lock:
                    if self._status.done:
                        return
                    self._write_locked()

        self._thread = threading.Thread(target=run, name="impexp-status", daemon=True)
        self._thread.start()
