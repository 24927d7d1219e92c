"""Writing one page of a backfill: synthetic records, retries until written, the checkpoint after.

``Run`` is the state the threads of one backfill share (the table, the pipeline, the version every
write carries, the report); ``run.py`` drives it over segments or data files of one process,
``shared.py`` over the units of a run that several processes share (``units.py``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdcsync.backfill.export import export_items
from cdcsync.backfill.progress import Progress
from cdcsync.backfill.scan import SegmentScan, encode_key
from cdcsync.checkpoint import LeaseStore
from cdcsync.errors import FatalError
from cdcsync.metrics import Metrics
from cdcsync.pipeline import BatchResult, Pipeline
from cdcsync.settings import Settings
from cdcsync.source.synthetic import TableStream, insert_records

log = logging.getLogger("cdcsync.backfill.run")  # the logger operators and log_repeats know

EXPORT_PAGE_ITEMS = 1000
# Scan Limit: a 1 MB page of small items is ~4,000 items, ~40 MB of Python objects once parsed,
# converted and serialised, held by every segment at once. 1,000 items keep a segment near 10 MB;
# the read capacity is the same (DynamoDB bills bytes read, not calls).
DEFAULT_PAGE_ITEMS = 1000
# The loggers whose retry warnings repeat for every page and request while a service is down.
RETRY_LOGGERS = ("cdcsync.sink.bulk", "cdcsync.backfill.run", "cdcsync.backfill.scan")
PageHook = Callable[[int, int], None]  # (segment or data file, page number): after the checkpoint
Deadline = Callable[[], float]  # the clock() time by which a write attempt's requests must end


class BackfillStoppedError(FatalError):
    """The backfill stopped before finishing; its checkpoint lets ``--resume`` continue it.

    TODO(lead): move to cdcsync/errors.py next to FatalError.
    """


@dataclass(kw_only=True)
class WriteCounts:
    """Items read and what their writes came to: a run's (``BackfillReport``) or one export file's."""

    items_read: int = 0
    written: int = 0  # indexed or deleted documents
    stale: int = 0  # a newer version was already in the index
    skipped: int = 0
    dead_lettered: int = 0

    def add(self, result: BatchResult) -> None:
        outcomes = result.outcomes
        self.written += outcomes.get("indexed", 0) + outcomes.get("deleted", 0)
        self.stale += outcomes.get("stale", 0)
        self.skipped += outcomes.get("skipped", 0)
        self.dead_lettered += result.dead_letters


@dataclass
class BackfillReport(WriteCounts):
    """What one run did (a resumed run counts only its own items)."""

    table: str
    seconds: float = 0.0
    segments: int = 0
    finished: bool = False


@dataclass
class Source:
    """The table as the records need it."""

    table: str
    stream: TableStream  # what synthetic records say about the table and its stream
    item_count: int
    size_bytes: int


@dataclass
class Run:
    """State shared by the segment threads of one run."""

    settings: Settings
    source: Source
    pipeline: Pipeline
    store: LeaseStore
    metrics: Metrics
    progress: Progress
    state: dict[str, Any]
    version_ms: int
    sleep: Callable[[float], None]
    on_page: PageHook | None
    report: BackfillReport
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # How a stopped run is continued, in its error (a shared run refuses --resume: it is joined again).
    rerun: str = "the checkpoint is before this page: fix OpenSearch, then run again with --resume"

    @property
    def key(self) -> str:
        return f"backfill|{self.source.table}"

    def records(
        self,
        items: Sequence[Mapping[str, Any]],
        unit: int,
        page: int,
        first: int = 0,
        *,
        shaped: bool = False,
    ) -> list[dict[str, Any]]:
        """Synthetic Lambda-shaped INSERT records, one per item (``source/synthetic.py``); ``shaped``:
        the items are in Lambda's shape already (``scan.Page.lambda_shaped``) and are used as they are.

        Their time is the version's, in whole seconds; ``write`` gives the pipeline the exact
        version, so the rounding a filter sees never lowers what the writes carry.
        """
        prefix = f"backfill-{unit:05d}-{page:09d}-"
        return insert_records(
            self.source.stream,
            items,
            seconds=self.version_ms // 1000,
            sequences=(f"{prefix}{number:06d}" for number in range(first, first + len(items))),
            shaped=shaped,
        )

    def write(self, records: list[dict[str, Any]], where: str, deadline: Deadline | None = None) -> int:
        """Write one page until every record is done; returns its dead letters. Never skips a record.

        ``deadline`` (a shared run's unit): asked before every attempt for the ``clock()`` time by
        which the attempt's requests must end; it raises ``LeaseLostError`` once the claim is gone.
        """
        dead_letters = 0
        pending = records
        for attempt in range(self.settings.max_retries + 1):
            ends = deadline() if deadline is not None else None
            result = self.pipeline.process(pending, version_ms=self.version_ms, deadline=ends)
            with self.lock:
                self.report.add(result)
            dead_letters += result.dead_letters
            if result.retry_from is None:
                return dead_letters
            pending = pending[result.retry_from :]
            if self.stop.is_set():
                break
            wait_seconds = random.uniform(0, min(30.0, 2.0**attempt))  # noqa: S311 - jitter, not crypto
            log.warning(
                "backfill of %s: %d records of %s failed transiently (first %s); retrying in %.1f s",
                self.source.table, len(pending), where, result.retry_sequence_number, wait_seconds,
            )  # fmt: skip
            self.sleep(wait_seconds)
        raise BackfillStoppedError(
            f"backfill of {self.source.table}: {len(pending)} records of {where} still failing after "
            f"{self.settings.max_retries + 1} attempts (see the warnings above); {self.rerun}"
        )

    def write_page(
        self,
        items: Sequence[Mapping[str, Any]],
        unit: int,
        page: int,
        where: str,
        deadline: Deadline | None = None,
        *,
        shaped: bool = False,
    ) -> int:
        """Write a page in slices of one bulk request each: memory holds one slice of records at a time."""
        step = self.settings.bulk_max_actions
        return sum(
            self.write(
                self.records(items[start : start + step], unit, page, start, shaped=shaped), where, deadline
            )
            for start in range(0, len(items), step)
        )

    def page_done(self, unit: int, page: int, items: int, dead_letters: int, update: dict[str, Any]) -> None:
        """Checkpoint after a written page, then count it."""
        with self.lock:
            self.state["parts"][str(unit)].update(update)
            self.state["items_read"] = self.state.get("items_read", 0) + items
            self.report.items_read += items
            self.store.save_progress(self.key, self.state)
        self.metrics.backfill_items(self.source.table, items)
        self.progress.add(items, dead_letters)
        if self.on_page is not None:
            self.on_page(unit, page)

    def scan_segment(self, scan: SegmentScan) -> None:
        """Scan one segment from its start key, writing and checkpointing page by page."""
        segment = scan.segment
        for page in scan.pages():
            where = f"page {page.number} of segment {segment}"
            dead = self.write_page(page.items, segment, page.number, where, shaped=page.lambda_shaped)
            last = encode_key(page.last_key) if page.last_key is not None else None
            self.page_done(
                segment, page.number, len(page.items), dead, {"next_key": last, "done": last is None}
            )
            if self.stop.is_set():
                return

    def load_file(self, s3: Any, bucket: str, unit: int, key: str, skip: int) -> None:
        """Load one export data file, skipping the ``skip`` items a previous run wrote."""
        done = 0
        for number, items in enumerate(export_items(s3, bucket, key, EXPORT_PAGE_ITEMS)):
            fresh = items[max(0, skip - done) :]
            done += len(items)
            where = f"page {number} of s3://{bucket}/{key}"
            dead = self.write_page(fresh, unit, number, where)
            self.page_done(unit, number, len(fresh), dead, {"items_done": done})
            if self.stop.is_set():
                return
        self.page_done(unit, -1, 0, 0, {"items_done": done, "done": True})
