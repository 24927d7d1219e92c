"""The Lambda handler against moto (DynamoDB) and an OpenSearch-compatible server, over HTTP."""

from __future__ import annotations

import io
import json

import pytest

from cdcsync.metrics import EmfMetrics
from tests.integration.lambda_world import LambdaWorld, WorldFactory
from tests.support.fault_proxy import fault_proxy, is_bulk
from tests.support.records import fixture_event

T0 = 1_700_000_000
ALICE = {"UserId": 1, "Username": "alice", "Status": "active"}


@pytest.fixture
def world(world_factory: WorldFactory) -> LambdaWorld:
    return world_factory()


def test_handler_seed_sample_event_indexes_document(world: LambdaWorld) -> None:
    # GIVEN the seed blog's sample INSERT, pointed at this test's table
    record = fixture_event("insert")
    record["eventSourceARN"] = world.arn
    # WHEN the handler runs
    answer = world.invoke(record)
    # THEN the document is in the index, with the record's time as its version
    assert answer == {"batchItemFailures": []}
    got = world.opensearch.get(index=world.index, id="12345")
    assert got["_source"] == {"UserId": 12345, "Username": "john_doe", "Email": "john.doe@example.com"}
    assert got["_version"] == 1627992080000
    assert world.counter("INSERT", "indexed") == 1


def test_handler_insert_modify_remove_follow_the_item(world: LambdaWorld) -> None:
    insert = world.record("INSERT", 1, ALICE, seconds=T0)
    modify = world.record("MODIFY", 1, {**ALICE, "Username": "alicia"}, ALICE, seconds=T0)
    assert world.invoke(insert, modify) == {"batchItemFailures": []}
    assert world.doc("1") == {**ALICE, "Username": "alicia"}
    remove = world.record("REMOVE", 1, None, {**ALICE, "Username": "alicia"}, seconds=T0 + 1)
    assert world.invoke(remove) == {"batchItemFailures": []}
    assert world.doc("1") is None
    assert world.counter("REMOVE", "deleted") == 1


def test_handler_redelivered_batch_changes_nothing(world: LambdaWorld) -> None:
    # GIVEN a batch that was applied
    batch = [
        world.record("INSERT", 1, ALICE, seconds=T0),
        world.record("MODIFY", 1, {**ALICE, "Username": "b"}, ALICE, seconds=T0),
        world.record("INSERT", 2, {**ALICE, "UserId": 2}, seconds=T0),
    ]
    world.invoke(*batch)
    before = world.docs()
    # WHEN Lambda delivers it again
    assert world.invoke(*batch) == {"batchItemFailures": []}
    # THEN the index is the same
    assert world.docs() == before == {"1": {**ALICE, "Username": "b"}, "2": {**ALICE, "UserId": 2}}


def test_handler_old_batch_replayed_after_newer_is_stale(world: LambdaWorld) -> None:
    # GIVEN an item updated in a later second
    old = world.record("INSERT", 1, ALICE, seconds=T0)
    new = world.record("MODIFY", 1, {**ALICE, "Username": "new"}, ALICE, seconds=T0 + 1)
    world.invoke(old, new)
    # WHEN the earlier batch arrives again on its own
    assert world.invoke(old) == {"batchItemFailures": []}
    # THEN it is a stale no-op, counted as such
    assert world.doc("1") == {**ALICE, "Username": "new"}
    assert world.counter("INSERT", "stale") == 1


def test_handler_modify_leaving_where_deletes_document(world_factory: WorldFactory) -> None:
    world = world_factory(mapping="where:\n  Status: [{anything-but: [banned]}]\n")
    world.invoke(world.record("INSERT", 1, ALICE, seconds=T0))
    assert world.doc("1") is not None
    world.invoke(world.record("MODIFY", 1, {**ALICE, "Status": "banned"}, ALICE, seconds=T0 + 1))
    assert world.doc("1") is None


@pytest.mark.parametrize(("setting", "kept"), [("ignore", True), ("delete", False)])
def test_handler_ttl_remove_follows_on_ttl_expiry(
    world_factory: WorldFactory, setting: str, kept: bool
) -> None:
    world = world_factory(mapping=f"deletes: {{on_ttl_expiry: {setting}}}\n")
    world.invoke(world.record("INSERT", 1, ALICE, seconds=T0))
    world.invoke(world.record("REMOVE", 1, None, ALICE, seconds=T0 + 1, ttl=True))
    assert (world.doc("1") is not None) is kept


def test_handler_rejected_document_goes_to_dlq_and_batch_goes_on(world: LambdaWorld) -> None:
    # GIVEN an index where Age is a number
    world.opensearch.indices.create(
        index=world.index, body={"mappings": {"properties": {"Age": {"type": "long"}}}}
    )
    good = world.record("INSERT", 1, {**ALICE, "Age": 30}, seconds=T0)
    bad = world.record("INSERT", 2, {**ALICE, "UserId": 2, "Age": "thirty"}, seconds=T0)
    after = world.record("INSERT", 3, {**ALICE, "UserId": 3, "Age": 31}, seconds=T0)
    # WHEN a batch holds a document OpenSearch refuses
    answer = world.invoke(good, bad, after)
    # THEN the others are indexed, the refused one is a dead letter with OpenSearch's reason, no retry
    assert answer == {"batchItemFailures": []}
    assert set(world.docs()) == {"1", "3"}
    (letter,) = world.dead_letters()
    assert (letter.table, letter.index, letter.id, letter.error.status) == (
        world.table,
        world.index,
        "2",
        400,
    )
    assert letter.error.type == "mapper_parsing_exception"
    assert "Age" in letter.error.reason
    assert letter.keys == {"UserId": {"N": "2"}}
    assert letter.record["dynamodb"]["NewImage"]["Age"] == {"S": "thirty"}
    assert world.counter("INSERT", "dlq") == 1


@pytest.mark.parametrize("status", [429, 503])
def test_handler_opensearch_overload_is_retried_and_succeeds(
    world_factory: WorldFactory, opensearch_url: str, status: int
) -> None:
    with fault_proxy(opensearch_url) as proxy:
        world = world_factory(opensearch_url=proxy.url)
        # GIVEN OpenSearch answers the next two bulk requests with an overload status
        proxy.fail(times=2, status=status, path="/_bulk")
        # WHEN a batch is handled
        answer = world.invoke(world.record("INSERT", 1, ALICE, seconds=T0))
        # THEN the writer retried until it went through
        assert answer == {"batchItemFailures": []}
        assert world.doc("1") == ALICE
        assert proxy.faults_injected == 2


def test_handler_partial_bulk_rejection_retries_only_rejected_items(
    world_factory: WorldFactory, opensearch_url: str
) -> None:
    with fault_proxy(opensearch_url) as proxy:
        world = world_factory(opensearch_url=proxy.url)
        proxy.reject_bulk_items(times=1, item_status=429, every=2)
        records = [world.record("INSERT", n, {**ALICE, "UserId": n}, seconds=T0) for n in range(1, 7)]
        assert world.invoke(*records) == {"batchItemFailures": []}
        assert set(world.docs()) == {str(n) for n in range(1, 7)}
        bulk_bodies = [body for method, path, body in proxy.requests if is_bulk(path)]
        assert len(bulk_bodies) == 2
        assert bulk_bodies[1].count(b'"index"') == 3  # only the three rejected items were resent


def test_handler_opensearch_down_reports_earliest_failed_record(world_factory: WorldFactory) -> None:
    # GIVEN OpenSearch cannot be reached at all
    world = world_factory(opensearch_url="http://127.0.0.1:9", retries=1)
    records = [world.record("INSERT", n, {**ALICE, "UserId": n}, seconds=T0) for n in range(1, 4)]
    # WHEN a batch is handled
    answer = world.invoke(*records)
    # THEN Lambda is told to retry from the first record, and nothing is dead-lettered
    first = records[0]["dynamodb"]["SequenceNumber"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": first}]}
    assert world.dead_letters() == []


def test_handler_stops_retrying_before_the_deadline(world_factory: WorldFactory, opensearch_url: str) -> None:
    with fault_proxy(opensearch_url) as proxy:
        world = world_factory(opensearch_url=proxy.url, retries=50)
        proxy.fail(times=1000, status=503, path="/_bulk")
        record = world.record("INSERT", 1, ALICE, seconds=T0)
        answer = world.invoke(record, remaining_ms=3000)
        assert answer == {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
        proxy.reset()


def test_handler_keys_only_record_reads_item_from_table(world: LambdaWorld) -> None:
    # GIVEN an item in the table and a KEYS_ONLY stream record for it
    world.dynamodb.put_item(TableName=world.table, Item={"UserId": {"N": "7"}, "Username": {"S": "kim"}})
    record = world.record("MODIFY", 7, seconds=T0, view="KEYS_ONLY")
    # WHEN handled THEN the document is the item as read now
    assert world.invoke(record) == {"batchItemFailures": []}
    assert world.doc("7") == {"UserId": 7, "Username": "kim"}


def test_handler_dlq_unwritable_reports_record_as_failed(world: LambdaWorld) -> None:
    # GIVEN a dead-letter file that cannot be written
    world.dlq_path.mkdir()
    bad = world.record("INSERT", 1, {"UserId": 1}, seconds=T0)
    bad["dynamodb"]["NewImage"]["Broken"] = {"Q": "?"}
    # WHEN a record must be dead-lettered THEN it is reported failed, never dropped
    answer = world.invoke(bad)
    assert answer == {"batchItemFailures": [{"itemIdentifier": bad["dynamodb"]["SequenceNumber"]}]}


def test_handler_writes_emf_metrics_for_cloudwatch(world: LambdaWorld) -> None:
    # GIVEN the handler reporting through CloudWatch Embedded Metric Format, as in Lambda
    stream = io.StringIO()
    world.runtime.metrics = world.runtime.pipeline.metrics = world.runtime.pipeline.writer.metrics = (
        EmfMetrics(stream=stream)
    )
    # WHEN a batch is handled
    world.invoke(
        world.record("INSERT", 1, ALICE, seconds=T0), world.record("INSERT", 2, {**ALICE, "UserId": 2})
    )
    # THEN one EMF line carries the records counter for the table, and lag is reported
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    counted = [line for line in lines if "cdcsync_records_total" in line]
    assert [(c["table"], c["event"], c["outcome"], c["cdcsync_records_total"]) for c in counted] == [
        (world.table, "INSERT", "indexed", 2)
    ]
    assert counted[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "cdcsync"
    lag = [line for line in lines if "cdcsync_replication_lag_seconds" in line]
    assert lag[0]["cdcsync_replication_lag_seconds"] > 0
