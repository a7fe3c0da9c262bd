"""Node side: the replica of the cluster configuration on a master candidate.

Ganeti distributes ``config.data`` with ``upload_file``; Corral sends the
changed objects of each commit (a ``ConfigChanges`` dict from the master's
store listener) and applies them with ``DiskReplica.apply_replica`` to
``paths.config_db``. The database is opened once per path and kept; the
objects are not loaded into noded's memory (only candidates get changes).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from corral import errors
from corral.paths import Paths

log = logging.getLogger(__name__)

_lock = threading.Lock()
_stores: dict[str, Any] = {}


def open_replica(paths: Paths) -> Any:
    """Open this node's replica at ``paths.config_db`` (on disk only, see
    :mod:`corral.config.disk_replica`), creating an empty one (serial 0) if
    there is none yet. Raises :class:`errors.RPCFail`."""
    from corral.config.disk_replica import DiskReplica

    paths.config_db.parent.mkdir(parents=True, exist_ok=True)
    try:
        return DiskReplica.open(paths.config_db)
    except errors.CorralError as err:
        raise errors.RPCFail(f"Cannot open the configuration replica: {err}") from None


def _replica(paths: Paths) -> Any:
    key = str(paths.config_db)
    store = _stores.get(key)
    if store is None:
        store = open_replica(paths)
        _stores[key] = store
    return store


def config_update(paths: Paths, changes: dict[str, Any]) -> None:
    """Apply one commit's ``changes`` (ConfigChanges dict) to this node's replica.

    Raises :class:`errors.RPCFail` when the store is unavailable or refuses
    the changes (e.g. a serial number gap).
    """
    if not isinstance(changes, dict):
        raise errors.RPCFail("Config changes must be a dict")
    with _lock:
        store = _replica(paths)
        try:
            store.apply_replica(changes)
        except errors.CorralError as err:
            raise errors.RPCFail(f"Cannot apply configuration changes: {err}") from None


def forget_replica(paths: Paths) -> None:
    """Close and drop the cached store of ``paths`` (before its files are removed)."""
    with _lock:
        store = _stores.pop(str(paths.config_db), None)
    close = getattr(store, "close", None)
    if callable(close):
        close()


def remove_replica(paths: Paths) -> None:
    """Delete this node's configuration replica (node leaving the cluster)."""
    forget_replica(paths)
    for suffix in ("", "-wal", "-shm", "-journal"):
        paths.config_db.with_name(paths.config_db.name + suffix).unlink(missing_ok=True)
