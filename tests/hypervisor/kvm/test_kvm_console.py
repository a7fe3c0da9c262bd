"""Serial console helpers against a fake console socket (no QEMU needed)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import errors
from corral.hypervisor.kvm.console import SerialReader, attach_serial, read_serial


class FakeConsole:
    """A unix socket server: sends ``greeting`` to each client, records input."""

    def __init__(self, path: Path, greeting: bytes) -> None:
        self.path = path
        self.greeting = greeting
        self.received = bytearray()
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(4)
        self.clients: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.clients.append(conn)
            try:
                conn.sendall(self.greeting)
            except OSError:
                continue
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            self.received += data
            if b"\n" in data:
                conn.sendall(b"echo:" + data)

    def hang_up(self) -> None:
        clients, self.clients = self.clients, []
        for c in clients:
            c.shutdown(socket.SHUT_RDWR)
            c.close()

    def close(self) -> None:
        self.hang_up()
        self.srv.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[FakeConsole]:
    fake = FakeConsole(tmp_path / "vm.serial", b"booting...\r\nlogin: ")
    yield fake
    fake.close()


def test_read_serial_until_regex(console: FakeConsole) -> None:
    assert read_serial(console.path, r"login:", 5) == "booting...\r\nlogin:"


def test_read_serial_timeout_shows_output(console: FakeConsole) -> None:
    with pytest.raises(TimeoutError, match="booting"):
        read_serial(console.path, r"never", 0.5)


def test_read_serial_missing_socket(tmp_path: Path) -> None:
    with pytest.raises(errors.HypervisorError, match="Cannot connect"):
        read_serial(tmp_path / "none.serial", "x", 0.3)


def test_reader_sends_and_reconnects(console: FakeConsole) -> None:
    with SerialReader(console.path, reconnect=True) as reader:
        reader.wait_for("login:", 5)
        reader.send("uname\n")
        reader.wait_for("echo:uname", 5)
        console.hang_up()                 # QEMU restarted: a new greeting comes
        reader.wait_for(r"(?s)login:.*login:", 5)
        assert reader.connections == 2
        assert reader.count("booting") == 2


def test_attach_serial_copies_both_ways_until_escape(console: FakeConsole,
                                                     tmp_path: Path) -> None:
    in_r, in_w = os.pipe()
    out_path = tmp_path / "out"
    with open(out_path, "wb") as out, os.fdopen(in_r, "rb", buffering=0) as stdin:
        os.write(in_w, b"ls\n")
        done = threading.Event()

        def attach() -> None:
            attach_serial(console.path, stdin, out)
            done.set()

        t = threading.Thread(target=attach, daemon=True)
        t.start()
        for _ in range(100):
            if b"echo:ls" in out_path.read_bytes():
                break
            done.wait(0.05)
        assert not done.is_set()
        os.write(in_w, b"pwd\x1dignored")
        assert done.wait(5)
        os.close(in_w)
    for _ in range(100):
        if b"pwd" in console.received:
            break
        time.sleep(0.05)
    data = out_path.read_bytes()
    assert data.startswith(b"booting...\r\nlogin: ") and b"echo:ls\n" in data
    assert bytes(console.received).startswith(b"ls\npwd")
    assert b"ignored" not in console.received


def test_attach_serial_missing_socket(tmp_path: Path) -> None:
    r, w = os.pipe()
    with (os.fdopen(r, "rb") as stdin, open(tmp_path / "o", "wb") as out,
          pytest.raises(errors.HypervisorError, match="Cannot connect")):
        attach_serial(tmp_path / "none.serial", stdin, out)
    os.close(w)
