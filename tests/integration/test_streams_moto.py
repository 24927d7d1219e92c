"""Reading a real (moto) DynamoDB stream over HTTP: discovery, in-order reads, resuming from a checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from cdcsync.change import parse_record
from cdcsync.checkpoint import TRIM_HORIZON
from cdcsync.errors import ConfigError
from cdcsync.metrics import NullMetrics
from cdcsync.source.streams import ShardReader, list_shards, ready_shards, stream_arn_of

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient


class AgeMetrics(NullMetrics):
    def __init__(self) -> None:
        self.ages: list[float] = []

    def iterator_age(self, table: str, shard: str, seconds: float) -> None:
        super().iterator_age(table, shard, seconds)
        self.ages.append(seconds)


def create_table(dynamodb: DynamoDBClient, name: str, *, stream: bool = True) -> None:
    extra: dict[str, Any] = {}
    if stream:
        extra["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "UserId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "UserId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )


@pytest.fixture
def users(dynamodb: DynamoDBClient, unique_name: str) -> Iterator[str]:
    """A table with a NEW_AND_OLD_IMAGES stream and 3 inserts, 1 update and 1 delete on it."""
    create_table(dynamodb, unique_name)
    for user in ("u1", "u2", "u3"):
        dynamodb.put_item(TableName=unique_name, Item={"UserId": {"S": user}, "Name": {"S": user.upper()}})
    dynamodb.put_item(TableName=unique_name, Item={"UserId": {"S": "u1"}, "Name": {"S": "Ann"}})
    dynamodb.delete_item(TableName=unique_name, Key={"UserId": {"S": "u2"}})
    yield unique_name
    dynamodb.delete_table(TableName=unique_name)


def read_all(reader: ShardReader) -> list[dict[str, Any]]:
    """Read until a read comes back empty (moto's shard never closes)."""
    records: list[dict[str, Any]] = []
    while batch := reader.read().records:
        records.extend(batch)
    return records


def test_reader_moto_stream_reads_in_order_and_resumes_after_checkpoint(
    dynamodb: DynamoDBClient, dynamodbstreams: DynamoDBStreamsClient, users: str
) -> None:
    # GIVEN a table whose stream holds 5 records in one shard
    arn = stream_arn_of(dynamodb, users)
    shards = list_shards(dynamodbstreams, arn)
    assert len(shards) == 1
    assert ready_shards(shards, finished=set(), known=set()) == shards
    shard = shards[0].shard_id
    sleeps: list[float] = []
    metrics = AgeMetrics()

    def reader(checkpoint: str) -> ShardReader:
        return ShardReader(
            dynamodbstreams,
            arn,
            shard,
            checkpoint,
            table=users,
            metrics=metrics,
            sleep=sleeps.append,
            limit=2,
        )

    # WHEN it is read from the trim horizon, 2 records per GetRecords call
    first = read_all(reader(TRIM_HORIZON))
    # THEN every change arrives once, in order, and parses as a change of the table
    changes = [parse_record(record, stream_arn=arn) for record in first]
    assert [(c.event, c.keys["UserId"]) for c in changes] == [
        ("INSERT", "u1"),
        ("INSERT", "u2"),
        ("INSERT", "u3"),
        ("MODIFY", "u1"),
        ("REMOVE", "u2"),
    ]
    assert {c.table for c in changes} == {users}
    sequences = [c.sequence_number for c in changes]
    assert sequences == sorted(sequences, key=int)
    # AND the iterator age was reported for each read: small while reading, 0 once caught up
    assert all(0 <= age < 60 for age in metrics.ages)
    assert metrics.ages[-1] == 0.0

    # WHEN a new reader starts from a checkpoint in the middle, and a new change is made
    dynamodb.put_item(TableName=users, Item={"UserId": {"S": "u4"}})
    resumed = read_all(reader(sequences[2]))
    # THEN it reads exactly the records after the checkpoint
    assert [r["dynamodb"]["SequenceNumber"] for r in resumed][:2] == sequences[3:]
    assert [r["eventName"] for r in resumed] == ["MODIFY", "REMOVE", "INSERT"]


def test_stream_arn_of_moto_table_without_stream_raises_config_error(
    dynamodb: DynamoDBClient, unique_name: str
) -> None:
    # GIVEN a table created without a stream
    create_table(dynamodb, unique_name, stream=False)
    try:
        # WHEN its stream is looked up THEN the error says how to enable one
        with pytest.raises(ConfigError, match=rf"^table {unique_name} has no enabled stream; enable one"):
            stream_arn_of(dynamodb, unique_name)
    finally:
        dynamodb.delete_table(TableName=unique_name)
