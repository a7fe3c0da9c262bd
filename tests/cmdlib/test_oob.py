"""Shape checks of out-of-band program output (Ganeti's ``_CheckPayload``)."""

from __future__ import annotations

from typing import Any

import pytest

from corral import constants as C
from corral.cmdlib.oob import check_oob_payload


@pytest.mark.parametrize(("command", "payload"), [
    (C.OOB_HEALTH, [["fan", "OK"], ["psu", "CRITICAL"]]),
    (C.OOB_HEALTH, []),
    (C.OOB_POWER_STATUS, {"powered": False}),
    (C.OOB_POWER_ON, None), (C.OOB_POWER_OFF, None), (C.OOB_POWER_CYCLE, None),
])
def test_valid_payloads(command: str, payload: Any) -> None:
    assert check_oob_payload(command, payload) == []


@pytest.mark.parametrize(("command", "payload", "problem"), [
    (C.OOB_HEALTH, {"fan": "OK"}, "expected to return a list"),
    (C.OOB_HEALTH, [["fan", "HOT"]], "invalid status 'HOT'"),
    (C.OOB_HEALTH, [["fan"]], "not an [item, status] pair"),
    (C.OOB_POWER_STATUS, [True], "expected to return"),
    (C.OOB_POWER_STATUS, {"powered": "yes"}, "expected to return"),
    (C.OOB_POWER_ON, {"ok": True}, "expected to not return payload"),
])
def test_invalid_payloads(command: str, payload: Any, problem: str) -> None:
    problems = check_oob_payload(command, payload)
    assert len(problems) == 1 and problem in problems[0]
