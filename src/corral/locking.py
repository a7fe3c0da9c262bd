"""In-process hierarchical locks: levels, shared/exclusive, fairness, timeouts.

Mirrors Ganeti's ``locking.GanetiLockManager`` (and what WConfd does for it in
3.0): locks live in levels (:data:`corral.constants.LEVELS`, acquired in that
order), a request names several locks of one level and is granted all at once
or not at all, and ``names=None`` (:data:`ALL_SET`) stands for the whole level
(Ganeti's ``<level>/[lockset]``), including names that do not exist yet.

Waiters of a level are served in ``(priority, arrival)`` order; lower numbers
are more urgent, as Ganeti's opcode priorities. A waiter is granted only if it
conflicts neither with the holders nor with any waiter ahead of it, so a stream
of shared requests cannot starve an exclusive one. Grants are made by the
thread that changes the lock state (release, downgrade, timeout, arrival), so
a woken waiter never has to re-check anything.

One mutex guards the whole manager; every waiter has its own condition on that
mutex, so a release wakes only the threads it granted.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from corral import constants as C
from corral import errors

#: ``names`` value meaning "the whole level" (Ganeti's ``locking.ALL_SET``).
ALL_SET = None

MODE_EXCLUSIVE = "exclusive"
MODE_SHARED = "shared"
_LOCKSET = "[lockset]"
_LEVEL_INDEX = {level: idx for idx, level in enumerate(C.LEVELS)}


@dataclass
class _Waiter:
    owner: Hashable
    level: str
    names: frozenset[str] | None  # None = the whole level
    shared: bool
    key: tuple[int, int]  # (priority, arrival) = service order
    cond: threading.Condition
    granted: bool = False


@dataclass
class _Level:
    """Holders and waiters of one level."""

    excl: dict[str, Hashable] = field(default_factory=dict)  # name -> exclusive owner
    shared: dict[str, set[Hashable]] = field(default_factory=dict)  # name -> shared owners
    all_excl: Hashable | None = None  # exclusive owner of the whole level
    has_all_excl: bool = False
    all_shared: set[Hashable] = field(default_factory=set)
    n_held: int = 0  # number of (owner, lock) holdings, whole-level included
    n_excl: int = 0  # exclusive holdings among them
    waiters: list[_Waiter] = field(default_factory=list)  # sorted by key
    waiter_keys: list[tuple[int, int]] = field(default_factory=list)

    def conflicts(self, names: frozenset[str] | None, shared: bool) -> bool:
        """Whether a request conflicts with the current holders."""
        if names is None:
            return self.n_excl > 0 if shared else self.n_held > 0
        if self.has_all_excl or (not shared and self.all_shared):
            return True
        for name in names:
            if name in self.excl or (not shared and self.shared.get(name)):
                return True
        return False


class _Blocked:
    """What the waiters seen so far in a scan want (they block later ones)."""

    def __init__(self) -> None:
        self.excl: set[str] = set()
        self.shared: set[str] = set()
        self.all_excl = False
        self.all_shared = False
        self.any_excl = False
        self.any = False

    def conflicts(self, names: frozenset[str] | None, shared: bool) -> bool:
        if not self.any:
            return False
        if names is None:
            return self.any_excl if shared else True
        if self.all_excl or (not shared and self.all_shared):
            return True
        if shared:
            return not self.excl.isdisjoint(names)
        return not (self.excl.isdisjoint(names) and self.shared.isdisjoint(names))

    def add(self, names: frozenset[str] | None, shared: bool) -> None:
        self.any = True
        if not shared:
            self.any_excl = True
        if names is None:
            if shared:
                self.all_shared = True
            else:
                self.all_excl = True
        elif shared:
            self.shared.update(names)
        else:
            self.excl.update(names)


@dataclass
class _Owned:
    """Locks one owner holds at one level."""

    names: dict[str, bool] = field(default_factory=dict)  # name -> shared
    whole: bool | None = None  # None: not held; else shared flag


class LockManager:
    """Locks by level for the jobs of one master daemon.

    Owners are any hashable values (a job id, an ``(job_id, op_idx)`` pair).
    Thread-safe. See the module docstring for the rules.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._levels: dict[str, _Level] = {level: _Level() for level in C.LEVELS}
        self._owned: dict[Hashable, dict[str, _Owned]] = {}
        self._arrivals = itertools.count()

    # ------------------------------------------------------------------ API

    def acquire(self, owner: Hashable, level: str, names: Iterable[str] | None,
                shared: bool, timeout: float | None = None, priority: int = 0) -> None:
        """Acquire ``names`` (or the whole level) of ``level`` for ``owner``.

        Args:
          owner: who holds the locks (hashable).
          level: one of ``constants.LEVELS``.
          names: lock names; ``None`` (:data:`ALL_SET`) for the whole level.
            An empty list acquires nothing.
          shared: shared (True) or exclusive (False) mode.
          timeout: seconds to wait; ``None`` waits forever, ``0`` only tries.
          priority: waiting priority, lower is more urgent (Ganeti's -20..19).

        Raises:
          errors.LockError: (``ECODE_TEMP_NORES``) the timeout expired; nothing
            was acquired by this call.
          errors.ProgrammerError: unknown level, ``owner`` holds locks at a
            later level, or already holds one of the requested locks.

        Mirrors Ganeti's ``GanetiLockManager.acquire``.
        """
        wanted = self._normalize(level, names)
        if wanted is not None and not wanted:
            return
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        with self._mutex:
            self._check_request(owner, level, wanted)
            lvl = self._levels[level]
            waiter = _Waiter(owner, level, wanted, shared, (priority, next(self._arrivals)),
                             threading.Condition(self._mutex))
            pos = bisect.bisect_right(lvl.waiter_keys, waiter.key)
            lvl.waiters.insert(pos, waiter)
            lvl.waiter_keys.insert(pos, waiter.key)
            self._schedule(level)
            try:
                while not waiter.granted:
                    if deadline is None:
                        waiter.cond.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        what = "all" if wanted is None else ", ".join(sorted(wanted))
                        raise errors.LockError(
                            f"Timeout after {timeout}s while acquiring {level} locks ({what})"
                            f" in {'shared' if shared else 'exclusive'} mode",
                            errors.ECODE_TEMP_NORES)
                    waiter.cond.wait(remaining)
            except BaseException:
                if not waiter.granted:
                    self._remove_waiter(lvl, waiter)
                    # The leaving waiter may have been blocking others.
                    self._schedule(level)
                raise

    def release(self, owner: Hashable, level: str | None = None,
                names: Iterable[str] | None = None) -> None:
        """Release locks of ``owner``.

        ``level=None`` releases everything the owner holds (``names`` must be
        ``None`` then); ``names=None`` releases all of ``level``, whole-level
        lock included.

        Raises:
          errors.ProgrammerError: unknown level, names given without a level,
            or a named lock is not held individually by ``owner``.
        """
        with self._mutex:
            if level is None:
                if names is not None:
                    raise errors.ProgrammerError("Lock names given without a level")
                levels = list(self._owned.get(owner, {}))
            else:
                self._check_level(level)
                levels = [level]
            for lv in levels:
                owned = self._owned.get(owner, {}).get(lv)
                if owned is None:
                    if names is not None:
                        raise errors.ProgrammerError(
                            f"{owner!r} holds no {lv} locks, cannot release {list(names)}")
                    continue
                if names is None:
                    to_release = list(owned.names)
                    release_whole = owned.whole is not None
                else:
                    to_release = sorted(set(names))
                    missing = [n for n in to_release if n not in owned.names]
                    if missing:
                        raise errors.ProgrammerError(
                            f"{owner!r} does not hold {lv} locks {missing}")
                    release_whole = False
                self._drop(owner, lv, owned, to_release, release_whole)
                self._schedule(lv)

    def downgrade(self, owner: Hashable, level: str, names: Iterable[str] | None = None) -> None:
        """Turn exclusive locks of ``owner`` at ``level`` into shared ones.

        ``names=None`` downgrades everything held at the level (whole-level
        lock included). Locks already shared are left alone.

        Raises:
          errors.ProgrammerError: unknown level, or a named lock is not held.

        Mirrors Ganeti's ``LockSet.downgrade``.
        """
        with self._mutex:
            self._check_level(level)
            owned = self._owned.get(owner, {}).get(level)
            lvl = self._levels[level]
            if names is None:
                targets = list(owned.names) if owned else []
                whole = owned is not None and owned.whole is False
            else:
                targets = sorted(set(names))
                missing = [n for n in targets if owned is None or n not in owned.names]
                if missing:
                    raise errors.ProgrammerError(
                        f"{owner!r} does not hold {level} locks {missing}")
                whole = False
            changed = False
            for name in targets:
                if owned.names[name]:
                    continue
                owned.names[name] = True
                del lvl.excl[name]
                lvl.shared.setdefault(name, set()).add(owner)
                lvl.n_excl -= 1
                changed = True
            if whole:
                owned.whole = True
                lvl.has_all_excl = False
                lvl.all_excl = None
                lvl.all_shared.add(owner)
                lvl.n_excl -= 1
                changed = True
            if changed:
                self._schedule(level)

    def list_owned(self, owner: Hashable, level: str) -> set[str]:
        """Names ``owner`` holds individually at ``level``.

        A whole-level lock is not expanded into names (the manager does not
        know which objects exist); check it with :meth:`is_owned_all`.
        """
        with self._mutex:
            self._check_level(level)
            owned = self._owned.get(owner, {}).get(level)
            return set(owned.names) if owned else set()

    def is_owned_all(self, owner: Hashable, level: str) -> bool:
        """Whether ``owner`` holds the whole ``level`` (any mode)."""
        with self._mutex:
            self._check_level(level)
            owned = self._owned.get(owner, {}).get(level)
            return owned is not None and owned.whole is not None

    def is_owned(self, owner: Hashable, level: str, name: str | None = None,
                 shared: bool | None = None) -> bool:
        """Whether ``owner`` holds ``name`` (``None``: anything) at ``level``.

        ``shared`` restricts the check to one mode. A whole-level holder owns
        every name.
        """
        with self._mutex:
            self._check_level(level)
            owned = self._owned.get(owner, {}).get(level)
            if owned is None:
                return False
            modes: list[bool] = []
            if owned.whole is not None:
                modes.append(owned.whole)
            if name is None:
                modes.extend(owned.names.values())
            elif name in owned.names:
                modes.append(owned.names[name])
            return any(shared is None or m == shared for m in modes)

    def info(self) -> list[dict[str, Any]]:
        """Held and wanted locks, as ``gnt-debug locks`` shows them.

        Returns a list sorted by level order then name, of dicts with ``name``
        (``"instance/inst1"``, ``"instance/[lockset]"`` for the whole level),
        ``mode`` (``"exclusive"``, ``"shared"`` or ``None`` if not held),
        ``owners`` (sorted ``str(owner)`` list) and ``pending`` (list of
        ``[mode, [owner, ...]]`` in service order; waiters for the whole level
        are listed under ``[lockset]``).
        """
        result = []
        with self._mutex:
            for level in C.LEVELS:
                lvl = self._levels[level]
                entries: dict[str, dict[str, Any]] = {}

                def entry(name: str, _entries: dict = entries) -> dict[str, Any]:
                    return _entries.setdefault(
                        name, {"mode": None, "owners": [], "pending": []})

                for name, owner in lvl.excl.items():
                    entry(name).update(mode=MODE_EXCLUSIVE, owners=[owner])
                for name, owners in lvl.shared.items():
                    if owners:
                        entry(name).update(mode=MODE_SHARED, owners=list(owners))
                if lvl.has_all_excl:
                    entry(_LOCKSET).update(mode=MODE_EXCLUSIVE, owners=[lvl.all_excl])
                elif lvl.all_shared:
                    entry(_LOCKSET).update(mode=MODE_SHARED, owners=list(lvl.all_shared))
                for waiter in lvl.waiters:
                    mode = MODE_SHARED if waiter.shared else MODE_EXCLUSIVE
                    for name in ([_LOCKSET] if waiter.names is None else sorted(waiter.names)):
                        pending = entry(name)["pending"]
                        if pending and pending[-1][0] == mode:
                            pending[-1][1].append(str(waiter.owner))
                        else:
                            pending.append([mode, [str(waiter.owner)]])
                for name in sorted(entries):
                    data = entries[name]
                    result.append({
                        "name": f"{level}/{name}",
                        "mode": data["mode"],
                        "owners": sorted(str(o) for o in data["owners"]),
                        "pending": data["pending"],
                    })
        return result

    # ------------------------------------------------------------ internals

    def _check_level(self, level: str) -> None:
        if level not in _LEVEL_INDEX:
            raise errors.ProgrammerError(f"Unknown lock level '{level}'")

    def _normalize(self, level: str, names: Iterable[str] | None) -> frozenset[str] | None:
        self._check_level(level)
        if names is None:
            return None
        if isinstance(names, str):
            raise errors.ProgrammerError("Lock names must be a list, not a string")
        wanted = frozenset(names)
        for name in wanted:
            if not isinstance(name, str) or not name:
                raise errors.ProgrammerError(f"Invalid lock name {name!r}")
        return wanted

    def _check_request(self, owner: Hashable, level: str, wanted: frozenset[str] | None) -> None:
        held = self._owned.get(owner, {})
        index = _LEVEL_INDEX[level]
        later = [lv for lv in held if _LEVEL_INDEX[lv] > index]
        if later:
            raise errors.ProgrammerError(
                f"{owner!r} holds locks at level(s) {sorted(later, key=_LEVEL_INDEX.get)},"
                f" cannot acquire at the earlier level '{level}'")
        owned = held.get(level)
        if owned is None:
            return
        if owned.whole is not None:
            raise errors.ProgrammerError(f"{owner!r} already holds the whole level '{level}'")
        if wanted is None:
            if owned.names:
                raise errors.ProgrammerError(
                    f"{owner!r} holds {level} locks and cannot acquire the whole level")
            return
        again = wanted.intersection(owned.names)
        if again:
            raise errors.ProgrammerError(
                f"{owner!r} already holds {level} locks {sorted(again)}")

    def _remove_waiter(self, lvl: _Level, waiter: _Waiter) -> None:
        pos = bisect.bisect_left(lvl.waiter_keys, waiter.key)
        assert lvl.waiters[pos] is waiter
        del lvl.waiters[pos]
        del lvl.waiter_keys[pos]

    def _schedule(self, level: str) -> None:
        """Grant every waiter of ``level`` that may go, in service order."""
        lvl = self._levels[level]
        if not lvl.waiters:
            return
        blocked = _Blocked()
        remaining: list[_Waiter] = []
        granted = False
        for waiter in lvl.waiters:
            if blocked.conflicts(waiter.names, waiter.shared) or \
                    lvl.conflicts(waiter.names, waiter.shared):
                blocked.add(waiter.names, waiter.shared)
                remaining.append(waiter)
                continue
            self._grant(lvl, waiter)
            granted = True
        if granted:
            lvl.waiters = remaining
            lvl.waiter_keys = [w.key for w in remaining]

    def _grant(self, lvl: _Level, waiter: _Waiter) -> None:
        owner, shared = waiter.owner, waiter.shared
        owned = self._owned.setdefault(owner, {}).setdefault(waiter.level, _Owned())
        if waiter.names is None:
            owned.whole = shared
            if shared:
                lvl.all_shared.add(owner)
            else:
                lvl.has_all_excl = True
                lvl.all_excl = owner
            lvl.n_held += 1
            lvl.n_excl += 0 if shared else 1
        else:
            for name in waiter.names:
                owned.names[name] = shared
                if shared:
                    lvl.shared.setdefault(name, set()).add(owner)
                else:
                    lvl.excl[name] = owner
            lvl.n_held += len(waiter.names)
            if not shared:
                lvl.n_excl += len(waiter.names)
        waiter.granted = True
        waiter.cond.notify()

    def _drop(self, owner: Hashable, level: str, owned: _Owned, names: list[str],
              whole: bool) -> None:
        lvl = self._levels[level]
        for name in names:
            shared = owned.names.pop(name)
            if shared:
                holders = lvl.shared[name]
                holders.discard(owner)
                if not holders:
                    del lvl.shared[name]
            else:
                del lvl.excl[name]
                lvl.n_excl -= 1
            lvl.n_held -= 1
        if whole:
            if owned.whole:
                lvl.all_shared.discard(owner)
            else:
                lvl.has_all_excl = False
                lvl.all_excl = None
                lvl.n_excl -= 1
            lvl.n_held -= 1
            owned.whole = None
        if not owned.names and owned.whole is None:
            levels = self._owned[owner]
            del levels[level]
            if not levels:
                del self._owned[owner]
