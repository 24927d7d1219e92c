"""The DeadLetter model: JSON-safe records, exact round trips, strict validation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from cdcsync.change import parse_record
from cdcsync.dlq import DeadLetter, DeadLetterError, DeadLetterQueueError, json_safe
from cdcsync.errors import CdcsyncError
from tests.support.records import fixture_event, stream_record

FIX = "; fix or delete this entry, then read again"
AT = dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)


def _letter(**overrides: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "record": stream_record("INSERT", {"UserId": 1}, {"UserId": 1, "Name": "Ann"}),
        "table": "Users",
        "keys": {"UserId": {"N": "1"}},
        "sequence_number": "100000000000000000001",
        "mapping": "Users -> users",
        "index": "users",
        "id": "1",
        "version": 1_700_000_000_000,
        "error": DeadLetterError(status=400, type="mapper_parsing_exception", reason="failed to parse"),
        "attempts": 1,
        "first_failure_at": AT,
        "last_failure_at": AT,
    }
    return DeadLetter(**(fields | overrides))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(b"\x00\x01\xff", "AAH/", id="bytes"),
        pytest.param(bytearray(b"ab"), "YWI=", id="bytearray"),
        pytest.param(
            dt.datetime(2021, 8, 3, 12, 1, 20, tzinfo=dt.UTC), "2021-08-03T12:01:20+00:00", id="aware"
        ),
        pytest.param(dt.datetime(2021, 8, 3, 12, 1, 20), "2021-08-03T12:01:20", id="naive-datetime"),
        pytest.param(dt.date(2021, 8, 3), "2021-08-03", id="date"),
        pytest.param(Decimal("12345"), 12345, id="integral-decimal"),
        pytest.param(Decimal("1.0"), 1, id="integral-decimal-with-point"),
        pytest.param(Decimal("1.5"), 1.5, id="decimal-exact-as-float"),
        pytest.param(
            Decimal("0.10000000000000000000000000001"), "0.10000000000000000000000000001", id="long"
        ),
        pytest.param(Decimal("NaN"), "NaN", id="decimal-nan"),
        pytest.param(float("inf"), "inf", id="float-inf"),
        pytest.param({"b", "a"}, ["a", "b"], id="set-sorted"),
        pytest.param((1, b"x"), [1, "eA=="], id="tuple"),
        pytest.param({1: {"B": b"x"}}, {"1": {"B": "eA=="}}, id="nested-int-key"),
        pytest.param(
            {"n": None, "t": True, "i": 2**70, "s": "é"}, {"n": None, "t": True, "i": 2**70, "s": "é"}
        ),
    ],
)
def test_json_safe_value_converted_to_json_type(value: Any, expected: Any) -> None:
    # GIVEN a value as boto3 or a JSON parser may deliver it
    # WHEN made JSON-safe
    # THEN it is the documented JSON value, exactly
    assert json_safe(value) == expected


def test_json_safe_unknown_type_raises_type_error() -> None:
    # GIVEN an object no stream record can hold
    # WHEN made JSON-safe THEN the error names the type
    with pytest.raises(TypeError, match=r"^cannot express object as JSON in a dead letter$"):
        json_safe({"x": object()})


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="plain"),
        pytest.param({"mapping": None, "index": None, "id": None, "version": None}, id="plan-error"),
        pytest.param({"images_dropped": True, "sequence_number": None}, id="images-dropped"),
        pytest.param({"record": {"big": 2**70, "text": "ünï\ncode", "f": 1.25}}, id="big-int-unicode"),
    ],
)
def test_dead_letter_json_round_trip_is_exact(overrides: dict[str, Any]) -> None:
    # GIVEN a dead letter
    letter = _letter(**overrides)
    # WHEN dumped and parsed back
    data = letter.to_json()
    # THEN it is one line and equal to the original, field for field
    assert b"\n" not in data
    assert DeadLetter.from_json(data, where="test") == letter
    assert DeadLetter.from_json(data, where="test").model_dump() == letter.model_dump()


def test_dead_letter_get_records_shape_stored_json_safe() -> None:
    # GIVEN a GetRecords record with a datetime and bytes
    record = {"dynamodb": {"ApproximateCreationDateTime": AT, "Keys": {"K": {"B": b"\x01"}}}}
    # WHEN it becomes a dead letter
    letter = _letter(record=record, keys={"K": {"B": b"\x01"}})
    # THEN bytes are base64 and the time is ISO 8601
    assert letter.record == {
        "dynamodb": {
            "ApproximateCreationDateTime": "2024-05-01T12:30:15.123456+00:00",
            "Keys": {"K": {"B": "AQ=="}},
        }
    }
    assert letter.keys == {"K": {"B": "AQ=="}}


def test_dead_letter_other_zone_stored_as_utc() -> None:
    # GIVEN a failure time in UTC+2
    at = dt.datetime(2024, 5, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    # WHEN it is stored THEN it is the same instant in UTC
    letter = _letter(first_failure_at=at, last_failure_at=at)
    assert letter.first_failure_at.utcoffset() == dt.timedelta(0)
    assert letter.first_failure_at == dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"first_failure_at": dt.datetime(2024, 5, 1)},
            "Value error, expected a timezone-aware datetime, got a naive one",
            id="naive",
        ),
        pytest.param({"surprise": 1}, "Extra inputs are not permitted", id="extra"),
        pytest.param({"attempts": -1}, "Input should be greater than or equal to 0", id="negative-attempts"),
    ],
)
def test_dead_letter_invalid_field_rejected(overrides: dict[str, Any], message: str) -> None:
    # GIVEN an invalid field WHEN the letter is built THEN validation names the problem
    with pytest.raises(ValidationError) as raised:
        _letter(**overrides)
    assert [error["msg"] for error in raised.value.errors()] == [message]


def test_dead_letter_letter_ids_are_unique_uuid_hex() -> None:
    # GIVEN two letters built alike WHEN compared THEN each has its own 32-hex-digit letter_id
    first, second = _letter(), _letter()
    assert first.letter_id != second.letter_id
    assert len(first.letter_id) == 32
    int(first.letter_id, 16)


def test_dead_letter_for_record_takes_identity_from_change() -> None:
    # GIVEN a parsed Lambda record
    record = parse_record(fixture_event("insert"))
    error = DeadLetterError(type="plan_error", reason='id: "{UserID}" names a missing attribute')
    # WHEN it becomes a dead letter
    letter = DeadLetter.for_record(record, error, at=AT, mapping="Users -> users")
    # THEN the raw record, table, typed keys and sequence number are kept for redrive
    assert letter.record == fixture_event("insert")
    assert (letter.table, letter.keys, letter.sequence_number) == (
        "Users",
        {"UserId": {"N": "12345"}},
        "111100000000000000000001",
    )
    assert (letter.attempts, letter.first_failure_at, letter.last_failure_at) == (1, AT, AT)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            b"{not json",
            "dlq.jsonl:7: not a dead letter (Invalid JSON: key must be a string at line 1 column 2)" + FIX,
            id="json",
        ),
        pytest.param(
            b'{"table": "Users"}',
            "dlq.jsonl:7: not a dead letter (record: Field required, and 6 more)" + FIX,
            id="fields",
        ),
    ],
)
def test_dead_letter_from_json_corrupt_raises_with_location(data: bytes, message: str) -> None:
    # GIVEN stored bytes that are not a dead letter
    # WHEN parsed THEN the error says where, what and what to do
    with pytest.raises(DeadLetterQueueError) as raised:
        DeadLetter.from_json(data, where="dlq.jsonl:7")
    assert str(raised.value) == message
    assert isinstance(raised.value, CdcsyncError)
