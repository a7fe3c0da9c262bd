"""The KVM (QEMU) hypervisor; see :mod:`corral.hypervisor.kvm.hypervisor`."""

from corral.hypervisor.kvm.hypervisor import KVMHypervisor

__all__ = ["KVMHypervisor"]
