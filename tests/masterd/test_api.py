"""The client API transport: api.py served on a real unix socket, client.py.

A stand-in Master (no cluster) answers, so these tests check the wire
behaviour alone: results, error encoding/decoding, argument checks, the
socket's mode, and the client's error when no daemon listens.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from corral import errors
from corral.masterd import api
from corral.masterd.client import MasterClient
from corral.masterd.main import _Server, bind_unix_socket
from corral.paths import Paths


class StubMaster:
    """Answers a few LUXI methods; ``raise_next`` makes the next call fail."""

    def __init__(self) -> None:
        self.raise_next: BaseException | None = None
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _maybe_raise(self) -> None:
        err, self.raise_next = self.raise_next, None
        if err is not None:
            raise err

    def submit_job(self, ops: list[dict[str, Any]]) -> int:
        self.calls.append(("submit_job", (ops,)))
        self._maybe_raise()
        return 17

    def query_config_values(self, fields: list[str]) -> list[Any]:
        self._maybe_raise()
        return [f"value-of-{f}" for f in fields]

    def cancel_job(self, job_id: int, kill: bool = False) -> tuple[bool, str]:
        self._maybe_raise()
        return (True, f"canceled {job_id} kill={kill}")

    def wait_for_job_change(self, job_id: int, fields: list[str], prev_job_info: Any,
                            prev_log_serial: int | None, timeout: float) -> Any:
        self._maybe_raise()
        time.sleep(min(timeout, 0.2))
        return "nochange"

    def query_cluster_info(self) -> dict[str, Any]:
        return {"name": "stub"}


@pytest.fixture
def stub_api(tmp_path: Path) -> Iterator[tuple[StubMaster, Paths]]:
    paths = Paths(tmp_path / "root")
    master = StubMaster()
    sock = bind_unix_socket(paths.master_socket)
    server = _Server(uvicorn.Config(api.create_app(master), log_config=None,  # type: ignore[arg-type]
                                    access_log=False, lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "stub API did not start"
        time.sleep(0.02)
    try:
        yield master, paths
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        paths.master_socket.unlink(missing_ok=True)


def test_success_result(stub_api: tuple[StubMaster, Paths]) -> None:
    master, paths = stub_api
    with MasterClient(paths) as client:
        assert client.submit_job([{"OP_ID": "OP_TEST_DELAY", "duration": 0}]) == 17
        assert client.query_config_values(["a", "b"]) == ["value-of-a", "value-of-b"]
        assert client.cancel_job(5, True) == [True, "canceled 5 kill=True"]
        assert client.query_cluster_info() == {"name": "stub"}
    assert master.calls == [("submit_job", ([{"OP_ID": "OP_TEST_DELAY", "duration": 0}],))]


@pytest.mark.parametrize("err", [
    errors.OpPrereqError("Instance 'x' not known", errors.ECODE_NOENT),
    errors.OpExecError("disk failed"),
    errors.JobQueueDrainError("Job queue is drained, refusing job"),
    errors.JobQueueFull("queue full"),
    errors.JobLost("lost it"),
    errors.HooksAbort("hook said no"),
    errors.ConfigVersionMismatch("changed meanwhile"),
    errors.LockError("timeout"),
])
def test_error_round_trip(stub_api: tuple[StubMaster, Paths], err: errors.CorralError) -> None:
    master, paths = stub_api
    master.raise_next = err
    with MasterClient(paths) as client, pytest.raises(type(err)) as info:
        client.submit_job([{"OP_ID": "OP_TEST_DELAY", "duration": 0}])
    assert type(info.value) is type(err)
    assert info.value.message == err.message
    assert info.value.ecode == err.ecode


def test_unexpected_exception_is_internal_error(stub_api: tuple[StubMaster, Paths]) -> None:
    master, paths = stub_api
    master.raise_next = KeyError("boom")
    with MasterClient(paths) as client, pytest.raises(errors.OpExecError) as info:
        client.query_config_values(["x"])
    assert info.value.ecode == errors.ECODE_FAULT
    assert "KeyError" in info.value.message
    # The daemon survives and answers the next request.
    with MasterClient(paths) as client:
        assert client.query_config_values(["y"]) == ["value-of-y"]


def test_unknown_method_and_bad_arguments(stub_api: tuple[StubMaster, Paths]) -> None:
    _, paths = stub_api
    with MasterClient(paths) as client:
        with pytest.raises(errors.OpPrereqError) as info:
            client.call("NoSuchMethod")
        assert info.value.ecode == errors.ECODE_INVAL
        assert "Unknown method" in info.value.message
        with pytest.raises(errors.OpPrereqError) as info:
            client.call("QueryConfigValues", ["a"], "too", "many")
        assert info.value.ecode == errors.ECODE_INVAL
        assert "Invalid arguments for QueryConfigValues" in info.value.message
        # Methods of LUXI that the stand-in does not implement are not exposed blindly.
        with pytest.raises(errors.OpPrereqError):
            client.call("__init__")


def test_malformed_body(stub_api: tuple[StubMaster, Paths]) -> None:
    _, paths = stub_api
    transport = httpx.HTTPTransport(uds=str(paths.master_socket))
    with httpx.Client(transport=transport, base_url="http://corral-master") as http:
        reply = http.post("/luxi/QueryConfigValues", json={"args": "not a list"}).json()
        assert reply["success"] is False
        assert reply["result"][0] == "OpPrereqError"
        assert reply["result"][1][1] == errors.ECODE_INVAL
        reply = http.post("/luxi/QueryConfigValues", content=b"{broken").json()
        assert reply["success"] is False
        # Strict JSON, as on RAPI: no NaN, 64-bit integers, limited nesting.
        for raw in (b'{"args": [NaN]}', b'{"args": [18446744073709551616]}',
                    b'{"args": ' + b"[" * 50000 + b"]" * 50000 + b"}", b'{"other": 1}'):
            reply = http.post("/luxi/QueryConfigValues", content=raw).json()
            assert reply["success"] is False, raw[:40]
            assert reply["result"][0] == "OpPrereqError"
            assert reply["result"][1][1] == errors.ECODE_INVAL


def test_blocking_call_does_not_block_others(stub_api: tuple[StubMaster, Paths]) -> None:
    """A WaitForJobChange in progress must not stall other requests."""
    _, paths = stub_api
    results: list[Any] = []

    def waiter() -> None:
        with MasterClient(paths) as client:
            results.append(client.wait_for_job_change(1, ["status"], None, None, 0.2))

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for t in threads:
        t.start()
    with MasterClient(paths) as client:
        assert client.query_config_values(["z"]) == ["value-of-z"]
    for t in threads:
        t.join(10)
    assert results == ["nochange"] * 4


def test_socket_mode_is_0600(stub_api: tuple[StubMaster, Paths]) -> None:
    _, paths = stub_api
    st = os.stat(paths.master_socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(paths.socket_dir).st_mode) == 0o700


def test_live_socket_is_not_replaced(stub_api: tuple[StubMaster, Paths]) -> None:
    _, paths = stub_api
    with pytest.raises(errors.CorralError) as info:
        bind_unix_socket(paths.master_socket)
    assert info.value.ecode == errors.ECODE_STATE


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "sock" / "corral-master"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()               # file left behind, nobody listening
    sock = bind_unix_socket(path)
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(path))
        probe.close()
    finally:
        sock.close()


def test_client_without_daemon(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    with MasterClient(paths, timeout=5) as client, pytest.raises(errors.CorralError) as info:
        client.query_cluster_info()
    assert info.value.ecode == errors.ECODE_ENVIRON
    assert str(info.value).startswith(
        f"Cannot communicate with the master daemon at {paths.master_socket}: ")
    # It says how the socket was found, so a wrong CORRAL_ROOT is obvious.
    assert f"state root {tmp_path} (from --root, else $CORRAL_ROOT" in str(info.value)
    assert "CORRAL_ROOT must name the state root of the master node" in str(info.value)


def test_client_socket_refused(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    paths.socket_dir.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(paths.master_socket))
    stale.close()
    with MasterClient(paths, timeout=5) as client, pytest.raises(errors.CorralError) as info:
        client.query_config_values(["cluster_name"])
    assert info.value.ecode == errors.ECODE_ENVIRON
    assert "Cannot communicate with the master daemon" in str(info.value)


def test_unserializable_result_is_an_error(stub_api: tuple[StubMaster, Paths]) -> None:
    master, paths = stub_api
    master.query_cluster_info = lambda: {"x": object()}  # type: ignore[method-assign]
    with MasterClient(paths) as client, pytest.raises(errors.OpExecError) as info:
        client.query_cluster_info()
    assert info.value.ecode == errors.ECODE_FAULT
