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

With ``--run-id`` the backfill is a run that any number of processes share (``shared.py``): its
units are claimed in the checkpoint store (``units.py``), not kept under ``backfill|<table>``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, TextIO

import boto3

from cdcsync.aws import aws_client, session_region
from cdcsync.backfill.export import export_plan, find_export
from cdcsync.backfill.export_age import check_export_age
from cdcsync.backfill.pages import (
    DEFAULT_PAGE_ITEMS,
    RETRY_LOGGERS,
    BackfillReport,
    BackfillStoppedError,
    PageHook,
    Run,
    Source,
)
from cdcsync.backfill.progress import Progress
from cdcsync.backfill.scan import (
    MAX_SEGMENTS,
    MAX_TOTAL_SEGMENTS,
    MIN_SEGMENTS,
    SCAN_CLIENT_CONFIG,
    CapacityLimiter,
    SegmentScan,
    default_segments,
    iso_ms,
    scan_plan,
)
from cdcsync.backfill.shared import run_shared
from cdcsync.checkpoint import LeaseStore
from cdcsync.errors import CdcsyncError, ConfigError
from cdcsync.garbage import paced_collection
from cdcsync.log_repeats import collapsed
from cdcsync.metrics import Metrics
from cdcsync.pipeline import Pipeline
from cdcsync.services import Services
from cdcsync.settings import Settings
from cdcsync.sink.client import build_client
from cdcsync.source.fast_reads import with_fast_reads
from cdcsync.source.synthetic import for_mappings, table_stream
from cdcsync.source.tables import table_description
from cdcsync.versions import backfill_version, read_version

log = logging.getLogger(__name__)

MAX_RUN_ID = 100  # characters
MAX_PAGE_ITEMS = 10_000  # a Scan page is at most 1 MB anyway
MAX_WORKERS = 256  # threads of one process; more machines, not more threads, for more throughput


def _describe(dynamodb: Any, table: str, region: str) -> Source:
    description = table_description(
        dynamodb, table, who="backfill", missing=f"does not exist in {region} (check --table and AWS_REGION)"
    )
    return Source(
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
    run_id: str | None = None,
    workers: int | None = None,
    stop: threading.Event | None = None,
) -> BackfillReport:
    """Backfill ``table``; see the module docstring. Raises ``ConfigError`` or ``BackfillStoppedError``.

    ``services`` is what the entry point built (``cdcsync/services.py``); without it, one is built
    from ``settings``, ``session`` and ``metrics``. ``run_id``: join that run, shared with any
    number of processes, with ``workers`` threads, until its units are done or ``stop`` is set
    (``shared.py``).
    """
    if segments is not None and not 1 <= segments <= MAX_TOTAL_SEGMENTS:
        raise ConfigError(
            f"--segments: expected a whole number from 1 to {MAX_TOTAL_SEGMENTS}, got {segments}"
        )
    if page_items is not None and not 1 <= page_items <= MAX_PAGE_ITEMS:
        raise ConfigError(
            f"--page-items: expected a whole number from 1 to {MAX_PAGE_ITEMS}, got {page_items}"
        )
    if allow_old_export and from_export is None:
        raise ConfigError("--allow-old-export: only meaningful with --from-export s3://BUCKET/PREFIX")
    _check_shared(run_id, workers=workers, resume=resume)
    services = services or Services(settings, session=session, metrics=metrics)
    session = services.session
    metrics = services.metrics
    out = out if out is not None else sys.stderr  # the stderr of now, not of import time
    started = clock()
    dynamodb = aws_client(session, "dynamodb", config=SCAN_CLIENT_CONFIG)
    source = _describe(dynamodb, table, session_region(session))
    pipeline = _pipeline(services, table)
    source.stream = for_mappings(source.stream, pipeline.mappings.for_table(table))
    # Before a scan that could take hours: an OpenSearch that does not answer now ends the run at
    # once, with one line, instead of retrying every page through the whole retry budget.
    target = services.target
    table_mappings = pipeline.mappings.for_table(table)
    target.check_reachable(table_mappings, f"backfill of {table}")
    target.check_writes(table_mappings, f"backfill of {table}")
    worker = f"backfill-{socket.gethostname()}-{os.getpid()}"
    store = store or services.lease_store(worker)
    if run_id is not None:
        return run_shared(
            settings, source, run_id=run_id, worker=worker, session=session,
            dynamodb=_scanner(settings, session, threads=workers or MAX_SEGMENTS),
            pipeline=pipeline, store=store, metrics=metrics, out=out, segments=segments, workers=workers,
            from_export=from_export, allow_old=allow_old_export, max_rcu=max_rcu, page_items=page_items,
            on_page=on_page, on_scan=on_scan, stop=stop or threading.Event(), wall_ms=wall_ms, clock=clock,
            sleep=sleep,
        )  # fmt: skip
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
    run = Run(settings, source, pipeline, store, metrics, progress, state, version, sleep, on_page, report)
    limiter = CapacityLimiter(max_rcu, clock=clock, sleep=sleep) if max_rcu is not None else None
    log.info(
        "backfill of %s: %s %d of %d segments, version %d (scan start %s)%s",
        table, "resuming" if resume and previous else "scanning", len(todo), state["total_segments"],
        run.version_ms, iso_ms(state["scan_start_ms"]), f", at most {max_rcu:g} RCU/s" if max_rcu else "",
    )  # fmt: skip

    scanner = _scanner(settings, session, threads=len(todo))

    def one(segment: int, start: dict[str, Any] | None) -> Callable[[], None]:
        total = state["total_segments"]
        items = page_items or DEFAULT_PAGE_ITEMS
        scan = SegmentScan(scanner, table, segment, total, start, limiter, sleep, on_scan, items)
        return lambda: run.scan_segment(scan)

    _run_parallel(run, [one(segment, start) for segment, start in todo], len(todo))
    return _finish(run, started, clock)


def _scanner(settings: Settings, session: boto3.Session, *, threads: int) -> Any:
    """The Scan client: one connection per segment thread; pages parsed by cdcsync unless
    ``CDCSYNC_AWS_FAST_READS=false``."""
    client = aws_client(session, "dynamodb", config=SCAN_CLIENT_CONFIG, pool=max(1, threads))
    return with_fast_reads(client, enabled=settings.aws_fast_reads)


def _check_shared(run_id: str | None, *, workers: int | None, resume: bool) -> None:
    if run_id is None:
        if workers is not None:
            raise ConfigError(
                "--workers: only meaningful with --run-id (without it every segment runs at once)"
            )
        return
    if resume:
        raise ConfigError(f"--resume: not with --run-id; joining run {run_id} again continues it")
    if not run_id or len(run_id) > MAX_RUN_ID or any(not (c.isalnum() or c in "-_.") for c in run_id):
        raise ConfigError(f'--run-id: expected 1 to 100 letters, digits, "-", "_" or ".", got "{run_id}"')
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: expected a whole number from 1 to {MAX_WORKERS}, got {workers}")


def _run_export(
    settings: Settings,
    source: Source,
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
    run = Run(settings, source, pipeline, store, metrics, progress, state, version, sleep, on_page, report)
    log.info(
        "backfill of %s: loading %d of %d data files of %s with %d workers, version %d (export time %s)%s",
        table, len(todo), len(manifest.data_keys), manifest.url, workers, version,
        iso_ms(manifest.export_time_ms), "; --max-rcu ignored (no reads)" if max_rcu else "",
    )  # fmt: skip

    def one(unit: int, skip: int) -> Callable[[], None]:
        return lambda: run.load_file(s3, manifest.bucket, unit, manifest.data_keys[unit], skip)

    _run_parallel(run, [one(unit, skip) for unit, skip in todo], workers)
    return _finish(run, started, clock)


def _run_parallel(run: Run, tasks: list[Callable[[], None]], workers: int) -> None:
    """Run the tasks in threads; on the first failure or Ctrl-C, let the others finish their page.

    While OpenSearch or DynamoDB is down every segment retries alike: each kind of retry warning is
    logged once per 30 s with how many alike were left out (``log_repeats``), not once per request.
    The garbage collector runs on a timer meanwhile (``cdcsync/garbage.py``).
    """
    if not tasks:
        return
    with collapsed(*RETRY_LOGGERS), paced_collection():
        _run_pool(run, tasks, workers)


def _run_pool(run: Run, tasks: list[Callable[[], None]], workers: int) -> None:
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


def _finish(run: Run, started: float, clock: Callable[[], float]) -> BackfillReport:
    run.progress.close(finished=True)
    report = run.report
    report.seconds = clock() - started
    report.finished = True
    now = time.time_ns() // 1_000_000
    with run.lock:
        run.state.update(finished=True, finished_at=iso_ms(now), last_run_seconds=round(report.seconds, 3))
        run.store.save_progress(run.key, run.state)
    return report  # the caller reports it (the CLI prints it once): the progress line said 100%
