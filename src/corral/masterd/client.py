"""Client of masterd's unix-socket API: the LUXI methods in snake_case.

Mirrors ``ganeti.luxi.Client`` (and ``cli.PollJob`` in :meth:`MasterClient.wait_job`):
each call is one ``POST /luxi/<Method>`` over the socket, on a connection of
its own (so one client serves several threads); a failed reply is re-raised
as the original :mod:`corral.errors` class. Only the standard library's
``http.client``: the command-line tools start without loading an HTTP stack.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable
from typing import Any, Self

from corral import constants as C
from corral import errors, wirejson
from corral.paths import ENV_ROOT, Paths

DEFAULT_TIMEOUT = 60.0          # seconds, for one request
CONNECT_TIMEOUT = 10.0
# Seconds one WaitForJobChange waits on the server (capped there at 30 s).
WAIT_CHUNK = 20.0

# ``feedback_fn`` of :meth:`MasterClient.wait_job` receives one job log entry
# as Ganeti's ``cli.PollJob`` does: ``(timestamp, log_type, message)`` where
# timestamp is ``[seconds, microseconds]``.
FeedbackFn = Callable[[tuple[Any, str, Any]], None]


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over masterd's unix socket: connects within ``CONNECT_TIMEOUT``,
    then waits up to ``timeout`` seconds for each read."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("corral-master", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(min(CONNECT_TIMEOUT, self.timeout))
            sock.connect(self.socket_path)
            sock.settimeout(self.timeout)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class MasterClient:
    """Talks to the master daemon of the node whose state root is ``paths.root``.

    Raises :class:`errors.CorralError` (ECODE_ENVIRON) "Cannot communicate
    with the master daemon at <socket>: <reason>. ..." (naming the state root
    and ``CORRAL_ROOT``) when the daemon is not reachable; every error the
    daemon reports is re-raised as its class.
    """

    def __init__(self, paths: Paths, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.paths = paths
        self.socket_path = paths.master_socket
        self.timeout = timeout

    def close(self) -> None:
        """Nothing to release: every call closes its own connection."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------
    def _unreachable(self, reason: str) -> errors.CorralError:
        """The error for a master daemon that cannot be reached, saying where
        the client looked and why there (the socket below the state root)."""
        return errors.CorralError(
            f"Cannot communicate with the master daemon at {self.socket_path}: {reason}. "
            f"The command line finds the master daemon through this socket below the "
            f"state root {self.paths.root} (from --root, else ${ENV_ROOT}, else /): "
            f"{ENV_ROOT} must name the state root of the master node (in a dev cluster, "
            f"its master node's directory), where corral-masterd must be running",
            errors.ECODE_ENVIRON)

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call LUXI ``method`` with positional ``args``; returns its result.

        ``timeout`` (seconds) overrides the client's read timeout for this call.
        """
        body = json.dumps({"args": list(args)}).encode("utf-8")
        conn = _UnixHTTPConnection(str(self.socket_path),
                                   timeout if timeout is not None else self.timeout)
        try:
            conn.request("POST", f"/luxi/{method}", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            status, data = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(str(exc) or type(exc).__name__) from exc
        finally:
            conn.close()
        try:
            reply = wirejson.loads(data)
            success, result = reply["success"], reply["result"]
        except (ValueError, KeyError, TypeError):
            raise errors.CorralError(
                f"Invalid reply from the master daemon (HTTP {status}): "
                f"{data[:200].decode('utf-8', 'replace')!r}", errors.ECODE_ENVIRON) from None
        if not success:
            raise errors.decode_exception(result)
        return result

    # -- jobs -----------------------------------------------------------------------
    def submit_job(self, ops: list[dict[str, Any]]) -> int:
        return int(self.call("SubmitJob", ops))

    def submit_many(self, jobs: list[list[dict[str, Any]]]) -> list[list[Any]]:
        return self.call("SubmitManyJobs", jobs)

    def wait_for_job_change(self, job_id: int, fields: list[str], prev_job_info: Any,
                            prev_log_serial: int | None, timeout: float = WAIT_CHUNK
                            ) -> str | list[Any]:
        """``"nochange"`` or ``[job_info, log_entries]`` (waits at most ~``timeout`` s)."""
        return self.call("WaitForJobChange", job_id, fields, prev_job_info,
                         prev_log_serial, timeout, timeout=timeout + self.timeout)

    def cancel_job(self, job_id: int, kill: bool = False) -> list[Any]:
        return self.call("CancelJob", job_id, kill)

    def archive_job(self, job_id: int) -> bool:
        return self.call("ArchiveJob", job_id)

    def auto_archive(self, age: int, timeout: float) -> list[int]:
        return self.call("AutoArchiveJobs", age, timeout, timeout=timeout + self.timeout)

    def change_job_priority(self, job_id: int, priority: int) -> list[Any]:
        return self.call("ChangeJobPriority", job_id, priority)

    def set_drain_flag(self, flag: bool) -> bool:
        return self.call("SetDrainFlag", flag)

    def query_jobs(self, job_ids: list[int] | None, fields: list[str],
                   archived: bool = False) -> list[list[Any] | None]:
        return self.call("QueryJobs", job_ids, fields, archived)

    # -- queries ------------------------------------------------------------------
    def query(self, what: str, fields: list[str], qfilter: Any = None) -> dict[str, Any]:
        return self.call("Query", what, fields, qfilter)

    def query_fields(self, what: str, fields: list[str] | None = None) -> dict[str, Any]:
        return self.call("QueryFields", what, fields)

    def query_instances(self, names: list[str] | None, fields: list[str],
                        use_locking: bool = False) -> list[list[Any]]:
        return self.call("QueryInstances", names, fields, use_locking)

    def query_nodes(self, names: list[str] | None, fields: list[str],
                    use_locking: bool = False) -> list[list[Any]]:
        return self.call("QueryNodes", names, fields, use_locking)

    def query_groups(self, names: list[str] | None, fields: list[str],
                     use_locking: bool = False) -> list[list[Any]]:
        return self.call("QueryGroups", names, fields, use_locking)

    def query_cluster_info(self) -> dict[str, Any]:
        return self.call("QueryClusterInfo")

    def query_config_values(self, fields: list[str]) -> list[Any]:
        return self.call("QueryConfigValues", fields)

    def query_tags(self, kind: str, name: str | None) -> list[str]:
        return self.call("QueryTags", kind, name)

    def query_filters(self, uuids: list[str] | None, fields: list[str]) -> list[list[Any]]:
        return self.call("QueryFilters", uuids, fields)

    def replace_filter(self, uuid: str | None, priority: Any, predicates: Any, action: Any,
                       reason: Any) -> str:
        return self.call("ReplaceFilter", uuid, priority, predicates, action, reason)

    def delete_filter(self, uuid: str) -> None:
        return self.call("DeleteFilter", uuid)

    def create_join_token(self, ttl: int = 3600) -> str:
        return self.call("CreateJoinToken", ttl)

    # -- polling a job ------------------------------------------------------------
    def wait_job(self, job_id: int, feedback_fn: FeedbackFn | None = None,
                 timeout: float | None = None) -> list[Any]:
        """Wait for a job to finish, reporting its log as it arrives.

        Each new log entry is passed to ``feedback_fn`` as ``(timestamp,
        log_type, message)``. Returns the list of opcode results when the job
        succeeded; raises the decoded error of the first failed opcode,
        :class:`errors.OpExecError` "Job was canceled" for a canceled job, or
        :class:`errors.JobQueueError` (ECODE_NOENT) for an unknown job.
        ``timeout`` (seconds, default unlimited) bounds the whole wait
        (``errors.OpExecError`` when it expires).
        Mirrors ``ganeti.cli.PollJob``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        prev_info: Any = None
        prev_serial: int | None = None
        while True:
            chunk = WAIT_CHUNK
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.OpExecError(f"Timeout while waiting for job {job_id}")
                chunk = min(chunk, left)
            change = self.wait_for_job_change(job_id, ["status"], prev_info, prev_serial,
                                              chunk)
            if change is None:
                raise errors.JobQueueError(f"Job {job_id} not found", errors.ECODE_NOENT)
            if change == "nochange":
                continue
            job_info, log_entries = change
            for serial, timestamp, log_type, message in log_entries or ():
                if feedback_fn is not None:
                    feedback_fn((timestamp, log_type, message))
                if prev_serial is None or serial > prev_serial:
                    prev_serial = serial
            prev_info = job_info
            if job_info and job_info[0] in C.JOBS_FINALIZED:
                break
        return self._job_result(job_id)

    def _job_result(self, job_id: int) -> list[Any]:
        rows = self.query_jobs([job_id], ["status", "opstatus", "opresult"])
        if not rows or rows[0] is None:
            raise errors.JobQueueError(f"Job {job_id} not found", errors.ECODE_NOENT)
        status, opstatus, opresult = rows[0]
        if status == C.JOB_STATUS_SUCCESS:
            return opresult
        if status in (C.JOB_STATUS_CANCELING, C.JOB_STATUS_CANCELED):
            raise errors.OpExecError("Job was canceled")
        for idx, (op_status, result) in enumerate(zip(opstatus, opresult)):
            if op_status == C.OP_STATUS_SUCCESS:
                continue
            if op_status == C.OP_STATUS_ERROR and result is not None:
                err = errors.decode_exception(result)
                if isinstance(err, errors.RemoteError) and not err.message:
                    break
                raise err
            raise errors.OpExecError(f"Opcode {idx} of job {job_id} has status "
                                     f"'{op_status}'")
        raise errors.OpExecError(f"Job {job_id} failed: {opresult!r}")
