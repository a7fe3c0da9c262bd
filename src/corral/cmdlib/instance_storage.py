"""Instance disks: generation, creation, removal, (de)activation; grow-disk.

Mirrors ``ganeti.cmdlib.instance_storage``: :func:`generate_disk_template`
(``GenerateDiskTemplate``), :func:`create_disks` (``CreateDisks``),
:func:`remove_disks` (``RemoveDisks``), :func:`assemble_disks`
(``AssembleInstanceDisks``), :func:`shutdown_disks`
(``ShutdownInstanceDisks``), and the logical units OP_INSTANCE_ACTIVATE_DISKS,
OP_INSTANCE_DEACTIVATE_DISKS and OP_INSTANCE_GROW_DISK. All node work goes
through RPC (``blockdev_*``, ``file_storage_dir_*``); sizes are in MiB.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from corral import constants as C
from corral import errors
from corral.cmdlib.base import FeedbackFn, LogicalUnit, NoHooksLU
from corral.cmdlib.instance_policy import check_instance_spec, node_group
from corral.cmdlib.instance_utils import (
    INSTANCE_DOWN,
    check_instance_state,
    declare_instance_node_locks,
    instance_hook_nodes,
    instance_info_text,
    lock_instance_and_nodes,
    node_name,
    normalize_name,
    set_disks_active,
    update_instance,
)
from corral.hooks import build_instance_hook_env
from corral.ipolicy import ISPEC_DISK_COUNT, ISPEC_DISK_SIZE
from corral.objects import Disk, Instance, new_uuid
from corral.paths import normalize_virtual, safe_component

if TYPE_CHECKING:
    from corral.config import ConfigStore

# Per-disk keys that make sense for the templates Corral implements.
_FILE_DISK_KEYS = frozenset({C.IDISK_SIZE, C.IDISK_MODE, C.IDISK_NAME})


# -- generation -----------------------------------------------------------------------
def check_storage_subdir(subdir: str | None) -> str | None:
    """Validate the op's ``file_storage_dir``: a *relative* subdirectory.

    Returns it normalized (None/empty -> None). Raises OpPrereqError
    ``ECODE_INVAL`` for absolute paths and any ``..`` component.
    """
    if subdir is None or subdir == "":
        return None
    if not isinstance(subdir, str) or "\x00" in subdir:
        raise errors.OpPrereqError("Invalid file storage directory", errors.ECODE_INVAL)
    if subdir.startswith("/"):
        raise errors.OpPrereqError(
            f"File storage directory '{subdir}' must be relative to the cluster's file "
            "storage directory", errors.ECODE_INVAL)
    if ".." in subdir.split("/"):
        raise errors.OpPrereqError(f"File storage directory '{subdir}' contains '..'",
                                   errors.ECODE_INVAL)
    norm = posixpath.normpath(subdir)
    return None if norm == "." else norm


def check_disk_specs(template: str, disks: list[dict[str, Any]]) -> None:
    """Template-specific checks of IDiskParams dicts (sizes already in MiB).

    Raises OpPrereqError ``ECODE_INVAL``.
    """
    if template == C.DT_DISKLESS:
        if disks:
            raise errors.OpPrereqError("Diskless instances cannot have disks",
                                       errors.ECODE_INVAL)
        return
    if not disks:
        raise errors.OpPrereqError(f"Instances with the '{template}' disk template need at "
                                   "least one disk", errors.ECODE_INVAL)
    if len(disks) > C.MAX_DISKS:
        raise errors.OpPrereqError(f"Too many disks ({len(disks)}), the maximum is "
                                   f"{C.MAX_DISKS}", errors.ECODE_INVAL)
    for idx, disk in enumerate(disks):
        if C.IDISK_ADOPT in disk:
            raise errors.OpPrereqError(f"Disk adoption is not supported for the "
                                       f"'{template}' disk template", errors.ECODE_INVAL)
        if C.IDISK_PROVIDER in disk:
            raise errors.OpPrereqError("The 'provider' option is only valid for the ext "
                                       "disk template", errors.ECODE_INVAL)
        if disk.get(C.IDISK_SPINDLES) is not None:
            raise errors.OpPrereqError("Spindles in instance disks cannot be specified, as "
                                       "exclusive storage is not enabled", errors.ECODE_INVAL)
        unknown = set(disk) - _FILE_DISK_KEYS - {C.IDISK_VG, C.IDISK_METAVG,
                                                 C.IDISK_SPINDLES, C.IDISK_ACCESS}
        if unknown:
            raise errors.OpPrereqError(
                f"Disk {idx}: parameters not supported by the '{template}' template: "
                f"{', '.join(sorted(unknown))}", errors.ECODE_INVAL)
        size = disk.get(C.IDISK_SIZE)
        if not isinstance(size, int) or size <= 0:
            raise errors.OpPrereqError(f"Disk {idx}: size must be a positive number of MiB, "
                                       f"got {size!r}", errors.ECODE_INVAL)


def instance_storage_dir(cfg: "ConfigStore", template: str, instance_name: str,
                         subdir: str | None) -> str:
    """Virtual directory holding an instance's files:
    ``<cluster dir>[/<subdir>]/<instance_name>``."""
    cluster = cfg.get_cluster()
    base = cluster.shared_file_storage_dir if template == C.DT_SHARED_FILE \
        else cluster.file_storage_dir
    parts = [base.rstrip("/") or "/"]
    sub = check_storage_subdir(subdir)
    if sub:
        parts.append(sub)
    parts.append(safe_component(instance_name, "instance name"))
    return normalize_virtual(posixpath.join(*parts))


def generate_disk_template(cfg: "ConfigStore", template: str, instance_name: str,
                           pnode_uuid: str, disk_specs: list[dict[str, Any]],
                           file_storage_dir: str | None, file_driver: str | None,
                           base_index: int = 0) -> list[Disk]:
    """Disk objects of a new instance (or new disks of one), not yet created.

    ``disk_specs``: IDiskParams dicts with ``size`` in MiB. ``file_storage_dir``
    is the op's *relative* subdirectory. Disk ``N`` (``N = base_index + i``)
    gets ``iv_name`` ``disk/N`` and, for file templates, ``logical_id``
    ``[driver, "<dir>/<uuid>.<template>.disk<N>"]``. Raises OpPrereqError
    ``ECODE_INVAL`` for bad input or templates Corral does not implement.
    """
    if template == C.DT_DISKLESS:
        check_disk_specs(template, disk_specs)
        return []
    if template not in (C.DT_FILE, C.DT_SHARED_FILE):
        raise errors.OpPrereqError(f"Disk template '{template}' is not implemented yet",
                                   errors.ECODE_INVAL)
    check_disk_specs(template, disk_specs)
    directory = instance_storage_dir(cfg, template, instance_name, file_storage_dir)
    return make_file_disks(template, directory, file_driver or C.FD_DEFAULT, pnode_uuid,
                           disk_specs, base_index)


def make_file_disks(template: str, directory: str, driver: str, pnode_uuid: str,
                    disk_specs: list[dict[str, Any]], base_index: int) -> list[Disk]:
    """File or sharedfile disks in virtual ``directory`` (see
    :func:`generate_disk_template`); specs must be checked already."""
    if driver not in C.FILE_DRIVERS:
        raise errors.OpPrereqError(f"Invalid file driver '{driver}'", errors.ECODE_INVAL)
    disks = []
    for i, spec in enumerate(disk_specs):
        idx = base_index + i
        uuid = new_uuid()
        mode = spec.get(C.IDISK_MODE) or C.DISK_RDWR
        if mode not in C.DISK_ACCESS_SET:
            raise errors.OpPrereqError(f"Invalid disk access mode '{mode}'",
                                       errors.ECODE_INVAL)
        disks.append(Disk(
            uuid=uuid, name=normalize_name(spec.get(C.IDISK_NAME)), dev_type=template,
            logical_id=[driver, f"{directory}/{uuid}.{template}.disk{idx}"],
            nodes=[pnode_uuid], iv_name=f"disk/{idx}", size=int(spec[C.IDISK_SIZE]),
            mode=mode))
    return disks


def storage_dir_of(instance: Instance) -> str | None:
    """The directory of a file-based instance's disks (from disk 0), else None."""
    if instance.disk_template not in C.DTS_FILEBASED or not instance.disks:
        return None
    return posixpath.dirname(instance.disks[0].logical_id[1])


def update_iv_names(disks: list[Disk], base_index: int = 0) -> None:
    """Renumber ``iv_name`` after adds/removes (Ganeti's ``_UpdateIvNames``)."""
    for idx, disk in enumerate(disks):
        disk.iv_name = f"disk/{base_index + idx}"


# -- node operations ---------------------------------------------------------------------
def create_disks(lu: LogicalUnit, instance: Instance, disks: list[Disk] | None = None,
                 create_dir: bool = True) -> list[tuple[str, Disk]]:
    """Create the storage directory (file templates) and the disks on their nodes.

    Returns the ``(node_uuid, disk)`` pairs created. On a failure everything
    created here is removed again and OpExecError says what failed.
    """
    todo = instance.disks if disks is None else disks
    pnode = instance.primary_node
    created: list[tuple[str, Disk]] = []
    info = instance_info_text(instance)
    directory = storage_dir_of(instance)
    made_dir = False
    if directory and create_dir and todo:
        res = lu.rpc.call_one("file_storage_dir_create", pnode, [directory])
        res.raise_for(f"Failed to create directory '{directory}'")
        made_dir = True
    try:
        for disk in todo:
            for node_uuid in disk.nodes or [pnode]:
                res = lu.rpc.call_one("blockdev_create", node_uuid,
                                      [disk.to_dict(), disk.size, instance.name,
                                       node_uuid == pnode, info, False])
                res.raise_for(f"Can't create block device {disk.iv_name} on node "
                              f"{node_name(lu, node_uuid)} for instance {instance.name}")
                created.append((node_uuid, disk))
    except errors.OpExecError as err:
        problems = _undo_create(lu, instance, created, directory if made_dir else None)
        tail = f"; cleanup problems: {'; '.join(problems)}" if problems else ""
        raise errors.OpExecError(f"{err}{tail}") from None
    return created


def _undo_create(lu: LogicalUnit, instance: Instance, created: list[tuple[str, Disk]],
                 directory: str | None) -> list[str]:
    problems: list[str] = []
    for node_uuid, disk in reversed(created):
        res = lu.rpc.call_one("blockdev_remove", node_uuid, [disk.to_dict()])
        if res.fail_msg:
            problems.append(f"could not remove {disk.iv_name} on "
                            f"{node_name(lu, node_uuid)}: {res.fail_msg}")
    if directory:
        res = lu.rpc.call_one("file_storage_dir_remove", instance.primary_node, [directory])
        if res.fail_msg:
            problems.append(f"could not remove directory '{directory}': {res.fail_msg}")
    return problems


def remove_disks(lu: LogicalUnit, instance: Instance, disks: list[Disk] | None = None,
                 remove_dir: bool = True) -> list[str]:
    """Remove disks from their nodes and (file templates, all disks) the
    storage directory. Failures are warnings; returns their messages."""
    todo = instance.disks if disks is None else disks
    problems: list[str] = []
    for disk in todo:
        for node_uuid in disk.nodes or [instance.primary_node]:
            res = lu.rpc.call_one("blockdev_remove", node_uuid, [disk.to_dict()])
            if res.fail_msg:
                msg = (f"Could not remove disk {disk.iv_name} on node "
                       f"{node_name(lu, node_uuid)}: {res.fail_msg}")
                lu.log_warning(msg)
                problems.append(msg)
    directory = storage_dir_of(instance)
    if directory and remove_dir and disks is None:
        res = lu.rpc.call_one("file_storage_dir_remove", instance.primary_node, [directory])
        if res.fail_msg:
            msg = f"Could not remove directory '{directory}': {res.fail_msg}"
            lu.log_warning(msg)
            problems.append(msg)
    return problems


def assemble_disks(lu: LogicalUnit, instance: Instance, disks: list[Disk] | None = None,
                   ignore_size: bool = False) -> tuple[bool, list[list[Any]]]:
    """Assemble disks on their nodes (Ganeti's ``AssembleInstanceDisks``).

    Marks the instance's disks active first. Returns ``(ok, [[node_name,
    iv_name, link_path], ...])`` for the primary node; failures are warnings.
    """
    todo = instance.disks if disks is None else disks
    if disks is None or todo:
        instance = set_disks_active(lu, instance.uuid, True)
    encoded = lu.rpc.encode_instance(instance)
    pnode = instance.primary_node
    ok = True
    info: list[list[Any]] = []
    for disk in todo:
        idx = _disk_index(instance, disk)
        nodes = disk.nodes or [pnode]
        # Secondaries first, then the primary, as Ganeti does.
        for node_uuid in [n for n in nodes if n != pnode] + [n for n in nodes if n == pnode]:
            res = lu.rpc.call_one("blockdev_assemble", node_uuid,
                                  [disk.to_dict(), encoded, node_uuid == pnode, idx])
            if res.fail_msg:
                lu.log_warning(f"Could not prepare block device {disk.iv_name} on node "
                               f"{node_name(lu, node_uuid)}: {res.fail_msg}")
                ok = False
            elif node_uuid == pnode:
                payload = res.payload
                path = payload[0] if isinstance(payload, (list, tuple)) and payload else payload
                info.append([node_name(lu, pnode), disk.iv_name, path])
    return ok, info


def _disk_index(instance: Instance, disk: Disk) -> int:
    for idx, d in enumerate(instance.disks):
        if d.uuid == disk.uuid:
            return idx
    raise errors.ProgrammerError(f"Disk {disk.uuid} is not a disk of {instance.name}")


def shutdown_disks(lu: LogicalUnit, instance: Instance, disks: list[Disk] | None = None,
                   ignore_primary: bool = False) -> bool:
    """Shut disks down (Ganeti's ``ShutdownInstanceDisks``); marks them
    inactive when all disks are shut down. Failures on the primary make the
    result False unless ``ignore_primary``; all failures are warnings."""
    todo = instance.disks if disks is None else disks
    if disks is None:
        set_disks_active(lu, instance.uuid, False)
    ok = True
    for disk in todo:
        for node_uuid in disk.nodes or [instance.primary_node]:
            res = lu.rpc.call_one("blockdev_shutdown", node_uuid, [disk.to_dict()])
            if res.fail_msg:
                lu.log_warning(f"Could not shutdown block device {disk.iv_name} on node "
                               f"{node_name(lu, node_uuid)}: {res.fail_msg}")
                if node_uuid != instance.primary_node or not ignore_primary:
                    ok = False
    return ok


def start_instance_disks(lu: LogicalUnit, instance: Instance,
                         force: bool = False) -> list[list[Any]]:
    """Assemble all disks or raise OpExecError after shutting them down again
    (Ganeti's ``StartInstanceDisks``)."""
    ok, info = assemble_disks(lu, instance)
    if not ok:
        shutdown_disks(lu, instance)
        hint = "" if force else " (check the node, then retry)"
        raise errors.OpExecError(f"Disk consistency error: cannot activate the disks of "
                                 f"instance {instance.name}{hint}")
    return info


# -- logical units ---------------------------------------------------------------------
class LUInstanceActivateDisks(NoHooksLU):
    """Assemble an instance's disks; returns ``[[node, iv_name, path], ...]``."""

    REQ_BGL = False

    def expand_names(self) -> None:
        lock_instance_and_nodes(self)

    def declare_locks(self, level: str) -> None:
        declare_instance_node_locks(self, level)

    def check_prereq(self) -> None:
        self.instance = self.get_locked_instance()
        self.check_node_online(self.instance.primary_node)

    def exec(self, feedback_fn: FeedbackFn) -> list[list[Any]]:
        ok, info = assemble_disks(self, self.instance, ignore_size=self.op.ignore_size)
        if not ok:
            raise errors.OpExecError("Cannot activate block devices")
        return info


class LUInstanceDeactivateDisks(NoHooksLU):
    """Shut down the disks of a stopped instance (``force``: even if running)."""

    REQ_BGL = False

    def expand_names(self) -> None:
        lock_instance_and_nodes(self)

    def declare_locks(self, level: str) -> None:
        declare_instance_node_locks(self, level)

    def check_prereq(self) -> None:
        self.instance = self.get_locked_instance()
        if not self.op.force:
            check_instance_state(self, self.instance, INSTANCE_DOWN, "cannot shutdown disks")

    def exec(self, feedback_fn: FeedbackFn) -> None:
        if not shutdown_disks(self, self.instance) and not self.op.force:
            raise errors.OpExecError("Could not shut down all block devices")


def check_file_storage_free(lu: LogicalUnit, node_uuids: list[str], storage_type: str,
                            directory: str, requested: int) -> None:
    """Check that the filesystem of ``directory`` has ``requested`` MiB free on
    every node (``node_info`` storage unit ``[storage_type, directory]``).

    The file storage counterpart of Ganeti's ``_CheckNodesFreeDiskOnVG``:
    raises :class:`errors.OpPrereqError` ``ECODE_NORES`` if a node lacks the
    space, ``ECODE_ENVIRON`` if the free space cannot be read. The node
    checks again, holes included, before allocating (``FileDevice.grow``).
    """
    for node_uuid in node_uuids:
        name = node_name(lu, node_uuid)
        res = lu.rpc.call_one("node_info", node_uuid, [[[storage_type, directory]], []])
        res.raise_for(f"Cannot get free space of {directory}", prereq=True,
                      ecode=errors.ECODE_ENVIRON)
        storage = (res.payload or {}).get("storage") or [{}]
        free = storage[0].get("storage_free")
        if not isinstance(free, int):
            raise errors.OpPrereqError(
                f"Can't compute free disk space on node {name} for {directory}, "
                f"result was '{free}'", errors.ECODE_ENVIRON)
        if requested > free:
            raise errors.OpPrereqError(
                f"Not enough disk space on target node {name} for {directory}: "
                f"required {requested} MiB, available {free} MiB", errors.ECODE_NORES)


class LUInstanceGrowDisk(LogicalUnit):
    """Grow one disk by ``amount`` MiB, or to ``amount`` MiB if ``absolute``."""

    HPATH = "disk-grow"
    HTYPE = C.HTYPE_INSTANCE
    REQ_BGL = False

    def expand_names(self) -> None:
        lock_instance_and_nodes(self, node_res=True)

    def declare_locks(self, level: str) -> None:
        declare_instance_node_locks(self, level)

    def check_prereq(self) -> None:
        self.instance = inst = self.get_locked_instance()
        for node_uuid in inst.all_nodes:
            self.check_node_online(node_uuid)
        if inst.disk_template not in C.DTS_GROWABLE:
            raise errors.OpPrereqError("Instance's disk layout does not support growing",
                                       errors.ECODE_INVAL)
        if not 0 <= self.op.disk < len(inst.disks):
            raise errors.OpPrereqError(f"Invalid disk index: '{self.op.disk}'",
                                       errors.ECODE_INVAL)
        self.disk = inst.disks[self.op.disk]
        if self.op.absolute:
            self.target = self.op.amount
            self.delta = self.target - self.disk.size
            if self.delta < 0:
                raise errors.OpPrereqError(
                    f"Requested size ({self.target} MiB) is smaller than current disk size "
                    f"({self.disk.size} MiB)", errors.ECODE_STATE)
        else:
            self.delta = self.op.amount
            self.target = self.disk.size + self.delta
        # Ganeti checks only the disk sizes, count and templates here.
        sizes = [self.target if d.uuid == self.disk.uuid else d.size for d in inst.disks]
        check_instance_spec(self, node_group(self.cfg, inst.primary_node),
                            [{ISPEC_DISK_COUNT: len(sizes), ISPEC_DISK_SIZE: sizes}],
                            [d.dev_type for d in inst.disks], self.op.ignore_ipolicy,
                            action=f"Growing disk {self.op.disk}")
        if inst.disk_template in (C.DT_FILE, C.DT_SHARED_FILE) and self.delta > 0:
            check_file_storage_free(self, self.disk.nodes or [inst.primary_node],
                                    inst.disk_template,
                                    posixpath.dirname(self.disk.logical_id[1]), self.delta)

    def build_hooks_env(self) -> dict[str, Any]:
        env = build_instance_hook_env(self.cfg, self.get_locked_instance())
        env.update({"DISK": self.op.disk, "AMOUNT": self.op.amount,
                    "ABSOLUTE": self.op.absolute})
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return instance_hook_nodes(self, self.instance)

    def exec(self, feedback_fn: FeedbackFn) -> None:
        inst, disk = self.instance, self.disk
        was_active = inst.disks_active
        ok, _ = assemble_disks(self, inst, disks=[disk])
        if not ok:
            raise errors.OpExecError("Cannot activate block device to grow")
        feedback_fn(f"Growing disk {self.op.disk} of instance '{inst.name}' by "
                    f"{self.delta} MiB to {self.target} MiB")
        try:
            nodes = disk.nodes or [inst.primary_node]
            for dryrun in (True, False):
                for node_uuid in nodes:
                    res = self.rpc.call_one("blockdev_grow", node_uuid,
                                            [disk.to_dict(), self.delta, dryrun, True, False])
                    res.raise_for(f"{'Dry-run grow' if dryrun else 'Grow'} request failed "
                                  f"to node {node_name(self, node_uuid)}")
            res = self.rpc.call_one("blockdev_grow", inst.primary_node,
                                    [disk.to_dict(), self.delta, False, False, False])
            res.raise_for(f"Grow request failed to node {node_name(self, inst.primary_node)}")

            def record(i: Instance) -> None:
                i.disks[self.op.disk].size = self.target
            self.instance = update_instance(self, inst.uuid, record)
        finally:
            if not was_active:
                current = self.cfg.get_instance(inst.uuid) or inst
                shutdown_disks(self, current, disks=[current.disks[self.op.disk]])
                set_disks_active(self, inst.uuid, False)
