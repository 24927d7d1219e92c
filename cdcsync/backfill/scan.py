"""Parallel scan of one DynamoDB table: segments, shared read-capacity limit, throttling backoff.

Decisions:
- Default segment count: one per GiB of table data or per 100,000 items, whichever asks for more,
  at least ``MIN_SEGMENTS`` and at most ``MAX_SEGMENTS``. The floor is 4, not 1: a segment's thread
  waits on DynamoDB, then converts, then waits on OpenSearch; four threads keep both sides busy even
  for a small table, at the cost of a few extra near-empty Scan calls. (DescribeTable's sizes are
  refreshed only every ~6 hours, so a fresh table reports 0 anyway.) 16 is the ceiling because more
  threads than that only contend for the GIL and the bulk endpoint; ``--segments`` overrides both.
- No ``ConsistentRead``: an eventually consistent read costs half, and the versions, not the read,
  decide races with live changes (a write the scan missed arrives through the stream with a
  higher version).
- The capacity limit is a shared token bucket in read capacity units, refilled at ``R`` per second
  with one second of burst. A segment reserves the expected cost of its next page (a moving average
  of what pages cost), waits off any debt, and settles with the page's real ``ConsumedCapacity``
  afterwards; reservations are serialised, so 16 segments cannot all start at once on a full bucket.
  With a limit, pages are also cut (``Limit``) to about one second's share per segment.
- Throttling: botocore's standard retry mode retries ``ProvisionedThroughputExceededException`` a
  few times; after that each segment backs off on its own (full jitter, bounded), and pauses the
  shared bucket so the other segments back off too.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cdcsync.aws import THROTTLING_CODES, aws_error, describe_failure, error_code, is_transient
from cdcsync.errors import ConfigError, TransientError
from cdcsync.source.fast_reads import FastReads

log = logging.getLogger(__name__)

MIN_SEGMENTS = 4
MAX_TOTAL_SEGMENTS = 1_000_000  # DynamoDB's limit on TotalSegments
MAX_SEGMENTS = 16
BYTES_PER_SEGMENT = 1 << 30
ITEMS_PER_SEGMENT = 100_000
# A 1 MB Scan page takes well under a second on DynamoDB; the long read timeout is for emulators
# (moto needs ~10 s per page per segment, and longer with several segments at once).
SCAN_CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=120, retries={"mode": "standard", "total_max_attempts": 4}
)
THROTTLE_ATTEMPTS = 8
_FIRST_PAGE_LIMIT = 100  # with a capacity limit: a small first page to learn what items cost
_MAX_PAGE_LIMIT = 1000
_SMOOTHING = 0.3  # weight of the newest page in the moving average of page costs


def default_segments(table_size_bytes: int, item_count: int) -> int:
    """Segments for a table of this size (see the module docstring)."""
    wanted = max(math.ceil(table_size_bytes / BYTES_PER_SEGMENT), math.ceil(item_count / ITEMS_PER_SEGMENT))
    return max(MIN_SEGMENTS, min(MAX_SEGMENTS, wanted))


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC, for progress records and log lines."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def scan_plan(
    table: str,
    previous: dict[str, Any] | None,
    *,
    resume: bool,
    segments: int | None,
    default: int,
    wall_ms: Callable[[], int],
) -> tuple[dict[str, Any], list[tuple[int, dict[str, Any] | None]]]:
    """The progress record to run with, and the unfinished segments with their start keys."""
    if resume and previous is not None:
        if previous.get("kind") != "scan":
            raise ConfigError(
                f"--resume: the stored backfill of {table} loads an export ({previous.get('export')}), "
                "not a scan; run with --from-export to resume it, or without --resume to start over"
            )
        total = int(previous["total_segments"])
        if segments is not None and segments != total:
            log.warning(
                "backfill of %s: --segments %d ignored: resuming with its %d segments", table, segments, total
            )
        todo = [
            (int(unit), decode_key(part["next_key"]) if part.get("next_key") else None)
            for unit, part in sorted(previous["parts"].items(), key=lambda entry: int(entry[0]))
            if not part.get("done")
        ]
        return previous, todo
    if resume:
        log.info("backfill of %s: no backfill to resume; starting a new one", table)
    elif previous is not None:
        what = "finished" if previous.get("finished") else "unfinished"
        log.info(
            "backfill of %s: starting over (the %s backfill started at %s had read %d items; "
            "use --resume to continue an unfinished one)",
            table, what, previous.get("started_at"), previous.get("items_read", 0),
        )  # fmt: skip
    total = segments or default
    scan_start = wall_ms()  # before the first Scan call
    state: dict[str, Any] = {
        "kind": "scan",
        "scan_start_ms": scan_start,
        "started_at": iso_ms(scan_start),
        "total_segments": total,
        "items_read": 0,
        "finished": False,
        "parts": {str(unit): {"next_key": None, "done": False} for unit in range(total)},
    }
    return state, [(unit, None) for unit in range(total)]


def encode_key(key: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """A ``LastEvaluatedKey`` as JSON: S and N as they are, B (bytes from boto3) as base64 text."""
    encoded: dict[str, dict[str, str]] = {}
    for name, value in key.items():
        (kind, raw), *rest = value.items()
        if rest or kind not in ("S", "N", "B"):
            raise ValueError(f"key attribute {name}: expected one S, N or B value, got {value!r}")
        encoded[name] = {kind: base64.b64encode(raw).decode("ascii") if kind == "B" else str(raw)}
    return encoded


def decode_key(encoded: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, Any]]:
    """The exact ``ExclusiveStartKey`` that ``encode_key`` was given (binary back to bytes)."""
    return {
        name: {kind: base64.b64decode(text) if kind == "B" else text for kind, text in value.items()}
        for name, value in encoded.items()
    }


class CapacityLimiter:
    """A token bucket of read capacity units shared by every segment (thread-safe)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"--max-rcu: expected a number > 0, got {rate:g}")
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._tokens = rate  # one second of burst
        self._updated = clock()
        self._page_cost = 1.0  # moving average of what one page costs
        self._item_cost: float | None = None  # moving average of what one item costs

    def acquire(self) -> float:
        """Reserve the expected cost of the next page and wait until the bucket can pay; returns it."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.rate, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            reserved = self._page_cost
            self._tokens -= reserved
            wait = max(0.0, -self._tokens / self.rate)
        if wait > 0:
            self.sleep(wait)
        return reserved

    def settle(self, reserved: float, consumed: float, items: int) -> None:
        """Correct the reservation by what the page really consumed, and learn page and item costs."""
        with self._lock:
            self._tokens += reserved - consumed
            self._page_cost += _SMOOTHING * (consumed - self._page_cost)
            if items:
                cost = consumed / items
                previous = self._item_cost
                self._item_cost = cost if previous is None else previous + _SMOOTHING * (cost - previous)

    def pause(self, seconds: float) -> None:
        """Throttled: take ``seconds`` of capacity away from every segment."""
        with self._lock:
            self._tokens = min(self._tokens, 0.0) - seconds * self.rate

    def page_limit(self, segments: int) -> int:
        """``Limit`` for the next page: about one second's share of the rate for one segment."""
        with self._lock:
            item_cost = self._item_cost
        if item_cost is None:
            return _FIRST_PAGE_LIMIT
        share = self.rate / max(1, segments)
        return max(1, min(_MAX_PAGE_LIMIT, int(share / item_cost) if item_cost > 0 else _MAX_PAGE_LIMIT))


@dataclass(frozen=True, slots=True)
class Page:
    """One Scan answer of one segment."""

    segment: int
    number: int  # 0-based, counted from where this run started the segment
    items: list[dict[str, Any]]
    last_key: dict[str, Any] | None  # None: the segment is finished
    consumed: float
    # Items in Lambda's shape already (binaries as base64 text): read by ``FastReads``, whose Scan
    # answers are parsed as DynamoDB sent them; botocore's hold bytes (``synthetic.insert_records``).
    lambda_shaped: bool = False


@dataclass
class SegmentScan:
    """Reads one segment page by page, from ``start_key`` (a resumed segment) or its beginning."""

    dynamodb: Any  # a low-level boto3 DynamoDB client
    table: str
    segment: int
    total_segments: int
    start_key: dict[str, Any] | None = None
    limiter: CapacityLimiter | None = None
    sleep: Callable[[float], None] = time.sleep
    on_scan: Callable[[], None] | None = None  # called before each Scan (tests count calls)
    page_items: int | None = None  # Limit per Scan (tables of huge items; tests), else DynamoDB's 1 MB
    rerun: str = "run again with --resume"  # how the backfill is continued (a shared run is joined again)
    # One Scan ahead of the caller (a process's own run). A shared run's units read none ahead: a
    # process killed mid-unit has then scanned no further than the page it was writing, which is all
    # the unit's next owner repeats.
    read_ahead: bool = True

    def pages(self) -> Iterator[Page]:
        """The segment's pages in order, one Scan ahead: the next page is asked for as soon as this
        one's ``LastEvaluatedKey`` is known, while the caller writes this one, so a segment waits on
        DynamoDB and on OpenSearch at once instead of in turn. Nothing of the page read ahead is
        checkpointed before it is yielded and written; a run stopped meanwhile reads it again.
        Closed early (a stop, a lost claim), it does not wait for the Scan read ahead (which may be
        backing off from throttling): the caller releases its unit at once; the page is dropped.
        Without ``read_ahead``, each page is asked for when the caller wants it."""
        if not self.read_ahead:
            yield from self._pages_in_turn()
            return
        ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"scan-ahead-{self.segment}")
        future = ahead.submit(self._page, self.start_key, 0)
        try:
            while True:
                page = future.result()
                if page.last_key is not None:
                    future = ahead.submit(self._page, page.last_key, page.number + 1)
                yield page
                if page.last_key is None:
                    return
        finally:
            future.cancel()
            ahead.shutdown(wait=False)

    def _pages_in_turn(self) -> Iterator[Page]:
        key, number = self.start_key, 0
        while True:
            page = self._page(key, number)
            yield page
            if page.last_key is None:
                return
            key, number = page.last_key, number + 1

    def _page(self, key: dict[str, Any] | None, number: int) -> Page:
        request: dict[str, Any] = {
            "TableName": self.table,
            "Segment": self.segment,
            "TotalSegments": self.total_segments,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if key is not None:
            request["ExclusiveStartKey"] = key
        reserved = 0.0
        if self.limiter is not None:
            request["Limit"] = self.limiter.page_limit(self.total_segments)
            reserved = self.limiter.acquire()
        if self.page_items is not None:
            request["Limit"] = min(request.get("Limit", self.page_items), self.page_items)
        answer = self._scan(request)
        items: list[dict[str, Any]] = answer["Items"]
        consumed = float(answer.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0))
        if self.limiter is not None:
            self.limiter.settle(reserved, consumed, len(items))
        shaped = isinstance(self.dynamodb, FastReads)
        return Page(self.segment, number, items, answer.get("LastEvaluatedKey"), consumed, shaped)

    def _scan(self, request: dict[str, Any]) -> dict[str, Any]:
        where = f"segment {self.segment} of {self.total_segments} of table {self.table}"
        for attempt in range(THROTTLE_ATTEMPTS):
            if self.on_scan is not None:
                self.on_scan()
            # Throttled, the connection lost or timed out after botocore's own retries, or an answer
            # without Items (a garbled 200 reads as {} through botocore: taken as it was, the segment
            # would look finished): one blip should not end an hours-long backfill, so each gets a
            # bounded backoff.
            wait = random.uniform(0, min(20.0, 0.5 * 2**attempt))  # noqa: S311 - jitter, not crypto
            try:
                answer: dict[str, Any] = self.dynamodb.scan(**request)
            except (ClientError, BotoCoreError) as exc:
                if not is_transient(exc):
                    raise aws_error(
                        exc, call="Scan", resource=where, permission=f"dynamodb:Scan on table {self.table}"
                    ) from exc
                if error_code(exc) in THROTTLING_CODES:
                    log.warning(
                        "DynamoDB throttled the scan of %s (%s); waiting %.1f s", where, error_code(exc), wait
                    )
                    if self.limiter is not None:
                        self.limiter.pause(wait)
                else:
                    log.warning("cannot scan %s (%s); retrying in %.1f s", where, describe_failure(exc), wait)
            else:
                if "Items" in answer:
                    return answer
                log.warning("the scan of %s answered without Items; retrying in %.1f s", where, wait)
            self.sleep(wait)
        raise TransientError(
            f"DynamoDB kept throttling or failing the scan of {where} after {THROTTLE_ATTEMPTS} attempts; "
            f"lower --max-rcu or raise the table's read capacity, then {self.rerun}"
        )
