"""noded's membership state on its node: joined or not, and the pending join token.

Stored as JSON at ``paths.noded_state`` (mode 0600, it may hold the token
secret). Ganeti has no counterpart: its nodes are added over SSH. Whether
noded serves in joined mode is decided by the certificates being present
(:func:`corral.crypto.node_certs_present`); this file records who we are
and the token a node waiting to join accepts.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ValidationError

from corral import crypto, errors
from corral.paths import Paths


class NodedState(BaseModel):
    """``join_token`` is the full ``"<id>.<secret>"`` text (secret: never log it)."""

    joined: bool = False
    cluster_name: str | None = None
    node_name: str | None = None
    node_uuid: str | None = None
    joined_at: float | None = None
    join_token: str | None = None

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return (f"NodedState(joined={self.joined}, cluster_name={self.cluster_name!r}, "
                f"node_name={self.node_name!r}, has_token={self.join_token is not None})")

    __str__ = __repr__


def load_state(paths: Paths) -> NodedState:
    """The stored state, or a fresh unjoined one if there is none.

    Raises :class:`errors.ConfigurationError` for an unreadable file.
    """
    try:
        text = paths.noded_state.read_text(encoding="utf-8")
    except FileNotFoundError:
        return NodedState()
    try:
        return NodedState.model_validate_json(text)
    except ValidationError as err:
        raise errors.ConfigurationError(
            f"Corrupt noded state file {paths.noded_state}: {err.error_count()} errors") from None


def save_state(paths: Paths, state: NodedState) -> None:
    """Write the state atomically with mode 0600."""
    crypto.write_pem(paths.noded_state, state.model_dump_json(indent=1))


def set_join_token(paths: Paths, token: str) -> None:
    """Remember the token this (unjoined) node accepts; validates its syntax."""
    crypto.parse_join_token(token)
    state = load_state(paths)
    state.join_token = token.strip()
    save_state(paths, state)


def record_joined(paths: Paths, cluster_name: str, node_name: str, node_uuid: str) -> None:
    """Mark this node as member of ``cluster_name`` and drop the join token.

    Also used by cluster init on the master node.
    """
    save_state(paths, NodedState(joined=True, cluster_name=cluster_name, node_name=node_name,
                                 node_uuid=node_uuid, joined_at=time.time(), join_token=None))


def clear_state(paths: Paths) -> None:
    """Forget membership and token (node left the cluster)."""
    try:
        paths.noded_state.unlink()
    except FileNotFoundError:
        pass
