"""Keeping masterd's configuration out of the garbage collector's work.

A query over 10,000 instances allocates hundreds of thousands of short-lived
objects; each collection they trigger used to traverse every parsed config
object too (half of a large query's CPU time, issue 9). :func:`tune` raises
the young-generation threshold and moves what exists at start (the loaded
configuration) to the permanent generation (``gc.freeze``). Objects made by
later commits are frozen by :class:`ConfigFreezer` once the configuration has
been quiet for ``quiet`` seconds (at most ``max_delay`` after the first
change): ``gc.unfreeze``, a full ``gc.collect`` (so cyclic garbage never
stays frozen, i.e. nothing leaks), ``gc.freeze``.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

# Allocations (net) between young collections; CPython's default is 700.
GEN0_THRESHOLD = 50_000
QUIET = 2.0           # seconds without a config commit before refreezing
MAX_DELAY = 30.0      # seconds after the first unfrozen commit, at the latest


def refreeze() -> None:
    """Collect everything (frozen objects included), then freeze what is left."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def tune() -> None:
    """Raise the young-generation threshold and freeze what exists now."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    refreeze()


class ConfigFreezer:
    """A config store listener refreezing after commits (see the module doc).

    ``start()`` starts the thread; ``stop()`` ends it.
    """

    def __init__(self, quiet: float = QUIET, max_delay: float = MAX_DELAY) -> None:
        self.quiet = quiet
        self.max_delay = max_delay
        self._cond = threading.Condition()
        self._last_change: float | None = None
        self._first_change: float | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.freezes = 0

    def on_change(self, _changes: Any) -> None:
        """Store listener (called inside commit): only note the time."""
        with self._cond:
            now = time.monotonic()
            self._last_change = now
            if self._first_change is None:
                self._first_change = now
            self._cond.notify_all()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gc-freezer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _due_in(self) -> float | None:
        """Seconds until the next refreeze is due, None if nothing changed."""
        if self._last_change is None or self._first_change is None:
            return None
        return min(self._last_change + self.quiet,
                   self._first_change + self.max_delay) - time.monotonic()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    due = self._due_in()
                    if due is not None and due <= 0:
                        break
                    self._cond.wait(due)
                if self._stopping:
                    return
                self._last_change = self._first_change = None
            try:
                refreeze()
                self.freezes += 1
            except Exception:       # never let the daemon thread die silently
                log.exception("Refreezing the configuration for the collector failed")
