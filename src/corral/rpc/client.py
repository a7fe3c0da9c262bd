"""Master -> node RPC client: parallel mutual-TLS calls, per-node results.

Mirrors ``ganeti.rpc.node`` (``RpcRunner``, ``RpcResult``) and
``ganeti.rpc.client``: every call is ``POST https://<ip>:<port>/<procedure>``
with a JSON array of positional arguments in the order of
:mod:`corral.rpc.defs`; the node answers ``[true, payload]`` or
``[false, message]``. Transport failures become failed results, never
exceptions, so a caller always gets one :class:`RpcResult` per node.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from pydantic import BaseModel

from corral import constants as C
from corral import crypto, errors
from corral.objects import Cluster, Instance, Node
from corral.paths import Paths
from corral.rpc.defs import CALLS
from corral.rpc.http import ConnectError, ConnectionPool, HttpError, ReadTimeout

log = logging.getLogger(__name__)

MAX_PARALLEL = 64
COMPRESS_THRESHOLD = 512  # bytes; smaller content is sent plain (Ganeti's value)
ENC_PLAIN, ENC_ZLIB_BASE64 = 0, 1


# -- content encoding (rpc_defs ED_COMPRESS) ----------------------------------------------

def compress_content(data: bytes | str) -> list[Any]:
    """Encode file content as ``[encoding, data]``: ``[0, text]`` for short
    UTF-8 text, else ``[1, base64(zlib(data))]``."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) < COMPRESS_THRESHOLD:
        try:
            return [ENC_PLAIN, raw.decode("utf-8")]
        except UnicodeDecodeError:
            pass
    return [ENC_ZLIB_BASE64, base64.b64encode(zlib.compress(raw, 3)).decode("ascii")]


def decompress_content(value: Any) -> bytes:
    """Decode ``[encoding, data]`` from :func:`compress_content` to bytes.

    Raises :class:`errors.RPCFail` for anything else.
    """
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise errors.RPCFail("Invalid encoded content: expected [encoding, data]")
    enc, data = value
    if not isinstance(data, str):
        raise errors.RPCFail("Invalid encoded content: data is not a string")
    if enc == ENC_PLAIN:
        return data.encode("utf-8")
    if enc == ENC_ZLIB_BASE64:
        try:
            return zlib.decompress(base64.b64decode(data.encode("ascii"), validate=True))
        except (ValueError, zlib.error) as err:
            raise errors.RPCFail(f"Invalid compressed content: {err}") from None
    raise errors.RPCFail(f"Unknown content encoding {enc!r}")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} cannot be sent over RPC")


def encode_args(procedure: str, args: Iterable[Any]) -> bytes:
    """The JSON body of a call; ``content`` arguments given as bytes/str are
    compressed. Raises :class:`errors.ProgrammerError` for unencodable values."""
    args = list(args)
    rdef = CALLS.get(procedure)
    if rdef is not None:
        for i, name in enumerate(rdef.args):
            if name == "content" and i < len(args) and isinstance(args[i], (bytes, str)):
                args[i] = compress_content(args[i])
    try:
        return json.dumps(args, default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise errors.ProgrammerError(f"Arguments of {procedure} are not encodable: {err}") \
            from None


def call_timeout(procedure: str, args: list[Any] | tuple[Any, ...]) -> float:
    """Read timeout of a procedure from the defs table (``test_delay``: duration + 5)."""
    if procedure == "test_delay" and args and isinstance(args[0], (int, float)):
        return float(args[0]) + 5
    rdef = CALLS.get(procedure)
    return float(rdef.timeout if rdef else C.RPC_TMO_NORMAL)


# -- results ----------------------------------------------------------------------------------

@dataclass
class RpcResult:
    """Result of one call on one node (Ganeti's ``RpcResult``).

    ``node`` is the node name, ``call`` the procedure; ``fail_msg`` is None on
    success (then ``payload`` holds the node's answer), else the error text.
    ``offline`` is True when the node was not contacted because it is offline.
    """

    node: str
    call: str
    payload: Any = None
    fail_msg: str | None = None
    offline: bool = False
    node_uuid: str | None = None

    @property
    def failed(self) -> bool:
        return self.fail_msg is not None

    def _message(self, msg: str) -> str:
        detail = self.fail_msg or ""
        if self.node and self.node not in detail:
            return f"{msg} (node {self.node}): {detail}"
        return f"{msg}: {detail}"

    def raise_for(self, msg: str, prereq: bool = False, ecode: str | None = None) -> None:
        """Raise if the call failed: :class:`errors.OpPrereqError` when
        ``prereq`` else :class:`errors.OpExecError`, text ``"<msg>: <fail_msg>"``
        naming the node. Mirrors ``RpcResult.Raise``."""
        if self.fail_msg is None:
            return
        cls = errors.OpPrereqError if prereq else errors.OpExecError
        raise cls(self._message(msg), ecode)

    def warn(self, msg: str, feedback_fn: Callable[[str], Any]) -> bool:
        """Report a failure through ``feedback_fn`` (``RpcResult.Warn``); True if failed."""
        if self.fail_msg is None:
            return False
        feedback_fn(self._message(msg))
        return True


def _format_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _err_text(err: BaseException) -> str:
    text = str(err)
    return text if text else type(err).__name__


def _post(pool: ConnectionPool, name: str, host: str, port: int, procedure: str,
          body: bytes, timeout: float, node_uuid: str | None = None) -> RpcResult:
    """One HTTP call; every failure becomes a failed :class:`RpcResult`."""
    addr = _format_addr(host, port)
    res = RpcResult(node=name, call=procedure, node_uuid=node_uuid)
    try:
        resp = pool.post(host, port, f"/{procedure}", body, timeout, C.RPC_CONNECT_TIMEOUT)
    except ConnectError as err:
        res.fail_msg = f"Error while connecting to node {name} ({addr}): {_err_text(err)}"
        return res
    except ReadTimeout:
        res.fail_msg = (f"Timeout after {timeout:g} s waiting for node {name} ({addr}) "
                        f"to answer {procedure}")
        return res
    except HttpError as err:
        res.fail_msg = f"Error while talking to node {name} ({addr}): {_err_text(err)}"
        return res
    try:
        data = json.loads(resp.body)
    except ValueError:
        data = None
    if resp.status != 200:
        detail = data.get("detail", resp.text) if isinstance(data, dict) else resp.text
        res.fail_msg = (f"Node {name} ({addr}) answered HTTP {resp.status} to "
                        f"{procedure}: {str(detail)[:500]}")
        return res
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], bool)):
        res.fail_msg = f"RPC layer error: invalid result from node {name}: {resp.text[:200]!r}"
        return res
    if data[0]:
        res.payload = data[1]
    else:
        res.fail_msg = str(data[1]) if data[1] else "No error information"
    return res


def _make_pool(paths: Paths | None, ssl_context: ssl.SSLContext | None = None
               ) -> ConnectionPool:
    if ssl_context is None:
        assert paths is not None
        ssl_context = crypto.client_ssl_context(crypto.load_ca_cert_pem(paths),
                                                paths.client_cert)
    return ConnectionPool(ssl_context, headers={"Content-Type": "application/json"})


# -- clients ------------------------------------------------------------------------------

class NodeClient:
    """Calls one noded by address (bootstrap, node join, tests).

    Uses this node's client certificate (``paths.client_cert``) and cluster CA
    unless ``ssl_context`` is given. Any procedure name may be called.
    """

    def __init__(self, host: str, port: int = C.DEFAULT_NODED_PORT,
                 paths: Paths | None = None, *, name: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if paths is None and ssl_context is None:
            raise errors.ProgrammerError("NodeClient needs paths or an ssl_context")
        self.host, self.port = host, port
        self.name = name or host
        self._paths = paths
        self._ssl_context = ssl_context
        self._client: ConnectionPool | None = None

    def call(self, procedure: str, args: list[Any] | tuple[Any, ...] = (),
             timeout: float | None = None) -> RpcResult:
        """Call ``procedure`` with positional ``args``; timeout from the defs table."""
        if self._client is None:
            try:
                self._client = _make_pool(self._paths, self._ssl_context)
            except (errors.CorralError, ssl.SSLError, OSError) as err:
                return RpcResult(self.name, procedure,
                                 fail_msg=f"Cannot set up TLS for RPC: {_err_text(err)}")
        body = encode_args(procedure, args)
        tmo = timeout if timeout is not None else call_timeout(procedure, list(args))
        return _post(self._client, self.name, self.host, self.port, procedure, body, tmo)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> "NodeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ConfigReader(Protocol):
    """What :class:`RpcRunner` needs of the config store."""

    def get_node(self, uuid: str) -> Node | None: ...

    def get_cluster(self) -> Cluster: ...


class RpcRunner:
    """Master -> nodes RPC (Ganeti's ``RpcRunner``).

    ``cfg`` resolves node UUIDs to address and offline flag; ``paths`` gives
    the client certificate and cluster CA. Thread-safe: jobs share one runner,
    its keep-alive connections (:mod:`corral.rpc.http`) and its worker threads.
    """

    def __init__(self, cfg: ConfigReader, paths: Paths) -> None:
        self._cfg = cfg
        self._paths = paths
        self._lock = threading.Lock()
        self._client: ConnectionPool | None = None
        self._workers: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        # Kept for the runner's life: starting threads per call costs more
        # than the call itself on a small cluster.
        with self._lock:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(max_workers=MAX_PARALLEL,
                                                   thread_name_prefix="rpc")
            return self._workers

    def _http(self) -> ConnectionPool:
        with self._lock:
            if self._client is None:
                self._client = _make_pool(self._paths)
            return self._client

    def reload_certs(self) -> None:
        """Drop the connection pool so the next call reads the certificates again."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def close(self) -> None:
        """Close the connections and stop the worker threads."""
        self.reload_certs()
        with self._lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=False)

    def call(self, procedure: str, node_uuids: Iterable[str], args: list[Any] | tuple[Any, ...]
             = (), timeout: float | None = None) -> dict[str, RpcResult]:
        """Call ``procedure`` on every node in parallel; ``{node_uuid: RpcResult}``.

        ``args`` are the positional arguments of :data:`corral.rpc.defs.CALLS`
        (already encoded, e.g. with :meth:`encode_instance`); ``timeout`` (s)
        defaults to the table's. Offline nodes fail at once with "Node is
        marked offline" unless the call is offline-ok. Raises
        :class:`errors.ProgrammerError` for an unknown procedure or a wrong
        argument count.
        """
        uuids = list(dict.fromkeys(node_uuids))
        nodes: dict[str, Node | None] = {uuid: self._cfg.get_node(uuid) for uuid in uuids}
        return self._call_nodes(procedure, nodes, args, timeout)

    def call_node_object(self, procedure: str, node: Node,
                         args: list[Any] | tuple[Any, ...] = (),
                         timeout: float | None = None) -> RpcResult:
        """:meth:`call` on a node given as object, e.g. one just removed from
        (or not yet added to) the configuration."""
        return self._call_nodes(procedure, {node.uuid: node}, args, timeout)[node.uuid]

    def _call_nodes(self, procedure: str, nodes: dict[str, Node | None],
                    args: list[Any] | tuple[Any, ...], timeout: float | None
                    ) -> dict[str, RpcResult]:
        rdef = CALLS.get(procedure)
        if rdef is None:
            raise errors.ProgrammerError(f"Unknown RPC procedure '{procedure}'")
        args = list(args)
        if len(args) != len(rdef.args):
            raise errors.ProgrammerError(
                f"RPC {procedure} takes {len(rdef.args)} arguments ({', '.join(rdef.args)}), "
                f"got {len(args)}")
        body = encode_args(procedure, args)
        tmo = timeout if timeout is not None else call_timeout(procedure, args)
        results: dict[str, RpcResult] = {}
        todo: list[tuple[str, Node]] = []
        for uuid, node in nodes.items():
            if node is None:
                results[uuid] = RpcResult(uuid, procedure, node_uuid=uuid,
                                          fail_msg=f"Node {uuid} is not in the configuration")
            elif node.offline and not rdef.offline_ok:
                results[uuid] = RpcResult(node.name, procedure, node_uuid=uuid, offline=True,
                                          fail_msg="Node is marked offline")
            else:
                todo.append((uuid, node))
        if todo:
            try:
                client = self._http()
            except (errors.CorralError, ssl.SSLError, OSError) as err:
                for uuid, node in todo:
                    results[uuid] = RpcResult(node.name, procedure, node_uuid=uuid,
                                              fail_msg=f"Cannot set up TLS for RPC: "
                                                       f"{_err_text(err)}")
                todo = []

        def one(item: tuple[str, Node]) -> RpcResult:
            uuid, node = item
            return _post(client, node.name, node.primary_ip, node.noded_port, procedure, body,
                         tmo, node_uuid=uuid)

        if todo:
            # The other nodes in the shared workers, the first in this thread.
            futures = [self._executor().submit(one, item) for item in todo[1:]]
            results[todo[0][0]] = one(todo[0])
            for (uuid, _), future in zip(todo[1:], futures):
                results[uuid] = future.result()
        return {uuid: results[uuid] for uuid in nodes}

    def call_one(self, procedure: str, node_uuid: str, args: list[Any] | tuple[Any, ...] = (),
                 timeout: float | None = None) -> RpcResult:
        """:meth:`call` on a single node."""
        return self.call(procedure, [node_uuid], args, timeout)[node_uuid]

    def _node_name(self, uuid: str) -> str:
        node = self._cfg.get_node(uuid)
        return node.name if node is not None else uuid

    def encode_instance(self, instance: Instance, hvp: dict[str, Any] | None = None,
                        bep: dict[str, Any] | None = None,
                        osp: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``instance`` argument of RPC calls (Ganeti's ``_InstDict``).

        ``Instance.to_dict()`` with hvparams/beparams/osparams filled from the
        cluster defaults and then updated with the one-off overrides
        ``hvp``/``bep``/``osp``, each NIC's ``nicparams`` filled, plus
        ``primary_node_name``, ``secondary_nodes`` (UUIDs) and
        ``secondary_node_names``.
        """
        cluster = self._cfg.get_cluster()
        data = instance.to_dict()
        data["hvparams"] = cluster.fill_hv(instance)
        data["hvparams"].update(hvp or {})
        data["beparams"] = cluster.fill_be(instance)
        data["beparams"].update(bep or {})
        data["osparams"] = cluster.fill_os(instance)
        data["osparams"].update(osp or {})
        for nic in data["nics"]:
            nic["nicparams"] = cluster.simple_fill_nic(nic.get("nicparams"))
        secondaries = instance.secondary_nodes
        data["primary_node_name"] = self._node_name(instance.primary_node)
        data["secondary_nodes"] = secondaries
        data["secondary_node_names"] = [self._node_name(u) for u in secondaries]
        return data
