"""Status file and progress figures of a transfer."""

from __future__ import annotations

import time
from pathlib import Path

from corral.impexp import MIB, STATUS_FILE
from corral.impexp.status import (
    RECENT_LINES,
    Meter,
    StatusWriter,
    TransferStatus,
    read_status,
    write_status,
)


def test_write_read_roundtrip(tmp_path: Path) -> None:
    st = TransferStatus(mode="import", component="disk0", listen_port=1234, connected=True)
    write_status(tmp_path, st)
    back = read_status(tmp_path)
    assert back is not None and back.listen_port == 1234 and back.connected
    assert back.mtime > 0
    assert [p.name for p in tmp_path.iterdir()] == [STATUS_FILE]     # no temp file left


def test_read_missing_or_garbage(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None
    (tmp_path / STATUS_FILE).write_text("{not json")
    assert read_status(tmp_path) is None
    (tmp_path / STATUS_FILE).write_text('{"listen_port": "x"}')
    assert read_status(tmp_path) is None


def test_meter_figures() -> None:
    meter = Meter(expected_bytes=100 * MIB)
    first = meter.figures()
    assert first["progress_bytes"] == 0 and first["progress_percent"] == 0
    assert first["progress_throughput"] is None and first["progress_eta"] is None
    meter.add(10 * MIB)
    time.sleep(0.2)
    meter.add(10 * MIB)
    fig = meter.figures()
    assert fig["progress_mbytes"] == 20 and fig["progress_percent"] == 20
    assert fig["progress_throughput"] > 20          # 20 MiB in ~0.2 s
    assert 0 < fig["progress_eta"] < 10
    meter.add(90 * MIB)                              # more than expected
    assert meter.figures()["progress_percent"] == 100
    assert meter.figures()["progress_eta"] == 0


def test_meter_without_expected_size() -> None:
    meter = Meter()
    meter.add(5 * MIB)
    time.sleep(0.1)
    fig = meter.figures()
    assert fig["progress_percent"] is None and fig["progress_eta"] is None
    assert fig["progress_mbytes"] == 5


def test_status_writer(tmp_path: Path) -> None:
    meter = Meter(10 * MIB)
    writer = StatusWriter(tmp_path, "export", "disk1", meter, interval=0.05)
    writer.update(connected=True)
    for i in range(RECENT_LINES + 5):
        writer.add_output(f"line {i}\n\n")
    writer.start_reporter()
    meter.add(5 * MIB)
    time.sleep(0.3)
    st = read_status(tmp_path)
    assert st is not None and st.progress_percent == 50 and st.connected
    assert st.recent_output[0] == "line 5" and len(st.recent_output) == RECENT_LINES
    writer.finish(1, "broken")
    writer.update(connected=False)                   # ignored once done
    writer.finish(0, None)                           # ignored too
    st = read_status(tmp_path)
    assert st is not None and st.done and st.exit_status == 1
    assert st.error_message == "broken" and st.connected
