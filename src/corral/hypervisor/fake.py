"""The fake hypervisor: instances are state files, nothing really runs.

Mirrors ``ganeti.hypervisor.hv_fake.FakeHypervisor``. A running instance is
one file ``<run_dir>/fake-hypervisor/<name>`` with three lines: id (``0``),
memory in MiB, vCPUs. Node memory is the machine's real memory minus the
memory of the "running" fake instances, so memory accounting and the master's
capacity checks behave as with a real hypervisor. It is the backend of the
functional tests of everything above the hypervisor layer.

The memory of the running instances is kept as a running total in
``<run_dir>/fake-hypervisor/.memory-used`` (MiB), updated under the state lock
by every start, stop, balloon and migration, so :meth:`get_node_info` costs
O(1) instead of reading every state file (it ran twice per create). Each
process recounts the total from the state files once, at its first use of a
state directory, so a total left stale by a crash heals at the next noded start.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Any, ClassVar, Iterator

from corral import constants as C
from corral import errors
from corral.fileio import write_file_atomic
from corral.hypervisor.base import (
    MIGRATION_MODE_CHECK,
    BaseHypervisor,
    BlockDevice,
    InstanceInfo,
    ParamCheck,
    get_linux_node_info,
)
from corral.objects import Instance, InstanceConsole, MigrationStatus, Node, NodeGroup
from corral.paths import component_path, safe_component

log = logging.getLogger(__name__)

_LOCK_NAME = ".lock"
_USED_NAME = ".memory-used"
# Bytes read of a state file (three short lines).
_STATE_MAX = 256

# State directories whose memory total this process has recounted (see module doc).
_recounted: set[str] = set()
_recounted_guard = threading.Lock()


def _be_int(instance: Instance, key: str) -> int:
    """An integer beparam of the (filled) instance, Corral's default if absent."""
    value: Any = instance.beparams.get(key, C.BEC_DEFAULTS[key])
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.HypervisorError(
            f"Invalid backend parameter {key}={value!r} for instance {instance.name}") from None


class FakeHypervisor(BaseHypervisor):
    """Instances as files below ``paths.hypervisor_run_dir("fake")``.

    Every failure raises :class:`errors.HypervisorError` with the instance
    name and the reason.
    """

    NAME: ClassVar[str] = C.HT_FAKE
    PARAMETERS: ClassVar[dict[str, ParamCheck]] = {"migration_mode": MIGRATION_MODE_CHECK}
    CAN_MIGRATE: ClassVar[bool] = True

    # Where node memory is read from; tests may point these at other files.
    meminfo_path: str = "/proc/meminfo"
    cpuinfo_path: str = "/proc/cpuinfo"

    # -- state files ----------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.paths.hypervisor_run_dir(C.HT_FAKE)

    def _ensure_dir(self) -> Path:
        d = self.state_dir
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise errors.HypervisorError(
                f"Cannot create the fake hypervisor directory {d}: {err.strerror}") from err
        return d

    def _instance_file(self, name: str) -> Path:
        # Names starting with a dot are this hypervisor's own temporary files.
        if not isinstance(name, str) or name.startswith("."):
            raise errors.HypervisorError(f"Invalid instance name {name!r}")
        try:
            return component_path(self.state_dir, name, what="instance name")
        except errors.OpPrereqError as err:
            raise errors.HypervisorError(str(err)) from None

    def _is_alive(self, name: str) -> bool:
        return self._instance_file(name).is_file()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize state changes, so concurrent starts see each other's memory."""
        d = self._ensure_dir()
        with open(d / _LOCK_NAME, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _write_state(self, name: str, memory: int, vcpus: int, exclusive: bool) -> None:
        """Write the state file atomically; with ``exclusive`` fail if it exists.

        Called with the state lock held; keeps the memory total in step.
        """
        d = self._ensure_dir()
        target = self._instance_file(name)
        used = self._used_memory_locked()
        old = None if exclusive else self._read_state(name)
        tmp = component_path(d, name, prefix=".", suffix=f".{os.getpid()}.tmp",
                             what="instance name")
        try:
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(f"0\n{int(memory)}\n{int(vcpus)}\n")
                fh.flush()
                os.fsync(fh.fileno())
            if exclusive:
                os.link(tmp, target)
            else:
                os.replace(tmp, target)
        except FileExistsError:
            raise errors.HypervisorError(
                f"Failed to start instance {name}: already running") from None
        except OSError as err:
            raise errors.HypervisorError(
                f"Failed to write the state of instance {name}: {err.strerror}") from err
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._store_used(used + int(memory) - (old.memory if old is not None else 0))

    def _read_state(self, name: str) -> InstanceInfo | None:
        path = self._instance_file(name)
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except OSError as err:
            raise errors.HypervisorError(
                f"Failed to read the state of instance {name}: {err.strerror}") from err
        return self._parse_state(name, text)

    @staticmethod
    def _parse_state(name: str, text: str) -> InstanceInfo:
        lines = text.splitlines()

        def _int(idx: int, default: int) -> int:
            try:
                return int(lines[idx].strip())
            except (IndexError, ValueError):
                return default

        return InstanceInfo(name, _int(0, 0), _int(1, 0), _int(2, 0),
                            C.HV_STATE_RUNNING, 0.0)

    def _remove_state(self, name: str) -> bool:
        """Remove the state file; False if it did not exist.

        Called with the state lock held; keeps the memory total in step.
        """
        used = self._used_memory_locked()
        info = self._read_state(name)
        try:
            self._instance_file(name).unlink()
        except FileNotFoundError:
            return False
        except OSError as err:
            raise errors.HypervisorError(
                f"Failed to remove the state of instance {name}: {err.strerror}") from err
        self._store_used(used - (info.memory if info is not None else 0))
        return True

    # -- memory total (see the module docstring) -------------------------------------
    def _load_used(self) -> int | None:
        """The stored total in MiB, None if missing or unreadable."""
        try:
            return int((self.state_dir / _USED_NAME).read_text(encoding="ascii"))
        except (OSError, ValueError):
            return None

    def _store_used(self, used: int) -> None:
        try:
            # Not durable: after a power loss noded restarts, and a new process recounts.
            write_file_atomic(self.state_dir / _USED_NAME, f"{max(0, used)}\n", mode=0o644,
                              durable=False)
        except OSError as err:
            raise errors.HypervisorError(
                f"Failed to record the fake hypervisor's memory total: {err.strerror}") from err

    def _used_memory_locked(self) -> int:
        """Memory of the running instances in MiB; the state lock must be held.

        Recounts from the state files at this process's first use of the
        directory, or if the stored total is missing or unreadable.
        """
        key = str(self.state_dir)
        used = self._load_used() if key in _recounted else None
        if used is None:
            used = sum(i.memory for i in self.get_all_instances_info())
            self._store_used(used)
            with _recounted_guard:
                _recounted.add(key)
        return used

    def _used_memory(self) -> int:
        """Memory of the running instances in MiB, taking the lock only to recount."""
        if str(self.state_dir) in _recounted:
            used = self._load_used()
            if used is not None:
                return used
        with self._locked():
            return self._used_memory_locked()

    def _startup_memory(self, instance: Instance) -> int:
        """Memory to start with: maxmem, or less (not below minmem) if the
        node lacks free memory (Ganeti's ``_InstanceStartupMemory``)."""
        maxmem = _be_int(instance, C.BE_MAXMEM)
        minmem = _be_int(instance, C.BE_MINMEM)
        free = int(self._node_info(self._used_memory_locked())["memory_free"])
        start_mem = min(maxmem, free)
        if start_mem < minmem:
            raise errors.HypervisorError(
                f"Not enough memory to start instance {instance.name}: "
                f"{free} MiB free, {minmem} MiB needed (minmem), maxmem {maxmem} MiB")
        return start_mem

    @staticmethod
    def _vcpus(instance: Instance) -> int:
        return _be_int(instance, C.BE_VCPUS)

    # -- lifecycle ------------------------------------------------------------------
    def start_instance(self, instance: Instance, block_devices: list[BlockDevice],
                       startup_paused: bool) -> None:
        """Create the state file. Raises HypervisorError if the instance is
        already running or the node lacks memory for its minmem."""
        with self._locked():
            if self._is_alive(instance.name):
                raise errors.HypervisorError(
                    f"Failed to start instance {instance.name}: already running")
            memory = self._startup_memory(instance)
            self._write_state(instance.name, memory, self._vcpus(instance), exclusive=True)

    def stop_instance(self, instance: Instance | None, force: bool = False,
                      retry: bool = False, name: str | None = None,
                      timeout: int | None = None) -> None:
        """Remove the state file. A missing file is an error, except for a
        forced stop by name (cleanup of leftovers)."""
        by_name = name is not None
        if name is None:
            if instance is None:
                raise errors.ProgrammerError("stop_instance needs an instance or a name")
            name = instance.name
        with self._locked():
            if not self._remove_state(name) and not (force and by_name):
                raise errors.HypervisorError(f"Failed to stop instance {name}: not running")

    def reboot_instance(self, instance: Instance) -> None:
        if not self._is_alive(instance.name):
            raise errors.HypervisorError(
                f"Failed to reboot instance {instance.name}: not running")

    def balloon_instance_memory(self, instance: Instance, mem: int) -> None:
        """Rewrite the memory line of the state file (``mem`` in MiB)."""
        with self._locked():
            info = self._read_state(instance.name)
            if info is None:
                raise errors.HypervisorError(
                    f"Failed to balloon memory for {instance.name}: not running")
            self._write_state(instance.name, mem, info.vcpus, exclusive=False)

    # -- queries --------------------------------------------------------------------
    def _names(self) -> list[str]:
        try:
            entries = os.listdir(self.state_dir)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise errors.HypervisorError(f"Failed to list instances: {err.strerror}") from err
        return sorted(e for e in entries if not e.startswith("."))

    def list_instances(self, hvparams: dict[str, Any] | None = None) -> list[str]:
        return self._names()

    def get_instance_info(self, instance_name: str,
                          hvparams: dict[str, Any] | None = None) -> InstanceInfo | None:
        return self._read_state(instance_name)

    def get_all_instances_info(self,
                               hvparams: dict[str, Any] | None = None) -> list[InstanceInfo]:
        """Every state file, read through one descriptor of the state directory
        (a query of 5,000 instances per node spent 0.22 s of CPU building a
        Path per file); a file removed meanwhile is an instance just stopped."""
        try:
            dir_fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise errors.HypervisorError(f"Failed to list instances: {err.strerror}") from err
        out = []
        try:
            for name in sorted(os.listdir(dir_fd)):
                if name.startswith("."):
                    continue
                try:
                    safe_component(name, "instance name")
                    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
                except FileNotFoundError:
                    continue
                except errors.OpPrereqError as err:
                    raise errors.HypervisorError(str(err)) from None
                except OSError as err:
                    raise errors.HypervisorError(
                        f"Failed to read the state of instance {name}: {err.strerror}"
                    ) from err
                try:
                    data = os.read(fd, _STATE_MAX)
                except OSError as err:
                    raise errors.HypervisorError(
                        f"Failed to read the state of instance {name}: {err.strerror}"
                    ) from err
                finally:
                    os.close(fd)
                out.append(self._parse_state(name, data.decode("ascii", "replace")))
        finally:
            os.close(dir_fd)
        return out

    def get_node_info(self, hvparams: dict[str, Any] | None = None) -> dict[str, Any]:
        """Real node data, minus the memory of the running fake instances (MiB).

        O(1) in the number of instances: reads the running total.
        """
        return self._node_info(self._used_memory())

    def _node_info(self, used: int) -> dict[str, Any]:
        try:
            result = get_linux_node_info(self.meminfo_path, self.cpuinfo_path)
        except OSError as err:
            raise errors.HypervisorError(f"Cannot read node information: {err}") from err
        result["memory_free"] -= min(result["memory_free"], used)
        return result

    @classmethod
    def get_instance_console(cls, instance: Instance, primary_node: Node,
                             node_group: NodeGroup | None, hvparams: dict[str, Any],
                             beparams: dict[str, Any]) -> InstanceConsole:
        return InstanceConsole(instance=instance.name, kind=C.CONS_MESSAGE,
                               message="Console not available for fake hypervisor")

    def verify(self, hvparams: dict[str, Any] | None = None) -> str | None:
        """Check that the state directory exists and is writable."""
        d = self.state_dir
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe = d / f".verify.{os.getpid()}"
            probe.write_text("ok\n", encoding="ascii")
            probe.unlink()
        except OSError as err:
            return f"Fake hypervisor state directory {d} is not writable: {err.strerror}"
        return None

    # -- migration ------------------------------------------------------------------
    def accept_instance(self, instance: Instance, info: str, target: str) -> None:
        if self._is_alive(instance.name):
            raise errors.HypervisorError(
                f"Can't accept instance {instance.name}, already running")

    def migrate_instance(self, cluster_name: str, instance: Instance, target: str,
                         live: bool) -> None:
        if not self._is_alive(instance.name):
            raise errors.HypervisorError(
                f"Cannot migrate instance {instance.name}: not running")
        log.debug("fake hypervisor migrating %s to %s (live=%s)", instance.name, target, live)

    def get_migration_status(self, instance: Instance) -> MigrationStatus:
        return MigrationStatus(status="completed")

    def finalize_migration_dst(self, instance: Instance, info: str, success: bool) -> None:
        """On success the instance runs here (file created); else make sure it doesn't."""
        with self._locked():
            if success:
                memory = self._startup_memory(instance)
                self._write_state(instance.name, memory, self._vcpus(instance),
                                  exclusive=False)
            else:
                self._remove_state(instance.name)

    def finalize_migration_source(self, instance: Instance, success: bool, live: bool) -> None:
        if success:
            with self._locked():
                self._remove_state(instance.name)

    @staticmethod
    def versions_safe_for_migration(src: list[int] | None, target: list[int] | None) -> bool:
        return True

