"""The node daemon's HTTPS server: joined and unjoined mode on one socket.

Mirrors Ganeti's ``server/noded.py`` (``NodeRequestHandler``): in **joined
mode** every call is ``POST /<procedure>`` with a JSON array of positional
arguments, answered ``[true, payload]`` / ``[false, message]``; clients must
present a certificate signed by the cluster CA. In **unjoined mode** (no
cluster certificates on this node) noded serves only ``GET /join_info`` and
``POST /join`` (see :mod:`corral.noded.join`) with a self-signed certificate.

:class:`NodeDaemon` keeps one listening socket and runs a uvicorn server on
it per mode; after a join (or ``node_leave_cluster``) the reply is sent, the
server stops and a new one starts in the other mode on the same socket, so
no connection is refused during the switch.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import ssl
import threading
from typing import Any

import uvicorn
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from corral import crypto, errors, wirejson
from corral.noded import console, dispatch, join
from corral.noded import state as noded_state
from corral.paths import Paths

log = logging.getLogger(__name__)

ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
GRACEFUL_SHUTDOWN_S = 15
KEEP_ALIVE_S = 30


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _handle_call(paths: Paths, procedure: str,
                 body: bytes) -> tuple[int, Any, dispatch.DispatchResult | None]:
    """Parse, dispatch and encode one call: ``(http_status, content, result)``;
    content is the error text when the status is not 200."""
    try:
        args = json.loads(body) if body.strip() else []
    except ValueError as err:
        return 400, f"Request body is not JSON: {err}", None
    if not isinstance(args, list):
        return 400, "Request body must be a JSON array of arguments", None
    result = dispatch.call(paths, procedure, args)
    try:
        content = _encode_result(result)
    except (TypeError, ValueError) as err:
        log.error("%s: result cannot be encoded: %s", procedure, err)
        content = wirejson.dumps(
            [False, f"Error while encoding the result of {procedure}: {err}"])
    return 200, content, result


def _encode_result(result: dispatch.DispatchResult) -> bytes:
    """``[ok, payload]`` as JSON. Plain payloads (dicts, lists, dataclasses)
    go straight to the fast encoder (FastAPI's converter, used before, took
    twice as long as reading 5,000 instances' state); pydantic's converter
    handles models, paths, sets and other objects only it knows."""
    try:
        return wirejson.dumps([result.ok, result.payload])
    except TypeError:
        return wirejson.dumps([result.ok, to_jsonable_python(result.payload)])


def create_joined_app(paths: Paths, daemon: "NodeDaemon | None" = None) -> Starlette:
    """The RPC application: ``POST /<procedure>`` -> :func:`dispatch.call`,
    and the console WebSocket ``/console/<instance>`` (:mod:`.console`).

    Plain Starlette, not FastAPI: nothing here needs FastAPI's validation or
    documentation, and importing it cost each node daemon 11 MiB (issue 9).
    """
    async def rpc(request: Request) -> Response:
        procedure = request.path_params["procedure"]
        if daemon is not None and daemon.switching:
            return _error(503, "Node daemon is switching mode (node left the cluster)")
        if request.method != "POST":
            return _error(400, "Only POST is supported")
        if procedure not in dispatch.PROCEDURES:
            return _error(404, f"Unknown procedure '{procedure}'")
        body = await request.body()
        # Parsing, the call and encoding may be heavy (config snapshots): thread pool.
        status, content, result = await run_in_threadpool(_handle_call, paths, procedure, body)
        if status != 200:
            return _error(status, content)
        if result is not None and result.leave and daemon is not None:
            # Refuse further calls at once, also on kept-alive connections.
            daemon.switching = True
            return Response(content, media_type="application/json",
                            headers={"Connection": "close"},
                            background=BackgroundTask(daemon.left_cluster))
        return Response(content, media_type="application/json")

    app = Starlette(routes=[Route("/{procedure}", rpc, methods=ALL_METHODS)],
                    exception_handlers={404: _not_found})
    console.add_console_route(
        app, paths, lambda: "Node daemon is switching mode"
        if daemon is not None and daemon.switching else None)
    return app


def create_unjoined_app(paths: Paths, daemon: "NodeDaemon") -> Starlette:
    """The application of a node waiting to join: ``/join_info`` and ``/join`` only."""
    async def get_join_info(_request: Request) -> JSONResponse:
        return JSONResponse(join.join_info(daemon.join_token, daemon.server_fingerprint))

    async def post_join(request: Request) -> JSONResponse:
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > join.MAX_JOIN_BODY:
                return _error(413, "Join request too large")
        try:
            req = join.JoinRequest.model_validate_json(bytes(body))
        except ValidationError as err:
            return _error(400, f"Invalid join request: {err.error_count()} invalid fields")
        client = request.client.host if request.client else "?"
        if daemon.switching:
            return _error(503, "Node daemon is switching to joined mode")
        try:
            await run_in_threadpool(daemon.accept_join, req, client)
        except join.JoinRefused as err:
            return _error(403, str(err))
        except join.JoinInvalid as err:
            return _error(400, str(err))
        return JSONResponse({"joined": True, "node_name": req.node_name,
                             "cluster_name": req.cluster_name},
                            headers={"Connection": "close"},
                            background=BackgroundTask(daemon.request_mode_switch))

    async def refuse(_request: Request) -> JSONResponse:
        return _error(403, "This node has not joined a cluster: only /join_info and /join "
                           "are served")

    return Starlette(routes=[Route("/join_info", get_join_info, methods=["GET"]),
                             Route("/join", post_join, methods=["POST"]),
                             Route("/{path:path}", refuse, methods=ALL_METHODS)])


async def _not_found(_request: Request, _exc: Exception) -> JSONResponse:
    return _error(404, "Not Found")


class _Server(uvicorn.Server):
    """uvicorn server that drops idle keep-alive connections at once on
    shutdown: closing them gracefully waits (up to 30 s) for each client's
    TLS close_notify, which idle pooled clients never send."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for conn in list(self.server_state.connections):
            cycle = getattr(conn, "cycle", None)
            transport = getattr(conn, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()
        await super().shutdown(sockets)


class NodeDaemon:
    """noded on ``bind:port`` for the node whose state root is ``paths.root``.

    ``join_token`` (``"<id>.<secret>"``) is accepted for one join while the
    node is unjoined; without one the stored token (if any) is used.
    """

    def __init__(self, paths: Paths, bind: str, port: int, join_token: str | None = None) -> None:
        self.paths = paths
        self.bind = bind
        self.port = port
        self._token = join_token
        self._join_lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._stop = False
        self._switch = False
        self.server_fingerprint = ""
        self.mode = ""
        self.switching = False   # set between a join/leave reply and the new server

    # -- state shared with the request handlers ---------------------------------------
    @property
    def join_token(self) -> str | None:
        return self._token

    def accept_join(self, req: join.JoinRequest, client: str) -> None:
        """Check and install a join request (thread pool). Raises
        :class:`join.JoinRefused` / :class:`join.JoinInvalid`."""
        with self._join_lock:
            try:
                join.check_join(req, self._token, self.server_fingerprint)
            except join.JoinRefused:
                log.warning("join request from %s refused (wrong or missing token/proof)",
                            client)
                raise
            join.validate_join(req)
            previous = noded_state.NodedState(join_token=self._token)
            try:
                join.apply_join(self.paths, req)
            except (OSError, errors.CorralError) as err:
                log.error("join from %s: cannot install the cluster files: %s", client, err)
                # Stay unjoined with the token, so the master can try again.
                crypto.remove_node_certs(self.paths)
                noded_state.save_state(self.paths, previous)
                raise join.JoinInvalid(f"Cannot install the cluster files: {err}") from None
            self._token = None  # one-time
            self.switching = True
            log.info("joined cluster %s as node %s (request from %s)", req.cluster_name,
                     req.node_name, client)

    def left_cluster(self) -> None:
        """After ``node_leave_cluster`` replied: forget any token, go unjoined."""
        self._token = None
        self.request_mode_switch()

    def request_mode_switch(self) -> None:
        """Stop the current server; :meth:`run` starts the one of the new mode."""
        self._switch = True
        if self._server is not None:
            self._server.should_exit = True

    def stop(self, *_: Any) -> None:
        """Stop serving (signal handler safe)."""
        self._stop = True
        if self._server is not None:
            self._server.should_exit = True

    # -- serving ------------------------------------------------------------------------
    def bind_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        # proto given explicitly: asyncio sets TCP_NODELAY only when proto is IPPROTO_TCP
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.bind, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(False)
        return sock

    def _joined_setup(self) -> tuple[Starlette, ssl.SSLContext]:
        cert = crypto.node_server_cert_path(self.paths)
        ctx = crypto.server_ssl_context(cert, crypto.load_ca_cert_pem(self.paths))
        self.server_fingerprint = crypto.fingerprint(cert.read_text(encoding="ascii"))
        return create_joined_app(self.paths, self), ctx

    def _unjoined_setup(self) -> tuple[Starlette, ssl.SSLContext]:
        if self._token is None:
            try:
                self._token = noded_state.load_state(self.paths).join_token
            except errors.ConfigurationError as err:
                log.error("%s; ignoring the stored join token", err)
        if self._token is not None:
            crypto.parse_join_token(self._token)
        pem = crypto.create_self_signed(f"corral-noded-{self.bind}")
        path = crypto.unjoined_cert_path(self.paths)
        crypto.write_pem(path, pem)
        self.server_fingerprint = crypto.fingerprint(pem)
        return create_unjoined_app(self.paths, self), crypto.server_ssl_context(path, None)

    def _config(self, app: Starlette, ctx: ssl.SSLContext) -> uvicorn.Config:
        # WebSockets (consoles) only in joined mode, where clients must present
        # a cluster certificate. "websockets-sansio": the websockets package's
        # maintained API (the "websockets" choice uses its deprecated one).
        ws = "websockets-sansio" if self.mode == "joined" else "none"
        return uvicorn.Config(
            app, host=self.bind, port=self.port, http="h11", ws=ws, lifespan="off",
            ws_max_size=console.MAX_WS_MESSAGE,
            log_config=None, access_log=True, proxy_headers=False, server_header=False,
            timeout_keep_alive=KEEP_ALIVE_S, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            ssl_context_factory=lambda _config, _default: ctx)

    def run(self, sock: socket.socket | None = None) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT, handled by uvicorn and
        re-raised to our handler). Raises ``OSError`` if the address is taken,
        :class:`errors.CorralError` for unusable certificates."""
        own_sock = sock is None
        if sock is None:
            sock = self.bind_socket()
        try:
            while not self._stop:
                joined = crypto.node_certs_present(self.paths)
                app, ctx = self._joined_setup() if joined else self._unjoined_setup()
                self.mode = "joined" if joined else "unjoined"
                server = _Server(self._config(app, ctx))
                self._switch = False
                self.switching = False
                self._server = server
                if self._stop:
                    break
                log.info("noded serving in %s mode on https://%s:%d%s", self.mode, self.bind,
                         self.port,
                         "" if joined else f" (join token: {'yes' if self._token else 'no'})")
                server.run(sockets=[sock.dup()])
                self._server = None
                if not self._switch:
                    break
        finally:
            if own_sock:
                sock.close()
        log.info("noded stopped")


def install_signal_handlers(daemon: NodeDaemon) -> None:
    """SIGTERM/SIGINT stop the daemon cleanly (also between two servers)."""
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
