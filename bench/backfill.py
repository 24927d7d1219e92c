"""Backfill throughput: cdcsync backfill vs a naive single-threaded scan + helpers.bulk, same run.

    .venv/bin/python bench/backfill.py [--items 100000] [--segments N] [--load-threads 8]

One moto_server holds a table of ``--items`` user profiles (loaded with BatchWriteItem from
parallel threads); one osmem-server receives the documents. Measured in this order, each alone:

- bare scan: a single-threaded Scan of the whole table that does nothing with the items, the
  floor any backfill pays to moto (if it is close to the others, moto is the bound);
- naive: the loop most teams write: one Scan after another, TypeDeserializer, ``json.dumps`` with a
  default for Decimal and sets, ``opensearchpy.helpers.bulk`` per page, no versions;
- cdcsync: ``run_backfill`` (parallel segments, the stream pipeline, versions, checkpoints per page).

Reported per phase: items/s and the peak resident set size of this process while the phase ran
(sampled from /proc/self/statm every 20 ms), so the table loader's memory does not count.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from opensearchpy import OpenSearch, helpers

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]  # tests.support is not installed: run from a checkout

from cdcsync.backfill import run_backfill  # noqa: E402
from cdcsync.backfill.scan import default_segments  # noqa: E402
from cdcsync.settings import load_settings  # noqa: E402
from tests.support.servers import moto_server, osmem_server  # noqa: E402

TABLE = "BenchUsers"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def item(number: int) -> dict[str, Any]:
    """A user profile of ~250 bytes."""
    return {
        "UserId": f"user-{number:08d}",
        "Username": f"name{number}",
        "Email": f"user{number}@example.com",
        "Age": Decimal(18 + number % 60),
        "Score": Decimal(f"{number % 1000}.{number % 97:02d}"),
        "Tags": {"a", f"t{number % 13}"},
        "Profile": {"City": f"city{number % 500}", "Visits": Decimal(number), "Active": number % 2 == 0},
    }


def load(dynamodb: Any, count: int, threads: int) -> float:
    def put(start: int) -> None:
        request: Any = {
            TABLE: [
                {"PutRequest": {"Item": {k: _serializer.serialize(v) for k, v in item(n).items()}}}
                for n in range(start, min(count, start + 25))
            ]
        }
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(0, count, 25)))
    return time.perf_counter() - started


def scan_pages(dynamodb: Any) -> Iterator[list[dict[str, Any]]]:
    request: dict[str, Any] = {"TableName": TABLE}
    while True:
        answer = dynamodb.scan(**request)
        yield answer["Items"]
        if "LastEvaluatedKey" not in answer:
            return
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(type(value).__name__)


def naive(dynamodb: Any, opensearch: OpenSearch) -> int:
    written = 0
    for page in scan_pages(dynamodb):
        actions = []
        for raw in page:
            plain = {k: _deserializer.deserialize(v) for k, v in raw.items()}
            source = json.loads(json.dumps(plain, default=_plain))
            actions.append({"_index": "naive", "_id": plain["UserId"], "_source": source})
        ok, _ = helpers.bulk(opensearch, actions, chunk_size=1000)
        written += ok
    return written


def bare(dynamodb: Any) -> int:
    return sum(len(page) for page in scan_pages(dynamodb))


class PeakRss:
    """The highest resident set size of this process while the block runs."""

    def __enter__(self) -> PeakRss:
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


def measure(name: str, count: int, run: Callable[[], int]) -> tuple[str, float, float, int]:
    started = time.perf_counter()
    with PeakRss() as rss:
        done = run()
    seconds = time.perf_counter() - started
    if done != count:
        raise SystemExit(f"{name}: expected {count} items, got {done}")
    print(f"  {name}: {count / seconds:,.0f} items/s, {seconds:.1f} s, peak RSS {rss.peak / 2**20:.0f} MB")
    return name, count / seconds, seconds, rss.peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--segments", type=int, help="default: cdcsync's choice for the table size")
    parser.add_argument("--load-threads", type=int, default=8)
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - fake credentials for moto
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
    )
    with moto_server() as moto_url, osmem_server() as opensearch_url, tempfile.TemporaryDirectory() as tmp:
        os.environ["AWS_ENDPOINT_URL"] = moto_url
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "UserId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "UserId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        print(f"loading {args.items:,} items with {args.load_threads} threads ...", flush=True)
        print(f"  load: {args.items / load(dynamodb, args.items, args.load_threads):,.0f} items/s")
        opensearch = OpenSearch(hosts=[opensearch_url], timeout=120)
        for index in ("naive", "cdcsync"):
            opensearch.indices.create(index=index, body={"mappings": {"dynamic": False}})
        mapping = Path(tmp) / "bench.yaml"
        mapping.write_text(f'table: {TABLE}\nindex: cdcsync\nid: "{{UserId}}"\n')
        settings = load_settings(
            mappings=mapping,
            opensearch_url=opensearch_url,
            dlq=f"file://{tmp}/dlq.jsonl",
            checkpoints=f"file://{tmp}/checkpoints.json",
            _env_file=None,
        )
        described = dynamodb.describe_table(TableName=TABLE)["Table"]
        segments = args.segments or default_segments(described["TableSizeBytes"], described["ItemCount"])

        def cdcsync() -> int:
            report = run_backfill(
                settings, TABLE, segments=segments, session=boto3.Session(), out=io.StringIO()
            )
            return report.written

        results = [
            measure("bare scan (moto alone)", args.items, lambda: bare(dynamodb)),
            measure("naive scan + helpers.bulk", args.items, lambda: naive(dynamodb, opensearch)),
            measure(f"cdcsync backfill ({segments} segments)", args.items, cdcsync),
        ]
    naive_rate = results[1][1]
    print(f"\n| {args.items:,} items | items/s | seconds | peak RSS | vs naive |")
    print("|---|---:|---:|---:|---:|")
    for name, rate, seconds, peak in results:
        print(f"| {name} | {rate:,.0f} | {seconds:.1f} | {peak / 2**20:.0f} MB | {rate / naive_rate:.2f}x |")


if __name__ == "__main__":
    main()
