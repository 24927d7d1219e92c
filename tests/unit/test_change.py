"""Parsing records of the three delivery shapes into ChangeRecord."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from cdcsync.change import parse_record, table_from_arn
from cdcsync.errors import RecordError
from tests.support.records import USERS_STREAM_ARN, fixture_event


def test_parse_lambda_insert_converts_keys_and_image() -> None:
    record = parse_record(fixture_event("insert"))
    assert (record.table, record.event, record.sequence_number) == (
        "Users",
        "INSERT",
        "111100000000000000000001",
    )
    assert record.keys == {"UserId": 12345}
    assert record.raw_keys == {"UserId": {"N": "12345"}}
    assert record.new_image == {"UserId": 12345, "Username": "john_doe", "Email": "john.doe@example.com"}
    assert record.old_image is None
    assert record.created_ms == 1627992080000
    assert not record.is_ttl_expiry
    assert record.describe() == "Users [UserId=12345] seq 111100000000000000000001"


def test_parse_ttl_remove_is_marked_as_expiry() -> None:
    assert parse_record(fixture_event("ttl_remove")).is_ttl_expiry
    assert not parse_record(fixture_event("remove")).is_ttl_expiry


def test_parse_get_records_shape_uses_given_stream_arn_and_builds_lambda_view() -> None:
    # GIVEN a boto3 GetRecords record: datetime time, bytes binary, no eventSourceARN
    raw: dict[str, Any] = {
        "eventID": "e1",
        "eventName": "MODIFY",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": dt.datetime(2021, 8, 3, 12, 1, 20, tzinfo=dt.UTC),
            "Keys": {"UserId": {"N": "1"}},
            "NewImage": {"UserId": {"N": "1"}, "Avatar": {"B": b"\x00\x01"}},
            "SequenceNumber": "42",
            "StreamViewType": "NEW_IMAGE",
        },
    }
    # WHEN parsed with the stream it was read from
    record = parse_record(raw, stream_arn=USERS_STREAM_ARN)
    # THEN it reads as a Lambda record would
    assert record.table == "Users"
    assert record.new_image == {"UserId": 1, "Avatar": "AAE="}
    assert record.created_ms == 1627992080000
    view = record.event_view
    assert view["eventSourceARN"] == USERS_STREAM_ARN
    assert view["dynamodb"]["ApproximateCreationDateTime"] == 1627992080
    assert view["dynamodb"]["NewImage"]["Avatar"] == {"B": "AAE="}


def test_parse_kinesis_delivered_record_uses_table_name_and_microseconds() -> None:
    payload = {
        "awsRegion": "us-east-1",
        "eventID": "k1",
        "eventName": "INSERT",
        "recordFormat": "application/json",
        "tableName": "Users",
        "dynamodb": {
            "ApproximateCreationDateTime": 1627992080123456,
            "ApproximateCreationDateTimePrecision": "MICROSECOND",
            "Keys": {"UserId": {"N": "1"}},
            "NewImage": {"UserId": {"N": "1"}},
            "SizeBytes": 20,
        },
        "eventSource": "aws:dynamodb",
    }
    data = base64.b64encode(json.dumps(payload).encode()).decode()
    record = parse_record({"kinesis": {"data": data, "sequenceNumber": "4959"}, "eventSource": "aws:kinesis"})
    assert (record.table, record.sequence_number, record.created_ms) == ("Users", "4959", 1627992080123)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r.pop("dynamodb"),
            "record 1: not a DynamoDB stream record (eventName 'INSERT', dynamodb section missing)",
        ),
        (
            lambda r: r.update(eventName="UPSERT"),
            "record 1: not a DynamoDB stream record (eventName 'UPSERT', dynamodb section present)",
        ),
        (lambda r: r.pop("eventSourceARN"), "record 1: no eventSourceARN or tableName to find its table"),
        (lambda r: r["dynamodb"].pop("SequenceNumber"), "record 1 of Users: no SequenceNumber"),
        (lambda r: r["dynamodb"].pop("Keys"), "record 111100000000000000000001 of Users: no Keys"),
        (
            lambda r: r["dynamodb"].pop("ApproximateCreationDateTime"),
            "record 111100000000000000000001 of Users: no ApproximateCreationDateTime",
        ),
    ],
)
def test_parse_malformed_record_raises_record_error(mutate: Any, message: str) -> None:
    raw = fixture_event("insert")
    mutate(raw)
    with pytest.raises(RecordError) as caught:
        parse_record(raw)
    assert str(caught.value) == message


def test_table_from_arn_rejects_arn_without_table() -> None:
    assert table_from_arn(USERS_STREAM_ARN) == "Users"
    with pytest.raises(RecordError):
        table_from_arn("arn:aws:kinesis:us-east-1:1:stream/x")


def test_parse_get_records_ttl_identity_is_recognised_and_lowercased_for_filters() -> None:
    # GIVEN a GetRecords TTL REMOVE: boto3 spells userIdentity's keys PrincipalId and Type
    raw = fixture_event("ttl_remove")
    raw.pop("eventSourceARN")
    raw["userIdentity"] = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
    record = parse_record(raw, stream_arn=USERS_STREAM_ARN)
    # THEN it is a TTL expiry, and filters see Lambda's spelling
    assert record.is_ttl_expiry
    assert record.event_view["userIdentity"] == {"principalId": "dynamodb.amazonaws.com", "type": "Service"}


def test_parse_kinesis_record_filters_see_the_dynamodb_payload() -> None:
    payload = {
        "eventName": "MODIFY",
        "tableName": "Users",
        "eventID": "k",
        "dynamodb": {"ApproximateCreationDateTime": 1627992080123, "Keys": {"UserId": {"N": "1"}}},
    }
    data = base64.b64encode(json.dumps(payload).encode()).decode()
    raw = {
        "kinesis": {"data": data, "sequenceNumber": "1"},
        "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s",
    }
    assert parse_record(raw).event_view["eventName"] == "MODIFY"
