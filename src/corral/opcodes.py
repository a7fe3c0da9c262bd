"""Opcodes: one validated model per operation, with Ganeti's OP_ID names.

Mirrors ``ganeti.opcodes`` (generated there from ``OpCodes.hs``). An opcode
travels as a JSON object of its parameters plus ``"OP_ID"``;
:func:`op_from_dict` finds the class and validates every field, so bad input
is refused with :class:`errors.OpPrereqError` (``ECODE_INVAL``) before a job
is queued and long before any lock is taken. Unknown fields are refused too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from corral import constants as C
from corral import errors
from corral.netutils import normalize_hostname
from corral.paths import check_storage_dir
from corral.values import parse_size

NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


def _checked(check: Callable[[Any], str], error_type: str, value: Any) -> str:
    """``check(value)``, its OpPrereqError turned into a pydantic field error."""
    try:
        return check(value)
    except errors.OpPrereqError as err:
        raise PydanticCustomError(error_type, "{msg}", {"msg": str(err)}) from None


def _check_hostname(value: str) -> str:
    return _checked(normalize_hostname, "invalid_name", value)


# Instance, node, node group and network names follow Ganeti's host name rule
# (lowercased; see netutils.normalize_hostname). UUIDs satisfy it too, so the
# "name or UUID" fields use the same types.
HostName = Annotated[str, AfterValidator(_check_hostname)]
InstanceName = HostName
NodeName = HostName
GroupName = HostName
NetworkName = HostName
# A cluster-wide file storage directory (virtual path); whether each node
# allows it is checked by the LU against the node's own list.
StorageDir = Annotated[str, AfterValidator(partial(_checked, check_storage_dir,
                                                   "invalid_path"))]
# A job dependency: [job_id, [final statuses]]; negative ids are relative.
JobDependency = tuple[int, list[Literal["canceled", "success", "error"]]]
ReasonEntry = tuple[str, str, int]
DiskTemplate = Literal["diskless", "file", "sharedfile", "plain", "blockdev", "drbd",
                       "rbd", "ext", "gluster"]
Hypervisor = Literal["kvm", "xen-pvm", "xen-hvm", "chroot", "lxc", "fake"]
TagKind = Literal["instance", "node", "nodegroup", "cluster", "network"]

_OPCODES: dict[str, type["OpCode"]] = {}


def _op_id_from_class_name(name: str) -> str:
    assert name.startswith("Op")
    parts = re.findall(r"[A-Z][a-z0-9]*", name[2:])
    return "OP_" + "_".join(p.upper() for p in parts)


class OpCode(BaseModel):
    """Base of all opcodes: the parameters every opcode has.

    Subclasses are registered by their ``OP_ID`` (derived from the class name
    as Ganeti does: ``OpInstanceCreate`` -> ``OP_INSTANCE_CREATE``).
    """

    model_config = ConfigDict(extra="forbid", frozen=False)

    OP_ID: ClassVar[str] = ""
    OP_DSC_FIELD: ClassVar[str | None] = None
    WITH_LU: ClassVar[bool] = True

    dry_run: bool | None = None
    debug_level: NonNegInt | None = None
    priority: Annotated[int, Field(ge=C.OP_PRIO_HIGHEST, le=C.OP_PRIO_LOWEST)] = C.OP_PRIO_DEFAULT
    depends: list[JobDependency] | None = None
    comment: str | None = None
    reason: list[ReasonEntry] = Field(default_factory=list)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__.startswith("Op") and cls.__name__ != "OpCode":
            cls.OP_ID = _op_id_from_class_name(cls.__name__)
            _OPCODES[cls.OP_ID] = cls

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["OP_ID"] = self.OP_ID
        return data

    def summary(self) -> str:
        """``INSTANCE_CREATE(inst1)`` style summary used in job listings."""
        text = self.OP_ID[3:]
        if self.OP_DSC_FIELD:
            value = getattr(self, self.OP_DSC_FIELD, None)
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            if value is not None:
                text += f"({value})"
        return text

    def tiny_summary(self) -> str:
        text = self.summary()
        for long, short in (("CLUSTER_", "C_"), ("GROUP_", "G_"), ("NODE_", "N_"),
                            ("INSTANCE_", "I_")):
            if text.startswith(long):
                return short + text[len(long):]
        return text


def all_opcodes() -> dict[str, type[OpCode]]:
    """OP_ID -> class of every known opcode."""
    return dict(_OPCODES)


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown parameter"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def op_from_dict(data: Any) -> OpCode:
    """Validate a JSON opcode (with ``OP_ID``) and return its model.

    Raises :class:`errors.OpPrereqError` with ``ECODE_INVAL`` for a missing or
    unknown ``OP_ID``, unknown parameters and values of the wrong type/range.
    """
    if not isinstance(data, dict):
        raise errors.OpPrereqError("Opcode must be a JSON object", errors.ECODE_INVAL)
    data = dict(data)
    op_id = data.pop("OP_ID", None)
    if not op_id:
        raise errors.OpPrereqError("Opcode has no OP_ID", errors.ECODE_INVAL)
    cls = _OPCODES.get(op_id)
    if cls is None:
        raise errors.OpPrereqError(f"Unknown opcode '{op_id}'", errors.ECODE_INVAL)
    return validate_op(cls, data)


def validate_op(cls: type[OpCode], params: dict[str, Any]) -> OpCode:
    """Build opcode ``cls`` from ``params``; errors as in :func:`op_from_dict`."""
    try:
        return cls.model_validate(params)
    except ValidationError as exc:
        raise errors.OpPrereqError(
            f"Invalid parameters for {cls.OP_ID}: {_format_validation_error(exc)}",
            errors.ECODE_INVAL) from None


# ---------------------------------------------------------------------------
# Disk and NIC parameter dictionaries (IDiskParams, INicParams)

def validate_disk_params(disk: Any, require_size: bool = True) -> dict[str, Any]:
    """Check one IDiskParams dict; returns a copy with ``size`` in MiB (int)."""
    if not isinstance(disk, dict):
        raise errors.OpPrereqError(f"Disk parameters must be a dict, got {disk!r}",
                                   errors.ECODE_INVAL)
    out = dict(disk)
    if C.IDISK_SIZE in out:
        out[C.IDISK_SIZE] = parse_size(out[C.IDISK_SIZE])
    elif require_size and C.IDISK_ADOPT not in out:
        raise errors.OpPrereqError("Missing disk size", errors.ECODE_INVAL)
    mode = out.get(C.IDISK_MODE)
    if mode is not None and mode not in C.DISK_ACCESS_SET:
        raise errors.OpPrereqError(f"Invalid disk access mode '{mode}'", errors.ECODE_INVAL)
    return out


def validate_nic_params(nic: Any) -> dict[str, Any]:
    if not isinstance(nic, dict):
        raise errors.OpPrereqError(f"NIC parameters must be a dict, got {nic!r}",
                                   errors.ECODE_INVAL)
    unknown = set(nic) - C.INIC_PARAMS
    if unknown:
        raise errors.OpPrereqError(f"Unknown NIC parameters: {', '.join(sorted(unknown))}",
                                   errors.ECODE_INVAL)
    mode = nic.get(C.INIC_MODE)
    if mode is not None and mode not in C.NIC_VALID_MODES:
        raise errors.OpPrereqError(f"Invalid NIC mode '{mode}'", errors.ECODE_INVAL)
    return dict(nic)


class _DisksMixin(BaseModel):
    @field_validator("disks", mode="before", check_fields=False)
    @classmethod
    def _check_disks(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [validate_disk_params(d) for d in v]
        return v

    @field_validator("nics", mode="before", check_fields=False)
    @classmethod
    def _check_nics(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [validate_nic_params(n) for n in v]
        return v


# ---------------------------------------------------------------------------
# Cluster

VerifyCheck = Literal["nplusone_mem"]


class OpClusterPostInit(OpCode):
    pass


class OpClusterDestroy(OpCode):
    pass


class OpClusterQuery(OpCode):
    pass


class OpClusterVerify(OpCode):
    debug_simulate_errors: bool = False
    error_codes: bool = False
    skip_checks: list[VerifyCheck] = Field(default_factory=list)
    ignore_errors: list[str] = Field(default_factory=list)
    verbose: bool = False
    group_name: GroupName | None = None
    verify_clutter: bool = False


class OpClusterVerifyConfig(OpCode):
    debug_simulate_errors: bool = False
    error_codes: bool = False
    ignore_errors: list[str] = Field(default_factory=list)
    verbose: bool = False


class OpClusterVerifyGroup(OpCode):
    OP_DSC_FIELD = "group_name"
    group_name: GroupName
    debug_simulate_errors: bool = False
    error_codes: bool = False
    skip_checks: list[VerifyCheck] = Field(default_factory=list)
    ignore_errors: list[str] = Field(default_factory=list)
    verbose: bool = False
    verify_clutter: bool = False


class OpClusterVerifyDisks(OpCode):
    """Submit one OP_GROUP_VERIFY_DISKS job per node group (or for one)."""

    group_name: GroupName | None = None


class OpGroupVerifyDisks(OpCode):
    """Disks of one group: (node errors, instances needing activate-disks,
    missing disks)."""

    OP_DSC_FIELD = "group_name"
    group_name: GroupName


class OpClusterRepairDiskSizes(OpCode):
    """Fix recorded disk sizes; result ``[(instance, disk idx, "size", MiB)]``."""

    OP_DSC_FIELD = "instances"
    instances: list[InstanceName] = Field(default_factory=list)


class OpClusterConfigQuery(OpCode):
    output_fields: list[str]


class OpClusterRedistConf(OpCode):
    pass


class OpClusterSetParams(OpCode):
    force: bool = False
    hv_state: dict[str, Any] | None = None
    disk_state: dict[str, Any] | None = None
    vg_name: str | None = None
    enabled_hypervisors: list[Hypervisor] | None = None
    hvparams: dict[str, dict[str, Any]] | None = None
    beparams: dict[str, Any] | None = None
    os_hvp: dict[str, dict[str, dict[str, Any]]] | None = None
    osparams: dict[str, dict[str, Any]] | None = None
    osparams_private_cluster: dict[str, dict[str, Any]] | None = None
    diskparams: dict[str, dict[str, Any]] | None = None
    candidate_pool_size: PosInt | None = None
    max_running_jobs: PosInt | None = None
    max_tracked_jobs: PosInt | None = None
    uid_pool: list[tuple[int, int]] | None = None
    add_uids: list[tuple[int, int]] | None = None
    remove_uids: list[tuple[int, int]] | None = None
    maintain_node_health: bool | None = None
    prealloc_wipe_disks: bool | None = None
    nicparams: dict[str, Any] | None = None
    ndparams: dict[str, Any] | None = None
    ipolicy: dict[str, Any] | None = None
    drbd_helper: str | None = None
    default_iallocator: str | None = None
    default_iallocator_params: dict[str, Any] | None = None
    mac_prefix: str | None = None
    master_netdev: str | None = None
    master_netmask: NonNegInt | None = None
    reserved_lvs: list[str] | None = None
    hidden_os: list[tuple[Literal["add", "remove"], NonEmptyStr]] | None = None
    blacklisted_os: list[tuple[Literal["add", "remove"], NonEmptyStr]] | None = None
    use_external_mip_script: bool | None = None
    enabled_disk_templates: list[DiskTemplate] | None = None
    modify_etc_hosts: bool | None = None
    file_storage_dir: StorageDir | None = None
    shared_file_storage_dir: StorageDir | None = None
    gluster_storage_dir: str | None = None
    install_image: str | None = None
    instance_communication_network: NetworkName | None = None
    zeroing_image: str | None = None
    compression_tools: list[str] | None = None
    enabled_user_shutdown: bool | None = None
    enabled_data_collectors: dict[str, bool] | None = None
    data_collector_interval: dict[str, int] | None = None


# ---------------------------------------------------------------------------
# Nodes


class OpNodeAdd(OpCode):
    OP_DSC_FIELD = "node_name"
    node_name: NodeName
    hv_state: dict[str, Any] | None = None
    disk_state: dict[str, Any] | None = None
    primary_ip: str | None = None
    secondary_ip: str | None = None
    readd: bool = False
    group: GroupName | None = None
    master_capable: bool | None = None
    vm_capable: bool | None = None
    ndparams: dict[str, Any] | None = None
    node_setup: bool = False
    # Corral: noded's port on the new node (dev clusters may use others).
    noded_port: PosInt | None = None


class OpNodeRemove(OpCode):
    OP_DSC_FIELD = "node_name"
    node_name: NodeName
    node_uuid: str | None = None


class OpNodeSetParams(OpCode):
    OP_DSC_FIELD = "node_name"
    node_name: NodeName
    node_uuid: str | None = None
    force: bool = False
    hv_state: dict[str, Any] | None = None
    disk_state: dict[str, Any] | None = None
    master_candidate: bool | None = None
    offline: bool | None = None
    drained: bool | None = None
    auto_promote: bool = False
    master_capable: bool | None = None
    vm_capable: bool | None = None
    secondary_ip: str | None = None
    ndparams: dict[str, Any] | None = None
    powered: bool | None = None


class OpOobCommand(OpCode):
    """Run the nodes' out-of-band program (Ganeti's ``OP_OOB_COMMAND``)."""

    OP_DSC_FIELD = "command"
    node_names: list[NodeName] = Field(default_factory=list)
    node_uuids: list[str] | None = None
    command: Literal["health", "power-cycle", "power-off", "power-on", "power-status"]
    timeout: PosInt = C.OOB_TIMEOUT
    ignore_status: bool = False
    power_delay: Annotated[float, Field(ge=0)] = C.OOB_POWER_DELAY


class OpNodeQuery(OpCode):
    """Query nodes (Ganeti 2.x ``OP_NODE_QUERY``; 3.0 clients use OP_QUERY)."""

    OP_DSC_FIELD = "names"
    output_fields: list[str]
    names: list[NodeName] = Field(default_factory=list)
    use_locking: bool = False


class OpNodeQueryStorage(OpCode):
    """List storage units of nodes (Ganeti's ``OP_NODE_QUERY_STORAGE``)."""

    OP_DSC_FIELD = "nodes"
    output_fields: list[Literal["name", "node", "type", "size", "used", "free",
                                "allocatable"]]
    storage_type: Literal["file", "sharedfile", "gluster", "lvm-pv", "lvm-vg", "diskless",
                          "blockdev", "rados", "ext"] | None = None
    nodes: list[NodeName] = Field(default_factory=list)
    name: str | None = None


class OpNodeMigrate(OpCode):
    OP_DSC_FIELD = "node_name"
    node_name: NodeName
    node_uuid: str | None = None
    mode: Literal["live", "non-live"] | None = None
    live: bool | None = None
    target_node: NodeName | None = None
    target_node_uuid: str | None = None
    allow_runtime_changes: bool = True
    ignore_ipolicy: bool = False
    iallocator: str | None = None


class OpNodeEvacuate(OpCode):
    OP_DSC_FIELD = "node_name"
    early_release: bool = False
    node_name: NodeName
    node_uuid: str | None = None
    remote_node: NodeName | None = None
    remote_node_uuid: str | None = None
    iallocator: str | None = None
    mode: Literal["primary-only", "secondary-only", "all"]
    ignore_soft_errors: bool | None = None


# ---------------------------------------------------------------------------
# Node groups (Ganeti's OpGroup*; OP_GROUP_VERIFY_DISKS is with the cluster ones)

AllocPolicy = Literal["preferred", "last_resort", "unallocable"]
GroupDiskParams = dict[DiskTemplate, dict[str, Any]]


class _GroupParamsMixin(BaseModel):
    """Parameters of OP_GROUP_ADD and OP_GROUP_SET_PARAMS; ``ipolicy`` is the
    group's own (partial) policy."""

    group_name: GroupName
    alloc_policy: AllocPolicy | None = None
    ndparams: dict[str, Any] | None = None
    diskparams: GroupDiskParams | None = None
    hv_state: dict[str, Any] | None = None
    disk_state: dict[str, Any] | None = None
    ipolicy: dict[str, Any] | None = None


class OpGroupAdd(_GroupParamsMixin, OpCode):
    """Create a node group."""

    OP_DSC_FIELD = "group_name"


class OpGroupAssignNodes(OpCode):
    """Move nodes into a group; result None."""

    OP_DSC_FIELD = "group_name"
    group_name: GroupName
    force: bool = False
    nodes: list[NodeName]
    node_uuids: list[str] | None = None


class OpGroupSetParams(_GroupParamsMixin, OpCode):
    """Change group parameters; result ``[(parameter, new value)]``."""

    OP_DSC_FIELD = "group_name"


class OpGroupRemove(OpCode):
    OP_DSC_FIELD = "group_name"
    group_name: GroupName


class OpGroupRename(OpCode):
    """Rename a group; result the new name."""

    OP_DSC_FIELD = "group_name"
    group_name: GroupName
    new_name: GroupName


class OpGroupEvacuate(OpCode):
    """Move every instance out of a group; result ``{"jobs": [...]}``."""

    OP_DSC_FIELD = "group_name"
    group_name: GroupName
    early_release: bool = False
    iallocator: str | None = None
    target_groups: list[GroupName] | None = None
    sequential: bool = False
    force_failover: bool = False


# ---------------------------------------------------------------------------
# Instances


class OpInstanceCreate(_DisksMixin, OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    force_variant: bool = False
    wait_for_sync: bool = True
    name_check: bool = True
    ignore_ipolicy: bool = False
    opportunistic_locking: bool = False
    beparams: dict[str, Any] = Field(default_factory=dict)
    disks: list[dict[str, Any]]
    disk_template: DiskTemplate | None = None
    group_name: GroupName | None = None
    file_driver: Literal["loop", "blktap", "blktap2"] | None = None
    file_storage_dir: str | None = None
    hvparams: dict[str, Any] = Field(default_factory=dict)
    hypervisor: Hypervisor | None = None
    iallocator: str | None = None
    identify_defaults: bool = False
    ip_check: bool = True
    conflicts_check: bool = True
    mode: Literal["create", "import", "remote-import"]
    nics: list[dict[str, Any]]
    no_install: bool | None = None
    osparams: dict[str, Any] = Field(default_factory=dict)
    osparams_private: dict[str, Any] | None = None
    osparams_secret: dict[str, Any] | None = None
    os_type: str | None = None
    pnode: NodeName | None = None
    pnode_uuid: str | None = None
    snode: NodeName | None = None
    snode_uuid: str | None = None
    source_handshake: list[Any] | None = None
    source_instance_name: InstanceName | None = None
    source_shutdown_timeout: NonNegInt = C.DEFAULT_SHUTDOWN_TIMEOUT
    source_x509_ca: str | None = None
    src_node: NodeName | None = None
    src_node_uuid: str | None = None
    src_path: str | None = None
    compress: str = "none"
    start: bool = True
    forthcoming: bool = False
    commit: bool = False
    tags: list[str] = Field(default_factory=list)
    instance_communication: bool = False
    helper_startup_timeout: int | None = None
    helper_shutdown_timeout: int | None = None


class OpInstanceMultiAlloc(OpCode):
    """Allocate several instances in one go (Ganeti's ``OP_INSTANCE_MULTI_ALLOC``):
    each entry is an OP_INSTANCE_CREATE (its ``OP_ID`` may be given or left out)."""

    OP_DSC_FIELD = "instance_names"
    opportunistic_locking: bool = False
    iallocator: str | None = None
    instances: list[OpInstanceCreate] = Field(min_length=1)

    @field_validator("instances", mode="before")
    @classmethod
    def _strip_op_ids(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for entry in value:
            if isinstance(entry, dict) and "OP_ID" in entry:
                if entry["OP_ID"] != OpInstanceCreate.OP_ID:
                    raise ValueError(f"instances must be {OpInstanceCreate.OP_ID} opcodes, "
                                     f"not {entry['OP_ID']!r}")
                entry = {k: v for k, v in entry.items() if k != "OP_ID"}
            out.append(entry)
        return out

    @property
    def instance_names(self) -> list[str]:
        return [inst.instance_name for inst in self.instances]


class OpInstanceReinstall(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    force_variant: bool = False
    os_type: str | None = None
    osparams: dict[str, Any] | None = None
    osparams_private: dict[str, Any] | None = None
    osparams_secret: dict[str, Any] | None = None


class OpInstanceRemove(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    shutdown_timeout: NonNegInt = C.DEFAULT_SHUTDOWN_TIMEOUT
    ignore_failures: bool = False


class OpInstanceRename(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    new_name: InstanceName
    name_check: bool = True
    ip_check: bool = True


class OpInstanceStartup(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    force: bool = False
    ignore_offline_nodes: bool = False
    hvparams: dict[str, Any] = Field(default_factory=dict)
    beparams: dict[str, Any] = Field(default_factory=dict)
    no_remember: bool = False
    startup_paused: bool = False
    shutdown_timeout: NonNegInt = C.DEFAULT_SHUTDOWN_TIMEOUT


class OpInstanceShutdown(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    force: bool = False
    ignore_offline_nodes: bool = False
    timeout: NonNegInt = C.DEFAULT_SHUTDOWN_TIMEOUT
    no_remember: bool = False
    admin_state_source: Literal["admin", "user"] | None = None


class OpInstanceReboot(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    shutdown_timeout: NonNegInt = C.DEFAULT_SHUTDOWN_TIMEOUT
    ignore_secondaries: bool = False
    reboot_type: Literal["soft", "hard", "full"]


class OpInstanceQuery(OpCode):
    """Query instances (Ganeti 2.x ``OP_INSTANCE_QUERY``)."""

    OP_DSC_FIELD = "names"
    output_fields: list[str]
    names: list[InstanceName] = Field(default_factory=list)
    use_locking: bool = False


class OpInstanceQueryData(OpCode):
    OP_DSC_FIELD = "instances"
    use_locking: bool = False
    instances: list[InstanceName] = Field(default_factory=list)
    static: bool = False


class OpInstanceSetParams(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    force: bool = False
    force_variant: bool = False
    ignore_ipolicy: bool = False
    # SetParamsMods: [[op_or_index, params]] or [[op, index_or_name, params]]
    nics: list[list[Any]] = Field(default_factory=list)
    disks: list[list[Any]] = Field(default_factory=list)
    beparams: dict[str, Any] = Field(default_factory=dict)
    runtime_mem: PosInt | None = None
    hvparams: dict[str, Any] = Field(default_factory=dict)
    disk_template: DiskTemplate | None = None
    ext_params: dict[str, Any] = Field(default_factory=dict)
    file_driver: Literal["loop", "blktap", "blktap2"] | None = None
    file_storage_dir: str | None = None
    pnode: NodeName | None = None
    pnode_uuid: str | None = None
    remote_node: NodeName | None = None
    remote_node_uuid: str | None = None
    iallocator: str | None = None
    os_name: str | None = None
    osparams: dict[str, Any] = Field(default_factory=dict)
    osparams_private: dict[str, Any] | None = None
    wait_for_sync: bool = True
    offline: bool | None = None
    conflicts_check: bool = True
    hotplug: bool = False
    hotplug_if_possible: bool = False
    instance_communication: bool | None = None


class OpInstanceGrowDisk(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    wait_for_sync: bool = True
    disk: Annotated[int, Field(ge=0, lt=C.MAX_DISKS)]
    amount: NonNegInt
    absolute: bool = False
    ignore_ipolicy: bool = False


class OpInstanceRecreateDisks(OpCode):
    """Re-create missing disks (Ganeti's ``OP_INSTANCE_RECREATE_DISKS``):
    ``disks`` as indices (legacy) or ``[index, {size, mode, spindles}]``
    pairs, empty for all; ``nodes`` to move them (all disks) elsewhere."""

    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    disks: list[Annotated[int, Field(ge=0, lt=C.MAX_DISKS)]] | list[
        tuple[Annotated[int, Field(ge=0, lt=C.MAX_DISKS)], dict[str, Any]]] = \
        Field(default_factory=list)
    nodes: list[NodeName] = Field(default_factory=list)
    node_uuids: list[str] | None = None
    iallocator: str | None = None


class OpInstanceActivateDisks(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    ignore_size: bool = False
    wait_for_sync: bool = False


class OpInstanceDeactivateDisks(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    force: bool = False


class OpInstanceConsole(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None


class OpInstanceFailover(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    shutdown_timeout: NonNegInt = C.DEFAULT_SHUTDOWN_TIMEOUT
    ignore_consistency: bool = False
    target_node: NodeName | None = None
    target_node_uuid: str | None = None
    ignore_ipolicy: bool = False
    cleanup: bool = False
    iallocator: str | None = None


class OpInstanceMigrate(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    mode: Literal["live", "non-live"] | None = None
    live: bool | None = None
    target_node: NodeName | None = None
    target_node_uuid: str | None = None
    allow_runtime_changes: bool = True
    ignore_ipolicy: bool = False
    cleanup: bool = False
    iallocator: str | None = None
    allow_failover: bool = False
    ignore_hvversions: bool = False


class OpInstanceChangeGroup(OpCode):
    """Move an instance to another node group; result ``{"jobs": [...]}``."""

    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    early_release: bool = False
    iallocator: str | None = None
    target_groups: list[GroupName] | None = None


class OpInstanceMove(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    shutdown_timeout: NonNegInt = C.DEFAULT_SHUTDOWN_TIMEOUT
    ignore_ipolicy: bool = False
    target_node: NodeName
    target_node_uuid: str | None = None
    compress: str = "none"
    ignore_consistency: bool = False


# ---------------------------------------------------------------------------
# Backups


class OpBackupPrepare(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    mode: Literal["local", "remote"]


class OpBackupExport(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None
    compress: str = "none"
    shutdown_timeout: NonNegInt = C.DEFAULT_SHUTDOWN_TIMEOUT
    target_node: NodeName | list[Any]
    target_node_uuid: str | None = None
    shutdown: bool = True
    remove_instance: bool = False
    ignore_remove_failures: bool = False
    mode: Literal["local", "remote"] = "local"
    x509_key_name: list[Any] | None = None
    destination_x509_ca: str | None = None
    zero_free_space: bool = False
    zeroing_timeout_fixed: int | None = None
    zeroing_timeout_per_mib: float | None = None
    long_sleep: bool = False


class OpBackupQuery(OpCode):
    OP_DSC_FIELD = "nodes"
    nodes: list[NodeName] = Field(default_factory=list)
    use_locking: bool = False


class OpBackupRemove(OpCode):
    OP_DSC_FIELD = "instance_name"
    instance_name: InstanceName
    instance_uuid: str | None = None


# ---------------------------------------------------------------------------
# OS, tags, query, test


class OpOsDiagnose(OpCode):
    output_fields: list[str]
    names: list[str] = Field(default_factory=list)


class _TagsNameMixin(BaseModel):
    @model_validator(mode="after")
    def _check_name(self) -> Any:
        # Every tag kind but the cluster names an object with a host-like name.
        if self.kind != "cluster" and self.name is not None:  # type: ignore[attr-defined]
            self.name = _check_hostname(self.name)  # type: ignore[attr-defined]
        return self


class OpTagsGet(_TagsNameMixin, OpCode):
    OP_DSC_FIELD = "name"
    kind: TagKind
    use_locking: bool = False
    name: str | None = None


class OpTagsSearch(OpCode):
    OP_DSC_FIELD = "pattern"
    pattern: NonEmptyStr


class OpTagsSet(_TagsNameMixin, OpCode):
    OP_DSC_FIELD = "name"
    kind: TagKind
    tags: list[str]
    name: str | None = None


class OpTagsDel(_TagsNameMixin, OpCode):
    OP_DSC_FIELD = "name"
    kind: TagKind
    tags: list[str]
    name: str | None = None


QueryWhat = Literal["cluster", "instance", "node", "group", "os", "export", "network"]


class OpQuery(OpCode):
    OP_DSC_FIELD = "what"
    what: QueryWhat
    use_locking: bool = False
    fields: list[str]
    qfilter: list[Any] | None = None


class OpQueryFields(OpCode):
    OP_DSC_FIELD = "what"
    what: QueryWhat
    fields: list[str] | None = None


class OpTestDelay(OpCode):
    OP_DSC_FIELD = "duration"
    duration: Annotated[float, Field(ge=0)]
    on_master: bool = True
    on_nodes: list[NodeName] = Field(default_factory=list)
    on_node_uuids: list[str] | None = None
    repeat: NonNegInt = 0
    interruptible: bool = False
    no_locks: bool = True


class OpTestJqueue(OpCode):
    notify_waitlock: bool = False
    notify_exec: bool = False
    log_messages: list[str] = Field(default_factory=list)
    fail: bool = False


# Network opcodes live in their own module; importing it registers them.
from corral import opcodes_network as _opcodes_network  # noqa: F401
