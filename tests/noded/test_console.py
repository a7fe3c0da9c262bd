"""Console WebSocket of noded (noded/console.py) and its client (console_client.py).

A real joined noded with test certificates; QEMU's serial socket is played
by a unix socket server that, like QEMU, serves one client at a time, and a
dummy process whose command line has ``-name <instance>`` stands for the
running QEMU.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import crypto, errors
from corral.console_client import (
    ConsoleClosed,
    ConsoleError,
    ConsoleSession,
    attach,
    decode_escapes,
    tail,
    wait_for,
)
from corral.hypervisor.kvm.runtime import RuntimeDirs
from corral.noded import console as nc
from corral.paths import Paths

from .nodedproc import NodedProcess, make_master, preinstall_joined

ADDR = "127.0.1.26"
INSTANCE = "vm1.example.com"


class FakeSerial:
    """QEMU's serial chardev: one client at a time (others wait in the
    backlog), greets each client, echoes lines as ``echo:<line>``."""

    def __init__(self, path: Path, greeting: bytes = b"booted\r\nlogin: ") -> None:
        self.path = path
        self.greeting = greeting
        self.received = bytearray()
        self.connections = 0
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(4)
        self.client: socket.socket | None = None
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.connections += 1
            self.client = conn
            try:
                conn.sendall(self.greeting)
                while True:
                    data = conn.recv(4096)
                    if not data:
                        break
                    self.received += data
                    if b"\n" in data:
                        conn.sendall(b"echo:" + data)
            except OSError:
                pass
            finally:
                conn.close()
                self.client = None

    def emit(self, data: bytes) -> None:
        """Output of the guest (to the connected client)."""
        deadline = time.monotonic() + 5
        while self.client is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.client is not None, "nobody connected"
        self.client.sendall(data)

    def hang_up(self) -> None:
        """The instance stops: the client is disconnected."""
        client = self.client
        if client is not None:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:     # the client left and its socket was closed meanwhile
                pass

    def close(self) -> None:
        self._stop = True
        self.hang_up()
        self.srv.close()
        self.path.unlink(missing_ok=True)


class Node:
    """A joined noded plus the fake running instance on it."""

    def __init__(self, base: Path) -> None:
        self.master = make_master(base / "m")
        self.paths = preinstall_joined(self.master, base / "n", "node1.test")
        self.dirs = RuntimeDirs(self.paths)
        self.dirs.ensure()
        self.noded = NodedProcess(self.paths.root, ADDR).start()
        self.port = self.noded.port
        self.procs: list[subprocess.Popen[bytes]] = []
        self.serials: list[FakeSerial] = []

    def run_instance(self, name: str = INSTANCE, serial: bool = True,
                     log: bytes | None = None) -> FakeSerial | None:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                                 "-name", name])
        self.procs.append(proc)
        self.dirs.pid_file(name).write_text(f"{proc.pid}\n")
        if log is not None:
            self.dirs.serial_log(name).write_bytes(log)
        if not serial:
            return None
        fake = FakeSerial(self.dirs.serial_socket(name))
        self.serials.append(fake)
        return fake

    def session(self, name: str = INSTANCE, **kw: object) -> ConsoleSession:
        return ConsoleSession(ADDR, self.port, self.master, name, **kw)  # type: ignore[arg-type]

    def cleanup(self) -> None:
        for fake in self.serials:
            fake.close()
        for proc in self.procs:
            proc.kill()
            proc.wait(5)
        self.noded.stop()


@pytest.fixture
def node(short_tmp: Path) -> Iterator[Node]:
    n = Node(short_tmp)
    try:
        yield n
    finally:
        n.cleanup()
    # Clients going away at any moment are normal: nothing unhandled in noded.
    noded_log = n.paths.daemon_log("noded").read_text()
    assert "Traceback" not in noded_log, noded_log[-3000:]


def _until(sess: ConsoleSession, pred: Callable[[bytes], bool], timeout: float = 10) -> bytes:
    """Console bytes received until ``pred(all_bytes)`` holds."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    while not pred(bytes(got)):
        left = deadline - time.monotonic()
        assert left > 0, f"timeout; got {bytes(got)!r}"
        item = sess.recv(left)
        if isinstance(item, bytes):
            got += item
    return bytes(got)


# -- pure functions -----------------------------------------------------------------------

def test_read_history(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert nc.read_history(log, 5) == b""                       # no log yet
    log.write_bytes(b"one\r\ntwo\r\nthree\r\nlogin: ")
    assert nc.read_history(log, 1) == b"login: "                # unfinished line counts
    assert nc.read_history(log, 2) == b"three\r\nlogin: "
    assert nc.read_history(log, 99) == log.read_bytes()
    assert nc.read_history(log, 0) == b""
    log.write_bytes(b"a\nb\n")
    assert nc.read_history(log, 1) == b"b\n"
    log.write_bytes(b"x" * 100 + b"\nlast\n")
    assert nc.read_history(log, 5, max_bytes=10) == b"xxxx\nlast\n"   # capped


@pytest.mark.parametrize("name", ["", ".", "..", "../etc", "a/b", "/abs", "-x", "a\x00b",
                                  "x" * 300, "a b", "vm1\n"])
def test_invalid_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(nc.ConsoleRefused) as exc:
        nc.console_files(Paths(tmp_path), name)
    assert exc.value.code == nc.CLOSE_INVALID


@given(st.text(min_size=1, max_size=80))
def test_names_never_leave_the_run_dir(name: str) -> None:
    paths = Paths(Path("/r"))
    try:
        files = nc.console_files(paths, name)
    except nc.ConsoleRefused:
        return
    dirs = RuntimeDirs(paths)
    assert files.socket.parent == dirs.ctrl_dir and files.log.parent == dirs.console_log_dir
    assert "/" not in name and name not in (".", "..")


def test_decode_escapes() -> None:
    assert decode_escapes(r"root\n") == b"root\n"
    assert decode_escapes(r"a\r\tb\\n\x1d") == b"a\r\tb\\n\x1d"
    assert decode_escapes("é") == "é".encode()


# -- through a real noded ------------------------------------------------------------------

@pytest.mark.integration
def test_data_flows_both_ways(node: Node) -> None:
    fake = node.run_instance()
    assert fake is not None
    with node.session() as sess:
        assert sess.recv(10) == {"instance": INSTANCE, "history_bytes": 0, "follow": True}
        assert sess.recv(10) == {"attached": True, "viewers": 1}
        assert _until(sess, lambda b: b"login: " in b) == b"booted\r\nlogin: "
        sess.send(b"root\n")
        assert _until(sess, lambda b: b"echo:root\n" in b) == b"echo:root\n"
        fake.emit(b"\x00\xff binary \x1b[0m")
        assert _until(sess, lambda b: b"[0m" in b) == b"\x00\xff binary \x1b[0m"
    assert bytes(fake.received) == b"root\n"


@pytest.mark.integration
def test_attach_with_piped_input(node: Node) -> None:
    fake = node.run_instance()
    assert fake is not None
    rfd, wfd = os.pipe()
    os.write(wfd, b"hello\n")
    os.close(wfd)
    out = io.BytesIO()
    with os.fdopen(rfd, "rb") as stdin:
        why = attach(ADDR, node.port, node.master, INSTANCE, stdin, out, linger=1.0)
    assert why == "input ended"
    assert b"booted\r\nlogin: " in out.getvalue() and b"echo:hello\n" in out.getvalue()
    assert bytes(fake.received) == b"hello\n"


@pytest.mark.integration
def test_escape_character_detaches(node: Node) -> None:
    fake = node.run_instance()
    assert fake is not None
    rfd, wfd = os.pipe()
    os.write(wfd, b"ls\n\x1dnot sent\n")
    out = io.BytesIO()
    try:
        with os.fdopen(rfd, "rb") as stdin:
            why = attach(ADDR, node.port, node.master, INSTANCE, stdin, out, timeout=20)
    finally:
        os.close(wfd)
    assert why == "escape"
    time.sleep(0.3)
    assert bytes(fake.received) == b"ls\n"


@pytest.mark.integration
def test_two_viewers_share_the_console(node: Node) -> None:
    fake = node.run_instance()
    assert fake is not None
    with node.session() as one, node.session() as two:
        assert _until(one, lambda b: b"login: " in b)
        assert two.recv(10)["instance"] == INSTANCE                   # type: ignore[index]
        assert two.recv(10) == {"attached": True, "viewers": 2}
        two.send(b"date\n")
        for sess in (one, two):
            assert b"echo:date\n" in _until(sess, lambda b: b"echo:date\n" in b)
    # One connection to the (single-client) serial socket, shared.
    assert fake.connections == 1


@pytest.mark.integration
def test_history_and_tail(node: Node) -> None:
    log = b"".join(b"line %d\r\n" % i for i in range(1, 11)) + b"login: "
    node.run_instance(log=log)
    assert tail(ADDR, node.port, node.master, INSTANCE, 3) == b"line 9\r\nline 10\r\nlogin: "
    assert tail(ADDR, node.port, node.master, INSTANCE, 100) == log
    # The prompt was printed before anyone attached: --until still sees it.
    out = io.BytesIO()
    m = wait_for(ADDR, node.port, node.master, INSTANCE, r"login:", 10, out=out)
    assert m is not None and out.getvalue().startswith(b"line 1\r\n")


@pytest.mark.integration
def test_wait_for_after_send_and_timeout(node: Node) -> None:
    node.run_instance(log=b"old echo:ping\n")
    out = io.BytesIO()
    m = wait_for(ADDR, node.port, node.master, INSTANCE, r"echo:(\w+)", 10, out=out,
                 send=b"ping\n")
    assert m is not None and m.group(1) == "ping"
    assert b"old" not in out.getvalue()           # with --send, history does not count
    start = time.monotonic()
    assert wait_for(ADDR, node.port, node.master, INSTANCE, r"never", 1.0) is None
    assert time.monotonic() - start < 5


@pytest.mark.integration
def test_instance_stop_ends_the_session(node: Node) -> None:
    fake = node.run_instance()
    assert fake is not None
    with node.session() as sess:
        _until(sess, lambda b: b"login: " in b)
        fake.hang_up()
        with pytest.raises(ConsoleClosed) as exc:
            _until(sess, lambda b: False)
    assert exc.value.code == nc.CLOSE_ENDED
    assert "closed (instance stopped or restarted)" in exc.value.reason
    # attach() reports it as the end of the session, not an error.
    rfd, wfd = os.pipe()
    out = io.BytesIO()
    threading.Timer(1.0, fake.hang_up).start()
    try:
        with os.fdopen(rfd, "rb") as stdin:
            why = attach(ADDR, node.port, node.master, INSTANCE, stdin, out, timeout=20)
    finally:
        os.close(wfd)
    assert "instance stopped or restarted" in why


@pytest.mark.integration
def test_client_without_cluster_certificate_is_refused(node: Node, tmp_path: Path) -> None:
    node.run_instance()
    ca_pem = crypto.load_ca_cert_pem(node.master)
    no_cert = crypto.client_ssl_context(ca_pem)
    with pytest.raises(ConsoleError, match="Cannot connect to the console service"):
        ConsoleSession(ADDR, node.port, None, INSTANCE, context=no_cert)
    # A client certificate of another cluster's CA is refused as well.
    other = make_master(tmp_path / "other", cluster_name="other.test")
    with pytest.raises(ConsoleError, match="Cannot connect to the console service"):
        ConsoleSession(ADDR, node.port, other, INSTANCE)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["..", "../etc", "../../../../tmp/x", "a/b", "-x"])
def test_bad_names_are_refused(node: Node, name: str) -> None:
    with pytest.raises(ConsoleError) as exc:
        tail(ADDR, node.port, node.master, name, 5)
    assert "Invalid instance name" in str(exc.value) and exc.value.ecode == errors.ECODE_INVAL


@pytest.mark.integration
def test_unknown_instance_and_no_serial_console(node: Node) -> None:
    with pytest.raises(ConsoleError, match="Instance nosuch is not running on this node"):
        wait_for(ADDR, node.port, node.master, "nosuch", "x", 10)
    node.run_instance("noserial", serial=False)
    with pytest.raises(ConsoleError, match="Instance noserial has no serial console"):
        tail(ADDR, node.port, node.master, "noserial", 5)


@pytest.mark.integration
def test_clients_leaving_at_once_are_harmless(node: Node) -> None:
    fake = node.run_instance()
    assert fake is not None
    for history in (0, 5):
        for _ in range(5):
            node.session(history=history).close()
    time.sleep(0.5)
    with node.session() as sess:
        sess.send(b"still\n")
        assert b"echo:still\n" in _until(sess, lambda b: b"echo:still\n" in b)


@pytest.mark.integration
def test_many_sessions_in_a_row(node: Node) -> None:
    """Regression: a client reading and writing its TLS connection from two
    threads lost a request now and then (TLS 1.3 session tickets)."""
    node.run_instance()
    start = time.monotonic()
    for i in range(300):
        m = wait_for(ADDR, node.port, node.master, INSTANCE, rf"echo:(x{i})\n", 10,
                     send=b"x%d\n" % i)
        assert m is not None
    assert time.monotonic() - start < 120
