"""The integration plumbing works: moto serves DynamoDB Streams, OpenSearch honours external versions."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError

from tests.integration.conftest import OPENSEARCH_URL_ENV
from tests.support.servers import ServerStartError, moto_server, osmem_server

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.literals import KeyTypeType
    from mypy_boto3_dynamodb.type_defs import AttributeDefinitionTypeDef, KeySchemaElementTypeDef
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_dynamodbstreams.type_defs import RecordTypeDef


def _create_streamed_table(dynamodb: DynamoDBClient, name: str, key_names: tuple[str, ...]) -> str:
    """Create a table with a NEW_AND_OLD_IMAGES stream; return the stream ARN."""
    key_types: tuple[KeyTypeType, ...] = ("HASH", "RANGE")
    schema: list[KeySchemaElementTypeDef] = [
        {"AttributeName": key, "KeyType": key_type}
        for key, key_type in zip(key_names, key_types, strict=False)
    ]
    attributes: list[AttributeDefinitionTypeDef] = [
        {"AttributeName": key, "AttributeType": "S"} for key in key_names
    ]
    dynamodb.create_table(
        TableName=name,
        KeySchema=schema,
        AttributeDefinitions=attributes,
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    return dynamodb.describe_table(TableName=name)["Table"]["LatestStreamArn"]


def _read_stream(streams: DynamoDBStreamsClient, stream_arn: str, expected_count: int) -> list[RecordTypeDef]:
    """Read every shard from TRIM_HORIZON until ``expected_count`` records arrived (or shards end)."""
    records: list[RecordTypeDef] = []
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    for shard in shards:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        ).get("ShardIterator")
        for _ in range(10):  # bounded: a stream that never delivers must fail the test, not hang it
            if iterator is None or len(records) >= expected_count:
                break
            page = streams.get_records(ShardIterator=iterator, Limit=100)
            records.extend(page["Records"])
            iterator = page.get("NextShardIterator")
    return records


def _summary(record: RecordTypeDef) -> tuple[str, Any, Any, Any]:
    data = record["dynamodb"]
    return (record["eventName"], data["Keys"], data.get("NewImage"), data.get("OldImage"))


@pytest.mark.parametrize(
    ("key_names", "key"),
    [
        pytest.param(("UserId",), {"UserId": {"S": "u1"}}, id="hash-key"),
        pytest.param(
            ("TenantId", "OrderId"), {"TenantId": {"S": "acme"}, "OrderId": {"S": "o1"}}, id="hash-range"
        ),
    ],
)
def test_moto_stream_put_update_delete_yields_records_in_order(
    dynamodb: DynamoDBClient,
    dynamodbstreams: DynamoDBStreamsClient,
    unique_name: str,
    key_names: tuple[str, ...],
    key: dict[str, Any],
) -> None:
    # GIVEN a table with a NEW_AND_OLD_IMAGES stream in moto
    stream_arn = _create_streamed_table(dynamodb, unique_name, key_names)

    # WHEN one item is put, updated and deleted
    dynamodb.put_item(TableName=unique_name, Item={**key, "Name": {"S": "Ada"}, "Visits": {"N": "1"}})
    dynamodb.update_item(
        TableName=unique_name,
        Key=key,
        UpdateExpression="SET Visits = :v",
        ExpressionAttributeValues={":v": {"N": "2"}},
    )
    dynamodb.delete_item(TableName=unique_name, Key=key)

    # THEN the stream holds INSERT, MODIFY, REMOVE with the right keys and images, in that order
    v1 = {**key, "Name": {"S": "Ada"}, "Visits": {"N": "1"}}
    v2 = {**key, "Name": {"S": "Ada"}, "Visits": {"N": "2"}}
    expected = [
        ("INSERT", key, v1, None),
        ("MODIFY", key, v2, v1),
        ("REMOVE", key, None, v2),
    ]
    records = _read_stream(dynamodbstreams, stream_arn, len(expected))
    assert [_summary(record) for record in records] == expected
    sequence_numbers = [int(record["dynamodb"]["SequenceNumber"]) for record in records]
    assert sequence_numbers == sorted(sequence_numbers)
    assert {(record["eventSource"], record["dynamodb"]["StreamViewType"]) for record in records} == {
        ("aws:dynamodb", "NEW_AND_OLD_IMAGES")
    }


def test_moto_stream_stamps_records_in_whole_seconds_as_aws_does(
    dynamodb: DynamoDBClient, dynamodbstreams: DynamoDBStreamsClient, unique_name: str
) -> None:
    # GIVEN a streamed table in the session's moto server
    stream_arn = _create_streamed_table(dynamodb, unique_name, ("UserId",))

    # WHEN a few items are written in quick succession
    for n in range(5):
        dynamodb.put_item(TableName=unique_name, Item={"UserId": {"S": f"u{n}"}})

    # THEN every record's ApproximateCreationDateTime is a whole second, as DynamoDB Streams stamps
    # it (moto alone stamps microseconds, which would hide same-second ties from every test)
    records = _read_stream(dynamodbstreams, stream_arn, 5)
    times = [record["dynamodb"]["ApproximateCreationDateTime"] for record in records]
    assert len(times) == 5
    assert [t.microsecond for t in times] == [0] * 5
    assert len(set(times)) < len(times), "five writes in a row should share a second at least once"


@pytest.mark.parametrize(
    ("version", "expected_result", "expected_source"),
    [
        pytest.param(1000, None, {"name": "v2000"}, id="lower-version-is-rejected"),
        pytest.param(2000, "updated", {"name": "new"}, id="same-version-is-applied"),
        pytest.param(3000, "updated", {"name": "new"}, id="higher-version-is-applied"),
    ],
)
def test_opensearch_external_gte_write_applies_only_same_or_newer_versions(
    opensearch: OpenSearch,
    unique_name: str,
    version: int,
    expected_result: str | None,
    expected_source: dict[str, str],
) -> None:
    # GIVEN a document written with external version 2000
    first = opensearch.index(
        index=unique_name, id="1", body={"name": "v2000"}, version=2000, version_type="external_gte"
    )
    assert (first["result"], first["_version"]) == ("created", 2000)

    # WHEN the same document is written again with another external version
    write: dict[str, Any] = {
        "index": unique_name,
        "id": "1",
        "body": {"name": "new"},
        "version_type": "external_gte",
    }
    if expected_result is None:
        with pytest.raises(ConflictError) as raised:
            opensearch.index(**write, version=version)
        # THEN a lower version is a 409 version conflict
        assert raised.value.status_code == 409
        assert raised.value.error == "version_conflict_engine_exception"
        info = raised.value.info
        assert isinstance(info, dict)
        assert info["error"]["reason"] == (
            "[1]: version conflict, current version [2000] is higher than the one provided [1000]"
        )
    else:
        # THEN a same or higher version is applied and becomes the document's version
        response = opensearch.index(**write, version=version)
        assert (response["result"], response["_version"]) == (expected_result, version)

    stored = opensearch.get(index=unique_name, id="1")
    assert stored["_source"] == expected_source
    assert stored["_version"] == max(version, 2000)


@pytest.mark.parametrize("fixture_name", ["moto_endpoint", "opensearch_url"])
def test_server_fixture_listens_on_loopback_port(request: pytest.FixtureRequest, fixture_name: str) -> None:
    # GIVEN a server started by a session fixture (not an external cluster)
    if fixture_name == "opensearch_url" and os.environ.get(OPENSEARCH_URL_ENV):
        pytest.skip(f"{OPENSEARCH_URL_ENV} points at an external cluster; no local server was started")
    url = request.getfixturevalue(fixture_name)

    # WHEN its URL is parsed
    parts = urlsplit(url)

    # THEN it is plain HTTP on 127.0.0.1 and a TCP connection there succeeds
    assert (parts.scheme, parts.hostname) == ("http", "127.0.0.1")
    assert parts.port is not None
    assert parts.port > 0
    with socket.create_connection(("127.0.0.1", parts.port), timeout=5):
        pass


def test_unique_name_is_short_lowercase_and_distinct(unique_name: str) -> None:
    # GIVEN / WHEN a test asks for a unique name
    # THEN it is a valid index name and DynamoDB table name, short enough to take suffixes
    assert re.fullmatch(r"t-[0-9a-f]{6}", unique_name)


def test_osmem_server_broken_binary_raises_with_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a "server" binary that prints an error and exits
    binary = tmp_path / "osmem-server"
    binary.write_text("#!/bin/sh\necho 'cannot start: disk full' >&2\nexit 3\n")
    binary.chmod(0o755)
    monkeypatch.setenv("OSMEM_SERVER_BIN", str(binary))

    # WHEN the server is started
    with pytest.raises(ServerStartError) as raised, osmem_server(startup_timeout=10):
        pass

    # THEN the error says what failed, the exit code, what to do and the server's own output
    assert str(raised.value) == (
        f"osmem-server ({binary}) did not print its URL as JSON within 10 s (exit code 3); "
        "set OSMEM_SERVER_BIN to a working binary; last output:\ncannot start: disk full"
    )


def test_moto_server_not_answering_in_time_raises_with_timeout() -> None:
    # GIVEN a start-up timeout too short for any server
    # WHEN moto is started with it
    with pytest.raises(ServerStartError) as raised, moto_server(startup_timeout=0.001):
        pass

    # THEN the error names the probe URL and the timeout
    assert re.match(
        r"moto_server did not answer http://127\.0\.0\.1:\d+/moto-api/data\.json within 0\.001 s; "
        r"check that moto\[server\] is installed",
        str(raised.value),
    )
