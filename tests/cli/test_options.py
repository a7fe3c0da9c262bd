"""Ganeti's option value syntax (corral.cli.options)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import constants as C
from corral import errors
from corral.cli.options import (
    convert_hvparams,
    force_dict_type,
    parse_disks,
    parse_ident_kv,
    parse_kv,
    parse_modifications,
    parse_multi_ident_kv,
    parse_nics,
    parse_node_spec,
    parse_timespec,
    parse_yes_no,
    unescape_and_split,
)


def test_kv_forms() -> None:
    assert parse_kv("a=1,b,no_c,-d,e=x=y") == {"a": "1", "b": True, "c": False, "d": None,
                                              "e": "x=y"}
    assert parse_kv("") == {} and parse_kv(None) == {}
    assert parse_kv(r"a=x\,y,b=2") == {"a": "x,y", "b": "2"}
    assert parse_kv("a=") == {"a": ""}


def test_kv_errors() -> None:
    with pytest.raises(errors.ParameterError, match="Duplicate key 'a'"):
        parse_kv("a=1,a=2", "-B")
    with pytest.raises(errors.ParameterError, match="Missing value"):
        parse_kv("a", "-B", parse_prefixes=False)
    with pytest.raises(errors.ParameterError):
        parse_kv("=1")


def test_ident_kv() -> None:
    assert parse_ident_kv("kvm:kernel_path=/k,acpi") == ("kvm", {"kernel_path": "/k",
                                                                "acpi": True})
    assert parse_ident_kv("kvm") == ("kvm", {})
    assert parse_ident_kv("no_kvm") == ("kvm", False)
    assert parse_ident_kv("-kvm") == ("kvm", None)
    # "-1" is an index, not a removal.
    assert parse_ident_kv("-1:size=1") == ("-1", {"size": "1"})
    with pytest.raises(errors.ParameterError):
        parse_ident_kv("no_kvm:a=b")
    assert parse_multi_ident_kv(["kvm:a=1", "fake:b"], "-H") == {"kvm": {"a": "1"},
                                                                 "fake": {"b": True}}
    with pytest.raises(errors.ParameterError, match="Duplicate"):
        parse_multi_ident_kv(["kvm:a=1", "kvm:b=2"], "-H")


def test_force_dict_type() -> None:
    out = force_dict_type({"maxmem": "1G", "vcpus": "2", "auto_balance": "no",
                           "other": "x"}, C.BES_PARAMETER_TYPES)
    assert out == {"maxmem": 1024, "vcpus": 2, "auto_balance": False, "other": "x"}
    assert force_dict_type({"auto_balance": True}, C.BES_PARAMETER_TYPES) == \
        {"auto_balance": True}
    with pytest.raises(errors.ParameterError):
        force_dict_type({"vcpus": "two"}, C.BES_PARAMETER_TYPES)
    with pytest.raises(errors.ParameterError):
        force_dict_type({"vcpus": None}, C.BES_PARAMETER_TYPES)
    assert force_dict_type({"vcpus": None}, C.BES_PARAMETER_TYPES, allow_none=True) == \
        {"vcpus": None}


def test_hvparams_typed_by_defaults() -> None:
    out = convert_hvparams("kvm", {"acpi": "false", "serial_speed": "115200",
                                   "kernel_path": "/boot/vmlinuz", "vhost_net": True})
    assert out == {"acpi": False, "serial_speed": 115200, "kernel_path": "/boot/vmlinuz",
                   "vhost_net": True}


def test_disks() -> None:
    assert parse_disks(["0:size=10G,mode=ro", "1:size=512"], None, "file") == [
        {"size": 10240, "mode": "ro"}, {"size": 512}]
    assert parse_disks([], "1T", "file") == [{"size": 1024 * 1024}]
    assert parse_disks([], None, "diskless") == []
    with pytest.raises(errors.OpPrereqError, match="Diskless"):
        parse_disks(["0:size=1G"], None, "diskless")
    with pytest.raises(errors.OpPrereqError, match="either"):
        parse_disks(["0:size=1G"], "1G", "file")
    with pytest.raises(errors.OpPrereqError, match="No disk information"):
        parse_disks([], None, "file")
    with pytest.raises(errors.OpPrereqError, match="Missing size"):
        parse_disks(["0:mode=rw"], None, "file")
    with pytest.raises(errors.OpPrereqError, match="Missing disk index"):
        parse_disks(["1:size=1G"], None, "file")
    with pytest.raises(errors.OpPrereqError, match="Invalid disk size"):
        parse_disks(["0:size=big"], None, "file")
    with pytest.raises(errors.OpPrereqError, match="index"):
        parse_disks(["x:size=1"], None, "file")


def test_nics() -> None:
    assert parse_nics([], False) == [{}]
    assert parse_nics([], True) == []
    assert parse_nics(["0:mac=aa:00:00:11:22:33,link=br0", "1"], False) == [
        {"mac": "aa:00:00:11:22:33", "link": "br0"}, {}]
    with pytest.raises(errors.OpPrereqError):
        parse_nics(["0:link=br0"], True)
    with pytest.raises(errors.OpPrereqError, match="Unknown NIC"):
        parse_nics(["0:colour=red"], False)


def test_modifications() -> None:
    assert parse_modifications(["add:size=1G,mode=rw"], "disk") == [
        ["add", -1, {"size": 1024, "mode": "rw"}]]
    assert parse_modifications(["remove"], "disk") == [["remove", -1, {}]]
    assert parse_modifications(["1:remove"], "disk") == [["remove", 1, {}]]
    assert parse_modifications(["0:modify,mode=ro"], "disk") == [["modify", 0,
                                                                  {"mode": "ro"}]]
    assert parse_modifications(["0:mode=ro"], "disk") == [["modify", 0, {"mode": "ro"}]]
    assert parse_modifications(["2:add,size=2G"], "disk") == [["add", 2, {"size": 2048}]]
    assert parse_modifications(["data:modify,name=x"], "disk") == [["modify", "data",
                                                                   {"name": "x"}]]
    assert parse_modifications(["add:link=br1"], "net") == [["add", -1, {"link": "br1"}]]
    with pytest.raises(errors.OpPrereqError, match="more than one"):
        parse_modifications(["0:add,remove"], "disk")
    with pytest.raises(errors.OpPrereqError, match="removal"):
        parse_modifications(["0:remove,size=1"], "disk")
    with pytest.raises(errors.OpPrereqError, match="size"):
        parse_modifications(["add:mode=rw"], "disk")


def test_misc() -> None:
    assert parse_node_spec("n1:n2") == ("n1", "n2")
    assert parse_node_spec("n1") == ("n1", None)
    assert parse_node_spec(None) == (None, None)
    assert parse_yes_no("yes", "-C") is True and parse_yes_no("NO", "-C") is False
    assert parse_yes_no(None, "-C") is None
    with pytest.raises(errors.ParameterError):
        parse_yes_no("maybe", "-C")
    assert parse_timespec("30") == 30 and parse_timespec("2h") == 7200
    assert parse_timespec("1w") == 604800
    with pytest.raises(errors.OpPrereqError):
        parse_timespec("soon")


_piece = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10)


@given(st.lists(_piece, min_size=1, max_size=6))
def test_split_roundtrip(pieces: list[str]) -> None:
    escaped = ",".join(p.replace("\\", "\\\\").replace(",", "\\,") for p in pieces)
    assert unescape_and_split(escaped) == pieces


_key = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(
    lambda k: not k.startswith("no_"))
_val = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10)


@given(st.dictionaries(_key, st.one_of(_val, st.booleans(), st.none()), max_size=6))
def test_kv_roundtrip(data: dict) -> None:
    parts = []
    for key, value in data.items():
        if value is True:
            parts.append(key)
        elif value is False:
            parts.append("no_" + key)
        elif value is None:
            parts.append("-" + key)
        else:
            parts.append(key + "=" + value.replace("\\", "\\\\").replace(",", "\\,"))
    assert parse_kv(",".join(parts)) == data


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "M", "m", "G", "g",
                                                                  "T", "t"]))
def test_disk_sizes_with_units(number: int, unit: str) -> None:
    mult = {"": 1, "m": 1, "g": 1024, "t": 1024 * 1024}[unit.lower()]
    (disk,) = parse_disks([f"0:size={number}{unit}"], None, "file")
    assert disk == {"size": number * mult}
