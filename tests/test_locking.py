"""Tests of corral.locking.LockManager: conflicts, fairness, timeouts, order."""

from __future__ import annotations

import random
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral import constants as C
from corral import errors
from corral.locking import ALL_SET, LockManager

INST = C.LEVEL_INSTANCE
NODE = C.LEVEL_NODE


def try_acquire(glm: LockManager, owner, level, names, shared) -> bool:
    """Acquire without waiting; True if granted."""
    try:
        glm.acquire(owner, level, names, shared, timeout=0)
    except errors.LockError:
        return False
    return True


class Acquirer(threading.Thread):
    """Acquire in a thread; ``done`` is set once granted (or failed)."""

    def __init__(self, glm, owner, level, names, shared, timeout=None, priority=0,
                 order: list | None = None):
        super().__init__(daemon=True)
        self.glm, self.owner, self.level = glm, owner, level
        self.names, self.shared, self.timeout, self.priority = names, shared, timeout, priority
        self.done = threading.Event()
        self.error: Exception | None = None
        self.order = order

    def run(self):
        try:
            self.glm.acquire(self.owner, self.level, self.names, self.shared,
                             timeout=self.timeout, priority=self.priority)
            if self.order is not None:
                self.order.append(self.owner)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted by the test
            self.error = exc
        self.done.set()


def wait_pending(glm: LockManager, count: int, timeout: float = 5.0) -> None:
    """Wait until ``count`` acquire calls are queued as pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = {o for e in glm.info() for _, owners in e["pending"] for o in owners}
        if len(pending) >= count:
            return
        time.sleep(0.005)
    raise AssertionError(f"fewer than {count} pending waiters: {glm.info()}")


# --------------------------------------------------------------- conflicts

@pytest.mark.parametrize("held_names,held_shared,req_names,req_shared,granted", [
    # (name, exclusive) vs holders of the name / of the level
    (["a"], True, ["a"], False, False),
    (["a"], False, ["a"], False, False),
    (["b"], False, ["a"], False, True),
    (ALL_SET, True, ["a"], False, False),
    (ALL_SET, False, ["a"], False, False),
    # (name, shared)
    (["a"], True, ["a"], True, True),
    (["a"], False, ["a"], True, False),
    (ALL_SET, True, ["a"], True, True),
    (ALL_SET, False, ["a"], True, False),
    # (ALL, exclusive) conflicts with any holder
    (["z"], True, ALL_SET, False, False),
    (["z"], False, ALL_SET, False, False),
    (ALL_SET, True, ALL_SET, False, False),
    # (ALL, shared) conflicts only with exclusive holders
    (["z"], True, ALL_SET, True, True),
    (["z"], False, ALL_SET, True, False),
    (ALL_SET, True, ALL_SET, True, True),
    (ALL_SET, False, ALL_SET, True, False),
])
def test_conflict_rules(held_names, held_shared, req_names, req_shared, granted):
    glm = LockManager()
    glm.acquire("holder", INST, held_names, held_shared)
    assert try_acquire(glm, "req", INST, req_names, req_shared) is granted
    if granted:
        if req_names is ALL_SET:
            assert glm.is_owned_all("req", INST)
        else:
            assert glm.list_owned("req", INST) == set(req_names)
    else:
        assert glm.list_owned("req", INST) == set()
        assert not glm.is_owned_all("req", INST)


def test_levels_are_independent():
    glm = LockManager()
    glm.acquire("a", INST, ["x"], False)
    glm.acquire("b", NODE, ["x"], False)  # same name, other level
    glm.acquire("c", C.LEVEL_NODEGROUP, ALL_SET, False)
    assert glm.list_owned("b", NODE) == {"x"}


def test_all_or_nothing_within_level():
    glm = LockManager()
    glm.acquire("holder", INST, ["b"], False)
    assert not try_acquire(glm, "req", INST, ["a", "b", "c"], False)
    # nothing of the failed request is held: "a" and "c" are free
    assert try_acquire(glm, "other", INST, ["a", "c"], False)
    assert glm.list_owned("req", INST) == set()


def test_shared_holders_run_concurrently():
    glm = LockManager()
    barrier = threading.Barrier(5, timeout=5)
    errors_seen = []

    def reader(i):
        try:
            glm.acquire(f"r{i}", INST, ["x"], True, timeout=5)
            barrier.wait()  # all five hold the shared lock at once
            glm.release(f"r{i}")
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors_seen.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors_seen == []
    assert glm.info() == []


def test_release_wakes_waiter():
    glm = LockManager()
    glm.acquire("a", INST, ["x"], False)
    waiter = Acquirer(glm, "b", INST, ["x"], False)
    waiter.start()
    wait_pending(glm, 1)
    assert not waiter.done.is_set()
    glm.release("a", INST, ["x"])
    assert waiter.done.wait(5)
    assert waiter.error is None
    assert glm.list_owned("b", INST) == {"x"}


# ---------------------------------------------------------------- timeouts

def test_timeout_raises_lock_error_and_leaves_nothing():
    glm = LockManager()
    glm.acquire("holder", NODE, ["n2"], False)
    start = time.monotonic()
    with pytest.raises(errors.LockError) as exc_info:
        glm.acquire("req", NODE, ["n1", "n2", "n3"], False, timeout=0.2)
    assert time.monotonic() - start >= 0.19
    assert exc_info.value.ecode == errors.ECODE_TEMP_NORES
    assert glm.list_owned("req", NODE) == set()
    assert all(e["pending"] == [] for e in glm.info())
    assert try_acquire(glm, "other", NODE, ["n1", "n3"], False)


def test_timed_out_waiter_unblocks_those_behind_it():
    glm = LockManager()
    glm.acquire("h", INST, ["x"], True)
    # exclusive waiter queues, then a shared waiter behind it must wait (fairness)
    excl = Acquirer(glm, "excl", INST, ["x"], False, timeout=0.3)
    excl.start()
    wait_pending(glm, 1)
    reader = Acquirer(glm, "reader", INST, ["x"], True)
    reader.start()
    wait_pending(glm, 2)
    assert not reader.done.is_set()
    # once the exclusive waiter gives up, the reader is granted at once
    assert excl.done.wait(5) and isinstance(excl.error, errors.LockError)
    assert reader.done.wait(5) and reader.error is None
    assert glm.list_owned("reader", INST) == {"x"}


def test_timeout_none_waits_until_released():
    glm = LockManager()
    glm.acquire("h", INST, ALL_SET, False)
    waiter = Acquirer(glm, "w", INST, ["x"], True, timeout=None)
    waiter.start()
    assert not waiter.done.wait(0.3)
    glm.release("h")
    assert waiter.done.wait(5) and waiter.error is None


# ------------------------------------------------------- fairness, priority

def test_exclusive_waiter_not_starved_by_readers():
    glm = LockManager()
    glm.acquire("r1", INST, ["x"], True)
    writer = Acquirer(glm, "w", INST, ["x"], False)
    writer.start()
    wait_pending(glm, 1)
    # a new reader may not overtake the queued writer
    assert not try_acquire(glm, "r2", INST, ["x"], True)
    glm.release("r1")
    assert writer.done.wait(5) and writer.error is None


def test_non_conflicting_waiter_overtakes():
    glm = LockManager()
    glm.acquire("h", INST, ["x"], False)
    blocked = Acquirer(glm, "b", INST, ["x"], False)
    blocked.start()
    wait_pending(glm, 1)
    assert try_acquire(glm, "free", INST, ["y"], False)  # unrelated lock is granted


def test_priority_orders_waiters():
    glm = LockManager()
    glm.acquire("h", INST, ["x"], False)
    order: list = []
    low = Acquirer(glm, "low", INST, ["x"], False, priority=10, order=order)
    low.start()
    wait_pending(glm, 1)
    normal = Acquirer(glm, "normal", INST, ["x"], False, priority=0, order=order)
    normal.start()
    wait_pending(glm, 2)
    high = Acquirer(glm, "high", INST, ["x"], False, priority=-10, order=order)
    high.start()
    wait_pending(glm, 3)
    pending = next(e["pending"] for e in glm.info() if e["name"] == "instance/x")
    assert pending == [["exclusive", ["high", "normal", "low"]]]
    glm.release("h")
    for thread in (high, normal, low):
        assert thread.done.wait(5)  # granted in priority order, one at a time
        glm.release(thread.owner)
    assert order == ["high", "normal", "low"]


def test_same_priority_is_fifo():
    glm = LockManager()
    glm.acquire("h", INST, ALL_SET, False)
    order: list = []
    threads = []
    for i in range(5):
        t = Acquirer(glm, f"j{i}", INST, [f"i{i}", "common"], False, order=order)
        t.start()
        wait_pending(glm, i + 1)
        threads.append(t)
    glm.release("h")
    for i in range(5):
        assert threads[i].done.wait(5)
        glm.release(f"j{i}")
    assert order == [f"j{i}" for i in range(5)]


# --------------------------------------------------- order and bookkeeping

def test_level_order_violation():
    glm = LockManager()
    glm.acquire("j", NODE, ["n1"], False)
    with pytest.raises(errors.ProgrammerError):
        glm.acquire("j", INST, ["i1"], False)
    with pytest.raises(errors.ProgrammerError):
        glm.acquire("j", C.LEVEL_CLUSTER, [C.BGL], True)
    # later levels and more names at the same level are fine
    glm.acquire("j", NODE, ["n2"], False)
    glm.acquire("j", C.LEVEL_NETWORK, ALL_SET, True)
    assert glm.list_owned("j", NODE) == {"n1", "n2"}


def test_reacquire_held_name_is_programmer_error():
    glm = LockManager()
    glm.acquire("j", INST, ["a"], True)
    with pytest.raises(errors.ProgrammerError):
        glm.acquire("j", INST, ["a", "b"], False)
    with pytest.raises(errors.ProgrammerError):
        glm.acquire("j", INST, ALL_SET, True)
    glm.acquire("k", NODE, ALL_SET, True)
    with pytest.raises(errors.ProgrammerError):
        glm.acquire("k", NODE, ["n1"], True)


def test_invalid_requests():
    glm = LockManager()
    with pytest.raises(errors.ProgrammerError):
        glm.acquire("j", "no-such-level", ["a"], False)
    with pytest.raises(errors.ProgrammerError):
        glm.acquire("j", INST, "inst1", False)  # a string, not a list
    with pytest.raises(errors.ProgrammerError):
        glm.release("j", INST, ["a"])  # not held
    with pytest.raises(errors.ProgrammerError):
        glm.release("j", None, ["a"])


def test_release_partial_and_all():
    glm = LockManager()
    glm.acquire("j", C.LEVEL_CLUSTER, [C.BGL], True)
    glm.acquire("j", INST, ["a", "b"], False)
    glm.acquire("j", NODE, ["n1"], False)
    glm.release("j", INST, ["a"])
    assert glm.list_owned("j", INST) == {"b"}
    assert try_acquire(glm, "k", INST, ["a"], False)
    glm.release("j", NODE)
    assert glm.list_owned("j", NODE) == set()
    # after releasing the node level, instance level may be used again
    glm.acquire("j", INST, ["c"], False)
    glm.release("j")
    assert glm.list_owned("j", INST) == set()
    assert [e["name"] for e in glm.info()] == ["instance/a"]


def test_downgrade():
    glm = LockManager()
    glm.acquire("j", INST, ["a", "b"], False)
    glm.acquire("j", NODE, ALL_SET, False)
    reader = Acquirer(glm, "r", INST, ["a"], True)
    reader.start()
    wait_pending(glm, 1)
    glm.downgrade("j", INST, ["a"])
    assert reader.done.wait(5) and reader.error is None
    assert glm.is_owned("j", INST, "a", shared=True)
    assert glm.is_owned("j", INST, "b", shared=False)
    assert not try_acquire(glm, "r2", INST, ["b"], True)
    glm.downgrade("j", NODE)
    assert try_acquire(glm, "r3", NODE, ["n1"], True)
    assert not try_acquire(glm, "w", NODE, ["n2"], False)
    with pytest.raises(errors.ProgrammerError):
        glm.downgrade("j", INST, ["zzz"])


def test_info_format():
    glm = LockManager()
    glm.acquire("job1", C.LEVEL_CLUSTER, [C.BGL], True)
    glm.acquire("job2", C.LEVEL_CLUSTER, [C.BGL], True)
    glm.acquire("job1", INST, ["inst1"], False)
    glm.acquire("job2", NODE, ALL_SET, True)
    waiter = Acquirer(glm, "job3", INST, ["inst1"], True)
    waiter.start()
    wait_pending(glm, 1)
    info = glm.info()
    assert info == [
        {"name": "cluster/BGL", "mode": "shared", "owners": ["job1", "job2"], "pending": []},
        {"name": "instance/inst1", "mode": "exclusive", "owners": ["job1"],
         "pending": [["shared", ["job3"]]]},
        {"name": "node/[lockset]", "mode": "shared", "owners": ["job2"], "pending": []},
    ]
    glm.release("job1")
    assert waiter.done.wait(5)


# --------------------------------------------------------- property test

LOCK_NAMES = {INST: ["i0", "i1", "i2", "i3"], NODE: ["n0", "n1", "n2"]}

lock_request = st.one_of(
    st.none(),  # whole level
    st.lists(st.sampled_from(["i0", "i1", "i2", "i3"]), min_size=1, max_size=3, unique=True),
)


@st.composite
def job_plans(draw):
    """A job: [(level, names|None, shared)] in level order."""
    plan = []
    if draw(st.booleans()):
        # mostly shared, as for most opcodes
        plan.append((C.LEVEL_CLUSTER, [C.BGL], draw(st.sampled_from([True, True, True, False]))))
    inst = draw(lock_request)
    plan.append((INST, inst, draw(st.booleans())))
    if draw(st.booleans()):
        nodes = draw(st.one_of(st.none(), st.lists(st.sampled_from(LOCK_NAMES[NODE]),
                                                   min_size=1, max_size=3, unique=True)))
        plan.append((NODE, nodes, draw(st.booleans())))
    return plan, draw(st.integers(min_value=-1, max_value=1)), draw(st.integers(1, 3))


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(jobs=st.lists(job_plans(), min_size=2, max_size=10), seed=st.integers(0, 2**16))
def test_concurrent_jobs_no_deadlock_no_lost_update(jobs, seed):
    glm = LockManager()
    counters = {name: 0 for name in LOCK_NAMES[INST]}
    node_counters = {name: 0 for name in LOCK_NAMES[NODE]}
    expected = dict.fromkeys(counters, 0)
    expected_nodes = dict.fromkeys(node_counters, 0)
    for plan, _prio, repeat in jobs:
        for level, names, shared in plan:
            if shared or level == C.LEVEL_CLUSTER:
                continue
            target = expected if level == INST else expected_nodes
            for name in (LOCK_NAMES[level] if names is None else names):
                target[name] += repeat
    failures: list[BaseException] = []
    rng = random.Random(seed)
    delays = [rng.random() * 0.002 for _ in jobs]

    def bump(table, name, delay):
        value = table[name]
        time.sleep(delay)  # provoke races between read and write
        table[name] = value + 1

    def run(idx, plan, prio, repeat):
        owner = f"job{idx}"
        try:
            for _ in range(repeat):
                for level, names, shared in plan:
                    glm.acquire(owner, level, names, shared, priority=prio)
                for level, names, shared in plan:
                    if level == C.LEVEL_CLUSTER:
                        continue
                    if shared:
                        # shared holders only read
                        table = counters if level == INST else node_counters
                        for name in (LOCK_NAMES[level] if names is None else names):
                            _ = table[name]
                        continue
                    table = counters if level == INST else node_counters
                    for name in (LOCK_NAMES[level] if names is None else names):
                        bump(table, name, delays[idx])
                glm.release(owner)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i, plan, prio, rep), daemon=True)
               for i, (plan, prio, rep) in enumerate(jobs)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"deadlock: {glm.info()}"
    assert failures == []
    assert counters == expected
    assert node_counters == expected_nodes
    assert glm.info() == []
