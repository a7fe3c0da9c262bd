"""Serial console of a KVM instance: its unix socket (``ctrl/<name>.serial``).

QEMU serves the guest's first serial port on a unix socket
(``-serial unix:...,server=on,wait=off``) and drops output while no client
is connected. :class:`SerialReader` keeps a connection open and collects the
output (tests, the CLI waiting for a boot message); :func:`attach_serial`
connects a terminal to the console as ``socat`` does in Ganeti's console
command, ending on the escape character Ctrl-] (``0x1d``).
"""

from __future__ import annotations

import os
import re
import select
import socket
import termios
import threading
import time
import tty
from pathlib import Path
from typing import BinaryIO, Self

from corral import errors

ESCAPE_CHAR = b"\x1d"       # Ctrl-], as telnet and Ganeti's socat wrapper


class SerialReader:
    """Collects a serial console's output in a background thread.

    ``reconnect`` keeps retrying when the socket goes away (the instance was
    stopped and started again, as by a Ganeti-style reboot). Use as a
    context manager or call :meth:`close`.
    """

    def __init__(self, socket_path: str | Path, reconnect: bool = False,
                 connect_timeout: float = 10.0) -> None:
        self.socket_path = str(socket_path)
        self.reconnect = reconnect
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._closed = False
        self._sock: socket.socket | None = None
        self._connects = 0
        self._sock = self._connect(connect_timeout)
        self._thread = threading.Thread(target=self._run, name="corral-serial", daemon=True)
        self._thread.start()

    def _connect(self, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.socket_path)
                self._connects += 1
                return sock
            except OSError as err:
                sock.close()
                if time.monotonic() >= deadline or self._closed:
                    raise errors.HypervisorError(
                        f"Cannot connect to serial console {self.socket_path}: {err}") from err
                time.sleep(0.05)

    def _run(self) -> None:
        while not self._closed:
            sock = self._sock
            if sock is None:
                return
            try:
                ready, _, _ = select.select([sock], [], [], 0.2)
                data = sock.recv(65536) if ready else None
            except OSError:
                data = b""
            if data is None:
                continue
            if data:
                with self._cond:
                    self._buf += data
                    self._cond.notify_all()
                continue
            sock.close()
            self._sock = None
            if not self.reconnect:
                return
            while not self._closed:
                try:
                    self._sock = self._connect(0.5)
                    break
                except errors.HypervisorError:
                    continue

    @property
    def connections(self) -> int:
        """How many times the reader connected (reconnects after restarts count)."""
        return self._connects

    def text(self) -> str:
        """Everything read so far."""
        with self._cond:
            return self._buf.decode("utf-8", "replace")

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match[str]:
        """Wait until ``pattern`` matches the output after character ``start``.

        Raises :class:`TimeoutError` with the output seen so far.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                text = self._buf.decode("utf-8", "replace")
                m = regex.search(text, start)
                if m:
                    return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{pattern!r} not seen on {self.socket_path} within {timeout:g}s; "
                        f"output:\n{text[-2000:]}")
                self._cond.wait(min(remaining, 0.5))

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.text()))

    def send(self, data: bytes | str) -> None:
        """Type ``data`` on the console."""
        if isinstance(data, str):
            data = data.encode()
        sock = self._sock
        if sock is None:
            raise errors.HypervisorError(f"Serial console {self.socket_path} is not connected")
        sock.sendall(data)

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_serial(socket_path: str | Path, until_regex: str, timeout: float) -> str:
    """Read the console until ``until_regex`` matches; return the text read.

    Raises :class:`TimeoutError` (with the output) when it does not match
    within ``timeout`` seconds, :class:`errors.HypervisorError` when the
    socket cannot be reached.
    """
    with SerialReader(socket_path, connect_timeout=min(timeout, 10.0)) as reader:
        m = reader.wait_for(until_regex, timeout)
        return reader.text()[: m.end()]


def attach_serial(socket_path: str | Path, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Connect ``stdin``/``stdout`` to the serial console until Ctrl-] or hang-up.

    A terminal on ``stdin`` is put in raw mode meanwhile. Raises
    :class:`errors.HypervisorError` when the socket cannot be reached.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path))
    except OSError as err:
        sock.close()
        raise errors.HypervisorError(
            f"Cannot connect to serial console {socket_path}: {err}") from err
    in_fd, out_fd = stdin.fileno(), stdout.fileno()
    saved = termios.tcgetattr(in_fd) if os.isatty(in_fd) else None
    try:
        if saved is not None:
            tty.setraw(in_fd)
        while True:
            ready, _, _ = select.select([sock, in_fd], [], [])
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                _write_all(out_fd, data)
            if in_fd in ready:
                data = os.read(in_fd, 4096)
                if not data:
                    return
                if ESCAPE_CHAR in data:
                    data = data.split(ESCAPE_CHAR, 1)[0]
                    if data:
                        sock.sendall(data)
                    return
                sock.sendall(data)
    finally:
        if saved is not None:
            termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
        sock.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
