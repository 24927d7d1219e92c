"""CPU per record of reading GetRecords and Scan pages: botocore's parser vs FastReads, same run.

    .venv/bin/python bench/wire.py [--records 1000] [--pages 20]

One GetRecords page (MODIFY records with both images, real AWS's shape: epoch-number times,
base64 binaries) and one Scan page of as many items are answered from memory by a stand-in HTTP
session, so no network or server is measured: each call is signed, sent to the stand-in and parsed,
by a plain boto3 client and by the same client behind ``FastReads``. "read" is the call alone;
"+ convert" adds what cdcsync does next (``parse_record`` and both images to plain values for a
record; ``image_to_plain`` for an item). CPU time (``time.process_time``), the median page of
``--pages`` (the two paths in turn) after a warm-up, in µs per record; the ratio is botocore's
over FastReads'.
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import orjson
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config

from cdcsync.change import parse_record
from cdcsync.source.fast_reads import FastReads
from cdcsync.values import image_to_plain

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2026-11-28T09:00:00.000"
ENDPOINT = "http://127.0.0.1:1"


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self.body


class MemoryHttp:
    """A client's HTTP session that answers every request with one body from memory."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def send(self, request: AWSPreparedRequest) -> AWSResponse:
        return AWSResponse(request.url, 200, {"x-amzn-RequestId": "bench"}, _Body(self.body))


def item(rng: random.Random, n: int) -> dict[str, Any]:
    """A user profile of 13 attributes in DynamoDB JSON: strings, numbers, a set, a map, a list, binary."""
    return {
        "UserId": {"S": f"user-{n:07d}"},
        "Username": {"S": f"user_{n}"},
        "Email": {"S": f"user{n}@example.com"},
        "FirstName": {"S": rng.choice(["Ada", "Grace", "Alan", "Edsger", "Barbara"])},
        "Status": {"S": rng.choice(["active", "active", "suspended"])},
        "Age": {"N": str(rng.randint(18, 90))},
        "Balance": {"N": f"{rng.randint(0, 100000)}.{rng.randint(0, 99):02d}"},
        "Verified": {"BOOL": rng.random() < 0.8},
        "Avatar": {"B": base64.b64encode(rng.randbytes(24)).decode()},
        "Profile": {
            "M": {
                "Bio": {"S": "x" * rng.randint(10, 80)},
                "Location": {"M": {"City": {"S": "Berlin"}, "Country": {"S": "DE"}}},
                "Followers": {"N": str(rng.randint(0, 10**6))},
            }
        },
        "Logins": {"L": [{"N": str(rng.randint(1_600_000_000, 1_700_000_000))} for _ in range(3)]},
        "Tags": {"SS": sorted({f"tag{rng.randint(0, 50)}" for _ in range(3)})},
        "Nothing": {"NULL": True},
    }


def get_records_page(count: int) -> bytes:
    rng = random.Random(7)
    records = []
    for n in range(count):
        new, old = item(rng, n), item(rng, n)
        records.append(
            {
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1.7953536e9 + n // 100,
                    "Keys": {"UserId": new["UserId"]},
                    "NewImage": new,
                    "OldImage": old,
                    "SequenceNumber": str(300000000000000499659 + n),
                    "SizeBytes": 600,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "eventID": f"{n:032x}",
                "eventName": "MODIFY",
                "eventSource": "aws:dynamodb",
                "eventVersion": "1.1",
            }
        )
    return orjson.dumps({"Records": records, "NextShardIterator": "arn|1|AAAA"})


def scan_page(count: int) -> bytes:
    rng = random.Random(11)
    items = [item(rng, n) for n in range(count)]
    return orjson.dumps(
        {
            "Items": items,
            "Count": count,
            "ScannedCount": count,
            "LastEvaluatedKey": {"UserId": items[-1]["UserId"]},
            "ConsumedCapacity": {"TableName": "Users", "CapacityUnits": 128.5},
        }
    )


def client(service: str, body: bytes) -> Any:
    made: Any = boto3.Session(
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",  # noqa: S106 - signs requests for a stand-in that sends nothing
    ).client(
        service,  # type: ignore[call-overload]
        endpoint_url=ENDPOINT,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    made._endpoint.http_session = MemoryHttp(body)
    return made


def cpu_per_record(slow: Callable[[], int], fast: Callable[[], int], pages: int) -> tuple[float, float]:
    """Median CPU µs per record of each page reader over ``pages`` calls, the two taken in turn so
    that a busy machine weighs on both alike (each returns its page's record count)."""
    slow()  # warm-up
    fast()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(pages):
        for page, into in ((slow, samples[0]), (fast, samples[1])):
            started = time.process_time()
            count = page()
            into.append((time.process_time() - started) / count * 1e6)
    return statistics.median(samples[0]), statistics.median(samples[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="records (items) per page")
    parser.add_argument("--pages", type=int, default=20, help="pages timed per path")
    args = parser.parse_args()

    streams_body = get_records_page(args.records)
    scan_body = scan_page(args.records)
    readers = {
        "botocore": (client("dynamodbstreams", streams_body), client("dynamodb", scan_body)),
        "fast": (
            FastReads(client("dynamodbstreams", streams_body)),
            FastReads(client("dynamodb", scan_body)),
        ),
    }

    def get_records(streams: Any, convert: bool) -> Callable[[], int]:
        def page() -> int:
            records = streams.get_records(ShardIterator="it", Limit=1000)["Records"]
            if convert:
                for raw in records:
                    change = parse_record(raw, stream_arn=ARN)
                    change.new_image  # noqa: B018 - converted on first use
                    change.old_image  # noqa: B018
            return len(records)

        return page

    def scan(dynamodb: Any, convert: bool) -> Callable[[], int]:
        def page() -> int:
            items = dynamodb.scan(TableName="Users")["Items"]
            if convert:
                for one in items:
                    image_to_plain(one)
            return len(items)

        return page

    print(f"{args.records} records per page, median of {args.pages} pages, CPU µs per record")
    print(f"{'':28} {'botocore':>10} {'fast':>10} {'ratio':>8}")
    for name, make, which in (("GetRecords", get_records, 0), ("Scan", scan, 1)):
        for convert in (False, True):
            label = f"{name} {'read + convert' if convert else 'read'}"
            slow, fast = cpu_per_record(
                make(readers["botocore"][which], convert), make(readers["fast"][which], convert), args.pages
            )
            print(f"{label:28} {slow:10.1f} {fast:10.1f} {slow / fast:7.1f}x")


if __name__ == "__main__":
    main()
