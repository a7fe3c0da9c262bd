"""Coalesced live data for queries: one node RPC serves concurrent readers.

Every query with a live field (``oper_state``, ``mfree``, ...) asks the
nodes through RPC. Under load (200 RAPI clients listing instances) that is
hundreds of identical RPCs a second, each holding a server thread while the
node daemon answers. :class:`LiveDataCache` lets concurrent queries of the
same objects share one in-flight gathering, and reuses its answer for
:data:`LIVE_DATA_TTL` seconds as long as the configuration did not change
(any commit, e.g. an instance started or stopped by a job, starts afresh).
Live data is a snapshot anyway: a node's answer is stale the moment it is
sent; this adds at most a quarter of a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

# Seconds a gathered answer is reused (while the config serial is the same).
LIVE_DATA_TTL = 0.25
# Finished entries kept at most (older ones are dropped when this is reached).
MAX_ENTRIES = 256


class _Flight:
    """One gathering: done when ``value`` (or ``error``) is set."""

    __slots__ = ("done", "error", "expires", "serial", "value")

    def __init__(self, serial: int) -> None:
        self.done = threading.Event()
        self.serial = serial
        self.expires = 0.0
        self.value: Any = None
        self.error: BaseException | None = None


class LiveDataCache:
    """Single-flight cache of live data by key (e.g. resource and names)."""

    def __init__(self, ttl: float = LIVE_DATA_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def get(self, key: Hashable, serial: int, gather: Callable[[], Any]) -> Any:
        """The value of ``gather()`` for ``key`` at config ``serial``.

        Joins a gathering in flight for the same key and serial, or reuses a
        finished one younger than the TTL; otherwise calls ``gather`` (in
        this thread) and shares its result. ``gather``'s exception is raised
        to every caller that joined it, and not cached.
        """
        with self._lock:
            flight = self._flights.get(key)
            fresh = flight is not None and flight.serial == serial and (
                not flight.done.is_set() or time.monotonic() < flight.expires)
            if not fresh:
                if len(self._flights) >= MAX_ENTRIES:
                    self._prune()
                flight = self._flights[key] = _Flight(serial)
                owner = True
            else:
                owner = False
        assert flight is not None
        if owner:
            try:
                flight.value = gather()
            except BaseException as exc:
                flight.error = exc
                with self._lock:
                    if self._flights.get(key) is flight:
                        del self._flights[key]
                raise
            finally:
                flight.expires = time.monotonic() + self.ttl
                flight.done.set()
            return flight.value
        flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.value

    def _prune(self) -> None:
        now = time.monotonic()
        for key, flight in list(self._flights.items()):
            if flight.done.is_set() and now >= flight.expires:
                del self._flights[key]
