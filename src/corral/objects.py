"""Typed configuration objects: Cluster, NodeGroup, Node, Instance, Disk, NIC,
Network.

Mirrors ``ganeti.objects``. Every object is a pydantic model whose JSON form
is the wire and storage format (``to_dict`` / ``from_dict``). Objects read
from the config store are shared: copy before changing
(``obj.model_copy(deep=True)``) and hand the copy to the store's commit.

Parameter inheritance (``fill_*``) follows Ganeti: hypervisor defaults ->
cluster -> OS-specific cluster values -> instance for hv/be/os params;
cluster -> group -> node for ndparams; cluster -> group for diskparams.
"""

from __future__ import annotations

import time
import uuid as uuid_mod
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from corral import constants as C


def new_uuid() -> str:
    return str(uuid_mod.uuid4())


def fill_dict(defaults: dict[str, Any], custom: dict[str, Any] | None,
              skip_keys: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """Return ``defaults`` updated with ``custom`` (both unchanged), minus skip_keys."""
    out = dict(defaults)
    if custom:
        out.update(custom)
    for k in skip_keys:
        out.pop(k, None)
    return out


class ConfigObject(BaseModel):
    """Base of all configuration objects: identity, serial number, timestamps."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    uuid: str = Field(default_factory=new_uuid)
    serial_no: int = 1
    ctime: float = Field(default_factory=time.time)
    mtime: float = Field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls.model_validate(data)


class TaggableObject(ConfigObject):
    tags: list[str] = Field(default_factory=list)


class NIC(BaseModel):
    """A network interface of an instance; ``nicparams`` holds mode/link/vlan
    overrides of the cluster defaults."""

    model_config = ConfigDict(extra="forbid")

    uuid: str = Field(default_factory=new_uuid)
    name: str | None = None
    mac: str = ""
    ip: str | None = None
    network: str | None = None
    nicparams: dict[str, Any] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Disk(BaseModel):
    """A disk of an instance (a tree through ``children``, for DRBD later).

    ``size`` is in MiB. ``logical_id`` for file-based templates is
    ``[driver, virtual_path]``; ``nodes`` lists the node UUIDs holding it.
    """

    model_config = ConfigDict(extra="forbid")

    uuid: str = Field(default_factory=new_uuid)
    name: str | None = None
    dev_type: str = C.DT_FILE
    logical_id: list[Any] = Field(default_factory=list)
    children: list["Disk"] = Field(default_factory=list)
    nodes: list[str] = Field(default_factory=list)
    iv_name: str = ""
    size: int = 0
    mode: str = C.DISK_RDWR
    params: dict[str, Any] = Field(default_factory=dict)
    spindles: int | None = None
    serial_no: int = 1
    ctime: float = Field(default_factory=time.time)
    mtime: float = Field(default_factory=time.time)
    # Only in RPC, never persisted: node-specific data computed by the master.
    dynamic_params: dict[str, Any] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Disk":
        return cls.model_validate(data)


class Instance(TaggableObject):
    """A virtual machine. ``hvparams``/``beparams``/``osparams`` hold only the
    values customised for this instance (see :class:`Cluster` fill methods)."""

    name: str
    primary_node: str                       # node UUID
    os: str = ""
    hypervisor: str = C.HT_FAKE
    hvparams: dict[str, Any] = Field(default_factory=dict)
    beparams: dict[str, Any] = Field(default_factory=dict)
    osparams: dict[str, Any] = Field(default_factory=dict)
    osparams_private: dict[str, Any] = Field(default_factory=dict)
    admin_state: str = C.ADMINST_DOWN
    admin_state_source: str = C.ADMIN_SOURCE
    nics: list[NIC] = Field(default_factory=list)
    disks: list[Disk] = Field(default_factory=list)
    disk_template: str = C.DT_DISKLESS
    disks_active: bool = False
    network_port: int | None = None
    # Corral extension: id of the OP_INSTANCE_CREATE job still building the
    # instance (None once it is complete); see cmdlib/instance_create.py.
    creating_job: int | None = None

    @property
    def secondary_nodes(self) -> list[str]:
        nodes: list[str] = []
        for d in self.disks:
            for n in d.nodes:
                if n != self.primary_node and n not in nodes:
                    nodes.append(n)
        return nodes

    @property
    def all_nodes(self) -> list[str]:
        return [self.primary_node, *self.secondary_nodes]


class Node(TaggableObject):
    """A machine of the cluster. ``group`` is the node group UUID."""

    name: str
    primary_ip: str
    secondary_ip: str = ""
    group: str = ""
    master_candidate: bool = True
    offline: bool = False
    drained: bool = False
    master_capable: bool = True
    vm_capable: bool = True
    powered: bool = True
    ndparams: dict[str, Any] = Field(default_factory=dict)
    # Corral extension: noded's port on this node (Ganeti uses one port).
    noded_port: int = C.DEFAULT_NODED_PORT
    hv_state_static: dict[str, Any] = Field(default_factory=dict)
    disk_state_static: dict[str, Any] = Field(default_factory=dict)


class NodeGroup(TaggableObject):
    name: str
    alloc_policy: str = "preferred"
    ndparams: dict[str, Any] = Field(default_factory=dict)
    diskparams: dict[str, dict[str, Any]] = Field(default_factory=dict)
    ipolicy: dict[str, Any] = Field(default_factory=dict)
    networks: dict[str, Any] = Field(default_factory=dict)
    hv_state_static: dict[str, Any] = Field(default_factory=dict)
    disk_state_static: dict[str, Any] = Field(default_factory=dict)


class Network(TaggableObject):
    """An IP network (``ganeti.objects.Network``): an IPv4 subnet with its
    address pool, optional IPv6 subnet, gateways and MAC prefix.

    ``reservations``/``ext_reservations`` are Ganeti's bit strings, one
    ``"0"``/``"1"`` per address of ``network`` (see :mod:`corral.netpool`).
    Node groups connect to networks by UUID (``NodeGroup.networks``), and a
    NIC's ``network`` is the network's UUID.
    """

    name: str
    network: str
    gateway: str | None = None
    network6: str | None = None
    gateway6: str | None = None
    mac_prefix: str | None = None
    reservations: str = ""
    ext_reservations: str = ""

    def hooks_dict(self, prefix: str = "") -> dict[str, str]:
        """Hook variables of the network (``Network.HooksDict``)."""
        out = {f"{prefix}NETWORK_NAME": self.name, f"{prefix}NETWORK_UUID": self.uuid,
               f"{prefix}NETWORK_TAGS": " ".join(self.tags)}
        for key, value in (("SUBNET", self.network), ("GATEWAY", self.gateway),
                           ("SUBNET6", self.network6), ("GATEWAY6", self.gateway6),
                           ("MAC_PREFIX", self.mac_prefix)):
            if value:
                out[f"{prefix}NETWORK_{key}"] = value
        return out


class Leftover(BaseModel):
    """What a failed job could not remove from a node that was unreachable.

    Kept in ``Cluster.leftovers`` until removed (see
    :mod:`corral.cmdlib.leftovers` for the kinds and who removes them).
    ``path``: the virtual path of a disk file or storage directory, or the
    name of an export or transfer; ``disk``: the disk dict of a ``disk``.
    """

    model_config = ConfigDict(extra="forbid")

    node_uuid: str
    kind: str
    path: str
    disk: dict[str, Any] | None = None
    job_id: int | None = None
    ctime: float = Field(default_factory=time.time)


class FilterRule(BaseModel):
    """A job filter rule (Ganeti's ``objects.FilterRule``; semantics in
    :mod:`corral.jobs.filters`). Kept in ``Cluster.filters`` by uuid."""

    model_config = ConfigDict(extra="forbid")

    uuid: str
    watermark: int
    priority: int = 0
    predicates: list[Any] = Field(default_factory=list)
    action: str | list[Any] = "CONTINUE"
    reason_trail: list[Any] = Field(default_factory=list)


class Cluster(TaggableObject):
    """Cluster-wide settings and parameter defaults."""

    cluster_name: str
    master_node: str                        # node UUID
    master_ip: str = ""
    master_netdev: str = ""
    master_netmask: int = 32
    primary_ip_family: int = 4
    mac_prefix: str = C.DEFAULT_MAC_PREFIX
    enabled_hypervisors: list[str] = Field(default_factory=lambda: [C.HT_FAKE])
    hvparams: dict[str, dict[str, Any]] = Field(default_factory=dict)
    os_hvp: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    beparams: dict[str, dict[str, Any]] = Field(default_factory=dict)
    osparams: dict[str, dict[str, Any]] = Field(default_factory=dict)
    osparams_private_cluster: dict[str, dict[str, Any]] = Field(default_factory=dict)
    nicparams: dict[str, dict[str, Any]] = Field(default_factory=dict)
    ndparams: dict[str, Any] = Field(default_factory=dict)
    diskparams: dict[str, dict[str, Any]] = Field(default_factory=dict)
    ipolicy: dict[str, Any] = Field(default_factory=dict)
    candidate_pool_size: int = C.DEFAULT_CANDIDATE_POOL_SIZE
    max_running_jobs: int = C.DEFAULT_MAX_RUNNING_JOBS
    max_tracked_jobs: int = C.DEFAULT_MAX_TRACKED_JOBS
    file_storage_dir: str = C.DEFAULT_FILE_STORAGE_DIR
    shared_file_storage_dir: str = C.DEFAULT_SHARED_FILE_STORAGE_DIR
    gluster_storage_dir: str = ""
    enabled_disk_templates: list[str] = Field(
        default_factory=lambda: list(C.DEFAULT_ENABLED_DISK_TEMPLATES))
    volume_group_name: str = ""
    drbd_usermode_helper: str = ""
    default_iallocator: str = ""
    default_iallocator_params: dict[str, Any] = Field(default_factory=dict)
    hidden_os: list[str] = Field(default_factory=list)
    blacklisted_os: list[str] = Field(default_factory=list)
    compression_tools: list[str] = Field(
        default_factory=lambda: list(C.DEFAULT_COMPRESSION_TOOLS))
    uid_pool: list[Any] = Field(default_factory=list)
    reserved_lvs: list[str] = Field(default_factory=list)
    prealloc_wipe_disks: bool = False
    maintain_node_health: bool = False
    modify_etc_hosts: bool = False
    use_external_mip_script: bool = False
    enabled_user_shutdown: bool = False
    install_image: str = ""
    zeroing_image: str = ""
    instance_communication_network: str = ""
    tcpudp_port_pool: list[int] = Field(default_factory=list)
    highest_used_port: int = C.FIRST_CLUSTER_PORT - 1
    rapi_port: int = C.DEFAULT_RAPI_PORT
    leftovers: list[Leftover] = Field(default_factory=list)
    filters: dict[str, FilterRule] = Field(default_factory=dict)

    @property
    def default_hypervisor(self) -> str:
        return self.enabled_hypervisors[0]

    # -- parameter inheritance ----------------------------------------------------
    def fill_hv(self, instance: Instance, skip_globals: bool = False) -> dict[str, Any]:
        """Complete hvparams of ``instance``: hv defaults, cluster, OS, instance."""
        return self.get_hv_defaults(instance.hypervisor, instance.os, instance.hvparams,
                                    skip_globals)

    def get_hv_defaults(self, hypervisor: str, os_name: str | None = None,
                        custom: dict[str, Any] | None = None,
                        skip_globals: bool = False) -> dict[str, Any]:
        out = fill_dict(dict(C.HVC_DEFAULTS.get(hypervisor, {})),
                        self.hvparams.get(hypervisor, {}))
        if os_name:
            base_os = os_name.split("+", 1)[0]
            for key in (base_os, os_name):
                out.update(self.os_hvp.get(key, {}).get(hypervisor, {}))
        out.update(custom or {})
        if skip_globals:
            for k in C.HVC_GLOBALS:
                out.pop(k, None)
        return out

    def fill_be(self, instance: Instance) -> dict[str, Any]:
        return self.simple_fill_be(instance.beparams)

    def simple_fill_be(self, custom: dict[str, Any] | None) -> dict[str, Any]:
        out = fill_dict(fill_dict(C.BEC_DEFAULTS, self.beparams.get("default", {})), custom)
        return out

    def simple_fill_os(self, os_name: str, custom: dict[str, Any] | None) -> dict[str, Any]:
        base_os = os_name.split("+", 1)[0]
        out = dict(self.osparams.get(base_os, {}))
        if os_name != base_os:
            out.update(self.osparams.get(os_name, {}))
        out.update(custom or {})
        return out

    def fill_os(self, instance: Instance) -> dict[str, Any]:
        return self.simple_fill_os(instance.os, instance.osparams)

    def simple_fill_nic(self, custom: dict[str, Any] | None) -> dict[str, Any]:
        return fill_dict(fill_dict(C.NICC_DEFAULTS, self.nicparams.get("default", {})),
                         custom)

    def fill_nd(self, node: Node, group: NodeGroup | None) -> dict[str, Any]:
        out = fill_dict(C.NDC_DEFAULTS, self.ndparams)
        if group is not None:
            out.update(group.ndparams)
        out.update(node.ndparams)
        return out

    def fill_diskparams(self, group: NodeGroup | None) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for dt in C.DISK_TEMPLATES:
            vals = fill_dict(C.DISK_DT_DEFAULTS.get(dt, {}), self.diskparams.get(dt, {}))
            if group is not None:
                vals.update(group.diskparams.get(dt, {}))
            out[dt] = vals
        return out


class MigrationStatus(BaseModel):
    """Status of a live migration (``objects.MigrationStatus``); RAM in bytes."""

    status: str
    transferred_ram: int = 0
    total_ram: int = 0
    postcopy_status: str | None = None
    downtime_ms: int | None = None


class InstanceConsole(BaseModel):
    """How to reach an instance's console (``objects.InstanceConsole``)."""

    instance: str
    kind: str
    message: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    command: list[str] | None = None
    display: int | None = None
