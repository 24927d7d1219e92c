"""The cyclic garbage collector while a backfill runs: off, frozen heap, collected on a timer."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

from cdcsync import garbage
from cdcsync.garbage import NEVER, YOUNG, paced_collection


class Node:
    """Something that can sit in a reference cycle and be watched with a weak reference."""

    other: Node | None = None


def cycle() -> weakref.ref[Node]:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


@pytest.fixture
def collector_state() -> Iterator[None]:
    """Whatever a test does, the collector is as it was afterwards (other tests depend on it); each
    test starts with nothing frozen, as a process starts (a Lambda test of this run may have frozen)."""
    enabled, thresholds = gc.isenabled(), gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    if enabled:
        gc.enable()


@pytest.mark.usefixtures("collector_state")
def test_paced_collection_inside_collects_only_the_young_generation_and_freezes_the_heap() -> None:
    # GIVEN the collector on and nothing frozen (the fixture), as every process starts
    gc.enable()
    thresholds = gc.get_threshold()
    # WHEN a backfill runs inside paced_collection
    with paced_collection(seconds=60):
        # THEN only the young generation is collected automatically (a young cycle still goes at
        # once), the older ones never (the timer does), and what existed before is frozen
        assert gc.isenabled()
        assert gc.get_threshold() == (YOUNG, NEVER, NEVER)
        assert gc.get_freeze_count() > 0
    # AND afterwards the collector is back as it was: on, nothing frozen, thresholds unchanged
    assert gc.isenabled()
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector_state")
def test_paced_collection_whose_timer_cannot_start_leaves_the_collector_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a process that cannot start one more thread
    gc.enable()
    thresholds = gc.get_threshold()

    def refuse(_thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    # WHEN paced_collection is entered, THEN the error goes up
    with pytest.raises(RuntimeError, match="can't start new thread"), paced_collection(seconds=60):
        pass
    # AND the collector is as it was: on, its thresholds, nothing frozen; the next entry starts anew
    assert (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()) == (True, thresholds, 0)
    assert garbage._users == 0


@pytest.mark.usefixtures("collector_state")
def test_paced_collection_leaves_a_freeze_made_before_it_frozen() -> None:
    # GIVEN a heap frozen before (the Lambda handler freezes its imports)
    gc.freeze()
    assert gc.get_freeze_count() > 0
    # WHEN paced_collection is entered and left
    with paced_collection(seconds=60):
        pass
    # THEN it is still frozen (not unfrozen on leaving; frozen objects may still die by reference counting)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("collector_state")
def test_paced_collection_frees_cycles_within_its_period() -> None:
    # GIVEN a paced collection every 0.05 s
    with paced_collection(seconds=0.05):
        # WHEN a reference cycle becomes garbage (automatic collection would never see it: it is off)
        watched = cycle()
        # THEN the timer's collection frees it within a few periods
        deadline = time.monotonic() + 5
        while watched() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watched() is None


@pytest.mark.usefixtures("collector_state")
def test_paced_collection_left_frees_the_cycles_made_inside() -> None:
    # GIVEN a period far longer than the backfill
    with paced_collection(seconds=3600):
        watched = cycle()
    # WHEN it is left, THEN its cycles are gone (the last collection), as automatic collection resumes
    assert watched() is None


@pytest.mark.usefixtures("collector_state")
def test_paced_collection_nested_or_concurrent_restores_only_when_the_last_one_leaves() -> None:
    # GIVEN two backfills of one process (threads) whose paced collections overlap
    gc.enable()
    first_in, second_left = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with paced_collection(seconds=60):
            first_in.set()
            second_left.wait(5)
            seen.append(gc.get_threshold()[1] == NEVER)  # still inside: the second leaving must not restore

    thread = threading.Thread(target=other)
    thread.start()
    first_in.wait(5)
    with paced_collection(seconds=60):
        pass
    second_left.set()
    thread.join(5)
    # THEN the collector stayed paced until the last one left, and is restored afterwards
    assert seen == [True]
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector_state")
def test_paced_collection_of_a_process_without_automatic_collection_leaves_it_off() -> None:
    # GIVEN a process that had turned automatic collection off itself
    gc.disable()
    with paced_collection(seconds=60):
        pass
    # THEN it stays off: paced_collection restores, it does not decide
    assert not gc.isenabled()
