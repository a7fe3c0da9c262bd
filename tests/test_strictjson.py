"""Strict JSON parsing of network request bodies."""

from __future__ import annotations

import pytest

from corral import strictjson


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e999",
                                 b"-1e999", b"18446744073709551616", b"-9223372036854775809",
                                 b"9" * 30, b"[" * 33 + b"]" * 33, b"[" * 100000,
                                 b'"\xff"', b"{", b""])
def test_refused(raw: bytes) -> None:
    with pytest.raises(strictjson.StrictJsonError):
        strictjson.loads(raw)


def test_accepted() -> None:
    assert strictjson.loads(b'{"a": [1, 2.5, "x", null, true]}') == \
        {"a": [1, 2.5, "x", None, True]}
    assert strictjson.loads(b"9223372036854775807") == 2 ** 63 - 1
    assert strictjson.loads(b"-9223372036854775808") == -(2 ** 63)
    assert strictjson.loads("[" * 32 + "]" * 32) == eval("[" * 32 + "]" * 32)
    assert strictjson.loads('"ü"'.encode()) == "ü"


def test_depth_counts_objects_and_lists() -> None:
    doc = {"a": [{"b": [1]}]}
    strictjson.check_depth(doc, 4)
    with pytest.raises(strictjson.StrictJsonError):
        strictjson.check_depth(doc, 3)
