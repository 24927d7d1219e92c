"""``sqs://`` dead-letter queue: one SQS message per dead letter.

``send`` packs letters into ``SendMessageBatch`` calls (at most 10 entries and 256 KiB per call),
retries the entries SQS reports as failed once, and raises with the ``letter_id`` of every letter
that was not stored; the other batches of the call are still sent, so as much as possible is kept.

A letter over SQS's 256 KiB message limit (a big item, twice: NewImage and OldImage):
- with an overflow bucket, the whole letter is stored as one S3 object and the message carries a
  pointer ``{"s3_pointer": "s3://bucket/key", "letter_id": ..., "table": ..., ...}`` with the small
  fields, so the queue still shows what failed; ``read`` follows the pointer, ``remove`` deletes
  the object after the message. A pointer is followed only to the letter's own object
  (``PREFIX/YYYY/MM/DD/<letter_id>.json``) in the configured overflow bucket: anyone who can send
  to the queue can write one, and must not make ``dlq show`` read, or ``dlq redrive`` delete, any
  other object. A pointer elsewhere, or with no overflow configured, makes ``read`` raise;
- without one, the letter is sent without ``record.dynamodb.NewImage``/``OldImage`` and with
  ``images_dropped=True`` (redrive re-reads the item from the table anyway), and a warning is
  logged. A letter still too big after that (a huge error reason, a Kinesis-wrapped record) is
  not stored and reported in ``failed_ids``.

Decisions: the 256 KiB limit is kept although SQS now accepts 1 MiB, because queues created
before that, FIFO queues and SQS-compatible servers may not. On a FIFO queue (name ending in
``.fifo``) letters are grouped by table and deduplicated by ``letter_id``. ``read`` long-polls
``wait_seconds`` (default 1 s) so an empty answer means an empty queue rather than an unlucky
sample of SQS servers, and skips a message it already returned in the same call (its visibility
timeout may run out during a long read).
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from cdcsync.dlq.aws import AwsError, failure
from cdcsync.dlq.letter import DeadLetter
from cdcsync.dlq.queue import DeadLetterQueueError, StoredLetter, count
from cdcsync.dlq.s3 import join_key
from cdcsync.errors import RecordError
from cdcsync.logs import record_fields
from cdcsync.settings import S3Target, SqsTarget
from cdcsync.values import dump_json, image_to_plain

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef, SendMessageBatchRequestEntryTypeDef

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 262_144  # per message and per SendMessageBatch call
MAX_BATCH_ENTRIES = 10
_LETTER_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_OVERFLOW_NAME = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2}/[A-Za-z0-9_-]{1,128}\.json")  # see _pointer
_POINTER_FIELDS = frozenset(
    {"letter_id", "table", "keys", "sequence_number", "mapping", "index", "id", "version", "error"}
)


@dataclass(frozen=True, slots=True)
class SqsHandle:
    """Where a letter read from SQS came from: what ``DeleteMessageBatch`` needs, plus its overflow object."""

    receipt_handle: str
    message_id: str
    s3_pointer: str | None = None


class _UnsendableError(Exception):
    """This letter cannot become an SQS message; the reason ends up in the DeadLetterQueueError."""


class SqsDeadLetterQueue:
    """Dead letters as SQS messages; ``StoredLetter.handle`` is an ``SqsHandle``."""

    def __init__(
        self,
        target: SqsTarget,
        client: SQSClient,
        *,
        overflow: S3Target | None = None,
        s3_client: S3Client | None = None,
        visibility_timeout: int = 30,
        wait_seconds: int = 1,
    ) -> None:
        if overflow is not None and s3_client is None:
            raise ValueError("an overflow bucket needs an s3_client")
        self.target = target
        self._sqs = client
        self._s3 = s3_client
        self._overflow = overflow
        self._visibility_timeout = visibility_timeout
        self._wait_seconds = wait_seconds
        self._url: str | None = target.queue if target.queue.startswith(("https://", "http://")) else None
        self._fifo = target.queue.endswith(".fifo")

    def describe(self) -> str:
        return f"sqs://{self.target.queue}"

    # -- send ------------------------------------------------------------------------------------

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        all_ids = [letter.letter_id for letter in letters]
        url = self._queue_url(f"cannot write {count(len(letters))} to", "sqs:GetQueueUrl", all_ids)
        failed: dict[str, str] = {}
        bodies: list[tuple[DeadLetter, bytes]] = []
        for letter in letters:
            try:
                bodies.append((letter, self._body(letter)))
            except _UnsendableError as exc:
                failed[letter.letter_id] = str(exc)
        batches = list(_batches(bodies))
        for number, batch in enumerate(batches):
            try:
                failed.update(self._send_batch(url, batch))
            except AwsError as exc:
                unsent = [letter.letter_id for later in batches[number:] for letter, _ in later]
                ids = [*failed, *unsent]
                raise DeadLetterQueueError(
                    f"cannot write {count(len(ids))} to {self.describe()}: "
                    f"{failure(exc, permission='sqs:SendMessage', region=self._region)}",
                    failed_ids=ids,
                ) from exc
        if failed:
            first_id, first_reason = next(iter(failed.items()))
            raise DeadLetterQueueError(
                f"cannot write {len(failed)} of {count(len(letters))} to {self.describe()}: "
                f"{first_reason} (first letter_id {first_id})",
                failed_ids=list(failed),
            )

    def _body(self, letter: DeadLetter) -> bytes:
        body = letter.to_json()
        if len(body) <= MAX_MESSAGE_BYTES:
            return body
        if self._overflow is not None and self._s3 is not None:
            return self._pointer(letter, body, self._overflow, self._s3)
        slim = letter.model_copy(update={"record": _without_images(letter.record), "images_dropped": True})
        slim_body = slim.to_json()
        if len(slim_body) > MAX_MESSAGE_BYTES:
            raise _UnsendableError(
                f"dead letter is {len(slim_body)} bytes even without NewImage/OldImage, over SQS's "
                f"{MAX_MESSAGE_BYTES}-byte limit (configure an overflow bucket)"
            )
        logger.warning(
            "dead letter %s for %s seq %s is %d bytes, over SQS's %d-byte limit: "
            "sent to %s without NewImage/OldImage (images_dropped); configure an overflow bucket "
            "to keep them",
            letter.letter_id,
            letter.table,
            letter.sequence_number,
            len(body),
            MAX_MESSAGE_BYTES,
            self.describe(),
            extra=record_fields(letter.table, _plain_keys(letter.keys), letter.sequence_number),
        )
        return slim_body

    def _pointer(self, letter: DeadLetter, body: bytes, overflow: S3Target, s3: S3Client) -> bytes:
        """Store the whole letter in the overflow bucket; the message carries where, and the small fields."""
        at = letter.last_failure_at
        key = join_key(overflow.prefix, f"{at:%Y/%m/%d}/{letter.letter_id}.json")
        uri = f"s3://{overflow.bucket}/{key}"
        try:
            s3.put_object(Bucket=overflow.bucket, Key=key, Body=body, ContentType="application/json")
        except AwsError as exc:
            raise _UnsendableError(
                f"cannot store the {len(body)}-byte letter in overflow {uri}: "
                f"{failure(exc, permission='s3:PutObject', region=self._region)}"
            ) from exc
        small = letter.model_dump(mode="json", include=set(_POINTER_FIELDS))
        pointer = dump_json({"s3_pointer": uri, **small})
        if len(pointer) > MAX_MESSAGE_BYTES:
            raise _UnsendableError(f"the pointer message to {uri} is {len(pointer)} bytes, over SQS's limit")
        return pointer

    def _send_batch(self, url: str, batch: list[tuple[DeadLetter, bytes]]) -> dict[str, str]:
        """Send one batch, retry its failed entries once; return letter_id -> reason of what still failed."""
        pending = {str(n): entry for n, entry in enumerate(batch)}
        reasons: dict[str, str] = {}
        for _attempt in range(2):
            response = self._sqs.send_message_batch(
                QueueUrl=url, Entries=[self._entry(n, *entry) for n, entry in pending.items()]
            )
            reasons = {
                item["Id"]: f"{item['Code']}: {item.get('Message', '')}".rstrip(": ")
                for item in response.get("Failed", [])
            }
            pending = {n: pending[n] for n in reasons}
            if not pending:
                return {}
        return {pending[n][0].letter_id: reasons[n] for n in pending}

    def _entry(self, entry_id: str, letter: DeadLetter, body: bytes) -> SendMessageBatchRequestEntryTypeDef:
        entry: SendMessageBatchRequestEntryTypeDef = {"Id": entry_id, "MessageBody": body.decode("utf-8")}
        if self._fifo:
            entry["MessageGroupId"] = letter.table
            entry["MessageDeduplicationId"] = letter.letter_id
        return entry

    # -- read ------------------------------------------------------------------------------------

    def read(self, limit: int | None = None) -> list[StoredLetter]:
        url = self._queue_url("cannot read dead letters from", "sqs:GetQueueUrl", ())
        stored: list[StoredLetter] = []
        seen: set[str] = set()
        while limit is None or len(stored) < limit:
            wanted = MAX_BATCH_ENTRIES if limit is None else min(MAX_BATCH_ENTRIES, limit - len(stored))
            try:
                messages = self._sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=wanted,
                    VisibilityTimeout=self._visibility_timeout,
                    WaitTimeSeconds=self._wait_seconds,
                ).get("Messages", [])
            except AwsError as exc:
                raise DeadLetterQueueError(
                    f"cannot read dead letters from {self.describe()}: "
                    f"{failure(exc, permission='sqs:ReceiveMessage', region=self._region)}"
                ) from exc
            if not messages:
                break
            for message in messages:
                if message["MessageId"] not in seen:
                    seen.add(message["MessageId"])
                    stored.append(self._parse(message))
        return stored

    def _parse(self, message: MessageTypeDef) -> StoredLetter:
        where = f"{self.describe()} message {message['MessageId']}"
        body = message.get("Body", "")
        pointer, letter_id = _pointer_of(body)
        if pointer is not None:
            self._check_pointer(pointer, letter_id, where)
            where = f"{pointer} (from {where})"
            body = self._fetch(pointer, where)
        letter = DeadLetter.from_json(body, where=where)
        if pointer is not None and letter.letter_id != letter_id:
            raise DeadLetterQueueError(
                f"{where}: holds letter {letter.letter_id}, but the message points to it for letter "
                f"{letter_id}; look at both, delete the message by hand, then read again"
            )
        return StoredLetter(letter, SqsHandle(message["ReceiptHandle"], message["MessageId"], pointer))

    def _check_pointer(self, pointer: str, letter_id: str | None, where: str) -> None:
        """Refuse a pointer anywhere but the letter's own object in the configured overflow location.

        Whoever can send to the queue can write a pointer; following it blindly would let them make
        ``dlq show`` read, and ``dlq redrive`` delete, any object this process may touch.
        """
        shown = json.dumps(pointer)  # quoted, control characters escaped
        overflow = self._overflow
        if overflow is None:
            raise DeadLetterQueueError(
                f"{where}: overflow pointer {shown} not followed: no overflow location is configured; "
                "set CDCSYNC_DLQ_OVERFLOW to the s3://BUCKET/PREFIX the letters were written to, "
                "then read again"
            )
        prefix = join_key(overflow.prefix, "")
        bucket, key = _split_s3_uri(pointer)
        if (
            bucket != overflow.bucket
            or letter_id is None
            or not _LETTER_ID.fullmatch(letter_id)
            or not _OVERFLOW_NAME.fullmatch(key.removeprefix(prefix))
            or not key.startswith(prefix)
            or not key.endswith(f"/{letter_id}.json")
        ):
            raise DeadLetterQueueError(
                f"{where}: overflow pointer {shown} is not a letter's object in the overflow location "
                f"s3://{overflow.bucket}/{prefix} (YYYY/MM/DD/{letter_id}.json under it, "
                "CDCSYNC_DLQ_OVERFLOW); not followed: look at the message, delete it by hand, then read again"
            )

    def _fetch(self, pointer: str, where: str) -> str:
        if self._s3 is None:
            raise DeadLetterQueueError(f"{where}: the letter is in S3, but this queue has no S3 client")
        bucket, key = _split_s3_uri(pointer)
        try:
            return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        except AwsError as exc:
            raise DeadLetterQueueError(
                f"{where}: cannot read the overflow object: "
                f"{failure(exc, permission='s3:GetObject', region=self._region)}"
            ) from exc

    # -- remove ----------------------------------------------------------------------------------

    def remove(self, stored: Sequence[StoredLetter]) -> None:
        if not stored:
            return
        handles = [(item.letter.letter_id, _sqs_handle(item)) for item in stored]
        ids = [letter_id for letter_id, _ in handles]
        url = self._queue_url(f"cannot remove {count(len(stored))} from", "sqs:GetQueueUrl", ids)
        failed: dict[str, str] = {}
        for start in range(0, len(handles), MAX_BATCH_ENTRIES):
            chunk = handles[start : start + MAX_BATCH_ENTRIES]
            try:
                response = self._sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": handle.receipt_handle}
                        for n, (_, handle) in enumerate(chunk)
                    ],
                )
            except AwsError as exc:
                ids = [*failed, *(letter_id for letter_id, _ in handles[start:])]
                raise DeadLetterQueueError(
                    f"cannot remove {count(len(ids))} from {self.describe()}: "
                    f"{failure(exc, permission='sqs:DeleteMessage', region=self._region)}",
                    failed_ids=ids,
                ) from exc
            for error in response.get("Failed", []):
                failed[chunk[int(error["Id"])][0]] = error["Code"]
            for done in response.get("Successful", []):
                letter_id, handle = chunk[int(done["Id"])]
                if handle.s3_pointer is not None:
                    self._delete_overflow(letter_id, handle.s3_pointer)
        if failed:
            first_id, first_code = next(iter(failed.items()))
            raise DeadLetterQueueError(
                f"cannot remove {len(failed)} of {count(len(stored))} from {self.describe()}: "
                f"{first_code} (first letter_id {first_id}; a receipt handle expires after the "
                "visibility timeout: read again, then remove)",
                failed_ids=list(failed),
            )

    def _delete_overflow(self, letter_id: str, pointer: str) -> None:
        """The message is gone, so the letter is removed; a leftover object is only litter (logged)."""
        if self._s3 is None:
            return  # _parse could not have returned this letter without an S3 client
        bucket, key = _split_s3_uri(pointer)
        try:
            self._s3.delete_object(Bucket=bucket, Key=key)
        except AwsError as exc:
            logger.warning(
                "dead letter %s was removed from %s, but its overflow object %s was not deleted: %s; "
                "delete it by hand",
                letter_id,
                self.describe(),
                pointer,
                failure(exc, permission="s3:DeleteObject", region=self._region),
            )

    # -- shared ----------------------------------------------------------------------------------

    @property
    def _region(self) -> str | None:
        return self._sqs.meta.region_name

    def _queue_url(self, doing: str, permission: str, failed_ids: Sequence[str]) -> str:
        """The queue URL, looked up once by name (a URL target is used as it is)."""
        if self._url is None:
            try:
                self._url = self._sqs.get_queue_url(QueueName=self.target.queue)["QueueUrl"]
            except AwsError as exc:
                raise DeadLetterQueueError(
                    f"{doing} {self.describe()}: {failure(exc, permission=permission, region=self._region)}",
                    failed_ids=failed_ids,
                ) from exc
        return self._url


def _batches(bodies: list[tuple[DeadLetter, bytes]]) -> Iterator[list[tuple[DeadLetter, bytes]]]:
    """Consecutive groups of at most 10 entries and 256 KiB of bodies (each body fits on its own)."""
    batch: list[tuple[DeadLetter, bytes]] = []
    size = 0
    for letter, body in bodies:
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + len(body) > MAX_MESSAGE_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((letter, body))
        size += len(body)
    if batch:
        yield batch


def _without_images(record: dict[str, Any]) -> dict[str, Any]:
    slim = copy.copy(record)
    body = slim.get("dynamodb")
    if isinstance(body, dict):
        slim["dynamodb"] = {k: v for k, v in body.items() if k not in ("NewImage", "OldImage")}
    return slim


def _pointer_of(body: str) -> tuple[str | None, str | None]:
    """The ``s3_pointer`` and ``letter_id`` of an overflow message; no pointer for a letter sent inline."""
    if '"s3_pointer"' not in body:
        return None, None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None  # DeadLetter.from_json reports the malformed body with its message id
    if not isinstance(parsed, dict):
        return None, None
    pointer, letter_id = parsed.get("s3_pointer"), parsed.get("letter_id")
    return (
        pointer if isinstance(pointer, str) else None,
        letter_id if isinstance(letter_id, str) else None,
    )


def _plain_keys(keys: dict[str, Any]) -> dict[str, Any]:
    """Typed keys as plain values for the log line; as stored when they are not DynamoDB values."""
    try:
        return image_to_plain(keys)
    except RecordError:
        return keys


def _split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _sqs_handle(stored: StoredLetter) -> SqsHandle:
    if not isinstance(stored.handle, SqsHandle):
        raise TypeError(f"letter {stored.letter.letter_id} was not read from an SQS dead-letter queue")
    return stored.handle
