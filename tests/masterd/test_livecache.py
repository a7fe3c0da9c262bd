"""Coalesced live data: concurrent readers share one gathering."""

from __future__ import annotations

import threading
import time

import pytest

from corral.masterd.livecache import LiveDataCache


def test_concurrent_callers_share_one_gathering() -> None:
    cache = LiveDataCache(ttl=0.2)
    calls = []
    gate = threading.Event()

    def gather() -> str:
        calls.append(1)
        gate.wait(5)
        return "answer"

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", 1, gather)))
               for _ in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert results == ["answer"] * 10
    assert len(calls) == 1


def test_reuse_until_ttl_or_config_change() -> None:
    cache = LiveDataCache(ttl=0.2)
    counter = iter(range(100))
    assert cache.get("k", 1, lambda: next(counter)) == 0
    assert cache.get("k", 1, lambda: next(counter)) == 0      # fresh: reused
    assert cache.get("k", 2, lambda: next(counter)) == 1      # config changed
    assert cache.get("other", 2, lambda: next(counter)) == 2  # other key
    time.sleep(0.25)
    assert cache.get("k", 2, lambda: next(counter)) == 3      # expired


def test_errors_are_raised_to_all_and_not_cached() -> None:
    cache = LiveDataCache(ttl=10)

    def fail() -> None:
        raise RuntimeError("node down")

    with pytest.raises(RuntimeError):
        cache.get("k", 1, fail)
    assert cache.get("k", 1, lambda: "ok") == "ok"
