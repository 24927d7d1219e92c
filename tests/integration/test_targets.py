"""Every command on every target dialect: OpenSearch, Elasticsearch and OpenSearch Serverless.

Each test runs once per ``target`` (tests/integration/conftest.py): osmem-server as OpenSearch,
the dialect stand-in as Elasticsearch 9 (or a real cluster) and as an AOSS SEARCH collection. The
commands run in-process through ``cdcsync.entrypoints.cli.main`` with the target's settings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from opensearchpy.exceptions import RequestError

from cdcsync.entrypoints.aws_lambda import build_runtime
from cdcsync.entrypoints.cli import main
from cdcsync.entrypoints.worker import build_coordinator
from cdcsync.metrics import PrometheusMetrics
from cdcsync.rebuild import run as rebuild_run
from cdcsync.settings import Settings, load_settings
from tests.integration.conftest import TargetUnderTest
from tests.integration.lambda_world import FakeContext
from tests.support.records import stream_record

INDEX_BODY = {"mappings": {"properties": {"Total": {"type": "integer"}}}}


@dataclass
class World:
    target: TargetUnderTest
    table: str
    index: str
    tmp: Path
    dynamodb: Any
    capsys: pytest.CaptureFixture[str]

    def cli(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def settings(self) -> Settings:
        return load_settings(_env_file=None)

    def put(self, key: str, total: Any) -> None:
        value = {"N": str(total)} if isinstance(total, int) else {"S": total}
        self.dynamodb.put_item(TableName=self.table, Item={"Pk": {"S": key}, "Total": value})

    def docs(self) -> dict[str, Any]:
        admin = self.target.admin
        admin.indices.refresh(index=self.index)
        hits = admin.search(index=self.index, body={"size": 100, "query": {"match_all": {}}})["hits"]["hits"]
        return {hit["_id"]: hit["_source"] for hit in hits}

    def seen(self) -> list[tuple[str, str]]:
        return self.target.seen()


@pytest.fixture
def world(
    target: TargetUnderTest,
    tmp_path: Path,
    unique_name: str,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[World]:
    table = f"Orders-{unique_name}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "Pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    mapping = f'table: {table}\nindex: {unique_name}\nid: "{{Pk}}"\nindex_body: {json.dumps(INDEX_BODY)}\n'
    (tmp_path / "mappings.yaml").write_text(mapping)
    env = {
        **target.env,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "CDCSYNC_MAPPINGS": str(tmp_path / "mappings.yaml"),
        "CDCSYNC_DLQ": f"file://{tmp_path / 'dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": f"file://{tmp_path / 'checkpoints.json'}",
        "CDCSYNC_LOG_FORMAT": "text",
        "CDCSYNC_MAX_RETRIES": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    world = World(target, table, unique_name, tmp_path, dynamodb, capsys)
    for number in range(3):
        world.put(f"order-{number}", 7)
    if target.proxy is not None:
        target.proxy.requests.clear()
    yield world
    dynamodb.delete_table(TableName=table)
    for index in target.admin.indices.get(
        index=f"{unique_name}*", allow_no_indices=True, ignore_unavailable=True
    ):
        target.admin.indices.delete(index=index)


def test_targets_indices_apply_creates_index_and_checks_versions(world: World) -> None:
    # WHEN indices apply runs on the target
    code, out, err = world.cli("indices", "apply")
    # THEN the index is created as the target spells it, and the version check ran and left nothing
    assert (code, out) == (
        0,
        f"{world.index}: created as {world.index}-000001 behind the alias {world.index}\n",
    )
    if world.target.env.get("CDCSYNC_OPENSEARCH_ALLOW_INSECURE") == "true":  # the stand-in's API key on http
        (warning,) = err.splitlines()
        assert (
            "WARNING cdcsync.sink.client: CDCSYNC_OPENSEARCH_ALLOW_INSECURE=true: apikey credentials go to"
            in warning
        )
    else:
        assert err == ""
    physical = f"{world.index}-000001"  # behind the alias world.index
    settings = world.target.admin.indices.get_settings(index=world.index)[physical]["settings"]["index"]
    assert settings.get("gc_deletes") == (None if world.target.name == "aoss" else "24h")
    assert world.docs() == {}
    if world.target.proxy is not None:
        probes = [path for method, path in world.seen() if "/_doc/cdcsync-version-check-" in path]
        assert len(probes) == 4, world.seen()
    if world.target.name == "aoss":  # nothing AOSS lacks was asked for
        assert not [path for _, path in world.seen() if path == "/" or "_refresh" in path or "scroll" in path]


def test_targets_indices_apply_routing_required_index_passes_the_version_check(world: World) -> None:
    # GIVEN a mapping with routing whose index requires it on every document request
    body = {"mappings": {"_routing": {"required": True}, **INDEX_BODY["mappings"]}}
    (world.tmp / "mappings.yaml").write_text(
        f'table: {world.table}\nindex: {world.index}\nid: "{{Pk}}"\nrouting: "{{Pk}}"\n'
        f"index_body: {json.dumps(body)}\n"
    )
    # WHEN indices apply creates the index and checks it
    code, out, _ = world.cli("indices", "apply")
    # THEN the probe (routed like any document) passes and leaves nothing
    physical = f"{world.index}-000001"  # behind the alias world.index
    assert (code, out) == (0, f"{world.index}: created as {physical} behind the alias {world.index}\n")
    assert world.target.admin.indices.get_mapping(index=world.index)[physical]["mappings"]["_routing"] == {
        "required": True
    }
    assert world.docs() == {}
    # AND the index does require routing: a document without one is refused
    with pytest.raises(RequestError) as refused:
        world.target.admin.index(index=world.index, id="x", body={})
    assert refused.value.error == "routing_missing_exception"


def test_targets_backfill_verify_and_repair_converge(world: World) -> None:
    # GIVEN the table's items backfilled into the index
    assert world.cli("indices", "apply")[0] == 0
    code, out, _ = world.cli("backfill", "--table", world.table, "--segments", "1")
    assert code == 0, out
    assert set(world.docs()) == {"order-0", "order-1", "order-2"}
    # AND drift: one document lost, one left behind by a deleted item
    world.target.admin.delete(index=world.index, id="order-0")
    world.target.admin.index(index=world.index, id="ghost", body={"Pk": "ghost", "Total": 1})
    world.target.admin.indices.refresh(index=world.index)
    # WHEN verify runs THEN it walks the index (a point in time as the target spells it) and finds both
    code, out, _ = world.cli("verify", "--table", world.table)
    assert (code, out.splitlines()[0]) == (1, "checked 3 items: 1 missing, 0 stale, 1 extra")
    # AND --repair fixes them, after which verify finds nothing
    assert world.cli("verify", "--table", world.table, "--repair")[0] == 0
    code, out, _ = world.cli("verify", "--table", world.table)
    assert (code, out.splitlines()[0]) == (0, "checked 3 items: 0 missing, 0 stale, 0 extra")
    assert set(world.docs()) == {"order-0", "order-1", "order-2"}
    paths = [path for _, path in world.seen()]
    if world.target.name == "elasticsearch" and world.target.proxy is not None:
        assert any(path.startswith(f"/{world.index}-000001/_pit?") for path in paths)
        assert not [path for path in paths if "point_in_time" in path]
    if world.target.name == "aoss":
        assert any(path.startswith(f"/{world.index}-000001/_search/point_in_time?") for path in paths)
        assert not [path for path in paths if path == "/" or "scroll" in path or "_refresh" in path]


def test_targets_dlq_redrive_writes_the_fixed_item(world: World) -> None:
    # GIVEN an item the index refuses (Total is no integer), dead-lettered by backfill
    assert world.cli("indices", "apply")[0] == 0
    world.put("order-bad", "lots")
    assert world.cli("backfill", "--table", world.table, "--segments", "1")[0] == 0
    assert "order-bad" not in world.docs()
    # WHEN the item is fixed and the dead letters redriven
    world.put("order-bad", 9)
    code, out, _ = world.cli("dlq", "redrive")
    # THEN the document is written
    assert (code, out) == (0, f"redriven 1, left 0 in file://{world.tmp / 'dlq.jsonl'}\n")
    assert world.docs()["order-bad"] == {"Pk": "order-bad", "Total": 9}


def test_targets_lambda_handler_writes_versions_and_counts_stale(world: World) -> None:
    # GIVEN the Lambda runtime on the target
    metrics = PrometheusMetrics()
    runtime = build_runtime(world.settings(), session=boto3.Session(), metrics=metrics)
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{world.table}/stream/2026-01-01T00:00:00.000"

    def record(event: str, total: int, seconds: int, sequence: int) -> dict[str, Any]:
        new = {"Pk": "order-9", "Total": total}
        return stream_record(
            event, {"Pk": "order-9"}, new, None, arn=arn, seconds=seconds, sequence=str(sequence)
        )

    # WHEN an insert, a newer modify and then a replay of the insert arrive
    first = runtime.handle({"Records": [record("INSERT", 1, 1_700_000_000, 10**20)]}, FakeContext())
    second = runtime.handle({"Records": [record("MODIFY", 2, 1_700_000_005, 10**20 + 1)]}, FakeContext())
    replay = runtime.handle({"Records": [record("INSERT", 1, 1_700_000_000, 10**20)]}, FakeContext())
    # THEN the newer state stays, with the stream time as its version, and the replay is stale
    assert first == second == replay == {"batchItemFailures": []}
    got = world.target.admin.get(index=world.index, id="order-9")
    assert (got["_source"], got["_version"]) == ({"Pk": "order-9", "Total": 2}, 1_700_000_005_000)
    stale = metrics.registry.get_sample_value(
        "cdcsync_records_total", {"table": world.table, "event": "INSERT", "outcome": "stale"}
    )
    assert stale == 1


def test_targets_worker_readiness_asks_what_the_target_answers(world: World) -> None:
    # GIVEN the worker built for the target (its index exists)
    assert world.cli("indices", "apply")[0] == 0
    coordinator, _ = build_coordinator(world.settings())
    if world.target.proxy is not None:
        world.target.proxy.requests.clear()
    # WHEN /readyz's OpenSearch check runs THEN the target answers it
    assert coordinator.check_opensearch() is True
    if world.target.name == "aoss":  # without GET / (AOSS answers 404 to it)
        assert [method for method, path in world.seen() if path == "/"] == []
        assert ("HEAD", f"/{world.index}") in world.seen()


def test_targets_rebuild_moves_alias_to_new_index_with_new_mapping(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the table's items behind the alias, and a new index_body changing Total's type
    monkeypatch.setenv("CDCSYNC_TARGETS_REFRESH_SECONDS", "0.2")
    monkeypatch.setattr(rebuild_run, "WAIT_MARGIN_SECONDS", 0.1)
    assert world.cli("indices", "apply")[0] == 0
    assert world.cli("backfill", "--table", world.table, "--segments", "1")[0] == 0
    mappings = world.tmp / "mappings.yaml"
    mappings.write_text(mappings.read_text().replace('"integer"', '"long"'))
    world.put("order-3", 8)
    # WHEN rebuilt on the target
    code, out, err = world.cli("rebuild", "--table", world.table, "--full-verify", "--keep-old", "1s")
    # THEN the alias names the next generation, which has every item and the new field mapping
    assert code == 0, (out, err)
    old, new = f"{world.index}-000001", f"{world.index}-000002"
    admin = world.target.admin
    assert set(admin.indices.get_alias(name=world.index)) == {new}
    assert set(world.docs()) == {"order-0", "order-1", "order-2", "order-3"}
    properties = admin.indices.get_mapping(index=new)[new]["mappings"]["properties"]
    assert properties["Total"] == {"type": "long"}
    # AND --finish deletes the old index
    assert world.cli("rebuild", "--table", world.table, "--finish")[0] == 0
    assert not admin.indices.exists(index=old)
    paths = [path for _, path in world.seen()]
    if world.target.proxy is not None:  # the swap went through the target's own _aliases
        assert "/_aliases" in paths
