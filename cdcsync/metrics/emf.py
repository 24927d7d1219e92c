"""``Metrics`` as CloudWatch Embedded Metric Format (EMF) lines, for the Lambda handler.

Lambda sends every stdout line to CloudWatch Logs, which extracts the metrics of each EMF line; no
API call, no agent. Values accumulate during one invocation and ``flush()`` prints them: one JSON
line per label combination (``{"_aws": {...}, "table": "Users", "cdcsync_records_total": 12}``),
counters summed, gauges at their last value, histogram observations as a list of samples (EMF
allows at most 100 values per metric on a line, so longer lists continue on further lines).

Why not aws-lambda-powertools' ``Metrics``: it adds ~20-30 ms of imports to the cold start (measured
after boto3 and opensearch-py) for what is 100 lines here, and it holds one dimension set per
instance, while one invocation reports several (per table, per outcome, per error type).

Spec: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

from cdcsync.metrics import (
    BACKFILL_ITEMS,
    BULK_REQUEST_DURATION,
    BULK_RETRIES,
    DLQ_RECORDS,
    ITERATOR_AGE,
    REBUILD_BACKFILL_ITEMS,
    REBUILD_DUAL_WRITES,
    REBUILD_STEP,
    RECORDS,
    REPLICATION_LAG,
    SHARDS_OWNED,
    TRIMMED_DATA,
    UNKNOWN_LOCATION_WRITES,
    WORKER_ERRORS,
    MetricSpec,
    check_count,
    check_value,
    error_label,
    event_label,
    outcome_label,
    reason_label,
    rebuild_step_number,
)

MAX_VALUES_PER_LINE = 100  # EMF: a metric's value array holds at most 100 numbers


@dataclass(slots=True)
class _Line:
    """What one label combination accumulated since the last flush."""

    dimensions: tuple[str, ...]
    labels: dict[str, str]
    values: dict[MetricSpec, float] = field(default_factory=dict)
    samples: dict[MetricSpec, list[float]] = field(default_factory=dict)


class EmfMetrics:
    """Accumulates one invocation's metrics; ``flush()`` writes them as EMF lines and starts over.

    ``stream`` defaults to ``sys.stdout`` as it is at flush time (so pytest's capture sees it);
    ``clock`` gives the EMF ``Timestamp`` (epoch seconds) and is there for tests.
    """

    def __init__(
        self,
        namespace: str = "cdcsync",
        stream: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= len(namespace) <= 255:  # noqa: PLR2004 - CloudWatch's namespace length limit
            raise ValueError(f'EMF namespace must be 1 to 255 characters, got "{namespace}"')
        self._namespace = namespace
        self._stream = stream
        self._clock = clock
        # The pipeline may report from worker threads (bulk writes); a flush must see whole updates.
        self._lock = threading.Lock()
        # One line per (dimension names, label values): metrics sharing both share a line.
        self._lines: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], _Line] = {}

    def records(self, table: str, event: str, outcome: str, count: int = 1) -> None:
        self._add(RECORDS, (table, event_label(event), outcome_label(outcome)), check_count(RECORDS, count))

    def bulk_request(self, seconds: float) -> None:
        self._add(BULK_REQUEST_DURATION, (), check_value(BULK_REQUEST_DURATION, seconds))

    def bulk_retries(self, count: int = 1) -> None:
        self._add(BULK_RETRIES, (), check_count(BULK_RETRIES, count))

    def rebuild_copies(self, count: int = 1) -> None:
        self._add(REBUILD_DUAL_WRITES, (), check_count(REBUILD_DUAL_WRITES, count))

    def rebuild_step(self, table: str, index: str, step: str) -> None:
        self._add(REBUILD_STEP, (table, index), rebuild_step_number(step))

    def rebuild_backfill_items(self, table: str, index: str, count: int) -> None:
        self._add(REBUILD_BACKFILL_ITEMS, (table, index), check_count(REBUILD_BACKFILL_ITEMS, count))

    def dead_letters(self, table: str, reason: str, count: int = 1) -> None:
        self._add(DLQ_RECORDS, (table, reason_label(reason)), check_count(DLQ_RECORDS, count))

    def iterator_age(self, table: str, shard: str, seconds: float) -> None:
        self._add(ITERATOR_AGE, (table, shard), check_value(ITERATOR_AGE, seconds))

    def replication_lag(self, table: str, seconds: float) -> None:
        self._add(REPLICATION_LAG, (table,), check_value(REPLICATION_LAG, seconds))

    def shards_owned(self, table: str, count: int) -> None:
        self._add(SHARDS_OWNED, (table,), check_count(SHARDS_OWNED, count))

    def backfill_items(self, table: str, count: int) -> None:
        self._add(BACKFILL_ITEMS, (table,), check_count(BACKFILL_ITEMS, count))

    def trimmed_data(self, table: str, shard: str) -> None:
        self._add(TRIMMED_DATA, (table, shard), 1)

    def worker_errors(self, table: str, error: str) -> None:
        self._add(WORKER_ERRORS, (table, error_label(error)), 1)

    def unknown_location_writes(self, table: str, count: int = 1) -> None:
        self._add(UNKNOWN_LOCATION_WRITES, (table,), check_count(UNKNOWN_LOCATION_WRITES, count))

    def release_shard(self, table: str, shard: str) -> None:
        """Nothing to forget: EMF lines describe one invocation and are not repeated."""

    def flush(self) -> None:
        """Write every accumulated line (nothing if nothing was reported) and start over."""
        with self._lock:
            lines, self._lines = self._lines, {}
        if not lines:
            return
        timestamp = int(self._clock() * 1000)
        text = "".join(
            orjson.dumps(document).decode() + "\n"
            for line in lines.values()
            for document in self._documents(line, timestamp)
        )
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(text)
        stream.flush()

    def _add(self, spec: MetricSpec, label_values: tuple[str, ...], amount: float) -> None:
        labels = dict(zip(spec.labels, label_values, strict=True))
        key = (spec.dimensions, tuple(labels.items()))
        with self._lock:
            line = self._lines.get(key)
            if line is None:
                line = self._lines[key] = _Line(spec.dimensions, labels)
            if spec.kind == "counter":
                line.values[spec] = line.values.get(spec, 0) + amount
            elif spec.kind == "gauge":
                line.values[spec] = amount
            else:
                line.samples.setdefault(spec, []).append(amount)

    def _documents(self, line: _Line, timestamp: int) -> Iterator[dict[str, Any]]:
        """One EMF document, or more when a histogram has over 100 samples."""
        chunks = {
            spec: [samples[i : i + MAX_VALUES_PER_LINE] for i in range(0, len(samples), MAX_VALUES_PER_LINE)]
            for spec, samples in line.samples.items()
        }
        pages = max((len(parts) for parts in chunks.values()), default=1)
        for page in range(pages):
            members: dict[MetricSpec, float | list[float]] = dict(line.values) if page == 0 else {}
            members.update({spec: parts[page] for spec, parts in chunks.items() if page < len(parts)})
            if not members:
                continue
            directive = {
                "Namespace": self._namespace,
                "Dimensions": [list(line.dimensions)],
                "Metrics": [{"Name": spec.name, "Unit": spec.unit} for spec in members],
            }
            yield {
                "_aws": {"Timestamp": timestamp, "CloudWatchMetrics": [directive]},
                **line.labels,
                **{spec.name: value for spec, value in members.items()},
            }
