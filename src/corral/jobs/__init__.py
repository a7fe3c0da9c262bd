"""Persisted job queue: scheduling, dependencies, priorities, logs, recovery.

See :class:`JobQueue` and docs/architecture.md ("Job queue").
"""

from corral.jobs.context import OpContext
from corral.jobs.model import J_FIELDS, J_FIELDS_BULK, JOB_FIELDS
from corral.jobs.queue import JobQueue

__all__ = ["JOB_FIELDS", "J_FIELDS", "J_FIELDS_BULK", "JobQueue", "OpContext"]
