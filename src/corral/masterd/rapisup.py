"""masterd's supervision of the RAPI daemon (:mod:`corral.rapi.main`).

Ganeti starts ``ganeti-rapi`` with the master daemons and its watcher
restarts it when it is not running (``EnsureDaemon``); Corral's masterd does
both at once: it binds the RAPI port itself (:func:`bind_rapi_socket`), so
a taken port fails masterd's start and connections wait in the listen
backlog while a RAPI process restarts, starts ``workers`` RAPI processes
sharing that socket, and restarts one that exits (logged as a warning in
``masterd.log``, after :data:`RESTART_DELAY` seconds, doubling up to
:data:`MAX_RESTART_DELAY` while it keeps failing within
:data:`STABLE_AFTER` seconds). ``corral daemon status rapi`` shows the
running process. The children get SIGTERM when masterd dies
(``PR_SET_PDEATHSIG``), so none outlives it holding the port.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time

from corral import daemons
from corral.paths import Paths

log = logging.getLogger(__name__)

# Listen backlog of the RAPI socket (every client of a load burst connects at once).
BACKLOG = 1024
# RAPI processes by default: two let reads use both cores of a small master
# (bench/rapi_load.py) while one of them waits for the GIL.
DEFAULT_WORKERS = 2
# Seconds before restarting an exited RAPI process (doubled while it keeps failing).
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
# A process that ran this long (seconds) counts as having started well.
STABLE_AFTER = 10.0
# Seconds a RAPI process gets to stop (SIGTERM) before SIGKILL.
STOP_TIMEOUT = 10.0


def bind_rapi_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (inheritable, for the
    RAPI processes). Raises ``OSError`` (e.g. address in use)."""
    sock = socket.create_server((host, port), backlog=BACKLOG)
    sock.set_inheritable(True)
    return sock


class RapiSupervisor:
    """Keeps ``workers`` RAPI processes serving ``sock`` until :meth:`stop`.

    ``restarts`` counts the restarts of exited processes.
    """

    def __init__(self, paths: Paths, sock: socket.socket, workers: int = DEFAULT_WORKERS,
                 debug: bool = False) -> None:
        self.paths = paths
        self.sock = sock
        self.workers = workers
        self.debug = debug
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the processes, each watched by a thread of its own (the
        thread is the process's parent for ``PR_SET_PDEATHSIG``: it lives
        until the process is gone)."""
        self._kill_orphans()
        for k in range(self.workers):
            thread = threading.Thread(target=self._watch, args=(k,), name=f"rapi-sup-{k}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def pids(self) -> list[int]:
        """Pids of the running RAPI processes."""
        with self._lock:
            return [p.pid for p in self._procs.values() if p.poll() is None]

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every process (SIGKILL after ``timeout`` s) and wait."""
        self._stopping.set()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("RAPI process %d did not stop; killing it", proc.pid)
                proc.kill()
                proc.wait(5)
        for thread in self._threads:
            thread.join(5)

    def _kill_orphans(self) -> None:
        """Stop a RAPI process of this root left by an earlier masterd (it
        should have died with it; it would hold the port)."""
        pid = daemons.daemon_pid(self.paths, daemons.RAPI)
        if pid is not None:
            log.warning("Stopping RAPI process %d left by an earlier master daemon", pid)
            daemons.stop_daemon(self.paths, daemons.RAPI)

    def _watch(self, slot: int) -> None:
        delay = RESTART_DELAY
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                proc = daemons.spawn_rapi(self.paths, self.sock.fileno(), slot, self.debug)
            except Exception:   # logged; retried after the delay
                log.exception("Could not start the RAPI daemon")
            else:
                with self._lock:
                    self._procs[slot] = proc
                log.info("RAPI daemon started (pid %d)", proc.pid)
                code = proc.wait()
                if self._stopping.is_set():
                    return
                log.warning("RAPI daemon (pid %d) exited with code %s; restarting it",
                            proc.pid, code)
                self.restarts += 1
            if time.monotonic() - started > STABLE_AFTER:
                delay = RESTART_DELAY
            self._stopping.wait(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)
