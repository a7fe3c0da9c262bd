"""BaseHypervisor: parameter checks, defaults, node info parsing, registry."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from corral import constants as C
from corral import errors
from corral.hypervisor import get_hypervisor, get_hypervisor_class
from corral.hypervisor import base
from corral.hypervisor.base import BaseHypervisor, ParamCheck, get_linux_node_info
from corral.hypervisor.fake import FakeHypervisor
from corral.objects import Instance
from corral.paths import Paths


class DemoHypervisor(BaseHypervisor):
    NAME: ClassVar[str] = "demo"
    PARAMETERS: ClassVar[dict[str, ParamCheck]] = {
        "kernel_path": base.REQ_FILE_CHECK,
        "initrd_path": base.OPT_FILE_CHECK,
        "port": base.OPT_NET_PORT_CHECK,
        "cpu_mask": base.MULTI_CPU_MASK_CHECK,
        "mode": base.param_in_set(False, {"a", "b"}),
        "migration_mode": base.MIGRATION_MODE_CHECK,
        "extra": base.NO_CHECK,
    }


def test_registry(tmp_path: Path) -> None:
    assert get_hypervisor_class(C.HT_FAKE) is FakeHypervisor
    assert isinstance(get_hypervisor(C.HT_FAKE, Paths(tmp_path)), FakeHypervisor)
    with pytest.raises(errors.OpPrereqError, match="not supported") as exc:
        get_hypervisor_class("xen-pvm")
    assert exc.value.ecode == errors.ECODE_INVAL


def test_check_parameter_syntax_ok(tmp_path: Path) -> None:
    DemoHypervisor.check_parameter_syntax({
        "kernel_path": "/boot/vmlinuz", "initrd_path": "", "port": 5900,
        "cpu_mask": "0-1:2:all", "mode": "a", "migration_mode": "non-live", "extra": 1})


@pytest.mark.parametrize("params, fragment", [
    ({"migration_mode": "live"}, "'kernel_path' is required"),
    ({"kernel_path": "", "migration_mode": "live"}, "must not be empty"),
    ({"kernel_path": "boot/vmlinuz", "migration_mode": "live"}, "absolute"),
    ({"kernel_path": "/boot/../vmlinuz", "migration_mode": "live"}, "absolute normalized"),
    ({"kernel_path": "/k", "migration_mode": "live", "port": 70000}, "network port"),
    ({"kernel_path": "/k", "migration_mode": "live", "cpu_mask": "0-1:x"}, "CPU masks"),
    ({"kernel_path": "/k", "migration_mode": "live", "mode": "c"}, "must be one of"),
    ({"kernel_path": "/k", "migration_mode": "fast"}, "migration_mode"),
    ({"kernel_path": "/k", "migration_mode": "live", "bogus": 1}, "Unknown hypervisor"),
])
def test_check_parameter_syntax_refused(params: dict[str, object], fragment: str) -> None:
    with pytest.raises(errors.OpPrereqError, match=fragment) as exc:
        DemoHypervisor.check_parameter_syntax(params)
    assert exc.value.ecode == errors.ECODE_INVAL


def test_validate_parameters_on_node(tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"\x00")
    DemoHypervisor.validate_parameters({"kernel_path": str(kernel), "initrd_path": ""})
    with pytest.raises(errors.HypervisorError, match="kernel_path"):
        DemoHypervisor.validate_parameters({"kernel_path": str(tmp_path / "missing")})
    with pytest.raises(errors.HypervisorError, match="initrd_path"):
        DemoHypervisor.validate_parameters({"kernel_path": str(kernel),
                                            "initrd_path": str(tmp_path)})


def test_base_defaults(tmp_path: Path) -> None:
    hv = DemoHypervisor(Paths(tmp_path))
    inst = Instance(name="i1", primary_node="n1")
    assert hv.migration_info(inst) == ""
    assert hv.verify_instance(inst) is True
    for call in (lambda: hv.accept_instance(inst, "", "127.0.1.2"),
                 lambda: hv.migrate_instance("c", inst, "127.0.1.2", True),
                 lambda: hv.get_migration_status(inst),
                 lambda: hv.balloon_instance_memory(inst, 128),
                 lambda: hv.hotplug_supported(inst),
                 lambda: hv.powercycle_node()):
        with pytest.raises(errors.HypervisorError):
            call()
    for call in (lambda: hv.start_instance(inst, [], False),
                 lambda: hv.stop_instance(inst),
                 lambda: hv.list_instances(),
                 lambda: hv.get_node_info()):
        with pytest.raises(NotImplementedError):
            call()
    assert BaseHypervisor.versions_safe_for_migration([7, 2], [7, 2]) is True
    assert BaseHypervisor.versions_safe_for_migration([7, 2], [8, 0]) is False
    assert DemoHypervisor.get_ancillary_files() == ([], [])


def test_get_linux_node_info_parsing(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  2097152 kB\nMemFree:  524288 kB\n"
                       "Buffers:  102400 kB\nCached:  421888 kB\nSwapTotal: 0 kB\n")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nphysical id\t: 0\n\nprocessor\t: 1\n"
                       "physical id\t: 0\n\nprocessor\t: 2\nphysical id\t: 1\n")
    info = get_linux_node_info(str(meminfo), str(cpuinfo))
    assert info == {"memory_total": 2048, "memory_free": 1024, "memory_dom0": 1024,
                    "cpu_total": 3, "cpu_dom0": 3, "cpu_nodes": 1, "cpu_sockets": 2}


def test_get_linux_node_info_real() -> None:
    info = get_linux_node_info()
    assert info["memory_total"] >= info["memory_free"] > 0
    assert info["cpu_total"] >= 1 and info["cpu_sockets"] >= 1
