"""Runtime files of the KVM hypervisor: format, layout and liveness."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import errors
from corral.hypervisor.kvm.runtime import (
    KvmRuntime,
    RuntimeDirs,
    argv_name,
    process_cmdline,
    process_cpu_time,
)
from corral.paths import Paths


def test_runtime_serializes_as_ganeti_list() -> None:
    rt = KvmRuntime(["qemu", "-name", "vm1"], [{"mac": "aa:00:00:00:00:01"}],
                    {"acpi": True}, [[{"size": 1}, "/link", None]])
    data = json.loads(rt.serialize())
    assert data == [["qemu", "-name", "vm1"], [{"mac": "aa:00:00:00:00:01"}],
                    {"acpi": True}, [[{"size": 1}, "/link", None]]]
    assert KvmRuntime.parse(rt.serialize()) == rt
    assert rt.name == "vm1"


def test_runtime_accepts_old_three_element_form_and_refuses_garbage() -> None:
    assert KvmRuntime.parse('[["qemu"], [], {}]').disks == []
    for bad in ("not json", "{}", '[1, 2, 3]', '[["q"]]'):
        with pytest.raises(errors.HypervisorError, match="Invalid KVM runtime"):
            KvmRuntime.parse(bad)


def test_argv_name_strips_options() -> None:
    assert argv_name(["q", "-name", "vm1,debug-threads=on"]) == "vm1"
    assert argv_name(["q"]) is None


def test_layout_and_save_load(tmp_path: Path) -> None:
    dirs = RuntimeDirs(Paths.from_env(tmp_path))
    assert dirs.base == tmp_path / "var/run/corral/kvm-hypervisor"
    assert dirs.qmp_socket("a") == dirs.base / "ctrl/a.qmp"
    assert dirs.serial_socket("a") == dirs.base / "ctrl/a.serial"
    assert dirs.pid_file("a") == dirs.base / "pid/a"
    assert dirs.runtime_file("a") == dirs.base / "conf/a.runtime"
    rt = KvmRuntime(["qemu", "-name", "a"], [], {}, [])
    dirs.save_runtime("a", rt)
    assert dirs.load_runtime("a") == rt
    dirs.save_taps("a", ["cortap3", "cortap9"])
    assert (dirs.base / "nic/a/1").read_text() == "cortap9\n"
    assert dirs.load_taps("a") == ["cortap3", "cortap9"]
    dirs.remove_files("a")
    assert not dirs.runtime_file("a").exists() and dirs.load_taps("a") == []
    with pytest.raises(errors.HypervisorError, match="No runtime data"):
        dirs.load_runtime("a")


def test_socket_path_length_checked(tmp_path: Path) -> None:
    dirs = RuntimeDirs(Paths.from_env(tmp_path / ("x" * 80)))
    with pytest.raises(errors.HypervisorError, match="too long"):
        dirs.node_files("instance1.example.com")


@pytest.fixture
def fake_qemu() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                             "-name", "vm1"])
    # Until exec() is done, /proc shows the parent's command line.
    deadline = time.monotonic() + 10
    while "-name" not in (process_cmdline(proc.pid) or []) and time.monotonic() < deadline:
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def test_liveness_needs_pid_and_matching_name(tmp_path: Path,
                                              fake_qemu: subprocess.Popen[bytes]) -> None:
    dirs = RuntimeDirs(Paths.from_env(tmp_path))
    dirs.ensure()
    assert dirs.alive_pid("vm1") is None
    dirs.pid_file("vm1").write_text(f"{fake_qemu.pid}\n")
    assert dirs.alive_pid("vm1") == fake_qemu.pid
    assert process_cpu_time(fake_qemu.pid) >= 0.0
    # Same pid recorded for another name: not that instance.
    dirs.pid_file("vm2").write_text(f"{fake_qemu.pid}\n")
    assert dirs.alive_pid("vm2") is None
    assert dirs.known_instances() == ["vm1", "vm2"]
    fake_qemu.kill()
    fake_qemu.wait()
    assert dirs.alive_pid("vm1") is None


@pytest.mark.parametrize("name", ["/var/x", "../../etc", "a/b", "..", "a\nb", ""])
def test_runtime_files_refuse_names_that_leave_their_directory(tmp_path: Path,
                                                               name: str) -> None:
    dirs = RuntimeDirs(Paths(tmp_path))
    for fn in (dirs.pid_file, dirs.qmp_socket, dirs.monitor_socket, dirs.serial_socket,
               dirs.serial_log, dirs.qga_socket, dirs.runtime_file, dirs.instance_nic_dir,
               dirs.instance_chroot):
        with pytest.raises(errors.OpPrereqError) as exc:
            fn(name)
        assert exc.value.ecode == errors.ECODE_INVAL
    assert dirs.qmp_socket("inst1").parent == dirs.ctrl_dir
    assert dirs.serial_log("inst1") == dirs.console_log_dir / "inst1.serial.log"
