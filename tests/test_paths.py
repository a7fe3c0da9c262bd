"""The confining path helper: one safe path component, or an ECODE_INVAL error."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import errors
from corral.paths import MAX_COMPONENT_BYTES, component_path, safe_component

BAD = ["", ".", "..", "/", "/var/x", "a/b", "../../etc", "a\x00b", "a\nb", "a\rb", "tab\t",
       "del\x7f", "x" * 256, "é" * 128]


@pytest.mark.parametrize("name", BAD)
def test_safe_component_refuses(name: str) -> None:
    with pytest.raises(errors.OpPrereqError) as exc:
        safe_component(name, "instance name")
    assert exc.value.ecode == errors.ECODE_INVAL
    assert "instance name" in str(exc.value)


@pytest.mark.parametrize("name", [None, 1, b"a", ["a"]])
def test_safe_component_refuses_non_strings(name: object) -> None:
    with pytest.raises(errors.OpPrereqError):
        safe_component(name)


@pytest.mark.parametrize("name", ["inst1", "a.b", "...x", "$(id)", "x" * 255, "é" * 127])
def test_safe_component_accepts(name: str) -> None:
    assert safe_component(name) == name


def test_component_path_checks_name_and_whole_file_name(tmp_path: Path) -> None:
    assert component_path(tmp_path, "i1", suffix=".qmp") == tmp_path / "i1.qmp"
    assert component_path(tmp_path, "i1", prefix=".", suffix=".tmp") == tmp_path / ".i1.tmp"
    # The prefix or suffix cannot make a hostile name acceptable ...
    with pytest.raises(errors.OpPrereqError):
        component_path(tmp_path, "..", suffix="x")
    with pytest.raises(errors.OpPrereqError):
        component_path(tmp_path, "/etc/passwd", prefix="a")
    # ... nor push the file name over the limit.
    with pytest.raises(errors.OpPrereqError):
        component_path(tmp_path, "x" * MAX_COMPONENT_BYTES, suffix=".runtime")


@given(st.text(max_size=40))
def test_component_path_stays_in_its_directory(name: str) -> None:
    base = Path("/nonexistent/base")
    try:
        path = component_path(base, name)
    except errors.OpPrereqError:
        return
    assert path.parent == base and path.name == name
