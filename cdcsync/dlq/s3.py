"""``s3://BUCKET/PREFIX`` dead-letter queue: one JSON Lines object per ``send``.

Each ``send`` writes one new object ``PREFIX/YYYY/MM/DD/HHMMSS-<uuid>.jsonl`` (UTC), so writers
never touch each other's objects and any number of processes can send at once. ``read`` lists the
``.jsonl`` objects under the prefix in key order (oldest second first; objects written in the same
second come in uuid order) and parses every line. ``remove`` rewrites each object it touches
without the removed letters, or deletes it when nothing is left.

Concurrency: two removers touching one object would lose one's update, so each rewrite and delete
is conditional on the ETag read (``If-Match``); a lost race raises, and reading again is the fix.

Decisions: other objects under the prefix (not ending in ``.jsonl``) are not ours and are left
alone. A line that is not a dead letter makes ``read`` raise with ``s3://bucket/key:line``, as the
file backend does, and ``remove`` keeps such lines.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cdcsync.dlq.aws import AwsError, error_code, failure
from cdcsync.dlq.letter import DeadLetter
from cdcsync.dlq.queue import DeadLetterQueueError, StoredLetter, count, letter_id_of
from cdcsync.settings import S3Target

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def join_key(prefix: str, name: str) -> str:
    """``prefix/name`` without doubled or leading slashes (an empty prefix is the bucket root)."""
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class S3Handle:
    """Where a letter read from S3 lives: its object and 1-based line."""

    key: str
    line: int


class S3DeadLetterQueue:
    """Dead letters in JSON Lines objects under a prefix; ``StoredLetter.handle`` is an ``S3Handle``."""

    def __init__(
        self, target: S3Target, client: S3Client, *, clock: Callable[[], dt.datetime] = _utc_now
    ) -> None:
        self.target = target
        self._s3 = client
        self._clock = clock

    def describe(self) -> str:
        return f"s3://{self.target.bucket}/{self.target.prefix}"

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        now = self._clock().astimezone(dt.UTC)
        key = join_key(self.target.prefix, f"{now:%Y/%m/%d/%H%M%S}-{uuid.uuid4().hex}.jsonl")
        body = b"".join(letter.to_json() + b"\n" for letter in letters)
        try:
            self._s3.put_object(
                Bucket=self.target.bucket, Key=key, Body=body, ContentType="application/x-ndjson"
            )
        except AwsError as exc:
            raise DeadLetterQueueError(
                f"cannot write {count(len(letters))} to {self.describe()}: "
                f"{self._failure(exc, 's3:PutObject')}",
                failed_ids=[letter.letter_id for letter in letters],
            ) from exc

    def read(self, limit: int | None = None) -> list[StoredLetter]:
        stored: list[StoredLetter] = []
        for key in self._keys():
            if limit is not None and len(stored) >= limit:
                break
            try:
                lines = self._get(key, "cannot read dead letters from")[0]
            except _MissingObjectError:
                continue  # emptied and deleted by another reader after the listing
            for number, line in enumerate(lines, start=1):
                if limit is not None and len(stored) >= limit:
                    break
                if line.strip():
                    where = f"s3://{self.target.bucket}/{key}:{number}"
                    stored.append(
                        StoredLetter(DeadLetter.from_json(line, where=where), S3Handle(key, number))
                    )
        return stored

    def remove(self, stored: Sequence[StoredLetter]) -> None:
        doomed_by_key: dict[str, set[str]] = {}
        for item in stored:
            handle = item.handle
            if not isinstance(handle, S3Handle):
                raise TypeError(f"letter {item.letter.letter_id} was not read from an S3 dead-letter queue")
            doomed_by_key.setdefault(handle.key, set()).add(item.letter.letter_id)
        for key, doomed in sorted(doomed_by_key.items()):
            self._rewrite(key, doomed)

    def _rewrite(self, key: str, doomed: set[str]) -> None:
        doing = f"cannot remove {count(len(doomed))} from"
        try:
            lines, etag = self._get(key, doing)
        except _MissingObjectError:
            return  # removed already (by another reader), which is what was asked
        kept = [line for line in lines if line.strip() and letter_id_of(line) not in doomed]
        if len(kept) == len([line for line in lines if line.strip()]):
            return
        try:
            if kept:
                self._s3.put_object(
                    Bucket=self.target.bucket,
                    Key=key,
                    Body=b"".join(line + b"\n" for line in kept),
                    ContentType="application/x-ndjson",
                    IfMatch=etag,
                )
            else:
                self._s3.delete_object(Bucket=self.target.bucket, Key=key, IfMatch=etag)
        except AwsError as exc:
            reason = (
                "the object changed since it was read (another remover?); read again, then remove"
                if error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict")
                else self._failure(exc, "s3:PutObject and s3:DeleteObject")
            )
            raise DeadLetterQueueError(
                f"{doing} s3://{self.target.bucket}/{key}: {reason}", failed_ids=sorted(doomed)
            ) from exc

    def _keys(self) -> list[str]:
        prefix = join_key(self.target.prefix, "")
        keys: list[str] = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.target.bucket, Prefix=prefix
            )
            for page in pages:
                keys.extend(obj["Key"] for obj in page.get("Contents", []) if obj["Key"].endswith(".jsonl"))
        except AwsError as exc:
            raise DeadLetterQueueError(
                f"cannot list dead letters in {self.describe()}: {self._failure(exc, 's3:ListBucket')}"
            ) from exc
        return sorted(keys)

    def _get(self, key: str, doing: str) -> tuple[list[bytes], str]:
        """The object's lines and ETag; ``_MissingObjectError`` when it was deleted after listing."""
        try:
            response = self._s3.get_object(Bucket=self.target.bucket, Key=key)
            return response["Body"].read().splitlines(), response["ETag"]
        except AwsError as exc:
            if error_code(exc) == "NoSuchKey":
                raise _MissingObjectError(key) from exc
            raise DeadLetterQueueError(
                f"{doing} s3://{self.target.bucket}/{key}: {self._failure(exc, 's3:GetObject')}"
            ) from exc

    def _failure(self, exc: Exception, permission: str) -> str:
        return failure(exc, permission=permission, region=self._s3.meta.region_name)


class _MissingObjectError(Exception):
    """An object listed a moment ago is gone (another reader removed its last letter)."""
