"""Metrics: every contract name defined once; Prometheus samples; EMF lines in the spec's shape."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cdcsync.metrics import (
    BULK_REQUEST_DURATION_BUCKETS,
    METRICS,
    EmfMetrics,
    Metrics,
    NullMetrics,
    PrometheusMetrics,
)

# The contract's "Metrics" section, plus cdcsync_trimmed_data_total and
# cdcsync_unknown_location_writes_total (additions).
CONTRACT_NAMES = {
    "cdcsync_records_total",
    "cdcsync_iterator_age_seconds",
    "cdcsync_replication_lag_seconds",
    "cdcsync_bulk_request_duration_seconds",
    "cdcsync_bulk_retries_total",
    "cdcsync_dlq_records_total",
    "cdcsync_shards_owned",
    "cdcsync_backfill_items_total",
    "cdcsync_trimmed_data_total",
    "cdcsync_worker_errors_total",
    "cdcsync_unknown_location_writes_total",
    "cdcsync_rebuild_dual_writes_total",  # the contract's cdcsync_rebuild_*
    "cdcsync_rebuild_step",
    "cdcsync_rebuild_backfill_items",
}
NOW = 1_714_564_800.123  # 2024-05-01T12:00:00.123Z
# CloudWatch's standard units (MetricDatum.Unit).
CLOUDWATCH_UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
    "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
    "Count/Second", "None",
}  # fmt: skip


def _prometheus() -> tuple[PrometheusMetrics, CollectorRegistry]:
    metrics = PrometheusMetrics()
    return metrics, metrics.registry


def _emf_lines(report: Callable[[EmfMetrics], None]) -> list[dict[str, Any]]:
    stream = io.StringIO()
    metrics = EmfMetrics(stream=stream, clock=lambda: NOW)
    report(metrics)
    metrics.flush()
    text = stream.getvalue()
    assert text.endswith("\n") or not text
    return [json.loads(line) for line in text.splitlines()]


def _check_emf_shape(document: dict[str, Any]) -> None:
    """The EMF specification's rules for one log event (root node, metadata, directives, targets)."""
    aws = document["_aws"]
    assert set(aws) == {"Timestamp", "CloudWatchMetrics"}
    assert isinstance(aws["Timestamp"], int)
    assert aws["CloudWatchMetrics"], "at least one MetricDirective"
    for directive in aws["CloudWatchMetrics"]:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str)
        assert 1 <= len(directive["Namespace"]) <= 255
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(document[name], str), f"dimension {name} must be a string member"
                assert 1 <= len(document[name]) <= 1024
        assert 1 <= len(directive["Metrics"]) <= 100
        for definition in directive["Metrics"]:
            assert set(definition) <= {"Name", "Unit", "StorageResolution"}
            assert 1 <= len(definition["Name"]) <= 255
            assert definition["Unit"] in CLOUDWATCH_UNITS
            value = document[definition["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            assert all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def _directive(dimensions: list[str], *metrics: tuple[str, str]) -> dict[str, Any]:
    return {
        "Timestamp": 1_714_564_800_123,
        "CloudWatchMetrics": [
            {
                "Namespace": "cdcsync",
                "Dimensions": [dimensions],
                "Metrics": [{"Name": name, "Unit": unit} for name, unit in metrics],
            }
        ],
    }


# --- the catalog ---------------------------------------------------------------------------------


def test_metrics_catalog_names_each_contract_metric_exactly_once() -> None:
    # GIVEN the catalog WHEN its names are listed THEN they are the contract's, without duplicates
    names = [spec.name for spec in METRICS]
    assert sorted(names) == sorted(CONTRACT_NAMES)
    assert len(names) == len(set(names))


def test_prometheus_metrics_exposition_declares_each_metric_exactly_once() -> None:
    # GIVEN a fresh PrometheusMetrics
    _, registry = _prometheus()
    # WHEN its registry is rendered for /metrics
    text = generate_latest(registry).decode()
    # THEN each contract metric has exactly one TYPE line, with the kind the catalog gives it
    # (prometheus-client adds a *_created gauge to unlabelled counters and histograms)
    types = [
        line.split()[2:4]
        for line in text.splitlines()
        if line.startswith("# TYPE ") and not line.split()[2].endswith("_created")
    ]
    assert sorted(name for name, _ in types) == sorted(CONTRACT_NAMES)
    assert dict(types) == {spec.name: spec.kind for spec in METRICS}


def test_metrics_lazy_import_emf_does_not_load_prometheus_client() -> None:
    # GIVEN a fresh interpreter (the Lambda cold start)
    code = (
        "import sys\n"
        "from cdcsync.metrics import EmfMetrics, Metrics, NullMetrics\n"
        "assert 'prometheus_client' not in sys.modules, 'prometheus_client imported'\n"
        "from cdcsync.metrics import PrometheusMetrics\n"
        "assert 'prometheus_client' in sys.modules\n"
    )
    # WHEN the EMF implementation is imported, and later the Prometheus one
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    # THEN prometheus-client is loaded only for the latter
    assert result.returncode == 0, result.stderr


def test_metrics_unknown_attribute_raises_attribute_error() -> None:
    # GIVEN the package WHEN a name it does not define is read THEN AttributeError names it
    import cdcsync.metrics as package  # noqa: PLC0415 - the module object itself is under test

    with pytest.raises(AttributeError, match=r"^module 'cdcsync\.metrics' has no attribute 'Nope'$"):
        _ = package.Nope


# --- Prometheus ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report", "sample", "labels", "expected"),
    [
        (
            lambda m: (m.records("Users", "INSERT", "indexed"), m.records("Users", "INSERT", "indexed", 4)),
            "cdcsync_records_total",
            {"table": "Users", "event": "INSERT", "outcome": "indexed"},
            5.0,
        ),
        (
            lambda m: m.records("Users", "eventName?", "dlq"),
            "cdcsync_records_total",
            {"table": "Users", "event": "UNKNOWN", "outcome": "dlq"},
            1.0,
        ),
        (lambda m: (m.bulk_retries(), m.bulk_retries(3)), "cdcsync_bulk_retries_total", {}, 4.0),
        (
            lambda m: m.dead_letters("Users", "mapper_parsing_exception", 2),
            "cdcsync_dlq_records_total",
            {"table": "Users", "reason": "mapper_parsing_exception"},
            2.0,
        ),
        (
            lambda m: m.dead_letters("Users", "failed to parse field [age]"),
            "cdcsync_dlq_records_total",
            {"table": "Users", "reason": "other"},
            1.0,
        ),
        (
            lambda m: (m.iterator_age("Users", "shardId-1", 9.5), m.iterator_age("Users", "shardId-1", 2.0)),
            "cdcsync_iterator_age_seconds",
            {"table": "Users", "shard": "shardId-1"},
            2.0,
        ),
        (
            lambda m: m.replication_lag("Users", 1.25),
            "cdcsync_replication_lag_seconds",
            {"table": "Users"},
            1.25,
        ),
        (
            lambda m: (m.shards_owned("Users", 4), m.shards_owned("Users", 3)),
            "cdcsync_shards_owned",
            {"table": "Users"},
            3.0,
        ),
        (
            lambda m: (m.backfill_items("Users", 100), m.backfill_items("Users", 25)),
            "cdcsync_backfill_items_total",
            {"table": "Users"},
            125.0,
        ),
        (
            lambda m: (
                m.rebuild_step("Users", "users", "created"),
                m.rebuild_step("Users", "users", "swapped"),
            ),
            "cdcsync_rebuild_step",
            {"table": "Users", "index": "users"},
            5.0,
        ),
        (
            lambda m: (
                m.rebuild_backfill_items("Users", "users", 10),
                m.rebuild_backfill_items("Users", "users", 30),
            ),
            "cdcsync_rebuild_backfill_items",
            {"table": "Users", "index": "users"},
            30.0,
        ),
        (
            lambda m: (m.trimmed_data("Users", "shardId-1"), m.trimmed_data("Users", "shardId-1")),
            "cdcsync_trimmed_data_total",
            {"table": "Users", "shard": "shardId-1"},
            2.0,
        ),
        (
            lambda m: (m.worker_errors("Users", "fatal"), m.worker_errors("Users", "fatal")),
            "cdcsync_worker_errors_total",
            {"table": "Users", "error": "fatal"},
            2.0,
        ),
        (
            lambda m: (m.unknown_location_writes("Users", 2), m.unknown_location_writes("Users")),
            "cdcsync_unknown_location_writes_total",
            {"table": "Users"},
            3.0,
        ),
    ],
)
def test_prometheus_metrics_reported_values_appear_in_registry(
    report: Callable[[PrometheusMetrics], object], sample: str, labels: dict[str, str], expected: float
) -> None:
    # GIVEN a fresh PrometheusMetrics
    metrics, registry = _prometheus()
    # WHEN outcomes are reported (counters add up, gauges keep the last value)
    report(metrics)
    # THEN the registry holds the value under the contract name and bounded labels
    assert registry.get_sample_value(sample, labels) == expected


def test_prometheus_metrics_bulk_request_fills_buckets_from_5ms_to_30s() -> None:
    # GIVEN a fresh PrometheusMetrics
    metrics, registry = _prometheus()
    # WHEN requests of 3 ms, 200 ms and 40 s are observed
    for seconds in (0.003, 0.2, 40.0):
        metrics.bulk_request(seconds)
    # THEN the buckets span 5 ms .. 30 s and count each request where it belongs
    name = "cdcsync_bulk_request_duration_seconds"
    buckets = {
        sample.labels["le"]: sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == f"{name}_bucket"
    }
    assert list(buckets) == [*(str(b) for b in BULK_REQUEST_DURATION_BUCKETS), "+Inf"]
    assert buckets["0.005"] == 1.0
    assert buckets["0.25"] == 2.0
    assert buckets["30.0"] == 2.0
    assert buckets["+Inf"] == 3.0
    assert registry.get_sample_value(f"{name}_count") == 3.0
    assert registry.get_sample_value(f"{name}_sum") == pytest.approx(40.203)


def test_prometheus_metrics_release_shard_drops_iterator_age_keeps_trimmed_data() -> None:
    # GIVEN a shard with an iterator age and a trimmed-data count
    metrics, registry = _prometheus()
    metrics.iterator_age("Users", "shardId-1", 30.0)
    metrics.trimmed_data("Users", "shardId-1")
    # WHEN the shard is released, twice (and a never-seen shard once)
    metrics.release_shard("Users", "shardId-1")
    metrics.release_shard("Users", "shardId-1")
    metrics.release_shard("Users", "shardId-never")
    # THEN its gauge is gone and the loss is still counted
    labels = {"table": "Users", "shard": "shardId-1"}
    assert registry.get_sample_value("cdcsync_iterator_age_seconds", labels) is None
    assert registry.get_sample_value("cdcsync_trimmed_data_total", labels) == 1.0


def test_prometheus_metrics_two_instances_do_not_share_a_registry() -> None:
    # GIVEN two instances WHEN one counts THEN the other's registry is untouched
    first, second = PrometheusMetrics(), PrometheusMetrics()
    first.bulk_retries()
    assert first.registry.get_sample_value("cdcsync_bulk_retries_total") == 1.0
    assert second.registry.get_sample_value("cdcsync_bulk_retries_total") == 0.0


def test_prometheus_metrics_given_registry_is_used() -> None:
    # GIVEN the worker's own registry WHEN PrometheusMetrics is built on it THEN it reports there
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.bulk_retries(2)
    assert metrics.registry is registry
    assert registry.get_sample_value("cdcsync_bulk_retries_total") == 2.0


# --- argument checks, the same in every implementation --------------------------------------------


@pytest.mark.parametrize(
    "factory", [PrometheusMetrics, lambda: EmfMetrics(stream=io.StringIO()), NullMetrics]
)
@pytest.mark.parametrize(
    ("report", "message"),
    [
        (
            lambda m: m.records("Users", "INSERT", "written"),
            'cdcsync_records_total: outcome "written" is not one of coalesced, deleted, dlq, indexed, '
            "skipped, stale; pass one of those",
        ),
        (
            lambda m: m.records("Users", "INSERT", "indexed", -1),
            "cdcsync_records_total: count must be >= 0, got -1",
        ),
        (lambda m: m.bulk_retries(-2), "cdcsync_bulk_retries_total: count must be >= 0, got -2"),
        (
            lambda m: m.bulk_request(math.nan),
            "cdcsync_bulk_request_duration_seconds: value must be a finite number, got nan",
        ),
        (
            lambda m: m.iterator_age("Users", "shardId-1", math.inf),
            "cdcsync_iterator_age_seconds: value must be a finite number, got inf",
        ),
        (lambda m: m.shards_owned("Users", -1), "cdcsync_shards_owned: count must be >= 0, got -1"),
        (
            lambda m: m.rebuild_step("Users", "users", "paused"),
            'cdcsync_rebuild_step: step "paused" is not one of created, waited, backfilled, verified, '
            "swapped, finished, rolled_back",
        ),
        (
            lambda m: m.worker_errors("Users", "oops"),
            'cdcsync_worker_errors_total: error "oops" is not one of bug, config, fatal, stream_gone, '
            "transient; pass one of those",
        ),
    ],
)
def test_metrics_caller_bug_raises_value_error(
    factory: Callable[[], Metrics], report: Callable[[Metrics], object], message: str
) -> None:
    # GIVEN any implementation WHEN a caller passes what no metric can hold THEN it says what and why
    metrics = factory()
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        report(metrics)


# --- EMF -----------------------------------------------------------------------------------------


def test_emf_metrics_flush_writes_one_line_per_label_combination() -> None:
    # GIVEN one invocation's outcomes
    def report(m: EmfMetrics) -> None:
        m.records("Users", "INSERT", "indexed", 3)
        m.records("Users", "INSERT", "indexed", 2)
        m.records("Users", "REMOVE", "deleted")
        m.replication_lag("Users", 4.0)
        m.replication_lag("Users", 1.5)
        m.shards_owned("Users", 1)
        m.iterator_age("Users", "shardId-1", 0.75)
        m.dead_letters("Users", "mapper_parsing_exception")
        m.bulk_request(0.125)
        m.bulk_request(0.5)
        m.bulk_retries(2)

    # WHEN they are flushed
    lines = _emf_lines(report)

    # THEN each label combination is one EMF line: counters summed, gauges last, histogram samples
    assert lines == [
        {
            "_aws": _directive(["table", "event", "outcome"], ("cdcsync_records_total", "Count")),
            "table": "Users",
            "event": "INSERT",
            "outcome": "indexed",
            "cdcsync_records_total": 5,
        },
        {
            "_aws": _directive(["table", "event", "outcome"], ("cdcsync_records_total", "Count")),
            "table": "Users",
            "event": "REMOVE",
            "outcome": "deleted",
            "cdcsync_records_total": 1,
        },
        {
            "_aws": _directive(
                ["table"], ("cdcsync_replication_lag_seconds", "Seconds"), ("cdcsync_shards_owned", "Count")
            ),
            "table": "Users",
            "cdcsync_replication_lag_seconds": 1.5,
            "cdcsync_shards_owned": 1,
        },
        {
            # the shard is written for Logs Insights but is no dimension: shard ids rotate
            "_aws": _directive(["table"], ("cdcsync_iterator_age_seconds", "Seconds")),
            "table": "Users",
            "shard": "shardId-1",
            "cdcsync_iterator_age_seconds": 0.75,
        },
        {
            "_aws": _directive(["table", "reason"], ("cdcsync_dlq_records_total", "Count")),
            "table": "Users",
            "reason": "mapper_parsing_exception",
            "cdcsync_dlq_records_total": 1,
        },
        {
            "_aws": _directive(
                [],
                ("cdcsync_bulk_retries_total", "Count"),
                ("cdcsync_bulk_request_duration_seconds", "Seconds"),
            ),
            "cdcsync_bulk_retries_total": 2,
            "cdcsync_bulk_request_duration_seconds": [0.125, 0.5],
        },
    ]
    for line in lines:
        _check_emf_shape(line)


@pytest.mark.parametrize(
    ("report", "names"),
    [
        (lambda m: m.backfill_items("Users", 10), {"cdcsync_backfill_items_total"}),
        (
            lambda m: (m.trimmed_data("Users", "shardId-1"), m.iterator_age("Users", "shardId-1", 3.0)),
            {"cdcsync_trimmed_data_total", "cdcsync_iterator_age_seconds"},
        ),
        (lambda m: m.records("Users", "BACKFILL", "stale"), {"cdcsync_records_total"}),
    ],
)
def test_emf_metrics_every_metric_line_follows_the_spec(
    report: Callable[[EmfMetrics], object], names: set[str]
) -> None:
    # GIVEN one kind of outcome WHEN flushed THEN the line has the spec's shape and names those metrics
    (line,) = _emf_lines(report)
    _check_emf_shape(line)
    assert {d["Name"] for d in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]} == names


def test_emf_metrics_more_than_100_samples_continue_on_further_lines() -> None:
    # GIVEN 250 bulk requests and a retry in one invocation
    def report(m: EmfMetrics) -> None:
        m.bulk_retries()
        for i in range(250):
            m.bulk_request(i / 1000)

    # WHEN flushed
    lines = _emf_lines(report)
    # THEN the samples are split 100/100/50, in order; the counter is written once
    samples = [line["cdcsync_bulk_request_duration_seconds"] for line in lines]
    assert [len(s) for s in samples] == [100, 100, 50]
    assert [v for s in samples for v in s] == [i / 1000 for i in range(250)]
    assert [line.get("cdcsync_bulk_retries_total") for line in lines] == [1, None, None]
    for line in lines:
        _check_emf_shape(line)


def test_emf_metrics_flush_starts_over_and_writes_nothing_when_empty() -> None:
    # GIVEN an invocation that was flushed
    stream = io.StringIO()
    metrics = EmfMetrics(stream=stream, clock=lambda: NOW)
    metrics.bulk_retries()
    metrics.flush()
    stream.truncate(0)
    stream.seek(0)
    # WHEN the next invocation reports nothing and flushes
    metrics.release_shard("Users", "shardId-1")
    metrics.flush()
    # THEN nothing is written
    assert stream.getvalue() == ""


def test_emf_metrics_default_stream_is_stdout_at_flush_time(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN EmfMetrics with the default stream and namespace, built before stdout is captured
    metrics = EmfMetrics(namespace="cdcsync-prod", clock=lambda: NOW)
    # WHEN it flushes
    metrics.bulk_retries()
    metrics.flush()
    # THEN the line is on stdout (where Lambda picks it up), under the given namespace
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "cdcsync-prod"


def test_emf_metrics_empty_namespace_raises_value_error() -> None:
    # GIVEN no namespace WHEN EmfMetrics is built THEN it refuses, saying what was given
    with pytest.raises(ValueError, match=r'^EMF namespace must be 1 to 255 characters, got ""$'):
        EmfMetrics(namespace="")
