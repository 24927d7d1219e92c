"""FastReads fails exactly as botocore does: the same exception, message, code and retries.

A scripted local HTTP server answers GetRecords and Scan with the error bodies DynamoDB and
DynamoDB Streams really send (``__type`` with a namespace, ``message`` or ``Message``), or drops
the connection, or does not answer in time. Each case is sent once by a plain boto3 client and once
through ``FastReads``, with the same retry configuration; what cdcsync sees must be the same.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ChecksumError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from cdcsync.aws import error_kind
from cdcsync.errors import CdcsyncError
from cdcsync.metrics import NullMetrics
from cdcsync.source.fast_reads import FastReads
from cdcsync.source.streams import ShardReader
from tests.support.scripted_aws import CLOSE, Answer, scripted_aws
from tests.support.servers import free_port

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2026-11-28T09:00:00.000"
SHARD = "shardId-00000001795353600000-0a1b2c3d"
DDB = "com.amazonaws.dynamodb.v20120810"
# Two attempts, as botocore's standard mode counts them; short timeouts for the dropped cases.
CONFIG = Config(connect_timeout=1, read_timeout=0.5, retries={"mode": "standard", "total_max_attempts": 2})
_SESSION = boto3.Session(region_name="us-east-1")


def error(
    status: int, kind: str, message: str, *, capital: bool = False
) -> tuple[int, dict[str, str], bytes]:
    key = "Message" if capital else "message"
    return status, {}, f'{{"__type":"{kind}","{key}":"{message}"}}'.encode()


EXPIRED = error(
    400,
    f"{DDB}#ExpiredIteratorException",
    "Iterator expired. The iterator was created at time Sat Nov 28 09:00:00 UTC 2026 while right now it is "
    "Sat Nov 28 09:16:00 UTC 2026 which is further in the future than the tolerated delay of "
    "900000 milliseconds.",
)
TRIMMED = error(
    400,
    f"{DDB}#TrimmedDataAccessException",
    "Attempted to access data which has been trimmed from the stream.",
)
GONE = error(
    400, f"{DDB}#ResourceNotFoundException", f"Requested resource not found: Stream: {ARN} not found"
)
THROTTLED = error(400, "com.amazon.coral.availability#ThrottlingException", "Rate exceeded")
PROVISIONED = error(
    400,
    f"{DDB}#ProvisionedThroughputExceededException",
    "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API.",
)
LIMIT = error(400, f"{DDB}#LimitExceededException", "Too many requests for the stream")
DENIED_MESSAGE = (
    "User: arn:aws:sts::123456789012:assumed-role/cdcsync/i-0 is not authorized to perform: "
    f"dynamodb:GetRecords on resource: {ARN} because no identity-based policy allows the "
    "dynamodb:GetRecords action"
)
DENIED = error(400, "com.amazon.coral.service#AccessDeniedException", DENIED_MESSAGE, capital=True)
BAD_TOKEN = error(
    400,
    "com.amazon.coral.service#UnrecognizedClientException",
    "The security token included in the request is invalid.",
)
INVALID = error(400, "com.amazon.coral.validate#ValidationException", "1 validation error detected")
INTERNAL = error(500, f"{DDB}#InternalServerError", "Internal server error")
UNAVAILABLE: Answer = (503, {}, b"")
EMPTY_PAGE = (200, {}, b'{"Records":[],"NextShardIterator":"it-2"}')


def streams_client(url: str) -> Any:
    return _SESSION.client("dynamodbstreams", endpoint_url=url, config=CONFIG)  # type: ignore[call-overload]


def scan_client(url: str) -> Any:
    return _SESSION.client("dynamodb", endpoint_url=url, config=CONFIG)  # type: ignore[call-overload]


def no_sleep(seconds: float) -> None:
    pass


def failure(call: Any) -> tuple[Any, ...]:
    """What a failed call shows cdcsync: class, message, error dict, status, request id, its kind."""
    with pytest.raises(Exception) as caught:  # noqa: PT011 - compared whole below
        call()
    exc = caught.value
    response = getattr(exc, "response", None) or {}
    metadata = response.get("ResponseMetadata", {})
    return (
        type(exc).__name__,
        str(exc),
        response.get("Error"),
        metadata.get("HTTPStatusCode"),
        metadata.get("RequestId"),
        metadata.get("RetryAttempts"),
        metadata.get("MaxAttemptsReached"),
        error_kind(exc),
    )


def both_fail(
    operation: str, answer: Answer, make: Any, request: dict[str, Any]
) -> Iterator[tuple[Any, ...]]:
    """The failure of the call by botocore, then by FastReads, each against a fresh server: with the
    number of requests the server saw."""
    method = {"GetRecords": "get_records", "Scan": "scan"}[operation]
    for fast in (False, True):
        with scripted_aws({operation: [answer]}) as server:
            client = make(server.url)
            reader = FastReads(client, sleep=no_sleep) if fast else client
            shown = failure(lambda reader=reader: getattr(reader, method)(**request))
            # each path had a server of its own: the same message but for the port
            yield (shown[0], shown[1].replace(server.url, "URL"), *shown[2:], len(server.calls))


GET_RECORDS = {"ShardIterator": "it-1", "Limit": 1000}
SCAN = {"TableName": "Users", "Segment": 0, "TotalSegments": 4, "ReturnConsumedCapacity": "TOTAL"}


@pytest.mark.parametrize(
    ("answer", "code", "kind", "calls"),
    [
        (EXPIRED, "ExpiredIteratorException", "fatal", 1),  # the reader takes a new iterator
        (TRIMMED, "TrimmedDataAccessException", "fatal", 1),  # the reader reports lost records
        (GONE, "ResourceNotFoundException", "configuration", 1),  # the worker looks the stream up again
        (THROTTLED, "ThrottlingException", "transient", 2),
        (LIMIT, "LimitExceededException", "transient", 2),
        (DENIED, "AccessDeniedException", "configuration", 1),
        (BAD_TOKEN, "UnrecognizedClientException", "configuration", 1),
        (INVALID, "ValidationException", "fatal", 1),
        (INTERNAL, "InternalServerError", "transient", 2),
        (UNAVAILABLE, "503", "transient", 2),
    ],
)
def test_fast_reads_get_records_error_same_exception_as_botocore(
    answer: Answer, code: str, kind: str, calls: int
) -> None:
    # GIVEN DynamoDB Streams answering GetRecords with an error
    by_botocore, by_fast = both_fail("GetRecords", answer, streams_client, GET_RECORDS)

    # THEN FastReads raises what botocore raises, after as many attempts
    assert by_fast == by_botocore
    assert by_fast[2]["Code"] == code
    assert by_fast[-2:] == (kind, calls)


@pytest.mark.parametrize(
    ("answer", "code", "calls"),
    [
        (PROVISIONED, "ProvisionedThroughputExceededException", 2),
        (THROTTLED, "ThrottlingException", 2),
        (DENIED, "AccessDeniedException", 1),
        (GONE, "ResourceNotFoundException", 1),
        (INTERNAL, "InternalServerError", 2),
    ],
)
def test_fast_reads_scan_error_same_exception_as_botocore(answer: Answer, code: str, calls: int) -> None:
    by_botocore, by_fast = both_fail("Scan", answer, scan_client, SCAN)
    assert by_fast == by_botocore
    assert by_fast[2]["Code"] == code
    assert by_fast[-1] == calls


def test_fast_reads_throttled_once_retries_and_answers() -> None:
    # GIVEN one throttled answer, then records
    with scripted_aws({"GetRecords": [THROTTLED, EMPTY_PAGE]}) as server:
        delays: list[float] = []
        answer = FastReads(streams_client(server.url), sleep=delays.append, jitter=lambda: 0.5).get_records(
            **GET_RECORDS
        )

    # THEN it was retried after botocore's throttling backoff (rand * 1 s) and says so
    assert answer["NextShardIterator"] == "it-2"
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert delays == [0.5]
    assert server.calls == ["GetRecords", "GetRecords"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(CLOSE, ConnectionClosedError), (("sleep", 1.5), ReadTimeoutError)],
)
def test_fast_reads_dropped_connection_same_error_as_botocore(
    answer: Answer, expected: type[Exception]
) -> None:
    by_botocore, by_fast = both_fail("GetRecords", answer, streams_client, GET_RECORDS)
    assert by_fast == by_botocore
    assert by_fast[0] == expected.__name__
    assert by_fast[-2:] == ("transient", 2)


def test_fast_reads_nothing_listening_endpoint_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    by_botocore = failure(lambda: streams_client(url).get_records(**GET_RECORDS))
    by_fast = failure(lambda: FastReads(streams_client(url), sleep=no_sleep).get_records(**GET_RECORDS))
    assert by_fast == by_botocore
    assert by_fast[0] == EndpointConnectionError.__name__
    assert by_fast[-1] == "transient"


def test_fast_reads_crc32_mismatch_retried_then_transient_checksum_error() -> None:
    # GIVEN a Scan answer whose body does not match its x-amz-crc32 (damaged on the way)
    body = b'{"Items":[],"Count":0,"ScannedCount":0}'
    damaged = (200, {"x-amz-crc32": str(zlib.crc32(body) ^ 1)}, body)
    with scripted_aws({"Scan": [damaged]}) as server:
        reader = FastReads(scan_client(server.url), sleep=no_sleep)
        with pytest.raises(ChecksumError) as caught:
            reader.scan(**SCAN)

    # THEN it was tried as often as the client tries, and is transient (the scan backs off and retries)
    assert server.calls == ["Scan", "Scan"]
    assert error_kind(caught.value) == "transient"
    assert str(caught.value) == (
        f"Checksum crc32 failed, expected checksum {zlib.crc32(body) ^ 1} did not match calculated "
        f"checksum {zlib.crc32(body)}."
    )


def test_fast_reads_crc32_match_answers() -> None:
    body = b'{"Items":[{"Id":{"S":"a"}}],"Count":1,"ScannedCount":1}'
    with scripted_aws({"Scan": [(200, {"x-amz-crc32": str(zlib.crc32(body))}, body)]}) as server:
        answer = FastReads(scan_client(server.url), sleep=no_sleep).scan(**SCAN)
    assert answer["Items"] == [{"Id": {"S": "a"}}]
    assert answer["ResponseMetadata"]["RequestId"] == "REQ1"


def read_once(url: str, *, fast: bool) -> tuple[Any, ...]:
    """One ShardReader.read() from TRIM_HORIZON: its records and position, or cdcsync's error."""
    client = streams_client(url)
    streams = FastReads(client, sleep=no_sleep) if fast else client
    reader = ShardReader(streams, ARN, SHARD, "", table="Users", metrics=NullMetrics(), sleep=no_sleep)
    try:
        batch = reader.read()
    except CdcsyncError as exc:
        return type(exc).__name__, str(exc), exc.kind
    return len(batch.records), batch.next_position, reader.position


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        # an expired iterator: a new one, then the read goes on
        ([EXPIRED, EMPTY_PAGE], (0, "it-2", "TRIM_HORIZON")),
        ([TRIMMED, EMPTY_PAGE], (0, "it-2", "TRIM_HORIZON")),
        (
            [DENIED],
            (
                "ConfigError",
                f"GetRecords {ARN} shard {SHARD}: access denied (AccessDeniedException: "
                f"{DENIED_MESSAGE}); grant the worker's IAM role "
                "dynamodb:GetRecords on arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/*",
                "configuration",
            ),
        ),
        ([GONE], ("StreamGoneError", None)),
    ],
)
def test_fast_reads_shard_reader_same_outcome_as_botocore(
    answers: list[Answer], expected: tuple[Any, ...]
) -> None:
    # GIVEN a stream whose GetRecords answers with an error first
    outcomes = []
    for fast in (False, True):
        script = {"GetShardIterator": [(200, {}, b'{"ShardIterator":"it-1"}')], "GetRecords": list(answers)}
        with scripted_aws(script) as server:
            outcomes.append(read_once(server.url, fast=fast))

    # THEN the reader does the same with either path: reads on, or raises the same error
    assert outcomes[1] == outcomes[0]
    if expected[1] is None:
        assert outcomes[1][0] == expected[0]
    else:
        assert outcomes[1] == expected


def test_fast_reads_answer_not_json_retried_then_one_line_error_not_a_bug() -> None:
    # GIVEN GetRecords answered 200 with a body that is not JSON (a proxy's page, a cut-off body,
    # no x-amz-crc32 to catch it)
    garbled: Answer = (200, {}, b"<html>gateway</html>")
    script = {"GetShardIterator": [(200, {}, b'{"ShardIterator":"it-1"}')], "GetRecords": [garbled]}
    with scripted_aws(script) as server:
        # WHEN the shard reader reads through FastReads
        outcome = read_once(server.url, fast=True)
        calls = server.calls.count("GetRecords")
    # THEN it was tried as often as the client tries, then became one line of the error tree (the
    # shard is read again later), not an orjson error reported as a bug with its traceback
    assert calls == 2
    assert outcome == (
        "FatalError",
        f"GetRecords Users shard {SHARD}: AnswerNotJsonError: the answer to GetRecords (HTTP 200) is not "
        "JSON (unexpected character, expected a JSON value: line 1 column 1 (char 0)), starting "
        "b'<html>gateway</html>'; check AWS_ENDPOINT_URL* and any proxy on the way",
        "fatal",
    )
