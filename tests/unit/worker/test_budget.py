"""The process's record budget: records held at once across shard loops never exceed it.

Real shard loops and readers in real threads over fake shards that always have a full page to give,
and a fake pipeline that holds each page for a moment; no timings are asserted.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import replace
from typing import Any

import pytest

from cdcsync.checkpoint import TRIM_HORIZON, Lease
from cdcsync.metrics import NullMetrics
from cdcsync.pipeline import BatchResult
from cdcsync.source.streams import ShardBatch, ShardReader
from cdcsync.worker.budget import RecordBudget
from cdcsync.worker.shard_loop import ShardLoop
from tests.support.records import stream_record

ARN = "arn:aws:dynamodb:us-east-1:1:table/Users/stream/2026"


class Holdings:
    """Records handed out by GetRecords and not yet written, across every shard: the largest seen
    until ``frozen`` (once the loops are told to stop, pages are given up unwritten, to be read again)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.limits: list[int] = []
        self.pages: dict[str, int] = {}  # shard -> pages read
        self.frozen = False

    def add(self, shard: str, count: int, limit: int) -> None:
        with self._lock:
            if self.frozen:
                return
            self.now += count
            self.most = max(self.most, self.now)
            self.limits.append(limit)
            self.pages[shard] = self.pages.get(shard, 0) + 1

    def remove(self, count: int) -> None:
        with self._lock:
            self.now -= count


class FullShard:
    """A shard with a backlog: every GetRecords returns ``Limit`` records."""

    def __init__(self, shard: str, holdings: Holdings) -> None:
        self.shard = shard
        self.holdings = holdings
        self.next = 1

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "it"}

    def get_records(self, **request: Any) -> dict[str, Any]:
        limit = request["Limit"]
        records = [
            stream_record("INSERT", {"UserId": n}, {"UserId": n}, sequence=f"{n:021d}")
            for n in range(self.next, self.next + limit)
        ]
        self.next += limit
        self.holdings.add(self.shard, len(records), limit)
        return {"Records": records, "NextShardIterator": "it"}


class SlowPipeline:
    """Holds each page a moment, as a bulk write does, then lets it go."""

    def __init__(self, holdings: Holdings) -> None:
        self.holdings = holdings

    def process(self, records: list[dict[str, Any]], **_: Any) -> BatchResult:
        time.sleep(0.005)
        self.holdings.remove(len(records))
        return BatchResult(size=len(records))


class Store:
    def write_window(self, lease: Lease) -> Any:
        from cdcsync.checkpoint import WriteWindow  # noqa: PLC0415

        return WriteWindow(0.0, float("inf"))

    def checkpoint(self, lease: Lease, sequence_number: str, *, finished: bool = False) -> Lease:
        return replace(lease, checkpoint=sequence_number, finished=finished)


@pytest.mark.parametrize(("shards", "capacity"), [(32, 3000), (8, 8000), (64, 500)])
def test_budget_many_full_shards_never_hold_more_than_the_budget(shards: int, capacity: int) -> None:
    # GIVEN many shard loops sharing one budget, each shard with a backlog of full pages
    holdings = Holdings()
    budget = RecordBudget(capacity)
    stopping = threading.Event()
    pipeline = SlowPipeline(holdings)
    loops = []
    for n in range(shards):
        shard = f"shardId-{n:04d}"
        lease = Lease("Users", ARN, shard, (), "me", 1, TRIM_HORIZON, finished=False)
        reader = ShardReader(
            FullShard(shard, holdings),
            ARN,
            shard,
            TRIM_HORIZON,
            table="Users",
            metrics=NullMetrics(),
            sleep=stopping.wait,
        )
        loop = ShardLoop(lease, reader, pipeline, Store(), stopping, budget=budget)  # type: ignore[arg-type]
        loops.append(loop)
    # WHEN they all run until every shard has read a few pages
    for loop in loops:
        loop.start()
    deadline = time.monotonic() + 60
    while min((holdings.pages.get(loop.shard_id, 0) for loop in loops), default=0) < 3:
        assert time.monotonic() < deadline, f"pages read per shard: {holdings.pages}"
        time.sleep(0.05)
    holdings.frozen = True
    stopping.set()
    for loop in loops:
        assert loop.thread is not None
        loop.thread.join(timeout=10)
    # THEN records read and not yet written never exceeded the budget, no call asked for more than
    # a share, every shard was served, and every share was given back
    assert holdings.most <= capacity
    assert budget.most_in_flight <= capacity
    assert max(holdings.limits) == min(1000, capacity)
    assert min(holdings.limits) >= min(100, capacity)
    assert budget.in_flight == 0
    assert not any(loop.alive for loop in loops)


def test_budget_serves_waiting_threads_first_come_first_served() -> None:
    # GIVEN a budget that is all taken, and two threads waiting for shares in turn
    budget = RecordBudget(1000)
    stopping = threading.Event()
    assert budget.take(1000, stopping) == 1000
    served: list[str] = []

    def wait_for(name: str, want: int) -> None:
        served.append(f"{name}:{budget.take(want, stopping)}")

    first = threading.Thread(target=wait_for, args=("first", 1000))
    first.start()
    while not budget._waiting:
        time.sleep(0.001)
    second = threading.Thread(target=wait_for, args=("second", 100))
    second.start()
    while len(budget._waiting) < 2:
        time.sleep(0.001)
    # WHEN 500 come back: enough for the second's 100, but the first came earlier
    budget.give_back(500)
    time.sleep(0.2)
    # THEN nobody is served yet... the first takes 500 (its least share is 100), then the second waits
    first.join(timeout=5)
    assert served == ["first:500"]
    budget.give_back(100)
    second.join(timeout=5)
    assert served == ["first:500", "second:100"]


def test_budget_stop_while_waiting_takes_nothing() -> None:
    # GIVEN a budget that is all taken
    budget = RecordBudget(200)
    stopping = threading.Event()
    budget.take(200, stopping)
    # WHEN a thread waiting for a share is told to stop THEN it gets nothing and the queue is empty
    stopping.set()
    assert budget.take(100, stopping) == 0
    assert budget.in_flight == 200
    assert not budget._waiting


class _Page(list[dict[str, Any]]):
    """A page's records that a weak reference can watch."""


class WatchingReader:
    """Full pages forever; before each read it notes whether the previous page is still held."""

    def __init__(self) -> None:
        self.previous: weakref.ref[_Page] | None = None
        self.held_while_waiting: list[bool] = []
        self.next = 1

    def pace(self) -> None:
        if self.previous is not None:
            self.held_while_waiting.append(self.previous() is not None)

    def read(self, limit: int | None = None) -> ShardBatch:
        count = limit or 1000
        page = _Page(
            stream_record("INSERT", {"UserId": n}, {"UserId": n}, sequence=f"{n:021d}")
            for n in range(self.next, self.next + count)
        )
        self.next += count
        self.previous = weakref.ref(page)
        return ShardBatch(page, "it", 0.0)

    def rewind(self, sequence_number: str | None) -> None:
        pass


class CountingPipeline:
    def __init__(self, stopping: threading.Event, pages: int) -> None:
        self.stopping = stopping
        self.pages = pages

    def process(self, records: list[dict[str, Any]], **_: Any) -> BatchResult:
        self.pages -= 1
        if self.pages == 0:
            self.stopping.set()
        return BatchResult(size=len(records))


def test_budget_loop_waiting_for_its_next_read_holds_no_page() -> None:
    # GIVEN a shard loop over a shard with a backlog
    stopping = threading.Event()
    reader = WatchingReader()
    lease = Lease("Users", ARN, "shardId-1", (), "me", 1, TRIM_HORIZON, finished=False)
    loop = ShardLoop(lease, reader, CountingPipeline(stopping, 4), Store(), stopping)  # type: ignore[arg-type]
    # WHEN it reads and writes four pages
    loop.run()
    # THEN each page was let go before the loop waited for its next read (the budget no longer counts
    # it, so nothing may hold it: 64 shard threads would otherwise keep 64 pages between reads)
    assert reader.held_while_waiting == [False, False, False]
