"""Opcodes refuse hostile instance, node, group and network names (Ganeti's rule)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from corral import errors, opcodes

HOSTILE = ["/var/x", "../../etc", "a/b", "$(id)", "..", "a\nb", "inst1\n", ".hidden", "",
           "x" * 256]

# Fields holding names of instances, nodes, node groups or networks (or their
# UUIDs, which satisfy the same rule). "_uuid" fields and OS names are not here.
_NAME_FIELD_SUFFIXES = ("_name", "node", "nodes", "instances", "group", "_network")
_NOT_HOST_NAMES = {("OpOsDiagnose", "names"), ("OpInstanceSetParams", "os_name"),
                   ("OpBackupExport", "x509_key_name"), ("OpClusterSetParams", "vg_name"),
                   ("OpInstanceStartup", "ignore_offline_nodes"),
                   ("OpInstanceShutdown", "ignore_offline_nodes"),
                   # OP_INSTANCE_CREATE opcodes, whose names are checked as such.
                   ("OpInstanceMultiAlloc", "instances")}
_QUERY_NAMES = {"OpNodeQuery", "OpInstanceQuery"}


def _name_fields() -> list[tuple[type[opcodes.OpCode], str]]:
    out = []
    for cls in opcodes.all_opcodes().values():
        for field in cls.model_fields:
            if (cls.__name__, field) in _NOT_HOST_NAMES:
                continue
            if field.endswith(_NAME_FIELD_SUFFIXES) or field == "new_name" or \
                    (field == "names" and cls.__name__ in _QUERY_NAMES):
                out.append((cls, field))
    return out


NAME_FIELDS = _name_fields()


def _value(cls: type[opcodes.OpCode], field: str, name: str) -> Any:
    annotation = str(cls.model_fields[field].annotation)
    return [name] if annotation.startswith("list") else name


def test_the_name_fields_are_found() -> None:
    found = {(c.__name__, f) for c, f in NAME_FIELDS}
    for expected in [("OpInstanceCreate", "instance_name"), ("OpInstanceRename", "new_name"),
                     ("OpInstanceCreate", "pnode"), ("OpInstanceCreate", "snode"),
                     ("OpNodeAdd", "node_name"), ("OpNodeAdd", "group"),
                     ("OpNodeEvacuate", "remote_node"), ("OpInstanceMigrate", "target_node"),
                     ("OpClusterVerifyGroup", "group_name"), ("OpBackupQuery", "nodes"),
                     ("OpTestDelay", "on_nodes"), ("OpInstanceQueryData", "instances"),
                     ("OpClusterSetParams", "instance_communication_network")]:
        assert expected in found
    assert len(found) > 40


@pytest.mark.parametrize(("cls", "field"), NAME_FIELDS,
                         ids=[f"{c.__name__}.{f}" for c, f in NAME_FIELDS])
def test_every_name_field_refuses_hostile_names(cls: type[opcodes.OpCode], field: str) -> None:
    for name in HOSTILE:
        with pytest.raises(ValidationError) as exc:
            cls.model_validate({field: _value(cls, field, name)})
        ours = [e for e in exc.value.errors() if e["loc"] and e["loc"][0] == field]
        # A union (target_node: name or remote target list) reports one error
        # per member; the name member must be the one refusing.
        assert any(e["type"] == "invalid_name" for e in ours), (name, ours)


@pytest.mark.parametrize(("cls", "field"), NAME_FIELDS,
                         ids=[f"{c.__name__}.{f}" for c, f in NAME_FIELDS])
def test_every_name_field_accepts_and_lowercases(cls: type[opcodes.OpCode],
                                                 field: str) -> None:
    try:
        cls.model_validate({field: _value(cls, field, "Node1.Example.COM.")})
    except ValidationError as exc:
        assert not [e for e in exc.errors() if e["loc"] and e["loc"][0] == field]


def test_op_from_dict_gives_ecode_inval_and_normalizes() -> None:
    for name in HOSTILE:
        with pytest.raises(errors.OpPrereqError) as exc:
            opcodes.op_from_dict({"OP_ID": "OP_INSTANCE_RENAME", "instance_name": "inst1",
                                  "new_name": name})
        assert exc.value.ecode == errors.ECODE_INVAL
        assert "new_name: Invalid hostname" in str(exc.value)
    op = opcodes.op_from_dict({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "Inst1.Lan."})
    assert op.instance_name == "inst1.lan"


def test_tag_names_follow_the_kind() -> None:
    for kind in ("instance", "node", "nodegroup", "network"):
        with pytest.raises(errors.OpPrereqError):
            opcodes.op_from_dict({"OP_ID": "OP_TAGS_SET", "kind": kind, "name": "../x",
                                  "tags": ["t"]})
    op = opcodes.op_from_dict({"OP_ID": "OP_TAGS_GET", "kind": "node", "name": "N1"})
    assert op.name == "n1"
    op = opcodes.op_from_dict({"OP_ID": "OP_TAGS_GET", "kind": "cluster"})
    assert op.name is None


def test_os_names_keep_their_own_rule() -> None:
    op = opcodes.op_from_dict({"OP_ID": "OP_OS_DIAGNOSE", "output_fields": ["name"],
                               "names": ["Debootstrap+Default"]})
    assert op.names == ["Debootstrap+Default"]


def test_multi_alloc_checks_the_names_inside_its_create_opcodes() -> None:
    inst = {"instance_name": "../etc", "mode": "create", "disks": [], "nics": []}
    with pytest.raises(ValidationError) as exc:
        opcodes.OpInstanceMultiAlloc.model_validate({"instances": [inst]})
    assert any(e["type"] == "invalid_name" for e in exc.value.errors())
    other = {"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "x"}
    with pytest.raises(ValidationError, match="must be OP_INSTANCE_CREATE"):
        opcodes.OpInstanceMultiAlloc.model_validate({"instances": [other]})


def test_group_opcodes() -> None:
    """Node group opcodes: names normalised, Ganeti's summaries, policies and
    disk templates checked before a job is queued."""
    op = opcodes.op_from_dict({"OP_ID": "OP_GROUP_EVACUATE", "group_name": "Rack1",
                               "target_groups": ["rack2"]})
    assert op.group_name == "rack1"
    assert (op.summary(), op.tiny_summary()) == ("GROUP_EVACUATE(rack1)", "G_EVACUATE(rack1)")
    bad_params: list[dict[str, Any]] = [
        *({"OP_ID": "OP_GROUP_EVACUATE", "group_name": "g", "target_groups": [h]}
          for h in HOSTILE),
        *({"OP_ID": "OP_INSTANCE_CHANGE_GROUP", "instance_name": "i", "target_groups": [h]}
          for h in HOSTILE),
        {"OP_ID": "OP_GROUP_ADD", "group_name": "g", "alloc_policy": "sometimes"},
        {"OP_ID": "OP_GROUP_SET_PARAMS", "group_name": "g", "diskparams": {"floppy": {}}},
        {"OP_ID": "OP_GROUP_ASSIGN_NODES", "group_name": "g"},
        {"OP_ID": "OP_GROUP_RENAME", "group_name": "g", "new_name": "a/b"},
    ]
    for params in bad_params:
        with pytest.raises(errors.OpPrereqError) as exc:
            opcodes.op_from_dict(params)
        assert exc.value.ecode == errors.ECODE_INVAL
