"""RAPI resources of the cluster, tags, OS list, jobs and generic queries.

Mirrors the corresponding ``R_*`` classes of ``ganeti.rapi.rlib2``; node and
instance resources are in :mod:`corral.rapi.nodes` and
:mod:`corral.rapi.instances`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from corral import constants as C
from corral.rapi import RAPI_ACCESS_READ, RAPI_ACCESS_WRITE
from corral.rapi.auth import HttpError
from corral.rapi.base import (
    OS_DIAGNOSE_TIMEOUT,
    WFJC_TIMEOUT,
    Resource,
    bounded_int,
    build_uri_list,
    check_type,
    poll_job,
    query_dicts,
)
from corral.ipolicy import rapi_ipolicy
from corral.values import os_names

# rlib2.ALL_FEATURES
FEATURES = ["instance-create-reqv1", "instance-reinstall-reqv1", "node-migrate-reqv1",
            "node-evac-res1"]

J_FIELDS_BULK = ["id", "ops", "status", "summary", "opstatus", "received_ts", "start_ts",
                 "end_ts"]
J_FIELDS = J_FIELDS_BULK + ["oplog", "opresult"]

# constants.QR_VIA_RAPI
QR_VIA_RAPI = ("group", "export", "instance", "job", "lock", "network", "node", "filter")


class R_root(Resource):
    NAME = "root"

    def GET(self) -> None:
        return None


class R_2(R_root):
    NAME = "2"


class R_version(Resource):
    NAME = "version"

    def GET(self) -> int:
        return C.RAPI_VERSION


class R_2_info(Resource):
    NAME = "info"

    def GET(self) -> dict[str, Any]:
        info = dict(self.master.query_cluster_info())
        info["ipolicy"] = rapi_ipolicy(info.get("ipolicy"))
        info.setdefault("vg_name", info.get("volume_group_name"))
        info.setdefault("drbd_helper", info.get("drbd_usermode_helper"))
        return info


class R_2_features(Resource):
    NAME = "features"

    def GET(self) -> list[str]:
        return list(FEATURES)


class R_2_os(Resource):
    """List of valid OS names; runs OP_OS_DIAGNOSE and waits for it.

    Ganeti asks for ``name`` and ``variants`` and relies on the legacy
    diagnose filter (invalid, hidden and blacklisted OSes left out); Corral
    asks for the three flags too and filters here.
    """

    NAME = "os"
    GET_WAITS = True
    FIELDS: ClassVar[list[str]] = ["name", "variants", "valid", "hidden", "blacklisted"]

    def GET(self) -> list[str]:
        op = self.opcode("OP_OS_DIAGNOSE", output_fields=self.FIELDS, names=[])
        job_id = self.submit([op])
        results = poll_job(self.master, job_id, OS_DIAGNOSE_TIMEOUT)
        data = results[0] if results else None
        if not isinstance(data, list):
            raise HttpError(502, "Can't get OS list")
        names: list[str] = []
        for name, variants, valid, hidden, blacklisted in data:
            if valid and not hidden and not blacklisted:
                names.extend(os_names(name, variants))
        return names


class R_2_cluster_modify(Resource):
    NAME = "cluster_modify"
    PUT_FORBIDDEN: ClassVar[list[str]] = ["compression_tools"]

    def PUT(self) -> int:
        return self.submit_from_body("OP_CLUSTER_SET_PARAMS", self.body)


class R_2_redist_config(Resource):
    """``/2/redistribute-config``: OP_CLUSTER_REDIST_CONF."""

    NAME = "redist_config"

    def PUT(self) -> int:
        return self.submit_from_body("OP_CLUSTER_REDIST_CONF", {})


FILTER_RULE_FIELDS = ["uuid", "watermark", "priority", "predicates", "action",
                      "reason_trail"]
_FILTER_BODY_KEYS = ("priority", "predicates", "action", "reason")


def _filter_parameters(body: Any) -> tuple[Any, Any, Any, Any]:
    """``checkFilterParameters``: only priority, predicates, action, reason."""
    if body is None:
        body = {}
    check_type(body, dict, "Body contents")
    extra = sorted(set(body) - set(_FILTER_BODY_KEYS))
    if extra:
        raise HttpError(400, f"Unknown filter rule parameters: {', '.join(extra)}")
    return tuple(body.get(k) for k in _FILTER_BODY_KEYS)  # type: ignore[return-value]


class R_2_filters(Resource):
    """``/2/filters``: the job filter rules; POST adds one (returns its UUID,
    not a job: rule changes bypass the queue, as in Ganeti)."""

    NAME = "filters"

    def GET(self) -> list[Any]:
        if self.use_bulk():
            return query_dicts(self.master, "filter", FILTER_RULE_FIELDS, None)
        rows = query_dicts(self.master, "filter", ("uuid",), None)
        return build_uri_list([r["uuid"] for r in rows], "/2/filters/%s",
                              uri_fields=("uuid", "uri"))

    def POST(self) -> str | None:
        params = _filter_parameters(self.body)
        if self.dry_run():
            return None
        return self.master.replace_filter(None, *params)


class R_2_filters_uuid(Resource):
    """``/2/filters/[uuid]``: GET one rule, PUT replaces (or creates) it,
    DELETE removes it."""

    NAME = "filters_uuid"

    def GET(self) -> dict[str, Any]:
        rows = query_dicts(self.master, "filter", FILTER_RULE_FIELDS, [self.items[0]])
        return rows[0]

    def PUT(self) -> str | None:
        params = _filter_parameters(self.body)
        if self.dry_run():
            return None
        return self.master.replace_filter(self.items[0], *params)

    def DELETE(self) -> None:
        if not self.dry_run():
            self.master.delete_filter(self.items[0])


class TagsResource(Resource):
    """``_R_Tags``: GET lists tags; PUT/DELETE take them from ``?tag=``."""

    TAG_LEVEL: ClassVar[str] = ""

    def _name(self) -> str | None:
        return None if self.TAG_LEVEL == C.TAG_CLUSTER else self.items[0]

    def GET(self) -> list[str]:
        return list(self.master.query_tags(self.TAG_LEVEL, self._name()))

    def _op(self, op_id: str) -> int:
        return self.submit_from_body(op_id, {}, {
            "kind": self.TAG_LEVEL, "name": self._name(),
            "tags": list(self.queryargs.get("tag", []))})

    def PUT(self) -> int:
        return self._op("OP_TAGS_SET")

    def DELETE(self) -> int:
        return self._op("OP_TAGS_DEL")


class R_2_tags(TagsResource):
    NAME = "tags"
    TAG_LEVEL = C.TAG_CLUSTER


# Job statuses CancelJob accepts.
CANCELABLE = (C.JOB_STATUS_QUEUED, C.JOB_STATUS_WAITING, C.JOB_STATUS_CANCELING)


# -- jobs -----------------------------------------------------------------------------

def _job_id(text: str) -> int:
    return bounded_int(text, "the job ID")


class R_2_jobs(Resource):
    NAME = "jobs"

    def GET(self) -> list[Any]:
        if self.use_bulk():
            rows = self.master.query_jobs(None, J_FIELDS_BULK)
            return [dict(zip(J_FIELDS_BULK, row)) for row in rows if row is not None]
        rows = self.master.query_jobs(None, ["id"])
        return build_uri_list([row[0] for row in rows if row is not None], "/2/jobs/%s",
                              uri_fields=("id", "uri"))


class R_2_jobs_id(Resource):
    NAME = "jobs_id"

    def GET(self) -> dict[str, Any]:
        info = self.master.get_job_info(_job_id(self.items[0]))
        if info is None:
            raise HttpError(404)
        return {f: info.get(f) for f in J_FIELDS}

    def DELETE(self) -> list[Any]:
        """``[success, message]`` of CancelJob; with ``?dry-run=1`` only
        whether the job could be canceled now (queued or waiting)."""
        job_id = _job_id(self.items[0])
        if self.dry_run():
            row = self.master.query_jobs([job_id], ["status"])[0]
            if row is None:
                return [False, f"Job {job_id} not found"]
            if row[0] in CANCELABLE:
                return [True, f"Job {job_id} would be canceled (dry run)"]
            return [False, "Job no longer waiting, can't cancel"]
        ok, msg = self.master.cancel_job(job_id, False)
        return [bool(ok), msg]


class R_2_jobs_id_wait(Resource):
    """WaitForJobChangeOnce with a 10 s timeout; GET with a JSON body."""

    NAME = "jobs_id_wait"
    GET_WAITS = True
    GET_ACCESS: ClassVar[list[str]] = [RAPI_ACCESS_WRITE]

    def GET(self) -> Any:
        job_id = _job_id(self.items[0])
        fields = self.body_param("fields")
        prev_job_info = self.body_param("previous_job_info", None)
        prev_log_serial = self.body_param("previous_log_serial", None)
        if not isinstance(fields, list):
            raise HttpError(400, "The 'fields' parameter should be a list")
        if not (prev_job_info is None or isinstance(prev_job_info, list)):
            raise HttpError(400, "The 'previous_job_info' parameter should be a list")
        if not (prev_log_serial is None or (isinstance(prev_log_serial, int)
                                            and not isinstance(prev_log_serial, bool))):
            raise HttpError(400, "The 'previous_log_serial' parameter should be a number")
        result = self.master.wait_for_job_change(job_id, fields, prev_job_info,
                                                 prev_log_serial, WFJC_TIMEOUT)
        if not result:
            raise HttpError(404)
        if result == "nochange":
            return None
        job_info, log_entries = result
        return {"job_info": job_info, "log_entries": log_entries}


# -- generic queries --------------------------------------------------------------------

def split_query_fields(text: str) -> list[str]:
    return [f.strip() for f in text.split(",")]


class R_2_query(Resource):
    NAME = "query"
    GET_ACCESS: ClassVar[list[str]] = [RAPI_ACCESS_WRITE, RAPI_ACCESS_READ]
    PUT_ACCESS: ClassVar[list[str]] = [RAPI_ACCESS_WRITE, RAPI_ACCESS_READ]

    def _fields_from_args(self) -> list[str]:
        raw = self.str_arg("fields")
        if raw is None:
            raise HttpError(400, "Missing 'fields' query argument")
        return split_query_fields(raw)

    def _query(self, fields: list[str], qfilter: Any) -> dict[str, Any]:
        return self.master.query(self.items[0], fields, qfilter)

    def GET(self) -> dict[str, Any]:
        return self._query(self._fields_from_args(), None)

    def PUT(self) -> dict[str, Any]:
        body = self.body if self.body is not None else {}
        if not isinstance(body, dict):
            raise HttpError(400, "Body contents should be dict")
        fields = body["fields"] if "fields" in body else self._fields_from_args()
        if not isinstance(fields, list):
            raise HttpError(400, "The 'fields' parameter should be a list")
        qfilter = body.get("qfilter")
        if qfilter is None:
            qfilter = body.get("filter")
        return self._query(fields, qfilter)


class R_2_query_fields(Resource):
    NAME = "query_fields"

    def GET(self) -> dict[str, Any]:
        raw = self.str_arg("fields")
        fields = split_query_fields(raw) if raw is not None else None
        return self.master.query_fields(self.items[0], fields)
