"""Each stand-in's own capacity: a tight client loop on one keep-alive connection.

    python bench/rig/selftest.py [--seconds 2]

First the answers are checked (Scan segments cover every item once, GetRecords pages keep
order, ``_bulk`` applies and refuses versions as OpenSearch does). Reported per stand-in: records
(items, actions) per second of the stand-in's own CPU, which is what it serves on one core, and
the wall rate this client reached. GetRecords pages of 1,000 records,
Scan pages of 1 MB, ``_bulk`` requests of 1,000 cdcsync-shaped actions (``external_gte``, every
round a newer version, so every action is applied and stored).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rig.dataset import generate, plain_item
from rig.processes import Served, stand_in

STREAMS = "DynamoDBStreams_20120810"


def _connection(url: str) -> http.client.HTTPConnection:
    split = urlsplit(url)
    return http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=30)


def _call(connection: http.client.HTTPConnection, target: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"}
    connection.request("POST", "/", orjson.dumps(body), headers)
    answer: dict[str, Any] = orjson.loads(connection.getresponse().read())
    return answer


def _rate(served: Served, seconds: float, one_round: Any) -> dict[str, float]:
    """Run ``one_round()`` (returns the records it moved) for ``seconds``: per server CPU s, per wall s."""
    cpu, wall, moved = served.cpu_seconds(), time.perf_counter(), 0
    while time.perf_counter() - wall < seconds:
        moved += one_round()
    cpu, wall = served.cpu_seconds() - cpu, time.perf_counter() - wall
    return {"per_cpu_second": moved / cpu if cpu > 0 else float("inf"), "per_second": moved / wall}


def streams_capacity(served: Served, seconds: float) -> dict[str, dict[str, float]]:
    """GetRecords records/s and Scan items/s of a ``streams_scan`` stand-in."""
    served.post("/_rig/tables", {"names": ["selftest"], "shards": 1, "records": 20_000, "items": 20_000})
    connection = _connection(served.url)
    table = _call(connection, "DynamoDB_20120810.DescribeTable", {"TableName": "selftest"})["Table"]
    arn = table["LatestStreamArn"]
    description = _call(connection, f"{STREAMS}.DescribeStream", {"StreamArn": arn})["StreamDescription"]
    shard = description["Shards"][0]

    def read_shard() -> int:
        request = {"StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}
        iterator, moved = _call(connection, f"{STREAMS}.GetShardIterator", request)["ShardIterator"], 0
        while True:
            page = _call(connection, f"{STREAMS}.GetRecords", {"ShardIterator": iterator, "Limit": 1000})
            if not page["Records"]:
                return moved
            moved, iterator = moved + len(page["Records"]), page["NextShardIterator"]

    def scan_table() -> int:
        request: dict[str, Any] = {"TableName": "selftest"}
        moved = 0
        while True:
            page = _call(connection, "DynamoDB_20120810.Scan", request)
            moved += page["Count"]
            if "LastEvaluatedKey" not in page:
                return moved
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    return {"get_records": _rate(served, seconds, read_shard), "scan": _rate(served, seconds, scan_table)}


def sink_capacity(served: Served, seconds: float) -> dict[str, float]:
    """``_bulk`` actions/s of a ``bulk_sink`` stand-in (1,000 versioned index actions per request)."""
    table = generate("selftest", shards=0, records=0, items=1000)
    sources = [orjson.dumps(plain_item(orjson.loads(blob))) for blob in table.items]
    connection = _connection(served.url)
    version = [1_700_000_000_000]

    def one_request() -> int:
        version[0] += 1000
        lines = []
        for number, source in enumerate(sources):
            meta = {"index": {"_id": str(number), "version": version[0], "version_type": "external_gte"}}
            lines += [orjson.dumps(meta), source]
        connection.request(
            "POST", "/selftest/_bulk", b"\n".join(lines) + b"\n", {"Content-Type": "application/json"}
        )
        answer = orjson.loads(connection.getresponse().read())
        if answer["errors"]:
            raise RuntimeError(f"bulk_sink refused its own self-test: {answer['items'][0]}")
        return len(sources)

    return _rate(served, seconds, one_request)


def check_streams(served: Served) -> None:
    """The stand-in's answers are right: every segment split covers each item once, pages keep order."""
    served.post("/_rig/tables", {"names": ["check"], "shards": 3, "records": 3000, "items": 3000})
    connection = _connection(served.url)
    for total in (1, 3, 8):
        seen: list[str] = []
        for segment in range(total):
            request: dict[str, Any] = {
                "TableName": "check",
                "Segment": segment,
                "TotalSegments": total,
                "Limit": 97,
            }
            while True:
                page = _call(connection, "DynamoDB_20120810.Scan", request)
                seen += [item["Id"]["S"] for item in page["Items"]]
                if "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if len(seen) != 3000 or len(set(seen)) != 3000:
            raise RuntimeError(
                f"streams_scan: {total} segments returned {len(seen)} items, {len(set(seen))} distinct"
            )
    arn = _call(connection, "DynamoDB_20120810.DescribeTable", {"TableName": "check"})["Table"][
        "LatestStreamArn"
    ]
    records = 0
    for shard in _call(connection, f"{STREAMS}.DescribeStream", {"StreamArn": arn})["StreamDescription"][
        "Shards"
    ]:
        request = {"StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}
        iterator, last = _call(connection, f"{STREAMS}.GetShardIterator", request)["ShardIterator"], 0
        while True:
            page = _call(connection, f"{STREAMS}.GetRecords", {"ShardIterator": iterator, "Limit": 333})
            numbers = [int(record["dynamodb"]["SequenceNumber"]) for record in page["Records"]]
            if numbers != sorted(numbers) or (numbers and numbers[0] <= last):
                raise RuntimeError(f"streams_scan: shard {shard['ShardId']} answered records out of order")
            if not numbers:
                break
            records, last, iterator = records + len(numbers), numbers[-1], page["NextShardIterator"]
    if records != 3000:
        raise RuntimeError(f"streams_scan: the shards held {records} records, not 3000")


def check_sink(served: Served) -> None:
    """The sink applies external versions as OpenSearch does: a sink that accepts anything proves nothing."""
    connection = _connection(served.url)
    steps = [  # (action, version, version_type, status wanted)
        ("index", 2, "external_gte", 201),
        ("index", 1, "external_gte", 409),
        ("index", 2, "external_gte", 200),
        ("index", 2, "external", 409),
        ("delete", 3, "external_gte", 200),
        ("index", 2, "external_gte", 409),
        ("delete", 9, "external_gte", 404),
        ("create", 10, "external_gte", 201),
        ("create", 11, "external_gte", 409),
    ]
    for op, version, kind, wanted in steps:
        meta = orjson.dumps({op: {"_id": "d", "version": version, "version_type": kind}})
        body = meta + b"\n" + (b"" if op == "delete" else b'{"v":%d}\n' % version)
        connection.request("POST", "/check/_bulk", body, {"Content-Type": "application/json"})
        ((got,),) = [item.values() for item in orjson.loads(connection.getresponse().read())["items"]]
        if got["status"] != wanted:
            raise RuntimeError(f"bulk_sink: {op} at {kind} {version} answered {got['status']}, not {wanted}")
    state = served.get("/_rig/state?index=check")["docs"]
    if state != {"d": {"version": 10, "at": state["d"]["at"], "source": {"v": 10}}}:
        raise RuntimeError(f"bulk_sink: state after the checks is {state}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with stand_in("streams_scan") as streams, stand_in("bulk_sink") as sink:
        check_streams(streams)
        check_sink(sink)
        result = {
            "streams_scan": streams_capacity(streams, args.seconds),
            "bulk_sink": sink_capacity(sink, args.seconds),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
