"""``cdcsync rebuild`` while the real worker syncs the table's stream (moto): readers of the alias
never see an error or miss a document, and afterwards the new index equals the table."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from opensearchpy import OpenSearch

from cdcsync.entrypoints.worker import build_coordinator
from cdcsync.metrics import NullMetrics
from cdcsync.rebuild.run import Rebuild
from cdcsync.services import Services
from cdcsync.settings import Settings, load_settings
from cdcsync.sink.indices import apply_indices
from cdcsync.verify.run import run_verify
from tests.support.tables import create_users_table

V1 = "index_body:\n  mappings: {properties: {Name: {type: keyword}}}\n"
V2 = "index_body:\n  mappings: {properties: {Name: {type: text}}}\n"
REFRESH = 0.5


@pytest.fixture
def table(dynamodb: Any, unique_name: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    name = f"Users-{unique_name}"
    create_users_table(dynamodb, name, stream_view="NEW_AND_OLD_IMAGES")
    return name


def settings_for(tmp_path: Path, table: str, index: str, opensearch_url: str, body: str) -> Settings:
    mapping = tmp_path / "users.yaml"
    mapping.write_text(f'table: {table}\nindex: {index}\nid: "{{UserId}}"\n{body}')
    return load_settings(
        mappings=mapping, opensearch_url=opensearch_url, dlq=f"file://{tmp_path / 'dlq.jsonl'}",
        checkpoints=f"file://{tmp_path / 'checkpoints.json'}", targets_refresh_seconds=REFRESH,
        _env_file=None,
    )  # fmt: skip


def put(dynamodb: Any, table: str, key: int, name: str) -> None:
    dynamodb.put_item(TableName=table, Item={"UserId": {"N": str(key)}, "Name": {"S": name}})


def eventually(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def count(opensearch: OpenSearch, index: str) -> int:
    opensearch.indices.refresh(index=index)
    return int(opensearch.count(index=index)["count"])


@pytest.fixture
def worker_stop() -> Iterator[list[threading.Event]]:
    stops: list[threading.Event] = []
    yield stops
    for stop in stops:
        stop.set()


def test_rebuild_under_live_worker_never_misses_and_converges(
    dynamodb: Any,
    table: str,
    unique_name: str,
    opensearch: OpenSearch,
    opensearch_url: str,
    tmp_path: Path,
    worker_stop: list[threading.Event],
) -> None:
    # GIVEN the worker syncing 30 items into the alias
    settings = settings_for(tmp_path, table, unique_name, opensearch_url, V1)
    services = Services(settings, session=boto3.Session(), metrics=NullMetrics())
    apply_indices(opensearch, services.mappings)
    coordinator, _ = build_coordinator(settings)
    coordinator.round_seconds = 0.3
    worker_stop.append(coordinator.stopping)
    runner = threading.Thread(target=coordinator.run, daemon=True)
    runner.start()
    for key in range(30):
        put(dynamodb, table, key, f"user {key}")
    eventually(lambda: count(opensearch, unique_name) == 30)
    stable = [str(key) for key in range(15)]
    stop = threading.Event()
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            try:
                opensearch.indices.refresh(index=unique_name)
                hits = opensearch.search(
                    index=unique_name, body={"query": {"ids": {"values": stable}}, "size": 50}
                )
                missing = set(stable) - {hit["_id"] for hit in hits["hits"]["hits"]}
                if missing:
                    problems.append(f"missing {sorted(missing)}")
            except Exception as exc:  # noqa: BLE001 - what a reader would see
                problems.append(repr(exc))

    def write() -> None:
        step = 0
        while not stop.is_set():
            step += 1
            put(dynamodb, table, 15 + step % 15, f"user at {step}")
            put(dynamodb, table, 100 + step, "new")
            dynamodb.delete_item(TableName=table, Key={"UserId": {"N": str(100 + step - 3)}})
            time.sleep(0.05)

    threads = [threading.Thread(target=read), threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    try:
        # WHEN the index is rebuilt with a new field mapping while both run
        v2 = settings_for(tmp_path, table, unique_name, opensearch_url, V2)
        Rebuild(Services(v2, session=boto3.Session(), metrics=NullMetrics()), table, out=io.StringIO()).start(
            sample=None, keep_old_seconds=3600
        )
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    # THEN no search failed or missed a document; the alias names the new index, which has the new
    # field mapping and, once the stream is drained, equals the table
    assert problems == []
    new = f"{unique_name}-000002"
    assert set(opensearch.indices.get_alias(name=unique_name)) == {new}
    assert opensearch.indices.get_mapping(index=new)[new]["mappings"]["properties"]["Name"] == {
        "type": "text"
    }

    def converged() -> bool:
        return run_verify(v2, table, out=io.StringIO()).exit_code == 0

    eventually(converged)
