"""Base classes of logical units (LUs) and tasklets.

Mirrors ``ganeti.cmdlib.base``. Each opcode ``OpXxx`` is executed by the
logical unit ``LUXxx``; :class:`corral.mcpu.Processor` calls its phases in
Ganeti's order: ``check_arguments`` (in the constructor), ``expand_names``,
``declare_locks`` per level (then the locks are acquired), ``check_prereq``,
hooks pre, ``exec``, hooks post.

Rules: ``check_arguments`` does no cluster access; ``expand_names`` fills
``needed_locks``; ``check_prereq`` re-reads objects under the locks and must
not change anything (raise :class:`errors.OpPrereqError`); ``exec`` changes
nodes through ``self.rpc`` and the config through ``self.cfg.commit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from corral import constants as C
from corral import errors
from corral.objects import Instance, Node
from corral.opcodes import OpCode

if TYPE_CHECKING:
    from corral.config import ConfigStore
    from corral.jobs import OpContext
    from corral.masterd.context import MasterContext
    from corral.rpc import RpcRunner

ALL_SET = None            # "the whole level" in needed_locks
LOCKS_REPLACE = "replace"
LOCKS_APPEND = "append"

FeedbackFn = Callable[[str], None]


class ResultWithJobs:
    """Returned by ``exec`` to submit follow-up jobs (``cmdlib.ResultWithJobs``).

    ``jobs`` is a list of jobs, each a list of opcodes; ``extra`` keys are added
    to the opcode result next to ``jobs``.
    """

    def __init__(self, jobs: list[list[OpCode]], **extra: Any) -> None:
        self.jobs = jobs
        self.extra = extra


class LogicalUnit:
    """A logical unit with hooks (``HPATH`` set) or without (``HPATH`` None)."""

    HPATH: str | None = None
    HTYPE: str | None = None
    REQ_BGL: bool = True
    #: Whether :meth:`get_locked_instance` accepts an instance a create job
    #: has not completed (``Instance.creating_job`` set): only removal does.
    ACCEPTS_INCOMPLETE: bool = False

    def __init__(self, context: "MasterContext", op: OpCode, op_ctx: "OpContext",
                 owner: Any) -> None:
        self.context = context
        self.op = op
        self.op_ctx = op_ctx
        self.owner = owner
        self.cfg: "ConfigStore" = context.cfg
        self.rpc: "RpcRunner" = context.rpc
        self.glm = context.glm
        self.paths = context.paths
        self.needed_locks: dict[str, list[str] | None] | None = None
        self.share_locks: dict[str, int] = dict.fromkeys(C.LEVELS, 0)
        self.recalculate_locks: dict[str, str] = {}
        self.tasklets: list[Tasklet] | None = None
        self.dry_run_result: Any = None
        self.check_arguments()

    # -- phases -------------------------------------------------------------------
    def check_arguments(self) -> None:
        """Syntactic checks of the opcode; no cluster access."""

    def expand_names(self) -> None:
        """Canonicalise names, fill ``needed_locks`` (``{}`` for no locks)."""
        raise NotImplementedError

    def declare_locks(self, level: str) -> None:
        """Compute locks of ``level`` from those already held (optional)."""

    def check_prereq(self) -> None:
        if self.tasklets:
            for tl in self.tasklets:
                tl.check_prereq()

    def exec(self, feedback_fn: FeedbackFn) -> Any:
        if self.tasklets:
            result = None
            for tl in self.tasklets:
                result = tl.exec(feedback_fn)
            return result
        raise NotImplementedError

    # -- hooks --------------------------------------------------------------------
    def build_hooks_env(self) -> dict[str, Any]:
        """LU-specific hook variables, without the GANETI_ prefix."""
        return {}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        """(pre-phase node UUIDs, post-phase node UUIDs)."""
        return [], []

    def prepare_post_hook_nodes(self, post_nodes: list[str]) -> list[str]:
        """Adjust the post-phase node list after exec (e.g. a removed node)."""
        return [u for u in post_nodes if self.cfg.get_node(u) is not None]

    def hooks_callback(self, phase: str, feedback_fn: FeedbackFn, lu_result: Any) -> Any:
        return lu_result

    # -- helpers ------------------------------------------------------------------
    def log_info(self, message: str) -> None:
        self.op_ctx.feedback(message)

    def log_warning(self, message: str) -> None:
        self.op_ctx.feedback(f"WARNING: {message}")

    def log_step(self, current: int, total: int, message: str) -> None:
        self.op_ctx.feedback(f"STEP {current}/{total} {message}")

    def owned_locks(self, level: str) -> set[str]:
        """Names locked at ``level``; a whole-level lock expands to every
        object of that level currently in the config."""
        if self.glm.is_owned_all(self.owner, level):
            if level == C.LEVEL_INSTANCE:
                return {i.name for i in self.cfg.get_instances().values()}
            if level in (C.LEVEL_NODE, C.LEVEL_NODE_RES):
                return set(self.cfg.get_nodes())
            if level == C.LEVEL_NODEGROUP:
                return set(self.cfg.get_nodegroups())
        return set(self.glm.list_owned(self.owner, level))

    def master_uuid(self) -> str:
        return self.cfg.get_cluster().master_node

    def expand_and_lock_instance(self) -> None:
        """Expand ``op.instance_name`` and lock that instance (exclusively)."""
        inst = self.cfg.expand_instance(self.op.instance_name)
        self.op.instance_name = inst.name
        if hasattr(self.op, "instance_uuid"):
            self.op.instance_uuid = inst.uuid
        self.needed_locks = self.needed_locks or {}
        self.needed_locks[C.LEVEL_INSTANCE] = [inst.name]

    def lock_instances_nodes(self, level: str = C.LEVEL_NODE,
                             primary_only: bool = False) -> None:
        """Fill node (or node-res) locks of ``level`` from the locked instances.

        Used from ``declare_locks`` when ``recalculate_locks[level]`` is set.
        """
        wanted: list[str] = []
        for name in sorted(self.owned_locks(C.LEVEL_INSTANCE)):
            inst = self.cfg.get_instance_by_name(name)
            if inst is None:
                continue
            nodes = [inst.primary_node] if primary_only else inst.all_nodes
            wanted.extend(n for n in nodes if n not in wanted)
        assert self.needed_locks is not None
        if self.recalculate_locks.get(level) == LOCKS_APPEND and \
                self.needed_locks.get(level):
            current = list(self.needed_locks[level] or [])
            wanted = current + [n for n in wanted if n not in current]
        self.needed_locks[level] = wanted
        del self.recalculate_locks[level]

    def get_locked_instance(self) -> Instance:
        """The instance named in the opcode, re-read under its lock.

        Raises OpPrereqError ECODE_NOENT if it disappeared meanwhile, and
        ECODE_STATE if a create job has not completed it (unless the LU
        ``ACCEPTS_INCOMPLETE``): its disks or OS may be missing.
        """
        inst = self.cfg.get_instance_by_name(self.op.instance_name)
        if inst is None:
            raise errors.OpPrereqError(f"Instance '{self.op.instance_name}' not known",
                                       errors.ECODE_NOENT)
        if inst.creating_job is not None and not self.ACCEPTS_INCOMPLETE:
            raise errors.OpPrereqError(
                f"Instance '{inst.name}' was not completely created (create job "
                f"{inst.creating_job}); remove it with 'gnt-instance remove'",
                errors.ECODE_STATE)
        return inst

    def check_node_online(self, node_uuid: str, msg: str | None = None) -> Node:
        node = self.cfg.get_node(node_uuid)
        if node is None:
            raise errors.OpPrereqError(f"Node '{node_uuid}' not known", errors.ECODE_NOENT)
        if node.offline:
            raise errors.OpPrereqError(msg or f"Can't use offline node {node.name}",
                                       errors.ECODE_STATE)
        return node

    def check_node_not_drained(self, node_uuid: str) -> None:
        node = self.cfg.get_node(node_uuid)
        if node is not None and node.drained:
            raise errors.OpPrereqError(f"Can't use drained node {node.name}",
                                       errors.ECODE_STATE)

    def check_node_vm_capable(self, node_uuid: str) -> None:
        node = self.cfg.get_node(node_uuid)
        if node is not None and not node.vm_capable:
            raise errors.OpPrereqError(f"Can't use non-vm_capable node {node.name}",
                                       errors.ECODE_STATE)


class NoHooksLU(LogicalUnit):
    """A logical unit without hooks."""

    HPATH = None
    HTYPE = None

    def build_hooks_env(self) -> dict[str, Any]:
        raise errors.ProgrammerError("build_hooks_env called for a NoHooksLU")


class QueryLU(NoHooksLU):
    """Base of read-only LUs: no BGL exclusivity, all locks shared."""

    REQ_BGL = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.share_locks = dict.fromkeys(C.LEVELS, 1)


class Tasklet:
    """A reusable part of an LU sharing its locks, config and RPC."""

    def __init__(self, lu: LogicalUnit) -> None:
        self.lu = lu
        self.cfg = lu.cfg
        self.rpc = lu.rpc

    def check_prereq(self) -> None:
        raise NotImplementedError

    def exec(self, feedback_fn: FeedbackFn) -> Any:
        raise NotImplementedError
