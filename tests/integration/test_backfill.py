"""cdcsync backfill against moto (DynamoDB, S3) and the local OpenSearch server."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gc
import gzip
import json
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer

from cdcsync.backfill import BackfillStoppedError, run_backfill
from cdcsync.backfill.run import build_pipeline
from cdcsync.change import parse_record
from cdcsync.entrypoints.cli import main
from cdcsync.errors import ConfigError
from cdcsync.garbage import NEVER, YOUNG
from cdcsync.mapping.compiled import MappingSet
from cdcsync.mapping.loader import load_mappings
from cdcsync.metrics import NullMetrics, PrometheusMetrics
from cdcsync.plan import IndexAction, plan_record
from cdcsync.settings import Settings, load_settings
from cdcsync.sink.bulk_body import action_lines
from cdcsync.versions import backfill_version, read_version
from tests.support.fault_proxy import fault_proxy
from tests.support.tables import create_items_table

_serializer = TypeSerializer()
SCAN_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, injected as the scan start


def typed(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in item.items()}


def sample_item(number: int) -> dict[str, Any]:
    """Every tenth item has every type that must convert exactly; the others are small.

    moto's Scan costs ~2.5 ms per small item and ~8 ms per rich one, so the tests keep both few.
    """
    if number % 10:
        return {
            "Pk": f"user-{number:05d}",
            "Sk": bytes([number % 256]),
            "Count": number,
            "Name": f"n{number}",
        }
    return {
        "Pk": f"user-{number:05d}",
        "Sk": bytes([number % 256, 0, 255, number // 256 % 256]),
        "Big": Decimal(10**30 + number),
        "Dec": Decimal(f"3.14159265358979323846{number}"),
        "Neg": Decimal(-number),
        "Names": {f"n{number}", "b", "a"},
        "Scores": {Decimal(number), Decimal("1.5")},
        "Blobs": {b"\x00\x01", bytes([number % 256])},
        "Profile": {"Nested": {"Deep": [Decimal(number), "x", True, None, {"k": b"\xff"}]}, "Empty": {}},
        "Flag": number % 2 == 0,
        "Nothing": None,
    }


@dataclass
class World:
    table: str
    index: str
    settings: Settings
    dynamodb: Any
    opensearch_url: str
    tmp: Path

    @cached_property
    def mappings(self) -> MappingSet:
        return load_mappings(self.settings.mappings)

    def load(self, items: list[dict[str, Any]]) -> None:
        """BatchWriteItem in parallel batches of 25."""

        def put(batch: list[dict[str, Any]]) -> None:
            request = {self.table: [{"PutRequest": {"Item": typed(item)}} for item in batch]}
            while request:
                request = self.dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems")

        batches = [items[start : start + 25] for start in range(0, len(items), 25)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(put, batches))

    def stream_record(self, event: str, item: dict[str, Any], seconds: int, sequence: int) -> dict[str, Any]:
        keys = {"Pk": item["Pk"], "Sk": item["Sk"]}
        body: dict[str, Any] = {
            "Keys": typed(keys),
            "ApproximateCreationDateTime": seconds,
            "SequenceNumber": str(10**20 + sequence),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if event != "REMOVE":
            body["NewImage"] = typed(item)
        body["OldImage"] = typed(item)
        arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{self.table}/stream/2026-01-01T00:00:00.000"
        return {"eventID": str(sequence), "eventName": event, "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1", "dynamodb": body, "eventSourceARN": arn}  # fmt: skip

    def stream_document(self, item: dict[str, Any]) -> dict[str, Any]:
        """The document the planner builds from a stream INSERT of ``item``, parsed exactly."""
        record = self.stream_record("INSERT", item, 1_700_000_000, 1)
        (action,) = plan_record(parse_record(record), self.mappings)
        assert isinstance(action, IndexAction)
        line = action_lines(action).splitlines()[1]
        return exact(line)

    def documents(self) -> dict[str, tuple[dict[str, Any], int]]:
        """Every document as (exactly parsed source, version)."""
        found: dict[str, tuple[dict[str, Any], int]] = {}
        self.http("POST", f"/{self.index}/_refresh")
        answer = self.http(
            "POST", f"/{self.index}/_search?size=10000&version=true", {"query": {"match_all": {}}}
        )
        for hit in answer["hits"]["hits"]:
            found[hit["_id"]] = (hit["_source"], hit["_version"])
        return found

    def http(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.opensearch_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return exact(answer.read())


def exact(raw: bytes | str) -> Any:
    """JSON with decimals kept exact (floats would hide a lost digit)."""
    return json.loads(raw, parse_float=Decimal)


def doc_id(item: dict[str, Any]) -> str:
    return f"{item['Pk']}|{base64.b64encode(item['Sk']).decode()}"


@pytest.fixture
def world(
    tmp_path: Path,
    unique_name: str,
    dynamodb: Any,
    opensearch: Any,
    opensearch_url: str,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    with items_world(tmp_path, unique_name, dynamodb, opensearch, opensearch_url) as made:
        yield made


@contextlib.contextmanager
def items_world(
    tmp_path: Path,
    name: str,
    dynamodb: Any,
    opensearch: Any,
    opensearch_url: str,
    *,
    checkpoints: str | None = None,
    **settings: Any,
) -> Iterator[World]:
    """A table of ``name`` (``create_items_table``) mapped whole into index ``name``, file DLQ, file
    checkpoints unless ``checkpoints`` says otherwise; deleted afterwards."""
    table = f"Items-{name}"
    create_items_table(dynamodb, table)
    mapping = tmp_path / "mappings.yaml"
    mapping.write_text(f"table: {table}\nindex: {name}\n")
    loaded = load_settings(
        mappings=mapping,
        opensearch_url=opensearch_url,
        dlq=f"file://{tmp_path / 'dlq.jsonl'}",
        checkpoints=checkpoints or f"file://{tmp_path / 'checkpoints.json'}",
        max_retries=2,
        retry_max_seconds=5,
        _env_file=None,
        **settings,
    )
    # Not dynamic: 10**30 fits no numeric field type; the source is what the test compares.
    opensearch.indices.create(index=name, body={"mappings": {"dynamic": False}})
    try:
        yield World(table, name, loaded, dynamodb, opensearch_url, tmp_path)
    finally:
        dynamodb.delete_table(TableName=table)


def stored_progress(world: World) -> dict[str, Any]:
    progress: dict[str, Any] = json.loads((world.tmp / "checkpoints.json").read_text())["progress"]
    return progress[f"backfill|{world.table}"]


def test_backfill_items_of_every_type_builds_documents_of_stream_inserts(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN 600 items, 60 of them with big integers, decimals, sets, binary and nested maps
    items = [sample_item(number) for number in range(600)]
    world.load(items)
    metrics = PrometheusMetrics()
    # WHEN they are backfilled with 4 segments
    with caplog.at_level(logging.INFO, logger="cdcsync.backfill"):
        report = run_backfill(
            world.settings, world.table, segments=4, session=boto3.Session(), metrics=metrics,
            wall_ms=lambda: SCAN_START_MS,
        )  # fmt: skip
    # THEN every document equals the one a stream INSERT builds, at the backfill version
    documents = world.documents()
    assert len(documents) == len(items)
    for item in items:
        source, version = documents[doc_id(item)]
        assert source == world.stream_document(item)
        assert version == backfill_version(SCAN_START_MS)
    assert (report.items_read, report.written, report.dead_lettered, report.finished) == (600, 600, 0, True)
    assert report.segments == 4
    assert metrics.registry.get_sample_value("cdcsync_backfill_items_total", {"table": world.table}) == 600
    progress = stored_progress(world)
    assert progress["finished"] is True
    assert progress["items_read"] == 600
    assert f"backfill of {world.table}: scanning 4 of 4 segments, version {SCAN_START_MS - 5000} " \
        "(scan start 2026-01-01T00:00:00.000+00:00)" in caplog.messages  # fmt: skip
    # AND the last progress line says 100%; the summary is the caller's to print (the CLI does, once)
    progress_lines = [m for m in caplog.messages if m.startswith(f"backfill of {world.table}: 600 ")]
    assert progress_lines[-1].startswith(f"backfill of {world.table}: 600 items (100%), ")
    assert not any("items read" in m for m in caplog.messages)


def test_backfill_interrupted_then_resumed_completes_without_starting_over(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN 300 items read 20 per page by 3 segments, and a backfill that dies after its 5th page
    items = [sample_item(number) for number in range(300)]
    world.load(items)
    pages = 0
    lock = threading.Lock()

    def die_after_five(_unit: int, _page: int) -> None:
        nonlocal pages
        with lock:
            pages += 1
            if pages == 5:
                raise SimulatedCrashError("killed")

    with pytest.raises(BackfillStoppedError, match="run again with --resume"):
        run_backfill(world.settings, world.table, segments=3, page_items=20, session=boto3.Session(),
                     on_page=die_after_five, wall_ms=lambda: SCAN_START_MS)  # fmt: skip
    first = stored_progress(world)
    assert first["finished"] is False
    assert 5 * 20 <= first["items_read"] < 300
    # WHEN it is resumed (with another scan start time offered, which must be ignored)
    scans = 0

    def count_scan() -> None:
        nonlocal scans
        with lock:
            scans += 1

    with caplog.at_level(logging.INFO, logger="cdcsync.backfill"):
        report = run_backfill(world.settings, world.table, segments=3, page_items=20, resume=True,
                              session=boto3.Session(), on_scan=count_scan,
                              wall_ms=lambda: SCAN_START_MS + 10**6)  # fmt: skip
    # THEN it reads only what was left, and the index holds every item at the first run's version
    assert report.items_read == 300 - first["items_read"]
    assert scans <= (300 - first["items_read"]) // 20 + 2 * 3
    documents = world.documents()
    assert len(documents) == 300
    assert {version for _, version in documents.values()} == {backfill_version(SCAN_START_MS)}
    assert stored_progress(world)["finished"] is True
    assert stored_progress(world)["items_read"] == 300
    assert any(m.startswith(f"backfill of {world.table}: resuming ") for m in caplog.messages)
    # AND a second --resume has nothing to do
    again = run_backfill(
        world.settings, world.table, resume=True, session=boto3.Session(), on_scan=count_scan
    )
    assert (again.finished, again.items_read) == (True, 0)


class SimulatedCrashError(RuntimeError):
    """A crash in the middle of a backfill."""


@pytest.mark.parametrize(
    "apply_at_page", [0, 3], ids=["changes-before-most-pages", "changes-after-most-pages"]
)
def test_backfill_racing_stream_changes_converges_to_the_changes(world: World, apply_at_page: int) -> None:
    # GIVEN 100 items, and stream updates and deletes made after the scan started (times rounded
    # down to whole seconds, as DynamoDB gives them), applied between two backfill pages
    items = [sample_item(number) for number in range(100)]
    world.load(items)
    pipeline = build_pipeline(world.settings, world.table, session=boto3.Session(), metrics=NullMetrics())
    stream_seconds = SCAN_START_MS // 1000
    updated = {number: {**items[number], "Flag": "changed"} for number in range(0, 100, 3)}
    deleted = set(range(1, 100, 7))
    records = [
        world.stream_record("MODIFY", item, stream_seconds, number) for number, item in updated.items()
    ]
    records += [
        world.stream_record("REMOVE", items[number], stream_seconds, 1000 + number) for number in deleted
    ]

    def stream_meanwhile(_unit: int, page: int) -> None:
        if page == apply_at_page:
            assert pipeline.process(records).ok

    # WHEN the backfill runs one segment of 15-item pages with the stream changes in between
    run_backfill(world.settings, world.table, segments=1, page_items=15, session=boto3.Session(),
                 on_page=stream_meanwhile, wall_ms=lambda: SCAN_START_MS)  # fmt: skip
    # THEN the index holds the changed items, without the deleted ones, and the rest as backfilled
    documents = world.documents()
    for number, item in enumerate(items):
        found = documents.get(doc_id(item))
        if number in deleted:
            assert found is None, number
        else:
            assert found is not None, number
            assert found[0] == world.stream_document(updated.get(number, item)), number


def test_backfill_with_max_rcu_holds_consumed_capacity_near_the_limit(world: World) -> None:
    # GIVEN 30 items read one per page by 2 segments (moto charges 1 RCU per Scan call)
    world.load([sample_item(number) for number in range(30)])
    calls: list[float] = []

    def stamp() -> None:
        calls.append(time.monotonic())

    # WHEN the backfill may consume 10 RCU/s (one second of burst)
    report = run_backfill(world.settings, world.table, segments=2, max_rcu=10, page_items=1,
                          session=boto3.Session(), on_scan=stamp)  # fmt: skip
    # THEN past the one-second burst it consumed about 10 RCU per second
    assert report.items_read == 30
    assert len(calls) >= 30
    rate = (len(calls) - 1 - 10) / (calls[-1] - calls[0])
    assert 7.5 <= rate <= 11, (len(calls), calls[-1] - calls[0])


def write_export(s3: Any, bucket: str, table: str, items: list[dict[str, Any]], export_time: str) -> str:
    """An ExportTableToPointInTime layout (DYNAMODB_JSON, two gzipped data files) under exports/."""
    folder = "exports/AWSDynamoDB/01767225600000-abcd1234"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=f"{folder}/_started", Body=b"")
    halves = [items[: len(items) // 2], items[len(items) // 2 :]]
    lines = []
    for number, half in enumerate(halves):
        key = f"{folder}/data/file{number}.json.gz"
        body = b"".join(json.dumps({"Item": export_json(typed(item))}).encode() + b"\n" for item in half)
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body))
        lines.append(
            json.dumps({"itemCount": len(half), "md5Checksum": "x", "etag": "y", "dataFileS3Key": key})
        )
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-files.json", Body="\n".join(lines).encode())
    summary = {
        "version": "2020-06-30",
        "exportArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/export/01767225600000-abcd1234",
        "startTime": export_time, "endTime": export_time, "exportTime": export_time,
        "tableArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}",
        "tableId": "x", "s3Bucket": bucket, "s3Prefix": "exports",
        "manifestFilesS3Key": f"{folder}/manifest-files.json",
        "billedSizeBytes": 1, "itemCount": len(items), "outputFormat": "DYNAMODB_JSON",
    }  # fmt: skip
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-summary.json", Body=json.dumps(summary).encode())
    return f"s3://{bucket}/exports"


def export_json(value: Any) -> Any:
    """Typed values as an export writes them: binary as base64 text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {key: export_json(item) for key, item in value.items()}
    if isinstance(value, list | set):
        return [export_json(item) for item in value]
    return value


def test_backfill_from_export_loads_items_at_the_export_time_without_scanning(
    world: World, s3: Any, unique_name: str
) -> None:
    # GIVEN an export of 300 items in S3, 30 s old (the index keeps deletes 60 s), and an empty table
    items = [sample_item(number) for number in range(300)]
    url = write_export(s3, unique_name, world.table, items, "2026-01-01T00:00:00.000Z")
    scans: list[int] = []
    # WHEN it is loaded
    report = run_backfill(world.settings, world.table, from_export=url, session=boto3.Session(),
                          on_scan=lambda: scans.append(1),
                          wall_ms=lambda: SCAN_START_MS + 30_000)  # fmt: skip
    # THEN every item is indexed as a stream INSERT builds it, versioned by the export time
    assert (report.items_read, report.written, report.finished, scans) == (300, 300, True, [])
    documents = world.documents()
    assert len(documents) == 300
    for item in items:
        source, version = documents[doc_id(item)]
        assert source == world.stream_document(item)
        assert version == read_version(SCAN_START_MS)
    assert (
        stored_progress(world)["export"] == f"s3://{unique_name}/exports/AWSDynamoDB/01767225600000-abcd1234"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"outputFormat": "ION"}, "outputFormat is ION; export the table as DYNAMODB_JSON"),
        (
            {"exportType": "INCREMENTAL_EXPORT"},
            "exportType is INCREMENTAL_EXPORT; backfill needs a full export",
        ),
        (
            {"tableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/Other"},
            "the export is of table Other, not ",
        ),
    ],
)
def test_backfill_from_unusable_export_raises_config_error(
    world: World, s3: Any, unique_name: str, change: dict[str, str], message: str
) -> None:
    # GIVEN an export whose summary makes it unusable for this backfill
    url = write_export(s3, unique_name, world.table, [sample_item(1)], "2026-01-01T00:00:00.000Z")
    key = "exports/AWSDynamoDB/01767225600000-abcd1234/manifest-summary.json"
    summary = json.loads(s3.get_object(Bucket=unique_name, Key=key)["Body"].read())
    s3.put_object(Bucket=unique_name, Key=key, Body=json.dumps({**summary, **change}).encode())
    # WHEN it is loaded THEN the operator learns which file says what
    with pytest.raises(ConfigError) as caught:
        run_backfill(world.settings, world.table, from_export=url, session=boto3.Session())
    assert str(caught.value).startswith(f"s3://{unique_name}/{key}: {message}")


def test_backfill_from_prefix_without_export_raises_config_error(
    world: World, s3: Any, unique_name: str
) -> None:
    # GIVEN a bucket without an export WHEN it is loaded THEN the expected layout is named
    s3.create_bucket(Bucket=unique_name)
    with pytest.raises(ConfigError) as caught:
        run_backfill(
            world.settings, world.table, from_export=f"s3://{unique_name}/nothing", session=boto3.Session()
        )
    assert str(caught.value) == (
        f"--from-export: no manifest-summary.json under s3://{unique_name}/nothing "
        "(expected PREFIX/AWSDynamoDB/<export-id>/)"
    )


@pytest.mark.parametrize(
    "record_filter",
    [
        {"dynamodb": {"SizeBytes": [{"numeric": [">", 0]}]}},
        {"eventVersion": ["1.1"]},
        {"dynamodb": {"ApproximateCreationDateTime": [{"numeric": ["<", 10**11]}]}},
    ],
    ids=["size-bytes", "event-version", "time-in-seconds"],
)
def test_backfill_filter_on_fields_of_a_real_insert_indexes_items(
    world: World, record_filter: dict[str, Any]
) -> None:
    # GIVEN a mapping whose filter names fields every real INSERT carries (SizeBytes > 0, event
    # version 1.1, a creation time in whole seconds): Lambda passes every INSERT through it
    mapping = Path(world.settings.mappings)
    mapping.write_text(f"table: {world.table}\nindex: {world.index}\nfilter: {json.dumps(record_filter)}\n")
    items = [sample_item(number) for number in range(1, 6)]
    world.load(items)
    # WHEN the table is backfilled
    report = run_backfill(world.settings, world.table, segments=1, session=boto3.Session(),
                          wall_ms=lambda: SCAN_START_MS)  # fmt: skip
    # THEN every item is indexed, at the backfill version (not the record's whole-second time)
    assert (report.written, report.skipped) == (5, 0)
    documents = world.documents()
    assert sorted(documents) == sorted(doc_id(item) for item in items)
    assert {version for _, version in documents.values()} == {backfill_version(SCAN_START_MS)}


EXPORT_TIME = "2026-01-01T00:00:00.000Z"  # = SCAN_START_MS
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
EXPORT_FIX = (
    "take a new export and load it sooner, or scan the table instead (no --from-export), or pass "
    "--allow-old-export and then run cdcsync verify --table {table} --repair to delete what came back"
)


@pytest.mark.parametrize(
    ("gc_deletes", "age_ms", "reason"),
    [
        pytest.param(
            None, 2 * MINUTE_MS,
            'index "{index}" forgets a delete after 60s (index.gc_deletes, the default)',
            id="default-60s",
        ),
        pytest.param(
            "2h", 3 * HOUR_MS, 'index "{index}" forgets a delete after 2h (index.gc_deletes)', id="2h"
        ),
        pytest.param(
            "7d", 25 * HOUR_MS,
            "the stream keeps a delete for only 24h, so deletes made before that may never have reached "
            "the index",
            id="stream-retention",
        ),
    ],
)  # fmt: skip
def test_backfill_from_export_older_than_deletes_are_remembered_is_refused(
    world: World, s3: Any, unique_name: str, gc_deletes: str | None, age_ms: int, reason: str
) -> None:
    # GIVEN an export older than the target index remembers deletes (its tombstones' index.gc_deletes,
    # or the stream's 24 h retention when that is shorter)
    if gc_deletes is not None:
        world.http("PUT", f"/{world.index}/_settings", {"index.gc_deletes": gc_deletes})
    url = write_export(s3, unique_name, world.table, [sample_item(1)], EXPORT_TIME)
    # WHEN it is loaded
    with pytest.raises(ConfigError) as caught:
        run_backfill(world.settings, world.table, from_export=url, session=boto3.Session(),
                     wall_ms=lambda: SCAN_START_MS + age_ms)  # fmt: skip
    # THEN it is refused, saying why and what to do instead, and nothing was written or checkpointed
    folder = f"s3://{unique_name}/exports/AWSDynamoDB/01767225600000-abcd1234"
    age = {2 * MINUTE_MS: "2m", 3 * HOUR_MS: "3h", 25 * HOUR_MS: "1d 1h"}[age_ms]
    assert str(caught.value) == (
        f"--from-export: {folder} was exported at 2026-01-01T00:00:00.000Z, {age} ago, but "
        f"{reason.format(index=world.index)}: an item deleted since the export would come back; "
        + EXPORT_FIX.format(table=world.table)
    )
    assert world.documents() == {}
    assert not (world.tmp / "checkpoints.json").exists()


@pytest.mark.parametrize(
    ("gc_deletes", "age_ms"), [(None, 30_000), ("24h", 23 * HOUR_MS), ("2h", 90 * MINUTE_MS)]
)
def test_backfill_from_export_younger_than_deletes_are_remembered_loads(
    world: World, s3: Any, unique_name: str, gc_deletes: str | None, age_ms: int
) -> None:
    # GIVEN an export younger than the index remembers deletes
    if gc_deletes is not None:
        world.http("PUT", f"/{world.index}/_settings", {"index.gc_deletes": gc_deletes})
    url = write_export(s3, unique_name, world.table, [sample_item(n) for n in range(4)], EXPORT_TIME)
    # WHEN it is loaded THEN every item is written
    report = run_backfill(world.settings, world.table, from_export=url, session=boto3.Session(),
                          wall_ms=lambda: SCAN_START_MS + age_ms)  # fmt: skip
    assert (report.written, report.finished, len(world.documents())) == (4, True, 4)


def test_backfill_from_old_export_allowed_loads_and_warns(
    world: World, s3: Any, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN an export older than the index's 60 s gc_deletes
    url = write_export(s3, unique_name, world.table, [sample_item(n) for n in range(4)], EXPORT_TIME)
    # WHEN it is loaded with allow_old_export (--allow-old-export)
    with caplog.at_level(logging.WARNING, logger="cdcsync.backfill"):
        report = run_backfill(world.settings, world.table, from_export=url, session=boto3.Session(),
                              allow_old_export=True, wall_ms=lambda: SCAN_START_MS + HOUR_MS)  # fmt: skip
    # THEN it loads, and the risk and the repair are logged
    assert (report.written, report.finished) == (4, True)
    folder = f"s3://{unique_name}/exports/AWSDynamoDB/01767225600000-abcd1234"
    assert caplog.messages == [
        f'backfill of {world.table}: {folder} was exported 1h ago, but index "{world.index}" forgets a '
        "delete after 60s (index.gc_deletes, the default); loading it anyway (--allow-old-export): "
        f"run cdcsync verify --table {world.table} --repair afterwards to delete items that came back"
    ]


def test_backfill_from_export_with_unreadable_gc_deletes_assumes_the_default(
    world: World, s3: Any, unique_name: str, opensearch_url: str
) -> None:
    # GIVEN an index with a 24 h gc_deletes whose settings cannot be read (403 on GET _settings)
    world.http("PUT", f"/{world.index}/_settings", {"index.gc_deletes": "24h"})
    url = write_export(s3, unique_name, world.table, [sample_item(1)], EXPORT_TIME)
    with fault_proxy(opensearch_url) as proxy:
        proxy.fail(times=1, status=403, path=r"/_settings")
        settings = world.settings.model_copy(update={"opensearch_url": (proxy.url,)})
        # WHEN a 2 minute old export is loaded
        with pytest.raises(ConfigError) as caught:
            run_backfill(settings, world.table, from_export=url, session=boto3.Session(),
                         wall_ms=lambda: SCAN_START_MS + 2 * MINUTE_MS)  # fmt: skip
    # THEN the 60 s default is assumed, and the message says the setting could not be read
    assert (
        f'but index.gc_deletes of index "{world.index}" cannot be read (HTTP 403), so the 60s default is '
        "assumed: an item deleted since the export would come back; "
    ) in str(caught.value)


def test_backfill_from_export_to_templated_index_uses_shortest_matching_gc_deletes(
    world: World, s3: Any, unique_name: str, opensearch: Any
) -> None:
    # GIVEN a mapping writing "<name>-{Pk}", with indices eu (24h) and us (1h), and a 2 h old export
    (world.tmp / "mappings.yaml").write_text(f"table: {world.table}\nindex: '{unique_name}-{{Pk}}'\n")
    opensearch.indices.create(index=f"{unique_name}-eu", body={"settings": {"index.gc_deletes": "24h"}})
    opensearch.indices.create(index=f"{unique_name}-us", body={"settings": {"index.gc_deletes": "1h"}})
    url = write_export(s3, unique_name, world.table, [sample_item(1)], EXPORT_TIME)
    # WHEN it is loaded THEN the index that forgets deletes first is named
    with pytest.raises(ConfigError) as caught:
        run_backfill(world.settings, world.table, from_export=url, session=boto3.Session(),
                     wall_ms=lambda: SCAN_START_MS + 2 * HOUR_MS)  # fmt: skip
    assert f'but index "{unique_name}-us" forgets a delete after 1h (index.gc_deletes): ' in str(caught.value)


def test_backfill_from_export_to_missing_index_uses_its_index_template(
    world: World, s3: Any, unique_name: str, opensearch: Any
) -> None:
    # GIVEN a mapping writing an index that does not exist yet, and an index template giving it 24h
    (world.tmp / "mappings.yaml").write_text(f"table: {world.table}\nindex: {unique_name}-new\n")
    template = {
        "index_patterns": [f"{unique_name}-new*"],
        "template": {"settings": {"index.gc_deletes": "24h"}},
    }
    opensearch.indices.put_index_template(name=unique_name, body=template)
    url = write_export(s3, unique_name, world.table, [sample_item(1)], EXPORT_TIME)
    try:
        # WHEN a 2 h old export is loaded THEN it loads: the index will be created with 24 h
        report = run_backfill(world.settings, world.table, from_export=url, session=boto3.Session(),
                              wall_ms=lambda: SCAN_START_MS + 2 * HOUR_MS)  # fmt: skip
        assert report.written == 1
        # AND without the template, it would keep the 60 s default, so a 2 h old export is refused
        opensearch.indices.delete_index_template(name=unique_name)
        opensearch.indices.delete(index=f"{unique_name}-new")
        with pytest.raises(ConfigError) as caught:
            run_backfill(world.settings, world.table, from_export=url, session=boto3.Session(),
                         wall_ms=lambda: SCAN_START_MS + 2 * HOUR_MS)  # fmt: skip
        assert (
            f'but index "{unique_name}-new" does not exist and no index template sets index.gc_deletes, '
            "so it would forget a delete after 60s (the default): "
        ) in str(caught.value)
    finally:
        opensearch.indices.delete_index_template(name=unique_name, ignore=404)


def test_cli_backfill_old_export_exits_2_with_one_line_unless_allowed(
    world: World,
    s3: Any,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN an export made an hour ago, for an index that keeps deletes 60 s, and the CLI's settings
    exported = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    url = write_export(s3, unique_name, world.table, [sample_item(1)], exported.isoformat())
    for name, value in {
        "CDCSYNC_OPENSEARCH_URL": world.opensearch_url,
        "CDCSYNC_DLQ": f"file://{world.tmp / 'dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": f"file://{world.tmp / 'checkpoints.json'}",
    }.items():
        monkeypatch.setenv(name, value)
    command = [
        "backfill",
        "--table",
        world.table,
        "--from-export",
        url,
        "--mappings",
        str(world.settings.mappings),
    ]
    # WHEN it is loaded without --allow-old-export THEN exit 2 with one line saying why and what to do
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cdcsync: --from-export: s3://{unique_name}/exports/AWSDynamoDB/")
    assert f'1h ago, but index "{world.index}" forgets a delete after 60s' in err
    assert err.count("\n") == 1
    assert world.documents() == {}
    # AND with --allow-old-export it loads
    assert main([*command, "--allow-old-export"]) == 0
    assert len(world.documents()) == 1


def test_cli_backfill_prints_its_summary_once_after_a_final_100_percent(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN three items and the CLI's settings
    world.load([sample_item(number) for number in range(3)])
    for name, value in {
        "CDCSYNC_OPENSEARCH_URL": world.opensearch_url,
        "CDCSYNC_DLQ": f"file://{world.tmp / 'dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": f"file://{world.tmp / 'checkpoints.json'}",
    }.items():
        monkeypatch.setenv(name, value)
    # WHEN `cdcsync backfill` runs (stderr is not a terminal: progress goes to the log)
    code = main(
        ["backfill", "--table", world.table, "--segments", "2", "--mappings", str(world.settings.mappings)]
    )
    out, err = capsys.readouterr()
    # THEN the last progress line says 100%, and the summary is printed once, on stdout
    assert code == 0
    progress = [line for line in err.splitlines() if "cdcsync.backfill.progress" in line]
    assert re.search(
        rf"backfill of {world.table}: 3 items \(100%\), [\d,]+ items/s, 0 dead letters$", progress[-1]
    )
    assert re.fullmatch(
        rf"backfill of {world.table}: 3 items read, 3 written, 0 stale, 0 skipped, 0 dead letters "
        r"in \d+\.\d s \(2 segments\)\n",
        out,
    )
    assert (out + err).count("items read") == 1


def test_backfill_pages_are_written_with_older_generations_paced_and_restored_after(world: World) -> None:
    # GIVEN 40 items read 10 per page by 2 segments, in a process whose collector is on and nothing
    # frozen, as every process starts (a Lambda test of this run may have frozen its heap)
    world.load([sample_item(number) for number in range(40)])
    gc.unfreeze()
    assert gc.isenabled()
    thresholds = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    # WHEN they are backfilled (the collector's thresholds noted as each page is checkpointed)
    report = run_backfill(
        world.settings, world.table, segments=2, page_items=10, session=boto3.Session(),
        on_page=lambda _unit, _page: seen.append(gc.get_threshold()), wall_ms=lambda: SCAN_START_MS,
    )  # fmt: skip
    # THEN every page was written with the older generations left to the timer (cdcsync/garbage.py)
    assert report.items_read == 40
    assert seen
    assert set(seen) == {(YOUNG, NEVER, NEVER)}
    # AND afterwards the collector is as it was, nothing left frozen
    assert gc.isenabled()
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0
