"""SQS overflow pointers are followed only into the configured overflow bucket and prefix.

Anyone who can send to the dead-letter queue can write a pointer message. ``read`` (so ``dlq
show`` and ``dlq redrive``) and ``remove`` must never read or delete an S3 object elsewhere on
its say-so: moto_server over HTTP, the S3 calls counted with botocore's own event hooks.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from cdcsync.dlq import DeadLetterQueueError
from cdcsync.dlq.sqs import SqsDeadLetterQueue
from cdcsync.entrypoints.cli import main
from cdcsync.settings import S3Target, SqsTarget
from tests.integration.conftest import AwsClientFactory


def _pointer_message(letter_id: str, pointer: str) -> str:
    return orjson.dumps(
        {
            "s3_pointer": pointer,
            "letter_id": letter_id,
            "table": "Users",
            "keys": {"UserId": {"N": "1"}},
            "sequence_number": "1",
            "mapping": None,
            "index": None,
            "id": None,
            "version": None,
            "error": {"status": 400, "type": "mapper_parsing_exception", "reason": "x"},
        }
    ).decode()


@pytest.fixture
def setup(aws_client: AwsClientFactory, unique_name: str) -> tuple[AwsClientFactory, str, str, str]:
    """An overflow bucket, another bucket holding an object, and a queue; names returned."""
    s3 = aws_client("s3")
    bucket, other = f"{unique_name}-overflow", f"{unique_name}-private"
    for name in (bucket, other):
        s3.create_bucket(Bucket=name)
    sqs = aws_client("sqs")
    sqs.create_queue(QueueName=unique_name)
    return aws_client, bucket, other, unique_name


LETTER_ID = uuid.uuid4().hex
CASES = [
    pytest.param("{other}", f"overflow/2024/05/01/{LETTER_ID}.json", id="another-bucket"),
    pytest.param("{bucket}", f"private/{LETTER_ID}.json", id="outside-the-prefix"),
    pytest.param("{bucket}", f"overflow-x/2024/05/01/{LETTER_ID}.json", id="a-prefix-lookalike"),
    pytest.param("{bucket}", f"overflow/2024/05/01/{uuid.uuid4().hex}.json", id="another-letters-object"),
    pytest.param("{bucket}", f"overflow/2024/05/01/../../../{LETTER_ID}.json", id="dot-segments"),
]


@pytest.mark.parametrize(("pointer_bucket", "key"), CASES)
def test_sqs_queue_pointer_outside_overflow_is_refused_unread_and_kept(
    setup: tuple[AwsClientFactory, str, str, str], pointer_bucket: str, key: str
) -> None:
    aws_client, bucket, other, queue_name = setup
    target_bucket = pointer_bucket.format(bucket=bucket, other=other)
    # GIVEN an object the pointer aims at, and a crafted pointer message in the queue
    s3, sqs = aws_client("s3"), aws_client("sqs")
    s3.put_object(Bucket=target_bucket, Key=key, Body=b'{"secret": true}')
    calls: list[str] = []
    for operation in ("GetObject", "DeleteObject", "HeadObject"):
        s3.meta.events.register(
            f"provide-client-params.s3.{operation}",
            lambda params, operation=operation, **_: calls.append(
                f"{operation} {params['Bucket']}/{params['Key']}"
            ),
        )
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    pointer = f"s3://{target_bucket}/{key}"
    message_id = sqs.send_message(QueueUrl=url, MessageBody=_pointer_message(LETTER_ID, pointer))["MessageId"]
    queue = SqsDeadLetterQueue(
        SqsTarget(queue_name), sqs, overflow=S3Target(bucket, "overflow/"), s3_client=s3, wait_seconds=0
    )
    # WHEN the queue is read
    with pytest.raises(DeadLetterQueueError) as refused:
        queue.read()
    # THEN the pointer is refused, naming the message and where pointers may go
    assert str(refused.value) == (
        f'sqs://{queue_name} message {message_id}: overflow pointer "{pointer}" is not a letter\'s object '
        f"in the overflow location s3://{bucket}/overflow/ (YYYY/MM/DD/{LETTER_ID}.json under it, "
        "CDCSYNC_DLQ_OVERFLOW); not followed: look at the message, delete it by hand, then read again"
    )
    # AND the object was neither read nor deleted
    assert calls == []
    assert s3.get_object(Bucket=target_bucket, Key=key)["Body"].read() == b'{"secret": true}'


def test_sqs_queue_pointer_without_overflow_configured_is_refused(
    setup: tuple[AwsClientFactory, str, str, str],
) -> None:
    aws_client, bucket, _, queue_name = setup
    s3, sqs = aws_client("s3"), aws_client("sqs")
    pointer = f"s3://{bucket}/overflow/2024/05/01/{LETTER_ID}.json"
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    message_id = sqs.send_message(QueueUrl=url, MessageBody=_pointer_message(LETTER_ID, pointer))["MessageId"]
    queue = SqsDeadLetterQueue(SqsTarget(queue_name), sqs, s3_client=s3, wait_seconds=0)
    with pytest.raises(DeadLetterQueueError) as refused:
        queue.read()
    assert str(refused.value) == (
        f'sqs://{queue_name} message {message_id}: overflow pointer "{pointer}" not followed: no overflow '
        "location is configured; set CDCSYNC_DLQ_OVERFLOW to the s3://BUCKET/PREFIX the letters were "
        "written to, then read again"
    )


def test_cli_dlq_redrive_pointer_outside_overflow_exits_1_and_keeps_object_and_message(
    setup: tuple[AwsClientFactory, str, str, str],
    moto_endpoint: str,
    opensearch_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a pointer into another bucket in the queue `cdcsync dlq redrive` is configured with
    aws_client, bucket, other, queue_name = setup
    s3, sqs = aws_client("s3"), aws_client("sqs")
    key = f"overflow/2024/05/01/{LETTER_ID}.json"
    s3.put_object(Bucket=other, Key=key, Body=b"{}")
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=_pointer_message(LETTER_ID, f"s3://{other}/{key}"))
    mappings = tmp_path / "users.yaml"
    mappings.write_text("table: Users\nindex: users\n")
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "CDCSYNC_MAPPINGS": str(mappings),
        "CDCSYNC_OPENSEARCH_URL": opensearch_url,
        "CDCSYNC_DLQ": f"sqs://{queue_name}",
        "CDCSYNC_DLQ_OVERFLOW": f"s3://{bucket}/overflow/",
    }.items():
        monkeypatch.setenv(name, value)
    # WHEN the operator redrives
    code = main(["dlq", "redrive"])
    # THEN it stops with the refusal (exit 1), the object is still there, the message still queued
    assert code == 1
    assert "is not a letter's object in the overflow location" in capsys.readouterr().err
    assert s3.get_object(Bucket=other, Key=key)["Body"].read() == b"{}"
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert (
        int(attributes["ApproximateNumberOfMessages"])
        + int(attributes["ApproximateNumberOfMessagesNotVisible"])
        == 1
    )
