"""Node-side os_diagnose and os_validate with real OS definitions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from corral import errors
from corral.backend import os as bos
from corral.paths import Paths

DATA = Path(__file__).resolve().parent.parent / "data" / "os"


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "root")
    p.os_dir.mkdir(parents=True)
    for name in ("corral-test20", "corral-test15", "corral-failing"):
        shutil.copytree(DATA / name, p.os_dir / name)
    broken = p.os_dir / "broken"
    shutil.copytree(DATA / "corral-test10", broken)
    (broken / "import").unlink()
    return p


def test_os_diagnose(paths: Paths, ganeti_os_noop: Path) -> None:
    rows = bos.os_diagnose(paths)
    by_name = {r[0]: r for r in rows}
    assert by_name["corral-test20"][2:5] == [True, "", ["alpha", "beta"]]
    assert by_name["corral-test15"][2:] == [True, "", ["wheezy", "jessie"], [], [15], True]
    assert by_name["broken"][2] is False
    assert "File 'import'" in by_name["broken"][3]
    assert by_name["noop"][1:] == [str(ganeti_os_noop), True, "", [], [], [5, 10], True]


def test_os_validate_presence(paths: Paths) -> None:
    assert bos.os_validate(paths, False, "no-such-os", [], {}, False) is False
    with pytest.raises(errors.RPCFail, match="not found in search path") as exc:
        bos.os_validate(paths, True, "no-such-os", [], {}, False)
    assert exc.value.ecode == errors.ECODE_NOENT
    assert bos.os_validate(paths, False, "broken", [], {}, False) is False
    with pytest.raises(errors.RPCFail, match="File 'import'"):
        bos.os_validate(paths, True, "broken", [], {}, False)


def test_os_validate_variants(paths: Paths) -> None:
    assert bos.os_validate(paths, True, "corral-test20", [], {}, False) is True
    assert bos.os_validate(paths, True, "corral-test20+beta", [], {}, False) is True
    with pytest.raises(errors.RPCFail, match="does not support variant 'gamma'"):
        bos.os_validate(paths, True, "corral-test20+gamma", [], {}, False)
    assert bos.os_validate(paths, True, "corral-test20+gamma", [], {}, True) is True
    assert bos.os_validate(paths, True, "corral-test15+jessie", ["parameters"], {},
                           False) is True


def test_os_validate_parameters(paths: Paths) -> None:
    assert bos.os_validate(paths, True, "corral-test20", ["parameters"],
                           {"colour": "blue", "size-hint": "12"}, False) is True
    with pytest.raises(errors.RPCFail, match="invalid colour: mauve") as exc:
        bos.os_validate(paths, True, "corral-test20", ["parameters"], {"colour": "mauve"},
                        False)
    assert exc.value.ecode == errors.ECODE_INVAL
    with pytest.raises(errors.RPCFail, match="not supported by the OS corral-test20: shape"):
        bos.os_validate(paths, True, "corral-test20", ["parameters"], {"shape": "round"},
                        False)
    with pytest.raises(errors.RPCFail, match="verify always fails"):
        bos.os_validate(paths, True, "corral-failing", ["parameters"], {}, False)
    # API 15: parameters are not the OS's business
    assert bos.os_validate(paths, True, "corral-test15", ["parameters"], {"x": "y"},
                           False) is True


def test_os_validate_noop(paths: Paths, ganeti_os_noop: Path) -> None:
    assert bos.os_validate(paths, True, "noop", ["parameters"], {}, False) is True
    with pytest.raises(errors.RPCFail, match="does not support variants"):
        bos.os_validate(paths, True, "noop+fancy", [], {}, False)
