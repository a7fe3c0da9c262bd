"""Per-instance runtime files of the KVM hypervisor on a node.

Mirrors Ganeti's ``/var/run/ganeti/kvm-hypervisor/`` layout below
``paths.hypervisor_run_dir("kvm")``::

    pid/<name>             qemu's pid file (-pidfile)
    ctrl/<name>.qmp        QMP socket
    ctrl/<name>.monitor    human monitor socket
    ctrl/<name>.serial     serial console socket
    ctrl/<name>.qga        guest agent socket (use_guest_agent)
    conf/<name>.runtime    JSON [argv, [nic dicts], hvparams, [[disk dict, link, uri]]]
    nic/<name>/<seq>       tap device of NIC <seq>
    chroot/<name>          empty chroot directory (use_chroot)

and, below ``paths.log_dir``, ``kvm/<name>.serial.log``: everything the guest
wrote on its serial console since QEMU started (QEMU's chardev ``logfile``,
also written while no client is connected; kept after the instance stops for
post-mortem reading, truncated by the next start).

Everything the hypervisor needs about a running instance is in these files,
so a freshly started node daemon sees, stops and cleans up instances started
by its predecessor. An instance is alive when the pid in its pid file is a
running process whose command line has ``-name <name>``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.fileio import write_file_atomic
from corral import constants as C
from corral import errors
from corral.hypervisor.kvm.cmdline import NodeFiles
from corral.paths import Paths, component_path

# sun_path holds 108 bytes including the terminating NUL.
UNIX_PATH_MAX = 107


@dataclass
class KvmRuntime:
    """The saved launch data of an instance (Ganeti's KVM runtime).

    ``argv`` is the instance part of the command line
    (``cmdline.build_base_argv``); ``nics`` are NIC dicts with filled
    ``nicparams``; ``disks`` are ``[disk dict, link path, uri]`` triples.
    """

    argv: list[str]
    nics: list[dict[str, Any]] = field(default_factory=list)
    hvparams: dict[str, Any] = field(default_factory=dict)
    disks: list[list[Any]] = field(default_factory=list)

    def serialize(self) -> str:
        """The runtime file text (also the migration info handed to the target)."""
        return json.dumps([self.argv, self.nics, self.hvparams, self.disks])

    @classmethod
    def parse(cls, text: str) -> KvmRuntime:
        """Read runtime file text; accepts Ganeti's old three-element form.

        Raises :class:`errors.HypervisorError` for unparsable text.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise errors.HypervisorError(f"Invalid KVM runtime data: {err}") from err
        if not isinstance(data, list) or len(data) not in (3, 4) \
                or not isinstance(data[0], list):
            raise errors.HypervisorError("Invalid KVM runtime data: not [argv, nics, hvparams"
                                         ", disks]")
        disks = data[3] if len(data) == 4 else []
        return cls([str(a) for a in data[0]], list(data[1]), dict(data[2]), list(disks))

    @property
    def name(self) -> str:
        """The instance name from ``-name``."""
        return argv_name(self.argv) or ""


def argv_name(argv: list[str]) -> str | None:
    """The value of ``-name`` in a QEMU command line (without ``,opts``)."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "-name":
            return argv[i + 1].split(",", 1)[0]
    return None


class RuntimeDirs:
    """Paths of the runtime files below ``paths.hypervisor_run_dir("kvm")``."""

    def __init__(self, paths: Paths) -> None:
        self.base = paths.hypervisor_run_dir(C.HT_KVM)
        self.pid_dir = self.base / "pid"
        self.ctrl_dir = self.base / "ctrl"
        self.conf_dir = self.base / "conf"
        self.nic_dir = self.base / "nic"
        self.chroot_dir = self.base / "chroot"
        self.chroot_quarantine_dir = self.base / "chroot-quarantine"
        self.console_log_dir = paths.log_dir / C.HT_KVM

    def ensure(self) -> None:
        for d in (self.pid_dir, self.ctrl_dir, self.conf_dir, self.nic_dir, self.chroot_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.ctrl_dir, 0o700)
        # Console output may hold secrets typed or printed on the console.
        self.console_log_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.console_log_dir, 0o700)

    def pid_file(self, name: str) -> Path:
        return component_path(self.pid_dir, name, what="instance name")

    def qmp_socket(self, name: str) -> Path:
        return component_path(self.ctrl_dir, name, suffix=".qmp", what="instance name")

    def monitor_socket(self, name: str) -> Path:
        return component_path(self.ctrl_dir, name, suffix=".monitor", what="instance name")

    def serial_socket(self, name: str) -> Path:
        return component_path(self.ctrl_dir, name, suffix=".serial", what="instance name")

    def serial_log(self, name: str) -> Path:
        """Log of the serial console output (see the module docstring)."""
        return component_path(self.console_log_dir, name, suffix=".serial.log",
                              what="instance name")

    def qga_socket(self, name: str) -> Path:
        return component_path(self.ctrl_dir, name, suffix=".qga", what="instance name")

    def runtime_file(self, name: str) -> Path:
        return component_path(self.conf_dir, name, suffix=".runtime", what="instance name")

    def instance_nic_dir(self, name: str) -> Path:
        return component_path(self.nic_dir, name, what="instance name")

    def instance_chroot(self, name: str) -> Path:
        return component_path(self.chroot_dir, name, what="instance name")

    def node_files(self, name: str) -> NodeFiles:
        """The node-local files of ``name`` for the command line.

        Raises :class:`errors.HypervisorError` when a socket path is longer
        than a unix socket address allows (a state root too deep).
        """
        sockets = [self.qmp_socket(name), self.monitor_socket(name), self.serial_socket(name),
                   self.qga_socket(name)]
        for sock in sockets:
            if len(os.fsencode(sock)) > UNIX_PATH_MAX:
                raise errors.HypervisorError(
                    f"Unix socket path too long ({len(os.fsencode(sock))} > {UNIX_PATH_MAX} "
                    f"bytes): {sock}; use a shorter state root or instance name")
        return NodeFiles(pidfile=str(self.pid_file(name)), qmp_socket=str(sockets[0]),
                         monitor_socket=str(sockets[1]), serial_socket=str(sockets[2]),
                         qga_socket=str(sockets[3]),
                         chroot_dir=str(self.instance_chroot(name)),
                         serial_log=str(self.serial_log(name)))

    # -- runtime file ------------------------------------------------------------
    def save_runtime(self, name: str, runtime: KvmRuntime) -> None:
        self.ensure()
        write_file_atomic(self.runtime_file(name), runtime.serialize(), mode=0o644)

    def load_runtime(self, name: str) -> KvmRuntime:
        """Raises :class:`errors.HypervisorError` if there is no runtime file."""
        path = self.runtime_file(name)
        try:
            return KvmRuntime.parse(path.read_text())
        except FileNotFoundError:
            raise errors.HypervisorError(f"No runtime data for instance {name}") from None

    # -- taps ----------------------------------------------------------------------
    def save_taps(self, name: str, taps: list[str]) -> None:
        d = self.instance_nic_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        for seq, tap in enumerate(taps):
            (d / str(seq)).write_text(tap + "\n")

    def add_tap(self, name: str, seq: int, tap: str) -> None:
        d = self.instance_nic_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        (d / str(seq)).write_text(tap + "\n")

    def load_taps(self, name: str) -> list[str]:
        """Tap names recorded for ``name``, in NIC order."""
        d = self.instance_nic_dir(name)
        if not d.is_dir():
            return []
        entries = sorted((p for p in d.iterdir() if p.name.isdigit()),
                         key=lambda p: int(p.name))
        return [p.read_text().strip() for p in entries]

    # -- liveness ------------------------------------------------------------------
    def read_pid(self, name: str) -> int | None:
        try:
            return int(self.pid_file(name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def alive_pid(self, name: str) -> int | None:
        """The pid of ``name``'s qemu if it is running, else None."""
        pid = self.read_pid(name)
        if pid is None:
            return None
        argv = process_cmdline(pid)
        if argv is None or argv_name(argv) != name:
            return None
        if process_state(pid) == "Z":
            return None
        return pid

    def known_instances(self) -> list[str]:
        """Names with a pid file (running or not)."""
        if not self.pid_dir.is_dir():
            return []
        return sorted(p.name for p in self.pid_dir.iterdir() if p.is_file())

    def remove_files(self, name: str) -> None:
        """Remove every runtime file of ``name`` (not the taps themselves)."""
        for path in (self.pid_file(name), self.qmp_socket(name), self.monitor_socket(name),
                     self.serial_socket(name), self.qga_socket(name), self.runtime_file(name)):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.instance_nic_dir(name), ignore_errors=True)
        chroot = self.instance_chroot(name)
        if chroot.is_dir():
            try:
                chroot.rmdir()
            except OSError:
                # Not empty: keep it out of the way for inspection, as Ganeti.
                self.chroot_quarantine_dir.mkdir(parents=True, exist_ok=True)
                os.replace(chroot, component_path(self.chroot_quarantine_dir, name,
                                                  suffix=f"-{os.getpid()}", what="instance name"))


def process_cmdline(pid: int) -> list[str] | None:
    """argv of process ``pid`` from /proc, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def process_state(pid: int) -> str | None:
    """The one-letter state of process ``pid`` (R, S, Z, ...), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def process_cpu_time(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0.0 if gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    # After the command: state is field 3, utime 14, stime 15 (1-based).
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")
