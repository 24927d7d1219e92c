"""Convergence through the real handler and a real OpenSearch-compatible server.

Random histories of puts, updates and deletes on a few keys (many in the same second), split
across two shards by key, delivered the ways AWS delivers them: batches delivered twice, retries
from the reported failed record, crashes that replay from an older checkpoint, arbitrary
interleaving of the two shards' pollers, and transient OpenSearch failures injected by a proxy.
The index must end equal to the table. The second test takes its records from a real table's
moto stream, stamped in whole seconds as AWS does, so most of one history's records tie.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch

from tests.integration.lambda_world import LambdaWorld, make_world
from tests.support.fault_proxy import FaultProxy, fault_proxy

T0 = 1_700_000_000
KEYS = (1, 2, 3, 4)  # shard = key % 2

operations = st.tuples(
    st.sampled_from(KEYS),
    st.sampled_from(["put", "put", "update", "delete"]),
    st.sampled_from(["active", "banned"]),
    st.integers(min_value=0, max_value=9),
    st.sampled_from([0, 0, 0, 1]),
)
# What happens at each poller step: which shard polls, and what goes wrong.
steps = st.tuples(
    st.integers(min_value=0, max_value=1),
    st.sampled_from(["ok", "ok", "ok", "duplicate", "crash", "fault_503", "fault_items", "fault_drop"]),
    st.integers(min_value=1, max_value=4),
)


@pytest.fixture
def proxied(opensearch_url: str) -> Iterator[FaultProxy]:
    with fault_proxy(opensearch_url) as proxy:
        yield proxy


@pytest.fixture
def convergence_world(
    tmp_path: Path,
    unique_name: str,
    opensearch: OpenSearch,
    proxied: FaultProxy,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> LambdaWorld:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return make_world(
        tmp_path,
        unique_name=unique_name,
        opensearch=opensearch,
        opensearch_url=proxied.url,
        dynamodb=dynamodb,
        mapping="where:\n  Status: [{anything-but: [banned]}]\n",
        retries=1,
    )


def history(
    world: LambdaWorld, ops: list[tuple[int, str, str, int, int]]
) -> tuple[dict[int, list[dict[str, Any]]], dict[int, dict[str, Any]]]:
    """Apply ops to a simulated table; return each shard's records and the final table."""
    table: dict[int, dict[str, Any]] = {}
    shards: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    seconds = T0
    for key, kind, status, payload, wait in ops:
        seconds += wait
        old = table.get(key)
        if kind == "delete" or (kind == "update" and old is None):
            if old is None:
                continue
            new = None
            del table[key]
        else:
            new = {
                **(old if kind == "update" and old else {"UserId": key}),
                "Status": status,
                "Payload": payload,
            }
            table[key] = new
        event = "REMOVE" if new is None else ("INSERT" if old is None else "MODIFY")
        shards[key % 2].append(world.record(event, key, new, old, seconds=seconds))
    return shards, table


def inject(proxy: FaultProxy, fault: str) -> None:
    if fault == "fault_503":
        proxy.fail(times=2, status=503, path="/_bulk")
    elif fault == "fault_items":
        proxy.reject_bulk_items(times=1, item_status=429, every=2)
    elif fault == "fault_drop":
        proxy.drop(times=1, path="/_bulk")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow explain phase
)
@given(st.lists(operations, min_size=3, max_size=24), st.lists(steps, max_size=40))
def test_convergence_lambda_deliveries_with_faults_leave_index_equal_to_table(
    convergence_world: LambdaWorld,
    proxied: FaultProxy,
    ops: list[tuple[int, str, str, int, int]],
    plan: list[tuple[int, str, int]],
) -> None:
    world = convergence_world
    world.opensearch.indices.delete(index=world.index, ignore_unavailable=True)
    proxied.reset()
    shards, table = history(world, ops)
    deliver(world, proxied, shards, plan)

    expected = {str(key): item for key, item in table.items() if item["Status"] != "banned"}
    assert indexed(world) == expected


def deliver(
    world: LambdaWorld,
    proxied: FaultProxy,
    shards: dict[int, list[dict[str, Any]]],
    plan: list[tuple[int, str, int]],
) -> None:
    """Deliver each shard's records as Lambda's pollers would, with ``plan``'s faults, then catch up."""
    position = {0: 0, 1: 0}  # each shard's checkpoint: first record not yet acknowledged

    def poll(shard: int, size: int, fault: str) -> None:
        records = shards[shard]
        start = position[shard]
        if start >= len(records):
            return
        batch = records[start : start + size]
        inject(proxied, fault)
        answer = world.invoke(*batch)
        proxied.reset()
        failures = answer["batchItemFailures"]
        if failures:
            failed = failures[0]["itemIdentifier"]
            sequences = [r["dynamodb"]["SequenceNumber"] for r in records]
            position[shard] = sequences.index(failed)  # Lambda retries from the reported record
        else:
            position[shard] = start + len(batch)
        if fault == "duplicate":
            world.invoke(*batch)  # the same batch delivered again
        elif fault == "crash":
            position[shard] = max(0, position[shard] - size - 1)  # restart from an older checkpoint

    for shard, fault, size in plan:
        poll(shard, size, fault)
    for shard in (0, 1):  # then the pollers catch up without faults
        for _ in range(len(shards[shard])):
            if position[shard] < len(shards[shard]):
                poll(shard, 4, "ok")
        assert position[shard] == len(shards[shard]), "a fault-free poll did not make progress"


def indexed(world: LambdaWorld) -> dict[str, dict[str, Any]]:
    return world.docs() if world.opensearch.indices.exists(index=world.index) else {}


@dataclass
class MotoStream:
    """The world's table with a real moto stream, read from where the last example stopped."""

    arn: str
    iterator: str
    examples: int = 0


@pytest.fixture
def moto_stream(convergence_world: LambdaWorld, dynamodbstreams: Any) -> MotoStream:
    table = convergence_world.table
    dynamodb = convergence_world.dynamodb
    dynamodb.update_table(
        TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    )
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    (shard,) = dynamodbstreams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = dynamodbstreams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return MotoStream(arn, iterator)


def write_history(world: LambdaWorld, ops: list[tuple[int, str, str, int, int]], first_key: int) -> set[int]:
    """Apply ops to the real table as fast as it goes, so most changes share a second."""
    dynamodb, table = world.dynamodb, world.table
    keys = set()
    for key_index, kind, status, payload, _ in ops:
        key = {"UserId": {"N": str(first_key + key_index)}}
        keys.add(first_key + key_index)
        values = {"Status": {"S": status}, "Payload": {"N": str(payload)}}
        if kind == "put":
            dynamodb.put_item(TableName=table, Item={**key, **values})
        elif kind == "update":  # only an existing item, as in the simulated history
            with contextlib.suppress(dynamodb.exceptions.ConditionalCheckFailedException):
                dynamodb.update_item(
                    TableName=table,
                    Key=key,
                    UpdateExpression="SET #s = :s, Payload = :p",
                    ConditionExpression="attribute_exists(UserId)",
                    ExpressionAttributeNames={"#s": "Status"},
                    ExpressionAttributeValues={":s": values["Status"], ":p": values["Payload"]},
                )
        else:
            dynamodb.delete_item(TableName=table, Key=key)
    return keys


def read_new_records(streams: Any, stream: MotoStream, keys: set[int]) -> dict[int, list[dict[str, Any]]]:
    """The stream's new records as Lambda delivers them, split into two shards by key."""
    shards: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    while True:
        page = streams.get_records(ShardIterator=stream.iterator, Limit=1000)
        stream.iterator = page["NextShardIterator"]
        if not page["Records"]:
            return shards
        for record in page["Records"]:
            created = record["dynamodb"]["ApproximateCreationDateTime"]
            second = int(created.timestamp())
            assert second == created.timestamp(), "the moto fixture must stamp whole seconds, as AWS does"
            key = int(record["dynamodb"]["Keys"]["UserId"]["N"])
            assert key in keys
            event = {
                **record,
                "eventSourceARN": stream.arn,
                "dynamodb": {**record["dynamodb"], "ApproximateCreationDateTime": second},
            }
            shards[key % 2].append(event)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
@given(st.lists(operations, min_size=3, max_size=24), st.lists(steps, max_size=40))
def test_convergence_moto_stream_whole_second_ties_with_faults_leave_index_equal_to_table(
    convergence_world: LambdaWorld,
    proxied: FaultProxy,
    moto_stream: MotoStream,
    dynamodbstreams: Any,
    ops: list[tuple[int, str, str, int, int]],
    plan: list[tuple[int, str, int]],
) -> None:
    # GIVEN a real table and its stream, stamped in whole seconds as AWS does (most records tie)
    world = convergence_world
    world.opensearch.indices.delete(index=world.index, ignore_unavailable=True)
    proxied.reset()
    moto_stream.examples += 1
    first_key = moto_stream.examples * 10  # fresh keys for each example; the table outlives them
    keys = write_history(world, ops, first_key)
    shards = read_new_records(dynamodbstreams, moto_stream, keys)

    # WHEN its records are delivered with duplicates, retries, replays, interleaving and faults
    deliver(world, proxied, shards, plan)

    # THEN the index holds exactly the table's members
    items = world.dynamodb.batch_get_item(
        RequestItems={
            world.table: {"Keys": [{"UserId": {"N": str(key)}} for key in keys], "ConsistentRead": True}
        }
    )["Responses"][world.table]
    expected = {
        item["UserId"]["N"]: {
            "UserId": int(item["UserId"]["N"]),
            "Status": item["Status"]["S"],
            "Payload": int(item["Payload"]["N"]),
        }
        for item in items
        if item["Status"]["S"] != "banned"
    }
    assert indexed(world) == expected
