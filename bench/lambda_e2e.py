"""The Lambda handler end to end: cdcsync vs a naive handler, same run: cold start and CPU per record.

    .venv/bin/python bench/lambda_e2e.py [--records 20000] [--batch 100] [--cold-runs 9] [--profile]

Two handlers, as a DynamoDB event source mapping runs them:

- cdcsync: ``cdcsync.aws_lambda.handler`` (cold start) and ``build_runtime(settings)`` +
  ``LambdaRuntime.handle`` (warm), with a Users mapping that indexes the whole item, so both write the
  same documents;
- naive: ``bench/naive_handler.py``, the handler most teams write: TypeDeserializer,
  ``json.dumps(default=...)`` for Decimal and sets, ``opensearchpy.helpers.bulk`` with ``_op_type``
  index/delete, no versions, no coalescing.

**Cold start** (import + first event): ``--cold-runs`` fresh interpreters per handler, interleaved,
after one unmeasured run each that writes the bytecode a deployment ships (PYTHONDONTWRITEBYTECODE
unset). Each child times, from before its first import to the first answer (one INSERT, the same
fixture for both, against osmem-server), its CPU (``time.process_time``) and wall clock; the parent
times the whole process (interpreter start included). Reported: medians and the cdcsync/naive ratio.

**Steady state**: a history of user-profile changes (INSERT/MODIFY/REMOVE, several per key within a
batch, ~50 per stream second) is delivered batch by batch to both handlers (the order alternates),
each into its own index, against two sinks in turn: osmem-server (a local OpenSearch stand-in, slow:
its time per request grows with the distinct documents in it) and ``bench/rig/bulk_sink.py`` (a fast
in-memory ``_bulk`` stand-in with external versions, in a process of its own). The first invocation
of each handler is not timed (its cold work: the target check, the first connection). Reported per
sink: client CPU per record (``time.process_time()`` of this process, which excludes either server),
wall-clock records/s, bulk requests and actions, and the documents that differ from the final table
after an earlier slice of batches is delivered again.

The replayed slice is whole batches of whole stream seconds by default (100 records, 50 per second),
so it holds no record from the same second as a newer record of its key outside it: the contract
does not cover that case (ARCHITECTURE.md), and the run prints how many keys it would expose.
"""

from __future__ import annotations

import argparse
import contextlib
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
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer
from opensearchpy import OpenSearch, helpers

from cdcsync.entrypoints.aws_lambda import build_runtime
from cdcsync.mapping.loader import load_mappings
from cdcsync.metrics import EmfMetrics
from cdcsync.settings import load_settings
from cdcsync.sink.indices import apply_indices

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # tests.support is not installed: run from a checkout

from naive_handler import NaiveHandler, plain  # noqa: E402 - bench/, on sys.path when run as a script
from rig.processes import stand_in  # noqa: E402
from transform import profile  # noqa: E402

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


# --- the two handlers, timed -----------------------------------------------------------------------

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


# --- the sinks -------------------------------------------------------------------------------------


@dataclass
class Sink:
    name: str
    url: str
    admin: OpenSearch

    def create_index(self, index: str, mapping_file: Path | None = None) -> None:
        if mapping_file is not None and self.name == "osmem":
            apply_indices(self.admin, load_mappings(mapping_file))  # what `cdcsync indices apply` does
        else:
            self.admin.indices.create(index=index, body=INDEX_BODY if self.name == "osmem" else None)

    def documents(self, index: str) -> dict[str, Any]:
        if self.name == "osmem":
            self.admin.indices.refresh(index=index)
            hits = helpers.scan(self.admin, index=index, query={"query": {"match_all": {}}}, size=1000)
            return {hit["_id"]: hit["_source"] for hit in hits}
        with urllib.request.urlopen(f"{self.url}/_rig/state?index={index}") as answer:  # noqa: S310 - local
            docs: dict[str, Any] = json.load(answer)["docs"]
            return {doc_id: doc["source"] for doc_id, doc in docs.items()}


@contextlib.contextmanager
def bulk_sink() -> Iterator[str]:
    """The capacity rig's ``_bulk`` stand-in in a process of its own (its CPU is not this process's)."""
    with stand_in("bulk_sink") as sink:
        yield sink.url


@contextlib.contextmanager
def sink_named(name: str) -> Iterator[Sink]:
    with osmem_server() if name == "osmem" else bulk_sink() as url:
        admin = OpenSearch(hosts=[url], timeout=60)
        try:
            yield Sink(name, url, admin)
        finally:
            admin.close()


def mismatches(sink: Sink, index: str, final: dict[str, Any]) -> tuple[int, int, int]:
    """(documents that differ from the table, documents missing, documents the table no longer has)."""
    docs = sink.documents(index)
    differ = sum(1 for doc_id, item in final.items() if doc_id in docs and docs[doc_id] != item)
    return differ, len(final.keys() - docs.keys()), len(docs.keys() - final.keys())


# --- cold start -------------------------------------------------------------------------------------

EVENT = REPO / "tests" / "fixtures" / "events" / "insert.json"
COLD_CHILD = """
import json, sys, time
event = {"Records": [json.load(open(sys.argv[1]))]}
cpu, wall = time.process_time(), time.perf_counter()
module = __import__(sys.argv[2], fromlist=["handler"])
imported_cpu, imported_wall = time.process_time(), time.perf_counter()
answer = module.handler(event, None)
done_cpu, done_wall = time.process_time(), time.perf_counter()
assert answer == {"batchItemFailures": []}, answer
print(json.dumps({"cpu": done_cpu - cpu, "wall": done_wall - wall, "import_cpu": imported_cpu - cpu,
                  "first_event_cpu": done_cpu - imported_cpu, "modules": len(sys.modules)}))
"""
COLD_MODULES = {"cdcsync": "cdcsync.aws_lambda", "naive": "naive_handler"}


@dataclass
class ColdStart:
    samples: dict[str, list[dict[str, float]]]

    def median(self, name: str, key: str) -> float:
        return statistics.median(sample[key] for sample in self.samples[name])


def cold_starts(runs: int, sink: Sink, run: str, tmp: Path) -> ColdStart:
    """Import + first event of each handler in ``runs`` fresh interpreters each, interleaved."""
    mapping_file = tmp / "cold.yaml"
    mapping_file.write_text(
        MAPPING.format(index=f"{run}-cold-cdcsync", body=json.dumps(INDEX_BODY), skip_unchanged="true")
    )
    sink.create_index(f"{run}-cold-cdcsync", mapping_file)
    sink.create_index(f"{run}-cold-naive")
    base = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    base |= {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing here may reach AWS
    }
    env = {
        "cdcsync": base
        | {
            "CDCSYNC_MAPPINGS": str(mapping_file),
            "CDCSYNC_OPENSEARCH_URL": sink.url,
            "CDCSYNC_DLQ": f"file://{tmp / 'cold-dlq.jsonl'}",
            "CDCSYNC_LOG_LEVEL": "WARNING",
        },
        "naive": base
        | {
            "NAIVE_OPENSEARCH_URL": sink.url,
            "NAIVE_INDEX": f"{run}-cold-naive",
            "PYTHONPATH": str(REPO / "bench"),
        },
    }
    empty = tmp / "cwd"  # no .env file here for pydantic-settings to find
    empty.mkdir(exist_ok=True)

    def once(name: str) -> dict[str, float]:
        command = [sys.executable, "-c", COLD_CHILD, str(EVENT), COLD_MODULES[name]]
        started = time.perf_counter()
        done = subprocess.run(command, env=env[name], cwd=empty, capture_output=True, text=True, check=False)  # noqa: S603
        process_wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"the {name} handler failed its first event:\n{done.stderr[-3000:]}")
        sample: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
        return sample | {"process_wall": process_wall}

    for name in COLD_MODULES:
        once(name)  # writes any missing .pyc and fills the file cache, as a deployed package has them
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in COLD_MODULES}
    for number in range(runs):
        for name in list(COLD_MODULES)[:: 1 if number % 2 else -1]:
            samples[name].append(once(name))
    return ColdStart(samples)


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
    sink: str
    contenders: list[Contender]
    mismatches: dict[str, tuple[int, int, int]]
    dead_letters: int
    profiler: cProfile.Profile | None


def run_handlers(
    sink: Sink, history: History, batches: list[list[dict[str, Any]]], args: argparse.Namespace, tmp: Path
) -> Outcome:
    session = fake_aws_session()
    run = f"bench-{os.getpid()}-{sink.name}"
    with open(os.devnull, "w") as null:
        mapping_file = tmp / f"{sink.name}.yaml"
        mapping_file.write_text(
            MAPPING.format(
                index=f"{run}-cdcsync",
                body=json.dumps(INDEX_BODY),
                skip_unchanged=str(args.skip_unchanged).lower(),
            )
        )
        dlq = tmp / f"{sink.name}-dlq.jsonl"
        settings = load_settings(
            mappings=mapping_file, opensearch_url=sink.url, dlq=f"file://{dlq}", _env_file=None
        )
        sink.create_index(f"{run}-cdcsync", mapping_file)
        sink.create_index(f"{run}-naive")
        runtime = build_runtime(settings, session=session, metrics=EmfMetrics(stream=null))
        naive = NaiveHandler(OpenSearch(hosts=[sink.url], timeout=60), f"{run}-naive")
        profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not waiting

        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            if profiler is None:
                return runtime.handle(event, context)
            answer: dict[str, Any] = profiler.runcall(runtime.handle, event, context)
            return answer

        contenders = [
            Contender("cdcsync", handle, f"{run}-cdcsync"),
            Contender("naive", naive, f"{run}-naive"),
        ]
        # The first invocation is not timed: it holds cold work (cdcsync's external-version check
        # of the index, the first connection of each client) that a warm container does not repeat.
        for contender in contenders:
            contender.handle({"Records": batches[0][:1]}, FakeContext())
        if profiler is not None:
            profiler.clear()
        stop_counting = [
            count_bulk_actions(runtime.pipeline.writer.client, contenders[0].tally),
            count_bulk_actions(naive.client, contenders[1].tally),
        ]
        # Alternating who goes first: this VM's speed drifts, and a server may be busy after a request.
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
        found = {c.name: mismatches(sink, c.index, history.final) for c in contenders}
        letters = len(dlq.read_bytes().splitlines()) if dlq.exists() else 0
        naive.client.close()
        return Outcome(sink.name, contenders, found, letters, profiler)


def verdict(met: bool | None) -> str:
    return "met" if met else "MISSED"


def row(
    label: str, ours: str, theirs: str, *, ratio: float | None = None, target: str = "", met: bool = False
) -> None:
    tail = f"{ratio:>14.2f}x" if ratio is not None else " " * 15
    print(f"{label:34}{ours:>10}{theirs:>10}{tail}   {target}  {verdict(met) if target else ''}".rstrip())


def report_steady(args: argparse.Namespace, history: History, outcome: Outcome) -> float:
    """The steady-state table of one sink; returns the CPU-per-record ratio."""
    cdc, naive = (c.tally for c in outcome.contenders)
    batch_count = -(-args.records // args.batch)
    start, end = replay_slice(batch_count, args.replay)
    print(f"\nsteady state against {outcome.sink} (first invocation of each handler not timed)")
    print(f"{'':34}{'cdcsync':>10}{'naive':>10}{'cdcsync/naive':>15}   target")
    cpu = [tally.cpu / tally.records * 1e6 for tally in (cdc, naive)]
    rate = [tally.records / tally.wall for tally in (cdc, naive)]
    lean, fast = cpu[0] / cpu[1], rate[0] / rate[1]
    row(
        "client CPU per record (us)",
        f"{cpu[0]:.1f}",
        f"{cpu[1]:.1f}",
        ratio=lean,
        target="<= 0.50x",
        met=lean <= 0.5,
    )
    row("records/s (wall)", f"{rate[0]:,.0f}", f"{rate[1]:,.0f}", ratio=fast)
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
        f"replay exposes (not protected by the contract): {exposed}; cdcsync dead letters: "
        f"{outcome.dead_letters}; redeliveries: cdcsync {cdc.redeliveries}, naive {naive.redeliveries}"
    )
    return lean


def report_cold(args: argparse.Namespace, cold: ColdStart) -> float:
    """The cold-start table; returns the CPU ratio of import + first event."""
    print(
        f"\ncold start: import + first event (one INSERT, osmem-server), fresh interpreter, .pyc written, "
        f"median of {args.cold_runs}"
    )
    print(f"{'':34}{'cdcsync':>10}{'naive':>10}{'cdcsync/naive':>15}   target")
    ratio = 0.0
    for label, key, target in (
        ("CPU ms, import + first event", "cpu", "<= 1.20x"),
        ("wall ms, import + first event", "wall", ""),
        ("  CPU ms of which import", "import_cpu", ""),
        ("  CPU ms of which first event", "first_event_cpu", ""),
        ("wall ms, whole process", "process_wall", ""),
    ):
        ours, theirs = cold.median("cdcsync", key), cold.median("naive", key)
        share = ours / theirs if theirs else float("nan")
        ratio = share if key == "cpu" else ratio
        row(label, f"{ours * 1e3:.0f}", f"{theirs * 1e3:.0f}", ratio=share, target=target, met=share <= 1.2)
    modules = cold.median("cdcsync", "modules"), cold.median("naive", "modules")
    row("modules loaded", f"{modules[0]:.0f}", f"{modules[1]:.0f}")
    return ratio


def print_profile(outcome: Outcome, limit: int = 25) -> None:
    assert outcome.profiler is not None
    out = io.StringIO()
    stats = pstats.Stats(outcome.profiler, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats("cdcsync/", limit)
    print(
        f"\ncProfile of the warm cdcsync handler against {outcome.sink} (timings above include its overhead)"
    )
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100, help="records per Lambda invocation")
    parser.add_argument("--per-second", type=int, default=50, help="records per stream second")
    parser.add_argument("--replay", default="10:20", help="batches delivered again after the run (inclusive)")
    parser.add_argument(
        "--cold-runs", type=int, default=9, help="fresh interpreters per handler (>= 7; 0: no cold start)"
    )
    parser.add_argument("--sinks", default="osmem,bulk-sink", help="steady-state sinks, comma-separated")
    parser.add_argument(
        "--skip-unchanged",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the mapping's skip_unchanged (as in mappings/users.yaml)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the warm cdcsync handler calls")
    args = parser.parse_args()
    history = make_history(args.records, args.per_second)
    # The history is millions of objects that a Lambda container never holds: keep them out of the
    # collector's full passes, which would otherwise land on whichever handler triggers one.
    gc.collect()
    gc.freeze()
    batches = [history.records[i : i + args.batch] for i in range(0, args.records, args.batch)]
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sinks.split(","):
            with sink_named(name) as sink:
                outcomes.append(run_handlers(sink, history, batches, args, Path(tmp)))
        cold = None
        if args.cold_runs:
            with sink_named("osmem") as sink:
                cold = cold_starts(args.cold_runs, sink, f"bench-{os.getpid()}", Path(tmp))
    print(
        f"\n{args.records:,} records in {len(batches)} batches of {args.batch} ({args.per_second} records "
        f"per stream second), {len(history.final):,} documents at the end; one process per server"
    )
    ratios = {"cold start (CPU)": report_cold(args, cold)} if cold is not None else {}
    for outcome in outcomes:
        ratios[f"CPU per record, {outcome.sink}"] = report_steady(args, history, outcome)
    print("\nsummary: " + "; ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items()))
    for outcome in outcomes:
        if outcome.profiler is not None:
            print_profile(outcome)


if __name__ == "__main__":
    main()
