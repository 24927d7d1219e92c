"""Which stream a table has, which shards it holds, and which of them may be read now.

DynamoDB Streams splits a stream into shards that close every few hours and are followed by child
shards. One item's records move from a parent shard to its child, so a child is read only after
its parent is read to its end and checkpointed (lineage), as Lambda's pollers and the KCL do. A
parent older than the 24 h retention is trimmed away and no longer listed: its child is ready.

Calls to DynamoDB Streams go through ``call_streams``, which retries throttling and server errors
a few times (on top of botocore's own retries) before it gives up with ``TransientError``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, overload

from botocore.exceptions import BotoCoreError, ClientError

from cdcsync.aws import (
    ACCESS_DENIED_CODES,
    aws_error,
    describe_failure,
    error_code,
    error_kind,
    error_message,
    is_transient,
)
from cdcsync.checkpoint import ShardInfo
from cdcsync.errors import CdcsyncError, ConfigError, FatalError, TransientError

log = logging.getLogger(__name__)

CALL_ATTEMPTS = 5
_FIRST_RETRY_SECONDS = 0.1
_MAX_RETRY_SECONDS = 2.0
_DESCRIBE_LIMIT = 100  # the most DescribeStream returns per page
# A stream enabled with its table may be stamped a moment before the table; a table deleted and
# created again is always created longer than this after its old stream.
_CREATED_WITH_TABLE = dt.timedelta(seconds=1)

OldStreamOrigin = Literal["readable", "gone", "earlier table", "unknown"]


class StreamGoneError(CdcsyncError):
    """The stream (or the shard) no longer exists: the table's stream was disabled or replaced.

    The worker re-resolves the table's stream with ``stream_arn_of`` and follows the new ARN.
    """

    def __init__(self, message: str, *, stream_arn: str, shard_id: str | None = None) -> None:
        super().__init__(message)
        self.stream_arn = stream_arn
        self.shard_id = shard_id


def call_streams(
    operation: Callable[..., dict[str, Any]],
    request: Mapping[str, Any],
    *,
    what: str,
    sleep: Callable[[float], object] = time.sleep,
    attempts: int = CALL_ATTEMPTS,
) -> dict[str, Any]:
    """``operation(**request)``, retried while throttled: 0.1 s doubling, at most 2 s apart.

    Other ``ClientError``s propagate unchanged for the caller to interpret; other botocore failures
    (no credentials, no region) become our error (``aws_error``). ``what`` names the call for the
    ``TransientError`` raised when every attempt was throttled.
    """
    attempt = 1
    while True:
        try:
            return operation(**request)
        except (ClientError, BotoCoreError) as exc:
            if not is_transient(exc):
                if isinstance(exc, ClientError):
                    raise  # its code may mean something to the caller (a gone stream, a trimmed shard)
                raise aws_error(exc, call=what, resource="") from exc  # no credentials, ...
            if attempt >= attempts:
                raise TransientError(
                    f"{what}: still failing after {attempts} attempts ({describe_failure(exc)}); "
                    "DynamoDB Streams is throttling or unavailable, retrying later"
                ) from exc
            delay = min(_FIRST_RETRY_SECONDS * 2 ** (attempt - 1), _MAX_RETRY_SECONDS)
            log.debug("%s: %s, retrying in %.2f s", what, exc, delay)
            sleep(delay)
            attempt += 1


def unreadable(exc: ClientError, what: str, stream_arn: str, shard_id: str | None = None) -> CdcsyncError:
    """The error to raise for a call that failed for good: gone stream, or a fatal one.

    ``what`` is the DynamoDB Streams operation (``GetRecords``): it is also the IAM action to name
    when the call was denied.
    """
    code = error_code(exc)
    if code == "ResourceNotFoundException":
        return StreamGoneError(
            f"{what}: stream {stream_arn} no longer exists ({code}: {exc}); "
            "the table's stream was disabled or replaced: look up its current stream",
            stream_arn=stream_arn,
            shard_id=shard_id,
        )
    where = stream_arn if shard_id is None else f"{stream_arn} shard {shard_id}"
    if code in ACCESS_DENIED_CODES:
        return denied(exc, what, where, _streams_of_table(stream_arn))
    if error_kind(exc) != "fatal":  # bad credentials, throttled beyond the retries
        return aws_error(exc, call=what, resource=where)
    return FatalError(
        f"{what} {where}: DynamoDB Streams refused the call ({code}: {error_message(exc)}); "
        "check the worker's IAM permissions and credentials"
    )


def denied(exc: ClientError, action: str, where: str, resource: str) -> ConfigError:
    """The error for a call IAM refused: which permission the worker's role lacks, on what."""
    return ConfigError(
        f"{action} {where}: access denied ({error_code(exc)}: {error_message(exc)}); "
        f"grant the worker's IAM role dynamodb:{action} on {resource}"
    )


def _streams_of_table(stream_arn: str) -> str:
    """``arn:...:table/T/stream/*`` for a stream ARN: a policy on it survives a re-enabled stream."""
    table_arn, found, _ = stream_arn.partition("/stream/")
    return f"{table_arn}/stream/*" if found else stream_arn


def no_stream_error(table: str) -> ConfigError:
    """A mapped table without an enabled stream: how to enable one."""
    return ConfigError(
        f"table {table} has no enabled stream; enable one with NEW_AND_OLD_IMAGES: "
        f"aws dynamodb update-table --table-name {table} "
        "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
    )


def describe_table(dynamodb: Any, table: str) -> dict[str, Any]:
    """``DescribeTable``'s ``Table``; a missing table is a ``ConfigError``, a denied call fatal."""
    try:
        description: dict[str, Any] = call_streams(
            dynamodb.describe_table, {"TableName": table}, what=f"DescribeTable {table}"
        )["Table"]
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise ConfigError(
                f"table {table} does not exist in this account and region ({error_code(exc)}); "
                "check the mapping's table name and AWS_REGION"
            ) from exc
        if isinstance(exc, ClientError) and error_code(exc) in ACCESS_DENIED_CODES:
            raise denied(exc, "DescribeTable", f"table {table}", f"table {table}") from exc
        raise aws_error(exc, call="DescribeTable", resource=f"table {table}") from exc
    return description


def stream_view_and_keys(dynamodb: Any, table: str) -> tuple[str | None, frozenset[str]]:
    """The view type of ``table``'s enabled stream (None: no stream) and its key attribute names."""
    description = describe_table(dynamodb, table)
    spec = description.get("StreamSpecification", {})
    view = str(spec.get("StreamViewType")) if spec.get("StreamEnabled") else None
    return view, frozenset(str(key["AttributeName"]) for key in description.get("KeySchema", []))


@overload
def stream_arn_of(dynamodb: Any, table: str, *, required: Literal[True] = ...) -> str: ...
@overload
def stream_arn_of(dynamodb: Any, table: str, *, required: bool) -> str | None: ...
def stream_arn_of(dynamodb: Any, table: str, *, required: bool = True) -> str | None:
    """The ARN of ``table``'s enabled stream (``DescribeTable`` ``LatestStreamArn``).

    Without an enabled stream: ``ConfigError`` when ``required`` (start-up), else None (a worker
    waiting for a disabled stream to be enabled again). A disabled stream keeps its
    ``LatestStreamArn`` for 24 h, so ``StreamSpecification.StreamEnabled`` decides, not the ARN.
    """
    description = describe_table(dynamodb, table)
    enabled = bool(description.get("StreamSpecification", {}).get("StreamEnabled"))
    arn = description.get("LatestStreamArn")
    if enabled and arn:
        return str(arn)
    if not required:
        return None
    raise no_stream_error(table)


def table_created_at(dynamodb: Any, table: str) -> dt.datetime | None:
    """When the table was created (``DescribeTable`` ``CreationDateTime``): a recreated one is newer."""
    return _utc(describe_table(dynamodb, table).get("CreationDateTime"))


def old_stream_origin(streams: Any, stream_arn: str, table_created: dt.datetime | None) -> OldStreamOrigin:
    """Whether a stream the table had before its current one is of the table as it is now, and readable.

    ``"readable"``: DescribeStream describes it, and it was created (``CreationRequestDateTime``)
    with or after the table (``CreationDateTime``). ``"gone"``: it no longer exists (past its 24 h
    retention), and its label, the time it was created, is not before the table either.
    ``"earlier table"``: it was created before the table, which was deleted and created again since.
    ``"unknown"``: there is no time to compare. An answer about another stream (moto describes the
    table's current stream for any of its ARNs) does not count: the stream is taken as gone.
    """
    label = stream_arn.partition("/stream/")[2]
    try:
        description = call_streams(
            streams.describe_stream,
            {"StreamArn": stream_arn, "Limit": 1},
            what=f"DescribeStream {stream_arn}",
        )["StreamDescription"]
    except ClientError as exc:
        error = unreadable(exc, "DescribeStream", stream_arn)
        if not isinstance(error, StreamGoneError):
            raise error from exc
        description = {}
    readable = description.get("StreamLabel", label) == label and "CreationRequestDateTime" in description
    created = _utc(description["CreationRequestDateTime"]) if readable else _label_time(label)
    if created is None or table_created is None:
        return "unknown"
    if created < table_created - _CREATED_WITH_TABLE:
        return "earlier table"
    return "readable" if readable else "gone"


def _label_time(label: str) -> dt.datetime | None:
    """A stream label is the time the stream was created, ISO 8601 in UTC (``2026-01-01T00:00:00.000``)."""
    try:
        return _utc(dt.datetime.fromisoformat(label))
    except ValueError:
        return None


def _utc(value: object) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def list_shards(
    streams: Any, stream_arn: str, *, sleep: Callable[[float], object] = time.sleep
) -> list[ShardInfo]:
    """Every shard of the stream, in DescribeStream order, following ``LastEvaluatedShardId``.

    Raises ``StreamGoneError`` when the stream no longer exists.
    """
    shards: dict[str, ShardInfo] = {}
    start: str | None = None
    while True:
        request: dict[str, Any] = {"StreamArn": stream_arn, "Limit": _DESCRIBE_LIMIT}
        if start is not None:
            request["ExclusiveStartShardId"] = start
        try:
            page = call_streams(
                streams.describe_stream, request, what=f"DescribeStream {stream_arn}", sleep=sleep
            )["StreamDescription"]
        except ClientError as exc:
            raise unreadable(exc, "DescribeStream", stream_arn) from exc
        for shard in page.get("Shards", []):
            parent = shard.get("ParentShardId")
            shards[shard["ShardId"]] = ShardInfo(shard["ShardId"], (parent,) if parent else ())
        start = page.get("LastEvaluatedShardId")
        if not start:
            return list(shards.values())


def ready_shards(shards: Sequence[ShardInfo], finished: set[str], known: set[str]) -> list[ShardInfo]:
    """The unfinished shards whose parents are all finished or gone (trimmed away), in order.

    ``known`` holds the shards the worker has leases for; shards listed in ``shards`` count as
    known too, so a parent still listed by DescribeStream is waited for even without a lease.
    A finished shard is not ready: there is nothing left to read in it.
    """
    present = known | {shard.shard_id for shard in shards}
    return [
        shard
        for shard in shards
        if shard.shard_id not in finished and _parents_done(shard.parent_shard_ids, finished, present)
    ]


def _parents_done(parents: Iterable[str], finished: set[str], present: set[str]) -> bool:
    return all(parent in finished or parent not in present for parent in parents)
