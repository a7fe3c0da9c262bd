"""Fast JSON of replies: the same JSON as the standard library, its errors,
and the collector left as it was."""

from __future__ import annotations

import gc
import json

import pytest

from corral import wirejson
from corral.query import ReadOnlyDict


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, None, True], "b": {"c": "é"}},
    [(0, "x"), (2, None)],                       # query cells are tuples
    {"big": 2**70, 3: "int key"},                # beyond orjson: standard library
    {"hv": ReadOnlyDict({"kernel_path": "/boot/vmlinuz"})},
])
def test_dumps_is_the_standard_json(value: object) -> None:
    assert json.loads(wirejson.dumps(value)) == json.loads(json.dumps(value))


def test_dumps_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        wirejson.dumps({"a": {1, 2}})


def test_loads_parses_and_keeps_the_collector_state() -> None:
    assert gc.isenabled()
    assert wirejson.loads(b'{"success": true, "result": [[0, "x"]]}') == {
        "success": True, "result": [[0, "x"]]}
    assert gc.isenabled()
    with pytest.raises(ValueError):
        wirejson.loads(b"[1,")
    assert gc.isenabled()
    gc.disable()
    try:
        wirejson.loads(b"[]")
        assert not gc.isenabled()
    finally:
        gc.enable()
