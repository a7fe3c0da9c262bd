"""The cluster configuration store (see ``docs/architecture.md``)."""

from corral.config.changes import KINDS, ConfigChanges
from corral.config.store import ConfigStore

__all__ = ["KINDS", "ConfigChanges", "ConfigStore"]
