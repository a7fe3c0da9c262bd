"""The cluster configuration store: SQLite (WAL) with an in-memory cache.

Mirrors Ganeti's ``ConfigWriter`` (and the ``wconfd`` commit protocol) with
one difference that matters for big clusters: a commit writes only the rows
of the changed objects, in one SQLite transaction, instead of rewriting the
whole configuration file. Reads are served from the cache, which is updated
only after the transaction has committed, so a failed commit changes
nothing, neither on disk nor in memory.

Objects returned by the getters are the store's shared copies: never change
them; ``obj.model_copy(deep=True)``, change the copy, ``commit(update=[copy])``.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

from pydantic import ValidationError

from corral import errors
from corral.config import db
from corral.config.allocation import MacPool, next_port
from corral.config.cache import ConfigCache
from corral.config.changes import (
    CLASS_OF_KIND,
    KIND_CLUSTER,
    KIND_INSTANCE,
    KIND_NETWORK,
    KIND_NODE,
    KIND_NODEGROUP,
    KINDS,
    NAMED_KINDS,
    ConfigChanges,
    kind_of,
    object_name,
    storable_dict,
)
from corral.config.ip_allocation import IpReservations
from corral.config.replica import apply_full, apply_incremental, parse_changes
from corral.config.verify import verify_cache
from corral.objects import Cluster, ConfigObject, Instance, Network, Node, NodeGroup

logger = logging.getLogger(__name__)

Listener = Callable[[ConfigChanges], None]

_KIND_TITLE = {KIND_CLUSTER: "Cluster", KIND_NODEGROUP: "Node group", KIND_NODE: "Node",
               KIND_INSTANCE: "Instance", KIND_NETWORK: "Network"}


class _Write:
    """One object of a commit: what to write and what to cache."""

    __slots__ = ("data", "given", "kind", "new", "old_name", "old_serial")

    def __init__(self, kind: str, given: ConfigObject, new: ConfigObject,
                 data: dict[str, Any], old_serial: int, old_name: str | None) -> None:
        self.kind = kind
        self.given = given
        self.new = new
        self.data = data
        self.old_serial = old_serial
        self.old_name = old_name

    @property
    def name(self) -> str:
        return object_name(self.kind, self.new)


class ConfigStore:
    """The configuration of one cluster (on the master) or its replica (on a
    master candidate). Thread-safe: one ``RLock`` guards cache and database.

    Use :meth:`create` or :meth:`open`, not the constructor.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, cache: ConfigCache,
                 serial: int) -> None:
        self._path = path
        self._conn = conn
        self._cache = cache
        self._serial = serial
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        # Changes waiting for their listeners, in commit order (see _notify).
        self._pending: deque[ConfigChanges] = deque()
        self._notify_lock = threading.RLock()
        self._macs = MacPool()

    # -- creation -------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], cluster: Cluster, master_node: Node,
               default_group: NodeGroup) -> Self:
        """Create a new configuration database at ``path`` holding the cluster,
        its master node and the default node group (``gnt-cluster init``).

        The node's ``group`` is set to the group's UUID when empty. Raises
        ``ConfigurationError`` if ``path`` exists or the objects disagree
        (``cluster.master_node`` must be the node's UUID).
        """
        if cluster.master_node != master_node.uuid:
            raise errors.ConfigurationError(
                f"Cluster master node {cluster.master_node} is not node "
                f"'{master_node.name}' ({master_node.uuid})")
        node = master_node.model_copy(deep=True)
        if not node.group:
            node.group = default_group.uuid
        if node.group != default_group.uuid:
            raise errors.ConfigurationError(
                f"Master node '{node.name}' is not in group '{default_group.name}'")
        objs = [(KIND_CLUSTER, cluster), (KIND_NODEGROUP, default_group), (KIND_NODE, node)]
        return cls._create(Path(path), objs, serial=1)

    @classmethod
    def create_replica(cls, path: str | os.PathLike[str]) -> Self:
        """Create an empty database for a master candidate's replica; fill it
        with ``apply_replica(master_store.export_all())``."""
        return cls._create(Path(path), [], serial=0)

    @classmethod
    def _create(cls, path: Path, objs: list[tuple[str, ConfigObject]], serial: int) -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: two concurrent creators cannot both win.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise errors.ConfigurationError(
                f"Configuration {path} already exists") from None
        os.close(fd)
        cache = ConfigCache()
        conn: sqlite3.Connection | None = None
        try:
            conn = db.connect(path)
            conn.execute("BEGIN IMMEDIATE")
            db.create_schema(conn)
            for kind, obj in objs:
                data = storable_dict(kind, obj)
                stored = CLASS_OF_KIND[kind].from_dict(data)
                db.insert(conn, kind, stored.uuid, object_name(kind, stored),
                          stored.serial_no, data)
                cache.put(kind, stored)
            db.set_serial(conn, serial)
            conn.execute("COMMIT")
        except BaseException:
            if conn is not None:
                db.rollback(conn)
                conn.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            raise
        return cls(path, conn, cache, serial)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Self:
        """Open an existing configuration and load it into memory.

        Raises ``ConfigurationError`` if the file is missing, not a Corral
        configuration, of another schema version, or holds invalid objects.
        """
        path = Path(path)
        if not path.is_file():
            raise errors.ConfigurationError(f"Configuration {path} does not exist")
        conn = db.connect(path)
        try:
            meta = db.read_meta(conn)
            db.check_schema(meta, path)
            cache = ConfigCache()
            for kind in KINDS:
                for data in db.iter_rows(conn, kind):
                    cache.put(kind, CLASS_OF_KIND[kind].from_dict(data))
            serial = int(meta.get(db.META_SERIAL, "0"))
        except (sqlite3.Error, ValidationError, ValueError) as err:
            conn.close()
            raise errors.ConfigurationError(f"Cannot load configuration {path}: {err}") from err
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, cache, serial)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def serial_no(self) -> int:
        """Config-wide serial number; bumps once per commit."""
        return self._serial

    # -- reads ----------------------------------------------------------------------
    def get_cluster(self) -> Cluster:
        """The cluster object; ``ConfigurationError`` on an empty replica."""
        cluster = self._cache.cluster
        if cluster is None:
            raise errors.ConfigurationError("The configuration has no cluster object")
        return cluster

    def get_node(self, uuid: str) -> Node | None:
        return self._cache.objects[KIND_NODE].get(uuid)  # type: ignore[return-value]

    def get_node_by_name(self, name: str) -> Node | None:
        with self._lock:
            uuid = self._cache.names[KIND_NODE].get(name)
            return self.get_node(uuid) if uuid else None

    def get_nodes(self) -> dict[str, Node]:
        """All nodes by UUID (a new dict of the shared objects)."""
        with self._lock:
            return dict(self._cache.objects[KIND_NODE])  # type: ignore[arg-type]

    def get_node_list(self) -> list[Node]:
        """All nodes sorted by name."""
        return sorted(self.get_nodes().values(), key=lambda n: n.name)

    def get_master_node(self) -> Node:
        cluster = self.get_cluster()
        node = self.get_node(cluster.master_node)
        if node is None:
            raise errors.ConfigurationError(
                f"Master node {cluster.master_node} is not in the configuration")
        return node

    def get_master_candidates(self) -> list[Node]:
        """Nodes with the master candidate flag, sorted by name (master included)."""
        return [n for n in self.get_node_list() if n.master_candidate]

    def get_nodegroup(self, uuid: str) -> NodeGroup | None:
        return self._cache.objects[KIND_NODEGROUP].get(uuid)  # type: ignore[return-value]

    def get_nodegroup_by_name(self, name: str) -> NodeGroup | None:
        with self._lock:
            uuid = self._cache.names[KIND_NODEGROUP].get(name)
            return self.get_nodegroup(uuid) if uuid else None

    def get_nodegroups(self) -> dict[str, NodeGroup]:
        with self._lock:
            return dict(self._cache.objects[KIND_NODEGROUP])  # type: ignore[arg-type]

    def get_instance(self, uuid: str) -> Instance | None:
        return self._cache.objects[KIND_INSTANCE].get(uuid)  # type: ignore[return-value]

    def get_instance_by_name(self, name: str) -> Instance | None:
        with self._lock:
            uuid = self._cache.names[KIND_INSTANCE].get(name)
            return self.get_instance(uuid) if uuid else None

    def get_instances(self) -> dict[str, Instance]:
        with self._lock:
            return dict(self._cache.objects[KIND_INSTANCE])  # type: ignore[arg-type]

    def get_node_instances(self, node_uuid: str) -> tuple[list[Instance], list[Instance]]:
        """Instances with ``node_uuid`` as primary, and as secondary (by name).

        O(instances of that node), from the store's index.
        """
        with self._lock:
            objs = self._cache.objects[KIND_INSTANCE]
            primary = [objs[u] for u in self._cache.node_primary.get(node_uuid, ())]
            secondary = [objs[u] for u in self._cache.node_secondary.get(node_uuid, ())]
        key = lambda i: i.name
        return (sorted(primary, key=key), sorted(secondary, key=key))  # type: ignore[arg-type]

    def count_node_instances(self, node_uuid: str) -> tuple[int, int]:
        """Number of primary and secondary instances of a node, O(1)."""
        with self._lock:
            return (len(self._cache.node_primary.get(node_uuid, ())),
                    len(self._cache.node_secondary.get(node_uuid, ())))

    # -- name expansion (Ganeti's Expand*Name) --------------------------------------
    def expand_node(self, name_or_uuid: str) -> Node:
        """The node with this UUID, name or unique short name.

        Raises ``OpPrereqError("Node 'x' not known", ECODE_NOENT)``.
        """
        obj = self._expand(KIND_NODE, name_or_uuid)
        if obj is None:
            raise errors.OpPrereqError(f"Node '{name_or_uuid}' not known", errors.ECODE_NOENT)
        return obj  # type: ignore[return-value]

    def expand_instance(self, name_or_uuid: str) -> Instance:
        """As :meth:`expand_node`: ``"Instance 'x' not known"``."""
        obj = self._expand(KIND_INSTANCE, name_or_uuid)
        if obj is None:
            raise errors.OpPrereqError(f"Instance '{name_or_uuid}' not known",
                                       errors.ECODE_NOENT)
        return obj  # type: ignore[return-value]

    def expand_nodegroup(self, name_or_uuid: str) -> NodeGroup:
        """As :meth:`expand_node`, with Ganeti's ``LookupNodeGroup`` wording
        ``"Node group 'x' not found"``."""
        obj = self._expand(KIND_NODEGROUP, name_or_uuid)
        if obj is None:
            raise errors.OpPrereqError(f"Node group '{name_or_uuid}' not found",
                                       errors.ECODE_NOENT)
        return obj  # type: ignore[return-value]

    def _expand(self, kind: str, key: str) -> ConfigObject | None:
        with self._lock:
            objs = self._cache.objects[kind]
            names = self._cache.names[kind]
            if key in objs:
                return objs[key]
            if key in names:
                return objs[names[key]]
            # Ganeti's MatchNameComponent, case-insensitive: "node1" finds
            # "node1.example.com" when unambiguous. O(n), only on a miss.
            pattern = re.compile(rf"^{re.escape(key)}(\..*)?$", re.IGNORECASE)
            matches = [n for n in names if pattern.match(n)]
            exact = [n for n in matches if n.upper() == key.upper()]
            for found in (exact, matches):
                if len(found) == 1:
                    return objs[names[found[0]]]
            return None

    # -- commit ---------------------------------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(changes)`` after every commit, in commit order, outside
        the store lock; exceptions are logged, not raised."""
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with self._lock:
            self._listeners.remove(fn)

    def commit(self, add: Iterable[ConfigObject] = (), update: Iterable[ConfigObject] = (),
               remove: Iterable[ConfigObject | str] = ()) -> None:
        """Store added, updated and removed objects in one transaction.

        ``update`` objects must carry the ``serial_no`` they were read with
        (else ``ConfigVersionMismatch``, ECODE_STATE); the store saves them
        with ``serial_no + 1`` and a new ``mtime``. Added objects get
        ``serial_no`` 1 and new ``ctime``/``mtime``. After success the given
        objects get the stored ``serial_no``/``ctime``/``mtime`` too, so a
        caller may change and commit them again; the store keeps copies.
        ``remove`` takes objects or UUIDs.

        Raises ``OpPrereqError`` (ECODE_EXISTS) for a name already in use,
        ``ConfigurationError`` for an unknown or duplicate UUID,
        ``ProgrammerError`` for non-config objects or the store's own copies.
        On any error nothing is changed.
        """
        with self._lock:
            self._commit_locked(list(add), list(update), list(remove))
        self._notify()

    def _commit_locked(self, add: list[ConfigObject], update: list[ConfigObject],
                       remove: list[ConfigObject | str]) -> ConfigChanges:
        now = time.time()
        removes = self._check_removes(remove)
        seen = {uuid for _, uuid in removes}
        updates = [self._prepare_update(obj, now, seen) for obj in update]
        adds = [self._prepare_add(obj, now, seen) for obj in add]
        self._check_names(removes, updates, adds)

        new_serial = self._serial + 1
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for kind, uuid in removes:
                if not db.delete(conn, kind, uuid):
                    raise errors.ConfigurationError(
                        f"{_KIND_TITLE[kind]} {uuid} is not in the stored configuration")
            for w in updates:
                if w.old_name is not None:
                    db.clear_name(conn, w.kind, w.new.uuid)
            for w in updates:
                if not db.update(conn, w.kind, w.new.uuid, w.name, w.old_serial,
                                 w.new.serial_no, w.data):
                    raise errors.ConfigVersionMismatch(
                        f"{_KIND_TITLE[w.kind]} '{w.name}' was changed by someone else "
                        "(stored serial number differs)")
            for w in adds:
                db.insert(conn, w.kind, w.new.uuid, w.name, w.new.serial_no, w.data)
            db.set_serial(conn, new_serial)
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as err:
            db.rollback(conn)
            if "UNIQUE" in str(err):
                raise errors.OpPrereqError(f"Configuration conflict: {err}",
                                           errors.ECODE_EXISTS) from err
            raise errors.ConfigurationError(f"Cannot write configuration: {err}") from err
        except sqlite3.Error as err:
            db.rollback(conn)
            raise errors.ConfigurationError(f"Cannot write configuration: {err}") from err
        except BaseException:
            db.rollback(conn)
            raise

        # Committed: now (and only now) the cache follows.
        changes = ConfigChanges(serial_no=new_serial)
        for kind, uuid in removes:
            self._cache.drop(kind, uuid)
            changes.removes.setdefault(kind, []).append(uuid)
        for w in (*updates, *adds):
            self._cache.put(w.kind, w.new)
            changes.upserts.setdefault(w.kind, []).append(w.data)
            w.given.serial_no = w.new.serial_no
            w.given.ctime = w.new.ctime
            w.given.mtime = w.new.mtime
            if w.kind == KIND_INSTANCE:
                self._macs.committed(w.new)  # type: ignore[arg-type]
        self._serial = new_serial
        if self._listeners:
            self._pending.append(changes)
        return changes

    def _check_removes(self, remove: list[ConfigObject | str]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for item in remove:
            uuid = item if isinstance(item, str) else item.uuid
            kind = self._cache.kind_by_uuid.get(uuid)
            if kind is None or (not isinstance(item, str) and kind_of(item) != kind):
                raise errors.ConfigurationError(f"Cannot remove unknown object {uuid}")
            if kind == KIND_CLUSTER:
                raise errors.ConfigurationError("The cluster object cannot be removed")
            if uuid in seen:
                raise errors.ConfigurationError(f"Object {uuid} given twice in one commit")
            seen.add(uuid)
            out.append((kind, uuid))
        return out

    def _prepare_update(self, obj: ConfigObject, now: float, seen: set[str]) -> _Write:
        kind = kind_of(obj)
        cached = self._cache.get(kind, obj.uuid)
        if cached is None:
            raise errors.ConfigurationError(
                f"Cannot update unknown {kind} '{object_name(kind, obj)}' ({obj.uuid})")
        if cached is obj:
            raise errors.ProgrammerError(
                f"commit() got the store's shared copy of {kind} "
                f"'{object_name(kind, obj)}'; change a model_copy(deep=True) instead")
        self._claim(seen, obj.uuid)
        if obj.serial_no != cached.serial_no:
            raise errors.ConfigVersionMismatch(
                f"{_KIND_TITLE[kind]} '{object_name(kind, obj)}' was changed since it was "
                f"read (serial {obj.serial_no}, stored {cached.serial_no})")
        data = storable_dict(kind, obj)
        data["serial_no"] = obj.serial_no + 1
        data["mtime"] = now
        new = self._validate(kind, data)
        old_name = object_name(kind, cached)
        renamed = old_name if old_name != object_name(kind, new) else None
        return _Write(kind, obj, new, data, cached.serial_no, renamed)

    def _prepare_add(self, obj: ConfigObject, now: float, seen: set[str]) -> _Write:
        kind = kind_of(obj)
        if obj.uuid in self._cache.kind_by_uuid:
            raise errors.ConfigurationError(
                f"Cannot add {kind} '{object_name(kind, obj)}': UUID {obj.uuid} already in use")
        if kind == KIND_CLUSTER and self._cache.cluster is not None:
            raise errors.ConfigurationError("The configuration already has a cluster object")
        self._claim(seen, obj.uuid)
        data = storable_dict(kind, obj)
        data.update(serial_no=1, ctime=now, mtime=now)
        return _Write(kind, obj, self._validate(kind, data), data, 0, None)

    @staticmethod
    def _claim(seen: set[str], uuid: str) -> None:
        if uuid in seen:
            raise errors.ConfigurationError(f"Object {uuid} given twice in one commit")
        seen.add(uuid)

    @staticmethod
    def _validate(kind: str, data: dict[str, Any]) -> ConfigObject:
        # A copy: pydantic keeps nested values of ``Any`` fields by reference,
        # and ``data`` goes on to the listeners.
        try:
            return CLASS_OF_KIND[kind].from_dict(copy.deepcopy(data))
        except ValidationError as err:
            raise errors.ProgrammerError(f"Invalid {kind} object: {err}") from err

    def _check_names(self, removes: list[tuple[str, str]], updates: list[_Write],
                     adds: list[_Write]) -> None:
        """Names claimed by adds and renames must be free after the commit."""
        freed: set[tuple[str, str]] = set()
        for kind, uuid in removes:
            if kind in NAMED_KINDS:
                freed.add((kind, object_name(kind, self._cache.objects[kind][uuid])))
        for w in updates:
            if w.old_name is not None:
                freed.add((w.kind, w.old_name))
        claimed: set[tuple[str, str]] = set()
        renames = [w for w in updates if w.old_name is not None]
        for w in (*renames, *adds):
            if w.kind not in NAMED_KINDS:
                continue
            key = (w.kind, w.name)
            taken = w.name in self._cache.names[w.kind] and key not in freed
            if taken or key in claimed:
                raise errors.OpPrereqError(
                    f"{_KIND_TITLE[w.kind]} '{w.name}' is already in the configuration",
                    errors.ECODE_EXISTS)
            claimed.add(key)

    def _notify(self) -> None:
        """Deliver pending changes in commit order. Changes are queued under
        the store lock in serial order; whoever holds the notify lock drains
        the queue, so listeners never see commits out of order."""
        with self._notify_lock:
            while self._pending:
                changes = self._pending.popleft()
                for fn in list(self._listeners):
                    try:
                        fn(changes)
                    except Exception:
                        logger.exception("Config listener %r failed for serial %d",
                                         fn, changes.serial_no)

    # -- replication ----------------------------------------------------------------
    def export_all(self) -> ConfigChanges:
        """The whole configuration as a ``full`` change set (for a new master
        candidate). O(size of the config)."""
        with self._lock:
            changes = ConfigChanges(serial_no=self._serial, full=True)
            for kind in KINDS:
                changes.upserts[kind] = [storable_dict(kind, obj)
                                         for obj in self._cache.objects[kind].values()]
            return changes

    def apply_replica(self, changes: ConfigChanges | dict[str, Any]) -> None:
        """Apply a master's change set on a replica, verbatim and idempotently.

        No serial checks against the caller; per object, an upsert older than
        the stored version (lower ``serial_no``) is skipped, so a repeated or
        late change set cannot move an object back in time. A ``full`` set
        replaces the whole configuration. The config serial becomes the
        highest seen. Raises ``ConfigurationError`` (nothing changed) if the
        set does not fit the replica (e.g. a name held by another object:
        the replica is out of date and needs a full snapshot).
        """
        changes, parsed = parse_changes(changes)
        with self._lock:
            if changes.full:
                self._serial = apply_full(self._conn, self._cache, changes, parsed)
            else:
                self._serial = apply_incremental(self._conn, self._cache, self._serial,
                                                 changes, parsed)

    # -- allocation -----------------------------------------------------------------
    def allocate_port(self) -> int:
        """A free cluster TCP/UDP port (VNC, DRBD): from ``tcpudp_port_pool``
        first, else ``highest_used_port + 1``; persisted at once through a
        cluster update (Ganeti's ``AllocatePort``). ``ConfigurationError``
        when the range is exhausted."""
        with self._lock:
            cluster = self.get_cluster().model_copy(deep=True)
            port = next_port(cluster)
            self._commit_locked([], [cluster], [])
        self._notify()
        return port

    def update_cluster(self, change: Callable[[Cluster], None]) -> Cluster:
        """Apply ``change`` to a copy of the cluster object and commit it at
        once, under the store lock (read-modify-write without a serial race,
        as :meth:`allocate_port`); returns the committed copy. Exceptions of
        ``change`` propagate and nothing is committed."""
        with self._lock:
            cluster = self.get_cluster().model_copy(deep=True)
            change(cluster)
            self._commit_locked([], [cluster], [])
        self._notify()
        return cluster

    def generate_mac(self, owner: str | None = None, prefix: str | None = None) -> str:
        """A new MAC with ``prefix`` (a network's; default: the cluster's
        ``mac_prefix``) and three random bytes,
        unique among all NICs and reserved until committed or released.

        ``owner`` (e.g. a job id) lets :meth:`release_reservations` drop all
        reservations of a failed job at once. ``ConfigurationError`` if no
        free MAC is found.
        """
        with self._lock:
            return self._macs.generate(prefix or self.get_cluster().mac_prefix,
                                       self._cache.macs, owner)

    def reserve_mac(self, mac: str, owner: str | None = None) -> None:
        """Reserve a user-given MAC; ``OpPrereqError`` ECODE_INVAL if malformed,
        ECODE_NOTUNIQUE if used or reserved (``"MAC address x already in use
        in cluster"``)."""
        with self._lock:
            self._macs.reserve(mac, self._cache.macs, owner)

    def release_mac(self, mac: str) -> None:
        """Drop the reservation of ``mac`` (no-op if not reserved)."""
        with self._lock:
            self._macs.release(mac)

    def release_reservations(self, owner: str) -> None:
        """Drop every MAC reservation made with ``owner``."""
        with self._lock:
            self._macs.release_owner(owner)

    # -- networks -------------------------------------------------------------------
    def get_network(self, uuid: str) -> Network | None:
        return self._cache.objects[KIND_NETWORK].get(uuid)  # type: ignore[return-value]

    def get_networks(self) -> dict[str, Network]:
        """All networks by UUID (a new dict of the shared objects)."""
        with self._lock:
            return dict(self._cache.objects[KIND_NETWORK])  # type: ignore[arg-type]

    def get_network_by_name(self, name: str) -> Network | None:
        with self._lock:
            uuid = self._cache.names[KIND_NETWORK].get(name)
            return self.get_network(uuid) if uuid else None

    def expand_network(self, name_or_uuid: str) -> Network:
        """The network with this UUID or name (Ganeti's ``LookupNetwork``:
        no short names). Raises ``OpPrereqError("Network 'x' not found",
        ECODE_NOENT)``."""
        net = self.get_network(name_or_uuid) or self.get_network_by_name(name_or_uuid)
        if net is None:
            raise errors.OpPrereqError(f"Network '{name_or_uuid}' not found",
                                       errors.ECODE_NOENT)
        return net

    @functools.cached_property
    def _ips(self) -> IpReservations:
        return IpReservations()

    def reserve_ip(self, net_uuid: str, address: str, owner: str, check: bool = True) -> None:
        """Reserve an instance address of a network until ``owner`` calls
        :meth:`release_ip_reservations` (after committing the instance that
        marks it in the pool). ``OpPrereqError`` ECODE_NOTUNIQUE when taken,
        externally reserved (with ``check``) or outside the network;
        ECODE_NOENT for an unknown network."""
        with self._lock:
            self._ips.reserve(self.expand_network(net_uuid), address, owner, check)

    def generate_ip(self, net_uuid: str, owner: str) -> str:
        """Reserve the first free address of a network (``ip=pool``); as
        :meth:`reserve_ip`, ``OpPrereqError`` ECODE_STATE when it is full."""
        with self._lock:
            return self._ips.generate(self.expand_network(net_uuid), owner)

    def release_ip_reservations(self, owner: str) -> None:
        """Drop every address reservation made with ``owner``."""
        with self._lock:
            self._ips.release_owner(owner)

    # -- verification ---------------------------------------------------------------
    def verify_config(self) -> list[str]:
        """Consistency problems of the configuration (empty list when fine)."""
        with self._lock:
            return verify_cache(self._cache)
