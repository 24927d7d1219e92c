"""The shard loop's write rounds against the lease: capped at its validity, never started on a
lease that may have lapsed, delayed for a new owner, never started once told to stop.

Fakes behind our protocols (lease store, reader, pipeline) and one fake monotonic clock that the
loop's waits advance, so lease periods pass without sleeping.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any

import pytest

from cdcsync.checkpoint import TRIM_HORIZON, Lease, LeaseLostError, WriteWindow
from cdcsync.pipeline import BatchResult
from cdcsync.source.streams import ShardBatch
from cdcsync.worker.shard_loop import BATCH_DEADLINE_SECONDS, ShardLoop
from tests.support.records import stream_record

ARN = "arn:aws:dynamodb:us-east-1:1:table/Users/stream/2026"
LEASE = Lease("Users", ARN, "shardId-1", (), "worker-a", 1, TRIM_HORIZON, finished=False)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ClockEvent(threading.Event):
    """A stop event whose ``wait`` lets the fake clock's time pass instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        self.clock.now += timeout or 0.0
        return self.is_set()


class FakeStore:
    """Hands out the scripted write windows (the last one repeats) and records checkpoints."""

    def __init__(self, clock: FakeClock, windows: list[WriteWindow | LeaseLostError]) -> None:
        self.clock = clock
        self.windows = windows
        self.asked_at: list[float] = []
        self.checkpoints: list[str] = []

    def write_window(self, lease: Lease) -> WriteWindow:
        self.asked_at.append(self.clock.now)
        window = self.windows.pop(0) if len(self.windows) > 1 else self.windows[0]
        if isinstance(window, LeaseLostError):
            raise window
        return window

    def checkpoint(self, lease: Lease, sequence_number: str, *, finished: bool = False) -> Lease:
        self.checkpoints.append(sequence_number)
        return replace(lease, checkpoint=sequence_number, finished=finished)


class FakeReader:
    """One page of two records, then the shard's end; ``on_read`` runs as the page is handed out."""

    def __init__(self) -> None:
        self.pages = [
            ShardBatch(
                [
                    stream_record("INSERT", {"UserId": 1}, {"UserId": 1}, sequence="101"),
                    stream_record("INSERT", {"UserId": 2}, {"UserId": 2}, sequence="102"),
                ],
                "next",
                0.0,
            ),
            ShardBatch([], None, None),
        ]
        self.on_read: Any = None
        self.rewound_to: list[str | None] = []

    def pace(self) -> None:
        pass

    def read(self, limit: int | None = None) -> ShardBatch:
        if self.on_read is not None:
            self.on_read()
        return self.pages.pop(0) if self.pages else ShardBatch([], None, None)

    def rewind(self, sequence_number: str | None) -> None:
        self.rewound_to.append(sequence_number)


class FakePipeline:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, float | None]] = []  # (clock at the call, deadline)

    def process(self, records: list[dict[str, Any]], **kwargs: Any) -> BatchResult:
        self.calls.append((self.clock.now, kwargs.get("deadline")))
        return BatchResult(size=len(records))


def _loop(
    windows: list[WriteWindow | LeaseLostError],
) -> tuple[ShardLoop, FakeStore, FakePipeline, FakeReader]:
    clock = FakeClock()
    store, pipeline, reader = FakeStore(clock, windows), FakePipeline(clock), FakeReader()
    loop = ShardLoop(
        LEASE,
        reader,  # type: ignore[arg-type]
        pipeline,  # type: ignore[arg-type]
        store,
        ClockEvent(clock),
        clock=clock,
    )
    return loop, store, pipeline, reader


@pytest.mark.parametrize(
    ("closes_in", "deadline_in"),
    [
        (100.0, BATCH_DEADLINE_SECONDS),  # a fresh lease: the batch deadline is the shorter
        (7.5, 7.5),  # the lease could lapse first: the round ends before it
    ],
)
def test_shard_loop_write_round_ends_before_lease_could_lapse(closes_in: float, deadline_in: float) -> None:
    # GIVEN a lease whose validity (minus the margin) ends in `closes_in` seconds
    loop, store, pipeline, _ = _loop([WriteWindow(opens_in=0.0, closes_in=closes_in)])
    # WHEN the loop writes a page
    loop.run()
    # THEN the round's deadline is the earlier of the batch deadline and the lease's end
    ((called_at, deadline),) = pipeline.calls
    assert deadline == called_at + deadline_in
    assert store.checkpoints == ["102", "102"]  # the page, then the shard's end (finished)


def test_shard_loop_new_owner_waits_out_previous_owners_write(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a lease just taken from an owner that may still be writing for 3.3 s
    loop, store, pipeline, _ = _loop([WriteWindow(3.3, 27.0), WriteWindow(0.0, 23.7)])
    started = store.clock.now
    # WHEN the loop has a page to write
    with caplog.at_level(logging.INFO, logger="cdcsync.worker.shard_loop"):
        loop.run()
    # THEN it waits that long before its first write, and caps the round at the window then
    ((called_at, deadline),) = pipeline.calls
    assert called_at == started + 3.3
    assert deadline == called_at + BATCH_DEADLINE_SECONDS
    assert store.asked_at == [started, started + 3.3]
    assert (
        "shard shardId-1: waiting 3.3 s before the first write, until the previous owner's last "
        "write could have ended"
    ) in caplog.messages


def test_shard_loop_lapsed_lease_stops_before_writing(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a lease that may lapse before a write could end
    lapsed = LeaseLostError("lost the lease of shard shardId-1 of table Users (...): it may lapse")
    loop, store, pipeline, _ = _loop([lapsed])
    # WHEN the loop has a page to write
    with caplog.at_level(logging.INFO, logger="cdcsync.worker.shard_loop"):
        loop.run()
    # THEN it writes nothing, moves no checkpoint, and stops saying why
    assert pipeline.calls == []
    assert store.checkpoints == []
    assert loop.done
    assert f"stopped reading shard shardId-1: {lapsed}" in caplog.messages


def test_shard_loop_told_to_stop_before_writing_writes_nothing() -> None:
    # GIVEN a loop told to stop (shutdown, or its lease moved) while a page was being read
    loop, store, pipeline, reader = _loop([WriteWindow(0.0, 27.0)])
    reader.on_read = loop.stopping.set
    # WHEN the page arrives
    loop.run()
    # THEN no write round starts: the lease may be released or taken the moment the loop returns
    assert pipeline.calls == []
    assert store.checkpoints == []
