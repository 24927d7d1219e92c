"""Each stand-in's own capacity: a tight client loop on one keep-alive connection.

    python bench/rig/selftest.py [--seconds 2]

Reported per stand-in: records (items, actions) per second of the stand-in's own CPU, which is what
it serves on one core, and the wall rate this client reached. GetRecords pages of 1,000 records,
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
from rig.processes import Served, cpu_seconds, stand_in

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
    arn = (
        served.get("/_rig/stats?table=selftest")
        and _call(connection, "DynamoDB_20120810.DescribeTable", {"TableName": "selftest"})["Table"][
            "LatestStreamArn"
        ]
    )
    shard = _call(connection, f"{STREAMS}.DescribeStream", {"StreamArn": arn})["StreamDescription"]["Shards"][
        0
    ]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with stand_in("streams_scan") as streams, stand_in("bulk_sink") as sink:
        result = {
            "streams_scan": streams_capacity(streams, args.seconds),
            "bulk_sink": sink_capacity(sink, args.seconds),
        }
    print(json.dumps(result, indent=2))


__all__ = ["cpu_seconds", "sink_capacity", "streams_capacity"]

if __name__ == "__main__":
    main()
