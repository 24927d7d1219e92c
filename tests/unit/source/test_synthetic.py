"""Synthetic records: shaped like Lambda's, with SizeBytes as DynamoDB computes it."""

from __future__ import annotations

from typing import Any

import pytest

from cdcsync.change import parse_record
from cdcsync.source.synthetic import (
    TableStream,
    filter_warnings,
    for_mappings,
    insert_record,
    insert_records,
    item_size,
    remove_record,
    table_stream,
)
from tests.support.records import compiled

STREAM = TableStream("Users", ("Id",), "arn:aws:dynamodb:us-east-1:1:table/Users/stream/x", "us-east-1")


# Records AWS published, with the SizeBytes DynamoDB gave them: the Lambda developer guide's
# example event (26 / 59 / 38) and records of a string table (17 / 27).
@pytest.mark.parametrize(
    ("images", "size_bytes"),
    [
        ([{"Id": {"N": "101"}}, {"Message": {"S": "New item!"}, "Id": {"N": "101"}}], 26),
        (
            [
                {"Id": {"N": "101"}},
                {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}},
                {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
            ],
            59,
        ),
        ([{"Id": {"N": "101"}}, {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}}], 38),
        ([{"id": {"S": "2"}}, {"id": {"S": "2"}, "key": {"S": "original"}}], 17),
        (
            [
                {"id": {"S": "1"}},
                {"id": {"S": "1"}, "key": {"S": "updated"}},
                {"id": {"S": "1"}, "key": {"S": "value"}},
            ],
            27,
        ),
        (
            [
                {"val": {"S": "data"}, "key": {"S": "binary"}},
                {
                    "val": {"S": "data"},
                    "asdf1": {"B": "AAEqQQ=="},
                    "asdf2": {"BS": ["AAEqQQ==", "QSoBAA=="]},
                    "key": {"S": "binary"},
                },
            ],
            54,
        ),
    ],
    ids=["guide-insert", "guide-modify", "guide-remove", "strings-insert", "strings-modify", "binary"],
)
def test_item_size_of_published_records_is_their_size_bytes(
    images: list[dict[str, Any]], size_bytes: int
) -> None:
    # GIVEN the Keys and images of a record AWS delivered WHEN sized THEN the sum is its SizeBytes
    assert sum(item_size(image) for image in images) == size_bytes


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ({"N": "0.00100"}, 2),  # leading and trailing zeros trimmed: one digit
        ({"N": "123456"}, 4),
        ({"BOOL": True}, 1),
        ({"NULL": True}, 1),
        ({"L": [{"S": "ab"}, {"N": "1"}]}, 3 + 2 + 1 + 2 + 1),
        ({"M": {"k": {"S": "v"}}}, 3 + 2 + 1),
        ({"M": {}}, 3),
        ({"SS": ["a", "bc"]}, 3),
        ({"B": b"\x00\x01\x02"}, 3),
    ],
)
def test_item_size_follows_dynamodb_rules(value: dict[str, Any], size: int) -> None:
    assert item_size({"a": value}) == 1 + size


def test_insert_record_is_lambda_shaped_and_parses_with_the_given_version() -> None:
    # GIVEN a boto3 item (binary as bytes)
    item = {"Id": {"N": "101"}, "Blob": {"B": b"\xff"}}
    # WHEN its synthetic INSERT is built and parsed with an exact read version
    raw = insert_record(STREAM, item, seconds=1_700_000_000, sequence="s-1")
    record = parse_record(raw, version_ms=1_700_000_000_123)
    # THEN it has every field of a real INSERT, binary as base64, and the version is the given one
    assert raw == {
        "eventID": "s-1",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": STREAM.stream_arn,
        "dynamodb": {
            "Keys": {"Id": {"N": "101"}},
            "NewImage": {"Id": {"N": "101"}, "Blob": {"B": "/w=="}},
            "SizeBytes": 5 + 5 + 5,
            "ApproximateCreationDateTime": 1_700_000_000,
            "SequenceNumber": "s-1",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    assert (record.created_ms, record.event, record.new_image) == (
        1_700_000_000_123,
        "INSERT",
        {"Id": 101, "Blob": "/w=="},
    )


def test_remove_record_of_ttl_expiry_parses_as_ttl() -> None:
    raw = remove_record(STREAM, {"Id": {"N": "7"}}, seconds=1, sequence="r", ttl=True)
    record = parse_record(raw)
    assert (record.event, record.is_ttl_expiry, raw["dynamodb"]["SizeBytes"]) == ("REMOVE", True, 4)


def test_table_stream_reads_the_stream_view_and_arn() -> None:
    description = {
        "TableName": "T",
        "TableArn": "arn:aws:dynamodb:eu-west-1:1:table/T",
        "KeySchema": [{"AttributeName": "Pk", "KeyType": "HASH"}],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
        "LatestStreamArn": "arn:aws:dynamodb:eu-west-1:1:table/T/stream/2026",
    }
    assert table_stream(description, "eu-west-1") == TableStream(
        "T", ("Pk",), "arn:aws:dynamodb:eu-west-1:1:table/T/stream/2026", "eu-west-1", "KEYS_ONLY"
    )


def test_filter_warnings_name_size_bytes_filters() -> None:
    mapping = compiled(table="T", index="t", filter={"dynamodb": {"SizeBytes": [{"numeric": ["<", 400]}]}})
    assert filter_warnings(mapping) == [
        "test.yaml:1: filter names dynamodb.SizeBytes: backfill, verify, redrive and repair compute it "
        "from the item with DynamoDB's documented size rules, which estimate numbers; an item within a "
        "few bytes of the threshold may be judged differently from Lambda"
    ]
    assert filter_warnings(compiled(table="T", index="t", filter={"eventName": ["INSERT"]})) == []


def test_for_mappings_without_size_filter_records_leave_size_bytes_out() -> None:
    # GIVEN a table whose mappings never filter on SizeBytes (the size walk costs ~15% of a
    # backfill's CPU for nothing)
    stream = for_mappings(STREAM, [compiled(table="Users", index="u", filter={"eventName": ["INSERT"]})])
    # WHEN a record is built for an item
    raw = insert_record(stream, {"Id": {"N": "101"}}, seconds=1, sequence="s")
    # THEN it has no SizeBytes, and everything else a filter can name
    assert "SizeBytes" not in raw["dynamodb"]
    assert raw["dynamodb"]["Keys"] == {"Id": {"N": "101"}}


def test_for_mappings_with_size_filter_records_carry_size_bytes() -> None:
    sized = compiled(table="Users", index="u", filter={"dynamodb": {"SizeBytes": [{"numeric": ["<", 400]}]}})
    stream = for_mappings(STREAM, [compiled(table="Users", index="v"), sized])
    raw = insert_record(stream, {"Id": {"N": "101"}}, seconds=1, sequence="s")
    assert raw["dynamodb"]["SizeBytes"] == 10


SHAPED_ITEMS = [
    {"Id": {"S": "a"}, "Blob": {"B": "AAEqQQ=="}, "Blobs": {"BS": ["AAE=", "QSo="]}},
    {"Id": {"S": "b"}, "Deep": {"M": {"L": {"L": [{"B": "/w=="}, {"N": "1.50"}, {"NULL": True}]}}}},
    {"Id": {"S": "c"}, "Tags": {"SS": ["x", "y"]}, "Ok": {"BOOL": False}},
]


@pytest.mark.parametrize("sizes", [True, False], ids=["size-bytes", "no-size-bytes"])
def test_insert_records_of_lambda_shaped_items_equal_insert_record_of_each(sizes: bool) -> None:
    # GIVEN items already in Lambda's shape (binaries as base64 text: what FastReads' Scan returns)
    stream = TableStream(STREAM.table, ("Id",), STREAM.stream_arn, STREAM.region, sizes=sizes)
    sequences = ["backfill-00001-000000002-000000", "backfill-00001-000000002-000001", "x"]
    # WHEN a page's records are made in one pass, the items taken as they are
    records = insert_records(stream, SHAPED_ITEMS, seconds=1_700_000_000, sequences=sequences, shaped=True)
    # THEN each equals insert_record of its item, key for key and in the same order (dead letters
    # keep the record as it is)
    expected = [
        insert_record(stream, item, seconds=1_700_000_000, sequence=sequence)
        for item, sequence in zip(SHAPED_ITEMS, sequences, strict=True)
    ]
    assert records == expected
    assert [list(record) for record in records] == [list(record) for record in expected]
    assert [list(record["dynamodb"]) for record in records] == [list(r["dynamodb"]) for r in expected]
    # AND no image was copied
    assert all(r["dynamodb"]["NewImage"] is item for r, item in zip(records, SHAPED_ITEMS, strict=True))


def test_insert_records_of_boto3_items_rewrites_binaries_as_insert_record_does() -> None:
    # GIVEN an item as botocore returns it (binaries as bytes)
    item = {"Id": {"B": b"\x00\x01"}, "Set": {"BS": [b"\xff"]}, "Map": {"M": {"b": {"B": b"A"}}}}
    # WHEN its record is made without shaped
    (record,) = insert_records(STREAM, [item], seconds=1, sequences=["s"])
    # THEN binaries are base64 text, as in a Lambda event
    assert record == insert_record(STREAM, item, seconds=1, sequence="s")
    assert record["dynamodb"]["NewImage"]["Set"] == {"BS": ["/w=="]}
