"""Logical units for tags on the cluster, nodes, node groups, instances, networks.

Mirrors ``ganeti.cmdlib.tags`` (OP_TAGS_GET, OP_TAGS_SEARCH, OP_TAGS_SET,
OP_TAGS_DEL); tag syntax and limits as ``ganeti.objects.TaggableObject``.
"""

from __future__ import annotations

import re
from typing import Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, NoHooksLU
from corral.objects import TaggableObject

_TAG_RE = re.compile(r"^[\w.+*/:@-]+$")


def validate_tag(tag: str) -> None:
    """Raise OpPrereqError ECODE_INVAL unless ``tag`` is a valid Ganeti tag."""
    if not isinstance(tag, str) or not tag:
        raise errors.OpPrereqError("Tags must be non-empty strings", errors.ECODE_INVAL)
    if len(tag) > C.MAX_TAG_LEN:
        raise errors.OpPrereqError(f"Tag too long (>{C.MAX_TAG_LEN} chars)",
                                   errors.ECODE_INVAL)
    if not _TAG_RE.match(tag):
        raise errors.OpPrereqError(f"Invalid tag '{tag}'", errors.ECODE_INVAL)


class _TagsLU(NoHooksLU):
    """Common name expansion and locking of the tagged object."""

    def check_arguments(self) -> None:
        if self.op.kind != C.TAG_CLUSTER and not self.op.name:
            raise errors.OpPrereqError(f"Tag kind {self.op.kind} needs an object name",
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        self.needed_locks = {}
        kind = self.op.kind
        if kind == C.TAG_NODE:
            node = self.cfg.expand_node(self.op.name)
            self.op.name = node.name
            self.needed_locks[C.LEVEL_NODE] = [node.uuid]
        elif kind == C.TAG_INSTANCE:
            inst = self.cfg.expand_instance(self.op.name)
            self.op.name = inst.name
            self.needed_locks[C.LEVEL_INSTANCE] = [inst.name]
        elif kind == C.TAG_NODEGROUP:
            group = self.cfg.expand_nodegroup(self.op.name)
            self.op.name = group.name
            self.needed_locks[C.LEVEL_NODEGROUP] = [group.uuid]
        elif kind == C.TAG_NETWORK:
            net = self.cfg.expand_network(self.op.name)
            self.op.name = net.name
            self.needed_locks[C.LEVEL_NETWORK] = [net.uuid]

    def get_target(self) -> TaggableObject:
        kind = self.op.kind
        if kind == C.TAG_CLUSTER:
            return self.cfg.get_cluster()
        if kind == C.TAG_NODE:
            return self.cfg.expand_node(self.op.name)
        if kind == C.TAG_INSTANCE:
            return self.cfg.expand_instance(self.op.name)
        if kind == C.TAG_NETWORK:
            return self.cfg.expand_network(self.op.name)
        return self.cfg.expand_nodegroup(self.op.name)


class LUTagsGet(_TagsLU):
    REQ_BGL = False

    def expand_names(self) -> None:
        super().expand_names()
        if not self.op.use_locking:
            self.needed_locks = {}
        self.share_locks = dict.fromkeys(C.LEVELS, 1)

    def exec(self, feedback_fn: FeedbackFn) -> list[str]:
        return sorted(self.get_target().tags)


class LUTagsSearch(NoHooksLU):
    REQ_BGL = False

    def check_arguments(self) -> None:
        try:
            self.regex = re.compile(self.op.pattern)
        except re.error as exc:
            raise errors.OpPrereqError(f"Invalid search pattern '{self.op.pattern}': {exc}",
                                       errors.ECODE_INVAL) from None

    def expand_names(self) -> None:
        self.needed_locks = {}

    def exec(self, feedback_fn: FeedbackFn) -> list[list[str]]:
        found: list[list[str]] = []
        cluster = self.cfg.get_cluster()
        objects: list[tuple[str, TaggableObject]] = [("/cluster", cluster)]
        objects += [(f"/instances/{i.name}", i) for i in self.cfg.get_instances().values()]
        objects += [(f"/nodes/{n.name}", n) for n in self.cfg.get_nodes().values()]
        objects += [(f"/nodegroup/{g.name}", g) for g in self.cfg.get_nodegroups().values()]
        objects += [(f"/network/{n.name}", n) for n in self.cfg.get_networks().values()]
        for path, obj in objects:
            for tag in obj.tags:
                if self.regex.search(tag):
                    found.append([path, tag])
        return sorted(found)


class LUTagsSet(_TagsLU):
    def check_arguments(self) -> None:
        super().check_arguments()
        for tag in self.op.tags:
            validate_tag(tag)

    def exec(self, feedback_fn: FeedbackFn) -> None:
        target = self.get_target().model_copy(deep=True)
        new = [t for t in self.op.tags if t not in target.tags]
        if len(target.tags) + len(new) > C.MAX_TAGS_PER_OBJ:
            raise errors.OpPrereqError("Too many tags", errors.ECODE_INVAL)
        target.tags = target.tags + new
        self.cfg.commit(update=[target])


class LUTagsDel(_TagsLU):
    def check_arguments(self) -> None:
        super().check_arguments()
        for tag in self.op.tags:
            validate_tag(tag)

    def check_prereq(self) -> None:
        target = self.get_target()
        missing = sorted(set(self.op.tags) - set(target.tags))
        if missing:
            raise errors.OpPrereqError(
                "Tag(s) " + ", ".join(f"'{t}'" for t in missing) + " not found",
                errors.ECODE_NOENT)

    def exec(self, feedback_fn: FeedbackFn) -> Any:
        target = self.get_target().model_copy(deep=True)
        target.tags = [t for t in target.tags if t not in set(self.op.tags)]
        self.cfg.commit(update=[target])
