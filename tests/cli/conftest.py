"""A fake master client for CLI tests, and a runner for ``corral`` commands.

``FakeClient`` implements the MasterClient methods the CLI uses: jobs are
validated with ``opcodes.op_from_dict`` (as the real queue does) and recorded;
queries answer from small tables; ``results`` maps OP_IDs to job results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from corral import cli as cli_pkg
from corral import errors, opcodes

FIELDS = {
    "node": [("name", "Node", "text"), ("dtotal", "DTotal", "unit"),
             ("dfree", "DFree", "unit"), ("mtotal", "MTotal", "unit"),
             ("mnode", "MNode", "unit"), ("mfree", "MFree", "unit"),
             ("pinst_cnt", "Pinst", "number"), ("sinst_cnt", "Sinst", "number"),
             ("master_candidate", "MasterC", "bool"), ("pip", "PrimaryIP", "text"),
             ("sip", "SecondaryIP", "text"), ("pinst_list", "PriInstances", "other"),
             ("sinst_list", "SecInstances", "other"), ("drained", "Drained", "bool"),
             ("offline", "Offline", "bool"), ("master_capable", "MasterCapable", "bool"),
             ("vm_capable", "VMCapable", "bool"), ("ndparams", "NodeParameters", "other"),
             ("tags", "Tags", "other"), ("ctime", "CTime", "timestamp")],
    "instance": [("name", "Instance", "text"), ("hypervisor", "Hypervisor", "text"),
                 ("os", "OS", "text"), ("pnode", "Primary_node", "text"),
                 ("snodes", "Secondary_Nodes", "other"), ("status", "Status", "text"),
                 ("oper_ram", "Memory", "unit"), ("tags", "Tags", "other")],
    "job": [("id", "ID", "number"), ("status", "Status", "text"),
            ("summary", "Summary", "other"), ("received_ts", "Received", "timestamp"),
            ("ops", "OpCodes", "other"), ("opstatus", "OpCode_status", "other"),
            ("opresult", "OpCode_result", "other"), ("oplog", "OpCode_log", "other"),
            ("start_ts", "Start", "timestamp"), ("end_ts", "End", "timestamp")],
}

ROWS = {
    "node": [
        {"name": "node1", "dtotal": 102400, "dfree": 51200, "mtotal": 4096, "mnode": 512,
         "mfree": 3584, "pinst_cnt": 1, "sinst_cnt": 0, "master_candidate": True,
         "pip": "127.0.9.1", "sip": "127.0.9.1", "pinst_list": ["inst1"], "sinst_list": [],
         "drained": False, "offline": False, "master_capable": True, "vm_capable": True,
         "ndparams": {"spindle_count": 1}, "tags": [], "ctime": 0},
        {"name": "node2", "dtotal": None, "dfree": None, "mtotal": 2048, "mnode": 256,
         "mfree": 1792, "pinst_cnt": 0, "sinst_cnt": 0, "master_candidate": False,
         "pip": "127.0.9.2", "sip": "127.0.9.2", "pinst_list": [], "sinst_list": [],
         "drained": False, "offline": False, "master_capable": True, "vm_capable": True,
         "ndparams": {}, "tags": ["rack1"], "ctime": 0},
    ],
    "instance": [
        {"name": "inst1", "hypervisor": "fake", "os": "noop", "pnode": "node1",
         "snodes": [], "status": "running", "oper_ram": 128, "tags": ["web"]},
        {"name": "inst2", "hypervisor": "fake", "os": "noop", "pnode": "node2",
         "snodes": ["node1"], "status": "ADMIN_down", "oper_ram": None, "tags": []},
    ],
}


class FakeClient:
    """The MasterClient methods the CLI calls."""

    def __init__(self) -> None:
        self.submitted: list[list[dict[str, Any]]] = []
        self.results: dict[str, Any] = {}
        self.fail: dict[str, errors.CorralError] = {}
        self.logs: list[tuple[Any, str, Any]] = [([1700000000, 0], "message",
                                                  "* doing things")]
        self.drain = False
        self.tags = {"cluster": ["c1"], "node": {"node1": ["b", "a"]},
                     "instance": {"inst1": ["web"]}}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.closed = False

    def close(self) -> None:
        self.closed = True

    # -- jobs ---------------------------------------------------------------------------
    def submit_job(self, ops: list[dict[str, Any]]) -> int:
        for op in ops:
            opcodes.op_from_dict(op)
        self.submitted.append(ops)
        job_id = len(self.submitted)
        self.jobs[job_id] = {"id": job_id, "status": "success", "ops": ops,
                             "summary": [op["OP_ID"][3:] for op in ops],
                             "received_ts": [1700000000, 0], "start_ts": [1700000001, 0],
                             "end_ts": [1700000002, 500000],
                             "opstatus": ["success"] * len(ops),
                             "opresult": [self.results.get(op["OP_ID"]) for op in ops],
                             "oplog": [[[1, [1700000001, 0], "message", "hi"]]
                                       for _ in ops]}
        return job_id

    def wait_job(self, job_id: int, feedback_fn: Callable[..., None] | None = None,
                 timeout: float | None = None) -> list[Any]:
        ops = self.submitted[job_id - 1]
        if feedback_fn is not None:
            for entry in self.logs:
                feedback_fn(entry)
        for op in ops:
            if op["OP_ID"] in self.fail:
                raise self.fail[op["OP_ID"]]
        return [self.results.get(op["OP_ID"]) for op in ops]

    def query_jobs(self, ids: list[int] | None, fields: list[str],
                   archived: bool = False) -> list[Any]:
        ids = sorted(self.jobs) if ids is None else ids
        return [[self.jobs[i].get(f) for f in fields] if i in self.jobs else None
                for i in ids]

    def cancel_job(self, job_id: int, kill: bool = False) -> list[Any]:
        return [job_id in self.jobs, f"Job {job_id} canceled" if job_id in self.jobs
                else f"Job {job_id} not found"]

    def archive_job(self, job_id: int) -> bool:
        return self.jobs.pop(job_id, None) is not None

    def auto_archive(self, age: int, timeout: float) -> list[int]:
        self.last_autoarchive = (age, timeout)
        return [len(self.jobs), 0]

    def change_job_priority(self, job_id: int, priority: int) -> list[Any]:
        self.last_priority = (job_id, priority)
        return [True, f"Job {job_id} priority changed"]

    def set_drain_flag(self, flag: bool) -> bool:
        self.drain = flag
        return True

    # -- queries ------------------------------------------------------------------------
    def query_fields(self, what: str, fields: list[str] | None = None) -> dict[str, Any]:
        defs = {n: {"name": n, "title": t, "kind": k, "doc": f"The {n}"}
                for n, t, k in FIELDS[what]}
        if fields is None:
            return {"fields": list(defs.values())}
        return {"fields": [defs.get(f, {"name": f, "title": f, "kind": "unknown",
                                        "doc": "Unknown field"}) for f in fields]}

    def query(self, what: str, fields: list[str], qfilter: Any = None) -> dict[str, Any]:
        known = {n for n, _t, _k in FIELDS[what]}
        if set(fields) - known:
            raise errors.OpPrereqError("Unknown fields", errors.ECODE_INVAL)
        rows = ROWS[what]
        if qfilter:
            by_name = {r["name"]: r for r in rows}
            for name in qfilter:
                if name not in by_name:
                    raise errors.OpPrereqError(f"{what} '{name}' not known",
                                               errors.ECODE_NOENT)
            rows = [by_name[n] for n in qfilter]
        data = [[[0, r[f]] if r.get(f) is not None else [2, None] for f in fields]
                for r in rows]
        return {"fields": self.query_fields(what, fields)["fields"], "data": data}

    def query_cluster_info(self) -> dict[str, Any]:
        return {"name": "cluster.example", "uuid": "u-1", "ctime": 1700000000.0,
                "mtime": 1700000000.0, "master": "node1", "architecture": ["64bit", "x86_64"],
                "tags": ["c1"], "default_hypervisor": "fake", "enabled_hypervisors": ["fake"],
                "hvparams": {"fake": {"migration_mode": "live"}}, "os_hvp": {},
                "osparams": {}, "beparams": {"default": {"maxmem": 128}},
                "nicparams": {"default": {"mode": "bridged"}}, "ndparams": {},
                "diskparams": {}, "candidate_pool_size": 10, "software_version": "0.1.0",
                "protocol_version": 3000000, "config_version": 3000000,
                "os_api_version": 20, "export_version": 0,
                "vcs_version": "(corral) version 0.1.0",
                "enabled_disk_templates": ["file", "diskless"],
                "compression_tools": ["gzip"], "ipolicy": {}}

    def query_config_values(self, fields: list[str]) -> list[Any]:
        values = {"master_node": "node1", "drain_flag": self.drain,
                  "cluster_name": "cluster.example"}
        return [values[f] for f in fields]

    def query_tags(self, kind: str, name: str | None) -> list[str]:
        if kind == "cluster":
            return list(self.tags["cluster"])
        return list(self.tags[kind].get(name, []))

    def create_join_token(self, ttl: int = 3600) -> str:
        return f"token-{ttl}"

    # -- helpers for tests --------------------------------------------------------------
    def last_op(self) -> dict[str, Any]:
        return self.submitted[-1][0]


@pytest.fixture
def fake_client() -> Iterator[FakeClient]:
    client = FakeClient()
    old = cli_pkg.client_factory
    cli_pkg.client_factory = lambda paths: client
    try:
        yield client
    finally:
        cli_pkg.client_factory = old


@pytest.fixture
def run(fake_client: FakeClient) -> Callable[..., Result]:
    """``run("instance", "list", ...)`` -> click Result (``corral`` entry point)."""
    from corral.cli.main import corral

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(corral, list(args), input=input, catch_exceptions=False)

    return invoke
