"""``dynamodb://TABLE`` lease store: replicas share one lease table and coordinate with conditional writes.

The model is the Kinesis Client Library's. One item per shard (``lease_key`` = ``table|shard_id``)
holds its owner, a ``counter`` the owner increments on every renewal, the checkpoint and whether
the shard is finished; ``heartbeat_ms`` (wall clock) is only for people reading the table.
Backfill progress records live in the same table under ``progress|<key>``, and compare-and-set
records (shared backfill runs' units) under ``record|<key>`` with a ``revision`` attribute that
every ``put_record`` raises, conditional on the revision the caller read.

**Expiry by counter observation.** No worker compares its clock with another host's. A worker
remembers, per lease, when *it* first saw the current (owner, counter) pair on its own monotonic
clock; the lease is expired once that pair has been unchanged for longer than ``lease_seconds``.
Unowned leases are free. A worker seeing a lease for the first time treats it as just renewed.

**One round of ``acquire``:** renew our leases (``owner = me AND counter = c`` -> ``c + 1``; a
failed condition means the lease was taken: drop it); scan the stream's leases; the fair share is
``ceil(unfinished leases / live workers)``, live workers being the owners of unexpired
unfinished leases plus us; take free, then expired leases (conditional on the owner and counter
we saw) up to the share; if still short and some worker holds more than the share, steal ONE
lease from the most loaded worker. Stealing one per round lets the victim notice before it loses
more, and converges in a few rounds (KCL's ``maxLeasesToStealAtOneTime`` defaults to 1 too).
Taking keeps the checkpoint; finished leases are never taken, renewed or counted.

**Guarantee: two replicas never write for one shard at once** (``write_window``; the bound is in
ARCHITECTURE.md, "Versions"). Say worker A sent its last successful renewal (counter c) at r on
its clock. A writes only in rounds that end by r + lease_seconds - margin (margin = a tenth of the
lease); after that ``write_window`` raises ``LeaseLostError``, and from r + lease_seconds on
``checkpoint`` does too and ``acquire`` drops the lease, whether or not anyone took it. Worker B
takes an *expired* lease only with the condition ``counter = c`` after seeing c unchanged for
lease_seconds on its own clock; B first saw c at s, after it was written, so after r; B's first
write waits until s + lease_seconds + margin. A *steal* does not wait for expiry, so the thief's
first write waits a whole lease period plus the margin after its take (A's last renewal was
written before the take). A lease taken *free* (released at shutdown, after its loops ended) is
written at once. Between A's last write and B's first lie two margins, enough for clocks that tick
at slightly different rates (1% costs 0.3 s of a 30 s lease) and for A's last request to land. A
copy of a lease from an earlier ownership (lost, then taken again) can no longer checkpoint or
write.

Errors: a lost lease is ``LeaseLostError``; throttling, 5xx and connection failures, after
botocore's retries, are ``TransientError``; anything else (access denied, a table with the wrong
key schema, a deleted table) is ``FatalError`` or ``ConfigError`` with what to check.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from cdcsync.aws import aws_error, describe_failure, error_code, error_kind
from cdcsync.checkpoint import (
    TRIM_HORIZON,
    Lease,
    LeaseLostError,
    Record,
    RecordChangedError,
    ShardInfo,
    WriteWindow,
    is_foreign,
)
from cdcsync.checkpoint.file import lease_key
from cdcsync.errors import CdcsyncError, FatalError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

PROGRESS_PREFIX = "progress|"
RECORD_PREFIX = "record|"
_FREE = "attribute_not_exists(#owner)"
# The margin, as a share of the lease period, by which an owner's writes end before its lease could
# lapse and by which a new owner's first write follows the previous owner's lease end (3 s of 30 s).
MARGIN_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class _Held:
    """A lease this worker owns, as last written; when that write was sent (own clock); the
    counter it was taken at, so a copy from an earlier ownership can no longer checkpoint; and
    when (own clock) its first write may start, the previous owner's writes having surely ended."""

    lease: Lease
    renewed_at: float
    taken_at_counter: int
    writable_at: float


@dataclass(frozen=True, slots=True)
class _Seen:
    """When this worker first saw a lease's current (owner, counter), on its own clock."""

    stream: tuple[str, str]  # (table, stream ARN)
    owner: str
    counter: int
    since: float


class _ConditionFailedError(Exception):
    """A conditional write found the item changed; ``item`` is the item as it is now (None if gone)."""

    def __init__(self, item: Lease | None, raw: Mapping[str, Any] | None = None) -> None:
        super().__init__("conditional check failed")
        self.item = item
        self.raw = raw  # the item as DynamoDB returned it


class DynamoDbLeaseStore:
    """``LeaseStore`` on a DynamoDB lease table shared by every replica."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        worker_id: str,
        lease_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.table_name = table_name
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.margin = lease_seconds * MARGIN_SHARE
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()  # noqa: S311  (spreads contention, not security)
        self._lock = threading.Lock()  # guards the four dicts; never held across a request
        self._held: dict[str, _Held] = {}
        self._seen: dict[str, _Seen] = {}
        self._lost: dict[str, str] = {}  # why a lease we held is gone, for the next checkpoint
        self._ended: dict[str, float] = {}  # when a lease we held could lapse at the latest (own clock)

    def describe(self) -> str:
        """The store as ``CDCSYNC_CHECKPOINTS`` would name it."""
        return f"dynamodb://{self.table_name}"

    # --- LeaseStore ---------------------------------------------------------------------------

    def sync_shards(
        self,
        table: str,
        stream_arn: str,
        shards: Sequence[ShardInfo],
        *,
        live_streams: Collection[str] = (),
    ) -> list[Lease]:
        live = {*live_streams, stream_arn}
        stored = {lease.shard_id: lease for lease in self._scan(table)}  # one item per table|shard_id
        for shard in shards:
            old = stored.get(shard.shard_id)
            if old is not None and not is_foreign(old, table, live):
                continue  # this stream's, or a clash with a stream still read: it waits for it
            item = {
                "lease_key": {"S": lease_key(table, shard.shard_id)},
                "table": {"S": table},
                "stream_arn": {"S": stream_arn},
                "shard_id": {"S": shard.shard_id},
                "parent_shard_ids": {"L": [{"S": parent} for parent in shard.parent_shard_ids]},
                "counter": {"N": "0"},
                "checkpoint": {"S": TRIM_HORIZON},
                "finished": {"BOOL": False},
                "heartbeat_ms": {"N": str(self._now_ms())},
            }
            # Created once; a lease of a stream nobody reads is replaced only as it was seen.
            condition: dict[str, Any] = (
                {"ConditionExpression": "attribute_not_exists(lease_key)"}
                if old is None
                else {
                    "ConditionExpression": "stream_arn = :old AND #counter = :counter",
                    "ExpressionAttributeNames": {"#counter": "counter"},
                    "ExpressionAttributeValues": {
                        ":old": {"S": old.stream_arn},
                        ":counter": {"N": str(old.counter)},
                    },
                }
            )
            try:
                self._call("PutItem", self.client.put_item, TableName=self.table_name, Item=item, **condition)
            except _ConditionFailedError:
                continue  # another worker created (or replaced) it first
            log.info("created lease for shard %s of table %s", shard.shard_id, table, extra={"table": table})
        return [lease for lease in stored.values() if is_foreign(lease, table, live) and not lease.finished]

    def leases(self, table: str, stream_arn: str) -> list[Lease]:
        found = self._scan(table, stream_arn)
        self._observe(table, stream_arn, found, self._clock())
        return found

    def acquire(self, table: str, stream_arn: str) -> list[Lease]:
        dropped = self._renew(table, stream_arn)
        found = self._scan(table, stream_arn)
        now = self._clock()
        self._observe(table, stream_arn, found, now)
        unfinished = [lease for lease in found if not lease.finished]
        held = {_key(lease) for lease in self._owned(table, stream_arn)}
        expired = {key for key in map(_key, unfinished) if self._expired(key, now)}
        live = {
            lease.owner
            for lease in unfinished
            if lease.owner not in (None, self.worker_id) and _key(lease) not in expired
        } | {self.worker_id}
        share = math.ceil(len(unfinished) / len(live))
        # Ours in the table but not held here: a restart with the same worker id. They are ours.
        for lease in unfinished:
            key = _key(lease)
            mine = lease.owner == self.worker_id and key not in held and key not in dropped
            # Our own old writes ended with our old lease (if this process held it; else unknown).
            lapse = self._ended.get(key)
            if mine and self._claim(lease, self.worker_id, how="resumed", lapse=lapse) is not None:
                held.add(key)
        candidates = [lease for lease in unfinished if lease.owner is None]
        self._rng.shuffle(candidates)
        stale = [lease for lease in unfinished if _key(lease) in expired and _key(lease) not in held]
        self._rng.shuffle(stale)
        for lease in candidates + stale:
            if len(held) >= share:
                break
            if lease.owner is None:  # released after its loops ended, or never owned: no wait
                how, lapse = "free", -math.inf
            else:  # its owner's last renewal was sent before we first saw its counter
                how, lapse = f"expired, owner {lease.owner}", self._expiry(_key(lease))
            if (
                _key(lease) not in dropped
                and self._claim(lease, lease.owner, how=how, lapse=lapse) is not None
            ):
                held.add(_key(lease))
        if len(held) < share:
            self._steal_one(unfinished, held, expired, share)
        return self._owned(table, stream_arn)

    def write_window(self, lease: Lease) -> WriteWindow:
        entry = self._holding(lease)
        now = self._clock()
        age = now - entry.renewed_at
        closes_in = self.lease_seconds - self.margin - age
        if closes_in <= 0:
            reason = (
                f"was last renewed {age:.1f} s ago and may lapse before a write started now could end "
                f"(writes stop {self.margin:g} s before the lease period of {self.lease_seconds:g} s)"
            )
            raise LeaseLostError(self._lost_message(lease, reason))
        return WriteWindow(opens_in=max(0.0, entry.writable_at - now), closes_in=closes_in)

    def checkpoint(self, lease: Lease, sequence_number: str, *, finished: bool = False) -> Lease:
        key = _key(lease)
        entry = self._holding(lease)
        age = self._clock() - entry.renewed_at
        if age > self.lease_seconds:
            reason = self._not_renewed(age)
            self._drop(key, reason)
            raise LeaseLostError(self._lost_message(lease, reason))
        try:
            updated = self._update(
                key,
                "SET #checkpoint = :seq, finished = :finished, heartbeat_ms = :hb",
                "#owner = :me",
                {":seq": {"S": sequence_number}, ":finished": {"BOOL": finished}},
            )
        except _ConditionFailedError as failed:
            reason = _taken(failed.item)
            self._drop(key, reason)
            raise LeaseLostError(self._lost_message(lease, reason)) from None
        if finished:  # nothing left to renew; children may start
            self._drop(key, "is finished")
        return updated

    def release(self, lease: Lease) -> None:
        key = _key(lease)
        self._drop(key, "was released by this worker")
        try:
            self._update(key, "REMOVE #owner SET heartbeat_ms = :hb", "#owner = :me", {})
        except _ConditionFailedError:
            return  # already lost: nothing to give up
        log.info("released lease of shard %s of table %s", lease.shard_id, lease.table, extra=_fields(lease))

    def save_progress(self, key: str, value: Mapping[str, Any]) -> None:
        self._call(
            "PutItem",
            self.client.put_item,
            TableName=self.table_name,
            Item={"lease_key": {"S": PROGRESS_PREFIX + key}, "progress": {"S": json.dumps(dict(value))}},
        )

    def load_progress(self, key: str) -> dict[str, Any] | None:
        item = self._call(
            "GetItem",
            self.client.get_item,
            TableName=self.table_name,
            Key={"lease_key": {"S": PROGRESS_PREFIX + key}},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            return None
        record: dict[str, Any] = json.loads(item["progress"]["S"])
        return record

    def put_record(self, key: str, value: Mapping[str, Any], *, revision: int | None) -> Record:
        written = Record(key, 1 if revision is None else revision + 1, json.loads(json.dumps(dict(value))))
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(lease_key)"}
            if revision is None
            else {
                "ConditionExpression": "revision = :revision",
                "ExpressionAttributeValues": {":revision": {"N": str(revision)}},
            }
        )
        item = {
            "lease_key": {"S": RECORD_PREFIX + key},
            "revision": {"N": str(written.revision)},
            "record": {"S": json.dumps(written.value)},
            "heartbeat_ms": {"N": str(self._now_ms())},
        }
        try:
            self._call(
                "PutItem",
                self.client.put_item,
                TableName=self.table_name,
                Item=item,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **condition,
            )
        except _ConditionFailedError as failed:
            raise RecordChangedError(key, _record_of(failed.raw) if failed.raw else None) from None
        return written

    def load_records(self, prefix: str) -> list[Record]:
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table_name,
            ConsistentRead=True,
            FilterExpression="begins_with(lease_key, :prefix)",
            ExpressionAttributeValues={":prefix": {"S": RECORD_PREFIX + prefix}},
        )
        items = self._call("Scan", lambda: [item for page in pages for item in page.get("Items", [])])
        return sorted((_record_of(item) for item in items), key=lambda record: record.key)

    # --- one round's steps --------------------------------------------------------------------

    def _renew(self, table: str, stream_arn: str) -> set[str]:
        """Renew every lease we hold on the stream; return the keys dropped this round."""
        with self._lock:
            entries = [
                e for e in self._held.values() if (e.lease.table, e.lease.stream_arn) == (table, stream_arn)
            ]
        dropped: set[str] = set()
        for entry in entries:
            key = _key(entry.lease)
            age = self._clock() - entry.renewed_at
            if age > self.lease_seconds:
                self._drop(key, self._not_renewed(age))
                dropped.add(key)
            elif self._claim(entry.lease, self.worker_id, how=None) is None:
                dropped.add(key)
        return dropped

    def _steal_one(self, unfinished: list[Lease], held: set[str], expired: set[str], share: int) -> None:
        """Take one lease from the most loaded worker if it holds more than the share."""
        others = [
            lease
            for lease in unfinished
            if lease.owner not in (None, self.worker_id) and _key(lease) not in expired | held
        ]
        load = Counter(lease.owner for lease in others)
        if not load:
            return
        victim, count = min(load.items(), key=lambda item: (-item[1], item[0] or ""))
        if count <= share:
            return
        lease = self._rng.choice([lease for lease in others if lease.owner == victim])
        how = f"stolen from {victim}, who held {count} of a fair share of {share}"
        self._claim(lease, victim, how=how, lapse=None)  # the victim may have renewed just before

    def _claim(
        self, lease: Lease, expected_owner: str | None, *, how: str | None, lapse: float | None = None
    ) -> Lease | None:
        """Set us as owner and count + 1, conditional on the owner and counter we saw.

        ``how`` None means a renewal: failing it drops the lease with the new owner as the reason.
        ``lapse`` (a take only) is the latest time on our clock at which the previous owner could
        still have held the lease; None when unknown: then a lease period after this take succeeds,
        since the previous owner's last renewal was written before it. Our first write waits until
        ``lapse`` plus the margin.
        """
        owner_condition = _FREE if expected_owner is None else "#owner = :expected"
        values: dict[str, Any] = {":counter": {"N": str(lease.counter)}, ":unfinished": {"BOOL": False}}
        values[":next"] = {"N": str(lease.counter + 1)}
        if expected_owner is not None:
            values[":expected"] = {"S": expected_owner}
        key = _key(lease)
        sent_at = self._clock()  # before the request: the conservative start of the lease period
        try:
            taken = self._update(
                key,
                "SET #owner = :me, #counter = :next, heartbeat_ms = :hb",
                f"{owner_condition} AND #counter = :counter AND finished = :unfinished",
                values,
            )
        except _ConditionFailedError as failed:
            if how is None and not (failed.item and failed.item.finished):
                reason = _taken(failed.item)
                self._drop(key, reason)
                message = self._lost_message(lease, reason).partition(";")[0]
                log.warning("%s; stopping the shard", message, extra=_fields(lease))
            return None
        if lapse is None:
            lapse = self._clock() + self.lease_seconds
        with self._lock:
            before = self._held.get(key)
            if how is None and before is None:
                return None  # finished or released by a shard thread meanwhile: do not bring it back
            if how is None and before is not None:
                since, writable_at = before.taken_at_counter, before.writable_at
            else:
                since, writable_at = taken.counter, lapse + self.margin
            self._held[key] = _Held(taken, sent_at, since, writable_at)
            self._lost.pop(key, None)
        if how is not None:
            took = f"took lease of shard {lease.shard_id} of table {lease.table} ({how})"
            log.info("%s at checkpoint %s", took, taken.checkpoint, extra=_fields(lease))
        return taken

    # --- bookkeeping --------------------------------------------------------------------------

    def _owned(self, table: str, stream_arn: str) -> list[Lease]:
        with self._lock:
            leases = [
                entry.lease
                for entry in self._held.values()
                if (entry.lease.table, entry.lease.stream_arn) == (table, stream_arn)
            ]
        return sorted(leases, key=lambda lease: lease.shard_id)

    def _observe(self, table: str, stream_arn: str, leases: Iterable[Lease], now: float) -> None:
        """Remember when each (owner, counter) of the stream's leases was first seen."""
        with self._lock:
            stream = (table, stream_arn)
            kept = {key: seen for key, seen in self._seen.items() if seen.stream != stream}
            for lease in leases:
                if lease.owner is None:
                    continue  # free: nothing to expire
                key = _key(lease)
                seen = self._seen.get(key)
                if seen is None or (seen.owner, seen.counter) != (lease.owner, lease.counter):
                    seen = _Seen(stream, lease.owner, lease.counter, now)
                kept[key] = seen
            self._seen = kept

    def _expired(self, key: str, now: float) -> bool:
        with self._lock:
            seen = self._seen.get(key)
        return seen is not None and now - seen.since > self.lease_seconds

    def _expiry(self, key: str) -> float | None:
        """When a lease's current (owner, counter) expires on our clock; None if not watched."""
        with self._lock:
            seen = self._seen.get(key)
        return None if seen is None else seen.since + self.lease_seconds

    def _holding(self, lease: Lease) -> _Held:
        """Our entry for ``lease``, or ``LeaseLostError`` if this copy of it may not write."""
        key = _key(lease)
        with self._lock:
            entry = self._held.get(key)
            reason = self._lost.get(key, "was never acquired by this worker")
        if entry is not None and lease.counter < entry.taken_at_counter:
            reason = "was lost and taken again since this copy was acquired; only the newer copy may write"
            raise LeaseLostError(self._lost_message(lease, reason))
        if entry is None:
            raise LeaseLostError(self._lost_message(lease, reason))
        return entry

    def _drop(self, key: str, reason: str) -> None:
        with self._lock:
            entry = self._held.pop(key, None)
            if entry is not None:
                self._ended[key] = entry.renewed_at + self.lease_seconds
            self._lost[key] = reason

    def _not_renewed(self, age: float) -> str:
        return f"was not renewed for {age:.1f} s, longer than the lease period of {self.lease_seconds:g} s"

    def _lost_message(self, lease: Lease, reason: str) -> str:
        return (
            f"lost the lease of shard {lease.shard_id} of table {lease.table} "
            f"(lease table {self.table_name}, worker {self.worker_id}): it {reason}; "
            "stop writing for this shard, its next owner resumes from the last checkpoint"
        )

    def _now_ms(self) -> int:
        return int(self._wall() * 1000)

    def _update(self, key: str, expression: str, condition: str, values: dict[str, Any]) -> Lease:
        """One conditional UpdateItem of a lease; the lease as written, or ``_ConditionFailedError``."""
        text = expression + condition
        names = {name: name[1:] for name in ("#owner", "#counter", "#checkpoint") if name in text}
        values = {**values, ":me": {"S": self.worker_id}, ":hb": {"N": str(self._now_ms())}}
        response = self._call(
            "UpdateItem",
            self.client.update_item,
            TableName=self.table_name,
            Key={"lease_key": {"S": key}},
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        return _lease_of(response["Attributes"])

    def _scan(self, table: str, stream_arn: str | None = None) -> list[Lease]:
        """The leases of the table's stream (every stream of the table: ``stream_arn`` None)."""
        values = {":table": {"S": table}} | ({":arn": {"S": stream_arn}} if stream_arn else {})
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table_name,
            ConsistentRead=True,
            FilterExpression="#table = :table" + (" AND stream_arn = :arn" if stream_arn else ""),
            ExpressionAttributeNames={"#table": "table"},
            ExpressionAttributeValues=values,
        )
        items = self._call("Scan", lambda: [item for page in pages for item in page.get("Items", [])])
        return sorted((_lease_of(item) for item in items), key=lambda lease: lease.shard_id)

    def _call(self, operation: str, function: Callable[..., Any], **kwargs: Any) -> Any:
        """Run one DynamoDB call; a failed condition becomes ``_ConditionFailedError``, the rest ours."""
        try:
            return function(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                item: Any = exc.response.get("Item")
                lease = _lease_of(item) if item and "shard_id" in item else None
                raise _ConditionFailedError(lease, item) from exc
            raise translate(exc, operation, self.table_name) from exc
        except BotoCoreError as exc:
            raise translate(exc, operation, self.table_name) from exc


def _key(lease: Lease) -> str:
    return lease_key(lease.table, lease.shard_id)


def _fields(lease: Lease) -> dict[str, str]:
    return {"table": lease.table, "shard": lease.shard_id}


def _taken(item: Lease | None) -> str:
    if item is None:
        return "no longer exists in the lease table"
    if item.owner is None:
        return "has no owner now"
    return f"is now owned by worker {item.owner}"


def _record_of(item: Mapping[str, Any]) -> Record:
    return Record(
        key=item["lease_key"]["S"].removeprefix(RECORD_PREFIX),
        revision=int(item["revision"]["N"]),
        value=json.loads(item["record"]["S"]),
    )


def _lease_of(item: Mapping[str, Any]) -> Lease:
    return Lease(
        table=item["table"]["S"],
        stream_arn=item["stream_arn"]["S"],
        shard_id=item["shard_id"]["S"],
        parent_shard_ids=tuple(parent["S"] for parent in item.get("parent_shard_ids", {}).get("L", [])),
        owner=item["owner"]["S"] if "owner" in item else None,
        counter=int(item["counter"]["N"]),
        checkpoint=item["checkpoint"]["S"],
        finished=bool(item.get("finished", {}).get("BOOL", False)),
    )


def translate(exc: ClientError | BotoCoreError, operation: str, table_name: str) -> CdcsyncError:
    """One of our errors for a failed DynamoDB call, saying what to check (kinds: ``cdcsync.aws``)."""
    where = f"DynamoDB {operation} on lease table {table_name} failed"
    if error_code(exc) == "ResourceNotFoundException":
        return FatalError(f"{where}: the table does not exist (deleted?); restart the worker to create it")
    if isinstance(exc, ClientError) and error_kind(exc) == "transient":
        return TransientError(
            f"{where} after retries: {describe_failure(exc)} (throttled or unavailable; try again later)"
        )
    return aws_error(
        exc,
        call=where,
        resource="",
        permission=f"the role dynamodb:{operation} on table {table_name}",
    )
