"""Reading one DynamoDB Streams shard in order with GetRecords, as Lambda's pollers and the KCL do.

A ``ShardReader`` owns the shard iterator and hides its chores from the worker:

- The first iterator is ``TRIM_HORIZON`` for a new shard, ``AFTER_SEQUENCE_NUMBER`` of the checkpoint
  otherwise; then each ``NextShardIterator``. Its absence means the shard is closed and read to its end.
- Iterators expire after 15 minutes (a worker stuck on a down OpenSearch holds one that long): a new
  one is taken after the last record handed out, so nothing is skipped or read twice.
- A checkpoint older than the 24 h retention (``TrimmedDataAccessException``) means records were lost:
  the reader says so in an ERROR line, counts ``cdcsync_trimmed_data_total`` and goes on from
  ``TRIM_HORIZON``; a backfill restores the items.
- Its pace (``_wait_before_call``), as Lambda's pollers: at most 4 GetRecords a second per shard
  (``MIN_CALL_SECONDS`` between call starts), except that a read which returned a full page (all
  the records it asked for, or ``FULL_PAGE_BYTES`` of items: a backlog) is followed by the next one
  at once, so a worker catching up reads as fast as it writes (DynamoDB documents no per-shard call
  rate for Streams, only at most two readers per shard; a throttled call backs off in
  ``call_streams``). After a read that returned fewer records, the next call goes 0.25 s after the
  previous one. While the shard is *active* (a record seen within ``ACTIVE_SECONDS``, or the reader
  just started or rewound), an empty read is followed by the same short wait: a shard written at a
  steady rate gets each record read within 0.25 s of its arrival, whatever the rate. Only a shard
  idle for longer backs off, doubling 0.5 s, 1 s, then every 2 s: an idle shard costs one call
  every 2 s, and its first record after an idle spell waits at most that long.
- One reader calls GetRecords for one shard at a time (DynamoDB allows two readers per shard).

Discovery and lineage (``stream_arn_of``, ``list_shards``, ``ready_shards``) live in ``shards.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from cdcsync.aws import error_code
from cdcsync.checkpoint import TRIM_HORIZON
from cdcsync.errors import PlanError, TransientError
from cdcsync.metrics import Metrics
from cdcsync.source.shards import (
    StreamGoneError,
    call_streams,
    list_shards,
    ready_shards,
    stream_arn_of,
    unreadable,
)
from cdcsync.versions import epoch_ms

__all__ = [
    "TRIM_HORIZON",
    "ShardBatch",
    "ShardReader",
    "StreamGoneError",
    "list_shards",
    "ready_shards",
    "report_lost_records",
    "stream_arn_of",
]

log = logging.getLogger(__name__)

MAX_LIMIT = 1000  # GetRecords returns at most 1000 records (and 1 MB) per call
# The pace (module docstring): call starts at least this far apart (4 a second, Lambda's rate) ...
MIN_CALL_SECONDS = 0.25
# ... a shard that returned a record within this is active and polled at that pace ...
ACTIVE_SECONDS = 5.0
# A page with this much item data was cut by GetRecords' 1 MB limit, not by the records there are: a
# backlog (no shard is written 2 MB/s), read on at once like a page of all the records asked for.
FULL_PAGE_BYTES = 512 * 1024
# ... and an idle one backs off, doubling, to a call every this often.
MAX_IDLE_SECONDS = 2.0
# New iterators one read may take after expiry or trimming before it gives up for now.
_RECOVERIES = 3


@dataclass(slots=True)
class ShardBatch:
    """What one GetRecords call returned.

    ``next_position`` is the opaque ``NextShardIterator``; None means the shard is closed and these
    were its last records (check ``ended``). ``millis_behind`` is now minus the last record's
    ``ApproximateCreationDateTime`` in milliseconds, 0 for an empty read of an open shard, None for
    an empty read of an ended shard.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    next_position: str | None = None
    millis_behind: float | None = None

    @property
    def ended(self) -> bool:
        return self.next_position is None

    @property
    def seconds_behind(self) -> float | None:
        """``millis_behind`` in seconds, the unit of the iterator-age and lag metrics."""
        return None if self.millis_behind is None else self.millis_behind / 1000


class ShardReader:
    """Reads one shard forward from a checkpoint; one GetRecords in flight at a time."""

    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        shard_id: str,
        checkpoint: str,
        *,
        table: str,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,  # e.g. a stop Event's wait, to stop at once
        wall: Callable[[], float] = time.time,
        limit: int = MAX_LIMIT,
    ) -> None:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"GetRecords limit must be 1..{MAX_LIMIT}, got {limit}")
        self.streams = streams
        self.stream_arn = stream_arn
        self.shard_id = shard_id
        self.table = table
        self.metrics = metrics
        self.limit = limit
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._lock = threading.Lock()
        self._position = checkpoint or TRIM_HORIZON  # last sequence number handed out
        self._iterator: str | None = None
        self._ended = False
        self._idle_reads = 0  # empty reads since the shard went idle (no record for ACTIVE_SECONDS)
        self._last_call: float | None = None
        self._full = False  # the last read returned all it asked for: a backlog, read on at once
        self._active_at = clock()  # the last record, start or rewind: a new reader starts active

    @property
    def position(self) -> str:
        """The sequence number of the last record handed out, or the checkpoint, or TRIM_HORIZON."""
        return self._position

    def pace(self) -> None:
        """Wait until the next GetRecords is due (``read`` waits too; this lets a caller wait first,
        then take what it needs for the call, such as its share of a record budget)."""
        with self._lock:
            if not self._ended:
                self._wait_before_call()

    def read(self, limit: int | None = None) -> ShardBatch:
        """One GetRecords call: the records after the last ones handed out (maybe none), at most
        ``limit`` (default: the reader's ``limit``).

        Raises ``StreamGoneError`` (stream disabled or replaced), ``TransientError`` (throttled
        or unavailable for several attempts) or ``FatalError`` (e.g. access denied).
        """
        if limit is not None and not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"GetRecords limit must be 1..{MAX_LIMIT}, got {limit}")
        with self._lock:
            if self._ended:
                return ShardBatch([], None, None)
            self._wait_before_call()
            asked = limit or self.limit
            response = self._get_records(asked)
            if "Records" not in response:  # a garbled 200 reads as {}: never take it as the shard's end
                raise TransientError(
                    f"GetRecords {self.table} shard {self.shard_id}: DynamoDB Streams answered without "
                    "Records (nor an end of the shard); retrying later"
                )
            records: list[dict[str, Any]] = response["Records"]
            self._full = len(records) >= asked or _page_bytes(records) >= FULL_PAGE_BYTES
            self._iterator = response.get("NextShardIterator")
            self._ended = self._iterator is None
            if records:
                self._position = str(records[-1]["dynamodb"]["SequenceNumber"])
                self._active_at = self._clock()
                self._idle_reads = 0
            elif self._clock() - self._active_at >= ACTIVE_SECONDS:
                self._idle_reads += 1
            batch = ShardBatch(records, self._iterator, self._millis_behind(records))
            if batch.millis_behind is not None:
                self.metrics.iterator_age(self.table, self.shard_id, batch.millis_behind / 1000)
            return batch

    def rewind(self, sequence_number: str | None) -> None:
        """Make the next read start after ``sequence_number`` (None or TRIM_HORIZON: from the start).

        Used when records handed out were not written and must be read again.
        """
        with self._lock:
            self._position = sequence_number or TRIM_HORIZON
            self._iterator = None
            self._ended = False
            self._full = False
            self._active_at = self._clock()  # records to read again: read them at once
            self._idle_reads = 0

    def _wait_before_call(self) -> None:
        """Wait until the next call is due, counted from the start of the previous one.

        At once after a full page; 0.25 s after it (4 calls a second at most) while the shard
        returns records or is active;
        on an idle shard 0.5 s, 1 s, then 2 s (``MAX_IDLE_SECONDS``).
        """
        if self._last_call is None or self._full:
            return
        delay = min(MIN_CALL_SECONDS * 2**self._idle_reads, MAX_IDLE_SECONDS)
        remaining = self._last_call + delay - self._clock()
        if remaining > 0:
            self._sleep(remaining)

    def _get_records(self, limit: int) -> dict[str, Any]:
        for _ in range(_RECOVERIES):
            if self._iterator is None:
                self._iterator = self._new_iterator()
            self._last_call = self._clock()
            try:
                response = call_streams(
                    self.streams.get_records,
                    {"ShardIterator": self._iterator, "Limit": limit},
                    what=f"GetRecords {self.table} shard {self.shard_id}",
                    sleep=self._sleep,
                )
            except ClientError as exc:
                code = error_code(exc)
                if code == "ExpiredIteratorException":
                    log.info(
                        "%s shard %s: shard iterator expired; reading on %s",
                        self.table,
                        self.shard_id,
                        self._where(),
                        extra=self._fields(),
                    )
                    self._iterator = None
                elif code == "TrimmedDataAccessException":
                    self._lost_records(exc)
                    self._iterator = None
                else:
                    raise unreadable(exc, "GetRecords", self.stream_arn, self.shard_id) from exc
            else:
                return response
        raise TransientError(
            f"GetRecords {self.table} shard {self.shard_id}: {_RECOVERIES} new iterators in a row "
            f"expired or were trimmed after {self._position}; retrying later"
        )

    def _new_iterator(self) -> str:
        """An iterator after the last record handed out; TRIM_HORIZON if those were trimmed away."""
        request: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": self.shard_id}
        if self._position == TRIM_HORIZON:
            request["ShardIteratorType"] = TRIM_HORIZON
        else:
            request["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            request["SequenceNumber"] = self._position
        try:
            response = call_streams(
                self.streams.get_shard_iterator,
                request,
                what=f"GetShardIterator {self.table} shard {self.shard_id}",
                sleep=self._sleep,
            )
        except ClientError as exc:
            if error_code(exc) != "TrimmedDataAccessException" or self._position == TRIM_HORIZON:
                raise unreadable(exc, "GetShardIterator", self.stream_arn, self.shard_id) from exc
            self._lost_records(exc)  # moves to TRIM_HORIZON, so this recurses once at most
            return self._new_iterator()
        return str(response["ShardIterator"])

    def _lost_records(self, exc: ClientError) -> None:
        """Records past the retention are gone: tell the operator, count it, go on from the start."""
        report_lost_records(
            self.metrics,
            self.table,
            self.shard_id,
            self._position,
            why=error_code(exc),
            then="reading on from TRIM_HORIZON",
        )
        self._position = TRIM_HORIZON

    def _millis_behind(self, records: list[dict[str, Any]]) -> float | None:
        if not records:
            return None if self._ended else 0.0
        created = records[-1]["dynamodb"].get("ApproximateCreationDateTime")
        try:
            created_ms = epoch_ms(created)
        except PlanError as exc:
            log.warning(
                "%s shard %s: record %s has no usable ApproximateCreationDateTime (%s); "
                "iterator age not updated",
                self.table,
                self.shard_id,
                self._position,
                exc,
                extra=self._fields(),
            )
            return None
        return max(0.0, self._wall() * 1000 - created_ms)

    def _where(self) -> str:
        return _after(self._position)

    def _fields(self) -> dict[str, Any]:
        return {"table": self.table, "shard": self.shard_id, "seq": self._position}


def _page_bytes(records: list[dict[str, Any]]) -> int:
    """The item data of a page, by the ``SizeBytes`` DynamoDB stamps on each record."""
    return sum(int(record["dynamodb"].get("SizeBytes") or 0) for record in records)


def _after(position: str) -> str:
    if position == TRIM_HORIZON:
        return "from the start of the shard"
    return f"after sequence number {position}"


def report_lost_records(
    metrics: Metrics, table: str, shard_id: str, position: str, *, why: str, then: str
) -> None:
    """Records of a shard expired before they were read: one ERROR line saying to backfill, counted.

    ``position`` is the last sequence number read (or TRIM_HORIZON), ``why`` how the loss showed
    (an error code), ``then`` what the worker does next.
    """
    log.error(
        "%s shard %s: records %s were trimmed by the stream's 24 h retention before they were "
        "read (%s), so changes were lost; %s. "
        'Run "cdcsync backfill --table %s" to load the items that changed meanwhile',
        table,
        shard_id,
        _after(position),
        why,
        then,
        table,
        extra={"table": table, "shard": shard_id, "seq": position},
    )
    metrics.trimmed_data(table, shard_id)
