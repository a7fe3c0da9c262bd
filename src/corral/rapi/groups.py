"""RAPI node group resources (``/2/groups...``).

Mirrors ``R_2_groups*`` of ``ganeti.rapi.rlib2``: the collection (GET, bulk
GET with ``G_FIELDS``, POST = OP_GROUP_ADD with ``name`` accepted for
``group_name``), one group (GET, DELETE = OP_GROUP_REMOVE), ``modify``
(PUT = OP_GROUP_SET_PARAMS, ``custom_*`` names accepted), ``rename``,
``assign-nodes`` (``?force=1``) and ``tags``. Writes go through
:meth:`Resource.submit` (write access, ``?dry-run=1``, reason trail).
"""

from __future__ import annotations

from typing import Any, ClassVar

from corral import constants as C
from corral.ipolicy import rapi_ipolicy
from corral.rapi.auth import HttpError
from corral.rapi.base import Resource, build_uri_list, query_dicts
from corral.rapi.resources import TagsResource

G_FIELDS = ("alloc_policy", "name", "node_cnt", "node_list", "ipolicy", "custom_ipolicy",
            "diskparams", "custom_diskparams", "ndparams", "custom_ndparams", "ctime",
            "mtime", "uuid", "serial_no", "tags")


def _group_dicts(master: Any, names: list[str] | None) -> list[dict[str, Any]]:
    """G_FIELDS dicts with the policies in Ganeti 3.0's shape (htools)."""
    rows = query_dicts(master, "group", G_FIELDS, names)
    for row in rows:
        for key in ("ipolicy", "custom_ipolicy"):
            row[key] = rapi_ipolicy(row[key])
    return rows


class R_2_groups(Resource):
    """``/2/groups``: list (``?bulk=1`` for G_FIELDS dicts) and create."""

    NAME = "groups"
    POST_RENAME: ClassVar[dict[str, str]] = {"name": "group_name"}

    def GET(self) -> list[Any]:
        if self.use_bulk():
            return _group_dicts(self.master, None)
        rows = query_dicts(self.master, "group", ("name",), None)
        return build_uri_list([r["name"] for r in rows], "/2/groups/%s")

    def POST(self) -> int:
        return self.submit_from_body("OP_GROUP_ADD", self.body, rename=self.POST_RENAME)


class R_2_groups_name(Resource):
    """``/2/groups/[group_name]``: G_FIELDS of one group; DELETE removes it."""

    NAME = "groups_name"

    def GET(self) -> dict[str, Any]:
        rows = _group_dicts(self.master, [self.items[0]])
        if not rows:
            raise HttpError(404, f"Node group '{self.items[0]}' not found")
        return rows[0]

    def DELETE(self) -> int:
        return self.submit_from_body("OP_GROUP_REMOVE", {}, {"group_name": self.items[0]})


class R_2_groups_name_modify(Resource):
    """``/2/groups/[group_name]/modify``: OP_GROUP_SET_PARAMS."""

    NAME = "groups_name_modify"
    PUT_RENAME: ClassVar[dict[str, str]] = {"custom_ndparams": "ndparams",
                                            "custom_ipolicy": "ipolicy",
                                            "custom_diskparams": "diskparams"}

    def PUT(self) -> int:
        return self.submit_from_body("OP_GROUP_SET_PARAMS", self.body,
                                     {"group_name": self.items[0]}, self.PUT_RENAME)


class R_2_groups_name_rename(Resource):
    """``/2/groups/[group_name]/rename``: OP_GROUP_RENAME (body ``new_name``)."""

    NAME = "groups_name_rename"

    def PUT(self) -> int:
        return self.submit_from_body("OP_GROUP_RENAME", self.body,
                                     {"group_name": self.items[0]})


class R_2_groups_name_assign_nodes(Resource):
    """``/2/groups/[group_name]/assign-nodes``: OP_GROUP_ASSIGN_NODES (body
    ``nodes``; ``?force=1`` allows splitting instances)."""

    NAME = "groups_name_assign_nodes"

    def PUT(self) -> int:
        return self.submit_from_body("OP_GROUP_ASSIGN_NODES", self.body,
                                     {"group_name": self.items[0],
                                      "force": self.use_force()})


class R_2_groups_name_tags(TagsResource):
    NAME = "groups_name_tags"
    TAG_LEVEL = C.TAG_NODEGROUP


def group_uris(name: str) -> list[tuple[str, type[Resource]]]:
    """(URI regexp, handler) of the group resources; ``name`` matches one name."""
    return [
        (r"^/2/groups$", R_2_groups),
        (rf"^/2/groups/({name})$", R_2_groups_name),
        (rf"^/2/groups/({name})/modify$", R_2_groups_name_modify),
        (rf"^/2/groups/({name})/rename$", R_2_groups_name_rename),
        (rf"^/2/groups/({name})/assign-nodes$", R_2_groups_name_assign_nodes),
        (rf"^/2/groups/({name})/tags$", R_2_groups_name_tags),
    ]
