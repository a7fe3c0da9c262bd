"""Replication of the configuration to the master candidates.

Mirrors what Ganeti's config writer does after each save (``ConfigWriter.
_DistributeConfig`` -> ``upload_file`` of ``config.data`` to every master
candidate), but sends only what changed: each committed
:class:`~corral.config.changes.ConfigChanges` goes to every online master
candidate except the master through the ``config_update`` RPC.

The store calls the listener inside ``commit``; the listener only queues the
change, a background thread does the RPCs, so commits never wait for nodes.
Changes are sent in order; the thread waits up to ``batch_delay`` seconds
after the first queued change and merges everything queued by then into one
batch, so a busy master sends a few RPCs per second, not one per commit. A node
that has not been brought up to date since this replicator started, or whose
last update failed, gets a full snapshot (``cfg.export_all()``) instead.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from corral.config.changes import ConfigChanges

if TYPE_CHECKING:
    from corral.config import ConfigStore
    from corral.rpc import RpcRunner

log = logging.getLogger(__name__)

# Seconds between retries while some candidate is out of date.
RETRY_INTERVAL = 30.0
# Seconds a queued change waits for more to send with it (replica lag bound).
BATCH_DELAY = 0.05


def merge_changes(batch: list[ConfigChanges]) -> ConfigChanges:
    """Merge consecutive change sets into one with the same final effect.

    Later upserts of an object replace earlier ones; an object upserted and
    then removed is only removed.
    """
    upserts: dict[str, dict[str, dict[str, Any]]] = {}
    removes: dict[str, dict[str, None]] = {}
    for changes in batch:
        for kind, objs in changes.upserts.items():
            for obj in objs:
                upserts.setdefault(kind, {})[obj["uuid"]] = obj
                removes.get(kind, {}).pop(obj["uuid"], None)
        for kind, uuids in changes.removes.items():
            for uuid in uuids:
                upserts.get(kind, {}).pop(uuid, None)
                removes.setdefault(kind, {})[uuid] = None
    return ConfigChanges(
        serial_no=max(c.serial_no for c in batch),
        upserts={k: list(v.values()) for k, v in upserts.items() if v},
        removes={k: list(v) for k, v in removes.items() if v},
    )


def _as_changes(snapshot: Any) -> ConfigChanges:
    if isinstance(snapshot, ConfigChanges):
        return snapshot
    return ConfigChanges.model_validate(snapshot)


class ConfigReplicator:
    """Pushes config changes of ``cfg`` to the other master candidates.

    ``start()`` registers the listener and starts the thread (which first
    brings every candidate up to date with a full snapshot); ``stop()`` ends
    the thread after the batch in progress.
    """

    def __init__(self, cfg: ConfigStore, rpc: RpcRunner,
                 retry_interval: float = RETRY_INTERVAL,
                 batch_delay: float = BATCH_DELAY) -> None:
        self.cfg = cfg
        self.rpc = rpc
        self.retry_interval = retry_interval
        self.batch_delay = batch_delay
        self._cond = threading.Condition()
        self._pending: list[ConfigChanges] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        # node UUID -> config serial number the node is known to have.
        self._synced: dict[str, int] = {}
        self._idle = threading.Event()

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self.cfg.add_listener(self._on_change)
        self._thread = threading.Thread(target=self._run, name="config-replication",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued change was pushed (for tests); True if so."""
        return self._idle.wait(timeout)

    def _on_change(self, changes: ConfigChanges) -> None:
        """Store listener: called inside commit, so only queue the change."""
        with self._cond:
            self._pending.append(changes)
            self._idle.clear()
            if len(self._pending) == 1:   # else the thread already knows
                self._cond.notify_all()

    # -- the thread -------------------------------------------------------------------
    def _run(self) -> None:
        out_of_date = True
        first = True                # first round: full snapshot to every candidate
        while True:
            # Never call the store while holding _cond: commit calls the
            # listener (which takes _cond) with the store's lock held.
            with self._cond:
                if first or self._pending or self._stopping:
                    pass
                elif not out_of_date:
                    self._idle.set()
                    self._cond.wait()
                else:
                    self._cond.wait(self.retry_interval)
                if self._pending and not first:
                    # Let the commits of concurrent jobs join this batch.
                    deadline = time.monotonic() + self.batch_delay
                    while not self._stopping and (left := deadline - time.monotonic()) > 0:
                        self._cond.wait(left)
                first = False
                if self._stopping:
                    return
                batch, self._pending = self._pending, []
            try:
                self._push(merge_changes(batch) if batch else None)
                out_of_date = self._out_of_date()
            except Exception:
                log.exception("Config replication failed; will send full snapshots")
                self._synced.clear()
                out_of_date = True

    def _out_of_date(self) -> bool:
        return any(uuid not in self._synced for uuid in self._targets())

    def _targets(self) -> list[str]:
        master = self.cfg.get_cluster().master_node
        return [n.uuid for n in self.cfg.get_master_candidates()
                if n.uuid != master and not n.offline]

    def _push(self, delta: ConfigChanges | None) -> None:
        targets = self._targets()
        for uuid in list(self._synced):
            if uuid not in targets:
                del self._synced[uuid]       # demoted or removed: resync if promoted
        delta_nodes = [u for u in targets if u in self._synced
                       and delta is not None and delta.serial_no > self._synced[u]
                       and not delta.is_empty()]
        if delta_nodes and delta is not None:
            self._send(delta, delta_nodes)
        full_nodes = [u for u in targets if u not in self._synced]
        if full_nodes:
            self._send(_as_changes(self.cfg.export_all()), full_nodes)

    def _send(self, changes: ConfigChanges, node_uuids: list[str]) -> None:
        payload = changes.model_dump(mode="json")
        results = self.rpc.call("config_update", node_uuids, [payload])
        for uuid in node_uuids:
            res = results.get(uuid)
            if res is None or res.fail_msg:
                reason = "no result" if res is None else res.fail_msg
                log.warning("Config update (serial %d%s) to node %s failed: %s",
                            changes.serial_no, ", full" if changes.full else "", uuid,
                            reason)
                self._synced.pop(uuid, None)
            else:
                self._synced[uuid] = changes.serial_no
