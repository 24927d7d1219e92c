"""``cdcsync rebuild`` under live writes through the Lambda handler: readers of the alias never see
an error or miss a document; afterwards the new index equals the table and has the new mapping."""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from opensearchpy import OpenSearch

from cdcsync.entrypoints.cli import main
from cdcsync.errors import ConfigError
from cdcsync.metrics import Metrics, NullMetrics, PrometheusMetrics
from cdcsync.rebuild import run as rebuild_run
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


def rebuild_services(tmp_path: Path, opensearch_url: str, metrics: Metrics | None = None) -> Services:
    """What ``cdcsync rebuild`` builds, with the mapping's new index_body (Name: text)."""
    mappings = tmp_path / "mappings.yaml"
    mappings.write_text(mappings.read_text().replace(V1, V2))
    settings = load_settings(
        mappings=mappings, opensearch_url=opensearch_url, dlq=f"file://{tmp_path}/rebuild-dlq.jsonl",
        checkpoints=f"file://{tmp_path}/checkpoints.json", targets_refresh_seconds=REFRESH, _env_file=None,
    )  # fmt: skip
    return Services(settings, session=boto3.Session(), metrics=metrics or NullMetrics())


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


@pytest.fixture
def short_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writers here refresh on every batch that follows the period: a short margin does."""
    monkeypatch.setattr(rebuild_run, "WAIT_MARGIN_SECONDS", 0.2)


class StepInterruptedError(Exception):  # stands for Ctrl-C in the middle of a step
    pass


def test_rebuild_interrupted_then_resume_status_rollback_and_finish(
    world: LambdaWorld, tmp_path: Path, opensearch_url: str, short_margin: None
) -> None:
    # GIVEN documents behind the alias, and a rebuild interrupted while it waits for the writers
    for key in range(10):
        put(world, key, f"user {key}", T0)
    services = rebuild_services(tmp_path, opensearch_url)
    old, new = f"{world.index}-000001", f"{world.index}-000002"

    def interrupt(_: float) -> None:
        raise StepInterruptedError

    with pytest.raises(StepInterruptedError):
        Rebuild(services, world.table, out=io.StringIO(), sleep=interrupt).start(
            sample=5, keep_old_seconds=3600
        )
    rebuild = Rebuild(services, world.table, out=io.StringIO())
    assert rebuild.status() == f"rebuild of {world.table}: created ({old} -> {new})"
    # WHEN resumed, a change made meanwhile is copied, and the rebuild completes
    put(world, 3, "changed", int(time.time()))
    rebuild.resume()
    # THEN the alias names the new index, which holds every document; the old one is kept and written
    assert set(world.opensearch.indices.get_alias(name=world.index)) == {new}
    assert rebuild.status().startswith(
        f"rebuild of {world.table}: swapped ({old} -> {new}); {old} kept for --rollback until "
    )
    # (same documents; versions may differ: a backfilled copy carries the read's version)
    assert sources_of(world, new) == sources_of(world, old)
    assert len(sources_of(world, new)) == 10
    # WHEN rolled back THEN the alias names the old index again and the new one is gone
    time.sleep(2 * REFRESH)
    put(world, 4, "after swap", int(time.time()) + 1)
    rebuild.rollback()
    assert set(world.opensearch.indices.get_alias(name=world.index)) == {old}
    assert not world.opensearch.indices.exists(index=new)
    assert world.doc("4") == {"UserId": 4, "Name": "after swap"}
    assert rebuild.status() == f"rebuild of {world.table}: rolled_back ({old} -> {new})"


def test_rebuild_finish_deletes_old_index_and_next_rebuild_takes_next_generation(
    world: LambdaWorld, tmp_path: Path, opensearch_url: str, short_margin: None
) -> None:
    # GIVEN a finished swap
    for key in range(5):
        put(world, key, f"user {key}", T0)
    services = rebuild_services(tmp_path, opensearch_url)
    rebuild = Rebuild(services, world.table, out=io.StringIO())
    rebuild.start(sample=None, keep_old_seconds=3600)
    old, new = f"{world.index}-000001", f"{world.index}-000002"
    # WHEN a second rebuild starts before --keep-old has passed THEN it is refused with the way out
    with pytest.raises(ConfigError) as refused:
        rebuild.start(sample=None, keep_old_seconds=3600)
    assert str(refused.value) == (
        f"rebuild of {world.table}: a rebuild is at step swapped; run cdcsync rebuild --table {world.table} "
        "with --resume, --rollback or --finish first"
    )
    # WHEN finished THEN the old index and the rebuild alias are gone, writes go on to the new index
    rebuild.finish()
    assert not world.opensearch.indices.exists(index=old)
    assert not world.opensearch.indices.exists_alias(name=f"{world.index}-rebuild")
    put(world, 1, "later", int(time.time()) + 1)
    assert world.doc("1") == {"UserId": 1, "Name": "later"}
    assert not world.opensearch.indices.exists(index=old)
    # WHEN rebuilt again THEN the next generation is built from the current one
    rebuild.start(sample=None, keep_old_seconds=3600)
    assert set(world.opensearch.indices.get_alias(name=world.index)) == {f"{world.index}-000003"}
    assert len(sources_of(world, f"{world.index}-000003")) == 5
    assert new in world.opensearch.indices.get_alias(name=f"{world.index}-rebuild")


def test_rebuild_writer_that_has_not_seen_the_rebuild_is_covered_by_the_wait(
    world: LambdaWorld, tmp_path: Path, opensearch_url: str, short_margin: None
) -> None:
    # GIVEN a writer (the Lambda handler) that read the rebuild aliases just before the rebuild began,
    # so it does not copy anything for up to CDCSYNC_TARGETS_REFRESH_SECONDS
    for key in range(5):
        put(world, key, f"user {key}", T0)
    services = rebuild_services(tmp_path, opensearch_url)
    new = f"{world.index}-000002"
    seen_copies: list[dict[str, str]] = []

    def during_wait(seconds: float) -> None:
        # WHEN that writer changes an item while the rebuild waits (it writes the old index only)
        copies = world.runtime.pipeline.writer.copies
        assert copies is not None
        seen_copies.append(copies.targets())
        put(world, 2, "changed before the writer saw the rebuild", int(time.time()))
        time.sleep(seconds)

    Rebuild(services, world.table, out=io.StringIO(), sleep=during_wait).start(
        sample=None, keep_old_seconds=3600
    )
    # THEN the change reached only the old index when it was made, yet the new index (the alias now)
    # has it: the scan began after every writer's refresh period
    assert seen_copies == [{}]
    assert sources_of(world, new)["2"] == {
        "UserId": 2,
        "Name": "changed before the writer saw the rebuild",
    }


def sources_of(world: LambdaWorld, index: str) -> dict[str, dict[str, Any]]:
    world.opensearch.indices.refresh(index=index)
    hits = world.opensearch.search(index=index, body={"query": {"match_all": {}}, "size": 100})
    return {hit["_id"]: hit["_source"] for hit in hits["hits"]["hits"]}


def test_cli_rebuild_concrete_index_refused_then_status_none(
    world: LambdaWorld,
    tmp_path: Path,
    opensearch_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the mapping's index is a concrete index (made before indices behind aliases)
    world.opensearch.indices.delete(index=f"{world.index}-000001")
    world.opensearch.indices.create(index=world.index)
    for name, value in {
        "CDCSYNC_MAPPINGS": str(tmp_path / "mappings.yaml"),
        "CDCSYNC_OPENSEARCH_URL": opensearch_url,
        "CDCSYNC_CHECKPOINTS": f"file://{tmp_path}/checkpoints.json",
        "CDCSYNC_DLQ": f"file://{tmp_path}/dlq.jsonl",
    }.items():
        monkeypatch.setenv(name, value)
    # WHEN rebuilt THEN it is refused (exit 2) with how to adopt it, and nothing was created
    assert main(["rebuild", "--table", world.table]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f'cdcsync: rebuild of {world.table}: "{world.index}" is a concrete index, not an alias; adopt it '
        'first (docs/runbooks.md, "Field mapping drift") or use the manual procedure there'
    )
    assert not world.opensearch.indices.exists(index=f"{world.index}-000002")
    assert main(["rebuild", "--table", world.table, "--status"]) == 0
    assert capsys.readouterr().out == f"rebuild of {world.table}: none\n"


def test_cli_rebuild_table_with_two_mappings_needs_mapping_then_rebuilds_that_index(
    world: LambdaWorld,
    tmp_path: Path,
    opensearch_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    short_margin: None,
) -> None:
    # GIVEN a table with two mappings (indices NAME and NAME-all), both behind aliases, and a new
    # index_body for the first one
    for key in range(5):
        put(world, key, f"user {key}", T0)
    other = f"{world.index}-all"
    mappings = tmp_path / "mappings.yaml"
    mappings.write_text(
        mappings.read_text().replace(V1, V2)
        + f'---\ntable: {world.table}\nindex: {other}\nid: "{{UserId}}"\n'
    )
    for name, value in {
        "CDCSYNC_MAPPINGS": str(mappings),
        "CDCSYNC_OPENSEARCH_URL": opensearch_url,
        "CDCSYNC_CHECKPOINTS": f"file://{tmp_path}/checkpoints.json",
        "CDCSYNC_DLQ": f"file://{tmp_path}/dlq.jsonl",
        "CDCSYNC_TARGETS_REFRESH_SECONDS": str(REFRESH),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["indices", "apply"]) == 1  # NAME's Name changes type: only a rebuild does that
    capsys.readouterr()
    # WHEN rebuilt without --mapping THEN refused (exit 2) with one line naming the choices
    assert main(["rebuild", "--table", world.table]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cdcsync: rebuild: table {world.table} has 2 mappings; say which index to rebuild with --mapping, "
        f"one of: {world.index}, {other}"
    )
    # WHEN --mapping names no mapping of the table THEN refused with the same choices
    assert main(["rebuild", "--table", world.table, "--mapping", "nope"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f'cdcsync: rebuild: table {world.table} has no mappings with index "nope"; --mapping takes one of: '
        f"{world.index}, {other}"
    )
    assert not world.opensearch.indices.exists(index=f"{world.index}-000002")
    # WHEN rebuilt with --mapping NAME THEN NAME moves to its next generation with the new mapping;
    # NAME-all stays where it was
    assert main(["rebuild", "--table", world.table, "--mapping", world.index, "--full-verify"]) == 0
    new = f"{world.index}-000002"
    assert set(world.opensearch.indices.get_alias(name=world.index)) == {new}
    assert set(world.opensearch.indices.get_alias(name=other)) == {f"{other}-000001"}
    assert len(sources_of(world, new)) == 5
    properties = world.opensearch.indices.get_mapping(index=new)[new]["mappings"]["properties"]
    assert properties["Name"]["type"] == "text"
    capsys.readouterr()
    assert main(["rebuild", "--table", world.table, "--mapping", world.index, "--status"]) == 0
    assert capsys.readouterr().out.startswith(
        f"rebuild of {world.table}: swapped ({world.index}-000001 -> {new}); {world.index}-000001 kept"
    )


class StepSampler(io.StringIO):
    """The rebuild's output, with ``cdcsync_rebuild_*`` as they were when each step's line was printed."""

    def __init__(self, metrics: PrometheusMetrics, table: str, index: str) -> None:
        super().__init__()
        self.metrics, self.labels = metrics, {"table": table, "index": index}
        self.seen: list[tuple[str, float | None, float | None]] = []

    def write(self, text: str) -> int:
        step = re.match(r"rebuild of \S+: (\w+) \(", text)
        if step:
            registry = self.metrics.registry
            self.seen.append((
                step[1],
                registry.get_sample_value("cdcsync_rebuild_step", self.labels),
                registry.get_sample_value("cdcsync_rebuild_backfill_items", self.labels),
            ))  # fmt: skip
        return super().write(text)


def test_rebuild_metrics_step_and_backfill_items_follow_each_step(
    world: LambdaWorld, tmp_path: Path, opensearch_url: str, short_margin: None
) -> None:
    # GIVEN 7 documents behind the alias and a rebuild reporting to Prometheus
    for key in range(7):
        put(world, key, f"user {key}", T0)
    metrics = PrometheusMetrics()
    services = rebuild_services(tmp_path, opensearch_url, metrics)
    out = StepSampler(metrics, world.table, world.index)
    rebuild = Rebuild(services, world.table, out=out)
    # WHEN it runs to the swap, is finished, and a second one is rolled back
    rebuild.start(sample=None, keep_old_seconds=3600)
    rebuild.finish()
    rebuild.start(sample=None, keep_old_seconds=3600)
    rebuild.rollback()
    # THEN cdcsync_rebuild_step{table,index} had each step's number as the step was reported, and
    # cdcsync_rebuild_backfill_items the items the backfill wrote to the new index
    assert out.seen == [
        ("created", 1.0, 0.0),
        ("waited", 2.0, 0.0),
        ("backfilled", 3.0, 7.0),
        ("verified", 4.0, 7.0),
        ("swapped", 5.0, 7.0),
        ("finished", 6.0, 7.0),
        ("created", 1.0, 0.0),
        ("waited", 2.0, 0.0),
        ("backfilled", 3.0, 7.0),
        ("verified", 4.0, 7.0),
        ("swapped", 5.0, 7.0),
        ("rolled_back", 7.0, 7.0),
    ]
