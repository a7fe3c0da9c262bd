"""The master as the RAPI daemon sees it: reads served here, writes by masterd.

Mirrors Ganeti's split of ``ganeti-rapi`` (HTTP, authentication) from the
daemons that own the configuration and the job queue. :class:`RapiMaster`
is a :class:`corral.masterd.master.Master` over a read-only context, so every
query runs the very code masterd runs:

* the configuration is a :class:`corral.config.view.ConfigView` of the
  master's SQLite file, refreshed before each request (:meth:`RapiMaster.refresh`);
* jobs are read from the job queue's SQLite file (:class:`JobView`): every
  state change of a job is stored before masterd reports it, so a job shown
  as ``success`` here has its configuration changes committed already, and
  the next request's refresh sees them (read-your-writes);
* live data comes through this process's own node RPC runner and
  :class:`corral.masterd.livecache.LiveDataCache`.

Job submission, cancel, waiting for a job and lock queries go to masterd's
client API (:class:`corral.masterd.client.MasterClient`, the CLI's path), so
masterd validates every opcode again before any lock is taken.
"""

from __future__ import annotations

from typing import Any

from corral import errors
from corral.config.view import ConfigView
from corral.jobs.model import J_FIELDS, check_fields
from corral.jobs.store import JobStore
from corral.masterd.client import MasterClient
from corral.masterd.context import MasterContext
from corral.masterd.master import QR_LOCK, Master
from corral.paths import Paths
from corral.rpc import RpcRunner

# Seconds a forwarded call may take (job submission waits for the queue's
# fsync; WaitForJobChange adds its own wait to this).
FORWARD_TIMEOUT = 60.0


class JobView:
    """Read-only queries of the job queue database (``QueryJobs``, job info).

    Raises like :meth:`corral.jobs.JobQueue.query_jobs` (``OpPrereqError``
    for unknown fields).
    """

    def __init__(self, path: Any) -> None:
        self._store = JobStore(path)

    def query_jobs(self, ids: list[int] | None, fields: list[str],
                   archived: bool = False) -> list[list[Any] | None]:
        """Values of ``fields`` per job; ``None`` for unknown ids; all
        (unarchived unless ``archived``) jobs when ``ids`` is None."""
        check_fields(fields)
        if ids is None:
            ids = self._store.job_ids(include_archived=archived)
            if all(f == "id" for f in fields):  # the job list: nothing to load
                return [[i] * len(fields) for i in ids]
        jobs = self._store.load_jobs([int(i) for i in ids], with_log="oplog" in fields)
        return [jobs[i].get_info(fields) if i in jobs else None for i in ids]

    def get_job_info(self, job_id: int) -> dict[str, Any] | None:
        """RAPI's ``J_FIELDS`` of one job, ``None`` if unknown."""
        (row,) = self.query_jobs([job_id], list(J_FIELDS))
        return None if row is None else dict(zip(J_FIELDS, row))

    def is_drained(self) -> bool:
        return self._store.get_meta("drained") == "1"

    def close(self) -> None:
        self._store.close()


class RapiMaster(Master):
    """:class:`Master` of the RAPI daemon for the master node at ``paths``.

    Raises ``ConfigurationError`` if the configuration cannot be loaded.
    Forwarded calls raise what masterd raised; an unreachable masterd is a
    ``ConnectionError`` (RAPI answers 502).
    """

    def __init__(self, paths: Paths, timeout: float = FORWARD_TIMEOUT) -> None:
        cfg = ConfigView.open(paths.config_db)
        context = MasterContext(paths=paths, cfg=cfg, rpc=RpcRunner(cfg, paths),
                                glm=None)  # type: ignore[arg-type]  # locks: masterd's
        context.queue = JobView(paths.queue_db)  # type: ignore[assignment]
        super().__init__(context)
        self._client = MasterClient(paths, timeout=timeout)

    def refresh(self) -> None:
        """Catch up with the configuration committed by masterd."""
        self.cfg.refresh()

    def close(self) -> None:
        self.context.rpc.close()
        self.context.queue.close()  # type: ignore[union-attr]
        self.cfg.close()

    def _forward(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(*args, **kwargs)
        except errors.CorralError as err:
            if isinstance(err.__cause__, OSError):
                raise ConnectionError(f"master daemon not answering: {err.__cause__}") \
                    from err
            raise

    # -- masterd's: jobs and locks ---------------------------------------------------
    def submit_job(self, ops: list[dict[str, Any]]) -> int:
        return int(self._forward("submit_job", ops))

    def submit_many(self, jobs: list[list[dict[str, Any]]]) -> list[tuple[bool, int | str]]:
        return [tuple(r) for r in self._forward("submit_many", jobs)]  # type: ignore[misc]

    def wait_for_job_change(self, job_id: int, fields: list[str], prev_job_info: Any,
                            prev_log_serial: int | None, timeout: float
                            ) -> str | tuple[list[Any], list[Any]]:
        result = self._forward("wait_for_job_change", job_id, fields, prev_job_info,
                               prev_log_serial, timeout)
        return result if result == "nochange" or result is None else tuple(result)

    def cancel_job(self, job_id: int, kill: bool = False) -> tuple[bool, str]:
        ok, msg = self._forward("cancel_job", job_id, kill)
        return bool(ok), msg

    def archive_job(self, job_id: int) -> bool:
        return bool(self._forward("archive_job", job_id))

    def auto_archive(self, age: int, timeout: float) -> tuple[int, int]:
        archived, remaining = self._forward("auto_archive", age, timeout)
        return archived, remaining

    def change_job_priority(self, job_id: int, priority: int) -> tuple[bool, str]:
        ok, msg = self._forward("change_job_priority", job_id, priority)
        return bool(ok), msg

    def set_drain_flag(self, flag: bool) -> bool:
        return bool(self._forward("set_drain_flag", flag))

    def create_join_token(self, ttl: int = 3600) -> str:
        return str(self._forward("create_join_token", ttl))

    # Job filter rules (LUXI ReplaceFilter/DeleteFilter): masterd's queue applies them.
    def replace_filter(self, uuid: str | None, priority: Any, predicates: Any, action: Any,
                       reason: Any) -> str:
        return str(self._forward("call", "ReplaceFilter", uuid, priority, predicates, action,
                                 reason))

    def delete_filter(self, uuid: str) -> None:
        self._forward("call", "DeleteFilter", uuid)

    def query(self, what: str, fields: list[str], qfilter: Any = None) -> dict[str, Any]:
        """As :meth:`Master.query`; locks are masterd's, so asked there."""
        if what == QR_LOCK:
            return self._forward("query", what, fields, qfilter)
        return super().query(what, fields, qfilter)
