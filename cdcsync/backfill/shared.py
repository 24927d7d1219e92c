"""``cdcsync backfill --run-id ID``: this process joins a run that any number of processes share.

The first process to name a run creates it (``units.py``): its units (``--segments`` scan segments,
or the export's data files), its one version (the scan start's ``backfill_version``, or the export
time's ``read_version``) and the item count the status estimates against. A later joiner uses the
stored ones (a different ``--segments`` is ignored with a warning; another table or another export
is refused). Each process then works ``--workers`` units at a time, one thread each: it claims a
unit nobody holds, reads it page by page from its saved position, writes each page, then
checkpoints it conditional on the claim. A renewer thread writes every held claim every third of
the lease period. When no unit is free, a thread waits (a process whose owner died loses its units
after ``CDCSYNC_LEASE_SECONDS``, and a waiting process takes them over) until every unit is done,
by anyone: then the process has finished (exit 0). Told to stop (SIGTERM, Ctrl-C) or failing, it
finishes its pages in flight, releases its claims (the position kept; another process takes them
at once) and reports the run unfinished (exit 1). ``--max-rcu`` limits each process: a run of N
processes reads up to N times it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, TextIO

import boto3

from cdcsync.aws import aws_client
from cdcsync.backfill.export import export_items, find_export
from cdcsync.backfill.export_age import check_export_age
from cdcsync.backfill.pages import (
    DEFAULT_PAGE_ITEMS,
    EXPORT_PAGE_ITEMS,
    RETRY_LOGGERS,
    BackfillReport,
    BackfillStoppedError,
    PageHook,
    Run,
    Source,
)
from cdcsync.backfill.progress import Progress
from cdcsync.backfill.scan import (
    MIN_SEGMENTS,
    CapacityLimiter,
    SegmentScan,
    decode_key,
    default_segments,
    encode_key,
    iso_ms,
)
from cdcsync.backfill.units import Claim, UnitClaims
from cdcsync.checkpoint import LeaseLostError, LeaseStore
from cdcsync.errors import CdcsyncError, ConfigError
from cdcsync.garbage import paced_collection
from cdcsync.log_repeats import collapsed
from cdcsync.metrics import Metrics
from cdcsync.pipeline import Pipeline
from cdcsync.settings import Settings
from cdcsync.sink.client import build_client
from cdcsync.versions import backfill_version, read_version

log = logging.getLogger("cdcsync.backfill.run")

Work = Callable[[Claim], None]


def run_shared(
    settings: Settings,
    source: Source,
    *,
    run_id: str,
    worker: str,
    dynamodb: Any,
    session: boto3.Session,
    pipeline: Pipeline,
    store: LeaseStore,
    metrics: Metrics,
    out: TextIO,
    segments: int | None,
    workers: int | None,
    from_export: str | None,
    allow_old: bool,
    max_rcu: float | None,
    page_items: int | None,
    on_page: PageHook | None,
    on_scan: Callable[[], None] | None,
    stop: threading.Event,
    wall_ms: Callable[[], int],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> BackfillReport:
    """Join run ``run_id`` and work on its units until every one is done or this process stops."""
    table = source.table
    started = clock()
    claims = UnitClaims(
        store, run_id, worker_id=worker, lease_seconds=settings.lease_seconds, clock=clock, wall_ms=wall_ms
    )
    s3 = aws_client(session, "s3") if from_export is not None else None
    if from_export is not None:
        manifest = find_export(s3, from_export, table)
        targets = [mapping.index for mapping in pipeline.mappings.for_table(table)]
        check_export_age(
            manifest.url, manifest.export_time_ms, table, targets, build_client(settings, session=session),
            now_ms=wall_ms(), allow_old=allow_old,
        )  # fmt: skip
        proposed: dict[str, Any] = {
            "table": table, "kind": "export", "export": manifest.url, "units": len(manifest.data_keys),
            "export_time_ms": manifest.export_time_ms, "version_ms": read_version(manifest.export_time_ms),
            "item_count": manifest.item_count, "started_ms": wall_ms(),
        }  # fmt: skip
    else:
        start_ms = wall_ms()  # before the first Scan call of the run
        proposed = {
            "table": table, "kind": "scan", "units": segments or default_segments(source.size_bytes,
            source.item_count), "scan_start_ms": start_ms, "version_ms": backfill_version(start_ms),
            "item_count": source.item_count, "started_ms": start_ms,
        }  # fmt: skip
    stored, created = claims.join(proposed)
    _check_joined(run_id, stored, proposed, segments)
    version = int(stored["version_ms"])
    total = int(stored["units"])
    workers = workers or (
        MIN_SEGMENTS if from_export else default_segments(source.size_bytes, source.item_count)
    )
    report = BackfillReport(table, segments=total)
    progress = Progress(table, out, total=0, clock=clock)  # this process's share: the status has the run's
    run = Run(
        settings, source, pipeline, store, metrics, progress, {}, version, sleep, on_page, report, stop=stop,
        rerun=f"the unit's checkpoint is before this page: fix OpenSearch, then join run {run_id} again "
        f"(--run-id {run_id})",
    )  # fmt: skip
    log.info(
        "backfill of %s: %s run %s (%d %s, version %d, started %s) as %s with %d workers%s",
        table, "created" if created else "joined", run_id, total,
        "data files" if from_export else "segments", version, iso_ms(int(stored["started_ms"])), worker,
        workers, f", at most {max_rcu:g} RCU/s in this process" if max_rcu and not from_export else "",
    )  # fmt: skip
    if from_export is not None:
        manifest_keys = manifest.data_keys
        bucket = manifest.bucket

        def work(claim: Claim) -> None:
            key = manifest_keys[claim.unit.number]
            _load_file(
                run, claims, claim, s3, bucket=bucket, key=key, page_items=page_items or EXPORT_PAGE_ITEMS
            )
    else:
        limiter = CapacityLimiter(max_rcu, clock=clock, sleep=sleep) if max_rcu is not None else None
        items = page_items or DEFAULT_PAGE_ITEMS

        def work(claim: Claim) -> None:
            position = claim.unit.position.get("next_key")
            start = decode_key(position) if position else None
            number = claim.unit.number
            scan = SegmentScan(
                dynamodb, table, number, total, start, limiter, sleep, on_scan, items,
                rerun=f"join run {run_id} again (--run-id {run_id})", read_ahead=False,
            )  # fmt: skip
            _scan_segment(run, claims, claim, scan)

    with collapsed(*RETRY_LOGGERS), paced_collection():
        _work_units(run, claims, work, workers)
    report.seconds = clock() - started
    report.finished = claims.finished(force=True)
    progress.close(finished=report.finished)
    if not report.finished:
        left = sum(not unit.done for unit in claims.units(force=True))
        log.warning(
            "backfill of %s: stopped with %d of %d units of run %s left; run the command again (any "
            "process that joins the run with --run-id %s continues them)",
            table, left, total, run_id, run_id,
        )  # fmt: skip
    return report


def _check_joined(
    run_id: str, stored: dict[str, Any], proposed: dict[str, Any], segments: int | None
) -> None:
    if stored["kind"] != proposed["kind"] or stored.get("export") != proposed.get("export"):
        what = f"export {stored.get('export')}" if stored["kind"] == "export" else "a scan"
        asked = f"export {proposed.get('export')}" if proposed["kind"] == "export" else "a scan"
        raise ConfigError(
            f"--run-id {run_id}: that run loads {what}, not {asked}; join it with the same "
            "--from-export (or none), or pick another run id"
        )
    if segments is not None and stored["kind"] == "scan" and int(stored["units"]) != segments:
        log.warning(
            "backfill of %s: --segments %d ignored: run %s has %d segments",
            stored["table"], segments, run_id, stored["units"],
        )  # fmt: skip


def _scan_segment(run: Run, claims: UnitClaims, claim: Claim, scan: SegmentScan) -> None:
    """Scan a claimed segment from its saved key: each page written, then checkpointed on the claim."""
    segment = claim.unit.number
    for page in scan.pages():
        if not claims.wait_writable(claim, run.stop):
            return
        number = claim.unit.pages  # counted over every owner: record sequence numbers stay unique
        where = f"page {number} of segment {segment}"
        dead = run.write_page(
            page.items, segment, number, where, lambda: claims.deadline(claim), shaped=page.lambda_shaped
        )
        last = encode_key(page.last_key) if page.last_key is not None else None
        claims.save(claim, {"next_key": last}, len(page.items), done=last is None)
        _count(run, segment, number, len(page.items), dead)
        if run.stop.is_set():
            return


def _load_file(
    run: Run, claims: UnitClaims, claim: Claim, s3: Any, *, bucket: str, key: str, page_items: int
) -> None:
    """Load a claimed export data file, skipping the items earlier owners wrote."""
    unit = claim.unit.number
    skip = int(claim.unit.position.get("items_done", 0))
    done = 0
    for items in export_items(s3, bucket, key, page_items):
        fresh = items[max(0, skip - done) :]
        done += len(items)
        if not fresh:
            continue
        if not claims.wait_writable(claim, run.stop):
            return
        number = claim.unit.pages
        where = f"page {number} of s3://{bucket}/{key}"
        dead = run.write_page(fresh, unit, number, where, lambda: claims.deadline(claim))
        claims.save(claim, {"items_done": done}, len(fresh), done=False)
        _count(run, unit, number, len(fresh), dead)
        if run.stop.is_set():
            return
    claims.save(claim, {"items_done": done}, 0, done=True)


def _release(claims: UnitClaims, claim: Claim) -> None:
    """Give a unit back after its thread stopped; if the store cannot be reached, its lease lapses."""
    try:
        claims.release(claim)
    except CdcsyncError as exc:
        log.warning(
            "backfill run %s: cannot release unit %d (%s); another process takes it after the lease period",
            claims.run_id, claim.unit.number, exc,
        )  # fmt: skip


def _count(run: Run, unit: int, page: int, items: int, dead_letters: int) -> None:
    with run.lock:
        run.report.items_read += items
    run.metrics.backfill_items(run.source.table, items)
    run.progress.add(items, dead_letters)
    if run.on_page is not None:
        run.on_page(unit, page)


def _work_units(run: Run, claims: UnitClaims, work: Work, workers: int) -> None:
    """``workers`` threads claiming and working units, and a renewer; stops on the first failure."""
    poll = max(0.2, min(5.0, claims.lease_seconds / 6))
    renewing = threading.Event()

    def renew() -> None:
        while not renewing.wait(claims.lease_seconds / 3):
            try:
                claims.renew_all()
            except CdcsyncError as exc:  # the next round tries again; a lapse stops the writes
                log.warning("backfill run %s: cannot renew claims: %s", claims.run_id, exc)

    def loop() -> None:
        while not run.stop.is_set():
            claim = claims.claim()
            if claim is None:
                if claims.finished():
                    return
                run.stop.wait(poll)
                continue
            try:
                work(claim)
            except LeaseLostError as exc:
                log.warning("%s", exc)
            finally:
                if not claim.unit.done:
                    _release(claims, claim)

    renewer = threading.Thread(target=renew, name="backfill-renewer", daemon=True)
    renewer.start()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="backfill")
    futures: list[Future[None]] = [pool.submit(loop) for _ in range(max(1, workers))]
    try:
        while True:
            done, pending = wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION)
            if not pending or any(future.exception() is not None for future in done):
                break
    except KeyboardInterrupt:
        log.warning("backfill of %s: interrupted; finishing the pages in flight", run.source.table)
        run.stop.set()
    errors = [future.exception() for future in futures if future.done() and future.exception() is not None]
    if errors:
        run.stop.set()
    pool.shutdown(wait=True)
    renewing.set()
    renewer.join()
    errors = [error for future in futures if (error := future.exception()) is not None]
    if errors:
        first = errors[0]
        if isinstance(first, CdcsyncError):
            raise first
        raise BackfillStoppedError(
            f"backfill of {run.source.table} stopped: {first!r}; run it again with --run-id {claims.run_id}"
        ) from first
