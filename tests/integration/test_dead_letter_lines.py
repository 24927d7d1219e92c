"""Dead letters an operator can see: the WARNING line of each, a bounded flood, the worker's summary.

Through the Lambda handler and the container worker against moto and the local OpenSearch server,
as operators see it: the log lines, the dead letters, the metrics.
"""

from __future__ import annotations

import logging
import re
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from opensearchpy import OpenSearch

from cdcsync.entrypoints.aws_lambda import build_runtime
from cdcsync.entrypoints.worker import build_coordinator
from cdcsync.metrics import PrometheusMetrics
from cdcsync.settings import load_settings
from tests.integration.lambda_world import LambdaWorld
from tests.support.tables import create_users_table

T0 = 1_700_000_000
AGE_IS_A_NUMBER = {"mappings": {"properties": {"Age": {"type": "long"}}}}


def _parse_failure(doc_id: str) -> str:
    """osmem-server's (and OpenSearch's) words for a string in a long field, the values they quote
    redacted (``CDCSYNC_DLQ_CONTENT=projected``, the default)."""
    return (
        f"failed to parse field [Age] of type [long] in document with id '{doc_id}'. Preview of field's "
        "value: [redacted] caused by illegal_argument_exception: For input string: [redacted] (status 400)"
    )


def _world(
    tmp_path: Path,
    unique_name: str,
    opensearch: OpenSearch,
    opensearch_url: str,
    dynamodb: Any,
    mapping: str,
    stream_view: str = "NEW_AND_OLD_IMAGES",
) -> LambdaWorld:
    table = f"Users-{unique_name}"
    create_users_table(dynamodb, table)
    opensearch.indices.create(index=unique_name, body=AGE_IS_A_NUMBER)
    mapping_file = tmp_path / "mappings.yaml"
    mapping_file.write_text(f"table: {table}\nindex: {unique_name}\n" + textwrap.dedent(mapping))
    dlq_path = tmp_path / "dlq.jsonl"
    settings = load_settings(
        mappings=mapping_file, opensearch_url=opensearch_url, dlq=f"file://{dlq_path}", _env_file=None
    )
    metrics = PrometheusMetrics()
    runtime = build_runtime(settings, session=boto3.Session(), metrics=metrics)
    return LambdaWorld(table, unique_name, runtime, metrics, opensearch, dlq_path, dynamodb)


@pytest.fixture
def make(
    tmp_path: Path,
    unique_name: str,
    opensearch: OpenSearch,
    opensearch_url: str,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[str], LambdaWorld]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return lambda mapping: _world(tmp_path, unique_name, opensearch, opensearch_url, dynamodb, mapping)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# The three dead letters a newcomer's `cdcsync run` kept quiet about, one line each.
CASES = [
    pytest.param(
        'id: "{UserID}"\n',
        "plan_error",
        lambda world: (
            'plan_error: id: "{UserID}" names UserID, which is not in the keys of table '
            f"{world.table} (has: UserId); kept in file://{world.dlq_path}: fix the mapping (cdcsync "
            "validate) or the item, then run cdcsync dlq redrive"
        ),
        "NEW_AND_OLD_IMAGES",
        id="id-typo",
    ),
    pytest.param(
        'id: "{UserId}"\n',
        "mapper_parsing_exception",
        lambda world: (
            f"mapper_parsing_exception: {_parse_failure('7')}; kept in file://{world.dlq_path}: "
            "fix the index's field mappings or the item, then run cdcsync dlq redrive"
        ),
        "NEW_AND_OLD_IMAGES",
        id="opensearch-refuses-field",
    ),
    pytest.param(
        'id: "{UserId}"\nversion: "attribute:Version"\n',
        "plan_error",
        lambda world: (
            "plan_error: version: attribute:Version needs the item image, which this REMOVE "
            "record does not carry (stream view KEYS_ONLY); use the NEW_AND_OLD_IMAGES view or version: "
            f"stream; kept in file://{world.dlq_path}: fix the mapping (cdcsync validate) or the item, then "
            "run cdcsync dlq redrive"
        ),
        "KEYS_ONLY",
        id="keys-only-attribute-version",
    ),
]


@pytest.mark.parametrize(("mapping", "reason", "line", "view"), CASES)
def test_handler_dead_letter_logs_one_warning_line(
    make: Callable[[str], LambdaWorld],
    caplog: pytest.LogCaptureFixture,
    mapping: str,
    reason: str,
    line: Callable[[LambdaWorld], str],
    view: str,
) -> None:
    # GIVEN a mapping and a record that becomes a dead letter
    world = make(mapping)
    item = {"UserId": 7, "Age": "thirty"}
    event = "REMOVE" if view == "KEYS_ONLY" else "INSERT"  # a KEYS_ONLY REMOVE: no image, no version
    record = world.record(event, 7, None if view == "KEYS_ONLY" else item, seconds=T0, view=view)
    # WHEN the handler processes it
    with caplog.at_level(logging.WARNING, "cdcsync"):
        assert world.invoke(record) == {"batchItemFailures": []}
    # THEN it is stored and counted, and one WARNING line says where, why and what to do
    (letter,) = world.dead_letters()
    assert letter.error.type == reason
    assert world.counter(event, "dlq") == 1
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.getMessage() == f"dead letter in table {world.table}: {line(world)}"
    fields = (warning.table, warning.key, warning.seq, warning.reason)  # type: ignore[attr-defined]
    assert fields == (world.table, {"UserId": 7}, record["dynamodb"]["SequenceNumber"], reason)


def test_handler_dead_letter_flood_logs_bounded_lines(
    make: Callable[[str], LambdaWorld], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN 1,000 records whose Age OpenSearch cannot parse as the index's long
    world = make('id: "{UserId}"\n')
    flood = [world.record("INSERT", key, {"UserId": key, "Age": "thirty"}, seconds=T0) for key in range(1000)]
    # WHEN one invocation handles them
    with caplog.at_level(logging.WARNING, "cdcsync"):
        assert world.invoke(*flood) == {"batchItemFailures": []}
    # THEN every one is a dead letter, counted; the log has 5 lines and one line for the rest
    assert len(world.dead_letters()) == 1000
    assert world.counter("INSERT", "dlq") == 1000
    kept = f"kept in file://{world.dlq_path}: fix the index's field mappings or the item, then run"
    assert _warnings(caplog) == [
        *(
            f"dead letter in table {world.table}: mapper_parsing_exception: {_parse_failure(str(key))}; "
            f"{kept} cdcsync dlq redrive"
            for key in range(5)
        ),
        f"995 more dead letters in table {world.table} for reason mapper_parsing_exception were not logged "
        "one by one (a line each for the first 5 a minute per table and reason); cdcsync dlq show lists them",
    ]


def test_handler_dead_letter_floods_in_one_minute_each_invocation_logs_its_count(
    make: Callable[[str], LambdaWorld], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a container whose dead-letter lines run on a clock the test moves
    world = make('id: "{UserId}"\n')
    now = [1000.0]
    world.runtime.pipeline.dead_letter_log.clock = lambda: now[0]

    def more(count: int) -> str:
        return (
            f"{count} more dead letters in table {world.table} for reason mapper_parsing_exception were "
            "not logged one by one (a line each for the first 5 a minute per table and reason); "
            "cdcsync dlq show lists them"
        )

    kept = f"kept in file://{world.dlq_path}: fix the index's field mappings or the item, then run"
    lines = []
    # WHEN three invocations 10 s apart, then one a minute later, each handle 20 unparsable records
    for invocation, seconds in enumerate([0, 10, 10, 61]):
        now[0] += seconds
        first = invocation * 20
        flood = [
            world.record("INSERT", key, {"UserId": key, "Age": "thirty"}, seconds=T0)
            for key in range(first, first + 20)
        ]
        caplog.clear()
        with caplog.at_level(logging.WARNING, "cdcsync"):
            assert world.invoke(*flood) == {"batchItemFailures": []}
        lines.append(_warnings(caplog))

    # THEN each invocation ends with lines covering its dead letters: 5 a minute one by one, then counts
    def one_by_one(first: int) -> list[str]:
        return [
            f"dead letter in table {world.table}: mapper_parsing_exception: {_parse_failure(str(key))}; "
            f"{kept} cdcsync dlq redrive"
            for key in range(first, first + 5)
        ]

    assert lines == [
        [*one_by_one(0), more(15)],
        [more(20)],
        [more(20)],
        [*one_by_one(60), more(15)],  # a new minute
    ]
    assert len(world.dead_letters()) == 80
    assert world.counter("INSERT", "dlq") == 80


def test_handler_insert_then_remove_in_one_batch_counts_insert_coalesced(
    make: Callable[[str], LambdaWorld],
) -> None:
    # GIVEN an INSERT and the REMOVE of the same item in one batch
    world = make('id: "{UserId}"\n')
    item = {"UserId": 1, "Age": 30}
    # WHEN handled
    world.invoke(
        world.record("INSERT", 1, item, seconds=T0), world.record("REMOVE", 1, None, item, seconds=T0 + 1)
    )
    # THEN the REMOVE deleted the document and the INSERT is counted as coalesced, not deleted
    assert world.doc("1") is None
    assert world.counter("INSERT", "coalesced") == 1
    assert world.counter("INSERT", "deleted") == 0
    assert world.counter("REMOVE", "deleted") == 1


# --- the container worker ------------------------------------------------------------------------


def test_worker_dead_letters_log_warning_lines_and_summary(
    tmp_path: Path,
    unique_name: str,
    opensearch: OpenSearch,
    opensearch_url: str,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a worker over a table whose index takes Age as a number
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    table = f"Users-{unique_name}"
    create_users_table(dynamodb, table, stream_view="NEW_AND_OLD_IMAGES")
    opensearch.indices.create(index=unique_name, body=AGE_IS_A_NUMBER)
    mapping = tmp_path / "users.yaml"
    mapping.write_text(f'table: {table}\nindex: {unique_name}\nid: "{{UserId}}"\n')
    dlq = tmp_path / "dlq.jsonl"
    settings = load_settings(
        mappings=mapping,
        opensearch_url=opensearch_url,
        dlq=f"file://{dlq}",
        checkpoints=f"file://{tmp_path / 'checkpoints.json'}",
        _env_file=None,
    )
    coordinator, metrics = build_coordinator(settings)
    coordinator.round_seconds = 0.3
    coordinator.summary_seconds = 3600  # only the summary at shutdown: one line for the whole test
    thread = threading.Thread(target=coordinator.run, daemon=True)
    # WHEN two items are written, one with an Age OpenSearch cannot parse
    with caplog.at_level(logging.INFO, "cdcsync"):
        thread.start()
        for key, age in [(1, {"N": "30"}), (2, {"S": "thirty"})]:
            dynamodb.put_item(TableName=table, Item={"UserId": {"N": str(key)}, "Age": age})
        deadline = time.monotonic() + 20
        labels = {"table": table, "reason": "mapper_parsing_exception"}
        while not metrics.registry.get_sample_value("cdcsync_dlq_records_total", labels):
            assert time.monotonic() < deadline, "no dead letter in time"
            time.sleep(0.1)
        coordinator.stopping.set()
        thread.join(timeout=30)
    # THEN the dead letter has its WARNING line, exactly
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"dead letter in table {table}: mapper_parsing_exception: {_parse_failure('2')}; "
        f"kept in file://{dlq}: fix the index's field mappings or the item, then run cdcsync dlq redrive"
    ]
    assert (warnings[0].table, warnings[0].key) == (table, {"UserId": 2})  # type: ignore[attr-defined]
    # AND the summary at shutdown names the records by outcome and the dead letter by reason
    (summary,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("summary")]
    assert re.fullmatch(
        rf"summary of the last \d+ s for table {table}: 2 records \(1 indexed, 1 dlq\), "
        r"1 dead letter \(mapper_parsing_exception 1\), lag \d+\.\d s",
        summary,
    ), summary
