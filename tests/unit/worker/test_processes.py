"""``run --processes N``: the group's metrics and exit code, from its processes'."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cdcsync.metrics import PrometheusMetrics
from cdcsync.worker.processes import merge_metrics, worst_exit_code


def _process_metrics(shards: dict[str, float], lag: float, indexed: int, bulk: list[float]) -> str:
    metrics = PrometheusMetrics(CollectorRegistry())
    metrics.shards_owned("Users", len(shards))
    for shard, age in shards.items():
        metrics.iterator_age("Users", shard, age)
    metrics.replication_lag("Users", lag)
    metrics.records("Users", "INSERT", "indexed", indexed)
    for seconds in bulk:
        metrics.bulk_request(seconds)
    return generate_latest(metrics.registry).decode()


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_merge_metrics_counts_add_up_lags_take_the_largest() -> None:
    # GIVEN two processes, each reading its own shards of one table
    first = _process_metrics({"s1": 4.0, "s2": 0.0}, lag=4.0, indexed=3, bulk=[0.2])
    second = _process_metrics({"s3": 9.0}, lag=9.0, indexed=5, bulk=[0.2, 3.0])
    # WHEN the supervisor merges what they serve
    merged = _samples(merge_metrics([first, second], restarts=2))
    # THEN counts add up, shards owned add up, each shard's age is its owner's, the table's lag is the largest
    assert (
        merged[("cdcsync_records_total", (("event", "INSERT"), ("outcome", "indexed"), ("table", "Users")))]
        == 8
    )
    assert merged[("cdcsync_shards_owned", (("table", "Users"),))] == 3
    assert merged[("cdcsync_iterator_age_seconds", (("shard", "s1"), ("table", "Users")))] == 4.0
    assert merged[("cdcsync_iterator_age_seconds", (("shard", "s3"), ("table", "Users")))] == 9.0
    assert merged[("cdcsync_replication_lag_seconds", (("table", "Users"),))] == 9.0
    assert merged[("cdcsync_bulk_request_duration_seconds_count", ())] == 3
    assert merged[("cdcsync_bulk_request_duration_seconds_bucket", (("le", "0.25"),))] == 2
    assert merged[("cdcsync_worker_process_restarts_total", ())] == 2


@pytest.mark.parametrize(
    ("codes", "expected"),
    [([0, 0], 0), ([0, 1], 1), ([1, 2, 0], 2), ([-9, 0], 1), ([None, 0], 1)],
)
def test_worst_exit_code_configuration_error_wins(codes: list[int | None], expected: int) -> None:
    assert worst_exit_code(codes) == expected
