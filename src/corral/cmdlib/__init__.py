"""Logical units, one file per area; ``LUXxx`` executes opcode ``OpXxx``.

Mirrors ``ganeti.cmdlib``. :func:`get_lu_class` maps an OP_ID to its LU by
that naming rule.
"""

from __future__ import annotations

import importlib

from corral import errors
from corral.cmdlib.base import LogicalUnit
from corral.opcodes import all_opcodes

# Modules holding LUs; each is imported on first use.
_LU_MODULES = (
    "corral.cmdlib.cluster",
    "corral.cmdlib.cluster_disks",
    "corral.cmdlib.node",
    "corral.cmdlib.instance_create",
    "corral.cmdlib.instance_multi_alloc",
    "corral.cmdlib.instance_operation",
    "corral.cmdlib.instance_set_params",
    "corral.cmdlib.instance_query",
    "corral.cmdlib.instance_storage",
    "corral.cmdlib.instance_recreate",
    "corral.cmdlib.instance_migration",
    "corral.cmdlib.instance_move",
    "corral.cmdlib.node_migration",
    "corral.cmdlib.node_storage",
    "corral.cmdlib.group",
    "corral.cmdlib.group_evacuate",
    "corral.cmdlib.backup",
    "corral.cmdlib.os",
    "corral.cmdlib.tags",
    "corral.cmdlib.network",
    "corral.cmdlib.query",
    "corral.cmdlib.test",
    "corral.cmdlib.oob",
)

_registry: dict[str, type[LogicalUnit]] | None = None


def _build_registry() -> dict[str, type[LogicalUnit]]:
    classes: dict[str, type[LogicalUnit]] = {}
    for mod_name in _LU_MODULES:
        try:
            module = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name == mod_name:
                continue        # area not implemented yet
            raise
        for name, obj in vars(module).items():
            if name.startswith("LU") and isinstance(obj, type) and \
                    issubclass(obj, LogicalUnit):
                classes[name] = obj
    registry: dict[str, type[LogicalUnit]] = {}
    for op_id, op_cls in all_opcodes().items():
        lu_cls = classes.get("LU" + op_cls.__name__[2:])
        if lu_cls is not None:
            registry[op_id] = lu_cls
    return registry


def get_lu_class(op_id: str) -> type[LogicalUnit]:
    """The LU class for ``op_id``; OpPrereqError ECODE_INVAL if none exists."""
    global _registry
    if _registry is None:
        _registry = _build_registry()
    try:
        return _registry[op_id]
    except KeyError:
        raise errors.OpPrereqError(f"Opcode {op_id} is not implemented by Corral",
                                   errors.ECODE_INVAL) from None
