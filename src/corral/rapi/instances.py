"""RAPI instance resources (``/2/instances...``).

Mirrors ``R_2_instances*`` of ``ganeti.rapi.rlib2``: creation takes the v1
body (``__version__: 1``), reboot defaults to ``hard``, reinstall is a job of
shutdown + reinstall (+ startup), ``info`` returns a job id.
"""

from __future__ import annotations

from typing import Any, ClassVar

from corral import constants as C
from corral import errors
from corral.rapi import RAPI_ACCESS_READ, RAPI_ACCESS_WRITE
from corral.rapi.auth import HttpError
from corral.rapi.base import (
    Resource,
    bounded_int,
    build_uri_list,
    check_parameter,
    check_type,
    fill_opcode,
    poll_job,
    query_dicts,
)
from corral.rapi.resources import TagsResource

I_FIELDS = ("name", "admin_state", "os", "pnode", "snodes", "disk_template", "nic.ips",
            "nic.macs", "nic.modes", "nic.uuids", "nic.names", "nic.links", "nic.networks",
            "nic.networks.names", "nic.bridges", "network_port", "disk.sizes",
            "disk.spindles", "disk_usage", "disk.uuids", "disk.names", "beparams",
            "hvparams", "oper_state", "oper_ram", "oper_vcpus", "status", "custom_hvparams",
            "custom_beparams", "custom_nicparams", "ctime", "mtime", "uuid", "serial_no",
            "tags")

REQ_DATA_VERSION = "__version__"
CONSOLE_TIMEOUT = 60.0
# Query arguments reinstall takes with a body too: dry-run (a Corral
# extension; Ganeti refuses even ?reason= with a body, and so does Corral).
COMMON_QUERY_ARGS = frozenset({"dry-run"})      # seconds for the OP_INSTANCE_CONSOLE job


def _update_beparams(inst: dict[str, Any]) -> dict[str, Any]:
    """Inject the legacy ``beparams.memory`` (= ``maxmem``)."""
    be = inst.get("beparams")
    if isinstance(be, dict) and C.BE_MAXMEM in be:
        inst["beparams"] = {**be, C.BE_MEMORY: be[C.BE_MAXMEM]}
    return inst


def _convert_usb_devices(data: dict[str, Any]) -> None:
    """``hvparams.usb_devices``: spaces were the old separator, commas now."""
    hvp = data.get("hvparams")
    if isinstance(hvp, dict) and isinstance(hvp.get("usb_devices"), str):
        data["hvparams"] = {**hvp, "usb_devices": hvp["usb_devices"].replace(" ", ",")}


class R_2_instances(Resource):
    NAME = "instances"
    POST_RENAME: ClassVar[dict[str, str]] = {"os": "os_type", "name": "instance_name"}

    def GET(self) -> list[Any]:
        if self.use_bulk():
            return [_update_beparams(d)
                    for d in query_dicts(self.master, "instance", I_FIELDS, None)]
        rows = query_dicts(self.master, "instance", ("name",), None)
        return build_uri_list([r["name"] for r in rows], "/2/instances/%s",
                              uri_fields=("id", "uri"))

    def POST(self) -> int:
        body = check_type(self.body, dict, "Body contents")
        version = body.get(REQ_DATA_VERSION, 0)
        if version == 0:
            raise HttpError(400, "Instance creation request version 0 is no longer "
                                 "supported")
        if version != 1:
            raise HttpError(400, f"Unsupported request data version {version}")
        data = dict(body)
        data.pop(REQ_DATA_VERSION, None)
        _convert_usb_devices(data)
        return self.submit_from_body("OP_INSTANCE_CREATE", data, None, self.POST_RENAME)


class R_2_instances_multi_alloc(Resource):
    """``/2/instances-multi-alloc``: OP_INSTANCE_MULTI_ALLOC of instance bodies
    (each as a creation body, with ``os``/``name`` accepted)."""

    NAME = "instances_multi_alloc"

    def POST(self) -> int:
        body = check_type(self.body, dict, "Body contents")
        if "instances" not in body:
            raise HttpError(400, "Request is missing required 'instances' field in body")
        data = dict(body)
        data["instances"] = [
            fill_opcode("OP_INSTANCE_CREATE", inst, {}, R_2_instances.POST_RENAME)
            for inst in check_type(body["instances"], list, "'instances'")]
        return self.submit_from_body("OP_INSTANCE_MULTI_ALLOC", data)


class R_2_instances_name(Resource):
    NAME = "instances_name"

    def GET(self) -> dict[str, Any]:
        rows = query_dicts(self.master, "instance", I_FIELDS, [self.items[0]])
        if not rows:
            raise HttpError(404, f"Instance '{self.items[0]}' not known")
        return _update_beparams(rows[0])

    def DELETE(self) -> int:
        return self.submit_from_body("OP_INSTANCE_REMOVE", self.body, {
            "instance_name": self.items[0], "ignore_failures": False})


class R_2_instances_name_info(Resource):
    NAME = "instances_name_info"

    def GET(self) -> int:
        return self.submit_from_body("OP_INSTANCE_QUERY_DATA", {}, {
            "instances": [self.items[0]], "static": bool(self.int_arg("static"))})


class R_2_instances_name_reboot(Resource):
    NAME = "instances_name_reboot"

    def POST(self) -> int:
        return self.submit_from_body("OP_INSTANCE_REBOOT", self.body, {
            "instance_name": self.items[0],
            "reboot_type": self.str_arg("type", C.INSTANCE_REBOOT_HARD),
            "ignore_secondaries": bool(self.int_arg("ignore_secondaries"))})


class R_2_instances_name_startup(Resource):
    NAME = "instances_name_startup"

    def PUT(self) -> int:
        return self.submit_from_body("OP_INSTANCE_STARTUP", {}, {
            "instance_name": self.items[0], "force": self.use_force(),
            "no_remember": bool(self.int_arg("no_remember"))})


class R_2_instances_name_shutdown(Resource):
    NAME = "instances_name_shutdown"

    def PUT(self) -> int:
        return self.submit_from_body("OP_INSTANCE_SHUTDOWN", self.body, {
            "instance_name": self.items[0],
            "no_remember": bool(self.int_arg("no_remember"))})


class R_2_instances_name_reinstall(Resource):
    NAME = "instances_name_reinstall"

    def POST(self) -> int:
        # dry-run goes with either interface.
        legacy_args = set(self.queryargs) - COMMON_QUERY_ARGS
        if self.body:
            if legacy_args:
                raise HttpError(400, "Can't combine query and body parameters")
            body = self.body
        elif legacy_args:
            # Legacy interface (query arguments only).
            body = {"os": self.str_arg("os"), "start": not self.int_arg("nostartup")}
        else:
            body = {}
        check_type(body, dict, "Body contents")
        name = self.items[0]
        os_type = check_parameter(body, "os", None, str)
        start = check_parameter(body, "start", True, bool)
        osparams = check_parameter(body, "osparams", None, dict)
        ops = [self.opcode("OP_INSTANCE_SHUTDOWN", instance_name=name),
               self.opcode("OP_INSTANCE_REINSTALL", instance_name=name, os_type=os_type,
                           osparams=osparams)]
        if start:
            ops.append(self.opcode("OP_INSTANCE_STARTUP", instance_name=name, force=False))
        return self.submit(ops)


class R_2_instances_name_rename(Resource):
    NAME = "instances_name_rename"

    def PUT(self) -> int:
        return self.submit_from_body("OP_INSTANCE_RENAME", self.body,
                                     {"instance_name": self.items[0]})


class R_2_instances_name_modify(Resource):
    NAME = "instances_name_modify"
    PUT_RENAME: ClassVar[dict[str, str]] = {"custom_beparams": "beparams",
                                            "custom_hvparams": "hvparams"}

    def PUT(self) -> int:
        data = dict(check_type(self.body if self.body is not None else {}, dict,
                               "Body contents"))
        _convert_usb_devices(data)
        return self.submit_from_body("OP_INSTANCE_SET_PARAMS", data,
                                     {"instance_name": self.items[0]}, self.PUT_RENAME)


class R_2_instances_name_activate_disks(Resource):
    NAME = "instances_name_activate_disks"

    def PUT(self) -> int:
        return self.submit_from_body("OP_INSTANCE_ACTIVATE_DISKS", {}, {
            "instance_name": self.items[0], "ignore_size": bool(self.int_arg("ignore_size"))})


class R_2_instances_name_deactivate_disks(Resource):
    NAME = "instances_name_deactivate_disks"

    def PUT(self) -> int:
        return self.submit_from_body("OP_INSTANCE_DEACTIVATE_DISKS", {}, {
            "instance_name": self.items[0], "force": self.use_force()})


class R_2_instances_name_disk_grow(Resource):
    NAME = "instances_name_disk_grow"

    def POST(self) -> int:
        return self.submit_from_body("OP_INSTANCE_GROW_DISK", self.body, {
            "instance_name": self.items[0],
            "disk": bounded_int(self.items[1], "the disk index")})


class R_2_instances_name_console(Resource):
    """How to reach the console: ``objects.InstanceConsole`` as a dict (keys
    without value left out, as Ganeti's ``ToDict``); 503 when the instance
    is not running. Ganeti answers from a query; Corral runs the
    OP_INSTANCE_CONSOLE job, which checks the instance on its node."""

    NAME = "instances_name_console"
    GET_WAITS = True
    GET_ACCESS: ClassVar[list[str]] = [RAPI_ACCESS_WRITE, RAPI_ACCESS_READ]

    def GET(self) -> dict[str, Any]:
        op = self.opcode("OP_INSTANCE_CONSOLE", instance_name=self.items[0])
        try:
            console = poll_job(self.master, self.submit([op]), CONSOLE_TIMEOUT)[0]
        except errors.OpPrereqError as err:
            if err.ecode == errors.ECODE_STATE:
                raise HttpError(503, f"Instance console unavailable: {err}") from None
            raise
        check_type(console, dict, "Console information")
        return {k: v for k, v in console.items() if v is not None}


class R_2_instances_name_prepare_export(Resource):
    """OP_BACKUP_PREPARE; ``mode`` query argument (``local``/``remote``)."""

    NAME = "instances_name_prepare_export"

    def PUT(self) -> int:
        return self.submit_from_body("OP_BACKUP_PREPARE", {}, {
            "instance_name": self.items[0], "mode": self.str_arg("mode")})


class R_2_instances_name_export(Resource):
    """OP_BACKUP_EXPORT from the body; ``destination`` is ``target_node``."""

    NAME = "instances_name_export"
    PUT_RENAME: ClassVar[dict[str, str]] = {"destination": "target_node"}

    def PUT(self) -> int:
        body = check_type(self.body if self.body is not None else {}, dict, "Body contents")
        return self.submit_from_body("OP_BACKUP_EXPORT", body,
                                     {"instance_name": self.items[0]}, self.PUT_RENAME)


class R_2_instances_name_tags(TagsResource):
    NAME = "instances_name_tags"
    TAG_LEVEL = C.TAG_INSTANCE


class R_2_instances_name_migrate(Resource):
    """``/2/instances/[name]/migrate``: OP_INSTANCE_MIGRATE from the body."""

    NAME = "instances_name_migrate"

    def PUT(self) -> int:
        return self.submit_from_body("OP_INSTANCE_MIGRATE", self.body,
                                     {"instance_name": self.items[0]})


class R_2_instances_name_failover(Resource):
    """``/2/instances/[name]/failover``: OP_INSTANCE_FAILOVER from the body."""

    NAME = "instances_name_failover"

    def PUT(self) -> int:
        return self.submit_from_body("OP_INSTANCE_FAILOVER", self.body,
                                     {"instance_name": self.items[0]})


class R_2_instances_name_recreate_disks(Resource):
    """``/2/instances/[name]/recreate-disks``: OP_INSTANCE_RECREATE_DISKS
    (body: ``disks``, ``nodes``, ``iallocator``)."""

    NAME = "instances_name_recreate_disks"

    def POST(self) -> int:
        return self.submit_from_body("OP_INSTANCE_RECREATE_DISKS", self.body,
                                     {"instance_name": self.items[0]})
