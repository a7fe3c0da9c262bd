"""Strict JSON for request bodies from the network (RAPI, the client API).

RFC 8259 JSON only: ``NaN``, ``Infinity`` and numbers that overflow a double
are refused, integers must fit in a signed 64-bit integer (SQLite's and
Ganeti's Haskell side's range), nesting is limited and the text must be
UTF-8. Every refusal is :class:`StrictJsonError` (a ``ValueError``) with a
message for the client, never ``RecursionError``/``OverflowError`` later.

The limits are far above anything a real Ganeti client sends (the largest
bodies are multi-instance allocations of a few KiB, nested at most about 6
levels).
"""

from __future__ import annotations

import json
import math
from typing import Any

# Deepest nesting of arrays/objects accepted (the top-level value is depth 1).
MAX_DEPTH = 32
# Range of integers accepted anywhere in a document (signed 64-bit).
INT_MIN = -(2 ** 63)
INT_MAX = 2 ** 63 - 1
# Longest integer literal parsed at all (int() of huge digit strings is slow).
_MAX_INT_DIGITS = 20


class StrictJsonError(ValueError):
    """The text is not acceptable strict JSON; ``str()`` says why."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise StrictJsonError(f"Integer {text[:24]}... is out of range")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise StrictJsonError(f"Integer {text} is out of range (signed 64-bit)")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError(f"Number {text[:24]} is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise StrictJsonError(f"{name} is not valid JSON")


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`StrictJsonError` if ``value`` nests deeper than ``max_depth``."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise StrictJsonError(f"JSON nested deeper than {max_depth} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children
                         if isinstance(child, (dict, list)))


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` (UTF-8 bytes or text) strictly; see the module docstring.

    Raises :class:`StrictJsonError` for anything refused.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise StrictJsonError(f"Body is not UTF-8: {exc.reason}") from None
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_parse_constant)
    except StrictJsonError:
        raise
    except RecursionError:
        raise StrictJsonError(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise StrictJsonError(f"Invalid JSON: {exc}") from None
    check_depth(value, max_depth)
    return value
