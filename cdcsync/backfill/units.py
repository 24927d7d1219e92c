"""The work units of a backfill run that any number of processes share, and their claims.

A *run* (``cdcsync backfill --run-id ID``) is one read of one table at one version, split into
units: the segments of a parallel scan (``TotalSegments`` fixed by the run) or the data files of an
export. Every process that joins the run works on units nobody holds, each unit is done exactly
once in effect, and every write carries the run's one version. State lives in the checkpoint
store's compare-and-set records (``LeaseStore.put_record``)::

    backfill-run|ID              the run: table, kind, units, version_ms, ... (written once, by the
                                 first process; a joiner reads it and uses its values)
    backfill-unit|ID|0000007     one unit: owner, position (the scan's next key, or the items of the
                                 data file written), done, items, pages, claimed_ms, heartbeat_ms

**Claims are leases, like the worker's** (``checkpoint/dynamodb.py``, ARCHITECTURE.md "Versions").
A process claims a unit by writing itself as owner over the revision it read; the write fails if
anyone wrote the unit since. The owner writes the unit at least every third of the lease period
(``CDCSYNC_LEASE_SECONDS``: a renewal, or a page's checkpoint), so its revision keeps changing.
Nobody compares clocks across hosts: a process that sees a unit's (owner, revision) unchanged for
longer than the lease period on its own monotonic clock takes it over, from the unit's saved
position. The owner writes only within ``lease - margin`` of its last successful write (sent at
``r``; ``deadline``), the taker first writes at ``s + lease + margin`` (``s``: when it first saw the
revision it took over, after ``r``), so the two never write at once; a unit taken while free
(released by an owner that stopped its thread first, or never claimed) is written at once. A page
is checkpointed after its items are written, conditional on the claim: an owner that lost the claim
can neither checkpoint nor, past its deadline, write, so at most the one page in flight is read
and written twice, with the same version (harmless: ``external_gte``, and a live change carries a
higher one).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cdcsync.checkpoint import LeaseLostError, LeaseStore, Record, RecordChangedError
from cdcsync.checkpoint.dynamodb import MARGIN_SHARE
from cdcsync.errors import ConfigError

log = logging.getLogger(__name__)

RUN_PREFIX = "backfill-run|"
UNIT_PREFIX = "backfill-unit|"
REFRESH_SECONDS = 1.0  # the shortest time between two listings of the units by one process


def run_key(run_id: str) -> str:
    return f"{RUN_PREFIX}{run_id}"


def unit_key(run_id: str, number: int) -> str:
    return f"{UNIT_PREFIX}{run_id}|{number:07d}"


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit as last read or written: its record's revision and what the record says."""

    number: int
    revision: int
    owner: str | None = None
    position: dict[str, Any] = field(default_factory=dict)  # {} until its first page is written
    done: bool = False
    items: int = 0  # items read and written (or dead-lettered), by every owner so far
    pages: int = 0
    claimed_ms: int | None = None  # wall clock of the claimer, for people reading the status
    heartbeat_ms: int | None = None  # wall clock of its last write, ditto

    @classmethod
    def of(cls, record: Record) -> Unit:
        value = record.value
        return cls(
            number=int(record.key.rpartition("|")[2]),
            revision=record.revision,
            owner=value.get("owner"),
            position=dict(value.get("position") or {}),
            done=bool(value.get("done", False)),
            items=int(value.get("items", 0)),
            pages=int(value.get("pages", 0)),
            claimed_ms=value.get("claimed_ms"),
            heartbeat_ms=value.get("heartbeat_ms"),
        )

    def value(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "position": self.position,
            "done": self.done,
            "items": self.items,
            "pages": self.pages,
            "claimed_ms": self.claimed_ms,
            "heartbeat_ms": self.heartbeat_ms,
        }


@dataclass
class Claim:
    """A unit this process holds: the unit as last written, when that write was sent (own clock) and
    from when this process may write for it. ``lock`` orders a unit thread's checkpoints and the
    renewer's writes; ``lost`` says why the claim is gone (then nothing more is written for it)."""

    unit: Unit
    renewed_at: float
    writable_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    lost: str | None = None


@dataclass(frozen=True, slots=True)
class _Seen:
    owner: str
    revision: int
    since: float  # when this process first saw this (owner, revision), on its own clock


class UnitClaims:
    """Claims on the units of one run, for one process (thread-safe)."""

    def __init__(
        self,
        store: LeaseStore,
        run_id: str,
        *,
        worker_id: str,
        lease_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.margin = lease_seconds * MARGIN_SHARE
        self.clock = clock
        self.wall_ms = wall_ms
        self._rng = rng or random.Random()  # noqa: S311 - spreads contention, not security
        self._lock = threading.Lock()  # guards the dicts below; never held across a store call
        self._claiming = threading.Lock()  # one claim at a time per process
        self._seen: dict[int, _Seen] = {}
        self._units: dict[int, Unit] = {}
        self._listed_at = -math.inf
        self._held: dict[int, Claim] = {}

    # --- the run -------------------------------------------------------------------------------

    def join(self, proposed: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """The run record, created as ``proposed`` if the run does not exist yet; True if created.

        Every unit the run names gets its record (a process that died between creating the run and
        its units leaves the rest to the next joiner). ``ConfigError`` if the stored run is of
        another table.
        """
        key = run_key(self.run_id)
        try:
            run = self.store.put_record(key, proposed, revision=None).value
            created = True
        except RecordChangedError as changed:
            if changed.current is None:  # written and gone at once: nobody deletes run records
                raise
            run, created = changed.current.value, False
        if run.get("table") != proposed.get("table"):
            raise ConfigError(
                f"--run-id {self.run_id}: that run backfills table {run.get('table')}, not "
                f"{proposed.get('table')}; pick another run id (run ids name one run of one table)"
            )
        existing = {unit.number for unit in self.units(force=True)}
        for number in range(int(run["units"])):
            if number not in existing:
                try:
                    self.store.put_record(
                        unit_key(self.run_id, number), Unit(number, 0).value(), revision=None
                    )
                except RecordChangedError:
                    continue  # another joiner created it first
        if len(existing) < int(run["units"]):
            self.units(force=True)
        return dict(run), created

    def units(self, *, force: bool = False) -> list[Unit]:
        """Every unit of the run as stored now (at most one listing per ``REFRESH_SECONDS`` unless
        ``force``), noting when each (owner, revision) was first seen."""
        now = self.clock()
        with self._lock:
            fresh = now - self._listed_at < REFRESH_SECONDS
        if force or not fresh:
            records = self.store.load_records(f"{UNIT_PREFIX}{self.run_id}|")
            now = self.clock()
            with self._lock:
                self._units = {unit.number: unit for unit in map(Unit.of, records)}
                self._listed_at = now
                self._observe(self._units.values(), now)
        with self._lock:
            return [self._units[number] for number in sorted(self._units)]

    def finished(self, *, force: bool = False) -> bool:
        """Every unit of the run done, by anyone (as of the last listing, or now if ``force``)."""
        units = self.units(force=force)
        return bool(units) and all(unit.done for unit in units)

    # --- claims --------------------------------------------------------------------------------

    def claim(self) -> Claim | None:
        """Take one unit nobody holds (or whose owner stopped renewing it); None if there is none now."""
        with self._claiming:
            units = self.units()
            now = self.clock()
            with self._lock:
                held = set(self._held)
            free = [unit for unit in units if not unit.done and unit.owner is None]
            expired = [
                unit
                for unit in units
                if not unit.done
                and unit.owner is not None
                and unit.number not in held
                and self._expired(unit, now)
            ]
            self._rng.shuffle(free)  # processes starting together do not all race for unit 0
            self._rng.shuffle(expired)
            for unit in free + expired:
                claim = self._take(unit)
                if claim is not None:
                    return claim
            return None

    def held(self) -> list[Claim]:
        with self._lock:
            return list(self._held.values())

    def wait_writable(self, claim: Claim, stop: threading.Event) -> bool:
        """Wait until the claim's first write may start (a unit taken over from an owner that stopped
        renewing it: until that owner's last write could have ended); False if told to stop first.

        Waits on this process's clock until the window is open: a timed wait may wake a little early.
        """
        wait = claim.writable_at - self.clock()
        if wait > 0:
            log.info(
                "backfill run %s: waiting %.1f s before the first write to unit %d, until its previous "
                "owner's last write could have ended",
                self.run_id, wait, claim.unit.number,
            )  # fmt: skip
        while wait > 0:
            if stop.wait(wait):  # the renewer keeps the claim meanwhile
                return False
            wait = claim.writable_at - self.clock()
        return not stop.is_set()

    def deadline(self, claim: Claim) -> float:
        """The ``clock()`` time by which a write started now must end (after ``wait_writable``).

        ``LeaseLostError`` once the claim is lost, or may lapse before a write started now could end.
        """
        now = self.clock()
        with claim.lock:
            lost, renewed_at, writable_at = claim.lost, claim.renewed_at, claim.writable_at
        if lost is not None:
            raise LeaseLostError(self._lost_message(claim, lost))
        if writable_at > now:
            raise LeaseLostError(
                self._lost_message(claim, "may not be written yet (its previous owner may be)")
            )
        age = now - renewed_at
        closes_in = self.lease_seconds - self.margin - age
        if closes_in <= 0:
            reason = (
                f"was last renewed {age:.1f} s ago and may lapse before a write started now could end "
                f"(writes stop {self.margin:g} s before the lease period of {self.lease_seconds:g} s)"
            )
            raise LeaseLostError(self._lost_message(claim, reason))
        return now + closes_in

    def save(self, claim: Claim, position: Mapping[str, Any], items: int, *, done: bool) -> Unit:
        """Checkpoint a written page: the unit's new position and counts, conditional on the claim."""
        with claim.lock:
            unit = claim.unit
            updated = replace(
                unit,
                position=dict(position),
                items=unit.items + items,
                pages=unit.pages + 1,
                done=done,
                heartbeat_ms=self.wall_ms(),
            )
            self._write(claim, updated)
        if done:
            with self._lock:
                self._held.pop(unit.number, None)
        return claim.unit

    def renew(self, claim: Claim) -> None:
        """Write the claim again (a new revision), so nobody takes it as expired."""
        with claim.lock:
            if claim.lost is not None or claim.unit.done:
                return
            self._write(claim, replace(claim.unit, heartbeat_ms=self.wall_ms()))

    def renew_all(self) -> None:
        """Renew every held claim; a lost one is marked (its thread stops at its next write)."""
        for claim in self.held():
            try:
                self.renew(claim)
            except LeaseLostError as exc:
                log.warning("%s", exc)

    def release(self, claim: Claim) -> None:
        """Give the claim up (its thread has stopped), keeping the position: the next taker starts at once."""
        with self._lock:
            self._held.pop(claim.unit.number, None)
        with claim.lock:
            if claim.lost is not None or claim.unit.done:
                return
            try:
                self._write(claim, replace(claim.unit, owner=None, heartbeat_ms=self.wall_ms()))
            except LeaseLostError:
                return
            claim.lost = "was released by this process"

    # --- steps ---------------------------------------------------------------------------------

    def _take(self, unit: Unit) -> Claim | None:
        now_ms = self.wall_ms()
        taken = replace(unit, owner=self.worker_id, claimed_ms=now_ms, heartbeat_ms=now_ms)
        if unit.owner is None:
            how, writable_at = "free", -math.inf
        else:
            with self._lock:
                seen = self._seen.get(unit.number)
            since = seen.since if seen is not None else self.clock()
            how, writable_at = f"expired, owner {unit.owner}", since + self.lease_seconds + self.margin
        sent_at = self.clock()
        try:
            record = self.store.put_record(
                unit_key(self.run_id, unit.number), taken.value(), revision=unit.revision
            )
        except RecordChangedError as changed:
            self._note(changed.current)
            return None
        claim = Claim(replace(taken, revision=record.revision), sent_at, writable_at)
        with self._lock:
            self._held[unit.number] = claim
            self._units[unit.number] = claim.unit
        where = "the start" if not unit.position else f"page {unit.pages} ({unit.items:,} items done)"
        log.info("backfill run %s: took unit %d (%s) at %s", self.run_id, unit.number, how, where)
        return claim

    def _write(self, claim: Claim, updated: Unit) -> None:
        """One conditional write of a held claim (the caller holds ``claim.lock``)."""
        if claim.lost is not None:
            raise LeaseLostError(self._lost_message(claim, claim.lost))
        sent_at = self.clock()
        try:
            record = self.store.put_record(
                unit_key(self.run_id, updated.number), updated.value(), revision=claim.unit.revision
            )
        except RecordChangedError as changed:
            current = Unit.of(changed.current) if changed.current is not None else None
            claim.lost = (
                "no longer exists in the checkpoint store"
                if current is None
                else f"is now owned by {current.owner}"
                if current.owner not in (None, self.worker_id)
                else "was written by someone else since this process last wrote it"
            )
            with self._lock:
                self._held.pop(updated.number, None)
            self._note(changed.current)
            raise LeaseLostError(self._lost_message(claim, claim.lost)) from None
        claim.unit = replace(updated, revision=record.revision)
        claim.renewed_at = sent_at
        with self._lock:
            self._units[updated.number] = claim.unit

    def _note(self, record: Record | None) -> None:
        if record is None:
            return
        unit = Unit.of(record)
        with self._lock:
            self._units[unit.number] = unit
            self._observe([unit], self.clock())

    def _observe(self, units: Iterable[Unit], now: float) -> None:
        """Remember when each unit's (owner, revision) was first seen (the caller holds ``_lock``)."""
        for unit in units:
            if unit.owner is None or unit.done:
                self._seen.pop(unit.number, None)
                continue
            seen = self._seen.get(unit.number)
            if seen is None or (seen.owner, seen.revision) != (unit.owner, unit.revision):
                self._seen[unit.number] = _Seen(unit.owner, unit.revision, now)

    def _expired(self, unit: Unit, now: float) -> bool:
        with self._lock:
            seen = self._seen.get(unit.number)
        return (
            seen is not None
            and (seen.owner, seen.revision) == (unit.owner, unit.revision)
            and now - seen.since > self.lease_seconds
        )

    def _lost_message(self, claim: Claim, reason: str) -> str:
        return (
            f"lost the claim of unit {claim.unit.number} of backfill run {self.run_id} "
            f"(worker {self.worker_id}): it {reason}; "
            "stop writing for this unit, its next owner resumes from its last checkpoint"
        )
