"""User-facing values shared by the CLI, RAPI and opcodes: sizes and OS
names with variants. Only the standard library and :mod:`corral.errors`, so
that the command-line tools can use them without loading the opcode models
(validation itself happens in masterd)."""

from __future__ import annotations

import re
from typing import Any

from corral import errors

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[bB]?\s*$")


def parse_size(value: Any) -> int:
    """Parse a size in MiB, accepting unit suffixes (M, G, T; K rounds up).

    Mirrors Ganeti's ``utils.ParseUnit``. Raises :class:`errors.OpPrereqError`
    (``ECODE_INVAL``) for negative or malformed values.
    """
    if isinstance(value, bool):
        raise errors.OpPrereqError(f"Invalid size {value!r}", errors.ECODE_INVAL)
    if isinstance(value, (int, float)):
        if value < 0:
            raise errors.OpPrereqError(f"Size must not be negative: {value}",
                                       errors.ECODE_INVAL)
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            num = float(m.group(1))
            unit = m.group(2).lower()
            mult = {"": 1, "m": 1, "g": 1024, "t": 1024 * 1024, "k": 1 / 1024}[unit]
            mib = num * mult
            return int(mib) if mib == int(mib) else int(mib) + 1
    raise errors.OpPrereqError(f"Invalid size {value!r}", errors.ECODE_INVAL)


def os_names(name: str, variants: list[str] | None) -> list[str]:
    """``cli.CalculateOSNames``: ``os+variant`` for each variant, else ``os``."""
    if variants:
        return [f"{name}+{v}" for v in variants]
    return [name]
