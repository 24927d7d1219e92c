"""End to end through the Lambda handler: cdcsync vs a naive handler, same run, local osmem-server.

    .venv/bin/python bench/lambda_e2e.py [--records 20000] [--batch 100] [--profile]

A history of user-profile changes (INSERT/MODIFY/REMOVE, several per key within a batch, ~50 per
second) is delivered batch by batch, as a DynamoDB event source mapping would, to two handlers:

- cdcsync: ``build_runtime(settings)`` + ``LambdaRuntime.handle`` (what ``cdcsync.aws_lambda.handler``
  runs once warm), with a Users mapping that indexes the whole item, so both write the same documents;
- naive: the handler most teams write: TypeDeserializer, ``json.dumps(default=...)`` for Decimal and
  sets, ``opensearchpy.helpers.bulk`` with ``_op_type`` index/delete, no versions, no coalescing.

Both get each batch in turn (the order alternates), each into its own index of one osmem-server.
Reported: wall-clock records/s; client CPU per record (``time.process_time()`` of this process: the
server's CPU is not counted, and the local stand-in is what bounds wall-clock throughput: its time
per request grows with the distinct documents in it, so coalescing saves it little); document
mismatches with the final table after an earlier slice of batches is delivered again; and the cold
import time of ``cdcsync.aws_lambda`` next to ``import boto3, opensearchpy``: wall time of
``python -c "import ..."`` in fresh interpreters (bytecode written by a first run, as a deployment
ships it; PYTHONDONTWRITEBYTECODE unset), median of ``--import-runs``, minus ``python -c pass``.

The replayed slice is whole batches of whole stream seconds by default (100 records, 50 per second),
so it holds no record from the same second as a newer record of its key outside it: the contract
does not cover that case (ARCHITECTURE.md), and the run prints how many keys it would expose.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from opensearchpy import OpenSearch, helpers

from cdcsync.entrypoints.aws_lambda import build_runtime
from cdcsync.mapping.loader import load_mappings
from cdcsync.metrics import EmfMetrics
from cdcsync.settings import load_settings
from cdcsync.sink.indices import apply_indices

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # tests.support is not installed: run from a checkout

from transform import profile  # noqa: E402 - bench/transform.py, on sys.path when run as a script

from tests.integration.lambda_world import FakeContext  # noqa: E402
from tests.support.servers import osmem_server  # noqa: E402

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2023-09-01T00:00:00.000"
T0 = 1_700_000_000
ACTIVE_KEYS = 40  # users being changed at any moment: a 100-record batch holds ~2.5 changes per key
REVISIT = 0.3  # share of bursts that come back to an earlier user (and so outlive an old batch)
INDEX_BODY = {
    "settings": {"index": {"number_of_shards": 1, "gc_deletes": "24h"}},
    "mappings": {"properties": {"UserId": {"type": "long"}, "Username": {"type": "keyword"}}},
}
# Users, as mappings/users.yaml but without its field projection, so both handlers write whole items.
MAPPING = """\
table: Users
index: {index}
id: "{{UserId}}"
where:
  Status: [{{anything-but: [banned]}}, {{exists: false}}]
skip_unchanged: {skip_unchanged}
deletes: {{on_remove: delete, on_ttl_expiry: delete}}
version: stream
index_body: {body}
"""


# --- the history -------------------------------------------------------------------------------


def modified(rng: random.Random, item: dict[str, Any], seconds: int) -> dict[str, Any]:
    """The item after a typical update: a balance change, a login, sometimes a status or a follower."""
    new = dict(item, Balance=Decimal(f"{rng.randint(0, 100000)}.{rng.randint(0, 99):02d}"))
    new["Logins"] = [*item["Logins"][-4:], seconds]
    new["UpdatedAt"] = seconds
    if rng.random() < 0.2:
        new["Status"] = rng.choice(["active", "suspended"])
    if rng.random() < 0.3:
        new["Profile"] = dict(item["Profile"], Followers=item["Profile"]["Followers"] + rng.randint(1, 50))
    return new


def plain(value: Any) -> Any:
    """json.dumps default: DynamoDB numbers to int/float, sets to sorted lists (the naive conversion)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


@dataclass
class History:
    records: list[dict[str, Any]]
    final: dict[str, Any]  # document id -> the item as plain JSON, for items the table still holds
    keys: list[int]  # per record
    seconds: list[int]  # per record


def make_history(count: int, per_second: int, seed: int = 7) -> History:
    """Bursts of changes on ACTIVE_KEYS interleaved users; ``per_second`` records share each second."""
    rng = random.Random(seed)
    serializer = TypeSerializer()
    table: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}  # key -> (item, typed item)
    active: dict[int, int] = {}  # key -> changes left in its burst
    seen: list[int] = []
    history = History([], {}, [], [])
    for n in range(count):
        while len(active) < ACTIVE_KEYS:
            key = rng.choice(seen) if seen and rng.random() < REVISIT else 10_000 + len(seen)
            if key == 10_000 + len(seen):
                seen.append(key)
            active.setdefault(key, rng.randint(2, 8))
        key = rng.choice(list(active))
        active[key] -= 1
        if not active[key]:
            del active[key]
        seconds = T0 + n // per_second
        old = table.get(key)
        body: dict[str, Any] = {"Keys": {"UserId": {"N": str(key)}}}
        if old is None:
            event, item = "INSERT", profile(rng, key)
        elif key not in active and rng.random() < 0.3:
            event, item = "REMOVE", None
        else:
            event, item = "MODIFY", modified(rng, old[0], seconds)
        if old is not None:
            body["OldImage"] = old[1]
        if item is None:
            del table[key]
        else:
            typed = {name: serializer.serialize(value) for name, value in item.items()}
            body["NewImage"] = typed
            table[key] = (item, typed)
        body |= {
            "ApproximateCreationDateTime": seconds,
            "SequenceNumber": str(10**20 + n),
            "SizeBytes": 700,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        record = {"eventID": f"e{n}", "eventName": event, "eventVersion": "1.1", "dynamodb": body}
        history.records.append(record | {"eventSource": "aws:dynamodb", "eventSourceARN": ARN})
        history.keys.append(key)
        history.seconds.append(seconds)
    history.final = {
        str(key): json.loads(json.dumps(item, default=plain)) for key, (item, _) in table.items()
    }
    return history


def same_second_exposures(history: History, start: int, end: int) -> int:
    """Keys the contract does not protect in this replay: the slice holds a record from the same second
    as the key's last record, which comes after the slice (ARCHITECTURE.md, "What this does not...")."""
    last: dict[int, int] = {}
    for position, key in enumerate(history.keys):
        last[key] = position
    exposed = set()
    for position in range(start, end):
        key = history.keys[position]
        if last[key] >= end and history.seconds[position] == history.seconds[last[key]]:
            exposed.add(key)
    return len(exposed)


# --- the two handlers ----------------------------------------------------------------------------


class NaiveHandler:
    """The handler most teams write: whole NewImage, last write wins, no versions, no coalescing."""

    def __init__(self, client: OpenSearch, index: str) -> None:
        self.client = client
        self.index = index
        self.deserializer = TypeDeserializer()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        deserialize = self.deserializer.deserialize
        actions = []
        for record in event["Records"]:
            body = record["dynamodb"]
            doc_id = str(deserialize(body["Keys"]["UserId"]))
            if record["eventName"] == "REMOVE":
                actions.append({"_op_type": "delete", "_index": self.index, "_id": doc_id})
                continue
            document = {name: deserialize(value) for name, value in body["NewImage"].items()}
            source = json.dumps(document, default=plain)
            actions.append({"_op_type": "index", "_index": self.index, "_id": doc_id, "_source": source})
        # 404: a redelivered delete of a document already gone; raising would retry the batch forever.
        helpers.bulk(self.client, actions, ignore_status=(404,))
        return {"batchItemFailures": []}


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class Tally:
    records: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    redeliveries: int = 0
    requests: int = 0
    actions: int = 0


@dataclass
class Contender:
    name: str
    handle: Handler
    index: str
    tally: Tally = field(default_factory=Tally)

    def deliver(self, batch: list[dict[str, Any]], *, timed: bool = True) -> None:
        """One invocation, redelivered from the reported record as Lambda does (at most 3 times)."""
        size = len(batch)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(4):
            failures = self.handle({"Records": batch}, FakeContext())["batchItemFailures"]
            if not failures:
                break
            self.tally.redeliveries += 1
            sequence = int(failures[0]["itemIdentifier"] or 0)
            batch = [r for r in batch if int(r["dynamodb"]["SequenceNumber"]) >= sequence]
        if timed:
            self.tally.records += size
            self.tally.wall += time.perf_counter() - wall
            self.tally.cpu += time.process_time() - cpu


def count_bulk_actions(client: OpenSearch, tally: Tally) -> Callable[[], None]:
    """Count the requests and actions a handler sends (one len() per request: no measurable cost);
    returns what stops the counting."""
    bulk = client.bulk

    def counted(*args: Any, **kwargs: Any) -> Any:
        answer = bulk(*args, **kwargs)
        tally.requests += 1
        tally.actions += len(answer.get("items", ()))
        return answer

    client.bulk = counted  # type: ignore[method-assign,unused-ignore]
    return lambda: delattr(client, "bulk")


def mismatches(client: OpenSearch, index: str, final: dict[str, Any]) -> tuple[int, int, int]:
    """(documents that differ from the table, documents missing, documents the table no longer has)."""
    client.indices.refresh(index=index)
    docs = {
        hit["_id"]: hit["_source"]
        for hit in helpers.scan(client, index=index, query={"query": {"match_all": {}}}, size=1000)
    }
    differ = sum(1 for doc_id, item in final.items() if doc_id in docs and docs[doc_id] != item)
    return differ, len(final.keys() - docs.keys()), len(docs.keys() - final.keys())


# --- cold import ----------------------------------------------------------------------------------

IMPORTS = {
    "python -c pass": "pass",
    "import boto3, opensearchpy": "import boto3, opensearchpy",
    "import cdcsync.aws_lambda": "import cdcsync.aws_lambda",
}


def import_times(runs: int) -> dict[str, float]:
    """Median wall seconds of a fresh interpreter per statement, bytecode warm, runs interleaved."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, cwd=tempfile.gettempdir(), check=True)  # noqa: S603 - our own interpreter and fixed statements
        return time.perf_counter() - started

    for code in IMPORTS.values():
        run(code)  # writes any missing .pyc and fills the file cache, as a deployed package has them
    samples: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for _ in range(runs):
        for name, code in IMPORTS.items():
            samples[name].append(run(code))
    return {name: statistics.median(values) for name, values in samples.items()}


# --- the run --------------------------------------------------------------------------------------


def replay_slice(batch_count: int, spec: str) -> tuple[int, int]:
    """Batches ``START:END`` (inclusive), clamped so that at least one newer batch follows."""
    start, end = (int(part) for part in spec.split(":"))
    if end >= batch_count - 1:
        start, end = batch_count // 3, max(batch_count // 3, 2 * batch_count // 3 - 1)
    return start, end


def fake_aws_session() -> boto3.Session:
    """Fake credentials; the DynamoDB client (only called for KEYS_ONLY records) points at a closed port,
    so nothing here can reach AWS."""
    os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    return boto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - a fake key for local servers
        region_name="us-east-1",
    )


@dataclass
class Outcome:
    contenders: list[Contender]
    mismatches: dict[str, tuple[int, int, int]]
    dead_letters: int
    profiler: cProfile.Profile | None


def run_handlers(history: History, batches: list[list[dict[str, Any]]], args: argparse.Namespace) -> Outcome:
    session = fake_aws_session()
    run = f"bench-{os.getpid()}"
    with (
        tempfile.TemporaryDirectory() as tmp,
        osmem_server() as url,
        open(os.devnull, "w") as null,
    ):
        client = OpenSearch(hosts=[url], timeout=60)
        mapping_file = Path(tmp) / "users.yaml"
        mapping_file.write_text(
            MAPPING.format(
                index=f"{run}-cdcsync",
                body=json.dumps(INDEX_BODY),
                skip_unchanged=str(args.skip_unchanged).lower(),
            )
        )
        dlq = Path(tmp) / "dlq.jsonl"
        settings = load_settings(
            mappings=mapping_file, opensearch_url=url, dlq=f"file://{dlq}", _env_file=None
        )
        apply_indices(client, load_mappings(mapping_file))  # what `cdcsync indices apply` does
        client.indices.create(index=f"{run}-naive", body=INDEX_BODY)
        runtime = build_runtime(settings, session=session, metrics=EmfMetrics(stream=null))
        naive = NaiveHandler(OpenSearch(hosts=[url], timeout=60), f"{run}-naive")
        profiler = cProfile.Profile() if args.profile else None

        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            if profiler is None:
                return runtime.handle(event, context)
            answer: dict[str, Any] = profiler.runcall(runtime.handle, event, context)
            return answer

        contenders = [
            Contender("cdcsync", handle, f"{run}-cdcsync"),
            Contender("naive", naive, f"{run}-naive"),
        ]
        stop_counting = [
            count_bulk_actions(runtime.pipeline.writer.client, contenders[0].tally),
            count_bulk_actions(naive.client, contenders[1].tally),
        ]
        # Alternating who goes first: this VM's speed drifts, and osmem may be busy after a request.
        for number, batch in enumerate(batches):
            for contender in contenders[:: 1 if number % 2 else -1]:
                contender.deliver(batch)
        for stop in stop_counting:
            stop()
        # Redelivery of an earlier slice after the newer batches, as after a failure or a duplicate.
        start, end = replay_slice(len(batches), args.replay)
        for batch in batches[start : end + 1]:
            for contender in contenders:
                contender.deliver(batch, timed=False)
        found = {c.name: mismatches(client, c.index, history.final) for c in contenders}
        letters = len(dlq.read_bytes().splitlines()) if dlq.exists() else 0
        client.close()
        return Outcome(contenders, found, letters, profiler)


def verdict(met: bool | None) -> str:
    return "met" if met else "MISSED"


def row(
    label: str, ours: str, theirs: str, *, ratio: float | None = None, target: str = "", met: bool = False
) -> None:
    tail = f"{ratio:>14.2f}x" if ratio is not None else " " * 15
    print(f"{label:34}{ours:>10}{theirs:>10}{tail}   {target}  {verdict(met) if target else ''}".rstrip())


def report(args: argparse.Namespace, history: History, outcome: Outcome, imports: dict[str, float]) -> None:
    cdc, naive = (c.tally for c in outcome.contenders)
    batch_count = -(-args.records // args.batch)
    start, end = replay_slice(batch_count, args.replay)
    print(
        f"\n{args.records:,} records in {batch_count} batches of {args.batch} ({args.per_second} records "
        f"per stream second), {len(history.final):,} documents at the end; one osmem-server, one process"
    )
    print(f"{'':34}{'cdcsync':>10}{'naive':>10}{'cdcsync/naive':>15}   target")
    rate = [tally.records / tally.wall for tally in (cdc, naive)]
    cpu = [tally.cpu / tally.records * 1e6 for tally in (cdc, naive)]
    fast, lean = rate[0] / rate[1], cpu[0] / cpu[1]
    row(
        "records/s (wall)", f"{rate[0]:,.0f}", f"{rate[1]:,.0f}", ratio=fast, target=">= 1.00x", met=fast >= 1
    )
    row(
        "client CPU per record (us)",
        f"{cpu[0]:.1f}",
        f"{cpu[1]:.1f}",
        ratio=lean,
        target="<= 0.50x",
        met=lean <= 0.5,
    )
    for label, name, spec in (
        ("client CPU seconds", "cpu", ".2f"),
        ("wall seconds", "wall", ".2f"),
        ("bulk requests", "requests", ","),
        ("bulk actions", "actions", ","),
    ):
        row(label, format(getattr(cdc, name), spec), format(getattr(naive, name), spec))
    ours, theirs = outcome.mismatches["cdcsync"], outcome.mismatches["naive"]
    wrong = "docs unlike the table after replay"
    row(wrong, f"{sum(ours):,}", f"{sum(theirs):,}", target="cdcsync 0", met=not sum(ours))
    for part, label in enumerate(("  of which: differ", "            missing", "            not deleted")):
        row(label, f"{ours[part]:,}", f"{theirs[part]:,}")
    exposed = same_second_exposures(history, start * args.batch, (end + 1) * args.batch)
    print(
        f"replay: batches {start}..{end} delivered again after all {batch_count}; keys a same-second "
        f"replay exposes\n(not protected by the contract): {exposed}; cdcsync dead letters: "
        f"{outcome.dead_letters}; redeliveries: cdcsync {cdc.redeliveries}, naive {naive.redeliveries}"
    )
    base = imports["python -c pass"]
    heading = f"cold import: fresh interpreter, .pyc warm, median of {args.import_runs} (ms)"
    print(f"\n{heading:58}{'wall':>8}{'minus pass':>12}")
    for name, seconds in imports.items():
        net = f"{(seconds - base) * 1e3:>12.0f}" if name != "python -c pass" else ""
        print(f"  {name:56}{seconds * 1e3:>8.0f}{net}")
    cdc_import, their_import = imports["import cdcsync.aws_lambda"], imports["import boto3, opensearchpy"]
    ratio = (cdc_import - base) / (their_import - base)
    print(
        f"  {'ratio cdcsync.aws_lambda / boto3+opensearchpy':56}{cdc_import / their_import:>7.2f}x"
        f"{ratio:>11.2f}x   <= 1.20x  {verdict(ratio <= 1.2)}"
    )


def print_profile(profiler: cProfile.Profile, limit: int = 25) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats("cdcsync/", limit)
    print("\ncProfile of the cdcsync handler calls (the timings above include its overhead)")
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100, help="records per Lambda invocation")
    parser.add_argument("--per-second", type=int, default=50, help="records per stream second")
    parser.add_argument("--replay", default="10:20", help="batches delivered again after the run (inclusive)")
    parser.add_argument("--import-runs", type=int, default=9, help="fresh interpreters per import statement")
    parser.add_argument(
        "--skip-unchanged",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the mapping's skip_unchanged (as in mappings/users.yaml)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the cdcsync handler calls")
    args = parser.parse_args()
    history = make_history(args.records, args.per_second)
    # The history is millions of objects that a Lambda container never holds: keep them out of the
    # collector's full passes, which would otherwise land on whichever handler triggers one.
    gc.collect()
    gc.freeze()
    batches = [history.records[i : i + args.batch] for i in range(0, args.records, args.batch)]
    outcome = run_handlers(history, batches, args)
    imports = import_times(args.import_runs)
    report(args, history, outcome, imports)
    if outcome.profiler is not None:
        print_profile(outcome.profiler)


if __name__ == "__main__":
    main()
