"""The coordinator: which shards this worker reads, and the loops that read them.

Every round (a third of the lease period) and for each mapped table: look up the table's stream
(``DescribeTable``, every round, so a stream disabled and enabled again, with a new ARN, is read
from TRIM_HORIZON within a round, while the old stream's unread rest is read to its end), list each
stream's shards (new shards after a split are found), create their leases, renew ours and take a
fair share, start a loop for each owned shard whose parents are finished (lineage: a child never
runs ahead of its parent), and stop loops whose lease was lost.

A leased shard that DescribeStream no longer lists (in two listings in a row: one answer may be
stale) was trimmed by the 24 h retention before it was read to its end (the worker was down, or
stuck, that long): it is finished as it stands, the loss is counted in
``cdcsync_trimmed_data_total`` with an ERROR line saying to backfill, and its children start. A
stream that is gone for good (24 h after it was replaced) has no shards listed at all.

**Errors stay where they happen.** An error in one table's round is logged (once while it lasts),
counted in ``cdcsync_worker_errors_total`` and tried again next round; the other tables go on and
the worker never stops on it. A shard loop that stops on a fatal error (e.g. GetRecords denied) or
a bug is not restarted every round: it is tried again after ``failed_retry_seconds``. Both make
the worker not ready, with the reason on ``/readyz``, until the table or shard works again.

**Checkpoints of a stream the table no longer has** (its stream was replaced while no worker ran,
or the table was recreated) are judged once per stream (``worker/old_streams.py``): a stream
created with or after the table is read to its end like one replaced while the worker runs (gone:
its unread shards count as trimmed); one older than the table is ignored, with one WARNING saying
so and what to run. Emulators such as moto repeat shard ids across streams; a lease of a stream
nobody reads that holds such an id makes way for the new stream's.

**A table without a stream** stops the worker at start-up with one line saying how to enable it
(exit 2: there is nothing to read, and a worker that runs on shows only rising lag), unless it was
started with ``--wait-for-stream`` (the stream is enabled by a later deployment step): then it
says so once, at WARNING, and starts reading within a round of the stream being enabled. A stream
disabled while the worker runs is waited for either way (the old stream's rest is still read).

**Lag never reads 0 for what is not being read.** A shard's age is the age of the oldest record
that may not be written: while its loop reads, the loop's own lag; while nothing reads it (waiting
for its parent, failed, not started), the time since it was last known caught up (or since this
worker took it). The table's lag is the largest age over the shards this worker owns (0 when it
owns none: other replicas read them and report their lag), and while the table's round fails, at
least the time since its last successful round's lag.

**A summary a minute.** Each round after ``summary_seconds`` (and at shutdown) one INFO line per
table that settled records since the last one: records by outcome, dead letters by reason, lag
(``worker/summary.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdcsync.checkpoint import Lease, LeaseLostError, LeaseStore
from cdcsync.errors import CdcsyncError, ConfigError, TransientError
from cdcsync.garbage import paced_collection
from cdcsync.logs import redact_text
from cdcsync.metrics import Metrics
from cdcsync.pipeline import Pipeline
from cdcsync.source.shards import no_stream_error
from cdcsync.source.streams import (
    ShardReader,
    StreamGoneError,
    list_shards,
    ready_shards,
    report_lost_records,
    stream_arn_of,
)
from cdcsync.worker.budget import RecordBudget
from cdcsync.worker.old_streams import OldStreams
from cdcsync.worker.shard_loop import ShardLoop
from cdcsync.worker.summary import Summary

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 25.0  # SIGTERM to exit within 30 s: in-flight batches end by then (shard_loop)
# A shard loop stopped by a fatal error (a missing permission) is tried again this long after.
FAILED_SHARD_RETRY_SECONDS = 300.0
SUMMARY_SECONDS = 60.0  # how often a table that did something gets its summary line
# A leased shard is trimmed once this many listings in a row leave it out: a new shard missing
# from one stale DescribeStream answer must not be finished unread.
TRIMMED_AFTER_LISTINGS = 2


class NoStreamAtStartError(ConfigError):
    """A mapped table had no enabled stream when the worker first looked, and it may not wait for one."""


def error_kind(exc: BaseException) -> str:
    """The ``error`` label of ``cdcsync_worker_errors_total``: the error tree's branch, or a bug."""
    if isinstance(exc, StreamGoneError):
        return "stream_gone"
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, ConfigError):
        return "config"
    return "fatal" if isinstance(exc, CdcsyncError) else "bug"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Health:
    """What /healthz and /readyz answer from: the last round, and what keeps the worker from working."""

    last_round: float = 0.0  # monotonic
    dynamodb_ok: bool = False
    opensearch_ok: bool = False
    problems: dict[str, str] = field(default_factory=dict)  # where ("table T") -> why it does not work
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(self, where: str, message: str) -> bool:
        """Remember a problem; True when it is news (not the same message as before): log it then.

        ``/readyz`` shows it outside the log filter, so credentials in it are masked here."""
        message = redact_text(message)
        with self._lock:
            news = self.problems.get(where) != message
            self.problems[where] = message
        return news

    def clear(self, where: str) -> bool:
        """Forget a problem that went away; True when there was one."""
        with self._lock:
            return self.problems.pop(where, None) is not None

    def readiness(self) -> tuple[bool, str]:
        """``/readyz``: ready or not, and a first line on DynamoDB and OpenSearch, then one per problem."""
        with self._lock:
            problems = sorted(self.problems.items())
        text = f"dynamodb {'ok' if self.dynamodb_ok else 'unreachable'}, "
        text += f"opensearch {'ok' if self.opensearch_ok else 'unreachable'}\n"
        text += "".join(f"{where}: {message}\n" for where, message in problems)
        return self.dynamodb_ok and self.opensearch_ok and not problems, text


def _shard_where(table: str, shard_id: str) -> str:
    return f"shard {shard_id} of table {table}"


@dataclass
class Coordinator:
    tables: tuple[str, ...]
    store: LeaseStore
    pipeline: Pipeline
    metrics: Metrics
    dynamodb: Any
    streams: Any
    check_opensearch: Callable[[], bool]
    stopping: threading.Event = field(default_factory=threading.Event)
    round_seconds: float = 10.0
    summary_seconds: float = SUMMARY_SECONDS
    failed_retry_seconds: float = FAILED_SHARD_RETRY_SECONDS
    wall_ms: Callable[[], int] = _wall_ms  # epoch ms, for lag
    wait_for_stream: bool = False  # a table without a stream at start: wait (True) or stop (False)
    stopped_by: ConfigError | None = None  # why ``run`` stopped by itself, raised by it at the end
    health: Health = field(default_factory=Health)
    budget: RecordBudget = field(default_factory=RecordBudget)  # records held at once by all loops
    loops: dict[tuple[str, str], ShardLoop] = field(default_factory=dict)
    retiring: list[ShardLoop] = field(default_factory=list)
    # Per table, the stream ARNs being read, oldest first: the current one, and replaced ones until
    # every shard of theirs is finished.
    _arns: dict[str, list[str]] = field(default_factory=dict)
    _owned: dict[str, set[str]] = field(default_factory=dict)  # per table, the shards we hold leases for
    _caught_up_ms: dict[tuple[str, str], int] = field(default_factory=dict)  # per shard, see lag above
    _table_caught_up_ms: dict[str, int] = field(default_factory=dict)
    _table_failing: set[str] = field(default_factory=set)
    _retry_at: dict[tuple[str, str], float] = field(default_factory=dict)  # failed shards, monotonic
    _unlisted: dict[tuple[str, str], int] = field(default_factory=dict)  # listings in a row without it
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _summary: Summary = field(default_factory=Summary)
    _lag: dict[str, float] = field(default_factory=dict)  # per table, the last lag reported

    def __post_init__(self) -> None:
        self._old_streams = OldStreams(self.dynamodb, self.streams)
        started = self.wall_ms()
        self._table_caught_up_ms = dict.fromkeys(self.tables, started)
        self._summary.since_ms = started

    def run(self) -> None:
        """Coordinate until ``stopping`` is set; then stop the loops and release the leases.

        Raises ``NoStreamAtStartError`` (after the shutdown) when a table has no stream to read
        and ``wait_for_stream`` is off. The garbage collector runs on a timer meanwhile
        (``garbage.py``: walking the pages in flight was half of a shard loop's CPU).
        """
        with paced_collection():
            while not self.stopping.is_set():
                self.round()
                self.stopping.wait(self.round_seconds)
            self.shutdown()
        if self.stopped_by is not None:
            raise self.stopped_by

    def round(self) -> None:
        dynamodb_ok = True
        for table in self.tables:
            try:
                self._table_round(table)
            except NoStreamAtStartError as exc:
                self.stopped_by = exc
                self.stopping.set()
                return
            except TransientError as exc:
                dynamodb_ok = False
                self._table_failed(table, exc)
                log.warning("cannot coordinate table %s this round: %s", table, exc, extra={"table": table})
            except CdcsyncError as exc:
                self._table_failed(table, exc)
            except Exception as exc:  # a bug: it must not stop the other tables, nor the worker
                log.exception("table %s: round stopped on an unexpected error (a bug)", table)
                self._table_failed(table, exc)
            else:
                self._table_failing.discard(table)
                if self.health.clear(f"table {table}"):
                    log.info("table %s: coordinating again", table, extra={"table": table})
            self._report_lag(table)
        self.health.dynamodb_ok = dynamodb_ok
        self.health.opensearch_ok = self.check_opensearch()
        self.health.last_round = time.monotonic()
        if self.wall_ms() - self._summary.since_ms >= self.summary_seconds * 1000:
            self._summary.write(self.wall_ms(), self._lag)

    def _table_failed(self, table: str, exc: BaseException) -> None:
        """Count a failed table round; a lasting problem goes to /readyz and is logged when it is news."""
        self._table_failing.add(table)
        kind = error_kind(exc)
        self.metrics.worker_errors(table, kind)
        if kind == "transient":
            return  # /readyz says DynamoDB is unreachable; the caller logs each one
        message = str(exc) if kind != "bug" else f"unexpected error (a bug): {type(exc).__name__}: {exc}"
        if self.health.report(f"table {table}", message) and kind != "bug":
            # A stream gone or, at start with --wait-for-stream, not there yet: expected, waited for.
            waiting = self.wait_for_stream and not self._arns.get(table)
            level = logging.WARNING if kind == "stream_gone" or waiting else logging.ERROR
            line = "cannot coordinate table %s: %s; trying again every round"
            log.log(level, line, table, message, extra={"table": table})

    def _table_round(self, table: str) -> None:
        arns = self._arns.setdefault(table, [])
        current = stream_arn_of(self.dynamodb, table, required=False)
        if current is None and not arns and not self.wait_for_stream:
            raise NoStreamAtStartError(
                f"{no_stream_error(table)} (or start the worker with --wait-for-stream)"
            )
        if current is not None and current not in arns:
            if arns:
                log.warning(
                    "table %s has a new stream %s (its stream was disabled and enabled again): "
                    "reading it from TRIM_HORIZON, and the rest of the old stream to its end",
                    table,
                    current,
                    extra={"table": table},
                )
            arns.append(current)
        owned: set[str] = set()
        leftovers: list[Lease] = []  # unfinished leases of the table's streams not read
        for arn in list(arns):
            owned |= self._stream_round(table, arn, leftovers if arn == current else None)
        for shard_id in self._owned.get(table, set()) - owned:
            self._forget(table, shard_id)
        self._owned[table] = owned
        self.metrics.shards_owned(table, len(owned))
        if current is None:
            raise no_stream_error(table)
        self._old_streams.follow(table, current, leftovers, arns)

    def _stream_round(self, table: str, arn: str, leftovers: list[Lease] | None) -> set[str]:
        """One stream of the table: list, lease, trim, retire and start loops. The shards we own.

        ``leftovers`` is given for the current stream only: it gets the unfinished leases of the
        table's streams that are not read (see ``worker/old_streams.py``).
        """
        current = leftovers is not None
        try:
            shards = list_shards(self.streams, arn)
        except StreamGoneError:
            if current:
                raise
            shards = []  # a replaced stream past its retention: every shard of it was trimmed
        ignored = self.store.sync_shards(table, arn, shards, live_streams=self._arns[table])
        if leftovers is not None:
            leftovers.extend(ignored)
        owned = {lease.shard_id: lease for lease in self.store.acquire(table, arn)}
        self._trim_unlisted(table, owned, {shard.shard_id for shard in shards})
        every = self.store.leases(table, arn)
        finished = {lease.shard_id for lease in every if lease.finished}
        known = {lease.shard_id for lease in every}
        ready = {shard.shard_id for shard in ready_shards(shards, finished, known)}
        self._retire(table, arn, owned)
        busy = {(loop.lease.table, loop.shard_id) for loop in self.retiring}
        now = time.monotonic()
        for shard_id, lease in owned.items():
            key = (table, shard_id)
            # A loop told to stop may still be finishing a write: never two loops for one shard.
            if key in self.loops or key in busy or shard_id not in ready:
                continue
            with self._lock:
                retry_at = self._retry_at.get(key)
            if retry_at is None or retry_at <= now:
                self._start(lease)
        if not current and all(lease.finished for lease in every):
            self._arns[table].remove(arn)
            log.info("read every shard of the replaced stream %s of table %s", arn, table)
        return set(owned)

    def _trim_unlisted(self, table: str, owned: dict[str, Lease], listed: set[str]) -> None:
        """Finish (and drop from ``owned``) the leases whose shards stopped being listed."""
        for shard_id in list(owned):
            key = (table, shard_id)
            if shard_id in listed or self._is_reading(table, shard_id):
                self._unlisted.pop(key, None)
                continue
            self._unlisted[key] = self._unlisted.get(key, 0) + 1
            if self._unlisted[key] >= TRIMMED_AFTER_LISTINGS:
                self._finish_trimmed(owned.pop(shard_id))
                self._forget(table, shard_id)

    def _retire(self, table: str, arn: str, owned: dict[str, Lease]) -> None:
        """Drop loops that ended; stop those whose lease moved (they finish their write first)."""
        for (loop_table, shard_id), loop in list(self.loops.items()):
            if loop_table != table or loop.lease.stream_arn != arn:
                continue
            if shard_id not in owned or loop.done:
                if shard_id not in owned and loop.alive:
                    log.info("lease of shard %s moved to another worker; stopping it", shard_id)
                    loop.stopping.set()
                    self.retiring.append(loop)
                del self.loops[(loop_table, shard_id)]
        self.retiring = [loop for loop in self.retiring if loop.alive]

    def _is_reading(self, table: str, shard_id: str) -> bool:
        loop = self.loops.get((table, shard_id))
        return (loop is not None and loop.alive) or any(
            loop.lease.table == table and loop.shard_id == shard_id for loop in self.retiring
        )

    def _finish_trimmed(self, lease: Lease) -> None:
        """A leased shard no longer listed: its unread records expired. Finish it so children start."""
        try:
            self.store.checkpoint(lease, lease.checkpoint, finished=True)
        except LeaseLostError as exc:  # its new owner finishes it and reports the loss
            log.info("shard %s was trimmed, but its lease moved on: %s", lease.shard_id, exc)
            return
        report_lost_records(
            self.metrics,
            lease.table,
            lease.shard_id,
            lease.checkpoint,
            why="the shard is no longer listed",
            then="its child shards are read now",
        )

    def _forget(self, table: str, shard_id: str) -> None:
        """A shard we no longer own (moved, finished, trimmed): its new owner reports on it now."""
        self.metrics.release_shard(table, shard_id)
        key = (table, shard_id)
        with self._lock:
            self._caught_up_ms.pop(key, None)
            self._retry_at.pop(key, None)
        self._unlisted.pop(key, None)
        self.health.clear(_shard_where(table, shard_id))

    def _shard_stopped(self, loop: ShardLoop, exc: BaseException) -> None:
        """A loop's error, from its thread: count it; a fatal one or a bug makes the worker not ready."""
        table, shard_id = loop.lease.table, loop.shard_id
        kind = error_kind(exc)
        self.metrics.worker_errors(table, kind)
        if kind in ("transient", "stream_gone"):
            return  # the loop logged it; the next round starts it again or finds the shard gone
        with self._lock:
            self._retry_at[(table, shard_id)] = time.monotonic() + self.failed_retry_seconds
        message = str(exc) if kind != "bug" else f"unexpected error (a bug): {type(exc).__name__}: {exc}"
        if self.health.report(_shard_where(table, shard_id), message) and kind != "bug":
            log.error(
                "%s stopped: %s; not ready until it is read again (next try in %.0f s)",
                _shard_where(table, shard_id),
                message,
                self.failed_retry_seconds,
                extra={"table": table, "shard": shard_id},
            )

    def _report_lag(self, table: str) -> None:
        """Iterator age per owned shard and the table's lag; called each round and on a loop's progress."""
        with self._lock:
            now_ms = self.wall_ms()
            ages = []
            for shard_id in sorted(self._owned.get(table, ())):
                key = (table, shard_id)
                loop = self.loops.get(key)
                age = loop.lag_seconds(now_ms) if loop is not None and not loop.done else None
                if age is not None:
                    self._caught_up_ms[key] = now_ms - round(age * 1000)
                    if self.health.clear(_shard_where(table, shard_id)):
                        log.info("%s is read again", _shard_where(table, shard_id))
                else:
                    age = max(0.0, (now_ms - self._caught_up_ms.setdefault(key, now_ms)) / 1000)
                self.metrics.iterator_age(table, shard_id, age)
                ages.append(age)
            if table in self._table_failing:
                ages.append(max(0.0, (now_ms - self._table_caught_up_ms[table]) / 1000))
            lag = max(ages, default=0.0)
            if table not in self._table_failing:
                self._table_caught_up_ms[table] = now_ms - round(lag * 1000)
            self._lag[table] = lag
        self.metrics.replication_lag(table, lag)

    def _start(self, lease: Lease) -> None:
        stopping = threading.Event()
        reader = ShardReader(
            self.streams,
            lease.stream_arn,
            lease.shard_id,
            lease.checkpoint,
            table=lease.table,
            metrics=self.metrics,
            sleep=stopping.wait,  # empty-read backoff ends at once on shutdown
        )
        loop = ShardLoop(lease, reader, self.pipeline, self.store, stopping, budget=self.budget)
        loop.on_progress = lambda: self._report_lag(lease.table)
        loop.on_batch = lambda result: self._summary.add(lease.table, result)
        loop.on_error = self._shard_stopped
        self.loops[(lease.table, lease.shard_id)] = loop
        log.info("reading shard %s of %s from %s", lease.shard_id, lease.table, lease.checkpoint)
        loop.start()

    def _stop_loops(self) -> list[ShardLoop]:
        stopped = list(self.loops.values())
        for loop in stopped:
            loop.stopping.set()
        deadline = time.monotonic() + SHUTDOWN_SECONDS  # all loops drain at once, within one budget
        for loop in stopped:
            if loop.thread is not None:
                loop.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.loops.clear()
        return stopped

    def shutdown(self) -> None:
        """Finish in-flight writes, checkpoint, release leases (another replica takes them at once)."""
        stopped = self._stop_loops()
        self._summary.write(self.wall_ms(), self._lag)  # what happened since the last summary, if anything
        for loop in stopped:
            try:
                self.store.release(loop.lease)
            except CdcsyncError as exc:  # the lease expires instead; the others are still released
                log.warning("could not release shard %s: %s", loop.shard_id, exc)
