"""SQS dead-letter queue logic against an in-memory fake client: batching, retry, partial failure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

from cdcsync.dlq import DeadLetter, DeadLetterError, DeadLetterQueueError
from cdcsync.dlq.sqs import MAX_MESSAGE_BYTES, SqsDeadLetterQueue
from cdcsync.settings import SqsTarget

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

AT = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
URL = "https://sqs.us-east-1.amazonaws.com/123456789012/cdcsync-dlq"


class FakeSqs:
    """Records SendMessageBatch calls; fails the entries whose body contains a marker, N times."""

    def __init__(self, failures: dict[str, int] | None = None) -> None:
        self.meta = SimpleNamespace(region_name="us-east-1")
        self.calls: list[list[dict[str, Any]]] = []
        self.failures = dict(failures or {})

    def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803 - boto3's spelling
        return {"QueueUrl": URL}

    def send_message_batch(self, QueueUrl: str, Entries: Sequence[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append(list(Entries))
        failed = []
        for entry in Entries:
            marker = next(
                (m for m, left in self.failures.items() if m in entry["MessageBody"] and left), None
            )
            if marker is not None:
                self.failures[marker] -= 1
                failed.append(
                    {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "boom"}
                )
        ok = [{"Id": e["Id"], "MessageId": "m"} for e in Entries if e["Id"] not in {f["Id"] for f in failed}]
        return {"Successful": ok, "Failed": failed}


def _letter(n: int, *, padding: int = 0) -> DeadLetter:
    return DeadLetter(
        record={"dynamodb": {"Keys": {"UserId": {"N": str(n)}}}, "pad": "x" * padding, "tag": f"tag-{n}-"},
        table="Users",
        keys={"UserId": {"N": str(n)}},
        sequence_number=str(n),
        error=DeadLetterError(status=400, type="mapper_parsing_exception", reason="bad"),
        attempts=1,
        first_failure_at=AT,
        last_failure_at=AT,
    )


def _queue(fake: FakeSqs, name: str = "cdcsync-dlq") -> SqsDeadLetterQueue:
    return SqsDeadLetterQueue(SqsTarget(name), cast("SQSClient", fake))


@pytest.mark.parametrize(
    ("count", "padding", "sizes"),
    [
        pytest.param(25, 0, [10, 10, 5], id="ten-per-call"),
        pytest.param(5, 100_000, [2, 2, 1], id="256-kib-per-call"),
        pytest.param(1, MAX_MESSAGE_BYTES - 1000, [1], id="one-near-limit"),
    ],
)
def test_sqs_send_batches_by_count_and_bytes(count: int, padding: int, sizes: list[int]) -> None:
    # GIVEN letters of a given size
    fake = FakeSqs()
    letters = [_letter(n, padding=padding) for n in range(count)]
    # WHEN sent
    _queue(fake).send(letters)
    # THEN they go in batches of at most 10 entries and 256 KiB, in order
    assert [len(call) for call in fake.calls] == sizes
    assert all(sum(len(e["MessageBody"].encode()) for e in call) <= MAX_MESSAGE_BYTES for call in fake.calls)
    bodies = [entry["MessageBody"] for call in fake.calls for entry in call]
    assert [DeadLetter.from_json(body, where="t") for body in bodies] == letters


def test_sqs_send_failed_entry_retried_once_succeeds() -> None:
    # GIVEN SQS fails one entry once
    fake = FakeSqs({"tag-3-": 1})
    # WHEN 5 letters are sent
    _queue(fake).send([_letter(n) for n in range(5)])
    # THEN only the failed entry is sent again, and send succeeds
    assert [len(call) for call in fake.calls] == [5, 1]
    assert "tag-3-" in fake.calls[1][0]["MessageBody"]


def test_sqs_send_entry_failing_twice_raises_with_failed_ids() -> None:
    # GIVEN SQS keeps failing two entries of the first batch
    fake = FakeSqs({"tag-3-": 2, "tag-7-": 5})
    letters = [_letter(n) for n in range(12)]
    # WHEN sent
    with pytest.raises(DeadLetterQueueError) as raised:
        _queue(fake).send(letters)
    # THEN the later batch was still sent, and the error names the count, cause and first letter
    assert [len(call) for call in fake.calls] == [10, 2, 2]
    assert raised.value.failed_ids == (letters[3].letter_id, letters[7].letter_id)
    assert str(raised.value) == (
        f"cannot write 2 of 12 dead letters to sqs://cdcsync-dlq: InternalError: boom "
        f"(first letter_id {letters[3].letter_id})"
    )


def test_sqs_fifo_queue_entries_grouped_by_table_and_deduplicated_by_letter_id() -> None:
    # GIVEN a FIFO queue
    fake = FakeSqs()
    letter = _letter(1)
    # WHEN a letter is sent THEN the entry carries group and deduplication ids
    _queue(fake, "cdcsync-dlq.fifo").send([letter])
    entry = fake.calls[0][0]
    assert (entry["MessageGroupId"], entry["MessageDeduplicationId"]) == ("Users", letter.letter_id)


def test_sqs_send_nothing_makes_no_call() -> None:
    # GIVEN no letters WHEN sent THEN SQS is not called at all
    fake = FakeSqs()
    _queue(fake).send([])
    assert fake.calls == []


def test_sqs_send_oversized_letter_with_key_beyond_64_bits_is_slimmed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a letter over SQS's limit whose (malformed) key holds an integer beyond 64 bits
    letter = DeadLetter(
        record={"dynamodb": {"Keys": {"Id": {"N": 2**64 + 1}}, "NewImage": {"x": "y" * MAX_MESSAGE_BYTES}}},
        table="Users",
        keys={"Id": {"N": 2**64 + 1}},
        sequence_number="1",
        error=DeadLetterError(type="invalid_record", reason="bad"),
        attempts=1,
        first_failure_at=AT,
        last_failure_at=AT,
    )
    fake = FakeSqs()
    # WHEN it is sent
    _queue(fake).send([letter])
    # THEN it goes without its images, and the warning carries the key exactly (as its key field,
    # which CDCSYNC_LOG_KEYS shapes; the logs' JSON writes integers beyond 64 bits)
    assert len(fake.calls) == 1
    assert [getattr(record, "key", None) for record in caplog.records] == [{"Id": {"N": 2**64 + 1}}]
