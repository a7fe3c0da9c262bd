"""Host name rules shared by every name the cluster knows.

Mirrors ``ganeti.netutils.Hostname.GetNormalizedName``: instance, node, node
group and network names are host-name-like, so they are also safe as a single
path component on the nodes (no ``/``, no ``..``, no leading dot).
"""

from __future__ import annotations

import re
from typing import Any

from corral import errors

# Ganeti's Hostname._VALID_NAME_RE: a bit more relaxed than RFC 1123 (it
# allows underscores), at most 255 characters. One deviation: the first
# character must not be "-" (no DNS label starts with one, and such a name
# would read as an option wherever it becomes a command argument).
_VALID_NAME_RE = re.compile(r"[a-z0-9._][a-z0-9._-]{0,254}")


def normalize_hostname(name: Any) -> str:
    """Validate and normalize a host-like name (Ganeti's ``GetNormalizedName``).

    The name is lowercased; it must match ``^[a-z0-9._-]{1,255}$``, contain no
    empty label (``..``) and not start with a dot or a dash. A trailing dot (fully
    qualified form) is stripped. Returns the normalized name.

    Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``) for anything else,
    including non-strings.
    """
    if not isinstance(name, str):
        raise errors.OpPrereqError(f"Invalid hostname {name!r}", errors.ECODE_INVAL)
    hostname = name.lower()
    # fullmatch: ``$`` alone would accept a trailing newline.
    if (not _VALID_NAME_RE.fullmatch(hostname) or ".." in hostname
            or hostname.startswith(".")):
        raise errors.OpPrereqError(f"Invalid hostname {name!r}", errors.ECODE_INVAL)
    return hostname.rstrip(".")


def check_normalized_hostname(name: Any, what: str = "name") -> str:
    """``name`` if it already is a normalized host name, as the master sends
    every name (the node side's check of the same rule, defence in depth).

    Raises :class:`errors.OpPrereqError` (``ECODE_INVAL``) otherwise, e.g.
    for upper case, a trailing dot or anything :func:`normalize_hostname`
    refuses.
    """
    try:
        if normalize_hostname(name) == name:
            return name
    except errors.OpPrereqError:
        pass
    raise errors.OpPrereqError(f"Invalid {what} {str(name)[:64]!r}", errors.ECODE_INVAL)
