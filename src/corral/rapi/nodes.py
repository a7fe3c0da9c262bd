"""RAPI node resources (``/2/nodes...``).

Mirrors ``R_2_nodes*`` of ``ganeti.rapi.rlib2``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from corral import constants as C
from corral.rapi import RAPI_ACCESS_WRITE
from corral.rapi.auth import HttpError
from corral.rapi.base import Resource, build_uri_list, query_dicts
from corral.rapi.resources import TagsResource

N_FIELDS = ("name", "offline", "master_candidate", "drained", "dtotal", "dfree", "sptotal",
            "spfree", "mtotal", "mnode", "mfree", "pinst_cnt", "sinst_cnt", "ctotal", "cnos",
            "cnodes", "csockets", "pip", "sip", "role", "pinst_list", "sinst_list",
            "master_capable", "vm_capable", "ndparams", "group.uuid", "ctime", "mtime",
            "uuid", "serial_no", "tags")

NR_MASTER = "master"
NR_MASTER_CANDIDATE = "master-candidate"
NR_DRAINED = "drained"
NR_OFFLINE = "offline"
NR_REGULAR = "regular"
# Query field "role" (single letters) -> RAPI role words.
NR_MAP = {C.NR_MASTER: NR_MASTER, C.NR_MCANDIDATE: NR_MASTER_CANDIDATE,
          C.NR_DRAINED: NR_DRAINED, C.NR_OFFLINE: NR_OFFLINE, C.NR_REGULAR: NR_REGULAR}


class R_2_nodes(Resource):
    NAME = "nodes"

    def GET(self) -> list[Any]:
        if self.use_bulk():
            return query_dicts(self.master, "node", N_FIELDS, None)
        rows = query_dicts(self.master, "node", ("name",), None)
        return build_uri_list([r["name"] for r in rows], "/2/nodes/%s",
                              uri_fields=("id", "uri"))


def _one(master: Any, name: str, fields: tuple[str, ...]) -> dict[str, Any]:
    rows = query_dicts(master, "node", fields, [name])
    if not rows:
        raise HttpError(404, f"Node '{name}' not known")
    return rows[0]


class R_2_nodes_name(Resource):
    NAME = "nodes_name"

    def GET(self) -> dict[str, Any]:
        data = _one(self.master, self.items[0], N_FIELDS)
        data["secondary_ip"] = data.get("sip")
        return data


class R_2_nodes_name_role(Resource):
    NAME = "nodes_name_role"

    def GET(self) -> str | None:
        role = _one(self.master, self.items[0], ("role",))["role"]
        return NR_MAP.get(role, role)

    def PUT(self) -> int:
        role = self.body
        if not isinstance(role, str):
            raise HttpError(400, "Body contents should be str")
        candidate: bool | None
        offline: bool | None
        drained: bool | None
        if role == NR_REGULAR:
            candidate, offline, drained = False, False, False
        elif role == NR_MASTER_CANDIDATE:
            candidate, offline, drained = True, None, None
        elif role == NR_DRAINED:
            candidate, offline, drained = None, None, True
        elif role == NR_OFFLINE:
            candidate, offline, drained = None, True, None
        else:
            raise HttpError(400, f"Can't set '{role}' role")
        return self.submit_from_body("OP_NODE_SET_PARAMS", {}, {
            "node_name": self.items[0], "master_candidate": candidate, "offline": offline,
            "drained": drained, "force": self.use_force(),
            "auto_promote": bool(self.int_arg("auto-promote"))})


class R_2_nodes_name_modify(Resource):
    NAME = "nodes_name_modify"

    def POST(self) -> int:
        return self.submit_from_body("OP_NODE_SET_PARAMS", self.body,
                                     {"node_name": self.items[0]})


class R_2_nodes_name_evacuate(Resource):
    """``/2/nodes/[name]/evacuate``: OP_NODE_EVACUATE (result ``{"jobs": ...}``)."""

    NAME = "nodes_name_evacuate"

    def POST(self) -> int:
        return self.submit_from_body("OP_NODE_EVACUATE", self.body,
                                     {"node_name": self.items[0]})


class R_2_nodes_name_migrate(Resource):
    """``/2/nodes/[name]/migrate``: OP_NODE_MIGRATE. As in Ganeti, any query
    argument selects the old request form (``live=0|1`` or ``mode``) and the
    body is then ignored."""

    NAME = "nodes_name_migrate"

    def POST(self) -> int:
        static: dict[str, Any] = {"node_name": self.items[0]}
        if not self.queryargs:
            return self.submit_from_body("OP_NODE_MIGRATE", self.body, static)
        if "live" in self.queryargs and "mode" in self.queryargs:
            raise HttpError(400, "Only one of 'live' and 'mode' should be provided")
        if "live" in self.queryargs:
            mode: str | None = (C.HT_MIGRATION_LIVE if self.int_arg("live", 1)
                                else C.HT_MIGRATION_NONLIVE)
        else:
            mode = self.str_arg("mode")
        return self.submit_from_body("OP_NODE_MIGRATE", {"mode": mode}, static)


class R_2_nodes_name_storage(Resource):
    """``/2/nodes/[name]/storage``: an OP_NODE_QUERY_STORAGE job. As in Ganeti
    it takes locks, so even this GET needs write access."""

    NAME = "nodes_name_storage"
    GET_ACCESS: ClassVar[list[str]] = [RAPI_ACCESS_WRITE]

    def GET(self) -> int:
        output_fields = self.str_arg("output_fields")
        if not output_fields:
            raise HttpError(400, "Missing the required 'output_fields' parameter")
        return self.submit_from_body("OP_NODE_QUERY_STORAGE", {}, {
            "nodes": [self.items[0]], "storage_type": self.str_arg("storage_type"),
            "output_fields": output_fields.split(",")})


class R_2_nodes_name_tags(TagsResource):
    NAME = "nodes_name_tags"
    TAG_LEVEL = C.TAG_NODE
