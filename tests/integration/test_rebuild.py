"""``cdcsync rebuild`` under live writes through the Lambda handler: readers of the alias never see
an error or miss a document; afterwards the new index equals the table and has the new mapping."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from opensearchpy import OpenSearch

from cdcsync.metrics import NullMetrics
from cdcsync.rebuild.run import Rebuild
from cdcsync.services import Services
from cdcsync.settings import load_settings
from cdcsync.sink.indices import apply_indices
from cdcsync.verify.run import run_verify
from tests.integration.lambda_world import LambdaWorld, make_world

T0 = 1_700_000_000
V1 = "index_body:\n  mappings: {properties: {Name: {type: keyword}}}\n"
V2 = "index_body:\n  mappings: {properties: {Name: {type: text}}}\n"
REFRESH = 0.5


@pytest.fixture
def world(
    tmp_path: Path,
    unique_name: str,
    opensearch: OpenSearch,
    opensearch_url: str,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> LambdaWorld:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    world = make_world(
        tmp_path, unique_name=unique_name, opensearch=opensearch, opensearch_url=opensearch_url,
        dynamodb=dynamodb, mapping=V1, targets_refresh_seconds=REFRESH,
    )  # fmt: skip
    apply_indices(opensearch, world.runtime.pipeline.mappings)
    return world


def put(world: LambdaWorld, key: int, name: str, seconds: int) -> dict[str, Any]:
    item = {"UserId": key, "Name": name}
    world.dynamodb.put_item(TableName=world.table, Item={"UserId": {"N": str(key)}, "Name": {"S": name}})
    answer = world.invoke(world.record("INSERT", key, item, seconds=seconds))
    assert answer == {"batchItemFailures": []}
    return item


def rebuild_services(tmp_path: Path, opensearch_url: str) -> Services:
    """What ``cdcsync rebuild`` builds, with the mapping's new index_body (Name: text)."""
    mappings = tmp_path / "mappings.yaml"
    mappings.write_text(mappings.read_text().replace(V1, V2))
    settings = load_settings(
        mappings=mappings, opensearch_url=opensearch_url, dlq=f"file://{tmp_path}/rebuild-dlq.jsonl",
        checkpoints=f"file://{tmp_path}/checkpoints.json", targets_refresh_seconds=REFRESH, _env_file=None,
    )  # fmt: skip
    return Services(settings, session=boto3.Session(), metrics=NullMetrics())


def test_rebuild_under_live_lambda_writes_never_misses_and_swaps(
    world: LambdaWorld, tmp_path: Path, opensearch_url: str
) -> None:
    # GIVEN 40 documents behind the alias, and a mapping whose Name changes type (a rebuild)
    for key in range(40):
        put(world, key, f"user {key}", T0)
    stable = [str(key) for key in range(20)]  # never touched while the rebuild runs
    stop = threading.Event()
    problems: list[str] = []
    searches = [0]

    def read() -> None:  # a reader of the alias, all along
        while not stop.is_set():
            try:
                world.opensearch.indices.refresh(index=world.index)
                hits = world.opensearch.search(
                    index=world.index, body={"query": {"ids": {"values": stable}}, "size": 100}
                )
                found = {hit["_id"] for hit in hits["hits"]["hits"]}
                if found != set(stable):
                    problems.append(f"missing {sorted(set(stable) - found)}")
            except Exception as exc:  # noqa: BLE001 - what a reader would see
                problems.append(repr(exc))
            searches[0] += 1

    def write() -> None:  # the stream, all along: updates, inserts and deletes, at the time they happen
        second = int(time.time())
        while not stop.is_set():
            second = max(second + 1, int(time.time()))
            for key in range(20, 40):
                put(world, key, f"user {key} at {second}", second)
            put(world, 100 + second % 1000, "new", second)
            old = {"UserId": 30 + second % 10, "Name": "x"}
            world.dynamodb.delete_item(TableName=world.table, Key={"UserId": {"N": str(old["UserId"])}})
            assert world.invoke(world.record("REMOVE", old["UserId"], None, old, seconds=second)) == {
                "batchItemFailures": []
            }
            time.sleep(0.05)

    threads = [threading.Thread(target=read), threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    out = io.StringIO()
    try:
        # WHEN the table's index is rebuilt while both run
        started = time.monotonic()
        Rebuild(rebuild_services(tmp_path, opensearch_url), world.table, out=out).start(
            sample=None, keep_old_seconds=3600
        )
        wall = time.monotonic() - started
        time.sleep(2 * REFRESH)
    finally:
        print(out.getvalue())  # shown when the test fails
        stop.set()
        for thread in threads:
            thread.join()
    # THEN no search of the alias failed or missed a document, the alias names the new index, which
    # has the new field mapping and equals the table
    assert problems == []
    assert searches[0] > 10
    new = f"{world.index}-000002"
    assert set(world.opensearch.indices.get_alias(name=world.index)) == {new}
    assert world.opensearch.indices.get_mapping(index=new)[new]["mappings"]["properties"]["Name"] == {
        "type": "text"
    }
    report = run_verify(rebuild_services(tmp_path, opensearch_url).settings, world.table, out=io.StringIO())
    assert report.exit_code == 0, report.lines()
    assert out.getvalue().splitlines()[-1] == (
        f"rebuild of {world.table}: swapped ({world.index}-000001 -> {new})"
    )
    assert wall < 60
