"""Claims on the units of a shared backfill run: join, claim, expiry, resume, finish (both local stores).

Every process is a ``UnitClaims`` with its own worker id and its own fake monotonic clock, sharing
one store (an in-memory fake of the record API, and the real ``file://`` store), so lease periods
pass without sleeping.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from cdcsync.backfill.status import describe_status, run_status
from cdcsync.backfill.units import UnitClaims, unit_key
from cdcsync.checkpoint import LeaseLostError, LeaseStore, Record, RecordChangedError
from cdcsync.checkpoint.file import FileLeaseStore
from cdcsync.errors import ConfigError

LEASE = 30.0
RUN = {"table": "Users", "kind": "scan", "units": 3, "version_ms": 1000, "started_ms": 0, "item_count": 600}
KEY = {"Pk": {"S": "user-7"}}


class MemoryRecords:
    """The record half of ``LeaseStore`` in memory (what the claims use)."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.lock = threading.Lock()

    def describe(self) -> str:
        return "memory://"

    def put_record(self, key: str, value: Mapping[str, Any], *, revision: int | None) -> Record:
        with self.lock:
            stored = self.records.get(key)
            if (None if stored is None else stored.revision) != revision:
                raise RecordChangedError(key, stored)
            written = Record(key, (revision or 0) + 1, dict(value))
            self.records[key] = written
            return written

    def load_records(self, prefix: str) -> list[Record]:
        with self.lock:
            return [record for key, record in sorted(self.records.items()) if key.startswith(prefix)]


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LeaseStore:
    if request.param == "memory":
        return MemoryRecords()  # type: ignore[return-value]
    return FileLeaseStore(tmp_path / "checkpoints.json", worker_id="unused")


def process(store: LeaseStore, worker: str, clock: Clock, run: dict[str, Any] | None = None) -> UnitClaims:
    claims = UnitClaims(
        store, "r1", worker_id=worker, lease_seconds=LEASE, clock=clock, wall_ms=lambda: 5_000,
        rng=random.Random(1),
    )  # fmt: skip
    claims.join(run or RUN)
    return claims


def test_claims_join_first_process_fixes_the_run_and_later_joiners_use_it(store: LeaseStore) -> None:
    # GIVEN a run created with 3 units at version 1000
    first = UnitClaims(store, "r1", worker_id="a", lease_seconds=LEASE, clock=Clock())
    created = first.join(RUN)
    # WHEN another process joins proposing 5 units at another version
    second = UnitClaims(store, "r1", worker_id="b", lease_seconds=LEASE, clock=Clock())
    joined = second.join({**RUN, "units": 5, "version_ms": 2000})
    # THEN it gets the stored run and its 3 units
    assert created == (RUN, True)
    assert joined == (RUN, False)
    assert [unit.number for unit in second.units(force=True)] == [0, 1, 2]


def test_claims_join_run_of_another_table_raises_config_error(store: LeaseStore) -> None:
    process(store, "a", Clock())
    other = UnitClaims(store, "r1", worker_id="b", lease_seconds=LEASE, clock=Clock())
    with pytest.raises(ConfigError) as error:
        other.join({**RUN, "table": "Orders"})
    assert str(error.value) == (
        "--run-id r1: that run backfills table Users, not Orders; pick another run id "
        "(run ids name one run of one table)"
    )


def test_claims_each_unit_is_held_by_one_process(store: LeaseStore) -> None:
    # GIVEN two processes on one run of 3 units
    a, b = process(store, "a", Clock()), process(store, "b", Clock())
    # WHEN they claim alternately until nothing is left
    taken = [a.claim(), b.claim(), a.claim(), b.claim(), a.claim()]
    # THEN every unit is held once, by one of them
    held = [claim.unit for claim in taken if claim is not None]
    assert sorted(unit.number for unit in held) == [0, 1, 2]
    assert {unit.owner for unit in held} <= {"a", "b"}
    assert taken[3:] == [None, None]


def test_claims_unit_of_a_dead_owner_is_taken_after_the_lease_and_resumes_from_its_position(
    store: LeaseStore,
) -> None:
    # GIVEN process a checkpointed one page of unit 0 (next key, 100 items), then died
    a_clock, b_clock = Clock(), Clock(500.0)
    a = process(store, "a", a_clock, {**RUN, "units": 1})
    claim = a.claim()
    assert claim is not None
    a.save(claim, {"next_key": KEY}, 100, done=False)
    b = process(store, "b", b_clock, {**RUN, "units": 1})
    # WHEN process b looks before and after a lease period of its own clock
    assert b.claim() is None
    b_clock.now += LEASE + 1.5  # past REFRESH_SECONDS too: it lists the units again
    taken = b.claim()
    # THEN it holds the unit at a's position and counts, and writes only a margin after the lease ends
    assert taken is not None
    assert (taken.unit.owner, taken.unit.position, taken.unit.items, taken.unit.pages) == (
        "b",
        {"next_key": KEY},
        100,
        1,
    )
    assert taken.writable_at == 500.0 + LEASE + 3.0
    with pytest.raises(LeaseLostError, match="may not be written yet"):
        b.deadline(taken)
    b_clock.now = taken.writable_at
    assert b.deadline(taken) == pytest.approx(
        taken.writable_at + LEASE - 3.0 - (taken.writable_at - taken.renewed_at)
    )
    # AND a, back from a pause, can neither checkpoint nor write for it
    with pytest.raises(LeaseLostError) as lost:
        a.save(claim, {"next_key": None}, 50, done=True)
    assert str(lost.value) == (
        "lost the claim of unit 0 of backfill run r1 (worker a): it is now owned by b; "
        "stop writing for this unit, its next owner resumes from its last checkpoint"
    )
    with pytest.raises(LeaseLostError, match="is now owned by b"):
        a.deadline(claim)


def test_claims_renewed_unit_never_expires(store: LeaseStore) -> None:
    # GIVEN process a holds the only unit and renews it every third of the lease
    a_clock, b_clock = Clock(), Clock()
    a = process(store, "a", a_clock, {**RUN, "units": 1})
    claim = a.claim()
    assert claim is not None
    b = process(store, "b", b_clock, {**RUN, "units": 1})
    # WHEN b looks for three lease periods
    for _ in range(9):
        a_clock.now += LEASE / 3
        a.renew_all()
        b_clock.now += LEASE / 3
        # THEN it never takes the unit
        assert b.claim() is None
    assert a.deadline(claim) > a_clock.now


def test_claims_deadline_closes_a_margin_before_the_lease_could_lapse(store: LeaseStore) -> None:
    clock = Clock()
    a = process(store, "a", clock)
    claim = a.claim()
    assert claim is not None
    assert a.deadline(claim) == 100.0 + LEASE - 3.0  # taken free: written at once
    clock.now += LEASE - 3.0
    with pytest.raises(LeaseLostError) as lost:
        a.deadline(claim)
    assert "was last renewed 27.0 s ago and may lapse before a write started now could end" in str(lost.value)


def test_claims_released_unit_is_taken_at_once_from_its_position(store: LeaseStore) -> None:
    a, b = (
        process(store, "a", Clock(), {**RUN, "units": 1}),
        process(store, "b", Clock(), {**RUN, "units": 1}),
    )
    claim = a.claim()
    assert claim is not None
    a.save(claim, {"next_key": KEY}, 10, done=False)
    a.release(claim)
    b.units(force=True)
    taken = b.claim()
    assert taken is not None
    assert (taken.unit.position, taken.writable_at) == ({"next_key": KEY}, float("-inf"))


def test_claims_done_units_are_never_claimed_and_the_run_finishes(store: LeaseStore) -> None:
    # GIVEN every unit of a run finished, by two processes
    a, b = process(store, "a", Clock()), process(store, "b", Clock())
    for claims in (a, b, a):
        claim = claims.claim()
        assert claim is not None
        claims.save(claim, {"next_key": None}, 200, done=True)
    # THEN nothing is left to claim, and both see the run finished
    assert (a.claim(), b.claim()) == (None, None)
    assert a.finished(force=True)
    assert b.finished(force=True)
    assert a.held() == []


def test_status_counts_units_items_rate_and_eta(store: LeaseStore) -> None:
    # GIVEN one unit done (200 items), one in progress by a (100 items), one remaining, 10 s in
    wall = [0]
    a = UnitClaims(store, "r1", worker_id="a", lease_seconds=LEASE, clock=Clock(), wall_ms=lambda: wall[0],
                   rng=random.Random(3))  # fmt: skip
    a.join(RUN)
    done = a.claim()
    working = a.claim()
    assert done is not None
    assert working is not None
    wall[0] = 4_000
    a.save(done, {"next_key": None}, 200, done=True)
    a.save(working, {"next_key": KEY}, 100, done=False)
    # WHEN the status is read 10 s after the run started
    status = run_status(store, "r1", table=None, now_ms=10_000)
    # THEN it counts and estimates from the run's item count
    assert (status["done"], status["remaining"], status["items"], status["items_per_second"]) == (
        1,
        1,
        300,
        30.0,
    )
    assert status["in_progress"] == [
        {"unit": working.unit.number, "owner": "a", "claimed_seconds_ago": 10.0, "written_seconds_ago": 6.0,
         "items": 100},
    ]  # fmt: skip
    assert status["eta_seconds"] == 10
    assert describe_status(status) == (
        "backfill run r1 of table Users (3 segments, version 1000, started 1970-01-01T00:00:00.000+00:00): "
        "1 done, 1 in progress, 1 remaining\n"
        f"  unit {working.unit.number}: a, claimed 0:00:10 ago, last written 0:00:06 ago, 100 items\n"
        "300 items of ~600 (50%), 30 items/s, ETA 0:00:10"
    )


def test_status_of_an_unknown_run_raises_config_error(store: LeaseStore) -> None:
    with pytest.raises(ConfigError) as error:
        run_status(store, "nope", table=None, now_ms=0)
    assert str(error.value) == (
        f"backfill --status: no backfill run nope in {store.describe()} "
        "(check --run-id and CDCSYNC_CHECKPOINTS)"
    )


def test_file_store_put_record_is_compare_and_set_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    store = FileLeaseStore(path, worker_id="w")
    first = store.put_record(unit_key("r", 0), {"owner": "a"}, revision=None)
    with pytest.raises(RecordChangedError) as changed:
        store.put_record(unit_key("r", 0), {"owner": "b"}, revision=None)
    assert changed.value.current == first
    second = store.put_record(unit_key("r", 0), {"owner": "b"}, revision=1)
    store.save_progress("backfill|Users", {"kind": "scan"})  # other writes keep the records
    assert FileLeaseStore(path, worker_id="w").load_records("backfill-unit|r|") == [second]
    assert second.revision == 2


class EarlyWake(threading.Event):
    """A stop event whose ``wait`` returns a little before the time asked (as timed waits may)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.now += (timeout or 0) * 0.999
        return self.is_set()


def test_claims_wait_writable_woken_early_waits_until_the_window_opens(store: LeaseStore) -> None:
    # GIVEN process b took the unit of a dead owner: it may write only a margin after the lease
    a_clock, b_clock = Clock(), Clock()
    one = {**RUN, "units": 1}
    a = process(store, "a", a_clock, one)
    assert a.claim() is not None
    b = process(store, "b", b_clock, one)
    b_clock.now += LEASE + 1.5
    taken = b.claim()
    assert taken is not None
    # WHEN it waits for the window and its timed wait wakes a little early
    assert b.wait_writable(taken, EarlyWake(b_clock))
    # THEN the window is open when the wait returns: its first write may start
    assert b_clock.now >= taken.writable_at
    assert b.deadline(taken) > b_clock.now
