"""Tables, units, JSON, YAML and error formatting (corral.cli.output)."""

from __future__ import annotations

import json
import time

import yaml
from hypothesis import given
from hypothesis import strategies as st

from corral import errors
from corral.cli import output as o


def test_format_unit() -> None:
    assert o.format_unit(512, "h") == "512M"
    assert o.format_unit(1024, "h") == "1.0G"
    assert o.format_unit(1536, "h") == "1.5G"
    assert o.format_unit(1024 * 1024, "h") == "1.0T"
    assert o.format_unit(1536, "m") == "1536"
    assert o.format_unit(1536, "g") == "1.5"
    assert o.format_unit(1024 * 1024 * 3, "t") == "3.0"


@given(st.integers(min_value=0, max_value=10**9))
def test_format_unit_human_suffix(mib: int) -> None:
    text = o.format_unit(mib, "h")
    assert text[-1] == ("M" if mib < 1024 else "G" if mib < 1024 * 1024 else "T")
    float(text[:-1])


FDEFS = [{"name": "name", "title": "Node", "kind": "text"},
         {"name": "mfree", "title": "MFree", "kind": "unit"},
         {"name": "mc", "title": "MasterC", "kind": "bool"},
         {"name": "tags", "title": "Tags", "kind": "other"}]
ROWS = [[[0, "node1"], [0, 2048], [0, True], [0, ["a", "b"]]],
        [[0, "longer-node"], [2, None], [0, False], [0, []]]]


def test_table_aligned() -> None:
    lines = o.format_query_table(FDEFS, ROWS)
    assert lines == [
        "Node        MFree MasterC Tags",
        "node1        2.0G Y       a,b",
        "longer-node     ? N",
    ]


def test_table_separator_units_and_headers() -> None:
    lines = o.format_query_table(FDEFS, ROWS, headers=False, separator="|")
    # With a separator the default unit is MiB, as in Ganeti.
    assert lines == ["node1|2048|Y|a,b", "longer-node|?|N|"]
    lines = o.format_query_table(FDEFS, ROWS, separator=":", units="g")
    assert lines[0] == "Node:MFree:MasterC:Tags"
    assert lines[1] == "node1:2.0:Y:a,b"


def test_table_verbose_status() -> None:
    lines = o.format_query_table(FDEFS[:2], [[[0, "n"], [4, None]], [[0, "m"], [3, None]]],
                                 verbose=True, separator=",")
    assert lines[1:] == ["n,(offline)", "m,(unavail)"]


def test_query_json() -> None:
    data = json.loads(o.query_json(FDEFS, ROWS))
    assert data == [{"name": "node1", "mfree": 2048, "mc": True, "tags": ["a", "b"]},
                    {"name": "longer-node", "mfree": None, "mc": False, "tags": []}]


def test_info_yaml_parseable_and_ordered() -> None:
    doc = {"Cluster name": "c", "Tags": "a, b", "Nested": {"z": 1, "a": [1, 2]},
           "Multi": "line1\nline2", "Tuple": (1, 2), "Empty": {}}
    text = o.format_info(doc)
    assert text.splitlines()[0] == "Cluster name: c"
    loaded = yaml.safe_load(text)
    assert loaded == {"Cluster name": "c", "Tags": "a, b", "Nested": {"z": 1, "a": [1, 2]},
                      "Multi": "line1\nline2", "Tuple": [1, 2], "Empty": {}}
    assert list(loaded) == list(doc)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3),
                    max_leaves=10))
def test_info_yaml_roundtrip(data) -> None:
    assert yaml.safe_load(o.format_info(data)) == data


def test_format_error() -> None:
    code, msg = o.format_error(errors.OpPrereqError("Instance 'x' not known",
                                                    errors.ECODE_NOENT))
    assert code == 1
    assert msg == ("Failure: prerequisites not met for this operation:\n"
                   "error type: unknown_entity, error details:\nInstance 'x' not known")
    assert o.format_error(errors.OpExecError("boom")) == (
        1, "Failure: command execution error:\nboom")
    assert o.format_error(errors.ConfigurationError("bad"))[0] == 2
    code, msg = o.format_error(errors.CorralError("no master", errors.ECODE_ENVIRON))
    assert (code, msg) == (1, "Failure: CorralError: no master (environment_error)")
    assert "drain" in o.format_error(errors.JobQueueDrainError("x"))[1]


def test_log_message_has_ctime() -> None:
    line = o.format_log_message([1700000000, 500000], "message", "* creating disks")
    assert line == f"{time.ctime(1700000000.5)} * creating disks"
    assert o.format_log_message(1700000000, "message-list", ["a", "b"]).endswith("a\nb")


def test_ask_user_without_terminal_declines() -> None:
    # pytest's stdin is not a terminal.
    assert o.ask_user("Really?") is False
