"""Hypervisor registry: :func:`get_hypervisor_class` and :func:`get_hypervisor`.

Mirrors ``ganeti.hypervisor.GetHypervisor``. Implementations are imported
lazily so the master does not load QEMU-specific code it does not need.
"""

from __future__ import annotations

import importlib

from corral import constants as C
from corral import errors
from corral.hypervisor.base import BaseHypervisor
from corral.paths import Paths

_MODULES = {
    C.HT_FAKE: ("corral.hypervisor.fake", "FakeHypervisor"),
    C.HT_KVM: ("corral.hypervisor.kvm", "KVMHypervisor"),
}


def get_hypervisor_class(name: str) -> type[BaseHypervisor]:
    """The class for hypervisor ``name``.

    Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``) for an unknown or
    unimplemented hypervisor.
    """
    try:
        module_name, class_name = _MODULES[name]
    except KeyError:
        raise errors.OpPrereqError(f"Hypervisor '{name}' is not supported by Corral",
                                   errors.ECODE_INVAL) from None
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def get_hypervisor(name: str, paths: Paths) -> BaseHypervisor:
    """An instance of hypervisor ``name`` working below ``paths.root``."""
    return get_hypervisor_class(name)(paths)
