"""Overall and idle timeouts of one transfer process.

Ganeti's import/export daemon relies on the master to abort a transfer
that hangs; a Corral transfer also ends by itself, so a transfer whose
master died (or whose node lost contact with it) never stays behind
listening or waiting for data:

* **overall** (``--timeout``): the whole transfer, from the start of the
  process, must end within this many seconds;
* **idle** (``--idle-timeout``): once a peer connected, no byte may be
  missing for this long (counted on the meter: bytes read from the source
  on the exporter, written to the destination on the importer; the TLS
  handshake and the magic line count as activity).

On expiry the watchdog thread signals the main thread (``SIGALRM``), whose
handler raises :class:`TimedOut` like SIGTERM raises ``Aborted``: the
transfer stops its children, closes its sockets and records the reason in
its status. Should the main thread not get there within ``grace`` seconds
(a call that cannot be interrupted), the watchdog writes the final status
itself and ends the process group.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

# Ganeti's transfers have no overall limit; this one only bounds a transfer
# that is stuck in a way the idle timeout cannot see (e.g. a trickle of
# bytes): far above the time a multi-TiB disk takes at slow speeds.
DEFAULT_TOTAL_TIMEOUT = 2 * 86400.0     # seconds
# No data for this long once connected: the peer or the source is stuck.
DEFAULT_IDLE_TIMEOUT = 600.0            # seconds
GRACE = 45.0                            # seconds for the main thread to stop itself
TIMEOUT_SIGNAL = signal.SIGALRM


class TimedOut(Exception):
    """The overall or idle timeout expired (the message says which)."""


class Watchdog:
    """Watches ``progress()`` and the clock; calls ``expire(reason)`` once.

    ``progress`` returns a number that grows while data flows (the byte
    meter). ``expire`` runs in the watchdog thread; the default signals the
    main thread. ``give_up(reason)`` runs when the process is still there
    ``grace`` seconds later.
    """

    def __init__(self, total: float, idle: float, progress: Callable[[], int],
                 give_up: Callable[[str], None], grace: float = GRACE) -> None:
        self.total = total
        self.idle = idle
        self.grace = grace
        self._progress = progress
        self._give_up = give_up
        self._started = time.monotonic()
        self._idle_armed = False
        self._last_value = -1
        self._last_change = self._started
        self._stop = threading.Event()
        self.reason: str | None = None

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="impexp-watchdog", daemon=True)
        thread.start()

    def connected(self) -> None:
        """A peer connected: from now on the idle timeout applies."""
        self._last_change = time.monotonic()
        self._idle_armed = True

    def activity(self) -> None:
        """Something happened that is not counted on the meter (handshake, magic)."""
        self._last_change = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def check(self, now: float) -> str | None:
        """The reason to stop at monotonic time ``now``, or None."""
        if self.total > 0 and now - self._started > self.total:
            return f"Transfer timed out: not finished within {self.total:.0f} seconds"
        value = self._progress()
        if value != self._last_value:
            self._last_value = value
            self._last_change = now
        if self._idle_armed and self.idle > 0 and now - self._last_change > self.idle:
            return f"Transfer timed out: no data for {self.idle:.0f} seconds"
        return None

    def _interval(self) -> float:
        limits = [t for t in (self.total, self.idle) if t > 0]
        return max(0.05, min([1.0, *[t / 10 for t in limits]]))

    def _run(self) -> None:
        while not self._stop.wait(self._interval()):
            reason = self.check(time.monotonic())
            if reason is None:
                continue
            self.reason = reason
            os.kill(os.getpid(), TIMEOUT_SIGNAL)
            if not self._stop.wait(self.grace):
                self._give_up(reason)
            return


__all__ = ["DEFAULT_IDLE_TIMEOUT", "DEFAULT_TOTAL_TIMEOUT", "GRACE", "TIMEOUT_SIGNAL",
           "TimedOut", "Watchdog"]
