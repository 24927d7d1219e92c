"""Container worker end to end: `cdcsync run` vs a naive GetRecords loop, same run, local servers.

    .venv/bin/python bench/worker_e2e.py [--rates 25,50,100,200] [--seconds 60] [--backlog 20000]

One moto_server (DynamoDB + Streams) and one osmem-server (OpenSearch stand-in) on loopback. For
each rate, a fresh table with a NEW_AND_OLD_IMAGES stream gets a steady load of new user profiles
(one ``batch_write_item`` every 50 ms holding rate/20 items, or ``--put-mode single``: one
``put_item`` per item from a thread pool), read at the same time by two consumers, each into its
own index: ``cdcsync run`` as a real subprocess (file checkpoints in a temp dir, metrics on a free
port), and the naive loop most teams write (this file with ``--naive``: one process, GetRecords on
the single shard, TypeDeserializer, one ``client.index`` per record, no versions, 0.25 s sleep on
an empty page).

Reported per rate and consumer:
- achieved put rate (the generator must keep up, or the rate says nothing about the consumers);
- p50/p99 latency from the write call returning to the document being retrievable by id: the
  first item of every 50 ms tick is sampled and one ``mget`` (no _source) per index every 25 ms
  asks for the pending ones, so the poller costs ~40 small requests/s per index. A realtime GET
  sees a document before a refresh; on a real cluster ``_search`` adds up to refresh_interval.
  Samples from the first ``--warmup`` seconds are left out (an idle reader backs off to 2 s);
- max lag: cdcsync's ``cdcsync_replication_lag_seconds`` and ``cdcsync_iterator_age_seconds``
  scraped every second (now minus the last read record's creation time); for the naive loop the
  same quantity, computed after each page is indexed;
- sustained: achieved >= 95 % of the target, max lag < 5 s, every sample arrived.
Then the backlog: ``--backlog`` items written with both consumers stopped, both started together,
RSS (VmRSS) of each process sampled every second until the last item is in its index or
``--drain-seconds`` pass; peak and final RSS and the drain rate. Targets are printed, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from opensearchpy import OpenSearch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # tests.support is not installed: run from a checkout

from tests.support.servers import free_port, moto_server, osmem_server  # noqa: E402
from transform import profile  # noqa: E402 - bench/transform.py

TICK = 0.05  # the generator writes every 50 ms; the first item of each tick is a latency sample
POLL = 0.025  # latency poller period
LAG_LIMIT = 5.0
INDEX_BODY = {"settings": {"index": {"number_of_shards": 1}}, "mappings": {"properties": {"UserId": {"type": "long"}}}}
# Users as in mappings/users.yaml but indexing the whole item, so both consumers write the same documents.
MAPPING = """\
table: {table}
index: {index}
id: "{{UserId}}"
where:
  Status: [{{anything-but: [banned]}}, {{exists: false}}]
deletes: {{on_remove: delete, on_ttl_expiry: delete}}
version: stream
index_body: {body}
"""
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


# --- the naive loop (runs in its own process: `worker_e2e.py --naive TABLE INDEX URL`) -------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def naive_loop(table: str, index: str, opensearch_url: str, max_seconds: float) -> None:
    """GetRecords -> TypeDeserializer -> one index/delete per record; prints lag as JSON lines."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()  # parent gone
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    dynamodb, streams = boto3.client("dynamodb"), boto3.client("dynamodbstreams")
    client, deserializer = OpenSearch(hosts=[opensearch_url]), TypeDeserializer()
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    iterator = iterator["ShardIterator"]
    print(json.dumps({"ready": True}), flush=True)
    deadline, last_print = time.monotonic() + max_seconds, 0.0
    while iterator and not stop.is_set() and time.monotonic() < deadline:
        page = streams.get_records(ShardIterator=iterator)
        iterator = page.get("NextShardIterator")
        for record in page["Records"]:
            body = record["dynamodb"]
            key = str(deserializer.deserialize(body["Keys"]["UserId"]))
            if record["eventName"] == "REMOVE":
                client.delete(index=index, id=key, ignore=[404])
            else:
                document = {k: deserializer.deserialize(v) for k, v in body["NewImage"].items()}
                client.index(index=index, id=key, body=json.dumps(document, default=_plain))
        if page["Records"]:
            created = page["Records"][-1]["dynamodb"]["ApproximateCreationDateTime"].timestamp()
            print(json.dumps({"lag": max(0.0, time.time() - created), "n": len(page["Records"])}), flush=True)
        else:
            if time.monotonic() - last_print > 1:
                print(json.dumps({"lag": 0.0, "n": 0}), flush=True)
                last_print = time.monotonic()
            stop.wait(0.25)


# --- the consumers, seen from the benchmark ---------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


@dataclass
class Consumer:
    """One consumer process: its lag and RSS samples as (monotonic time, value)."""

    name: str
    index: str
    process: subprocess.Popen[bytes]
    lags: list[tuple[float, float]] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def max_lag(self, start: float, end: float) -> float | None:
        window = [lag for at, lag in self.lags if start <= at <= end]
        return max(window) if window else None

    def sample_rss(self) -> None:
        value = rss_mb(self.process.pid)
        if value is not None:
            self.rss.append((time.monotonic(), value))


def _follow_naive(consumer: Consumer) -> None:
    assert consumer.process.stdout is not None
    for line in consumer.process.stdout:
        message = json.loads(line)
        if message.get("ready"):
            consumer.ready.set()
        else:
            consumer.lags.append((time.monotonic(), float(message["lag"])))


def _scrape_cdcsync(consumer: Consumer, url: str, table: str, stop: threading.Event) -> None:
    """Every second: the lag gauges of ``table`` (max of the two) and the worker's RSS."""
    gauges = ("cdcsync_replication_lag_seconds{", "cdcsync_iterator_age_seconds{")
    while not stop.wait(1.0) and consumer.process.poll() is None:
        consumer.sample_rss()
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our loopback worker
                text = answer.read().decode()
        except OSError:
            continue
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(gauges) and f'table="{table}"' in line
        ]
        if "cdcsync_shards_owned{" + f'table="{table}"}} 1.0' in text:
            consumer.ready.set()
        if values:
            consumer.lags.append((time.monotonic(), max(values)))


def _stop(process: subprocess.Popen[bytes], timeout: float = 35.0) -> int | None:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


@contextlib.contextmanager
def consumers(env: dict[str, str], workdir: Path, table: str, tag: str) -> Iterator[tuple[Consumer, Consumer]]:
    """Start `cdcsync run` and the naive loop for ``table``; stop both (SIGTERM) on exit."""
    mapping = workdir / f"{tag}.yaml"
    mapping.write_text(MAPPING.format(table=table, index=f"cdcsync-{tag}", body=json.dumps(INDEX_BODY)))
    port = free_port()
    worker_env = {
        **env,
        "CDCSYNC_MAPPINGS": str(mapping),
        "CDCSYNC_DLQ": f"file://{workdir / f'{tag}-dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": f"file://{workdir / f'{tag}-checkpoints.json'}",
        "CDCSYNC_METRICS_ADDR": f"127.0.0.1:{port}",
        "CDCSYNC_LOG_FORMAT": "text",
    }
    with open(workdir / f"{tag}-worker.log", "wb") as log:
        command = [sys.executable, "-m", "cdcsync.entrypoints.cli", "run"]
        worker = Consumer("cdcsync", f"cdcsync-{tag}", subprocess.Popen(command, env=worker_env, cwd=REPO, stdout=log, stderr=log))
        naive_command = [sys.executable, __file__, "--naive", table, f"naive-{tag}", env["BENCH_OPENSEARCH_URL"]]
        naive_process = subprocess.Popen(naive_command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        naive = Consumer("naive", f"naive-{tag}", naive_process)
        stop = threading.Event()
        threads = [
            threading.Thread(target=_follow_naive, args=(naive,), daemon=True),
            threading.Thread(target=_scrape_cdcsync, args=(worker, f"http://127.0.0.1:{port}/metrics", table, stop), daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            for consumer in (worker, naive):
                if not consumer.ready.wait(60):
                    raise RuntimeError(f"{consumer.name} did not start reading {table} within 60 s; see {log.name}")
            yield worker, naive
        finally:
            stop.set()
            naive_code, worker_code = _stop(naive_process, 5), _stop(worker.process)
            if worker_code != 0:
                print(f"  ! cdcsync run exited with {worker_code} on SIGTERM; log: {log.name}")
            del naive_code  # the naive loop has no shutdown contract


# --- load and latency -------------------------------------------------------------------------------


@dataclass
class Sampler:
    """Ids waiting to appear in each index, and the latencies of those that did."""

    indices: tuple[str, ...]
    client: OpenSearch
    pending: dict[str, dict[str, float]] = field(default_factory=dict)  # index -> id -> written at
    latencies: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # (written at, s)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.pending = {index: {} for index in self.indices}
        self.latencies = {index: [] for index in self.indices}

    def add(self, doc_id: str, written_at: float) -> None:
        with self.lock:
            for index in self.indices:
                self.pending[index][doc_id] = written_at

    def poll(self, stop: threading.Event, until: float) -> None:
        while not stop.wait(POLL) and time.monotonic() < until:
            self.poll_once()

    def poll_once(self) -> None:
        for index in self.indices:
            with self.lock:
                ids = list(self.pending[index])[:200]
            if not ids:
                continue
            found = self.client.mget(index=index, body={"ids": ids}, _source=False)["docs"]
            now = time.monotonic()
            with self.lock:
                for doc in found:
                    if doc.get("found"):
                        written = self.pending[index].pop(doc["_id"])
                        self.latencies[index].append((written, now - written))


def typed_item(rng: random.Random, user_id: int, serializer: TypeSerializer) -> dict[str, Any]:
    return {name: serializer.serialize(value) for name, value in profile(rng, user_id).items()}


def write_load(dynamodb: Any, table: str, rate: float, seconds: float, first_id: int, sampler: Sampler | None, mode: str) -> tuple[int, float]:
    """Write ``rate`` new items per second for ``seconds``; return (items written, elapsed s)."""
    rng, serializer = random.Random(first_id), TypeSerializer()
    written, next_id, owed = [0], first_id, 0.0
    lock = threading.Lock()

    def write(items: list[dict[str, Any]]) -> None:
        if mode == "batch":
            for start in range(0, len(items), 25):
                chunk = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
                dynamodb.batch_write_item(RequestItems={table: chunk})  # moto never leaves items unprocessed
        else:
            dynamodb.put_item(TableName=table, Item=items[0])
        if sampler is not None:
            sampler.add(items[0]["UserId"]["N"], time.monotonic())
        with lock:
            written[0] += len(items)

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        for tick in range(int(seconds / TICK)):
            owed += rate * TICK
            items = [typed_item(rng, next_id + n, serializer) for n in range(int(owed))]
            next_id, owed = next_id + len(items), owed - len(items)
            if mode == "batch" and items:
                pool.submit(write, items)
            for n, item in enumerate(items if mode == "single" else []):
                pool.submit(write, [item]) if n == 0 or sampler is None else pool.submit(_put_only(dynamodb, table, item, written, lock))
            delay = started + (tick + 1) * TICK - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    return written[0], time.monotonic() - started


def _put_only(dynamodb: Any, table: str, item: dict[str, Any], written: list[int], lock: threading.Lock) -> Any:
    def put() -> None:
        dynamodb.put_item(TableName=table, Item=item)
        with lock:
            written[0] += 1

    return put
