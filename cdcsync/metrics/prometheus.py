"""``Metrics`` as prometheus-client collectors, for the container worker's ``/metrics`` endpoint."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cdcsync.metrics import (
    BACKFILL_ITEMS,
    BULK_REQUEST_DURATION,
    BULK_REQUEST_DURATION_BUCKETS,
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


def _counter(spec: MetricSpec, registry: CollectorRegistry) -> Counter:
    return Counter(spec.name, spec.help, spec.labels, registry=registry)


def _gauge(spec: MetricSpec, registry: CollectorRegistry) -> Gauge:
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


class PrometheusMetrics:
    """Every cdcsync metric in one registry; serve ``registry`` on ``/metrics``.

    The registry is a fresh one unless given: the process-wide default would make a second instance
    (a second test, a second worker in one process) fail with "Duplicated timeseries".
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._registry = registry if registry is not None else CollectorRegistry()
        self._records = _counter(RECORDS, self._registry)
        self._iterator_age = _gauge(ITERATOR_AGE, self._registry)
        self._replication_lag = _gauge(REPLICATION_LAG, self._registry)
        self._bulk_request = Histogram(
            BULK_REQUEST_DURATION.name,
            BULK_REQUEST_DURATION.help,
            registry=self._registry,
            buckets=BULK_REQUEST_DURATION_BUCKETS,
        )
        self._bulk_retries = _counter(BULK_RETRIES, self._registry)
        self._rebuild_copies = _counter(REBUILD_DUAL_WRITES, self._registry)
        self._rebuild_step = _gauge(REBUILD_STEP, self._registry)
        self._rebuild_backfill_items = _gauge(REBUILD_BACKFILL_ITEMS, self._registry)
        self._dead_letters = _counter(DLQ_RECORDS, self._registry)
        self._shards_owned = _gauge(SHARDS_OWNED, self._registry)
        self._backfill_items = _counter(BACKFILL_ITEMS, self._registry)
        self._trimmed_data = _counter(TRIMMED_DATA, self._registry)
        self._worker_errors = _counter(WORKER_ERRORS, self._registry)
        self._unknown_location_writes = _counter(UNKNOWN_LOCATION_WRITES, self._registry)

    @property
    def registry(self) -> CollectorRegistry:
        """The registry holding every cdcsync metric (for ``/metrics`` and for tests)."""
        return self._registry

    def records(self, table: str, event: str, outcome: str, count: int = 1) -> None:
        self._records.labels(table, event_label(event), outcome_label(outcome)).inc(
            check_count(RECORDS, count)
        )

    def bulk_request(self, seconds: float) -> None:
        self._bulk_request.observe(check_value(BULK_REQUEST_DURATION, seconds))

    def bulk_retries(self, count: int = 1) -> None:
        self._bulk_retries.inc(check_count(BULK_RETRIES, count))

    def rebuild_copies(self, count: int = 1) -> None:
        self._rebuild_copies.inc(check_count(REBUILD_DUAL_WRITES, count))

    def rebuild_step(self, table: str, index: str, step: str) -> None:
        self._rebuild_step.labels(table, index).set(rebuild_step_number(step))

    def rebuild_backfill_items(self, table: str, index: str, count: int) -> None:
        self._rebuild_backfill_items.labels(table, index).set(check_count(REBUILD_BACKFILL_ITEMS, count))

    def dead_letters(self, table: str, reason: str, count: int = 1) -> None:
        self._dead_letters.labels(table, reason_label(reason)).inc(check_count(DLQ_RECORDS, count))

    def iterator_age(self, table: str, shard: str, seconds: float) -> None:
        self._iterator_age.labels(table, shard).set(check_value(ITERATOR_AGE, seconds))

    def replication_lag(self, table: str, seconds: float) -> None:
        self._replication_lag.labels(table).set(check_value(REPLICATION_LAG, seconds))

    def shards_owned(self, table: str, count: int) -> None:
        self._shards_owned.labels(table).set(check_count(SHARDS_OWNED, count))

    def backfill_items(self, table: str, count: int) -> None:
        self._backfill_items.labels(table).inc(check_count(BACKFILL_ITEMS, count))

    def trimmed_data(self, table: str, shard: str) -> None:
        self._trimmed_data.labels(table, shard).inc()

    def worker_errors(self, table: str, error: str) -> None:
        self._worker_errors.labels(table, error_label(error)).inc()

    def unknown_location_writes(self, table: str, count: int = 1) -> None:
        self._unknown_location_writes.labels(table).inc(check_count(UNKNOWN_LOCATION_WRITES, count))

    def release_shard(self, table: str, shard: str) -> None:
        """Drop the shard's iterator age: the new owner reports it now, or the shard is finished.

        ``cdcsync_trimmed_data_total`` keeps its series: a counter that vanished would hide the loss.
        """
        try:
            self._iterator_age.remove(table, shard)
        except KeyError:
            return  # never reported by this worker (e.g. released before its first read): nothing to drop

    def flush(self) -> None:
        """Nothing to do: Prometheus scrapes the registry."""
