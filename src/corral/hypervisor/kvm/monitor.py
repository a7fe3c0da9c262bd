"""A small synchronous client of QEMU's QMP monitor.

Wraps the asyncio ``qemu.qmp.QMPClient``: each call connects to the
instance's QMP unix socket, runs its commands in a private event loop (in a
helper thread when the calling thread already runs a loop, as in an async
server) under one overall timeout, and disconnects. Mirrors the QMP parts of
Ganeti's ``hv_kvm.monitor.QmpConnection``.

QEMU serves one QMP client at a time on a socket, so calls to the same
socket from this process are serialized.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qemu.qmp import ConnectError, ExecInterruptedError, ExecuteError, QMPClient, QMPError
from qemu.qmp.qmp_client import NegotiationError

from corral import errors

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
NEGOTIATION_ATTEMPTS = 5

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class MonitorError(errors.HypervisorError):
    """A QMP command failed, or the monitor could not be reached."""


class MonitorUnavailable(MonitorError):
    """The QMP socket does not exist or nobody answers on it."""


class CommandFailed(MonitorError):
    """QEMU answered a command with an error; ``error_class`` is QMP's class."""

    def __init__(self, message: str, error_class: str = "") -> None:
        super().__init__(message)
        self.error_class = error_class


def _lock_for(path: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


class QmpMonitor:
    """QMP of one instance at ``socket_path``; ``timeout`` (s) bounds each call."""

    def __init__(self, socket_path: str | Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    # -- generic -----------------------------------------------------------------
    def execute(self, command: str, arguments: dict[str, Any] | None = None,
                timeout: float | None = None) -> Any:
        """Run one QMP command and return its ``return`` value.

        Raises :class:`MonitorUnavailable` when the socket cannot be reached,
        :class:`CommandFailed` when QEMU refuses the command, and
        :class:`MonitorError` on timeouts or a broken connection.
        """
        return self.execute_many([(command, arguments)], timeout=timeout)[0]

    def execute_many(self, commands: list[tuple[str, dict[str, Any] | None]],
                     timeout: float | None = None) -> list[Any]:
        """Run several commands over one connection, in order; results in order.

        Errors as :meth:`execute`; the first failing command stops the rest.
        """
        tmo = self.timeout if timeout is None else timeout
        with _lock_for(self.socket_path):
            return _run_sync(self._session(commands), tmo, self.socket_path)

    async def _connect(self) -> QMPClient:
        """A negotiated QMP session; a garbled negotiation is retried.

        Right after an incoming migration completes, QEMU was seen (under
        load) to answer the first ``qmp_capabilities`` with something else;
        a fresh connection then works.
        """
        for attempt in range(NEGOTIATION_ATTEMPTS):
            qmp = QMPClient("corral")
            try:
                await qmp.connect(self.socket_path)
                return qmp
            except ConnectError as err:
                if not isinstance(err.exc, NegotiationError) or \
                        attempt == NEGOTIATION_ATTEMPTS - 1:
                    raise MonitorUnavailable(
                        f"Cannot connect to QMP socket {self.socket_path}: {err}") from err
                log.debug("QMP negotiation on %s failed (%s); retrying", self.socket_path, err)
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def _session(self, commands: list[tuple[str, dict[str, Any] | None]]) -> list[Any]:
        qmp = await self._connect()
        results: list[Any] = []
        try:
            for command, arguments in commands:
                try:
                    results.append(await qmp.execute(command, arguments))
                except ExecuteError as err:
                    raise CommandFailed(f"QMP command {command} failed: {err}",
                                        err.error_class) from err
                except ExecInterruptedError as err:
                    if command == "quit":   # QEMU hangs up right after quitting
                        results.append({})
                        break
                    raise MonitorError(
                        f"QMP connection lost during {command}: {err}") from err
        finally:
            try:
                await qmp.disconnect()
            except (QMPError, EOFError, OSError) as err:
                log.debug("QMP disconnect from %s: %s", self.socket_path, err)
        return results

    # -- commands ------------------------------------------------------------------
    def query_status(self) -> dict[str, Any]:
        """``{"running": bool, "status": "running"|"paused"|"shutdown"|...}``."""
        return self.execute("query-status")

    def cont(self) -> None:
        self.execute("cont")

    def stop(self) -> None:
        self.execute("stop")

    def system_powerdown(self) -> None:
        """Press the ACPI power button."""
        self.execute("system_powerdown")

    def system_reset(self) -> None:
        """Reset the machine (as the reset button)."""
        self.execute("system_reset")

    def quit(self) -> None:
        """Make QEMU exit at once."""
        self.execute("quit")

    def balloon(self, memory_mib: int) -> None:
        """Ask the guest's balloon driver for ``memory_mib`` MiB."""
        self.execute("balloon", {"value": int(memory_mib) * 1024 * 1024})

    def query_balloon(self) -> int:
        """Current guest memory in MiB as the balloon device reports it."""
        return int(self.execute("query-balloon")["actual"]) // (1024 * 1024)

    def query_cpus_fast(self) -> list[dict[str, Any]]:
        """One dict per vCPU with ``cpu-index`` and ``thread-id``."""
        return self.execute("query-cpus-fast")

    def migrate_set_parameters(self, **parameters: Any) -> None:
        """Set migration parameters (QMP names with ``-``, pass ``_`` here)."""
        self.execute("migrate-set-parameters",
                     {k.replace("_", "-"): v for k, v in parameters.items()})

    def migrate_set_capabilities(self, capabilities: dict[str, bool]) -> None:
        self.execute("migrate-set-capabilities", {"capabilities": [
            {"capability": name, "state": state} for name, state in capabilities.items()]})

    def migrate(self, uri: str) -> None:
        self.execute("migrate", {"uri": uri})

    def query_migrate(self) -> dict[str, Any]:
        return self.execute("query-migrate")

    def migrate_cancel(self) -> None:
        self.execute("migrate_cancel")

    def set_password(self, protocol: str, password: str) -> None:
        self.execute("set_password", {"protocol": protocol, "password": password})


def _run_sync(coro: Any, timeout: float, what: str) -> Any:
    async def bounded() -> Any:
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            raise MonitorError(f"QMP on {what} did not answer within {timeout:g}s") from None

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(bounded())
    # Called from a thread that runs an event loop: use a private thread.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-qmp") as pool:
        return pool.submit(asyncio.run, bounded()).result()
