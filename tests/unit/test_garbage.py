"""The cyclic garbage collector while a backfill runs: off, frozen heap, collected on a timer."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

from cdcsync.garbage import paced_collection


class Node:
    """Something that can sit in a reference cycle and be watched with a weak reference."""

    other: Node | None = None


def cycle() -> weakref.ref[Node]:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


@pytest.fixture
def collector_state() -> Iterator[None]:
    """Whatever a test does, the collector is as it was afterwards (other tests depend on it)."""
    enabled, thresholds = gc.isenabled(), gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    if enabled:
        gc.enable()


@pytest.mark.usefixtures("collector_state")
def test_paced_collection_inside_turns_automatic_collection_off_and_freezes_the_heap() -> None:
    # GIVEN the collector on, as every process starts
    gc.enable()
    # WHEN a backfill runs inside paced_collection
    with paced_collection(seconds=60):
        # THEN automatic collection is off and what existed before is frozen (never walked again)
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0
    # AND afterwards the collector is back as it was: on, nothing frozen, thresholds unchanged
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


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
            seen.append(gc.isenabled())  # still inside: the second leaving must not turn it on

    thread = threading.Thread(target=other)
    thread.start()
    first_in.wait(5)
    with paced_collection(seconds=60):
        pass
    second_left.set()
    thread.join(5)
    # THEN the collector stayed off until the last one left, and is on afterwards
    assert seen == [False]
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
