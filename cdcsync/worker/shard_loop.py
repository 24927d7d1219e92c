"""One owned shard, read and written in order: read, plan, write, checkpoint, repeat.

The checkpoint moves only past records that are written to OpenSearch or the dead-letter queue.
When a batch fails part-way, the checkpoint moves to just before the first failed record and the
shard is read again from there after a pause: an in-order suffix replay, which versions make
harmless (see ARCHITECTURE.md). A batch is at most one GetRecords page (1000 records, 1 MB), so
memory stays flat whatever the backlog; and across the process's shard threads, the records held at
once stay within the process's ``RecordBudget`` (``worker/budget.py``): each call asks for no more
records than the share it took, held until the page is written.

Each page is one write round, and a round writes only while the lease is surely valid: it starts
once the previous owner's writes surely ended, it ends (the bulk writer's deadline, checked before
every request) before the lease could lapse, and it does not start once the loop is told to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from cdcsync.checkpoint import TRIM_HORIZON, Lease, LeaseLostError, LeaseStore
from cdcsync.errors import CdcsyncError, TransientError
from cdcsync.logs import record_fields
from cdcsync.pipeline import BatchResult, Pipeline
from cdcsync.source.streams import MAX_LIMIT, ShardBatch, ShardReader, StreamGoneError
from cdcsync.versions import epoch_ms
from cdcsync.worker.budget import RecordBudget

log = logging.getLogger(__name__)

# Each batch's retries must end in time for a graceful shutdown (SIGTERM -> exit within 30 s; the
# coordinator waits SHUTDOWN_SECONDS, more than this, before it releases the leases); a batch that
# cannot be written by then is simply read and written again. The lease may cap a round shorter.
BATCH_DEADLINE_SECONDS = 20.0
_FAILURE_PAUSE = (1.0, 30.0)  # first and longest pause before re-reading after a failed batch


@dataclass
class ShardLoop:
    """Runs in its own thread until the shard ends, the lease is lost, or the worker stops."""

    lease: Lease
    reader: ShardReader
    pipeline: Pipeline
    store: LeaseStore
    stopping: threading.Event
    iterator_age: float | None = None
    # Creation time (epoch ms) of the oldest record read but not yet written; None when caught up.
    # Lag keeps rising from it while writes fail, even between reads.
    unwritten_since_ms: int | None = None
    done: bool = False
    on_progress: Callable[[], None] | None = field(default=None, repr=False)  # lag changed: report it
    on_batch: Callable[[BatchResult], None] | None = field(default=None, repr=False)  # for the summary
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)  # the bulk writer's clock
    # The loop stopped on an error (called from its thread): the coordinator counts it, and for a
    # fatal one or a bug logs it and makes the worker not ready.
    on_error: Callable[[ShardLoop, BaseException], None] | None = field(default=None, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)
    # Records held at once across the process's loops (the coordinator hands every loop the same one).
    budget: RecordBudget = field(default_factory=RecordBudget, repr=False)

    @property
    def shard_id(self) -> str:
        return self.lease.shard_id

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=f"shard-{self.shard_id}", daemon=True)
        self.thread.start()

    def lag_seconds(self, now_ms: int) -> float | None:
        """How far behind this shard is: the oldest unwritten record's age, else the reader's."""
        if self.unwritten_since_ms is not None:
            return max(0.0, (now_ms - self.unwritten_since_ms) / 1000)
        return self.iterator_age

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def run(self) -> None:
        """Read until told to stop; every error ends here, as a log line or a report to ``on_error``.

        A lost lease or a gone shard is news the coordinator acts on in its next round (the shard
        moved, or the stream is listed again); a transient failure restarts the loop next round; a
        fatal error or a bug is reported for the coordinator to log once and show on ``/readyz``.
        """
        try:
            self._loop()
        except LeaseLostError as exc:
            log.info("stopped reading shard %s: %s", self.shard_id, exc, extra=self._fields())
        except StreamGoneError as exc:
            log.warning(
                "shard %s of table %s cannot be read: %s; listing the stream's shards again",
                self.shard_id,
                self.lease.table,
                exc,
                extra=self._fields(),
            )
            self._report(exc)
        except TransientError as exc:
            log.warning(
                "shard %s of table %s stopped: %s; starting it again next round",
                self.shard_id,
                self.lease.table,
                exc,
                extra=self._fields(),
            )
            self._report(exc)
        except CdcsyncError as exc:  # fatal, configuration: the coordinator logs it once
            self._report(exc)
        except Exception as exc:  # a bug: show where, and let the coordinator make the worker not ready
            log.exception(
                "shard %s stopped on an unexpected error (a bug)", self.shard_id, extra=self._fields()
            )
            self._report(exc)
        finally:
            self.done = True

    def _report(self, exc: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(self, exc)

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress()

    def _fields(self, sequence: str | None = None) -> dict[str, Any]:
        return record_fields(self.lease.table, {}, sequence, shard=self.shard_id)

    def _loop(self) -> None:
        pause = _FAILURE_PAUSE[0]
        while not self.stopping.is_set():
            self.reader.pace()  # an idle shard waits before it takes a share, not while holding one
            share = self.budget.take(MAX_LIMIT, self.stopping)
            if not share:
                continue  # told to stop while waiting for a share
            outcome = self._page(share)
            if outcome == "failed":
                self.stopping.wait(pause)
                pause = min(pause * 2, _FAILURE_PAUSE[1])
                continue
            if outcome == "written":
                pause = _FAILURE_PAUSE[0]
            if outcome == "ended":
                # Read to its end and every record written: children may start now.
                self.lease = self.store.checkpoint(self.lease, self.lease.checkpoint, finished=True)
                log.info("shard %s finished", self.shard_id, extra=self._fields())
                return

    def _page(self, share: int) -> Literal["failed", "empty", "written", "ended"]:
        """Read and write one page of at most ``share`` records, then give the share back.

        The page lives only in here: once its share is given back, the budget no longer counts it,
        so nothing may hold it while the loop waits for its next read.
        """
        held = share
        try:
            batch = self._read(share)
            if batch is None:
                return "failed"
            self.budget.give_back(share - len(batch.records))  # what the page did not fill
            held = len(batch.records)
            written = self._settle(batch)
            if written is None:
                return "failed"
            if batch.next_position is None:
                return "ended"
            return "written" if written else "empty"
        finally:
            self.budget.give_back(held)  # the page is written, or given up to be read again

    def _read(self, limit: int) -> ShardBatch | None:
        """One page of at most ``limit`` records; None after a transient failure (logged)."""
        try:
            return self.reader.read(limit)
        except TransientError as exc:
            log.warning("cannot read shard %s: %s", self.shard_id, exc, extra=self._fields())
            return None

    def _settle(self, batch: ShardBatch) -> bool | None:
        """Write the page's records: True if there were some and they are written, False if there
        were none, None if they could not all be written (read again after a pause)."""
        self.iterator_age = batch.seconds_behind
        if not batch.records:
            return False
        self.unwritten_since_ms = epoch_ms(batch.records[0]["dynamodb"]["ApproximateCreationDateTime"])
        if not self._write(batch.records):
            return None
        self.unwritten_since_ms = None
        return True

    def _write(self, records: list[dict[str, Any]]) -> bool:
        """Write one page; move the checkpoint as far as it is safe. True when all of it is done."""
        deadline = self._round_deadline()
        if deadline is None:
            return False  # told to stop: whoever owns the shard next reads the page again
        result = self.pipeline.process(records, stream_arn=self.lease.stream_arn, deadline=deadline)
        if self.on_batch is not None:
            self.on_batch(result)
        done_until = len(records) if result.retry_from is None else result.retry_from
        if done_until > 0:
            last = str(records[done_until - 1]["dynamodb"]["SequenceNumber"])
            try:
                self.lease = self.store.checkpoint(self.lease, last)
            except TransientError as exc:
                # Written but not remembered: read again from the last checkpoint (versions make
                # the repeat harmless) once the checkpoint store answers again.
                log.warning("cannot checkpoint shard %s: %s", self.shard_id, exc, extra=self._fields(last))
                self._rewind()
                return False
        if result.retry_from is None:
            return True
        failed = result.retry_sequence_number
        log.warning(
            "shard %s: records from %s on could not be written; reading them again",
            self.shard_id,
            failed,
            extra=self._fields(failed),
        )
        self._rewind()
        return False

    def _round_deadline(self) -> float | None:
        """The ``clock()`` time by which this write round ends; None if the loop is told to stop.

        The deadline is the lease's remaining validity (minus the store's margin) or the batch
        deadline, whichever comes first. The bulk writer checks it before every request and caps
        each request's timeout by it, so a pause anywhere in the round (a KEYS_ONLY item read, a
        retry's backoff, SIGSTOP, a GC pause) leaves the rest unsent rather than written late.
        Raises ``LeaseLostError`` when the lease may lapse before a write could end.
        """
        while True:
            now = self.clock()  # read before asking: the window runs from no earlier than this
            window = self.store.write_window(self.lease)
            if window.opens_in <= 0:
                break
            log.info(
                "shard %s: waiting %.1f s before the first write, until the previous owner's last "
                "write could have ended",
                self.shard_id,
                window.opens_in,
                extra=self._fields(),
            )
            if self.stopping.wait(window.opens_in):
                return None
        # Checked after ``now`` was read: a loop told to stop later ends this round within
        # BATCH_DEADLINE_SECONDS of the stop, before the coordinator gives up waiting for it and
        # releases the lease (which a new owner takes without waiting).
        if self.stopping.is_set():
            return None
        return now + min(BATCH_DEADLINE_SECONDS, window.closes_in)

    def _rewind(self) -> None:
        checkpoint = self.lease.checkpoint
        self.reader.rewind(None if checkpoint == TRIM_HORIZON else checkpoint)
