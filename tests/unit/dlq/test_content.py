"""What a dead letter keeps (``CDCSYNC_DLQ_CONTENT``): images cut to the mapping, values out of reasons."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from cdcsync.dlq import DeadLetter, DeadLetterError
from cdcsync.dlq.content import DlqContent, kept, redact_reason
from tests.support.records import compiled, stream_record

AT = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
PROFILE = {"UserId": 7, "Username": "ada", "Email": "ada@example.com", "PasswordHash": "pbkdf2$s3cr3t"}
OLD = {"UserId": 7, "Username": "ada", "Email": "ada@old.example", "PasswordHash": "pbkdf2$old"}
USERS = compiled(
    table="Users", index="users", fields={"exclude": ["PasswordHash"], "rename": {"Username": "name"}}
)


def _letter(record: dict[str, Any], reason: str = "failed to parse", status: int | None = 400) -> DeadLetter:
    return DeadLetter(
        record=record,
        table="Users",
        keys={"UserId": {"N": "7"}},
        sequence_number="100000000000000000001",
        mapping=USERS.name,
        index="users",
        id="7",
        op="index",
        version=1_700_000_000_000,
        error=DeadLetterError(status=status, type="mapper_parsing_exception", reason=reason),
        attempts=1,
        first_failure_at=AT,
        last_failure_at=AT,
    )


def _typed(item: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: stream_record("INSERT", {}, item)["dynamodb"]["NewImage"][name] for name in names}


def test_kept_projected_keeps_keys_and_indexed_attributes_of_both_images() -> None:
    # GIVEN a MODIFY of a profile whose mapping excludes PasswordHash (and renames Username)
    record = stream_record("MODIFY", {"UserId": 7}, PROFILE, OLD)
    # WHEN it is kept as projected
    letter = kept(_letter(record), "projected", USERS)
    # THEN each image keeps the key and what the document holds, under the item's own names
    body = letter.record["dynamodb"]
    assert body["NewImage"] == _typed(PROFILE, "UserId", "Username", "Email")
    assert body["OldImage"] == _typed(OLD, "UserId", "Username", "Email")
    assert {name: value for name, value in letter.record.items() if name != "dynamodb"} == {
        name: value for name, value in record.items() if name != "dynamodb"
    }


def test_kept_projected_with_include_keeps_keys_though_not_included() -> None:
    mapping = compiled(table="Users", index="users", fields={"include": ["Email"]})
    record = stream_record("INSERT", {"UserId": 7}, PROFILE)
    letter = kept(_letter(record), "projected", mapping)
    assert letter.record["dynamodb"]["NewImage"] == _typed(PROFILE, "UserId", "Email")


@pytest.mark.parametrize(
    ("content", "mapping"),
    [
        pytest.param("keys", USERS, id="keys"),
        pytest.param("projected", None, id="projected-without-mapping"),
    ],
)
def test_kept_without_images_keeps_envelope_and_keys_only(content: DlqContent, mapping: Any) -> None:
    # GIVEN a record with images, an unexpected top-level field and an unexpected body field
    record = stream_record("MODIFY", {"UserId": 7}, PROFILE, OLD)
    record["note"] = "ada@example.com"
    record["dynamodb"]["Extra"] = {"S": "ada"}
    # WHEN it is kept as keys (or projected without a mapping to project with)
    letter = kept(_letter(record), content, mapping)
    # THEN what is left is the envelope and the keys: nothing of the item beyond them
    assert letter.record == {
        "eventID": record["eventID"],
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": record["eventSourceARN"],
        "dynamodb": {
            "Keys": {"UserId": {"N": "7"}},
            "ApproximateCreationDateTime": 1_700_000_000,
            "SequenceNumber": "100000000000000000001",
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def test_kept_projected_kinesis_record_cuts_the_payload_and_encodes_it_again() -> None:
    # GIVEN a Kinesis-delivered record: the stream record is base64 JSON inside
    payload = stream_record("INSERT", {"UserId": 7}, PROFILE)
    data = base64.b64encode(json.dumps(payload).encode()).decode()
    record = {"eventSource": "aws:kinesis", "kinesis": {"data": data, "sequenceNumber": "4959"}}
    # WHEN it is kept as projected
    letter = kept(_letter(record), "projected", USERS)
    # THEN the wrapper stays, and the payload inside is cut like any record
    kinesis = letter.record["kinesis"]
    assert kinesis["sequenceNumber"] == "4959"
    inner = json.loads(base64.b64decode(kinesis["data"]))
    assert inner["dynamodb"]["NewImage"] == _typed(PROFILE, "UserId", "Username", "Email")
    assert "s3cr3t" not in json.dumps(letter.record)


def test_kept_full_is_the_letter_as_it_was() -> None:
    letter = _letter(stream_record("INSERT", {"UserId": 7}, PROFILE), reason="Preview of field's value: 'x'")
    assert kept(letter, "full", USERS) is letter


PARSE = "failed to parse field [Profile] of type [text] in document with id '7'. "
REASONS = [
    pytest.param(
        400,
        PARSE + "Preview of field's value: '{addr=ada@example.com, zip=12345}' caused by "
        "illegal_state_exception: Can't get text on a START_OBJECT at 1:42",
        PARSE + "Preview of field's value: [redacted] caused by illegal_state_exception: Can't get text on "
        "a START_OBJECT at 1:42",
        id="preview-of-object",
    ),
    pytest.param(
        400,
        PARSE + "Preview of field's value: 'a' caused by x: b' caused by illegal_argument_exception: "
        'For input string: "a\' caused by x: b"',
        PARSE + "Preview of field's value: [redacted]",
        id="preview-holding-a-cause",
    ),
    pytest.param(
        400,
        PARSE + "Preview of field's value: 'ada'",
        PARSE + "Preview of field's value: [redacted]",
        id="preview-without-cause",
    ),
    pytest.param(
        400,
        "failed to parse field [Born] of type [date] in document with id '7'. Preview of field's value: "
        "'1990-13-45' caused by illegal_argument_exception: failed to parse date field [1990-13-45] with "
        "format [strict_date_optional_time||epoch_millis]",
        "failed to parse field [Born] of type [date] in document with id '7'. Preview of field's value: "
        "[redacted] caused by illegal_argument_exception: failed to parse date field [[redacted]] with "
        "format [strict_date_optional_time||epoch_millis]",
        id="date",
    ),
    pytest.param(
        400,
        "failed to parse field [Active] of type [boolean] caused by illegal_argument_exception: Failed to "
        "parse value [yes] as only [true] or [false] are allowed.",
        "failed to parse field [Active] of type [boolean] caused by illegal_argument_exception: Failed to "
        "parse value [[redacted]] as only [true] or [false] are allowed.",
        id="boolean",
    ),
    pytest.param(
        400,
        "failed to parse field [Ip] of type [ip] caused by illegal_argument_exception: '10.0.0.999' is "
        "not an IP string literal.",
        "failed to parse field [Ip] of type [ip] caused by illegal_argument_exception: '[redacted]' is not "
        "an IP string literal.",
        id="ip",
    ),
    pytest.param(
        400,
        'unknown value "ada@example.com" in field [Email]',
        "unknown value [redacted] in field [Email]",
        id="double-quoted",
    ),
    pytest.param(
        400,
        'Document contains at least one immense term in field="Bio" (whose UTF8 encoding is longer than the '
        "max length 32766), all of which were skipped.  Please correct the analyzer to not produce such "
        "terms.  The prefix of the first immense term is: '[97, 100, 97, 64, 101, 120, 97, 109, 112, 108, "
        "101, 46, 99, 111, 109, 32, 97, 100, 97, 64, 101, 120, 97, 109, 112, 108, 101, 46, 99, 111]...', "
        "original message: bytes can be at most 32766 in length; got 40000 caused by "
        "max_bytes_length_exceeded_exception: max_bytes_length_exceeded_exception: bytes can be at most "
        "32766 in length; got 40000",
        'Document contains at least one immense term in field="Bio" (whose UTF8 encoding is longer than the '
        "max length 32766), all of which were skipped.  Please correct the analyzer to not produce such "
        "terms.  The prefix of the first immense term is: '[redacted]...', original message: bytes can be "
        "at most 32766 in length; got 40000 caused by max_bytes_length_exceeded_exception: "
        "max_bytes_length_exceeded_exception: bytes can be at most 32766 in length; got 40000",
        id="immense-term",
    ),
    pytest.param(
        400,
        "failed to parse field [Location] of type [geo_point] in document with id '7'. Preview of field's "
        "value: 'ada@example.com' caused by parse_exception: unsupported symbol [@] in geohash "
        "[ada@example.com]",
        "failed to parse field [Location] of type [geo_point] in document with id '7'. Preview of field's "
        "value: [redacted] caused by parse_exception: unsupported symbol [[redacted]] in geohash "
        "[[redacted]]",
        id="geohash",
    ),
    pytest.param(
        400,
        "failed to parse field [Location] of type [geo_point] caused by parse_exception: unsupported symbol "
        "[]] in geohash [bcd]@example.com]",
        "failed to parse field [Location] of type [geo_point] caused by parse_exception: unsupported symbol "
        "[[redacted]] in geohash [[redacted]]",
        id="geohash-holding-a-bracket",
    ),
    pytest.param(
        400,
        "failed to parse field [Age] of type [long] in document with id '7'. Preview of field's value: "
        "'99999999999999999999' caused by illegal_argument_exception: Value [99999999999999999999] is out "
        "of range for a long",
        "failed to parse field [Age] of type [long] in document with id '7'. Preview of field's value: "
        "[redacted] caused by illegal_argument_exception: Value [[redacted]] is out of range for a long",
        id="any-bracketed-value-in-a-cause",
    ),
    pytest.param(
        400,
        "failed to parse field [Code] of type [keyword] caused by illegal_argument_exception: cannot "
        "normalize 'o'brien@example.com' with normalizer [lower] of field [Code] in index [users]",
        "failed to parse field [Code] of type [keyword] caused by illegal_argument_exception: cannot "
        "normalize '[redacted]' with normalizer [lower] of field [Code] in index [users]",
        id="unknown-cause-quoted-value-names-kept",
    ),
    pytest.param(
        400,
        "failed to parse caused by illegal_argument_exception: Limit of total fields [1000] in index [users] "
        "has been exceeded",
        "failed to parse caused by illegal_argument_exception: Limit of total fields [1000] in index [users] "
        "has been exceeded",
        id="names-in-a-cause",
    ),
    pytest.param(
        400,
        "mapper [Age] cannot be changed from type [long] to [text]",
        "mapper [Age] cannot be changed from type [long] to [text]",
        id="no-value",
    ),
    pytest.param(
        None,
        "fields.computed.full_name: \"join(' ', [FirstName, LastName])\" failed on this item: In function "
        "join(), invalid type for value: Ada, Lovelace, expected one of: ['array-string'], received: "
        '"string"',
        "fields.computed.full_name: \"join(' ', [FirstName, LastName])\" failed on this item: In function "
        "join(), invalid type for value: [redacted], expected one of: ['array-string'], received: \"string\"",
        id="jmespath",
    ),
    pytest.param(
        None,
        "attribute Age: N is not a number, found str 'thirty'; its document was deleted from users/7",
        "attribute Age: N is not a number, found str [redacted]; its document was deleted from users/7",
        id="malformed-image",
    ),
    pytest.param(
        None,
        'id: "{UserID}" names UserID, which is not in the keys of table Users (has: UserId)',
        'id: "{UserID}" names UserID, which is not in the keys of table Users (has: UserId)',
        id="plan-error-without-value",
    ),
]


@pytest.mark.parametrize(("status", "reason", "redacted"), REASONS)
def test_redact_reason_values_become_redacted(status: int | None, reason: str, redacted: str) -> None:
    error = DeadLetterError(status=status, type="mapper_parsing_exception", reason=reason)
    assert redact_reason(error).reason == redacted


@pytest.mark.parametrize("content", ["projected", "keys"])
def test_kept_below_full_redacts_the_reason(content: DlqContent) -> None:
    record = stream_record("INSERT", {"UserId": 7}, PROFILE)
    letter = _letter(record, reason=PARSE + "Preview of field's value: 'x'")
    assert kept(letter, content, USERS).error.reason == PARSE + "Preview of field's value: [redacted]"
