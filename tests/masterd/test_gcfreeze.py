"""masterd's collector settings: frozen config objects, cyclic garbage still freed."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from corral.masterd import gcfreeze


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.me = self          # a reference cycle: only the collector frees it


def test_tune_freezes_and_raises_threshold() -> None:
    gcfreeze.tune()
    assert gc.get_threshold()[0] == gcfreeze.GEN0_THRESHOLD
    assert gc.get_freeze_count() > 0


def test_refreeze_frees_frozen_cyclic_garbage() -> None:
    obj = Node()
    ref = weakref.ref(obj)
    gc.freeze()                 # frozen while alive
    del obj
    gc.collect()
    assert ref() is not None    # a plain collection skips frozen objects
    gcfreeze.refreeze()
    assert ref() is None


def test_freezer_refreezes_after_quiet_commits() -> None:
    freezer = gcfreeze.ConfigFreezer(quiet=0.2, max_delay=5.0)
    freezer.start()
    try:
        time.sleep(0.3)
        assert freezer.freezes == 0             # nothing changed: nothing done
        for _ in range(3):
            freezer.on_change(None)
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while freezer.freezes == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert freezer.freezes == 1             # one refreeze for the burst
        assert gc.get_freeze_count() > 0
    finally:
        freezer.stop()
    assert freezer._thread is not None and not freezer._thread.is_alive()
