"""A small in-memory stand-in for ``corral.masterd.master.Master`` and a RAPI
test client around :func:`corral.rapi.server.create_app`.

The fake validates submitted opcodes with ``opcodes.op_from_dict`` exactly as
the real job queue does, records them, and answers queries from fixed tables,
so tests can check the request -> opcode translation and the answer shapes.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import errors, opcodes
from corral.paths import Paths
from corral.rapi.users import ha1

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NODES = [
    {"name": "node1", "offline": False, "master_candidate": True, "drained": False,
     "mtotal": 4096, "mfree": 2048, "pinst_cnt": 1, "sinst_cnt": 0, "pip": "127.0.9.1",
     "sip": "127.0.9.1", "role": "M", "pinst_list": ["inst1"], "sinst_list": [],
     "master_capable": True, "vm_capable": True, "ndparams": {}, "group.uuid": "g1",
     "uuid": "n1", "serial_no": 1, "tags": [], "ctime": 1.0, "mtime": 2.0},
    {"name": "node2", "offline": False, "master_candidate": False, "drained": True,
     "mtotal": 4096, "mfree": 4096, "pinst_cnt": 0, "sinst_cnt": 0, "pip": "127.0.9.2",
     "sip": "127.0.9.2", "role": "D", "pinst_list": [], "sinst_list": [],
     "master_capable": True, "vm_capable": True, "ndparams": {}, "group.uuid": "g1",
     "uuid": "n2", "serial_no": 1, "tags": ["t1"], "ctime": 1.0, "mtime": 2.0},
]
INSTANCES = [
    {"name": "inst1", "admin_state": "up", "os": "noop", "pnode": "node1", "snodes": [],
     "disk_template": "diskless", "beparams": {"maxmem": 256, "minmem": 128, "vcpus": 1},
     "hvparams": {}, "oper_state": True, "oper_ram": 256, "status": "running",
     "uuid": "i1", "serial_no": 3, "tags": ["web"], "nic.macs": ["aa:00:00:00:00:01"],
     "disk.sizes": [], "ctime": 1.0, "mtime": 2.0},
]
TABLES = {"node": NODES, "instance": INSTANCES}
OS_ROWS = [["noop", [], True, False, False], ["debootstrap", ["default", "minimal"], True,
                                              False, False],
           ["broken", [], False, False, False], ["secret", [], True, True, False]]


class FakeMaster:
    """Implements the Master methods RAPI calls; records submitted jobs."""

    def __init__(self) -> None:
        self.jobs: dict[int, dict[str, Any]] = {}
        self.next_id = 100
        self.full = False
        self.drained = False
        self.tags = {"cluster": ["c1", "c2"], "node": {"node1": ["a"]},
                     "instance": {"inst1": ["web"]}}
        self.waits: list[tuple[Any, ...]] = []

    # -- jobs -------------------------------------------------------------------------
    def submit_job(self, ops: list[dict[str, Any]]) -> int:
        if self.full:
            raise errors.JobQueueFull("Job queue is full")
        if self.drained:
            raise errors.JobQueueDrainError("Job queue is drained")
        for op in ops:
            opcodes.op_from_dict(op)
        job_id = self.next_id
        self.next_id += 1
        result: list[Any] = [None] * len(ops)
        if ops[0]["OP_ID"] == "OP_OS_DIAGNOSE":
            fields = ops[0]["output_fields"]
            all_fields = ["name", "variants", "valid", "hidden", "blacklisted"]
            result = [[[row[all_fields.index(f)] for f in fields] for row in OS_ROWS]]
        self.jobs[job_id] = {"id": job_id, "ops": ops, "status": "success",
                             "opstatus": ["success"] * len(ops), "opresult": result,
                             "summary": [op["OP_ID"][3:] for op in ops],
                             "received_ts": [1, 0], "start_ts": [1, 0], "end_ts": [2, 0],
                             "oplog": [[] for _ in ops]}
        return job_id

    def last_ops(self) -> list[dict[str, Any]]:
        return self.jobs[self.next_id - 1]["ops"]

    def wait_for_job_change(self, job_id: int, fields: list[str], prev_job_info: Any,
                            prev_log_serial: int | None, timeout: float) -> Any:
        self.waits.append((job_id, fields, prev_job_info, prev_log_serial, timeout))
        job = self.jobs.get(int(job_id))
        if job is None:
            raise errors.JobQueueError(f"Job {job_id} not found", errors.ECODE_NOENT)
        info = [job[f] for f in fields]
        if info == prev_job_info:
            return "nochange"
        return info, [[1, [1, 0], "message", "hello"]]

    def query_jobs(self, ids: list[int] | None, fields: list[str],
                   archived: bool = False) -> list[Any]:
        ids = sorted(self.jobs) if ids is None else ids
        return [[self.jobs[i][f] for f in fields] if i in self.jobs else None for i in ids]

    def get_job_info(self, job_id: int) -> dict[str, Any] | None:
        return self.jobs.get(int(job_id))

    def cancel_job(self, job_id: int, kill: bool = False) -> tuple[bool, str]:
        return (False, f"Job {job_id} not found") if job_id not in self.jobs else \
            (True, f"Job {job_id} canceled")

    # -- queries ----------------------------------------------------------------------
    def query_fields(self, what: str, fields: list[str] | None = None) -> dict[str, Any]:
        table = TABLES[what]
        names = sorted({k for row in table for k in row})
        return {"fields": [{"name": n, "title": n.upper(), "kind": "other", "doc": n}
                           for n in names if fields is None or n in fields]}

    def query(self, what: str, fields: list[str], qfilter: Any = None) -> dict[str, Any]:
        if what not in TABLES:
            raise errors.OpPrereqError(f"Unknown resource '{what}'", errors.ECODE_INVAL)
        table = TABLES[what]
        known = {k for row in table for k in row}
        unknown = [f for f in fields if f not in known]
        if unknown:
            raise errors.OpPrereqError(f"Unknown fields {unknown}", errors.ECODE_INVAL)
        rows = table
        if qfilter:
            by_name = {r["name"]: r for r in table}
            missing = [n for n in qfilter if n not in by_name]
            if missing:
                raise errors.OpPrereqError(f"{what} '{missing[0]}' not known",
                                           errors.ECODE_NOENT)
            rows = [by_name[n] for n in qfilter]
        return {"fields": self.query_fields(what, fields)["fields"],
                "data": [[[0, r[f]] if f in r else [2, None] for f in fields] for r in rows]}

    def query_cluster_info(self) -> dict[str, Any]:
        return {"name": "cluster.example", "master": "node1",
                "volume_group_name": "", "drbd_usermode_helper": "",
                "enabled_hypervisors": ["fake"], "software_version": "0.1.0"}

    def query_tags(self, kind: str, name: str | None) -> list[str]:
        if kind == C.TAG_CLUSTER:
            return list(self.tags["cluster"])
        objs = self.tags[kind]
        if name not in objs:
            raise errors.OpPrereqError(f"{kind} '{name}' not known", errors.ECODE_NOENT)
        return list(objs[name])


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


USERS_FILE = f"""# RAPI users
writer secret write
reader {{cleartext}}readpw read
hauser {{HA1}}{ha1("hauser", "hapw")} write,read
odd oddpw something
"""


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path)
    p.rapi_users.parent.mkdir(parents=True)
    p.rapi_users.write_text(USERS_FILE)
    return p


@pytest.fixture
def master() -> FakeMaster:
    return FakeMaster()


@pytest.fixture
def client(master: FakeMaster, paths: Paths) -> Iterator[TestClient]:
    from corral.rapi.server import create_app

    with TestClient(create_app(master, paths)) as c:
        yield c


WRITER = basic("writer", "secret")
READER = basic("reader", "readpw")
