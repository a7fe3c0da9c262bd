"""What a logical unit and the processor see of the master daemon.

Mirrors the ``context`` object of Ganeti's ``mcpu.Processor`` (config,
locks, RPC runner, job queue) as one dataclass built by
:mod:`corral.masterd.main`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from corral.paths import Paths

if TYPE_CHECKING:
    from corral.config import ConfigStore
    from corral.jobs import JobQueue
    from corral.locking import LockManager
    from corral.rpc import RpcRunner


@dataclass
class MasterContext:
    """The master's shared objects.

    ``queue`` is set right after construction, because the queue's
    ``run_opcode`` callback itself needs the context.
    """

    paths: Paths
    cfg: ConfigStore
    rpc: RpcRunner
    glm: LockManager
    queue: JobQueue | None = field(default=None)

    @property
    def master_node_uuid(self) -> str:
        """UUID of the master node (from the cluster object)."""
        return self.cfg.get_cluster().master_node

    @property
    def master_node_name(self) -> str:
        """Name of the master node."""
        return self.cfg.get_master_node().name

    @property
    def cluster_name(self) -> str:
        return self.cfg.get_cluster().cluster_name
