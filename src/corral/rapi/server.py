"""The RAPI v2 application: URI map, authentication, body parsing, errors.

Mirrors ``ganeti.rapi.connector`` (the URI map) and
``ganeti.server.rapi.RemoteApiHandler`` (request processing). Order of
checks per request, as in Ganeti: unknown URI 404, method without handler
501, authentication/authorisation 400/401/403, body content type 415, body
JSON 400, forbidden parameters 403, then the handler. Every answer is JSON;
errors are ``{"code", "message", "explain"}``.

The RAPI daemon (:mod:`corral.rapi.main`) serves the app over HTTPS (port
5080); handlers call its :class:`corral.rapi.readmaster.RapiMaster` (or any
object with :class:`corral.masterd.master.Master`'s methods) from a thread
pool, after the master's ``refresh()`` when it has one.
"""

from __future__ import annotations

import contextlib
import http
import json
import logging
import re
import threading
import time
from collections import deque
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

from anyio import CapacityLimiter, to_thread
from starlette.requests import Request
from starlette.responses import Response

from corral import strictjson, wirejson
from corral.paths import Paths
from corral.rapi import groups as rg
from corral.rapi import instances as ri
from corral.rapi import networks as rnet
from corral.rapi import nodes as rn
from corral.rapi import resources as rr
from corral.rapi.auth import HttpError, check_access
from corral.rapi.base import POOL_READ, POOL_WAIT, POOL_WRITE, RequestContext, Resource, map_error
from corral.rapi.users import User, UsersFile

log = logging.getLogger(__name__)
# The RAPI access log (one line per request) in masterd.log; uvicorn's own
# access log would repeat it without the user: corral.daemon_log keeps it at
# WARNING.
access_log = logging.getLogger("corral.rapi.access")
ACCESS_FORMAT = "%s %s \"%s %s\" %d %.1fms"

_NAME = r"[\w\._-]+"
# ASCII digits only (``\d`` would match other scripts' digits too).
_DISK = r"[0-9]+"
_JOB = r"[0-9]+"
_UUID = r"[A-Za-z0-9-]{1,64}"
_QUERY_RES = "|".join(re.escape(r) for r in rr.QR_VIA_RAPI)

# connector.GetHandlers: (regexp, handler class); names match [\w._-]+.
URI_MAP: list[tuple[re.Pattern[str], type[Resource]]] = [
    (re.compile(p), cls) for p, cls in [
        (r"^/$", rr.R_root),
        (r"^/2$", rr.R_2),
        (r"^/version$", rr.R_version),
        (r"^/2/info$", rr.R_2_info),
        (r"^/2/features$", rr.R_2_features),
        (r"^/2/os$", rr.R_2_os),
        (r"^/2/modify$", rr.R_2_cluster_modify),
        (r"^/2/redistribute-config$", rr.R_2_redist_config),
        (r"^/2/tags$", rr.R_2_tags),
        (r"^/2/nodes$", rn.R_2_nodes),
        (rf"^/2/nodes/({_NAME})$", rn.R_2_nodes_name),
        (rf"^/2/nodes/({_NAME})/role$", rn.R_2_nodes_name_role),
        (rf"^/2/nodes/({_NAME})/modify$", rn.R_2_nodes_name_modify),
        (rf"^/2/nodes/({_NAME})/evacuate$", rn.R_2_nodes_name_evacuate),
        (rf"^/2/nodes/({_NAME})/migrate$", rn.R_2_nodes_name_migrate),
        (rf"^/2/nodes/({_NAME})/storage$", rn.R_2_nodes_name_storage),
        (rf"^/2/nodes/({_NAME})/tags$", rn.R_2_nodes_name_tags),
        *rg.group_uris(_NAME),
        (r"^/2/instances$", ri.R_2_instances),
        (r"^/2/instances-multi-alloc$", ri.R_2_instances_multi_alloc),
        (rf"^/2/instances/({_NAME})$", ri.R_2_instances_name),
        (rf"^/2/instances/({_NAME})/info$", ri.R_2_instances_name_info),
        (rf"^/2/instances/({_NAME})/reboot$", ri.R_2_instances_name_reboot),
        (rf"^/2/instances/({_NAME})/startup$", ri.R_2_instances_name_startup),
        (rf"^/2/instances/({_NAME})/shutdown$", ri.R_2_instances_name_shutdown),
        (rf"^/2/instances/({_NAME})/reinstall$", ri.R_2_instances_name_reinstall),
        (rf"^/2/instances/({_NAME})/rename$", ri.R_2_instances_name_rename),
        (rf"^/2/instances/({_NAME})/modify$", ri.R_2_instances_name_modify),
        (rf"^/2/instances/({_NAME})/activate-disks$",
         ri.R_2_instances_name_activate_disks),
        (rf"^/2/instances/({_NAME})/deactivate-disks$",
         ri.R_2_instances_name_deactivate_disks),
        (rf"^/2/instances/({_NAME})/disk/({_DISK})/grow$",
         ri.R_2_instances_name_disk_grow),
        (rf"^/2/instances/({_NAME})/console$", ri.R_2_instances_name_console),
        (rf"^/2/instances/({_NAME})/prepare-export$",
         ri.R_2_instances_name_prepare_export),
        (rf"^/2/instances/({_NAME})/export$", ri.R_2_instances_name_export),
        (rf"^/2/instances/({_NAME})/migrate$", ri.R_2_instances_name_migrate),
        (rf"^/2/instances/({_NAME})/failover$", ri.R_2_instances_name_failover),
        (rf"^/2/instances/({_NAME})/recreate-disks$",
         ri.R_2_instances_name_recreate_disks),
        (rf"^/2/instances/({_NAME})/tags$", ri.R_2_instances_name_tags),
        (r"^/2/filters$", rr.R_2_filters),
        (rf"^/2/filters/({_UUID})$", rr.R_2_filters_uuid),
        (r"^/2/jobs$", rr.R_2_jobs),
        (rf"^/2/jobs/({_JOB})$", rr.R_2_jobs_id),
        (rf"^/2/jobs/({_JOB})/wait$", rr.R_2_jobs_id_wait),
        (rf"^/2/query/({_QUERY_RES})$", rr.R_2_query),
        (rf"^/2/query/({_QUERY_RES})/fields$", rr.R_2_query_fields),
    ]
]
# Networks: routes declared in their own module.
URI_MAP += [(re.compile(p), cls) for p, cls in rnet.ROUTES]

HTTP_APP_JSON = "application/json"
# Worker threads per kind of request (see Limiters and Resource.pool).
POOL_SIZES = {POOL_READ: 8, POOL_WRITE: 16, POOL_WAIT: 64}
# Largest request body accepted (bytes, 413 beyond): Ganeti clients send at
# most a few KiB (a multi-instance allocation).
MAX_BODY_SIZE = 1024 * 1024
# Longest query string and most query arguments accepted (400 beyond).
MAX_QUERY_LENGTH = 16 * 1024
MAX_QUERY_FIELDS = 100


def resolve(path: str) -> tuple[type[Resource], tuple[str, ...]] | None:
    """The handler class and URI groups of ``path``, None if unknown."""
    for pattern, cls in URI_MAP:
        m = pattern.match(path)
        if m:
            return cls, m.groups()
    return None


def error_response(err: HttpError) -> Response:
    """``{"code", "message", "explain"}`` with the error's status and headers."""
    try:
        status = http.HTTPStatus(err.code)
        phrase, explain = status.phrase, status.description
    except ValueError:
        phrase, explain = "Error", ""
    body = {"code": err.code, "message": err.message or phrase, "explain": explain}
    return Response(json.dumps(body), status_code=err.code, media_type=HTTP_APP_JSON,
                    headers=err.headers)


def _json_response(value: Any) -> Response:
    # wirejson: a bulk GET of 10,000 instances encodes 6x faster than with json.
    return Response(wirejson.dumps(value), status_code=200, media_type=HTTP_APP_JSON)


def _run_handler(fn: Any, resource: Resource, refresh: Any) -> Response:
    """Run a handler and encode its answer (in a worker thread: big lists
    must not be encoded on the event loop). ``refresh`` (or None) first
    brings the master's view of the configuration up to date, so a request
    sees every commit made before it arrived."""
    if refresh is not None:
        refresh()
    return _json_response(fn(resource))


class Limiters:
    """One thread limiter per kind of work (:data:`POOL_SIZES`), so reads
    never wait for threads held by writes (job submission commits to the
    queue's SQLite) or by long waits (``/2/jobs/ID/wait``, ``/2/os``, the
    console), and none of them waits for the client API's threads.
    Created on first use: anyio limiters belong to the running event loop."""

    def __init__(self) -> None:
        self._limiters: dict[str, CapacityLimiter] = {}

    def get(self, pool: str) -> CapacityLimiter:
        limiter = self._limiters.get(pool)
        if limiter is None:
            limiter = self._limiters[pool] = CapacityLimiter(POOL_SIZES[pool])
        return limiter


class AccessLogWriter:
    """Writes the access log from a thread, in batches: a request only
    appends a tuple (formatting a log record and writing and flushing a
    file per request cost a tenth of the RAPI process's time). Lines go
    to ``handlers`` (the root logger's: the daemon's log file) through
    :data:`access_log`'s records, formatted as every other line; each
    batch is written and flushed once per handler. :meth:`stop` writes what
    is left."""

    # Seconds between two batches.
    INTERVAL = 0.2

    def __init__(self, handlers: list[logging.Handler]) -> None:
        self.handlers = handlers
        self._entries: deque[tuple[float, tuple[Any, ...]]] = deque()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rapi-access-log",
                                        daemon=True)
        self._thread.start()

    def add(self, args: tuple[Any, ...]) -> None:
        """Queue one line: the arguments of :data:`ACCESS_FORMAT`."""
        self._entries.append((time.time(), args))

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._flush()

    def _run(self) -> None:
        while not self._stopping.wait(self.INTERVAL):
            self._flush()

    def _flush(self) -> None:
        records = []
        while self._entries:
            created, args = self._entries.popleft()
            record = access_log.makeRecord(access_log.name, logging.INFO, __file__, 0,
                                           ACCESS_FORMAT, args, None)
            record.created = created
            record.msecs = (created - int(created)) * 1000
            records.append(record)
        if not records:
            return
        for handler in self.handlers:
            stream = getattr(handler, "stream", None)
            if stream is None:          # not a file: record by record
                for record in records:
                    handler.handle(record)
                continue
            text = "".join(handler.format(r) + "\n" for r in records)
            with handler.lock or contextlib.nullcontext():
                stream.write(text)
                stream.flush()


def start_access_log_writer() -> AccessLogWriter | None:
    """Hand access-log lines to a writer thread (see :class:`AccessLogWriter`)
    using the root logger's handlers. Returns the writer to stop at
    shutdown, None when the root logger has no handlers (lines then go
    through :data:`access_log` as usual)."""
    root = logging.getLogger()
    if not root.handlers:
        return None
    return AccessLogWriter(list(root.handlers))


def stop_access_log_writer(writer: AccessLogWriter | None) -> None:
    """Write what is queued and stop the writer."""
    if writer is not None:
        writer.stop()


def log_access(writer: AccessLogWriter | None, request: Request, path: str,
               user: User | None, status: int, seconds: float) -> None:
    """One access-log line per request: client, user, method, path (no query
    string, no body: either may carry data that does not belong in a log),
    status and time taken."""
    client = request.client.host if request.client else "-"
    args = (client, user.name if user is not None else "-", request.method, path, status,
            seconds * 1000)
    if writer is not None:
        writer.add(args)
    else:
        access_log.info(ACCESS_FORMAT, *args)


def parse_body(content_type: str | None, raw: bytes) -> Any:
    """The JSON body (None when empty); 415 for a non-JSON content type.

    Like Ganeti, a body without a Content-Type is taken as JSON; media type
    parameters (``; charset=utf-8``) are ignored. The JSON must be strict
    (:mod:`corral.strictjson`: no NaN/Infinity, 64-bit integers, nesting
    limit); anything else is 400.
    """
    if not raw:
        return None
    media = (content_type or HTTP_APP_JSON).split(";", 1)[0].strip().lower()
    if media != HTTP_APP_JSON:
        raise HttpError(415)
    try:
        return strictjson.loads(raw)
    except strictjson.StrictJsonError as exc:
        raise HttpError(400, f"Unable to parse JSON data: {exc}") from None


def parse_query(query: str) -> dict[str, list[str]]:
    """Query arguments (``parse_qs``: repeated keys become lists, blank values
    are dropped); 400 for non-UTF-8 escapes or more than
    :data:`MAX_QUERY_FIELDS` arguments."""
    if len(query) > MAX_QUERY_LENGTH:
        raise HttpError(400, "Query string too long")
    try:
        parsed = parse_qs(query, errors="strict", max_num_fields=MAX_QUERY_FIELDS)
    except UnicodeDecodeError:
        raise HttpError(400, "Query string is not UTF-8") from None
    except ValueError:
        raise HttpError(400, f"More than {MAX_QUERY_FIELDS} query arguments") from None
    return {k: v for k, v in parsed.items() if v}


async def read_body(request: Request) -> bytes:
    """The raw body, 413 beyond :data:`MAX_BODY_SIZE` bytes (checked on the
    announced length first, then while reading, so a client cannot make the
    daemon buffer more)."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or len(length) > 12):
        raise HttpError(400, "Invalid Content-Length")
    if length is not None and int(length) > MAX_BODY_SIZE:
        raise HttpError(413, f"Request body larger than {MAX_BODY_SIZE} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_SIZE:
            raise HttpError(413, f"Request body larger than {MAX_BODY_SIZE} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class RapiApp:
    """The RAPI as a plain ASGI application: one dispatcher behind no
    framework middleware (every request goes to :meth:`dispatch`; the
    framework's routing and middleware stack cost more per request than
    most handlers). ``state.master`` and ``state.users`` are what it serves.
    """

    def __init__(self, master: Any, paths: Paths, require_authentication: bool) -> None:
        self.state = SimpleNamespace(master=master, users=UsersFile(paths.rapi_users))
        self.require_authentication = require_authentication
        self.limiters = Limiters()
        self._refresh = getattr(master, "refresh", None)
        self._writer: AccessLogWriter | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            response = await self.dispatch(request)
            await response(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._writer = start_access_log_writer()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                stop_access_log_writer(self._writer)
                self._writer = None
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def dispatch(self, request: Request) -> Response:
        """Answer one request (the order of checks is the module docstring's)."""
        start = time.monotonic()
        # From the ASGI scope: Request.url rebuilds and reparses the whole URL.
        path = request.scope["path"]
        method = request.method.upper()
        user: User | None = None
        try:
            found = resolve(path)
            if found is None:
                raise HttpError(404)
            cls, items = found
            fn = cls.handler(method)
            if fn is None:
                raise HttpError(501, f"Method {method} is unsupported for path {path}")
            limiter = self.limiters.get(cls.pool(method))
            users = self.state.users
            authorization = request.headers.get("authorization")
            if authorization:       # reads the users file, hashes: in a thread
                user = await to_thread.run_sync(
                    check_access, users, authorization, cls.access(method),
                    self.require_authentication, limiter=limiter)
            else:                   # no I/O: decided right here
                check_access(users, None, cls.access(method), self.require_authentication)
            body = parse_body(request.headers.get("content-type"), await read_body(request))
            queryargs = parse_query(request.scope["query_string"].decode("latin-1"))
            ctx = RequestContext(master=self.state.master, method=method, path=path,
                                 items=items, queryargs=queryargs, body=body, user=user)
            resource = cls(ctx)
            resource.check_forbidden()
            response = await to_thread.run_sync(_run_handler, fn, resource, self._refresh,
                                                limiter=limiter)
        except Exception as exc:  # noqa: BLE001 - every error becomes an HTTP answer
            err = map_error(exc)
            if err.code >= 500 and err.code != 501:
                log.warning("RAPI %s %s failed: %s %s", method, path, err.code, err.message)
            response = error_response(err)
        log_access(self._writer, request, path, user, response.status_code,
                   time.monotonic() - start)
        return response


def create_app(master: Any, paths: Paths, require_authentication: bool = False) -> RapiApp:
    """The RAPI v2 ASGI application.

    ``master`` is a :class:`corral.masterd.master.Master` (or anything with
    its methods); users come from ``paths.rapi_users`` (re-read when it
    changes). With ``require_authentication`` every request needs a valid
    user (Ganeti's ``--require-authentication``).
    """
    return RapiApp(master, paths, require_authentication)
