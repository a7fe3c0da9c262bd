"""RAPI network resources (``/2/networks...``).

Mirrors ``R_2_networks*`` of ``ganeti.rapi.rlib2``: list (``bulk=1`` for
NET_FIELDS dicts), create (POST, ``name`` accepted for ``network_name``),
one network (GET, DELETE), ``modify``, ``rename``, ``connect``,
``disconnect`` (PUT) and ``tags``. Writes need the ``write`` right and
honour ``dry-run=1`` (the common static parameters of every write).
"""

from __future__ import annotations

from typing import Any

from corral import constants as C
from corral.rapi.auth import HttpError
from corral.rapi.base import Resource, build_uri_list, query_dicts
from corral.rapi.resources import TagsResource

NET_FIELDS = ("name", "network", "gateway", "network6", "gateway6", "mac_prefix",
              "free_count", "reserved_count", "map", "group_list", "inst_list",
              "external_reservations", "ctime", "mtime", "uuid", "serial_no", "tags")


class R_2_networks(Resource):
    NAME = "networks"

    def GET(self) -> list[Any]:
        if self.use_bulk():
            return query_dicts(self.master, "network", NET_FIELDS, None)
        rows = query_dicts(self.master, "network", ("name",), None)
        return build_uri_list([r["name"] for r in rows], "/2/networks/%s")

    def POST(self) -> int:
        return self.submit_from_body("OP_NETWORK_ADD", self.body,
                                     rename={"name": "network_name"})


class _NetworkOp(Resource):
    """A PUT submitting ``PUT_OPCODE`` for the network named in the URI."""

    PUT_OPCODE = ""

    def PUT(self) -> int:
        return self.submit_from_body(self.PUT_OPCODE, self.body,
                                     {"network_name": self.items[0]})


class R_2_networks_name(Resource):
    NAME = "networks_name"

    def GET(self) -> dict[str, Any]:
        rows = query_dicts(self.master, "network", NET_FIELDS, [self.items[0]])
        if not rows:
            raise HttpError(404, f"Network '{self.items[0]}' not found")
        return rows[0]

    def DELETE(self) -> int:
        return self.submit_from_body("OP_NETWORK_REMOVE", self.body,
                                     {"network_name": self.items[0]})


class R_2_networks_name_modify(_NetworkOp):
    NAME = "networks_name_modify"
    PUT_OPCODE = "OP_NETWORK_SET_PARAMS"


class R_2_networks_name_rename(_NetworkOp):
    NAME = "networks_name_rename"
    PUT_OPCODE = "OP_NETWORK_RENAME"


class R_2_networks_name_connect(_NetworkOp):
    NAME = "networks_name_connect"
    PUT_OPCODE = "OP_NETWORK_CONNECT"


class R_2_networks_name_disconnect(_NetworkOp):
    NAME = "networks_name_disconnect"
    PUT_OPCODE = "OP_NETWORK_DISCONNECT"


class R_2_networks_name_tags(TagsResource):
    NAME = "networks_name_tags"
    TAG_LEVEL = C.TAG_NETWORK


_NAME = r"[\w\._-]+"
# (URI regexp, handler) pairs, added to the server's URI map.
ROUTES: list[tuple[str, type[Resource]]] = [
    (r"^/2/networks$", R_2_networks),
    (rf"^/2/networks/({_NAME})$", R_2_networks_name),
    (rf"^/2/networks/({_NAME})/modify$", R_2_networks_name_modify),
    (rf"^/2/networks/({_NAME})/rename$", R_2_networks_name_rename),
    (rf"^/2/networks/({_NAME})/connect$", R_2_networks_name_connect),
    (rf"^/2/networks/({_NAME})/disconnect$", R_2_networks_name_disconnect),
    (rf"^/2/networks/({_NAME})/tags$", R_2_networks_name_tags),
]
