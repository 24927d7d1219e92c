"""DynamoDB numbers stay exact end to end: keys of 38 digits and beyond 2^64, fractions no float holds.

The Lambda handler against moto (DynamoDB, BatchGetItem for KEYS_ONLY) and an OpenSearch-compatible
server, over HTTP; documents are checked as the raw JSON text the server stores.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from decimal import Decimal
from typing import Any

import pytest

from cdcsync.settings import load_settings
from cdcsync.sink.client import build_client
from cdcsync.values import load_json
from cdcsync.verify.compare import TableShape, compare_document, expected_documents
from cdcsync.verify.reads import mget_documents
from tests.integration.lambda_world import LambdaWorld, WorldFactory
from tests.support.records import stream_record, typed

T0 = 1_700_000_000
KEY_38 = "12345678901234567890123456789012345678"  # DynamoDB's 38 digits
KEY_BEYOND_64 = "18446744073709551617"  # 2^64 + 1
TOTAL = "12345678901234567.89"  # a float would make it 1.2345678901234568e16


@pytest.fixture
def world(world_factory: WorldFactory) -> LambdaWorld:
    return world_factory(retries=1)


def record(
    world: LambdaWorld, event: str, key: str, new: dict[str, Any] | None, **kwargs: Any
) -> dict[str, Any]:
    world.sequence += 1
    return stream_record(
        event, {"UserId": Decimal(key)}, new, arn=world.arn, sequence=str(world.sequence), **kwargs
    )


def raw_source(opensearch_url: str, index: str, doc_id: str) -> bytes:
    """The stored document as the server returns it, before any JSON parser could round a number."""
    url = f"{opensearch_url}/{index}/_doc/{urllib.parse.quote(doc_id, safe='')}?_source=true"
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: bytes = answer.read()
    return body


def test_keys_only_records_with_38_digit_and_beyond_64_bit_keys_are_fetched_and_indexed(
    world: LambdaWorld, opensearch_url: str
) -> None:
    # GIVEN items whose numeric keys have 38 digits and exceed 2^64, and KEYS_ONLY records for them
    # (indexed as keyword: OpenSearch's dynamic long refuses them, which is a mapping choice)
    world.opensearch.indices.create(
        index=world.index, body={"mappings": {"properties": {"UserId": {"type": "keyword"}}}}
    )
    for key in (KEY_38, KEY_BEYOND_64):
        world.dynamodb.put_item(
            TableName=world.table, Item={"UserId": {"N": key}, "Username": {"S": f"user {key}"}}
        )
    records = [
        record(world, "MODIFY", key, None, seconds=T0, view="KEYS_ONLY") for key in (KEY_38, KEY_BEYOND_64)
    ]
    # WHEN the handler runs (BatchGetItem reads both items)
    answer = world.invoke(*records)
    # THEN no record is failed (nothing blocks the shard) and both documents hold the exact keys
    assert answer == {"batchItemFailures": []}
    assert [letter.error for letter in world.dead_letters()] == []
    for key in (KEY_38, KEY_BEYOND_64):
        body = raw_source(opensearch_url, world.index, key)
        assert f'"UserId":{key}'.encode() in body
        assert load_json(body)["_source"] == {"UserId": int(key), "Username": f"user {key}"}


def test_fraction_beyond_float_precision_is_stored_and_read_back_exactly(
    world: LambdaWorld, opensearch_url: str
) -> None:
    # GIVEN an item with a number no float holds
    item = {"UserId": Decimal(1), "Total": Decimal(TOTAL), "Rate": Decimal("0.1")}
    # WHEN its INSERT is handled
    assert world.invoke(record(world, "INSERT", "1", item, seconds=T0)) == {"batchItemFailures": []}
    # THEN the stored JSON holds the number's exact text
    body = raw_source(opensearch_url, world.index, "1")
    assert b'"Total":12345678901234567.89' in body
    assert b'"Rate":0.1' in body
    # AND verify's read of it (mget through cdcsync's client) is exact and finds no drift
    client = build_client(load_settings(opensearch_url=opensearch_url, _env_file=None))
    shape = TableShape(world.table, {"UserId": "N"}, "us-east-1")
    mappings = world.runtime.pipeline.mappings
    (expected,) = expected_documents(shape, typed(item), "s", mappings, seconds=T0).documents
    (found,) = mget_documents(client, [(expected.index, expected.id, expected.routing)], world.table)
    assert isinstance(found, dict)
    assert found["_source"]["Total"] == Decimal(TOTAL)
    assert compare_document(expected, found) is None


def test_keys_differing_in_the_20th_decimal_are_two_documents(world: LambdaWorld) -> None:
    # GIVEN two items whose keys differ only in the 20th decimal
    keys = ("0.10000000000000000001", "0.10000000000000000002")
    inserts = [
        record(world, "INSERT", key, {"UserId": Decimal(key), "Name": key}, seconds=T0) for key in keys
    ]
    assert world.invoke(*inserts) == {"batchItemFailures": []}
    # WHEN one of them is removed
    removal = record(world, "REMOVE", keys[0], None, seconds=T0 + 1, view="KEYS_ONLY")
    assert world.invoke(removal) == {"batchItemFailures": []}
    # THEN the other's document is still there, under its own exact id
    assert set(world.docs()) == {keys[1]}
