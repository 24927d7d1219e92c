"""SQS and S3 dead-letter queues against moto_server, over real HTTP."""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import TYPE_CHECKING, Any

import boto3
import orjson
import pytest

from cdcsync.dlq import DeadLetter, DeadLetterError, DeadLetterQueueError, open_dead_letter_queue
from cdcsync.dlq.s3 import S3DeadLetterQueue
from cdcsync.dlq.sqs import SqsDeadLetterQueue, SqsHandle
from cdcsync.settings import S3Target, SqsTarget, parse_dlq
from tests.integration.conftest import AwsClientFactory
from tests.support.records import stream_record

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

AT = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
BIG = "x" * 150_000  # twice (NewImage and OldImage) this is over SQS's 256 KiB


def _letter(n: int, *, big: bool = False) -> DeadLetter:
    image = {"UserId": n, "Bio": BIG} if big else {"UserId": n}
    return DeadLetter(
        record=stream_record("MODIFY", {"UserId": n}, image, image, sequence=f"{100 + n:021d}"),
        table="Users",
        keys={"UserId": {"N": str(n)}},
        sequence_number=f"{100 + n:021d}",
        mapping="Users -> users",
        index="users",
        id=str(n),
        version=1_700_000_000_000,
        error=DeadLetterError(status=400, type="mapper_parsing_exception", reason="failed to parse"),
        attempts=1,
        first_failure_at=AT,
        last_failure_at=AT,
    )


def _sqs_queue(
    sqs: SQSClient, s3: S3Client, name: str, *, overflow: S3Target | None = None
) -> SqsDeadLetterQueue:
    sqs.create_queue(QueueName=name)
    return SqsDeadLetterQueue(SqsTarget(name), sqs, overflow=overflow, s3_client=s3, wait_seconds=0)


def _by_id(letters: list[DeadLetter]) -> dict[str, DeadLetter]:
    return {letter.letter_id: letter for letter in letters}


def test_sqs_queue_25_letters_sent_in_3_batches_read_and_removed(
    aws_client: AwsClientFactory, s3: S3Client, unique_name: str
) -> None:
    # GIVEN a queue, and a client that counts SendMessageBatch calls
    sqs: SQSClient = aws_client("sqs")
    sizes: list[int] = []
    sqs.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch",
        lambda params, **_: sizes.append(len(params["Entries"])),
    )
    queue = _sqs_queue(sqs, s3, unique_name)
    letters = [_letter(n) for n in range(25)]
    # WHEN 25 letters are sent and read back
    queue.send(letters)
    stored = queue.read()
    # THEN they went in batches of 10, 10 and 5, and come back equal
    assert sizes == [10, 10, 5]
    assert _by_id([item.letter for item in stored]) == _by_id(letters)
    assert all(isinstance(item.handle, SqsHandle) for item in stored)
    # WHEN they are removed THEN the queue is empty, even after the visibility timeout
    queue.remove(stored)
    attributes = sqs.get_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName=unique_name)["QueueUrl"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


@pytest.mark.parametrize(("limit", "expected"), [(3, 3), (12, 12), (None, 15)])
def test_sqs_queue_read_limit_caps_count(
    sqs: SQSClient, s3: S3Client, unique_name: str, limit: int | None, expected: int
) -> None:
    # GIVEN 15 letters WHEN read with a limit THEN that many distinct letters come back
    queue = _sqs_queue(sqs, s3, unique_name)
    queue.send([_letter(n) for n in range(15)])
    stored = queue.read(limit)
    assert len({item.letter.letter_id for item in stored}) == expected


def test_sqs_queue_oversize_letter_with_overflow_stored_in_s3(
    sqs: SQSClient, s3: S3Client, unique_name: str
) -> None:
    # GIVEN a queue with an overflow bucket, and a letter over SQS's limit
    s3.create_bucket(Bucket=unique_name)
    queue = _sqs_queue(sqs, s3, unique_name, overflow=S3Target(unique_name, "overflow/"))
    big, small = _letter(1, big=True), _letter(2)
    # WHEN it is sent with a small one
    queue.send([big, small])
    # THEN the whole letter is one S3 object, and the message only points to it
    key = f"overflow/2024/05/01/{big.letter_id}.json"
    listed = [obj["Key"] for obj in s3.list_objects_v2(Bucket=unique_name).get("Contents", [])]
    assert listed == [key]
    url = sqs.get_queue_url(QueueName=unique_name)["QueueUrl"]
    peeked = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    pointers = [body for body in (orjson.loads(m["Body"]) for m in peeked) if "s3_pointer" in body]
    assert pointers == [
        {
            "s3_pointer": f"s3://{unique_name}/{key}",
            **big.model_dump(
                mode="json",
                include={
                    "letter_id",
                    "table",
                    "keys",
                    "sequence_number",
                    "mapping",
                    "index",
                    "id",
                    "version",
                    "error",
                },
            ),
        }
    ]
    stored = queue.read()
    assert _by_id([item.letter for item in stored]) == _by_id([big, small])
    handles = {item.letter.letter_id: item.handle for item in stored}
    assert isinstance(handles[big.letter_id], SqsHandle)
    assert handles[big.letter_id].s3_pointer == f"s3://{unique_name}/{key}"  # type: ignore[attr-defined]
    # WHEN removed THEN the overflow object goes with the message
    queue.remove(stored)
    assert s3.list_objects_v2(Bucket=unique_name).get("KeyCount") == 0


def test_sqs_queue_oversize_letter_without_overflow_drops_images(
    sqs: SQSClient, s3: S3Client, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a queue without an overflow bucket, and a letter over SQS's limit
    queue = _sqs_queue(sqs, s3, unique_name)
    big = _letter(1, big=True)
    size = len(big.to_json())
    # WHEN it is sent
    with caplog.at_level(logging.WARNING, logger="cdcsync.dlq.sqs"):
        queue.send([big])
    # THEN it is stored without NewImage/OldImage, marked, and the operator is told
    [stored] = queue.read()
    assert stored.letter.images_dropped
    assert "NewImage" not in stored.letter.record["dynamodb"]
    assert "OldImage" not in stored.letter.record["dynamodb"]
    expected = big.model_copy(update={"images_dropped": True, "record": stored.letter.record})
    assert stored.letter == expected
    assert caplog.messages == [
        f"dead letter {big.letter_id} for Users seq 000000000000000000101 "
        f"is {size} bytes, over SQS's 262144-byte limit: sent to sqs://{unique_name} without "
        "NewImage/OldImage (images_dropped); configure an overflow bucket to keep them"
    ]
    # AND the item's key travels as the record's key field (CDCSYNC_LOG_KEYS decides how it shows)
    assert [getattr(record, "key", None) for record in caplog.records] == [{"UserId": 1}]


@pytest.mark.parametrize("operation", ["send", "read"])
def test_sqs_queue_missing_queue_raises_naming_queue_and_region(
    sqs: SQSClient, s3: S3Client, unique_name: str, operation: str
) -> None:
    # GIVEN a queue name that does not exist
    queue = SqsDeadLetterQueue(SqsTarget(unique_name), sqs, s3_client=s3, wait_seconds=0)
    letters = [_letter(1), _letter(2), _letter(3)]
    # WHEN letters are sent or read THEN the error says which queue, what is wrong and what to check
    with pytest.raises(DeadLetterQueueError) as raised:
        queue.send(letters) if operation == "send" else queue.read()
    doing = "cannot write 3 dead letters to" if operation == "send" else "cannot read dead letters from"
    assert str(raised.value) == (
        f"{doing} sqs://{unique_name}: queue does not exist "
        "(check CDCSYNC_DLQ names an existing queue in region us-east-1)"
    )
    if operation == "send":
        assert raised.value.failed_ids == tuple(letter.letter_id for letter in letters)


def test_sqs_queue_message_not_a_letter_raises_naming_message(
    sqs: SQSClient, s3: S3Client, unique_name: str
) -> None:
    # GIVEN a queue holding a message someone else sent
    queue = _sqs_queue(sqs, s3, unique_name)
    url = sqs.get_queue_url(QueueName=unique_name)["QueueUrl"]
    message_id = sqs.send_message(QueueUrl=url, MessageBody="hello")["MessageId"]
    # WHEN read THEN the error names the queue and message, and what is wrong
    with pytest.raises(DeadLetterQueueError) as raised:
        queue.read()
    assert str(raised.value) == (
        f"sqs://{unique_name} message {message_id}: not a dead letter "
        "(Invalid JSON: expected value at line 1 column 1); fix or delete this entry, then read again"
    )


def test_sqs_queue_url_target_used_without_lookup(sqs: SQSClient, s3: S3Client, unique_name: str) -> None:
    # GIVEN a target given as the full queue URL
    url = sqs.create_queue(QueueName=unique_name)["QueueUrl"]
    queue = SqsDeadLetterQueue(SqsTarget(url), sqs, s3_client=s3, wait_seconds=0)
    letter = _letter(1)
    # WHEN a letter is sent and read THEN it round-trips
    queue.send([letter])
    assert [item.letter for item in queue.read()] == [letter]
    assert queue.describe() == f"sqs://{url}"


# -- S3 ---------------------------------------------------------------------------------------------


def _clock(*seconds: int) -> Any:
    times = iter(AT + dt.timedelta(seconds=s) for s in seconds)
    return lambda: next(times)


def test_s3_queue_one_object_per_send_read_in_key_order(s3: S3Client, unique_name: str) -> None:
    # GIVEN a bucket and a queue whose clock ticks 1 s per send, given out of order
    s3.create_bucket(Bucket=unique_name)
    queue = S3DeadLetterQueue(S3Target(unique_name, "dlq/"), s3, clock=_clock(3, 1, 2))
    batches = [[_letter(1), _letter(2)], [_letter(3)], [_letter(4), _letter(5), _letter(6)]]
    # WHEN three sends happen
    for batch in batches:
        queue.send(batch)
    # THEN there is one object per send, named by time
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=unique_name)["Contents"]]
    assert len(keys) == 3
    assert all(re.fullmatch(r"dlq/2024/05/01/12300[123]-[0-9a-f]{32}\.jsonl", key) for key in keys)
    # AND reading follows key (time) order: second send, third, then first
    assert [item.letter for item in queue.read()] == [*batches[1], *batches[2], *batches[0]]
    assert [item.letter for item in queue.read(limit=2)] == [batches[1][0], batches[2][0]]


def test_s3_queue_remove_rewrites_touched_objects_and_deletes_empty_ones(
    s3: S3Client, unique_name: str
) -> None:
    # GIVEN two objects of two letters each
    s3.create_bucket(Bucket=unique_name)
    queue = S3DeadLetterQueue(S3Target(unique_name, ""), s3, clock=_clock(1, 2))
    first, second = [_letter(1), _letter(2)], [_letter(3), _letter(4)]
    queue.send(first)
    queue.send(second)
    stored = queue.read()
    # WHEN both letters of the first and one of the second are removed
    queue.remove([stored[0], stored[1], stored[3]])
    # THEN the first object is gone and the second holds the letter left
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=unique_name)["Contents"]]
    assert len(keys) == 1
    assert keys[0].startswith("2024/05/01/123002-")
    assert [item.letter for item in queue.read()] == [second[0]]


def test_s3_queue_object_changed_during_remove_raises_and_keeps_change(
    aws_client: AwsClientFactory, s3: S3Client, unique_name: str
) -> None:
    # GIVEN an object of two letters, and a client that lets another writer in before its rewrite
    s3.create_bucket(Bucket=unique_name)
    racing: S3Client = aws_client("s3")
    queue = S3DeadLetterQueue(S3Target(unique_name, "dlq"), racing)
    queue.send([_letter(1), _letter(2)])
    stored = queue.read()
    key = stored[0].handle.key  # type: ignore[attr-defined]

    def interfere(**_: Any) -> None:
        s3.put_object(Bucket=unique_name, Key=key, Body=b"changed\n")

    racing.meta.events.register("provide-client-params.s3.PutObject", interfere)
    # WHEN one letter is removed THEN the conditional rewrite fails instead of losing the change
    with pytest.raises(DeadLetterQueueError) as raised:
        queue.remove([stored[0]])
    assert str(raised.value) == (
        f"cannot remove 1 dead letter from s3://{unique_name}/{key}: the object changed since it was "
        "read (another remover?); read again, then remove"
    )
    assert s3.get_object(Bucket=unique_name, Key=key)["Body"].read() == b"changed\n"


def test_s3_queue_corrupt_line_raises_with_object_and_line(s3: S3Client, unique_name: str) -> None:
    # GIVEN an object whose second line is not a dead letter
    s3.create_bucket(Bucket=unique_name)
    body = _letter(1).to_json() + b"\n[1, 2]\n"
    s3.put_object(Bucket=unique_name, Key="dlq/2024/05/01/000000-a.jsonl", Body=body)
    queue = S3DeadLetterQueue(S3Target(unique_name, "dlq"), s3)
    # WHEN read THEN the error names the object and line
    with pytest.raises(DeadLetterQueueError) as raised:
        queue.read()
    assert str(raised.value) == (
        f"s3://{unique_name}/dlq/2024/05/01/000000-a.jsonl:2: not a dead letter "
        "(Input should be an object); fix or delete this entry, then read again"
    )


def test_s3_queue_missing_bucket_send_raises_naming_bucket(s3: S3Client, unique_name: str) -> None:
    # GIVEN a bucket that does not exist
    queue = S3DeadLetterQueue(S3Target(unique_name, "dlq"), s3)
    letter = _letter(1)
    # WHEN a letter is sent THEN the error says which bucket and what to check
    with pytest.raises(DeadLetterQueueError) as raised:
        queue.send([letter])
    assert str(raised.value) == (
        f"cannot write 1 dead letter to s3://{unique_name}/dlq: bucket does not exist "
        "(check CDCSYNC_DLQ names an existing bucket in region us-east-1)"
    )
    assert raised.value.failed_ids == (letter.letter_id,)


def test_open_dead_letter_queue_endpoint_from_boto3_environment(
    moto_endpoint: str, s3: S3Client, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN only boto3's own AWS_ENDPOINT_URL points at the local server
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    s3.create_bucket(Bucket=unique_name)
    letter = _letter(1)
    # WHEN queues are opened from CDCSYNC_DLQ values with a plain session
    session = boto3.Session(region_name="us-east-1")
    for url in (f"s3://{unique_name}/dlq", f"sqs://{unique_name}"):
        if url.startswith("sqs"):
            session.client("sqs").create_queue(QueueName=unique_name)
        queue = open_dead_letter_queue(parse_dlq(url), session=session)
        # THEN they reach it, and a letter round-trips
        queue.send([letter])
        assert [item.letter for item in queue.read()] == [letter]
        assert queue.describe() == url
