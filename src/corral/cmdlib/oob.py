"""Out-of-band management of nodes: power and health (OP_OOB_COMMAND).

Mirrors ``ganeti.cmdlib.misc.LUOobCommand``: for each node (name order) the
master's node daemon runs the node's ``oob_program`` ndparam as
``PROGRAM COMMAND NODE`` (``backend.oob``). The program prints JSON:
``health`` a list of ``[item, status]`` (statuses ``OK``, ``WARNING``,
``CRITICAL``, ``UNKNOWN``), ``power-status`` ``{"powered": bool}``, the
power actions nothing. ``power-on``/``power-off`` record ``Node.powered``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, NoHooksLU
from corral.objects import Node
from corral.query.base import RS_NODATA, RS_NORMAL, RS_UNAVAIL, nice_sort_key

log = logging.getLogger(__name__)

# Commands never run on the master node (it would cut off the cluster).
_SKIP_MASTER = (C.OOB_POWER_OFF, C.OOB_POWER_CYCLE)
# Seconds the RPC waits beyond the program's own timeout.
_RPC_MARGIN = 10


def oob_program(cluster: Any, node: Node, group: Any) -> str | None:
    """The node's filled ``oob_program`` ndparam, None when unset
    (Ganeti's ``SupportsOob``)."""
    return cluster.fill_nd(node, group).get(C.ND_OOB_PROGRAM) or None


def check_oob_payload(command: str, payload: Any) -> list[str]:
    """Problems of an OOB program's parsed output for ``command`` (empty when
    it has the protocol's shape)."""
    errs = []
    if command == C.OOB_HEALTH:
        if not isinstance(payload, list):
            errs.append(f"command 'health' is expected to return a list but got "
                        f"{type(payload).__name__}")
        else:
            for entry in payload:
                if not (isinstance(entry, list) and len(entry) == 2):
                    errs.append(f"health entry {entry!r} is not an [item, status] pair")
                elif entry[1] not in C.OOB_STATUSES:
                    errs.append(f"health item '{entry[0]}' has invalid status '{entry[1]}'")
    elif command == C.OOB_POWER_STATUS:
        if not isinstance(payload, dict) or \
                not isinstance(payload.get(C.OOB_POWER_STATUS_POWERED), bool):
            errs.append(f"power-status is expected to return {{\"powered\": bool}} but got "
                        f"{payload!r}")
    elif payload is not None:
        errs.append(f"{command} is expected to not return payload but got {payload!r}")
    return errs


class LUOobCommand(NoHooksLU):
    """Run the out-of-band program for nodes; one result row per node:
    ``[[RS_NORMAL, name], [status, payload]]``."""

    REQ_BGL = False

    def expand_names(self) -> None:
        if self.op.node_names:
            self.node_uuids = [self.cfg.expand_node(name).uuid for name in self.op.node_names]
            self.needed_locks = {C.LEVEL_NODE: list(self.node_uuids)}
        else:
            self.node_uuids = []
            self.needed_locks = {C.LEVEL_NODE: None}

    def check_prereq(self) -> None:
        op = self.op
        master_uuid = self.master_uuid()
        cluster = self.cfg.get_cluster()
        if self.node_uuids:
            if op.command in _SKIP_MASTER and master_uuid in self.node_uuids:
                master = self.cfg.get_node(master_uuid)
                program = oob_program(cluster, master, self.cfg.get_nodegroup(master.group))
                extra = (f"run '{program} {op.command} {master.name}' if you want to operate"
                         " on the master regardless" if program
                         else "it does not support out-of-band operations")
                raise errors.OpPrereqError(
                    f"Operating on the master node {master.name} is not allowed for "
                    f"{op.command}; {extra}", errors.ECODE_INVAL)
        else:
            self.node_uuids = [n.uuid for n in self.cfg.get_node_list()
                               if not (op.command in _SKIP_MASTER and n.uuid == master_uuid)]
        self.nodes: list[Node] = []
        for uuid in self.node_uuids:
            node = self.cfg.get_node(uuid)
            if node is None:
                raise errors.OpPrereqError(f"Node {uuid} not found", errors.ECODE_NOENT)
            if op.command == C.OOB_POWER_OFF and not op.ignore_status and not node.offline:
                raise errors.OpPrereqError(
                    f"Cannot power off node {node.name} because it is not marked offline",
                    errors.ECODE_STATE)
            self.nodes.append(node)
        self.nodes.sort(key=lambda n: nice_sort_key(n.name))

    def _run(self, master_uuid: str, program: str, node: Node) -> tuple[int, Any]:
        """``(status, payload)`` of one node's program run."""
        op = self.op
        res = self.rpc.call("run_oob", [master_uuid],
                            [program, op.command, node.name, op.timeout],
                            timeout=op.timeout + _RPC_MARGIN)[master_uuid]
        if res.fail_msg:
            self.log_warning(f"Out-of-band RPC failed on node '{node.name}': {res.fail_msg}")
            return RS_NODATA, None
        text = res.payload if isinstance(res.payload, str) else ""
        try:
            payload = json.loads(text) if text.strip() else None
        except ValueError as err:
            self.log_warning(f"Payload returned by node '{node.name}' is not valid JSON: "
                             f"{err}")
            return RS_NODATA, None
        problems = check_oob_payload(op.command, payload)
        if problems:
            self.log_warning(f"Payload returned by node '{node.name}' is not valid: "
                             f"Check of out-of-band payload failed due to "
                             f"{', '.join(problems)}")
            return RS_NODATA, None
        return RS_NORMAL, payload

    def exec(self, feedback_fn: FeedbackFn) -> list[list[tuple[int, Any]]]:
        op = self.op
        cluster = self.cfg.get_cluster()
        master_uuid = self.master_uuid()
        ret: list[list[tuple[int, Any]]] = []
        for idx, node in enumerate(self.nodes):
            entry: list[tuple[int, Any]] = [(RS_NORMAL, node.name)]
            ret.append(entry)
            program = oob_program(cluster, node, self.cfg.get_nodegroup(node.group))
            if not program:
                entry.append((RS_UNAVAIL, None))
                continue
            log.info("Running out-of-band command '%s' using '%s' on %s", op.command,
                     program, node.name)
            status, payload = self._run(master_uuid, program, node)
            entry.append((status, payload))
            if status != RS_NORMAL:
                continue
            if op.command == C.OOB_HEALTH:
                for item, item_status in payload:
                    if item_status in (C.OOB_STATUS_WARNING, C.OOB_STATUS_CRITICAL):
                        self.log_warning(f"Item '{item}' on node '{node.name}' has status "
                                         f"'{item_status}'")
            elif op.command == C.OOB_POWER_STATUS:
                powered = payload[C.OOB_POWER_STATUS_POWERED]
                if powered != node.powered:
                    self.log_warning(f"Recorded power state ({node.powered}) of node "
                                     f"'{node.name}' does not match actual power state "
                                     f"({powered})")
            elif op.command in (C.OOB_POWER_ON, C.OOB_POWER_OFF):
                current = self.cfg.get_node(node.uuid)
                if current is not None:
                    updated = current.model_copy(deep=True)
                    updated.powered = op.command == C.OOB_POWER_ON
                    self.cfg.commit(update=[updated])
                if op.command == C.OOB_POWER_ON and idx < len(self.nodes) - 1:
                    time.sleep(op.power_delay)
        return ret
