"""Corral: a cluster virtualization manager in the tradition of Ganeti."""

__version__ = "0.1.0"
