"""A stand-in DynamoDB + DynamoDB Streams endpoint serving generated tables from memory.

    python bench/rig/streams_scan.py [--latency-ms 20] [--records-latency-ms 0]

JSON protocol over HTTP, dispatched on ``X-Amz-Target`` (SigV4 headers are accepted, not checked):
DescribeTable, ListStreams, DescribeStream (pages of ``Limit`` shards, ``ExclusiveStartShardId``),
GetShardIterator (TRIM_HORIZON, LATEST, AT_/AFTER_SEQUENCE_NUMBER), GetRecords (``Limit`` <= 1000
and 1 MB), Scan (``Segment``/``TotalSegments`` over equal ranges of the key hash,
``ExclusiveStartKey``, ``Limit``, 1 MB pages, ``ReturnConsumedCapacity``). Pages are joined from
pre-serialised records and items. ``--latency-ms`` is slept (no CPU) before each Scan answer,
``--records-latency-ms`` before each GetRecords answer; a table's spec may set its own.

The rig's own endpoints (JSON):
- ``POST /_rig/tables`` ``{"names": [...], "shards", "records", "items", "seed", "per_second",
  "scan_latency_ms", "records_latency_ms", "closed_shards", "live": {"rate", "seconds"}}``: one
  generated dataset behind every name (each name counts its own reads); closed shards have an
  ``EndingSequenceNumber`` and their last page no ``NextShardIterator``;
- ``POST /_rig/start?table=T``: a live table starts appending INSERTs of new keys at ``rate``
  records/s for ``seconds``, created now (whole seconds), the put time of each kept;
- ``GET /_rig/stats?table=T``: records served, shards read, first/last read times (epoch s);
- ``GET /_rig/expected?table=T``: ``{id: document}``, the index's expected final state;
- ``GET /_rig/puts?table=T``: ``{id: put time}`` of a live table.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rig.dataset import KEY, Table, append_live, generate
from rig.serving import Reply, Request, json_reply, serve

MAX_RECORDS = 1000
PAGE_BYTES = 1 << 20
SHARDS_PER_PAGE = 100
LIVE_TICK = 0.01


def aws_error(code: str, message: str, status: int = 400) -> Reply:
    return json_reply({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}, status)


@dataclass
class Reads:
    """What one table name served: records, the shards read, first and last read with records."""

    records: int = 0
    scanned_items: int = 0
    requests: int = 0
    shards_read: set[int] = field(default_factory=set)
    first_at: float | None = None
    last_at: float | None = None

    def served(self, count: int) -> None:
        now = time.time()
        if count:
            self.first_at = self.first_at or now
            self.last_at = now


@dataclass
class Entry:
    table: Table
    reads: Reads
    scan_delay: float
    records_delay: float
    live: dict[str, float] | None = None
    started: bool = False


class StreamsScan:
    def __init__(self, scan_latency_ms: float = 0.0, records_latency_ms: float = 0.0) -> None:
        self.scan_delay = scan_latency_ms / 1000
        self.records_delay = records_latency_ms / 1000
        self.tables: dict[str, Entry] = {}
        self.by_arn: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- dispatch ---------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        if request.path.startswith("/_rig/"):
            return self._rig(request)
        target = request.headers.get("x-amz-target", "")
        operation = target.rpartition(".")[2]
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            print(f"streams_scan: unsupported operation {target!r}", file=sys.stderr, flush=True)
            return aws_error("UnknownOperationException", f"the rig does not implement {target}")
        return handler(orjson.loads(request.body or b"{}"))

    def _entry(self, name: str) -> Entry | None:
        return self.tables.get(name)

    # --- DynamoDB ---------------------------------------------------------------------------------

    def op_DescribeTable(self, body: dict[str, Any]) -> Reply:  # noqa: N802 - the operation's name
        entry = self._entry(body.get("TableName", ""))
        if entry is None:
            return aws_error("ResourceNotFoundException", f"Requested resource not found: Table: {body}")
        table = entry.table
        return json_reply(
            {
                "Table": {
                    "TableName": table.name,
                    "TableArn": table.arn,
                    "TableStatus": "ACTIVE",
                    "CreationDateTime": table.created,
                    "KeySchema": [{"AttributeName": KEY, "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": KEY, "AttributeType": "S"}],
                    "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
                    "ItemCount": len(table.items),
                    "TableSizeBytes": table.size_bytes(),
                    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
                    "LatestStreamArn": table.stream_arn,
                    "LatestStreamLabel": table.stream_label,
                }
            }
        )

    def op_Scan(self, body: dict[str, Any]) -> Reply:  # noqa: N802
        entry = self._entry(body.get("TableName", ""))
        if entry is None:
            return aws_error("ResourceNotFoundException", "Requested resource not found")
        table = entry.table
        total = int(body.get("TotalSegments", 1))
        segment = int(body.get("Segment", 0))
        low = bisect.bisect_left(table.item_hashes, (segment << 32) // total)
        high = bisect.bisect_left(table.item_hashes, ((segment + 1) << 32) // total)
        start = low
        if "ExclusiveStartKey" in body:
            start = max(low, table.positions[body["ExclusiveStartKey"][KEY]["S"]] + 1)
        end = _page_end(table.item_ends, start, min(high, start + int(body.get("Limit") or high)))
        before = table.item_ends[start - 1] if start else 0
        page = b",".join(table.items[start:end])
        parts = [b'{"Items":[', page, b'],"Count":%d,"ScannedCount":%d' % (end - start, end - start)]
        if end < high:
            parts.append(b',"LastEvaluatedKey":' + orjson.dumps({KEY: {"S": table.item_keys[end - 1]}}))
        if body.get("ReturnConsumedCapacity", "NONE") != "NONE":
            units = ((table.item_ends[end - 1] if end > start else before) - before) / 4096 / 2
            parts.append(
                b',"ConsumedCapacity":' + orjson.dumps({"TableName": table.name, "CapacityUnits": units})
            )
        parts.append(b"}")
        with self._lock:
            entry.reads.scanned_items += end - start
            entry.reads.requests += 1
            entry.reads.served(max(1, end - start))
        return Reply(200, b"".join(parts), "application/x-amz-json-1.0", entry.scan_delay)

    # --- DynamoDB Streams -------------------------------------------------------------------------

    def op_ListStreams(self, body: dict[str, Any]) -> Reply:  # noqa: N802
        names = [body["TableName"]] if body.get("TableName") else list(self.tables)
        streams = [
            {"StreamArn": e.table.stream_arn, "TableName": name, "StreamLabel": e.table.stream_label}
            for name in names
            if (e := self._entry(name)) is not None
        ]
        return json_reply({"Streams": streams})

    def _by_arn(self, arn: str) -> Entry | None:
        return self._entry(arn.split("/")[1]) if arn.count("/") >= 3 else None

    def op_DescribeStream(self, body: dict[str, Any]) -> Reply:  # noqa: N802
        entry = self._by_arn(body.get("StreamArn", ""))
        if entry is None or entry.table.stream_arn != body["StreamArn"]:
            return aws_error(
                "ResourceNotFoundException", f"Requested resource not found: {body.get('StreamArn')}"
            )
        table = entry.table
        ids = [shard.shard_id for shard in table.shards]
        first = (
            bisect.bisect_right(ids, body["ExclusiveStartShardId"])
            if body.get("ExclusiveStartShardId")
            else 0
        )
        last = min(len(ids), first + min(SHARDS_PER_PAGE, int(body.get("Limit", SHARDS_PER_PAGE))))
        shards = []
        for shard in table.shards[first:last]:
            numbers = shard.sequence_numbers
            start = numbers[0] if numbers else shard.next_sequence
            numbers_range = {"StartingSequenceNumber": str(start)}
            if shard.closed and numbers:
                numbers_range["EndingSequenceNumber"] = str(numbers[-1])
            shards.append({"ShardId": shard.shard_id, "SequenceNumberRange": numbers_range})
        description: dict[str, Any] = {
            "StreamArn": table.stream_arn,
            "StreamLabel": table.stream_label,
            "StreamStatus": "ENABLED",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "CreationRequestDateTime": table.created,
            "TableName": table.name,
            "KeySchema": [{"AttributeName": KEY, "KeyType": "HASH"}],
            "Shards": shards,
        }
        if last < len(ids):
            description["LastEvaluatedShardId"] = ids[last - 1]
        return json_reply({"StreamDescription": description})

    def op_GetShardIterator(self, body: dict[str, Any]) -> Reply:  # noqa: N802
        entry = self._by_arn(body.get("StreamArn", ""))
        ids = [s.shard_id for s in entry.table.shards] if entry else []
        if entry is None or body.get("ShardId") not in ids:
            return aws_error(
                "ResourceNotFoundException", f"Requested resource not found: {body.get('ShardId')}"
            )
        number = ids.index(body["ShardId"])
        numbers = entry.table.shards[number].sequence_numbers
        kind = body["ShardIteratorType"]
        if kind == "TRIM_HORIZON":
            position = 0
        elif kind == "LATEST":
            position = len(numbers)
        elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            find = bisect.bisect_left if kind == "AT_SEQUENCE_NUMBER" else bisect.bisect_right
            position = find(numbers, int(body["SequenceNumber"]))
        else:
            return aws_error("ValidationException", f"ShardIteratorType {kind} is not supported")
        return json_reply({"ShardIterator": f"{entry.table.name}|{number}|{position}"})

    def op_GetRecords(self, body: dict[str, Any]) -> Reply:  # noqa: N802
        name, _, rest = body.get("ShardIterator", "").partition("|")
        entry = self._entry(name)
        if entry is None or not rest:
            return aws_error("ValidationException", "Invalid ShardIterator")
        number, position = (int(part) for part in rest.split("|"))
        shard = entry.table.shards[number]
        available = len(shard.sequence_numbers)  # appended last: the records below it are whole
        limit = int(body.get("Limit", MAX_RECORDS))
        if not 1 <= limit <= MAX_RECORDS:
            return aws_error("ValidationException", f"Limit must be between 1 and {MAX_RECORDS}, got {limit}")
        end = _page_end(shard.ends, position, min(available, position + limit))
        page = b'{"Records":[' + b",".join(shard.records[position:end]) + b"]"
        if not (shard.closed and end == available):
            page += b',"NextShardIterator":"' + f"{name}|{number}|{end}".encode() + b'"'
        page += b"}"
        with self._lock:
            reads = entry.reads
            reads.records += end - position
            reads.requests += 1
            reads.shards_read.add(number)
            reads.served(end - position)
        return Reply(200, page, "application/x-amz-json-1.0", entry.records_delay)

    # --- the rig's own endpoints ------------------------------------------------------------------

    def _rig(self, request: Request) -> Reply:
        action = request.path.removeprefix("/_rig/")
        if action == "tables":
            return json_reply(self.create(orjson.loads(request.body)))
        entry = self._entry(request.query.get("table", ""))
        answers: dict[str, Callable[[Entry], object]] = {
            "start": self.start,
            "stats": self.stats,
            "expected": lambda entry: entry.table.final,
            "puts": lambda entry: entry.table.puts,
        }
        if entry is None or action not in answers:
            return json_reply(
                {"error": f"no table {request.query.get('table')!r} or endpoint {action!r}"}, 404
            )
        return json_reply(answers[action](entry))

    def stats(self, entry: Entry) -> dict[str, Any]:
        reads, live = entry.reads, entry.live or {}
        return {
            "records": reads.records,
            "scanned_items": reads.scanned_items,
            "requests": reads.requests,
            "shards_read": len(reads.shards_read),
            "shards": len(entry.table.shards),
            "total_records": entry.table.records,
            "items": len(entry.table.items),
            "first_at": reads.first_at,
            "last_at": reads.last_at,
            "live_done": bool(live.get("done")),
            "live_achieved": live.get("achieved"),
        }

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        started = time.process_time()
        names = spec["names"]
        live = spec.get("live")
        first: Table | None = None
        for name in names:
            if first is None or live:
                table = generate(
                    name,
                    shards=int(spec.get("shards", 1)),
                    records=0 if live else int(spec.get("records", 0)),
                    items=int(spec.get("items", 0)),
                    seed=int(spec.get("seed", 1)),
                    per_second=int(spec.get("per_second", 50)),
                )
                first = table
            else:  # the same data behind every name (read only); each name counts its own reads
                table = dataclasses.replace(first, name=name)
            for shard in table.shards:
                shard.closed = bool(spec.get("closed_shards"))
            scan = spec.get("scan_latency_ms")
            records = spec.get("records_latency_ms")
            self.tables[name] = Entry(
                table,
                Reads(),
                self.scan_delay if scan is None else scan / 1000,
                self.records_delay if records is None else records / 1000,
                dict(live) if live else None,
            )
        return {"names": names, "cpu_s": time.process_time() - started}

    def start(self, entry: Entry) -> dict[str, Any]:
        if entry.live is None or entry.started:
            return {"started": False}
        entry.started = True
        threading.Thread(target=self._append, args=(entry,), daemon=True).start()
        return {"started": True}

    def _append(self, entry: Entry) -> None:
        live = entry.live
        assert live is not None
        rate, seconds = float(live["rate"]), float(live["seconds"])
        rng, next_key, owed = random.Random(7), 0, 0.0
        began = time.monotonic()
        ticks = round(seconds / LIVE_TICK)
        for tick in range(ticks):
            owed += rate * LIVE_TICK
            count = int(owed)
            owed -= count
            next_key = append_live(entry.table, rng, count, next_key)
            delay = began + (tick + 1) * LIVE_TICK - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        live["done"] = 1.0
        live["achieved"] = next_key / (time.monotonic() - began)


def _page_end(ends: list[int], start: int, end: int) -> int:
    """The end of a page from ``start``: at most ``end``, at most 1 MB, at least one entry."""
    if end <= start:
        return start
    before = ends[start - 1] if start else 0
    return max(start + 1, bisect.bisect_right(ends, before + PAGE_BYTES, start, end))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=0.0, help="slept before each Scan answer")
    parser.add_argument(
        "--records-latency-ms", type=float, default=0.0, help="slept before each GetRecords answer"
    )
    args = parser.parse_args()
    serve(StreamsScan(args.latency_ms, args.records_latency_ms))


if __name__ == "__main__":
    main()
