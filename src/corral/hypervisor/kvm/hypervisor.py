"""The KVM (QEMU) hypervisor: Ganeti's ``hv_kvm.KVMHypervisor`` for Corral.

Instances are QEMU processes started with ``-daemonize``; everything known
about them lives in runtime files (:mod:`corral.hypervisor.kvm.runtime`), so
the object itself is stateless and a restarted node daemon carries on. QEMU
is driven over QMP (:mod:`~corral.hypervisor.kvm.monitor`), its command line
comes from :mod:`~corral.hypervisor.kvm.cmdline`, NICs are tap devices from
:mod:`~corral.hypervisor.kvm.netdev`.

Acceleration: ``kvm_flag`` ``enabled``/``disabled`` forces KVM/TCG; the
default ("") uses KVM only when the CPU has hardware virtualization
(``vmx``/``svm``) and ``/dev/kvm`` opens, else TCG.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from pathlib import Path
from typing import Any, ClassVar

from corral import constants as C
from corral import errors
from corral.hypervisor import base
from corral.hypervisor.base import BlockDevice, InstanceInfo
from corral.hypervisor.kvm import cmdline as cl
from corral.hypervisor.kvm import netdev
from corral.hypervisor.kvm.cmdline import PARAMETERS, check_combinations, validate_on_node
from corral.hypervisor.kvm.monitor import MonitorError, QmpMonitor
from corral.hypervisor.kvm.runtime import KvmRuntime, RuntimeDirs, process_cpu_time
from corral.objects import Instance, InstanceConsole, MigrationStatus, Node, NodeGroup, fill_dict
from corral.paths import Paths
from corral.process import run_command

log = logging.getLogger(__name__)

QEMU_START_TIMEOUT = 120       # -mem-prealloc of a large guest takes a while
QMP_READY_TIMEOUT = 30
KILL_WAIT = 10
POWERDOWN_REPEAT = 5.0         # seconds between power button presses
MIGRATION_STATUS_RETRIES = 5
MIGRATION_STATUS_RETRY_DELAY = 2.0
_ACTIVE_MIGRATION = ("setup", "active", "pre-switchover", "device", "wait-unplug")


def hardware_kvm_available(cpuinfo: str = "/proc/cpuinfo", dev: str = "/dev/kvm") -> bool:
    """True when the CPU has ``vmx``/``svm`` and ``/dev/kvm`` can be opened."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as fh:
            flags = {w for line in fh if line.startswith("flags") for w in line.split()}
    except OSError:
        return False
    if not flags & {"vmx", "svm"}:
        return False
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def qemu_version(kvm_path: str) -> list[int]:
    """QEMU's version as ints (``[7, 2, 19]``). Raises HypervisorError."""
    try:
        res = run_command([kvm_path, "--version"], timeout=30)
    except OSError as err:
        raise errors.HypervisorError(f"Cannot run {kvm_path}: {err}") from err
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", res.stdout)
    if res.failed or not m:
        raise errors.HypervisorError(f"{kvm_path} --version failed: {res.output.strip()}")
    return [int(g) for g in m.groups(default="0")]


def _parse_cpu_list(mask: str) -> set[int]:
    if mask == "all":
        return set(range(os.cpu_count() or 1))
    cpus: set[int] = set()
    for part in mask.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


class KVMHypervisor(base.BaseHypervisor):
    """QEMU/KVM instances on this node (see the module docstring)."""

    NAME = C.HT_KVM
    PARAMETERS = PARAMETERS
    CAN_MIGRATE = True
    ANCILLARY_FILES_OPT: ClassVar[list[str]] = ["/etc/corral/kvm-vif-bridge"]

    def __init__(self, paths: Paths) -> None:
        super().__init__(paths)
        self.dirs = RuntimeDirs(paths)

    # -- helpers -------------------------------------------------------------------
    @staticmethod
    def fill_hvparams(hvparams: dict[str, Any] | None) -> dict[str, Any]:
        return fill_dict(C.HV_KVM_DEFAULTS, hvparams)

    @staticmethod
    def acceleration(hvparams: dict[str, Any] | None = None) -> str:
        """``kvm`` or ``tcg``: what instances with these hvparams use here."""
        flag = str((hvparams or {}).get("kvm_flag") or "")
        return cl.decide_accel(flag, hardware_kvm_available())

    def _monitor(self, name: str, timeout: float = 10.0) -> QmpMonitor:
        return QmpMonitor(self.dirs.qmp_socket(name), timeout=timeout)

    def _require_pid(self, name: str, action: str) -> int:
        pid = self.dirs.alive_pid(name)
        if pid is None:
            raise errors.HypervisorError(f"Cannot {action} instance {name}: not running")
        return pid

    def _vif_script(self) -> Path:
        return self.paths.conf_dir / "kvm-vif-bridge"

    # -- start ---------------------------------------------------------------------
    def start_instance(self, instance: Instance, block_devices: list[BlockDevice],
                       startup_paused: bool) -> None:
        """Start ``instance``: write the runtime file, create and attach taps,
        launch QEMU paused, wait for QMP, pin CPUs, then ``cont`` unless
        ``startup_paused``. Raises :class:`errors.HypervisorError`; nothing is
        left behind on failure."""
        name = instance.name
        hvp = self.fill_hvparams(instance.hvparams)
        bep = fill_dict(C.BEC_DEFAULTS, instance.beparams)
        self.validate_parameters(hvp)
        try:
            check_combinations(hvp)
        except errors.OpPrereqError as err:
            raise errors.HypervisorError(f"Cannot start {name}: {err}") from err
        vnc_address = None
        bind = str(hvp.get("vnc_bind_address") or "")
        if bind and not bind.startswith("/") and not cl.is_ip_address(bind):
            vnc_address = netdev.interface_address(bind)
            if vnc_address is None:
                raise errors.HypervisorError(f"Interface {bind} (vnc_bind_address) has no "
                                             "address", errors.ECODE_ENVIRON)
        argv = cl.build_base_argv(name=name, uuid=instance.uuid, hvparams=hvp, beparams=bep,
                                  accel=self.acceleration(hvp),
                                  network_port=instance.network_port, vnc_address=vnc_address)
        nics = []
        for nic in instance.nics:
            d = nic.to_dict()
            d["nicparams"] = fill_dict(C.NICC_DEFAULTS, nic.nicparams)
            nics.append(d)
        disks = [[bd.disk.to_dict(), bd.link_path, bd.uri] for bd in block_devices]
        runtime = KvmRuntime(argv, nics, hvp, disks)
        self._execute_runtime(name, runtime, startup_paused=startup_paused,
                              tags=list(instance.tags))

    def _execute_runtime(self, name: str, runtime: KvmRuntime, startup_paused: bool,
                         incoming: str | None = None, tags: list[str] | None = None) -> None:
        """Launch QEMU from ``runtime`` (Ganeti's ``_ExecuteKVMRuntime``)."""
        hvp = runtime.hvparams
        if self.dirs.alive_pid(name) is not None:
            raise errors.HypervisorError(f"Failed to start instance {name}: already running")
        self.dirs.ensure()
        files = self.dirs.node_files(name)
        self._cleanup(name)                 # stale leftovers of a crashed instance
        if hvp.get("use_chroot"):
            Path(files.chroot_dir).mkdir(parents=True, exist_ok=True)
        multi_queue = int(hvp.get("virtio_net_queues") or 1) > 1 and \
            hvp.get("nic_type") == "paravirtual"
        taps: list[str] = []
        started = False
        try:
            nic_specs = []
            for idx, nic in enumerate(runtime.nics):
                tap = netdev.create_tap(multi_queue)
                taps.append(tap)
                self.dirs.add_tap(name, idx, tap)
                conf = netdev.NicConfig.from_nic_dict(idx, nic)
                # On a migration target, routes move only once the migration
                # succeeded (finalize_migration_dst), as in Ganeti.
                if not (incoming and conf.mode == C.NIC_MODE_ROUTED):
                    netdev.configure_nic(name, conf, tap, tags, self._vif_script())
                nic_specs.append(cl.NicSpec(mac=conf.mac, tap=tap))
            disk_specs = [cl.DiskSpec(link_path=self._local_link(str(link)),
                                      mode=str(disk.get("mode", C.DISK_RDWR)), uri=uri)
                          for disk, link, uri in runtime.disks]
            options = cl.LaunchOptions(vhost_available=os.path.exists("/dev/vhost-net"),
                                       incoming=incoming)
            argv = cl.build_exec_argv(runtime.argv, hvparams=hvp, files=files,
                                      disks=disk_specs, nics=nic_specs, options=options)
            self.dirs.save_runtime(name, runtime)
            started = True
            res = run_command(argv, timeout=QEMU_START_TIMEOUT)
            if res.failed:
                raise errors.HypervisorError(
                    f"Failed to start instance {name}: {res.fail_reason()}: "
                    f"{(res.stderr or res.stdout).strip()[-1500:]}")
            pid = self._wait_for_pid(name)
            monitor = self._wait_for_qmp(name, pid)
            self._pin_cpus(name, pid, hvp, monitor)
            if hvp.get("vnc_password_file") and hvp.get("vnc_bind_address"):
                try:
                    password = Path(hvp["vnc_password_file"]).read_text().splitlines()[0]
                except (OSError, IndexError) as err:
                    raise errors.HypervisorError(
                        f"Cannot read vnc_password_file of {name}: {err}") from err
                monitor.set_password("vnc", password)
            if incoming:
                caps = [c for c in str(hvp.get("migration_caps") or "").split(":") if c]
                if caps:
                    monitor.migrate_set_capabilities({c: True for c in caps})
            elif not startup_paused:
                monitor.cont()
        except BaseException:
            if started:
                pid = self.dirs.alive_pid(name)
                if pid is not None:
                    self._kill(pid)
            for tap in taps:
                netdev.remove_tap(tap)
            self.dirs.remove_files(name)
            raise

    def _local_link(self, link: str) -> str:
        """This node's path of a disk link (another node's root on the same
        machine has another instance-disks directory). The local link wins:
        a migration target must open its own disks, not the source's, even
        when the source's link is visible on the same machine."""
        local = self.paths.instance_disks_dir / os.path.basename(link)
        return str(local) if local.exists() else link

    def _wait_for_pid(self, name: str) -> int:
        deadline = time.monotonic() + QMP_READY_TIMEOUT
        while time.monotonic() < deadline:
            pid = self.dirs.alive_pid(name)
            if pid is not None:
                return pid
            time.sleep(0.02)
        raise errors.HypervisorError(f"Instance {name}: QEMU exited or wrote no pid file")

    def _wait_for_qmp(self, name: str, pid: int) -> QmpMonitor:
        monitor = self._monitor(name)
        deadline = time.monotonic() + QMP_READY_TIMEOUT
        while True:
            try:
                monitor.query_status()
                return monitor
            except MonitorError as err:
                if self.dirs.alive_pid(name) != pid or time.monotonic() > deadline:
                    raise errors.HypervisorError(
                        f"Instance {name}: QMP did not come up: {err}") from err
                time.sleep(0.05)

    def _pin_cpus(self, name: str, pid: int, hvp: dict[str, Any], monitor: QmpMonitor) -> None:
        mask = str(hvp.get("cpu_mask") or "all")
        if mask == "all":
            return
        masks = mask.split(":")
        try:
            if len(masks) == 1:
                cpus = _parse_cpu_list(masks[0])
                for tid in os.listdir(f"/proc/{pid}/task"):
                    os.sched_setaffinity(int(tid), cpus)
                return
            vcpus = monitor.query_cpus_fast()
            if len(vcpus) != len(masks):
                raise errors.HypervisorError(
                    f"cpu_mask has {len(masks)} entries but {name} has {len(vcpus)} vCPUs")
            for vcpu in vcpus:
                os.sched_setaffinity(int(vcpu["thread-id"]),
                                     _parse_cpu_list(masks[int(vcpu["cpu-index"])]))
        except OSError as err:
            raise errors.HypervisorError(f"Cannot pin CPUs of {name}: {err}") from err

    # -- stop ----------------------------------------------------------------------
    def stop_instance(self, instance: Instance | None, force: bool = False,
                      retry: bool = False, name: str | None = None,
                      timeout: int | None = None) -> None:
        """Stop an instance and remove its runtime files and taps.

        Graceful (``acpi`` and not ``force``): press the ACPI power button
        and wait up to ``timeout`` seconds (default 120, Ganeti's shutdown
        timeout) for QEMU to exit (or the guest to reach ``shutdown`` with
        ``user_shutdown``), then ``quit`` and SIGKILL. ``force`` kills at
        once. Stopping by ``name`` alone requires ``force``. A stopped
        instance is only cleaned up.
        """
        if instance is None and (name is None or not force):
            raise errors.ProgrammerError("Stopping by name requires force")
        name = name or instance.name  # type: ignore[union-attr]
        hvp = self._runtime_hvparams(name, instance)
        self._shutdown(name, hvp, force, timeout)
        self._cleanup(name)

    def _runtime_hvparams(self, name: str, instance: Instance | None) -> dict[str, Any]:
        try:
            return self.dirs.load_runtime(name).hvparams
        except errors.HypervisorError:
            return self.fill_hvparams(instance.hvparams if instance else None)

    def _shutdown(self, name: str, hvp: dict[str, Any], force: bool,
                  timeout: int | None) -> None:
        pid = self.dirs.alive_pid(name)
        if pid is None:
            return
        if force or not hvp.get("acpi", True):
            self._kill(pid)
            return
        tmo = C.DEFAULT_SHUTDOWN_TIMEOUT if timeout is None else timeout
        monitor = self._monitor(name, timeout=5.0)
        try:
            monitor.system_powerdown()
        except MonitorError as err:
            log.warning("instance %s: system_powerdown failed (%s); killing it", name, err)
            self._kill(pid)
            return
        deadline = time.monotonic() + tmo
        next_press = time.monotonic() + POWERDOWN_REPEAT
        while time.monotonic() < deadline:
            if self.dirs.alive_pid(name) is None:
                return
            if hvp.get("user_shutdown") and self._guest_shut_down(name):
                break
            if time.monotonic() >= next_press:
                # As Ganeti's shutdown retries: a guest still booting may
                # have missed the first press.
                next_press = time.monotonic() + POWERDOWN_REPEAT
                try:
                    monitor.system_powerdown()
                except MonitorError as err:
                    log.debug("instance %s: repeated system_powerdown: %s", name, err)
            time.sleep(0.2)
        log.info("instance %s did not power off within %ss; quitting it", name, tmo)
        try:
            monitor.quit()
        except MonitorError as err:
            log.info("instance %s: quit failed: %s", name, err)
        self._wait_gone(pid, 5.0)
        if self.dirs.alive_pid(name) is not None:
            self._kill(pid)

    def _guest_shut_down(self, name: str) -> bool:
        try:
            return self._monitor(name, timeout=5.0).query_status().get("status") == "shutdown"
        except MonitorError:
            return False

    def _kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if not self._wait_gone(pid, KILL_WAIT):
            raise errors.HypervisorError(f"QEMU process {pid} survived SIGKILL")

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                    if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return True
            except FileNotFoundError:
                return True
            time.sleep(0.05)
        return False

    def _cleanup(self, name: str) -> None:
        for tap in self.dirs.load_taps(name):
            netdev.remove_tap(tap)
        self.dirs.remove_files(name)

    def cleanup_instance(self, instance_name: str) -> None:
        """Remove runtime files, sockets and taps of a stopped instance.

        Raises :class:`errors.HypervisorError` while it still runs.
        """
        if self.dirs.alive_pid(instance_name) is not None:
            raise errors.HypervisorError(
                f"Cannot clean up instance {instance_name}: it is still running")
        self._cleanup(instance_name)

    # -- reboot --------------------------------------------------------------------
    def reboot_instance(self, instance: Instance, timeout: int | None = None) -> None:
        """Soft reboot as Ganeti's KVM does: stop (power button, waiting up to
        ``timeout`` s, default 120, then kill) and start QEMU again from the
        saved runtime, so parameters and taps are those of the first start.
        For a reset the guest sees without a new QEMU, see
        :meth:`reset_instance`."""
        name = instance.name
        self._require_pid(name, "reboot")
        runtime = self.dirs.load_runtime(name)
        self._shutdown(name, runtime.hvparams, False, timeout)
        self._cleanup(name)
        self._execute_runtime(name, runtime, startup_paused=False, tags=list(instance.tags))

    def reset_instance(self, instance: Instance) -> None:
        """Reset the running machine (QMP ``system_reset``), like its reset button."""
        self._require_pid(instance.name, "reset")
        self._monitor(instance.name).system_reset()

    # -- queries -------------------------------------------------------------------
    def list_instances(self, hvparams: dict[str, Any] | None = None) -> list[str]:
        return [n for n in self.dirs.known_instances() if self.dirs.alive_pid(n) is not None]

    def get_instance_info(self, instance_name: str,
                          hvparams: dict[str, Any] | None = None) -> InstanceInfo | None:
        """``(name, pid, memory MiB, vcpus, state, cpu seconds)`` or None.

        Memory is the balloon's current size (``-m`` if QMP does not answer);
        state is ``HV_STATE_SHUTDOWN`` when the guest powered itself off and
        QEMU stays (``user_shutdown``), else ``HV_STATE_RUNNING``.
        """
        pid = self.dirs.alive_pid(instance_name)
        if pid is None:
            return None
        try:
            argv = self.dirs.load_runtime(instance_name).argv
        except errors.HypervisorError:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = [a.decode() for a in fh.read().split(b"\0") if a]
        memory, vcpus = cl.parse_argv_memory_vcpus(argv)
        state = C.HV_STATE_RUNNING
        monitor = self._monitor(instance_name, timeout=5.0)
        try:
            results = monitor.execute_many([("query-status", None), ("query-balloon", None)])
            if results[0].get("status") == "shutdown":
                state = C.HV_STATE_SHUTDOWN
            memory = int(results[1]["actual"]) // (1024 * 1024)
        except MonitorError as err:
            log.debug("instance %s: QMP query failed: %s", instance_name, err)
        return InstanceInfo(instance_name, pid, memory, vcpus, state, process_cpu_time(pid))

    def get_all_instances_info(self, hvparams: dict[str, Any] | None = None
                               ) -> list[InstanceInfo]:
        out = []
        for name in self.dirs.known_instances():
            info = self.get_instance_info(name, hvparams)
            if info is not None:
                out.append(info)
        return out

    def instance_status(self, instance_name: str) -> str | None:
        """QEMU's run state (``running``, ``paused``, ``shutdown``, ...) or None."""
        if self.dirs.alive_pid(instance_name) is None:
            return None
        return str(self._monitor(instance_name).query_status().get("status"))

    def get_node_info(self, hvparams: dict[str, Any] | None = None) -> dict[str, Any]:
        """Real memory/CPU data of this node, ``hv_version`` and ``kvm_accel``."""
        info = base.get_linux_node_info()
        hvp = self.fill_hvparams(hvparams)
        try:
            info["hv_version"] = qemu_version(str(hvp["kvm_path"]))
        except errors.HypervisorError as err:
            log.warning("%s", err)
        info["kvm_accel"] = self.acceleration(hvp)
        return info

    @classmethod
    def get_instance_console(cls, instance: Instance, primary_node: Node,
                             node_group: NodeGroup | None, hvparams: dict[str, Any],
                             beparams: dict[str, Any]) -> InstanceConsole:
        """Serial console over ssh + socat (as Ganeti), else VNC/SPICE, else a message.

        The socket path assumes the node's state root is ``/`` (or
        ``CORRAL_ROOT`` here). Corral's own ``gnt-instance console`` does not
        use ssh: it reaches the same socket through the primary node's noded
        (:mod:`corral.noded.console`).
        """
        hvp = cls.fill_hvparams(hvparams)
        if hvp.get("serial_console"):
            sock = RuntimeDirs(Paths.from_env()).serial_socket(instance.name)
            return InstanceConsole(
                instance=instance.name, kind=C.CONS_SSH, host=primary_node.primary_ip,
                user="root",
                command=["socat", "STDIO,raw,echo=0,escape=0x1d", f"UNIX-CONNECT:{sock}"])
        vnc = str(hvp.get("vnc_bind_address") or "")
        if vnc and instance.network_port:
            host = primary_node.primary_ip if vnc in ("0.0.0.0", "::") else vnc
            return InstanceConsole(instance=instance.name, kind=C.CONS_VNC, host=host,
                                   port=instance.network_port,
                                   display=instance.network_port - 5900)
        spice = str(hvp.get("spice_bind") or "")
        if spice and instance.network_port:
            host = primary_node.primary_ip if spice in ("0.0.0.0", "::") else spice
            return InstanceConsole(instance=instance.name, kind=C.CONS_SPICE, host=host,
                                   port=instance.network_port)
        return InstanceConsole(instance=instance.name, kind=C.CONS_MESSAGE,
                               message=f"No serial or graphical console for {instance.name}")

    def verify(self, hvparams: dict[str, Any] | None = None) -> str | None:
        """None when QEMU runs here, else the problem. Logs the acceleration."""
        hvp = self.fill_hvparams(hvparams)
        kvm_path = str(hvp["kvm_path"])
        if not os.access(kvm_path, os.X_OK):
            return f"The KVM binary ('{kvm_path}') does not exist or is not executable"
        try:
            version = qemu_version(kvm_path)
        except errors.HypervisorError as err:
            return str(err)
        accel = self.acceleration(hvp)
        if accel == cl.ACCEL_KVM and not hardware_kvm_available():
            return "kvm_flag is 'enabled' but this node has no usable hardware KVM"
        log.info("QEMU %s at %s; acceleration %s", ".".join(map(str, version)), kvm_path, accel)
        return None

    @classmethod
    def check_parameter_syntax(cls, hvparams: dict[str, Any]) -> None:
        super().check_parameter_syntax(hvparams)
        check_combinations(cls.fill_hvparams(hvparams))

    @classmethod
    def validate_parameters(cls, hvparams: dict[str, Any]) -> None:
        super().validate_parameters(hvparams)
        validate_on_node(cls.fill_hvparams(hvparams))

    # -- memory --------------------------------------------------------------------
    def balloon_instance_memory(self, instance: Instance, mem: int) -> None:
        """Ask the guest to use ``mem`` MiB (virtio balloon)."""
        self._require_pid(instance.name, "balloon")
        self._monitor(instance.name).balloon(mem)

    # -- migration -----------------------------------------------------------------
    def migration_info(self, instance: Instance) -> str:
        """The runtime file text, handed to the target's :meth:`accept_instance`."""
        return self.dirs.load_runtime(instance.name).serialize()

    def accept_instance(self, instance: Instance, info: str, target: str) -> None:
        """Start QEMU from the source's runtime, waiting on
        ``tcp:<target>:<migration_port>``."""
        runtime = KvmRuntime.parse(info)
        port = int(self.fill_hvparams(instance.hvparams)["migration_port"])
        self._execute_runtime(instance.name, runtime, startup_paused=False,
                              incoming=cl.incoming_uri(target, port), tags=list(instance.tags))

    def migrate_instance(self, cluster_name: str, instance: Instance, target: str,
                         live: bool) -> None:
        """Start migrating to ``target`` with the bandwidth (MiB/s) and
        downtime (ms) limits of the hvparams; non-live stops the guest first."""
        name = instance.name
        self._require_pid(name, "migrate")
        hvp = {**self.dirs.load_runtime(name).hvparams,
               **{k: v for k, v in self.fill_hvparams(instance.hvparams).items()
                  if k.startswith("migration_")}}
        monitor = self._monitor(name)
        if not live:
            monitor.stop()
        monitor.migrate_set_parameters(
            max_bandwidth=int(hvp["migration_bandwidth"]) * 1024 * 1024,
            downtime_limit=int(hvp["migration_downtime"]))
        caps = [c for c in str(hvp.get("migration_caps") or "").split(":") if c]
        if caps:
            monitor.migrate_set_capabilities({c: True for c in caps})
        monitor.migrate(cl.incoming_uri(target, int(hvp["migration_port"])))

    def get_migration_status(self, instance: Instance) -> MigrationStatus:
        """Progress from ``query-migrate`` (RAM in bytes, downtime in ms).

        Unknown answers are retried (5 times, 2 s apart) before ``failed``;
        with the ``postcopy-ram`` capability, post-copy is started once the
        first dirty-page pass is done.
        """
        monitor = self._monitor(instance.name)
        for attempt in range(MIGRATION_STATUS_RETRIES):
            info = monitor.query_migrate()
            status = info.get("status")
            ram = info.get("ram") or {}
            result = MigrationStatus(status="active", transferred_ram=ram.get("transferred", 0),
                                     total_ram=ram.get("total", 0),
                                     downtime_ms=info.get("downtime"))
            if status in ("completed", "failed", "cancelled", "postcopy-active"):
                result.status = "active" if status == "postcopy-active" else status
                if status == "postcopy-active":
                    result.postcopy_status = status
                return result
            if status in _ACTIVE_MIGRATION:
                caps = str(self._runtime_hvparams(instance.name, instance)
                           .get("migration_caps") or "")
                if status == "active" and "postcopy-ram" in caps.split(":") and \
                        ram.get("dirty-sync-count", 0) >= 2:
                    monitor.execute("migrate-start-postcopy")
                    result.postcopy_status = "postcopy-active"
                return result
            log.info("unexpected migration status %r of %s (try %d)", status, instance.name,
                     attempt + 1)
            time.sleep(MIGRATION_STATUS_RETRY_DELAY)
        return MigrationStatus(status="failed")

    def cancel_migration(self, instance: Instance) -> None:
        self._monitor(instance.name).migrate_cancel()

    def finalize_migration_source(self, instance: Instance, success: bool, live: bool) -> None:
        """Success: kill the (paused) source QEMU and clean up. Failure: let
        the guest run on here (``cont``, capabilities cleared)."""
        name = instance.name
        pid = self.dirs.alive_pid(name)
        if success:
            if pid is not None:
                self._kill(pid)
            self._cleanup(name)
            return
        if pid is None:
            self._cleanup(name)
            return
        monitor = self._monitor(name)
        caps = [c for c in str(self._runtime_hvparams(name, instance).get("migration_caps")
                                or "").split(":") if c]
        if caps:
            monitor.migrate_set_capabilities({c: False for c in caps})
        if monitor.query_status().get("status") != "running":
            monitor.cont()

    def finalize_migration_dst(self, instance: Instance, info: str, success: bool) -> None:
        """Success: attach routed NICs, save the runtime, run the guest.
        Failure: kill the incoming QEMU and clean up."""
        name = instance.name
        if not success:
            pid = self.dirs.alive_pid(name)
            if pid is not None:
                self._kill(pid)
            self._cleanup(name)
            return
        runtime = KvmRuntime.parse(info)
        taps = self.dirs.load_taps(name)
        for idx, nic in enumerate(runtime.nics):
            conf = netdev.NicConfig.from_nic_dict(idx, nic)
            if conf.mode == C.NIC_MODE_ROUTED and idx < len(taps):
                netdev.configure_nic(name, conf, taps[idx], list(instance.tags),
                                     self._vif_script())
        self.dirs.save_runtime(name, runtime)
        monitor = self._monitor(name)
        caps = [c for c in str(runtime.hvparams.get("migration_caps") or "").split(":") if c]
        if caps:
            monitor.migrate_set_capabilities({c: False for c in caps})
        if monitor.query_status().get("status") == "paused":
            monitor.cont()

    @staticmethod
    def versions_safe_for_migration(src: list[int] | None, target: list[int] | None) -> bool:
        return True
