"""Container worker end to end: `cdcsync run` vs a naive GetRecords loop, same run, local servers.

    .venv/bin/python bench/worker_e2e.py [--rates 25,50,100,200,400] [--seconds 60] [--backlog 20000]

One moto_server (DynamoDB + Streams) and one osmem-server (OpenSearch stand-in) on loopback. For
each rate and consumer, a fresh table with a NEW_AND_OLD_IMAGES stream gets a steady load of new
items (``--item user``: the 5 flat attributes mappings/users.yaml keeps; ``profile``: the 12 of
bench/transform.py) as one ``batch_write_item`` every 50 ms holding rate/20 items (``--put-mode
single``: one ``put_item`` per item from a thread pool). It is read by one consumer into its own
index: ``cdcsync run`` as a real subprocess (as demo/run.py starts it: file checkpoints, metrics on
a free port), or the naive loop most teams write (this file with ``--naive``: one process,
GetRecords on the single shard, TypeDeserializer, one ``client.index`` per record, no versions,
0.25 s sleep after an empty page). The two take turns at each rate (who goes first alternates):
moto's GetRecords costs milliseconds of CPU per record (its response serializer), so two readers
at once would mostly measure who gets moto's CPU; ``--together`` runs them side by side anyway.

Reported per rate and consumer:
- achieved write rate (the generator must keep up, or the rate says nothing about the consumer);
- p50/p99/max latency from the write call returning to the document being retrievable by id: the
  first item of every 50 ms tick is sampled and one ``mget`` (no _source) per index every 25 ms
  asks for the pending ones (~40 small requests/s). A realtime GET sees a document before a
  refresh; on a real cluster ``_search`` adds up to refresh_interval. Samples from the first
  ``--warmup`` seconds are left out (a reader of an idle shard backs off to 2 s between reads);
- max lag: the largest of cdcsync's ``cdcsync_replication_lag_seconds`` and
  ``cdcsync_iterator_age_seconds`` scraped every second; for the naive loop now minus the last
  record's creation time after each page is indexed;
- sustained: achieved >= 95 % of the rate, max lag and max latency < 5 s, every sample arrived;
- peak RSS of the consumer process.
Then the backlog: ``--backlog`` items written with no consumer running, then drained by each in
turn; RSS (VmRSS) sampled every second until the last item is in the index or ``--drain-seconds``
pass: first, peak and final RSS and the drain rate. Targets are printed, not asserted.
``--profile-worker`` runs the worker under cProfile and prints its top functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
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
from botocore.exceptions import BotoCoreError, ClientError
from opensearchpy import OpenSearch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # tests.support is not installed: run from a checkout

from transform import profile  # noqa: E402 - bench/transform.py

from tests.support.servers import free_port, moto_server, osmem_server  # noqa: E402

TICK = 0.05  # the generator writes every 50 ms; the first item of each tick is a latency sample
POLL = 0.025  # latency poller period
LAG_LIMIT = 5.0
INDEX_BODY = {
    "settings": {"index": {"number_of_shards": 1}},
    "mappings": {"properties": {"UserId": {"type": "long"}}},
}
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
# `cdcsync run` with every thread profiled (cProfile alone sees only the main thread, and the shard
# loops run in their own); the merged stats are written to argv[1] at exit.
PROFILED_RUN = """\
import atexit, cProfile, pstats, runpy, sys, threading
profiles, path = [], sys.argv.pop(1)
def start(*_):
    sys.setprofile(None); profile = cProfile.Profile(); profiles.append(profile); profile.enable()
def dump():
    for profile in profiles: profile.disable()
    pstats.Stats(*profiles).dump_stats(path)
threading.setprofile(start); atexit.register(dump); start()
sys.argv[0] = "cdcsync"; runpy.run_module(sys.argv.pop(1), run_name="__main__")
"""
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


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

    def stop_when_parent_exits() -> None:
        sys.stdin.read()  # EOF: the benchmark closed our stdin or died
        stop.set()

    threading.Thread(target=stop_when_parent_exits, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    dynamodb: Any = boto3.client("dynamodb")
    streams: Any = boto3.client("dynamodbstreams")
    client, deserializer = OpenSearch(hosts=[opensearch_url]), TypeDeserializer()
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    first = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    iterator: str | None = first["ShardIterator"]
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
    scrape_failures: int = 0

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
    """Every second: the lag gauges of ``table`` (the larger of the two)."""
    gauges = ("cdcsync_replication_lag_seconds{", "cdcsync_iterator_age_seconds{")
    while not stop.wait(1.0) and consumer.process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our loopback worker
                text = answer.read().decode()
        except OSError:
            consumer.scrape_failures += 1  # reported with the row; a missing sample hides lag
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


def _worker_env(env: dict[str, str], workdir: Path, table: str, tag: str, port: int) -> dict[str, str]:
    mapping = workdir / f"{tag}.yaml"
    mapping.write_text(MAPPING.format(table=table, index=f"cdcsync-{tag}", body=json.dumps(INDEX_BODY)))
    return {
        **env,
        "CDCSYNC_MAPPINGS": str(mapping),
        "CDCSYNC_OPENSEARCH_URL": env["BENCH_OPENSEARCH_URL"],
        "CDCSYNC_DLQ": f"file://{workdir / f'{tag}-dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": f"file://{workdir / f'{tag}-checkpoints.json'}",
        "CDCSYNC_METRICS_ADDR": f"127.0.0.1:{port}",
        "CDCSYNC_LOG_FORMAT": "text",
    }


@contextlib.contextmanager
def cdcsync_worker(env: dict[str, str], workdir: Path, table: str, tag: str) -> Iterator[Consumer]:
    """`cdcsync run` for ``table`` into index cdcsync-TAG, as demo/run.py starts it; SIGTERM on exit."""
    port = free_port()
    worker_env = _worker_env(env, workdir, table, tag, port)
    profile_path = workdir / f"{tag}.prof"
    profiled = ["-c", PROFILED_RUN, str(profile_path)] if env.get("BENCH_PROFILE") else ["-m"]
    command = [sys.executable, *profiled, "cdcsync.entrypoints.cli", "run"]
    with open(workdir / f"{tag}-worker.log", "wb") as log:
        process = subprocess.Popen(command, env=worker_env, cwd=REPO, stdout=log, stderr=log)  # noqa: S603 - our interpreter
        consumer = Consumer("cdcsync", f"cdcsync-{tag}", process)
        stop = threading.Event()
        url = f"http://127.0.0.1:{port}/metrics"
        threading.Thread(target=_scrape_cdcsync, args=(consumer, url, table, stop), daemon=True).start()
        try:
            if not consumer.ready.wait(60):
                raise RuntimeError(
                    f"cdcsync run did not own the shard of {table} within 60 s; see {log.name}"
                )
            yield consumer
        finally:
            stop.set()
            code = _stop(process)
            if code != 0:
                print(f"  ! cdcsync run exited with {code} after SIGTERM (expected 0); log: {log.name}")
            if profile_path.exists():
                stats = pstats.Stats(str(profile_path), stream=sys.stdout)
                stats.sort_stats("tottime").print_stats(15)


@contextlib.contextmanager
def naive_consumer(env: dict[str, str], table: str, tag: str) -> Iterator[Consumer]:
    """The naive loop (this file with --naive) for ``table`` into index naive-TAG."""
    command = [sys.executable, __file__, "--naive", table, f"naive-{tag}", env["BENCH_OPENSEARCH_URL"]]
    process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: S603 - our interpreter
    consumer = Consumer("naive", f"naive-{tag}", process)
    threading.Thread(target=_follow_naive, args=(consumer,), daemon=True).start()
    try:
        if not consumer.ready.wait(60):
            raise RuntimeError(f"the naive loop did not start reading {table} within 60 s")
        yield consumer
    finally:
        _stop(process, 5)  # the naive loop has no shutdown contract; its exit code says nothing


@contextlib.contextmanager
def consumers(
    env: dict[str, str], workdir: Path, table: str, tag: str, names: tuple[str, ...]
) -> Iterator[list[Consumer]]:
    """Start the named consumers of ``table`` (cdcsync, naive) and stop them on exit."""
    with contextlib.ExitStack() as stack:
        started = []
        for name in names:
            if name == "cdcsync":
                started.append(stack.enter_context(cdcsync_worker(env, workdir, table, tag)))
            else:
                started.append(stack.enter_context(naive_consumer(env, table, tag)))
        stop = threading.Event()
        stack.callback(stop.set)
        threading.Thread(target=_sample_rss, args=(started, stop), daemon=True).start()
        yield started


def _sample_rss(started: list[Consumer], stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for consumer in started:
            consumer.sample_rss()


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


def typed_item(rng: random.Random, user_id: int, kind: str, serializer: TypeSerializer) -> dict[str, Any]:
    """``user``: the 5 flat attributes mappings/users.yaml keeps; ``profile``: bench/transform.py's 12."""
    if kind == "profile":
        item = profile(rng, user_id)
    else:
        name = f"user_{user_id}"
        item = {"UserId": user_id, "Username": name, "Email": f"{name}@example.com", "Status": "active"}
        item["UpdatedAt"] = int(time.time())
    return {key: serializer.serialize(value) for key, value in item.items()}


def write_load(
    dynamodb: Any, table: str, load: tuple[float, float, str, str], first_id: int, sampler: Sampler | None
) -> tuple[int, float]:
    """Write ``rate`` new items per second for ``seconds`` (ids from ``first_id``); (written, elapsed s)."""
    rate, seconds, mode, kind = load
    rng, serializer = random.Random(first_id), TypeSerializer()
    written, failed, next_id, owed = [0], [], first_id, 0.0
    lock = threading.Lock()

    def write(items: list[dict[str, Any]], sample: bool) -> None:
        try:
            send(items)
        except (BotoCoreError, ClientError) as exc:  # counted and reported: a failed load measures nothing
            failed.append(f"{type(exc).__name__}: {exc}")
            return
        if sample and sampler is not None:
            sampler.add(items[0]["UserId"]["N"], time.monotonic())
        with lock:
            written[0] += len(items)

    def send(items: list[dict[str, Any]]) -> None:
        if mode == "batch":
            for start in range(0, len(items), 25):
                chunk = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
                dynamodb.batch_write_item(RequestItems={table: chunk})  # moto leaves nothing unprocessed
        else:
            dynamodb.put_item(TableName=table, Item=items[0])

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        for tick in range(round(seconds / TICK)):
            owed += rate * TICK
            items = [typed_item(rng, next_id + n, kind, serializer) for n in range(int(owed))]
            next_id, owed = next_id + len(items), owed - len(items)
            batches = [items] if mode == "batch" else [[item] for item in items]
            for n, batch in enumerate(batch for batch in batches if batch):
                pool.submit(write, batch, n == 0)
            delay = started + (tick + 1) * TICK - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    if failed:
        print(f"  ! {len(failed)} writes to {table} failed; first: {failed[0]}")
    return written[0], time.monotonic() - started


# --- phases -----------------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    env: dict[str, str]
    workdir: Path
    dynamodb: Any
    client: OpenSearch

    def groups(self, turn: int) -> list[tuple[str, ...]]:
        """Who reads together: both at once, or one after the other (first alternating by turn)."""
        if self.args.together:
            return [("cdcsync", "naive")]
        order: list[tuple[str, ...]] = [("cdcsync",), ("naive",)]
        return order if turn % 2 == 0 else order[::-1]

    def prepare(self, table: str, indices: list[str]) -> None:
        self.dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "UserId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "UserId", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        for index in indices:
            self.client.indices.create(index=index, body=INDEX_BODY)


def tag_of(prefix: str, names: tuple[str, ...]) -> str:
    return prefix if len(names) > 1 else f"{prefix}-{names[0]}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class Row:
    rate: float
    achieved: float
    name: str
    p50: float | None
    p99: float | None
    slowest: float | None
    max_lag: float | None
    missing: int
    peak_rss: float

    @property
    def sustained(self) -> bool:
        lag_ok = self.max_lag is not None and self.max_lag < LAG_LIMIT
        latency_ok = self.slowest is not None and self.slowest < LAG_LIMIT
        return self.achieved >= 0.95 * self.rate and lag_ok and latency_ok and not self.missing


def steady(bench: Bench, rate: float, names: tuple[str, ...]) -> list[Row]:
    """One load of ``rate`` items/s on a fresh table, read by ``names``; a row per consumer."""
    args, tag = bench.args, tag_of(f"r{rate:g}", names)
    table = f"Bench-{tag}"
    bench.prepare(table, [f"{name}-{tag}" for name in names])
    with consumers(bench.env, bench.workdir, table, tag, names) as started:
        sampler = Sampler(tuple(consumer.index for consumer in started), bench.client)
        stop = threading.Event()
        cap = time.monotonic() + 2 * args.seconds + args.settle + 60  # bounded even if the load stalls
        poller = threading.Thread(target=sampler.poll, args=(stop, cap), daemon=True)
        poller.start()
        began = time.monotonic()
        load = (rate, args.seconds, args.put_mode, args.item)
        written, elapsed = write_load(bench.dynamodb, table, load, 1, sampler)
        deadline = time.monotonic() + args.settle
        while any(sampler.pending.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        poller.join()
        settled = time.monotonic()
    rows = []
    for consumer in started:
        kept = [s for at, s in sampler.latencies[consumer.index] if at >= began + args.warmup]
        rows.append(
            Row(
                rate=rate,
                achieved=written / elapsed,
                name=consumer.name,
                p50=statistics.median(kept) if kept else None,
                p99=percentile(kept, 0.99) if kept else None,
                slowest=max(kept, default=None),
                max_lag=consumer.max_lag(began, settled),
                missing=len(sampler.pending[consumer.index]),
                peak_rss=max((value for _, value in consumer.rss), default=0.0),
            )
        )
        print(
            f"  {rate:g}/s {consumer.name:<7}: wrote {written} in {elapsed:.1f} s, {len(kept)} samples kept"
        )
    return rows


def drain(bench: Bench) -> None:
    """Backlog with the consumers stopped, then each drains it; RSS every second."""
    args, table = bench.args, "Backlog"
    groups = bench.groups(0)
    bench.prepare(table, [f"{name}-{tag_of('backlog', names)}" for names in groups for name in names])
    began = time.monotonic()
    written, _ = write_load(bench.dynamodb, table, (args.backlog / 10, 10.0, "batch", args.item), 1, None)
    took = time.monotonic() - began
    print(f"\nbacklog: {written} items in {took:.1f} s, written with no consumer running")
    print(
        f"{'consumer':<8} {'drained':>9} {'rec/s':>7} {'RSS first':>10} {'peak':>7} {'final':>7}"
        f" {'samples':>7}"
    )
    for names in groups:
        with consumers(bench.env, bench.workdir, table, tag_of("backlog", names), names) as started:
            began, finished = time.monotonic(), {}
            for _ in range(int(args.drain_seconds)):
                for consumer in started:
                    if consumer.name not in finished and bench.client.exists(
                        index=consumer.index, id=str(written)
                    ):
                        finished[consumer.name] = time.monotonic() - began  # ids 1..written, in stream order
                if len(finished) == len(started):
                    break
                time.sleep(1.0)
        for consumer in started:
            seconds = finished.get(consumer.name)
            rss = [value for _, value in consumer.rss] or [0.0]
            drained = f"{seconds:7.1f} s" if seconds is not None else "   never"
            speed = f"{written / seconds:7,.0f}" if seconds else "      -"
            print(
                f"{consumer.name:<8} {drained:>9} {speed} {rss[0]:7.0f} MB {max(rss):4.0f} MB "
                f"{rss[-1]:4.0f} MB {len(rss):7d}"
            )
            if consumer.name == "cdcsync":
                verdict = "met" if max(rss) < 200 else "NOT met"
                print(f"target: cdcsync RSS flat under 200 MB draining: {verdict} (peak {max(rss):.0f} MB)")


def report(rows: list[Row]) -> None:
    def cell(value: float | None) -> str:
        return f"{value:6.2f}" if value is not None else "     -"

    header = f"{'rate/s':>6} {'achieved':>8}  {'consumer':<8} {'p50 s':>6} {'p99 s':>6} {'max s':>6}"
    print(f"\n{header} {'max lag':>7} {'missing':>7} {'RSS MB':>6}  sustained")
    for row in rows:
        print(
            f"{row.rate:6g} {row.achieved:8.1f}  {row.name:<8} {cell(row.p50)} {cell(row.p99)} "
            f"{cell(row.slowest)} "
            f"{cell(row.max_lag):>7} {row.missing:7d} {row.peak_rss:6.0f}  {'yes' if row.sustained else 'no'}"
        )
    best = {
        name: max((row.rate for row in rows if row.name == name and row.sustained), default=0.0)
        for name in ("cdcsync", "naive")
    }
    top = [row.p99 for row in rows if row.name == "cdcsync" and row.rate == best["cdcsync"]]
    p99 = top[0] if top else None
    print(f"highest sustained rate: cdcsync {best['cdcsync']:g}/s, naive {best['naive']:g}/s")
    verdict = "met" if p99 is not None and p99 < 1.5 else "NOT met"
    print(f"target: cdcsync p99 < 1.5 s at its highest sustained rate: {verdict} (p99 {cell(p99).strip()} s)")
    ratio = best["cdcsync"] / best["naive"] if best["naive"] else float("inf")
    verdict = "met" if ratio >= 3 else "NOT met"
    print(f"target: cdcsync >= 3x the naive loop's highest sustained rate: {verdict} ({ratio:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", default="25,50,100,200,400", help="comma-separated writes per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration per rate")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of samples left out per rate")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds to wait for the last samples")
    parser.add_argument("--put-mode", choices=["batch", "single"], default="batch")
    parser.add_argument(
        "--item", choices=["user", "profile"], default="user", help="item shape (see docstring)"
    )
    parser.add_argument("--together", action="store_true", help="both consumers read each table at once")
    parser.add_argument("--backlog", type=int, default=20_000, help="items for the drain phase (0: skip)")
    parser.add_argument("--drain-seconds", type=float, default=300.0, help="cap on each drain")
    parser.add_argument("--profile-worker", action="store_true", help="print the worker's top functions")
    parser.add_argument(
        "--workdir", help="keep mappings, checkpoints and worker logs here (default: temp dir)"
    )
    parser.add_argument("--naive", nargs=3, metavar=("TABLE", "INDEX", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive:
        table, index, url = args.naive
        naive_loop(table, index, url, max_seconds=3600)
        return
    os.environ.update(AWS_ENV)
    with (
        moto_server() as moto_url,
        osmem_server() as opensearch_url,
        tempfile.TemporaryDirectory() as scratch,
    ):
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "AWS_ENDPOINT_URL": moto_url, "BENCH_OPENSEARCH_URL": opensearch_url}
        if args.profile_worker:
            env["BENCH_PROFILE"] = "1"
        config = Config(max_pool_connections=32, retries={"max_attempts": 2, "mode": "standard"})
        dynamodb = boto3.client("dynamodb", endpoint_url=moto_url, config=config)
        bench = Bench(args, env, workdir, dynamodb, OpenSearch(hosts=[opensearch_url], timeout=30))
        mode = "together" if args.together else "one after the other"
        print(
            f"moto {moto_url}, osmem {opensearch_url}; {os.cpu_count()} CPUs; {args.item} items,"
            f" {args.put_mode}"
        )
        print(f"writes; consumers read {mode}; {args.seconds:g} s per rate")
        rows: list[Row] = []
        for turn, rate in enumerate(float(r) for r in args.rates.split(",")):
            for names in bench.groups(turn):
                rows += steady(bench, rate, names)
        report(rows)
        if args.backlog:
            drain(bench)


if __name__ == "__main__":
    main()
