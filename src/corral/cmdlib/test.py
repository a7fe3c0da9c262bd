"""Logical units for testing the job queue and locking (``gnt-debug``).

Mirrors ``ganeti.cmdlib.test``: OP_TEST_DELAY sleeps on the master and/or
nodes; OP_TEST_JQUEUE writes log messages and can fail on request.
"""

from __future__ import annotations

import time
from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, NoHooksLU


class LUTestDelay(NoHooksLU):
    """Sleep ``duration`` seconds on the master and on ``on_nodes``."""

    REQ_BGL = False

    def expand_names(self) -> None:
        self.needed_locks = {}
        self.node_uuids = [self.cfg.expand_node(n).uuid for n in self.op.on_nodes]
        if self.op.on_node_uuids:
            self.node_uuids.extend(self.op.on_node_uuids)
        if not self.op.no_locks and self.node_uuids:
            self.needed_locks[C.LEVEL_NODE] = list(self.node_uuids)

    def _delay_once(self) -> None:
        if self.op.on_master:
            deadline = time.monotonic() + self.op.duration
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 0.2))
        if self.node_uuids:
            results = self.rpc.call("test_delay", self.node_uuids, [self.op.duration],
                                    timeout=int(self.op.duration) + 5)
            for res in results.values():
                res.raise_for("Failure during rpc call")

    def exec(self, feedback_fn: FeedbackFn) -> None:
        for i in range(max(self.op.repeat, 0) or 1):
            if self.op.repeat:
                self.log_info(f"Test delay iteration {i + 1}/{self.op.repeat}")
            self._delay_once()


class LUTestJqueue(NoHooksLU):
    """Exercise the job queue: log messages, optional failure."""

    REQ_BGL = False

    def expand_names(self) -> None:
        self.needed_locks = {}

    def exec(self, feedback_fn: FeedbackFn) -> Any:
        for msg in self.op.log_messages:
            self.op_ctx.feedback(msg, C.ELOG_JQUEUE_TEST)
        if self.op.fail:
            raise errors.OpExecError("Opcode failure was requested")
        return True
