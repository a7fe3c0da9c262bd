"""Parameter checks of the KVM hypervisor (master-side syntax, node-side validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral import constants as C
from corral import errors
from corral.hypervisor import get_hypervisor_class
from corral.hypervisor.kvm import KVMHypervisor


def test_registry_returns_kvm_class() -> None:
    assert get_hypervisor_class("kvm") is KVMHypervisor
    assert KVMHypervisor.CAN_MIGRATE


def test_every_default_has_a_check_and_defaults_pass() -> None:
    assert set(KVMHypervisor.PARAMETERS) == set(C.HV_KVM_DEFAULTS)
    KVMHypervisor.check_parameter_syntax(dict(C.HV_KVM_DEFAULTS))
    KVMHypervisor.validate_parameters(dict(C.HV_KVM_DEFAULTS))


@pytest.mark.parametrize("key,value", [
    ("kvm_path", "relative/qemu"), ("kernel_path", "/boot/../vmlinuz"),
    ("boot_order", "usb"), ("nic_type", "virtio"), ("disk_type", "nvme"),
    ("disk_cache", "unsafe"), ("disk_aio", "io_uring"), ("disk_discard", "on"),
    ("scsi_controller_type", "ahci"), ("usb_mouse", "trackball"), ("kvm_flag", "yes"),
    ("security_model", "root"), ("reboot_behavior", "halt"), ("migration_mode", "fast"),
    ("migration_port", 70000), ("migration_bandwidth", -1), ("migration_downtime", "30"),
    ("virtio_net_queues", 9), ("virtio_net_queues", 0), ("kvm_pci_reservations", 33),
    ("cpu_mask", "0-1:x"), ("cpu_cores", -2), ("serial_speed", 0),
    ("soundhw", "gus"), ("kvm_extra", "-append 'unclosed"), ("migration_caps", "Bad Cap"),
    ("vnc_bind_address", "not an address!"), ("cdrom_image_path", "cdrom.iso"),
    ("acpi", "yes"),
])
def test_bad_values_refused(key: str, value: Any) -> None:
    with pytest.raises(errors.OpPrereqError) as exc:
        KVMHypervisor.check_parameter_syntax({**C.HV_KVM_DEFAULTS, key: value})
    assert exc.value.ecode == errors.ECODE_INVAL
    assert key in str(exc.value)


def test_unknown_parameter_refused() -> None:
    with pytest.raises(errors.OpPrereqError, match="Unknown hypervisor parameters"):
        KVMHypervisor.check_parameter_syntax({"kvm_path": "/usr/bin/kvm", "bogus": 1})


@pytest.mark.parametrize("over,msg", [
    ({"security_model": "user"}, "security_domain"),
    ({"security_domain": "nobody"}, "only valid"),
    ({"vnc_bind_address": "127.0.0.1", "spice_bind": "127.0.0.1"}, "cannot both"),
    ({"vnc_tls": True}, "needs vnc_bind_address"),
    ({"boot_order": "cdrom"}, "cdrom_image_path"),
    ({"disk_aio": "native", "disk_cache": "writeback"}, "native"),
    ({"initrd_path": "/boot/initrd"}, "kernel_path"),
    ({"security_model": "pool"}, "pool"),
])
def test_bad_combinations_refused(over: dict[str, Any], msg: str) -> None:
    with pytest.raises(errors.OpPrereqError, match=msg):
        KVMHypervisor.check_parameter_syntax({**C.HV_KVM_DEFAULTS, **over})


def test_good_values_accepted() -> None:
    KVMHypervisor.check_parameter_syntax({
        **C.HV_KVM_DEFAULTS, "kvm_flag": "disabled", "cpu_mask": "0:1-3:all",
        "vnc_bind_address": "eth0", "migration_caps": "xbzrle:postcopy-ram",
        "cdrom_image_path": "https://example.invalid/x.iso", "soundhw": "ac97,hda",
        "security_model": "user", "security_domain": "nobody", "virtio_net_queues": 8})


def test_node_validation_checks_files_and_user(tmp_path: Path) -> None:
    with pytest.raises(errors.HypervisorError, match="kernel_path"):
        KVMHypervisor.validate_parameters({**C.HV_KVM_DEFAULTS,
                                           "kernel_path": str(tmp_path / "missing")})
    with pytest.raises(errors.HypervisorError, match="kvm_path"):
        KVMHypervisor.validate_parameters({**C.HV_KVM_DEFAULTS,
                                           "kvm_path": str(tmp_path / "qemu")})
    with pytest.raises(errors.HypervisorError, match="Unknown user"):
        KVMHypervisor.validate_parameters({**C.HV_KVM_DEFAULTS, "security_model": "user",
                                           "security_domain": "no-such-user-corral"})
    KVMHypervisor.validate_parameters({**C.HV_KVM_DEFAULTS, "security_model": "user",
                                       "security_domain": "nobody"})
