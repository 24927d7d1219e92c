"""The worker and backfill give the same index with CDCSYNC_AWS_FAST_READS on and off (moto, OpenSearch).

Each path writes its own index from the same table: every attribute type, binary keys, big and
fractional numbers, updates and deletes. The documents and their versions must be identical; and a
backfill stopped under one path resumes under the other from the key the first one saved.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from opensearchpy import OpenSearch

from cdcsync.aws import STREAMS_POOL_CONNECTIONS
from cdcsync.backfill import BackfillStoppedError, run_backfill
from cdcsync.entrypoints.worker import build_coordinator
from cdcsync.settings import Settings, load_settings
from cdcsync.source.fast_reads import FastReads
from tests.integration.test_backfill import SCAN_START_MS, sample_item, typed
from tests.support.tables import create_items_table

MODES = {"fast": True, "botocore": False}


@dataclass
class Paths:
    table: str
    dynamodb: Any
    opensearch: OpenSearch
    settings: dict[str, Settings]  # per mode: its own index and checkpoints
    indices: dict[str, str]

    def documents(self, mode: str) -> dict[str, tuple[Any, int]]:
        index = self.indices[mode]
        self.opensearch.indices.refresh(index=index)
        hits = self.opensearch.search(
            index=index, body={"query": {"match_all": {}}}, params={"size": 10000, "version": "true"}
        )["hits"]["hits"]
        return {hit["_id"]: (hit["_source"], hit["_version"]) for hit in hits}


@pytest.fixture
def paths(
    tmp_path: Path,
    unique_name: str,
    dynamodb: Any,
    opensearch: OpenSearch,
    opensearch_url: str,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Paths]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    table = f"Wire-{unique_name}"
    create_items_table(dynamodb, table, stream_view="NEW_AND_OLD_IMAGES")
    settings: dict[str, Settings] = {}
    indices: dict[str, str] = {}
    for mode, fast in MODES.items():
        index = indices[mode] = f"{unique_name}-{mode}"
        # Not dynamic: 10**30 fits no numeric field type; the source is what the test compares.
        opensearch.indices.create(index=index, body={"mappings": {"dynamic": False}})
        mapping = tmp_path / f"{mode}.yaml"
        mapping.write_text(f"table: {table}\nindex: {index}\n")
        settings[mode] = load_settings(
            mappings=mapping,
            opensearch_url=opensearch_url,
            dlq=f"file://{tmp_path / f'dlq-{mode}.jsonl'}",
            checkpoints=f"file://{tmp_path / f'checkpoints-{mode}.json'}",
            aws_fast_reads=fast,
            max_retries=2,
            retry_max_seconds=5,
            _env_file=None,
        )
    yield Paths(table, dynamodb, opensearch, settings, indices)
    dynamodb.delete_table(TableName=table)


def botocore_calls(session: boto3.Session, operation: str) -> list[str]:
    """Every ``operation`` that a DynamoDB client of ``session`` sends and parses through botocore."""
    calls: list[str] = []
    session.events.register(f"after-call.dynamodb.{operation}", lambda **_: calls.append(operation))
    return calls


def load(paths: Paths, items: list[dict[str, Any]]) -> None:
    for item in items:
        paths.dynamodb.put_item(TableName=paths.table, Item=typed(item))


class StopAfterPagesError(RuntimeError):
    """A backfill stopped in the middle."""


class StopAfterPages:
    """An ``on_page`` hook that stops the backfill after ``pages`` written pages."""

    def __init__(self, pages: int) -> None:
        self.left = pages
        self.lock = threading.Lock()

    def __call__(self, _unit: int, _page: int) -> None:
        with self.lock:
            self.left -= 1
            if self.left == 0:
                raise StopAfterPagesError("stopped")


def test_backfill_fast_reads_on_and_off_same_documents_and_resume_across_paths(paths: Paths) -> None:
    # GIVEN 60 items (every tenth with every attribute type), binary range keys, 10 per page
    items = [sample_item(number) for number in range(60)]
    load(paths, items)

    # WHEN each path backfills its index
    for mode, fast in MODES.items():
        session = boto3.Session()
        parsed_by_botocore = botocore_calls(session, "Scan")
        report = run_backfill(
            paths.settings[mode], paths.table, segments=2, page_items=10, session=session,
            wall_ms=lambda: SCAN_START_MS,
        )  # fmt: skip
        assert (report.items_read, report.dead_lettered, report.finished) == (60, 0, True)
        # botocore parsed the Scan pages only with the switch off
        assert (len(parsed_by_botocore) == 0) is fast

    # THEN the documents and versions are identical
    fast = paths.documents("fast")
    assert len(fast) == 60
    assert fast == paths.documents("botocore")

    # AND a backfill stopped after pages read by one path resumes under the other from the saved
    # binary key, reading only what was left
    for first, then in (("fast", "botocore"), ("botocore", "fast")):
        stopped_settings = paths.settings[first].model_copy(update={"aws_fast_reads": MODES[first]})
        with pytest.raises(BackfillStoppedError):
            run_backfill(stopped_settings, paths.table, segments=2, page_items=10, session=boto3.Session(),
                         on_page=StopAfterPages(2), wall_ms=lambda: SCAN_START_MS)  # fmt: skip
        resumed_settings = paths.settings[first].model_copy(update={"aws_fast_reads": MODES[then]})
        report = run_backfill(resumed_settings, paths.table, segments=2, page_items=10, resume=True,
                              session=boto3.Session())  # fmt: skip
        assert report.finished
        assert 0 < report.items_read <= 60 - 20
    assert paths.documents("fast") == paths.documents("botocore") == fast


def eventually(check: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def last_sequence_number(dynamodb: Any, streams: Any, table: str) -> str:
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )
    return str(
        streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"][-1]["dynamodb"][
            "SequenceNumber"
        ]
    )


def checkpoints(settings: Settings) -> set[str]:
    path = Path(settings.checkpoints.removeprefix("file://"))
    if not path.exists():
        return set()
    return {lease["checkpoint"] for lease in json.loads(path.read_text())["leases"].values()}


def test_worker_fast_reads_on_and_off_same_documents(paths: Paths, dynamodbstreams: Any) -> None:
    # GIVEN a stream of inserts (every attribute type), updates and deletes
    items = [sample_item(number) for number in range(0, 30)]
    load(paths, items)
    for item in items[:5]:
        paths.dynamodb.put_item(TableName=paths.table, Item=typed({**item, "Name": "changed"}))
    for item in items[5:8]:
        paths.dynamodb.delete_item(TableName=paths.table, Key=typed({"Pk": item["Pk"], "Sk": item["Sk"]}))
    last = last_sequence_number(paths.dynamodb, dynamodbstreams, paths.table)

    # WHEN a worker of each path reads the whole stream into its index
    for mode, fast in MODES.items():
        coordinator, _ = build_coordinator(paths.settings[mode])
        streams = coordinator.streams
        assert isinstance(streams, FastReads) is fast
        assert streams.meta.config.max_pool_connections == STREAMS_POOL_CONNECTIONS
        coordinator.round_seconds = 0.3
        thread = threading.Thread(target=coordinator.run, daemon=True)
        thread.start()
        try:
            eventually(lambda mode=mode: last in checkpoints(paths.settings[mode]))  # type: ignore[misc]
        finally:
            coordinator.stopping.set()
            thread.join(timeout=30)

    # THEN both indices hold the same documents at the same versions (moto's REMOVE records of a
    # binary key carry its base64 text encoded again, so their deletes miss alike on both paths)
    fast_documents = paths.documents("fast")
    assert len(fast_documents) >= 27
    assert fast_documents == paths.documents("botocore")
    assert [source.get("Name") for source, _ in fast_documents.values()].count("changed") == 5
