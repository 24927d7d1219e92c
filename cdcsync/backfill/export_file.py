"""One data file of a DynamoDB export, loaded as one unit of a fanned-out load (Step Functions).

``cdcsync backfill --from-export`` loads every data file of an export in one process. A Step
Functions Distributed Map over the export's ``manifest-files.json`` instead hands each data file to a
Lambda invocation (``cdcsync.aws_lambda.export_handler``), which loads it here through the same steps:
``export_items`` reads the gzipped DYNAMODB_JSON lines, each item becomes the synthetic stream INSERT
``source/synthetic.py`` builds, and ``Pipeline.process`` writes it with ``read_version(export time)``.
The export time comes from the export's ``manifest-summary.json`` (read once, by the state
machine's first step), so every invocation of one execution writes with the one version that
``backfill --from-export`` would use, and the two give the same index.

A file may take longer than one invocation may run: the load stops before the deadline and answers
``finished: false`` with ``itemsDone``; the state machine invokes it again from there (the items
before it are read and passed over, not written again). An invocation without the time for one page
(a function ``Timeout`` under ``PAGE_MARGIN_SECONDS``) is a ``ConfigError``: answering unfinished with
nothing done would have the state machine invoke it again for ever. A transient failure after some progress
answers the same way, from the first record not done; one with no progress raises
``TransientError``, and the state machine retries it with backoff. Records before the one a failure
names are written or dead-lettered, so a retry repeats at most the rest of one bulk request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cdcsync.backfill.export import export_items
from cdcsync.backfill.pages import WriteCounts
from cdcsync.errors import ConfigError, TransientError
from cdcsync.metrics import Metrics
from cdcsync.pipeline import Pipeline
from cdcsync.source.synthetic import TableStream, insert_record
from cdcsync.versions import read_version

log = logging.getLogger(__name__)

PAGE_ITEMS = 1000  # items read from the file at a time (as backfill --from-export)
# No page starts with less than this left before the deadline: a page of 1,000 items is one or two
# bulk requests, each given up on by the bulk writer's deadline; this keeps the answer in time.
PAGE_MARGIN_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One Distributed Map item: a data file of an export, and how far earlier invocations got."""

    table: str
    bucket: str
    data_file_key: str
    export_time_ms: int
    unit: int = 0  # the file's position in manifest-files.json (names its synthetic records)
    items_done: int = 0  # items of the file written or dead-lettered by earlier invocations

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.data_file_key}"


@dataclass(kw_only=True)
class FileCounts(WriteCounts):
    """What the invocations of one file did so far (carried from one invocation's answer to the next)."""


@dataclass(frozen=True, slots=True)
class FileLoad:
    """One invocation's answer: where the file stands, and the counts so far."""

    file: ExportFile
    counts: FileCounts
    finished: bool


def load_export_file(
    file: ExportFile,
    *,
    s3: Any,
    stream: TableStream,
    pipeline: Pipeline,
    metrics: Metrics,
    bulk_max_actions: int,
    counts: FileCounts | None = None,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FileLoad:
    """Load ``file`` from ``file.items_done`` until its end or ``deadline`` (``clock`` time).

    Raises ``TransientError`` when the first records it tries keep failing (nothing done: retry the
    invocation later), ``ConfigError`` for a data file that is not a DYNAMODB_JSON export file, or
    when the invocation has too little time for its first page (the function's Timeout).
    """
    counts = counts if counts is not None else FileCounts()
    version = read_version(file.export_time_ms)
    done = file.items_done
    position = 0  # items of the file read so far
    for page_number, items in enumerate(export_items(s3, file.bucket, file.data_file_key, PAGE_ITEMS)):
        first = position
        position += len(items)
        if position <= done:
            continue  # written by an earlier invocation
        if deadline is not None and (left := deadline - clock()) < PAGE_MARGIN_SECONDS:
            if done == file.items_done:  # nothing done: answering unfinished would loop for ever
                raise ConfigError(
                    f"export load of {file.table}: {left:.0f} s left in the invocation, less than the "
                    f"{PAGE_MARGIN_SECONDS:.0f} s a page of {file.url} needs: no progress is possible; "
                    "raise the export function's Timeout (the template sets 900 s)"
                )
            return _stopped(file, done, counts, "the invocation's time is nearly up")
        fresh = items[done - first :]
        for start in range(0, len(fresh), bulk_max_actions):
            chunk = fresh[start : start + bulk_max_actions]
            records = [
                insert_record(
                    stream,
                    item,
                    seconds=version // 1000,
                    sequence=f"export-{file.unit:05d}-{page_number:09d}-{done - first + number:06d}",
                )
                for number, item in enumerate(chunk)
            ]
            result = pipeline.process(records, version_ms=version, deadline=deadline)
            counts.add(result)
            if result.retry_from is None:
                counts.items_read += len(chunk)
                metrics.backfill_items(file.table, len(chunk))
                done += len(chunk)
                continue
            counts.items_read += result.retry_from
            metrics.backfill_items(file.table, result.retry_from)
            done += result.retry_from
            if done == file.items_done:
                raise TransientError(
                    f"export load of {file.table}: {len(chunk) - result.retry_from} records of {file.url} "
                    f"from item {done} failed transiently (first {result.retry_sequence_number}); "
                    "nothing was lost: the state machine retries the file from there"
                )
            return _stopped(file, done, counts, f"records from item {done} failed transiently")
    return FileLoad(_at(file, done), counts, finished=True)


def _at(file: ExportFile, done: int) -> ExportFile:
    return ExportFile(file.table, file.bucket, file.data_file_key, file.export_time_ms, file.unit, done)


def _stopped(file: ExportFile, done: int, counts: FileCounts, why: str) -> FileLoad:
    log.info(
        "export load of %s: %s after %d items of %s; continuing in the next invocation",
        file.table, why, done, file.url,
    )  # fmt: skip
    return FileLoad(_at(file, done), counts, finished=False)


# --- the event and the answer (the Distributed Map item, camelCase as Step Functions passes it) -----
_FIELDS = {
    "table": "table",
    "bucket": "bucket",
    "data_file_key": "dataFileS3Key",
    "export_time_ms": "exportTimeMs",
    "unit": "unit",
    "items_done": "itemsDone",
}
_COUNTS = {
    "items_read": "itemsRead",
    "written": "written",
    "stale": "stale",
    "skipped": "skipped",
    "dead_lettered": "deadLettered",
}
REQUIRED_EVENT_FIELDS = ("table", "bucket", "dataFileS3Key", "exportTimeMs")


def parse_event(event: Mapping[str, Any]) -> tuple[ExportFile, FileCounts]:
    """The item a Distributed Map over ``manifest-files.json`` passes (or a previous answer)."""
    missing = [name for name in REQUIRED_EVENT_FIELDS if event.get(name) in (None, "")]
    if missing:
        raise ConfigError(
            f"export handler: the event has no {', '.join(missing)} "
            f"(got {', '.join(sorted(event)) or 'nothing'}); "
            "expected a manifest-files.json line (dataFileS3Key) with table, bucket and exportTimeMs "
            "from the state machine's ItemSelector"
        )
    file = ExportFile(
        table=str(event["table"]),
        bucket=str(event["bucket"]),
        data_file_key=str(event["dataFileS3Key"]),
        export_time_ms=_whole(event, "exportTimeMs"),
        unit=_whole(event, "unit"),
        items_done=_whole(event, "itemsDone"),
    )
    counts = FileCounts(**{name: _whole(event, key) for name, key in _COUNTS.items()})
    return file, counts


def _whole(event: Mapping[str, Any], key: str) -> int:
    value = event.get(key, 0)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ConfigError(f"export handler: {key} is {value!r} in the event; expected a whole number")


def answer(load: FileLoad) -> dict[str, Any]:
    """The invocation's output: the next invocation's event when not finished, the file's counts."""
    file = asdict(load.file)
    counts = asdict(load.counts)
    return {
        **{key: file[name] for name, key in _FIELDS.items()},
        **{key: counts[name] for name, key in _COUNTS.items()},
        "finished": load.finished,
    }
