"""``cdcsync backfill``: load the items already in a table (or in an export of it) into OpenSearch.

Each scanned item becomes a synthetic stream INSERT shaped like the table's real ones
(``source/synthetic.py``: ``SizeBytes``, ``eventVersion``, whole-second time, the stream's view)
and goes through the same ``Pipeline.process`` as the stream path, so filter, where, fields, id and
version rules are those of the stream, and a backfilled document is byte-identical to one built
from a stream INSERT of the same item. Its version is ``backfill_version(scan start)``
(``read_version(export time)`` for an export), below every stream record created after the read,
so a backfill beside the live stream never overwrites a newer change (``version: attribute:<Name>``
mappings use the item's own version).

Progress lives in the checkpoint store under ``backfill|<table>``: per segment (per data file for
an export) the ``LastEvaluatedKey`` after which every item is written or dead-lettered. It is saved
after each page is written, never before, so ``--resume`` re-reads at most one page per segment.
A page whose records keep failing transiently is retried with backoff and never skipped; after
``CDCSYNC_MAX_RETRIES`` rounds the backfill stops (``BackfillStoppedError``), its checkpoint just
before that page. A new backfill (no ``--resume``) always starts over, with a new scan start.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from cdcsync.aws import aws_client, aws_error, session_region
from cdcsync.backfill.export import export_items, export_plan, find_export
from cdcsync.backfill.export_age import check_export_age
from cdcsync.backfill.progress import Progress
from cdcsync.backfill.scan import (
    MAX_TOTAL_SEGMENTS,
    MIN_SEGMENTS,
    SCAN_CLIENT_CONFIG,
    CapacityLimiter,
    SegmentScan,
    default_segments,
    encode_key,
    iso_ms,
    scan_plan,
)
from cdcsync.checkpoint import LeaseStore
from cdcsync.errors import CdcsyncError, ConfigError, FatalError
from cdcsync.log_repeats import collapsed
from cdcsync.metrics import Metrics
from cdcsync.pipeline import BatchResult, Pipeline
from cdcsync.services import Services
from cdcsync.settings import Settings
from cdcsync.sink.client import build_client
from cdcsync.source.fast_reads import with_fast_reads
from cdcsync.source.synthetic import TableStream, insert_record, table_stream
from cdcsync.versions import backfill_version, read_version

log = logging.getLogger(__name__)

EXPORT_PAGE_ITEMS = 1000
# Scan Limit: a 1 MB page of small items is ~4,000 items, ~40 MB of Python objects once parsed,
# converted and serialised, held by every segment at once. 1,000 items keep a segment near 10 MB;
# the read capacity is the same (DynamoDB bills bytes read, not calls).
DEFAULT_PAGE_ITEMS = 1000
# The loggers whose retry warnings repeat for every page and request while a service is down.
_RETRY_LOGGERS = ("cdcsync.sink.bulk", "cdcsync.backfill.run", "cdcsync.backfill.scan")
PageHook = Callable[[int, int], None]  # (segment or data file, page number): after the checkpoint


class BackfillStoppedError(FatalError):
    """The backfill stopped before finishing; its checkpoint lets ``--resume`` continue it.

    TODO(lead): move to cdcsync/errors.py next to FatalError.
    """


@dataclass
class BackfillReport:
    """What one run did (a resumed run counts only its own items)."""

    table: str
    items_read: int = 0
    written: int = 0  # indexed or deleted documents
    stale: int = 0  # a newer version was already in the index
    skipped: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    segments: int = 0
    finished: bool = False

    def add(self, result: BatchResult) -> None:
        outcomes = result.outcomes
        self.written += outcomes.get("indexed", 0) + outcomes.get("deleted", 0)
        self.stale += outcomes.get("stale", 0)
        self.skipped += outcomes.get("skipped", 0)
        self.dead_lettered += result.dead_letters


@dataclass
class _Source:
    """The table as the records need it."""

    table: str
    stream: TableStream  # what synthetic records say about the table and its stream
    item_count: int
    size_bytes: int


@dataclass
class _Run:
    """State shared by the segment threads of one run."""

    settings: Settings
    source: _Source
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

    @property
    def key(self) -> str:
        return f"backfill|{self.source.table}"

    def records(
        self, items: Sequence[Mapping[str, Any]], unit: int, page: int, first: int = 0
    ) -> list[dict[str, Any]]:
        """Synthetic Lambda-shaped INSERT records, one per item (``source/synthetic.py``).

        Their time is the version's, in whole seconds; ``write`` gives the pipeline the exact
        version, so the rounding a filter sees never lowers what the writes carry.
        """
        seconds = self.version_ms // 1000
        return [
            insert_record(
                self.source.stream,
                item,
                seconds=seconds,
                sequence=f"backfill-{unit:05d}-{page:09d}-{number:06d}",
            )
            for number, item in enumerate(items, start=first)
        ]

    def write(self, records: list[dict[str, Any]], where: str) -> int:
        """Write one page until every record is done; returns its dead letters. Never skips a record."""
        dead_letters = 0
        pending = records
        for attempt in range(self.settings.max_retries + 1):
            result = self.pipeline.process(pending, version_ms=self.version_ms)
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
            f"{self.settings.max_retries + 1} attempts (see the warnings above); the checkpoint is "
            "before this page: fix OpenSearch, then run again with --resume"
        )

    def write_page(self, items: Sequence[Mapping[str, Any]], unit: int, page: int, where: str) -> int:
        """Write a page in slices of one bulk request each: memory holds one slice of records at a time."""
        step = self.settings.bulk_max_actions
        return sum(
            self.write(self.records(items[start : start + step], unit, page, start), where)
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
            dead = self.write_page(
                page.items, segment, page.number, f"page {page.number} of segment {segment}"
            )
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


def _describe(dynamodb: Any, table: str, region: str) -> _Source:
    try:
        description = dynamodb.describe_table(TableName=table)["Table"]
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(
            exc,
            call="backfill: DescribeTable",
            resource=f"table {table}",
            permission=f"dynamodb:DescribeTable on table {table}",
            missing=f"does not exist in {region} (check --table and AWS_REGION)",
        ) from exc
    return _Source(
        table=table,
        stream=table_stream(description, region),
        item_count=int(description.get("ItemCount", 0)),
        size_bytes=int(description.get("TableSizeBytes", 0)),
    )


def build_pipeline(settings: Settings, table: str, *, session: boto3.Session, metrics: Metrics) -> Pipeline:
    """The stream path's stages (as the worker builds them), for ``table``."""
    return _pipeline(Services(settings, session=session, metrics=metrics), table)


def _pipeline(services: Services, table: str) -> Pipeline:
    mappings = services.mappings
    if not mappings.for_table(table):
        raise ConfigError(
            f"backfill: no mapping for table {table} in {services.settings.mappings} "
            f"(tables with mappings: {', '.join(mappings.tables) or 'none'})"
        )
    return services.pipeline


def run_backfill(
    settings: Settings,
    table: str,
    *,
    segments: int | None = None,
    max_rcu: float | None = None,
    resume: bool = False,
    from_export: str | None = None,
    allow_old_export: bool = False,
    session: boto3.Session | None = None,
    out: TextIO | None = None,
    metrics: Metrics | None = None,
    store: LeaseStore | None = None,
    on_page: PageHook | None = None,
    on_scan: Callable[[], None] | None = None,
    page_items: int | None = None,
    wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    services: Services | None = None,
) -> BackfillReport:
    """Backfill ``table``; see the module docstring. Raises ``ConfigError`` or ``BackfillStoppedError``.

    ``services`` is what the entry point built (``cdcsync/services.py``); without it, one is built
    from ``settings``, ``session`` and ``metrics``.
    """
    if segments is not None and not 1 <= segments <= MAX_TOTAL_SEGMENTS:
        raise ConfigError(
            f"--segments: expected a whole number from 1 to {MAX_TOTAL_SEGMENTS}, got {segments}"
        )
    if allow_old_export and from_export is None:
        raise ConfigError("--allow-old-export: only meaningful with --from-export s3://BUCKET/PREFIX")
    services = services or Services(settings, session=session, metrics=metrics)
    session = services.session
    metrics = services.metrics
    out = out if out is not None else sys.stderr  # the stderr of now, not of import time
    started = clock()
    dynamodb = aws_client(session, "dynamodb", config=SCAN_CLIENT_CONFIG)
    source = _describe(dynamodb, table, session_region(session))
    pipeline = _pipeline(services, table)
    # Before a scan that could take hours: an OpenSearch that does not answer now ends the run at
    # once, with one line, instead of retrying every page through the whole retry budget.
    target = services.target
    table_mappings = pipeline.mappings.for_table(table)
    target.check_reachable(table_mappings, f"backfill of {table}")
    target.check_writes(table_mappings, f"backfill of {table}")
    worker = f"backfill-{socket.gethostname()}-{os.getpid()}"
    store = store or services.lease_store(worker)
    key = f"backfill|{table}"
    previous = store.load_progress(key)
    report = BackfillReport(table)
    if resume and previous is not None and previous.get("finished"):
        log.info(
            "backfill of %s finished at %s; nothing to resume (run without --resume to start over)",
            table, previous.get("finished_at"),
        )  # fmt: skip
        report.finished = True
        return report
    if from_export is not None:
        return _run_export(
            settings, source, from_export, previous=previous, resume=resume, segments=segments,
            session=session, pipeline=pipeline, store=store, metrics=metrics, out=out, on_page=on_page,
            clock=clock, sleep=sleep, started=started, max_rcu=max_rcu, allow_old=allow_old_export,
            now_ms=wall_ms(),
        )  # fmt: skip
    default = default_segments(source.size_bytes, source.item_count)
    state, todo = scan_plan(
        table, previous, resume=resume, segments=segments, default=default, wall_ms=wall_ms
    )
    store.save_progress(key, state)
    report.segments = state["total_segments"]
    progress = Progress(table, out, total=source.item_count, clock=clock)
    version = backfill_version(state["scan_start_ms"])
    run = _Run(settings, source, pipeline, store, metrics, progress, state, version, sleep, on_page, report)
    limiter = CapacityLimiter(max_rcu, clock=clock, sleep=sleep) if max_rcu is not None else None
    log.info(
        "backfill of %s: %s %d of %d segments, version %d (scan start %s)%s",
        table, "resuming" if resume and previous else "scanning", len(todo), state["total_segments"],
        run.version_ms, iso_ms(state["scan_start_ms"]), f", at most {max_rcu:g} RCU/s" if max_rcu else "",
    )  # fmt: skip

    # One connection per segment thread; Scan pages parsed by cdcsync unless CDCSYNC_AWS_FAST_READS=false.
    scanner = with_fast_reads(
        aws_client(session, "dynamodb", config=SCAN_CLIENT_CONFIG, pool=max(1, len(todo))),
        enabled=settings.aws_fast_reads,
    )

    def one(segment: int, start: dict[str, Any] | None) -> Callable[[], None]:
        total = state["total_segments"]
        items = page_items or DEFAULT_PAGE_ITEMS
        scan = SegmentScan(scanner, table, segment, total, start, limiter, sleep, on_scan, items)
        return lambda: run.scan_segment(scan)

    _run_parallel(run, [one(segment, start) for segment, start in todo], len(todo))
    return _finish(run, started, clock)


def _run_export(
    settings: Settings,
    source: _Source,
    url: str,
    *,
    previous: dict[str, Any] | None,
    resume: bool,
    segments: int | None,
    session: boto3.Session,
    pipeline: Pipeline,
    store: LeaseStore,
    metrics: Metrics,
    out: TextIO,
    on_page: PageHook | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    started: float,
    max_rcu: float | None,
    allow_old: bool,
    now_ms: int,
) -> BackfillReport:
    """Load an export instead of scanning: one task per data file, ``segments`` files at a time."""
    s3 = aws_client(session, "s3")
    manifest = find_export(s3, url, source.table)
    table = source.table
    targets = [mapping.index for mapping in pipeline.mappings.for_table(table)]
    check_export_age(
        manifest.url, manifest.export_time_ms, table, targets, build_client(settings, session=session),
        now_ms=now_ms, allow_old=allow_old,
    )  # fmt: skip
    state, todo = export_plan(table, manifest, previous, resume=resume, now_ms=now_ms)
    store.save_progress(f"backfill|{table}", state)
    workers = segments or MIN_SEGMENTS
    report = BackfillReport(table, segments=workers)
    progress = Progress(table, out, total=manifest.item_count, clock=clock)
    version = read_version(manifest.export_time_ms)
    run = _Run(settings, source, pipeline, store, metrics, progress, state, version, sleep, on_page, report)
    log.info(
        "backfill of %s: loading %d of %d data files of %s with %d workers, version %d (export time %s)%s",
        table, len(todo), len(manifest.data_keys), manifest.url, workers, version,
        iso_ms(manifest.export_time_ms), "; --max-rcu ignored (no reads)" if max_rcu else "",
    )  # fmt: skip

    def one(unit: int, skip: int) -> Callable[[], None]:
        return lambda: run.load_file(s3, manifest.bucket, unit, manifest.data_keys[unit], skip)

    _run_parallel(run, [one(unit, skip) for unit, skip in todo], workers)
    return _finish(run, started, clock)


def _run_parallel(run: _Run, tasks: list[Callable[[], None]], workers: int) -> None:
    """Run the tasks in threads; on the first failure or Ctrl-C, let the others finish their page.

    While OpenSearch or DynamoDB is down every segment retries alike: each kind of retry warning is
    logged once per 30 s with how many alike were left out (``log_repeats``), not once per request.
    """
    if not tasks:
        return
    with collapsed(*_RETRY_LOGGERS):
        _run_pool(run, tasks, workers)


def _run_pool(run: _Run, tasks: list[Callable[[], None]], workers: int) -> None:
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="backfill")
    futures: list[Future[None]] = [pool.submit(task) for task in tasks]
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    except KeyboardInterrupt:
        run.stop.set()
        log.warning("backfill of %s: interrupted; finishing the pages in flight", run.source.table)
        pool.shutdown(wait=True)
        raise
    errors = [future.exception() for future in done if future.exception() is not None]
    if errors:
        run.stop.set()
    pool.shutdown(wait=True)
    errors += [
        future.exception() for future in futures if future not in done and future.exception() is not None
    ]
    if errors:
        first = errors[0]
        run.progress.close()
        if isinstance(first, CdcsyncError):
            raise first
        raise BackfillStoppedError(
            f"backfill of {run.source.table} stopped: {first!r}; run again with --resume"
        ) from first


def _finish(run: _Run, started: float, clock: Callable[[], float]) -> BackfillReport:
    run.progress.close(finished=True)
    report = run.report
    report.seconds = clock() - started
    report.finished = True
    now = time.time_ns() // 1_000_000
    with run.lock:
        run.state.update(finished=True, finished_at=iso_ms(now), last_run_seconds=round(report.seconds, 3))
        run.store.save_progress(run.key, run.state)
    return report  # the caller reports it (the CLI prints it once): the progress line said 100%
