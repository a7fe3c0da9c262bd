"""The query filter compiler of masterd (``Master.query``'s ``qfilter``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import errors
from corral.masterd.master import RS_NORMAL, RS_UNKNOWN, compile_filter


def _row(**values: Any) -> dict[str, tuple[int, Any]]:
    return {k: (RS_NORMAL, v) for k, v in values.items()}


def test_names_and_simple_filters() -> None:
    assert compile_filter(None) == (None, None, [])
    assert compile_filter([]) == (None, None, [])
    assert compile_filter(["a", "b"])[0] == ["a", "b"]
    assert compile_filter(["=", "name", "a"])[0] == ["a"]
    assert compile_filter(["|", ["=", "name", "a"], ["=", "name", "b"]])[0] == ["a", "b"]
    assert compile_filter(["=", "id", 7], name_field="id")[0] == ["7"]
    # Not a pure name filter: evaluated as a predicate.
    names, pred, used = compile_filter(["|", ["=", "name", "a"], ["=", "os", "x"]])
    assert names is None and pred is not None and used == ["name", "os"]


def test_operators() -> None:
    row = _row(name="inst1", size=10, tags=["a", "b"], up=True, empty="")
    cases = {
        ("=", "name", "inst1"): True, ("!=", "name", "inst1"): False,
        ("=~", "name", "^ins"): True, ("=~", "name", "x$"): False,
        ("<", "size", 11): True, (">", "size", 11): False,
        ("<=", "size", 10): True, (">=", "size", 10): True,
        ("=[]", "tags", "b"): True, ("=[]", "tags", "c"): False,
        ("<", "name", 3): False,          # incomparable types never match
    }
    for (op, field, value), expected in cases.items():
        _, pred, _ = compile_filter(["&", [op, field, value]])
        assert pred is not None and pred(row) is expected, (op, field, value)
    _, pred, _ = compile_filter(["?", "up"])
    assert pred is not None and pred(row)
    _, pred, _ = compile_filter(["?", "empty"])
    assert pred is not None and not pred(row)
    _, pred, _ = compile_filter(["=", "name", "inst1"], name_field="id")
    assert pred is not None and not pred({"name": (RS_UNKNOWN, None)})


@pytest.mark.parametrize("bad", ["name", 5, ["~", "a", 1], ["=", "a"], ["!", 1, 2],
                                 ["?", "a", "b"], ["=~", "a", "("], ["|", "x"], ["a", 1],
                                 ["a", ["b"]], [["=", "a", 1]]])
def test_malformed_filters(bad: Any) -> None:
    with pytest.raises(errors.OpPrereqError) as info:
        compile_filter(bad)
    assert info.value.ecode == errors.ECODE_INVAL


_leaf = st.builds(lambda op, f, v: [op, f, v],
                  st.sampled_from(["=", "!=", "<", ">", "<=", ">="]),
                  st.sampled_from(["a", "b"]), st.integers(-3, 3))
_filters = st.recursive(_leaf, lambda inner: st.one_of(
    st.builds(lambda xs: ["|", *xs], st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda xs: ["&", *xs], st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda x: ["!", x], inner)), max_leaves=8)


def _reference(f: list[Any], row: dict[str, int]) -> bool:
    op = f[0]
    if op == "|":
        return any(_reference(s, row) for s in f[1:])
    if op == "&":
        return all(_reference(s, row) for s in f[1:])
    if op == "!":
        return not _reference(f[1], row)
    a, b = row[f[1]], f[2]
    return {"=": a == b, "!=": a != b, "<": a < b, ">": a > b, "<=": a <= b,
            ">=": a >= b}[op]


@given(_filters, st.integers(-3, 3), st.integers(-3, 3))
def test_predicate_matches_reference(qfilter: list[Any], a: int, b: int) -> None:
    names, pred, used = compile_filter(qfilter, name_field="unused")
    assert names is None and pred is not None
    assert set(used) <= {"a", "b"}
    assert pred(_row(a=a, b=b)) is _reference(qfilter, {"a": a, "b": b})
