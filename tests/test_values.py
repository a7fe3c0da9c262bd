"""corral.values: sizes with units and OS names with variants."""

from __future__ import annotations

import pytest

from corral import errors, opcodes
from corral.values import os_names, parse_size


@pytest.mark.parametrize(("value", "mib"), [
    (0, 0), (512, 512), (1.5, 1), ("512", 512), ("512M", 512), ("512mb", 512), ("2G", 2048),
    ("1.5g", 1536), ("1T", 1024 * 1024), ("1K", 1), ("1025k", 2), (" 3 G ", 3072),
])
def test_parse_size(value: object, mib: int) -> None:
    assert parse_size(value) == mib


@pytest.mark.parametrize("value", [-1, True, "", "G", "-2G", "2X", "1.2.3", None, [1]])
def test_parse_size_refuses(value: object) -> None:
    with pytest.raises(errors.OpPrereqError) as exc:
        parse_size(value)
    assert exc.value.ecode == errors.ECODE_INVAL


def test_opcodes_use_the_same_parser() -> None:
    assert opcodes.parse_size is parse_size
    assert opcodes.validate_disk_params({"size": "2G"})["size"] == 2048


def test_os_names() -> None:
    assert os_names("debootstrap", None) == ["debootstrap"]
    assert os_names("busybox", []) == ["busybox"]
    assert os_names("busybox", ["default", "tick"]) == ["busybox+default", "busybox+tick"]
