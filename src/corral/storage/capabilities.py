"""What each disk template allows: failover, migration, move.

Mirrors the template sets of ``ganeti.constants`` that the instance LUs
consult: ``DTS_MIRRORED`` (failover and migration allowed, because every node
sees the same data: internally mirrored DRBD, or externally shared storage)
and ``DTS_COPYABLE`` (``gnt-instance move`` copies the data). Corral adds one
capability Ganeti lacks: live migration of an instance on *local* disks
(``file``) by mirroring the disks to the target while the memory migrates
(Proxmox's ``--with-local-disks``); it needs a hypervisor that implements
the disk mirror (KVM, see ``hypervisor/kvm/mirror.py``), so LUs check both.

This module is master-side policy only: nothing here touches a node.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral import constants as C
from corral import errors

# Actions a template may allow.
ACTION_FAILOVER = "failover"
ACTION_MIGRATE = "migrate"
ACTION_MOVE = "move"
ACTIONS = (ACTION_FAILOVER, ACTION_MIGRATE, ACTION_MOVE)

# Plural nouns for messages ("does not allow migrations"), as Ganeti words them.
_ACTION_NOUNS = {ACTION_FAILOVER: "failovers", ACTION_MIGRATE: "migrations",
                 ACTION_MOVE: "moves"}

# Templates whose disks Corral can live-migrate by mirroring them to the
# target node (the data is local to the primary node).
DTS_LOCAL_MIGRATABLE = frozenset({C.DT_FILE})
# Hypervisors that can mirror local disks to the migration target.
HTS_DISK_MIRROR: frozenset[str] = frozenset({C.HT_KVM})


@dataclass(frozen=True)
class TemplateCapabilities:
    """What one disk template supports.

    ``failover``/``migrate``: the instance may change primary node with its
    disks staying where they are (shared or mirrored storage, Ganeti's
    ``DTS_MIRRORED``). ``needs_target``: the new primary must be named (or
    chosen by an allocator) because any node sees the disks (Ganeti's
    ``DTS_EXT_MIRROR``; DRBD's target is its secondary). ``move``: the data
    can be copied to another node while the instance is down
    (``DTS_COPYABLE``). ``local_live_migrate``: live migration copying the
    disks to the target (Corral, hypervisor support required).
    """

    template: str
    failover: bool
    migrate: bool
    move: bool
    needs_target: bool
    local_live_migrate: bool

    def allows(self, action: str) -> bool:
        """True if ``action`` (one of :data:`ACTIONS`) is allowed.

        ``migrate`` counts local live migration too; callers check the
        hypervisor for that case with :func:`needs_disk_mirror`.
        """
        if action == ACTION_FAILOVER:
            return self.failover
        if action == ACTION_MIGRATE:
            return self.migrate or self.local_live_migrate
        if action == ACTION_MOVE:
            return self.move
        raise errors.ProgrammerError(f"Unknown template action '{action}'")


def _capabilities(template: str) -> TemplateCapabilities:
    mirrored = template in C.DTS_MIRRORED
    return TemplateCapabilities(
        template=template, failover=mirrored, migrate=mirrored,
        move=template in C.DTS_COPYABLE, needs_target=template in C.DTS_EXT_MIRROR,
        local_live_migrate=template in DTS_LOCAL_MIGRATABLE)


CAPABILITIES: dict[str, TemplateCapabilities] = {
    dt: _capabilities(dt) for dt in C.DISK_TEMPLATES}


def get_capabilities(template: str) -> TemplateCapabilities:
    """The capabilities of ``template``.

    Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``) for an unknown
    template name.
    """
    try:
        return CAPABILITIES[template]
    except KeyError:
        raise errors.OpPrereqError(f"Unknown disk template '{template}'",
                                   errors.ECODE_INVAL) from None


def templates_allowing(action: str) -> frozenset[str]:
    """All template names that allow ``action``."""
    return frozenset(dt for dt, caps in CAPABILITIES.items() if caps.allows(action))


def needs_disk_mirror(template: str) -> bool:
    """True if migrating an instance of ``template`` must copy its disks
    (local disks) rather than reuse them (shared/mirrored disks)."""
    caps = get_capabilities(template)
    return caps.local_live_migrate and not caps.migrate


def check_disk_mirror_supported(template: str, hypervisor: str) -> None:
    """Refuse a live migration that must mirror ``template`` disks under a
    ``hypervisor`` that cannot do it.

    Raises :class:`errors.OpPrereqError` (``ECODE_STATE``) naming both.
    """
    if needs_disk_mirror(template) and hypervisor not in HTS_DISK_MIRROR:
        raise errors.OpPrereqError(
            f"Instance's disk layout '{template}' does not allow migrations with the "
            f"{hypervisor} hypervisor (its disks are local to the primary node and only "
            f"{', '.join(sorted(HTS_DISK_MIRROR)) or 'no hypervisor'} can mirror them)",
            errors.ECODE_STATE)


def check_template_allows(templates: list[str] | set[str] | tuple[str, ...],
                          action: str) -> None:
    """Refuse ``action`` unless every template in ``templates`` allows it.

    ``templates`` are the ``dev_type`` values of an instance's disks (or its
    ``disk_template``). Raises :class:`errors.OpPrereqError` with
    ``ECODE_STATE`` naming the offending templates, in Ganeti's words:
    "Instance's disk layout 'file' does not allow migrations".
    """
    bad = sorted({dt for dt in templates if not get_capabilities(dt).allows(action)})
    if bad:
        raise errors.OpPrereqError(
            f"Instance's disk layout '{', '.join(bad)}' does not allow "
            f"{_ACTION_NOUNS[action]}", errors.ECODE_STATE)
