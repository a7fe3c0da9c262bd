"""Ganeti's host name rule (netutils.Hostname.GetNormalizedName)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import errors
from corral.netutils import check_normalized_hostname, normalize_hostname
from corral.paths import safe_component

HOSTILE = ["/var/x", "../../etc", "a/b", "$(id)", "..", ".", "a\nb", "inst1\n", "", ".a",
           "a..b", "a b", "x" * 256, "in\x00st", "ünïcode", "a;b", "`id`"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(errors.OpPrereqError) as exc:
        normalize_hostname(name)
    assert exc.value.ecode == errors.ECODE_INVAL
    assert "Invalid hostname" in str(exc.value)


@pytest.mark.parametrize(("name", "expected"), [
    ("inst1", "inst1"), ("Inst1.Example.COM", "inst1.example.com"),
    ("node1.example.com.", "node1.example.com"), ("a_b-c", "a_b-c"), ("x" * 255, "x" * 255),
    ("0f6c1a6e-6d0c-4bb4-9a51-0d7bb2a2c8f4", "0f6c1a6e-6d0c-4bb4-9a51-0d7bb2a2c8f4"),
])
def test_valid_names_are_normalized(name: str, expected: str) -> None:
    assert normalize_hostname(name) == expected


def test_non_strings_are_refused() -> None:
    for value in (None, 3, ["a"], b"a"):
        with pytest.raises(errors.OpPrereqError):
            normalize_hostname(value)


@given(st.text(max_size=300))
def test_every_accepted_name_is_a_safe_path_component(name: str) -> None:
    try:
        norm = normalize_hostname(name)
    except errors.OpPrereqError:
        return
    assert safe_component(norm) == norm
    assert norm == norm.lower() and not norm.endswith(".")


def test_leading_dash_is_refused() -> None:
    # Corral's one deviation from Ganeti's regex: a name must not read as an option.
    with pytest.raises(errors.OpPrereqError):
        normalize_hostname("-x")


@pytest.mark.parametrize("name", ["Inst1", "inst1.", "-x", "../etc", "", None])
def test_node_side_check_wants_the_normalized_form(name: object) -> None:
    with pytest.raises(errors.OpPrereqError) as exc:
        check_normalized_hostname(name, "instance name")
    assert exc.value.ecode == errors.ECODE_INVAL


def test_node_side_check_accepts_normalized_names() -> None:
    assert check_normalized_hostname("inst1.example.com") == "inst1.example.com"
