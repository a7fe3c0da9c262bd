"""Filled parameters shared by every query: an instance's hvparams, beparams
and a NIC's nicparams completed with the cluster's defaults.

Filling is pure in (cluster object, hypervisor, OS, custom values), and a
cluster of 10,000 instances has a handful of distinct combinations, so each
result is computed once and shared by every row of every query until the
cluster object changes (any commit to it replaces the object, which drops
the whole cache) — re-filling per row was a tenth of a 10,000-row query and
the per-row copies most of the master's memory at that size (issue 9).
Shared results are :class:`ReadOnlyDict`: a caller that tried to change one
would change every row, so it raises ``TypeError`` instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from typing import Any, NoReturn

from corral.objects import Cluster, Instance

# Distinct entries kept per kind; beyond that the kind's cache starts afresh
# (only reached when nearly every instance has its own custom values).
MAX_ENTRIES = 16384


class ReadOnlyDict(dict[str, Any]):
    """A dict that refuses changes (``TypeError``); copies are plain dicts.

    JSON encoders and ``dict(...)``/``{**d}`` see an ordinary dict.
    """

    __slots__ = ()

    def _readonly(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise TypeError("Filled query parameters are shared and read-only; copy them first")

    __setitem__ = __delitem__ = __ior__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly

    def copy(self) -> dict[str, Any]:  # type: ignore[override]
        return dict(self)

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


def _frozen(custom: dict[str, Any]) -> Hashable | None:
    """A hashable key for ``custom`` values, None if some value is unhashable."""
    if not custom:
        return ()
    key = tuple(sorted(custom.items()))
    try:
        hash(key)
    except TypeError:
        return None
    return key


class FilledParams:
    """Shared filled parameters for one cluster object at a time (thread-safe:
    concurrent misses compute the same value twice, never a wrong one)."""

    def __init__(self) -> None:
        # (cluster, hv, be, nic) replaced as a whole when the cluster changes.
        self._state: tuple[Cluster | None, dict[Hashable, ReadOnlyDict],
                           dict[Hashable, ReadOnlyDict], dict[Hashable, ReadOnlyDict]] = (
            None, {}, {}, {})

    def _maps(self, cluster: Cluster) -> tuple[dict[Hashable, ReadOnlyDict], ...]:
        state = self._state
        if state[0] is not cluster:
            state = self._state = (cluster, {}, {}, {})
        return state[1:]

    @staticmethod
    def _get(cache: dict[Hashable, ReadOnlyDict], key: Hashable | None,
             fill: Callable[[], dict[str, Any]]) -> ReadOnlyDict:
        if key is None:
            return ReadOnlyDict(fill())
        value = cache.get(key)
        if value is None:
            if len(cache) >= MAX_ENTRIES:
                cache.clear()
            value = cache[key] = ReadOnlyDict(fill())
        return value

    def hv(self, cluster: Cluster, inst: Instance) -> ReadOnlyDict:
        """hvparams of ``inst`` filled, without the cluster-wide ones
        (``Cluster.fill_hv(inst, skip_globals=True)``)."""
        custom = _frozen(inst.hvparams)
        key = None if custom is None else (inst.hypervisor, inst.os, custom)
        return self._get(self._maps(cluster)[0], key,
                         lambda: cluster.fill_hv(inst, skip_globals=True))

    def be(self, cluster: Cluster, inst: Instance) -> ReadOnlyDict:
        """beparams of ``inst`` filled (``Cluster.fill_be``)."""
        return self._get(self._maps(cluster)[1], _frozen(inst.beparams),
                         lambda: cluster.fill_be(inst))

    def nic(self, cluster: Cluster, custom: dict[str, Any]) -> ReadOnlyDict:
        """nicparams ``custom`` filled (``Cluster.simple_fill_nic``)."""
        return self._get(self._maps(cluster)[2], _frozen(custom),
                         lambda: cluster.simple_fill_nic(custom))
