"""Serial consoles of this node's KVM instances over a WebSocket of noded.

Ganeti reaches a console with ``ssh root@<node> socat ... UNIX-CONNECT:
<ctrl>/<name>.serial``; Corral has no ssh between nodes, so noded relays the
console instead, on its mutual-TLS listener: only holders of a certificate
signed by the cluster CA (the master's and the nodes' client certificates)
get through the TLS handshake.

Protocol of ``GET /console/<instance>?history=N&follow=0|1`` (WebSocket):

* the server first sends a text frame with a JSON object
  ``{"instance", "history_bytes", "follow"}``, then the last ``history``
  lines of the console log (:meth:`RuntimeDirs.serial_log`, everything the
  guest wrote since QEMU started) as binary frames;
* with ``follow=1`` (the default) a text frame ``{"attached": true,
  "viewers": K}`` follows, then live output as binary frames; binary frames
  from the client are typed on the console;
* output written between reading the history and attaching may be missing
  or repeated once (the log and the socket are two channels);
* the server ends a session by closing with a code and a reason:
  :data:`CLOSE_DONE` (history sent, ``follow=0``), :data:`CLOSE_ENDED`
  (the instance closed its console: stopped or restarted),
  :data:`CLOSE_INVALID`, :data:`CLOSE_NOT_FOUND`, :data:`CLOSE_BUSY`,
  :data:`CLOSE_ERROR`.

QEMU serves one client per serial socket, so noded keeps one connection
per instance while viewers are attached and shares it (:class:`ConsoleHub`):
every viewer sees the output, and what any viewer types reaches the guest.
The instance name is checked against host name rules and only mapped to
this node's run directory; no path comes from the client. Everything runs on
the event loop without blocking; file and /proc reads go to the thread pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from corral import errors
from corral.hypervisor.kvm.runtime import RuntimeDirs
from corral.netutils import check_normalized_hostname
from corral.paths import Paths, safe_component

log = logging.getLogger(__name__)

# ":path": names with "/" reach the name check (a clear refusal) instead of a 404.
CONSOLE_PATH = "/console/{instance:path}"

# Close codes (4000-4999 are free for applications, RFC 6455 section 7.4.2).
CLOSE_DONE = 1000
CLOSE_ENDED = 4000
CLOSE_INVALID = 4400
CLOSE_NOT_FOUND = 4404
CLOSE_BUSY = 4429
CLOSE_ERROR = 4500
CLOSE_GOING_AWAY = 1001

MAX_VIEWERS = 8                     # per instance
MAX_HISTORY_LINES = 100_000
MAX_HISTORY_BYTES = 1024 * 1024     # what one request may read from the log
VIEWER_QUEUE_CHUNKS = 1024          # output chunks a slow viewer may lag behind
READ_CHUNK = 65536
MAX_WS_MESSAGE = 1024 * 1024        # largest frame a client may send (typed input)
CONNECT_TIMEOUT = 5.0               # seconds, connecting to QEMU's socket

class ConsoleRefused(Exception):
    """A console request that cannot be served; ``code`` is the close code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def fit_close_reason(text: str) -> str:
    """``text`` cut to fit a close frame (at most 123 bytes of UTF-8)."""
    return text.encode("utf-8")[:123].decode("utf-8", "ignore")


def check_instance_name(name: str) -> str:
    """``name`` if it is a valid instance name, else :class:`ConsoleRefused`
    (:data:`CLOSE_INVALID`)."""
    try:
        return safe_component(check_normalized_hostname(name, "instance name"),
                              "instance name")
    except errors.OpPrereqError as err:
        raise ConsoleRefused(CLOSE_INVALID, str(err)) from None


@dataclass(frozen=True)
class ConsoleFiles:
    """The node-local files of one instance's console."""

    socket: Path
    log: Path


def console_files(paths: Paths, name: str) -> ConsoleFiles:
    """Socket and log of instance ``name`` on this node (name checked first).

    Raises :class:`ConsoleRefused` (:data:`CLOSE_INVALID`) for a bad name.
    """
    dirs = RuntimeDirs(paths)
    files = ConsoleFiles(dirs.serial_socket(check_instance_name(name)), dirs.serial_log(name))
    # Defence in depth: the name must not have moved the files elsewhere.
    if files.socket.parent != dirs.ctrl_dir or files.log.parent != dirs.console_log_dir:
        raise ConsoleRefused(CLOSE_INVALID, f"Invalid instance name {name[:64]!r}")
    return files


def check_console(paths: Paths, name: str) -> ConsoleFiles:
    """The console files of a KVM instance running here with a serial console.

    Blocking (reads /proc): call from a thread. Raises :class:`ConsoleRefused`
    with :data:`CLOSE_NOT_FOUND` when the instance does not run here under
    KVM or has no serial console.
    """
    files = console_files(paths, name)
    if RuntimeDirs(paths).alive_pid(name) is None:
        raise ConsoleRefused(CLOSE_NOT_FOUND,
                             f"Instance {name} is not running on this node (no KVM process)")
    try:
        is_socket = stat.S_ISSOCK(os.stat(files.socket).st_mode)
    except FileNotFoundError:
        is_socket = False
    if not is_socket:
        raise ConsoleRefused(CLOSE_NOT_FOUND,
                             f"Instance {name} has no serial console (serial_console is off)")
    return files


def read_history(log_path: Path, lines: int, max_bytes: int = MAX_HISTORY_BYTES) -> bytes:
    """The last ``lines`` lines of ``log_path`` (at most ``max_bytes`` bytes;
    an unfinished last line counts as a line). ``b""`` if there is no log.

    Blocking: call from a thread.
    """
    if lines <= 0:
        return b""
    try:
        with open(log_path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            fh.seek(start)
            data = fh.read(size - start)
    except FileNotFoundError:
        return b""
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    pos = end
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return data
    return data[pos + 1:]


# -- sharing one QEMU connection between viewers ----------------------------------------

_CLOSE = object()   # queue sentinel


class Viewer:
    """One WebSocket client of a console: output is queued and sent by its
    own task, so a slow client never stalls the others."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.queue: asyncio.Queue[object] = asyncio.Queue(VIEWER_QUEUE_CHUNKS)
        self.close_code = CLOSE_ENDED
        self.close_reason = ""
        self._closing = False

    def push(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.close(CLOSE_ERROR, "Console client too slow; output was dropped")

    def close(self, code: int, reason: str) -> None:
        """Ask the sender task to close the WebSocket after the queued output."""
        if self._closing:
            return
        self._closing = True
        self.close_code, self.close_reason = code, reason
        try:
            self.queue.put_nowait(_CLOSE)
        except asyncio.QueueFull:
            # Drop the backlog: the close must get through.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_CLOSE)

    async def send_loop(self) -> None:
        """Send queued output until the close sentinel; then close the socket."""
        ws = self.websocket
        try:
            while True:
                item = await self.queue.get()
                if item is _CLOSE:
                    break
                assert isinstance(item, bytes)
                await ws.send_bytes(item)
            if ws.application_state == WebSocketState.CONNECTED:
                await ws.close(self.close_code, fit_close_reason(self.close_reason))
        except (WebSocketDisconnect, RuntimeError, OSError) as err:
            log.debug("console viewer gone while sending: %s", err)


class ConsoleHub:
    """The connection to one instance's serial socket, shared by its viewers."""

    def __init__(self, name: str, files: ConsoleFiles,
                 on_empty: Callable[[ConsoleHub], None]) -> None:
        self.name = name
        self.files = files
        self.viewers: set[Viewer] = set()
        self._on_empty = on_empty
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    async def open(self) -> None:
        """Connect to QEMU. Raises :class:`ConsoleRefused` if it cannot."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.files.socket)), CONNECT_TIMEOUT)
        except (TimeoutError, OSError) as err:
            raise ConsoleRefused(CLOSE_NOT_FOUND, f"Cannot connect to the serial console of "
                                                  f"{self.name}: {err or 'timeout'}") from None
        self._writer = writer
        self._task = asyncio.create_task(self._pump(reader), name=f"console-{self.name}")

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        reason = f"Console of {self.name} closed (instance stopped or restarted)"
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                for viewer in list(self.viewers):
                    viewer.push(data)
        except OSError as err:
            reason = f"Console of {self.name} failed: {err}"
        finally:
            self._shutdown(CLOSE_ENDED, reason)

    def _shutdown(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        for viewer in list(self.viewers):
            viewer.close(code, reason)
        self.viewers.clear()
        if self._writer is not None:
            self._writer.close()
        self._on_empty(self)

    async def write(self, data: bytes) -> None:
        """Type ``data`` on the console (ignored once the console closed)."""
        if self.closed or self._writer is None:
            return
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as err:
            self._shutdown(CLOSE_ENDED, f"Console of {self.name} failed: {err}")

    def add(self, viewer: Viewer) -> int:
        if len(self.viewers) >= MAX_VIEWERS:
            raise ConsoleRefused(CLOSE_BUSY, f"Too many viewers on the console of {self.name} "
                                             f"(at most {MAX_VIEWERS})")
        self.viewers.add(viewer)
        return len(self.viewers)

    def remove(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers and not self.closed:
            self.closed = True
            if self._task is not None:
                self._task.cancel()
            if self._writer is not None:
                self._writer.close()
            self._on_empty(self)


class ConsoleService:
    """The consoles of this node: one :class:`ConsoleHub` per attached instance."""

    def __init__(self, paths: Paths, refuse: Callable[[], str | None] | None = None) -> None:
        self.paths = paths
        self._refuse = refuse
        self.hubs: dict[str, ConsoleHub] = {}
        self._lock = asyncio.Lock()

    def _drop(self, hub: ConsoleHub) -> None:
        if self.hubs.get(hub.name) is hub:
            del self.hubs[hub.name]

    async def _join(self, name: str, files: ConsoleFiles, viewer: Viewer) -> tuple[ConsoleHub,
                                                                                  int]:
        async with self._lock:
            hub = self.hubs.get(name)
            if hub is None or hub.closed:
                hub = ConsoleHub(name, files, self._drop)
                await hub.open()
                self.hubs[name] = hub
            return hub, hub.add(viewer)

    async def serve(self, websocket: WebSocket, instance: str) -> None:
        """Handle one WebSocket (see the module docstring)."""
        try:
            await self._serve(websocket, instance)
        except (WebSocketDisconnect, OSError) as err:
            # The client went away early (e.g. right after connecting).
            log.debug("console client for %r gone: %r", instance[:64], err)

    async def _serve(self, websocket: WebSocket, instance: str) -> None:
        await websocket.accept()
        try:
            history = _int_arg(websocket, "history", 0, 0, MAX_HISTORY_LINES)
            follow = _int_arg(websocket, "follow", 1, 0, 1) == 1
            if self._refuse is not None and (why := self._refuse()):
                raise ConsoleRefused(CLOSE_GOING_AWAY, why)
            files = await run_in_threadpool(check_console, self.paths, instance)
            past = await run_in_threadpool(read_history, files.log, history)
        except ConsoleRefused as err:
            log.info("console of %r refused: %s", instance[:64], err.reason)
            await websocket.close(err.code, fit_close_reason(err.reason))
            return
        await websocket.send_text(json.dumps({"instance": instance,
                                              "history_bytes": len(past), "follow": follow}))
        if past:
            await websocket.send_bytes(past)
        if not follow:
            await websocket.close(CLOSE_DONE, "End of console history")
            return
        viewer = Viewer(websocket)
        try:
            hub, count = await self._join(instance, files, viewer)
        except ConsoleRefused as err:
            await websocket.close(err.code, fit_close_reason(err.reason))
            return
        client = websocket.client.host if websocket.client else "?"
        log.info("console of %s attached from %s (%d viewer(s))", instance, client, count)
        sender = asyncio.create_task(viewer.send_loop())
        try:
            await websocket.send_text(json.dumps({"attached": True, "viewers": count}))
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None and message.get("text") is not None:
                    data = message["text"].encode("utf-8")
                if data:
                    await hub.write(data)
        except (WebSocketDisconnect, RuntimeError, OSError) as err:
            log.debug("console viewer of %s gone: %s", instance, err)
        finally:
            hub.remove(viewer)
            viewer.close(CLOSE_DONE, "Detached")
            try:
                await asyncio.wait_for(sender, 5)
            except TimeoutError:
                sender.cancel()
            log.info("console of %s detached from %s", instance, client)


def _int_arg(websocket: WebSocket, name: str, default: int, low: int, high: int) -> int:
    raw = websocket.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConsoleRefused(CLOSE_INVALID, f"Invalid {name} {raw[:20]!r}") from None
    if not low <= value <= high:
        raise ConsoleRefused(CLOSE_INVALID, f"{name} must be between {low} and {high}")
    return value


def add_console_route(app: Starlette, paths: Paths,
                      refuse: Callable[[], str | None] | None = None) -> ConsoleService:
    """Serve :data:`CONSOLE_PATH` on ``app`` (joined mode only: the route
    relies on the listener's client-certificate check). ``refuse`` returns a
    reason to refuse new sessions (noded switching mode), or None."""
    service = ConsoleService(paths, refuse)

    async def console(websocket: WebSocket) -> None:
        await service.serve(websocket, websocket.path_params["instance"])

    app.router.routes.append(WebSocketRoute(CONSOLE_PATH, console))
    return service
