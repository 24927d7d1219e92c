"""Every cdcsync metric, defined once, and the facade the pipeline reports outcomes through.

The pipeline calls one ``Metrics`` object; how the numbers leave the process depends on how it runs:

- ``PrometheusMetrics`` (container worker, CLI): a prometheus-client registry served on ``/metrics``.
- ``EmfMetrics`` (Lambda): CloudWatch Embedded Metric Format lines on stdout, one flush per invocation.
- ``NullMetrics`` (tests, one-off commands): checks its arguments like the others, records nothing.

All three use the names and labels of ``METRICS`` below, so a dashboard reads the same either way.

Label hygiene (every label value becomes a time series, in CloudWatch a billed custom metric):
``table`` is bounded by the mappings, ``shard`` by the stream, ``outcome`` by ``OUTCOMES``. ``event``
and ``reason`` come from data (a raw record's ``eventName``, an OpenSearch error type), so a value
outside their bounded shape is reported as ``UNKNOWN`` / ``other`` instead of raising on the hot
path; ``outcome`` and counts come from our own code, so a wrong one raises ``ValueError`` (a bug).

``PrometheusMetrics`` and ``EmfMetrics`` are imported lazily: prometheus-client costs ~20-30 ms of
import time that a Lambda cold start should not pay for a registry it never serves.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from cdcsync.metrics.emf import EmfMetrics
    from cdcsync.metrics.prometheus import PrometheusMetrics

__all__ = [
    "BACKFILL_ITEMS",
    "BULK_REQUEST_DURATION",
    "BULK_REQUEST_DURATION_BUCKETS",
    "BULK_RETRIES",
    "DLQ_RECORDS",
    "EVENTS",
    "ITERATOR_AGE",
    "METRICS",
    "OUTCOMES",
    "REBUILD_BACKFILL_ITEMS",
    "REBUILD_DUAL_WRITES",
    "REBUILD_STEP",
    "REBUILD_STEPS",
    "RECORDS",
    "REPLICATION_LAG",
    "SHARDS_OWNED",
    "TRIMMED_DATA",
    "UNKNOWN_LOCATION_WRITES",
    "WORKER_ERRORS",
    "WORKER_ERROR_KINDS",
    "EmfMetrics",
    "MetricSpec",
    "Metrics",
    "NullMetrics",
    "PrometheusMetrics",
]

Kind = Literal["counter", "gauge", "histogram"]
CloudWatchUnit = Literal["Count", "Seconds"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: its contract name, kind, labels, help text and CloudWatch unit.

    ``emf_dimensions`` are the labels that become CloudWatch dimensions; the other labels are still
    written on the EMF line (searchable in Logs Insights) but do not create metrics. Shard ids rotate
    every few hours, and each dimension value is a separately billed CloudWatch metric, so ``shard``
    is never a dimension: alarm on the table's maximum, look up the shard in the logs.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    unit: CloudWatchUnit = "Count"
    emf_dimensions: tuple[str, ...] | None = None

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The labels that are CloudWatch dimensions (all labels unless ``emf_dimensions`` says less)."""
        return self.labels if self.emf_dimensions is None else self.emf_dimensions


RECORDS = MetricSpec(
    "cdcsync_records_total",
    "counter",
    "Stream, backfill and redrive records by final outcome, once per record and mapping (indexed, "
    "deleted, skipped, stale, coalesced: replaced by a later record's write to the document in the "
    "same batch, dlq).",
    ("table", "event", "outcome"),
)
ITERATOR_AGE = MetricSpec(
    "cdcsync_iterator_age_seconds",
    "gauge",
    "How far a shard is behind: now minus the oldest record read but not yet written, else minus "
    "the last written record's creation time; 0 when caught up. A shard this worker owns but does "
    "not read (waiting for its parent, stopped by an error): the time since it was last caught up.",
    ("table", "shard"),
    unit="Seconds",
    emf_dimensions=("table",),
)
REPLICATION_LAG = MetricSpec(
    "cdcsync_replication_lag_seconds",
    "gauge",
    "The table's lag: the largest iterator age over its shards, and while its coordination round "
    "fails at least the time since its last good round (worker); the newest record's age when its "
    "batch was handled (Lambda).",
    ("table",),
    unit="Seconds",
)
BULK_REQUEST_DURATION = MetricSpec(
    "cdcsync_bulk_request_duration_seconds",
    "histogram",
    "Duration of one OpenSearch _bulk request, retries excluded.",
    unit="Seconds",
)
BULK_RETRIES = MetricSpec(
    "cdcsync_bulk_retries_total",
    "counter",
    "Actions sent again after a transient bulk failure (429, 5xx, connection error).",
)
REBUILD_DUAL_WRITES = MetricSpec(
    "cdcsync_rebuild_dual_writes_total",
    "counter",
    "Actions also written to a rebuild's new index (the alias NAME-rebuild): the dual-write overhead.",
)
REBUILD_STEP = MetricSpec(
    "cdcsync_rebuild_step",
    "gauge",
    "cdcsync rebuild: the step the rebuild of an index has completed: 1 created, 2 waited, 3 backfilled, "
    "4 verified, 5 swapped, 6 finished, 7 rolled_back.",
    ("table", "index"),
)
REBUILD_BACKFILL_ITEMS = MetricSpec(
    "cdcsync_rebuild_backfill_items",
    "gauge",
    "cdcsync rebuild: items its backfill has written to the new index so far (resumed runs included).",
    ("table", "index"),
)
DLQ_RECORDS = MetricSpec(
    "cdcsync_dlq_records_total",
    "counter",
    "Records sent to the dead-letter queue, by error type.",
    ("table", "reason"),
)
SHARDS_OWNED = MetricSpec(
    "cdcsync_shards_owned",
    "gauge",
    "Shards this worker currently holds the lease for.",
    ("table",),
)
BACKFILL_ITEMS = MetricSpec(
    "cdcsync_backfill_items_total",
    "counter",
    "Items read by backfill scans and written to OpenSearch.",
    ("table",),
)
TRIMMED_DATA = MetricSpec(
    "cdcsync_trimmed_data_total",
    "counter",
    "Times a shard's checkpoint fell behind the 24 h stream retention (records lost: backfill the table).",
    ("table", "shard"),
    emf_dimensions=("table",),
)
WORKER_ERRORS = MetricSpec(
    "cdcsync_worker_errors_total",
    "counter",
    "Worker: a table's coordination round or a shard's loop stopped on an error, by kind "
    "(transient, stream_gone, config, fatal, bug); the worker goes on and tries again.",
    ("table", "error"),
)

UNKNOWN_LOCATION_WRITES = MetricSpec(
    "cdcsync_unknown_location_writes_total",
    "counter",
    "Writes to a templated index or routing of an item whose earlier place was unknown (no old image, "
    "or one the filter would have skipped): if the item moved, a copy stays in the old place.",
    ("table",),
)

METRICS: tuple[MetricSpec, ...] = (
    RECORDS,
    ITERATOR_AGE,
    REPLICATION_LAG,
    BULK_REQUEST_DURATION,
    BULK_RETRIES,
    REBUILD_DUAL_WRITES,
    REBUILD_STEP,
    REBUILD_BACKFILL_ITEMS,
    DLQ_RECORDS,
    SHARDS_OWNED,
    BACKFILL_ITEMS,
    TRIMMED_DATA,
    WORKER_ERRORS,
    UNKNOWN_LOCATION_WRITES,
)

# A bulk request takes a few ms on a local node and up to the client timeout (30 s) on a loaded one.
BULK_REQUEST_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

EVENTS = frozenset({"INSERT", "MODIFY", "REMOVE", "BACKFILL", "REDRIVE"})
# cdcsync_rebuild_step's values: a step's number is its place here, from 1.
REBUILD_STEPS = ("created", "waited", "backfilled", "verified", "swapped", "finished", "rolled_back")
OUTCOMES = frozenset({"indexed", "deleted", "skipped", "stale", "coalesced", "dlq"})
# What stopped a worker's table round or shard loop: the error tree's branches, and bugs.
WORKER_ERROR_KINDS = frozenset({"transient", "stream_gone", "config", "fatal", "bug"})
UNKNOWN_EVENT = "UNKNOWN"
OTHER_REASON = "other"
# OpenSearch error types (mapper_parsing_exception), our own (plan_error), exception class names.
# A free-text message has spaces and would be one time series per distinct message.
_REASON_SHAPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def event_label(event: str) -> str:
    """``event`` as a bounded label value: one of ``EVENTS``, else ``UNKNOWN``."""
    return event if event in EVENTS else UNKNOWN_EVENT


def outcome_label(outcome: str) -> str:
    """``outcome`` checked against ``OUTCOMES``; anything else is a bug in the caller."""
    if outcome not in OUTCOMES:
        raise ValueError(
            f'{RECORDS.name}: outcome "{outcome}" is not one of {", ".join(sorted(OUTCOMES))}; '
            "pass one of those"
        )
    return outcome


def error_label(error: str) -> str:
    """``error`` checked against ``WORKER_ERROR_KINDS``; anything else is a bug in the caller."""
    if error not in WORKER_ERROR_KINDS:
        raise ValueError(
            f'{WORKER_ERRORS.name}: error "{error}" is not one of {", ".join(sorted(WORKER_ERROR_KINDS))}; '
            "pass one of those"
        )
    return error


def rebuild_step_number(step: str) -> int:
    """``cdcsync_rebuild_step``'s value for ``step``; a step not in ``REBUILD_STEPS`` is a bug."""
    if step not in REBUILD_STEPS:
        raise ValueError(f'{REBUILD_STEP.name}: step "{step}" is not one of {", ".join(REBUILD_STEPS)}')
    return REBUILD_STEPS.index(step) + 1


def reason_label(reason: str) -> str:
    """``reason`` as a bounded label value: an error type, else ``other``."""
    return reason if _REASON_SHAPE.fullmatch(reason) else OTHER_REASON


def check_count(metric: MetricSpec, count: int) -> int:
    """Counters only go up: a negative count is a bug in the caller."""
    if count < 0:
        raise ValueError(f"{metric.name}: count must be >= 0, got {count}")
    return count


def check_value(metric: MetricSpec, value: float) -> float:
    """CloudWatch rejects NaN and infinities (and orjson would write them as null): refuse them here."""
    if not math.isfinite(value):
        raise ValueError(f"{metric.name}: value must be a finite number, got {value}")
    return value


class Metrics(Protocol):
    """How the pipeline, worker and backfill report what happened; one method per metric."""

    def records(self, table: str, event: str, outcome: str, count: int = 1) -> None:
        """``cdcsync_records_total{table,event,outcome}``."""

    def bulk_request(self, seconds: float) -> None:
        """``cdcsync_bulk_request_duration_seconds`` (one observation per _bulk request)."""

    def bulk_retries(self, count: int = 1) -> None:
        """``cdcsync_bulk_retries_total``."""

    def rebuild_copies(self, count: int = 1) -> None:
        """``cdcsync_rebuild_dual_writes_total``."""

    def rebuild_step(self, table: str, index: str, step: str) -> None:
        """``cdcsync_rebuild_step{table,index}``: the number of ``step`` in ``REBUILD_STEPS``."""

    def rebuild_backfill_items(self, table: str, index: str, count: int) -> None:
        """``cdcsync_rebuild_backfill_items{table,index}``: items written to the new index so far."""

    def dead_letters(self, table: str, reason: str, count: int = 1) -> None:
        """``cdcsync_dlq_records_total{table,reason}``."""

    def iterator_age(self, table: str, shard: str, seconds: float) -> None:
        """``cdcsync_iterator_age_seconds{table,shard}``."""

    def replication_lag(self, table: str, seconds: float) -> None:
        """``cdcsync_replication_lag_seconds{table}``."""

    def shards_owned(self, table: str, count: int) -> None:
        """``cdcsync_shards_owned{table}``."""

    def backfill_items(self, table: str, count: int) -> None:
        """``cdcsync_backfill_items_total{table}``."""

    def trimmed_data(self, table: str, shard: str) -> None:
        """``cdcsync_trimmed_data_total{table,shard}``: a shard's records were lost to the retention."""

    def worker_errors(self, table: str, error: str) -> None:
        """``cdcsync_worker_errors_total{table,error}``: a table round or shard loop stopped on an error."""

    def unknown_location_writes(self, table: str, count: int = 1) -> None:
        """``cdcsync_unknown_location_writes_total{table}``: writes that may leave a copy elsewhere."""

    def release_shard(self, table: str, shard: str) -> None:
        """Forget a shard's gauges when its lease is lost or it is finished.

        Otherwise its last iterator age would be exported forever, next to the new owner's.
        """

    def flush(self) -> None:
        """EMF: write what accumulated since the last flush. Prometheus: nothing to do."""


class NullMetrics:
    """Records nothing, but rejects what the real implementations reject, so tests still catch it."""

    def records(self, table: str, event: str, outcome: str, count: int = 1) -> None:
        outcome_label(outcome)
        check_count(RECORDS, count)

    def bulk_request(self, seconds: float) -> None:
        check_value(BULK_REQUEST_DURATION, seconds)

    def bulk_retries(self, count: int = 1) -> None:
        check_count(BULK_RETRIES, count)

    def rebuild_copies(self, count: int = 1) -> None:
        check_count(REBUILD_DUAL_WRITES, count)

    def rebuild_step(self, table: str, index: str, step: str) -> None:
        rebuild_step_number(step)

    def rebuild_backfill_items(self, table: str, index: str, count: int) -> None:
        check_count(REBUILD_BACKFILL_ITEMS, count)

    def dead_letters(self, table: str, reason: str, count: int = 1) -> None:
        check_count(DLQ_RECORDS, count)

    def iterator_age(self, table: str, shard: str, seconds: float) -> None:
        check_value(ITERATOR_AGE, seconds)

    def replication_lag(self, table: str, seconds: float) -> None:
        check_value(REPLICATION_LAG, seconds)

    def shards_owned(self, table: str, count: int) -> None:
        check_count(SHARDS_OWNED, count)

    def backfill_items(self, table: str, count: int) -> None:
        check_count(BACKFILL_ITEMS, count)

    def trimmed_data(self, table: str, shard: str) -> None:
        return

    def worker_errors(self, table: str, error: str) -> None:
        error_label(error)

    def unknown_location_writes(self, table: str, count: int = 1) -> None:
        check_count(UNKNOWN_LOCATION_WRITES, count)

    def release_shard(self, table: str, shard: str) -> None:
        return

    def flush(self) -> None:
        return


_LAZY = {"PrometheusMetrics": "cdcsync.metrics.prometheus", "EmfMetrics": "cdcsync.metrics.emf"}


def __getattr__(name: str) -> object:
    """``from cdcsync.metrics import PrometheusMetrics`` imports prometheus-client only then."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
