"""RpcRunner / NodeClient against real noded processes, plus the pure parts
(results, content encoding, encode_instance)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import constants as C
from corral import errors
from corral.objects import NIC, Cluster, Disk, Instance, Node
from corral.paths import Paths
from corral.rpc import RpcResult, RpcRunner, compress_content, decompress_content
from corral.rpc.client import encode_args

from noded.nodedproc import NodedProcess, free_port, make_master, preinstall_joined

ADDR_A, ADDR_B, ADDR_C = "127.0.1.31", "127.0.1.32", "127.0.1.33"


class FakeConfig:
    """The two ConfigStore methods RpcRunner uses."""

    def __init__(self, nodes: list[Node], cluster: Cluster | None = None) -> None:
        self.nodes = {n.uuid: n for n in nodes}
        self.cluster = cluster or Cluster(cluster_name="cluster.test",
                                          master_node=nodes[0].uuid if nodes else "")

    def get_node(self, uuid: str) -> Node | None:
        return self.nodes.get(uuid)

    def get_cluster(self) -> Cluster:
        return self.cluster


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[Paths, list[NodedProcess], list[Node]]]:
    master = make_master(tmp_path / "master")
    procs: list[NodedProcess] = []
    nodes: list[Node] = []
    try:
        for name, addr in (("nodea", ADDR_A), ("nodeb", ADDR_B)):
            root = preinstall_joined(master, tmp_path / name, name).root
            proc = NodedProcess(root, addr)
            procs.append(proc)
            proc.start()
            nodes.append(Node(name=name, primary_ip=addr, noded_port=proc.port))
        yield master, procs, nodes
    finally:
        for proc in procs:
            proc.stop()


class CountingListener:
    """A plain TCP listener that counts connection attempts."""

    def __init__(self, addr: str) -> None:
        self.sock = socket.create_server((addr, 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.sock.settimeout(0.2)
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.mark.integration
def test_parallel_calls_and_a_killed_node(two_nodes) -> None:
    master, procs, nodes = two_nodes
    rpc = RpcRunner(FakeConfig(nodes), master)
    try:
        uuids = [n.uuid for n in nodes]
        res = rpc.call("version", uuids, [])
        assert list(res) == uuids
        assert [r.payload for r in res.values()] == [C.PROTOCOL_VERSION] * 2
        assert [r.node for r in res.values()] == ["nodea", "nodeb"]

        # Both nodes sleep at the same time.
        start = time.monotonic()
        res = rpc.call("test_delay", uuids, [1.0])
        elapsed = time.monotonic() - start
        assert all(not r.failed for r in res.values())
        assert elapsed < 1.8

        info = rpc.call_one("node_info", uuids[1], [[], []])
        assert info.payload["name"] == "nodeb"

        procs[1].kill()
        res = rpc.call("version", uuids, [])
        assert not res[uuids[0]].failed
        bad = res[uuids[1]]
        assert bad.failed and not bad.offline
        assert bad.fail_msg.startswith(
            f"Error while connecting to node nodeb ({ADDR_B}:{nodes[1].noded_port}): ")
        with pytest.raises(errors.OpExecError, match="Could not ask nodeb") as exc:
            bad.raise_for("Could not ask nodeb")
        assert "nodeb" in str(exc.value)
    finally:
        rpc.close()


@pytest.mark.integration
def test_offline_node_fails_without_traffic(two_nodes) -> None:
    master, _, nodes = two_nodes
    listener = CountingListener(ADDR_C)
    try:
        offline = Node(name="nodec", primary_ip=ADDR_C, noded_port=listener.port, offline=True)
        rpc = RpcRunner(FakeConfig([*nodes, offline]), master)
        start = time.monotonic()
        res = rpc.call_one("node_info", offline.uuid, [[], []])
        assert time.monotonic() - start < 0.5
        assert (res.failed, res.offline, res.fail_msg, res.node) == \
            (True, True, "Node is marked offline", "nodec")
        time.sleep(0.3)
        assert listener.accepted == 0
        # version is "offline ok": it is sent (and fails: the listener is no noded).
        res = rpc.call_one("version", offline.uuid, [], timeout=2)
        assert res.failed and not res.offline
        time.sleep(0.3)
        assert listener.accepted >= 1
        rpc.close()
    finally:
        listener.close()


@pytest.mark.integration
def test_timeouts_unknown_nodes_and_bad_calls(two_nodes) -> None:
    master, _, nodes = two_nodes
    rpc = RpcRunner(FakeConfig(nodes), master)
    try:
        res = rpc.call_one("test_delay", nodes[0].uuid, [3], timeout=0.5)
        assert res.failed and res.fail_msg.startswith("Timeout after 0.5 s waiting for node "
                                                      "nodea")
        res = rpc.call_one("version", "no-such-uuid", [])
        assert res.failed and "not in the configuration" in res.fail_msg
        res = rpc.call_one("bridges_exist", nodes[0].uuid, [["nosuchbr1"]])
        assert res.fail_msg == "Missing bridges nosuchbr1"
        with pytest.raises(errors.OpPrereqError) as exc:
            res.raise_for("Bridge check failed", prereq=True, ecode=errors.ECODE_ENVIRON)
        assert str(exc.value) == "Bridge check failed (node nodea): Missing bridges nosuchbr1"
        assert exc.value.ecode == errors.ECODE_ENVIRON
        with pytest.raises(errors.ProgrammerError):
            rpc.call("no_such_call", [nodes[0].uuid], [])
        with pytest.raises(errors.ProgrammerError):
            rpc.call("version", [nodes[0].uuid], [1])
        # Upload through the runner compresses content itself.
        res = rpc.call_one("upload_file_single", nodes[0].uuid,
                           ["/var/lib/corral/ssconf_x", b"a" * 5000, 0o644, None, None, None,
                            None])
        assert not res.failed
    finally:
        rpc.close()


def test_missing_certificates_give_failed_results(tmp_path: Path) -> None:
    node = Node(name="nodea", primary_ip=ADDR_A, noded_port=free_port(ADDR_A))
    rpc = RpcRunner(FakeConfig([node]), Paths(tmp_path))
    res = rpc.call_one("version", node.uuid, [])
    assert res.failed and res.fail_msg.startswith("Cannot set up TLS for RPC")


def test_result_helpers() -> None:
    ok = RpcResult("n1", "version", payload=1)
    ok.raise_for("never")
    assert ok.warn("never", lambda m: pytest.fail(m)) is False
    bad = RpcResult("n1", "version", fail_msg="boom")
    seen: list[str] = []
    assert bad.warn("Could not x", seen.append) is True
    assert seen == ["Could not x (node n1): boom"]
    with pytest.raises(errors.OpExecError, match=r"^Could not x \(node n1\): boom$"):
        bad.raise_for("Could not x")


@given(st.binary(max_size=3000))
def test_content_roundtrip(data: bytes) -> None:
    enc = compress_content(data)
    assert enc[0] in (0, 1)
    assert decompress_content(enc) == data


def test_content_encoding_choice_and_errors() -> None:
    assert compress_content("short text") == [0, "short text"]
    assert compress_content(b"x" * 1000)[0] == 1
    assert compress_content(b"\xff\xfe")[0] == 1      # not UTF-8: never plain
    for bad in ([2, "x"], [1, "!!notbase64"], "plain", [0, 5], None):
        with pytest.raises(errors.RPCFail):
            decompress_content(bad)
    with pytest.raises(errors.ProgrammerError):
        encode_args("version", [object()])


def test_encode_instance_fills_params() -> None:
    pnode = Node(name="node1", primary_ip="127.0.1.1")
    snode = Node(name="node2", primary_ip="127.0.1.2")
    cluster = Cluster(cluster_name="c", master_node=pnode.uuid,
                      hvparams={C.HT_FAKE: {"migration_mode": "non-live"}},
                      beparams={"default": {C.BE_VCPUS: 2}},
                      osparams={"debootstrap": {"suite": "bookworm"}},
                      nicparams={"default": {C.NIC_LINK: "br0"}})
    inst = Instance(name="inst1", primary_node=pnode.uuid, os="debootstrap+min",
                    hypervisor=C.HT_FAKE, beparams={C.BE_MAXMEM: 256},
                    nics=[NIC(mac="aa:00:00:00:00:01", nicparams={C.NIC_MODE: "routed"})],
                    disks=[Disk(size=1024, nodes=[pnode.uuid, snode.uuid])])
    rpc = RpcRunner(FakeConfig([pnode, snode], cluster), Paths(Path("/nonexistent")))
    data = rpc.encode_instance(inst, bep={C.BE_MINMEM: 64}, osp={"variant": "x"})
    assert data["hvparams"]["migration_mode"] == "non-live"
    assert data["beparams"][C.BE_VCPUS] == 2 and data["beparams"][C.BE_MAXMEM] == 256
    assert data["beparams"][C.BE_MINMEM] == 64
    assert data["osparams"] == {"suite": "bookworm", "variant": "x"}
    assert data["nics"][0]["nicparams"] == {C.NIC_MODE: "routed", C.NIC_LINK: "br0",
                                            C.NIC_VLAN: ""}
    assert data["primary_node_name"] == "node1"
    assert data["secondary_nodes"] == [snode.uuid]
    assert data["secondary_node_names"] == ["node2"]
    assert inst.beparams == {C.BE_MAXMEM: 256}          # the config object is unchanged
