"""`make demo`: the product's main job on an embedded local default.

Starts moto_server (DynamoDB + Streams) and osmem-server (OpenSearch-compatible) on loopback,
creates the Users table with a stream, applies mappings/users.yaml, starts `cdcsync run`, makes a
few inserts, updates and deletes, and prints the table next to the index as they converge, with
the lag metric. Then it keeps syncing until Ctrl-C (or DEMO_EXIT_AFTER seconds), printing each
change it sees in the table and in the index, and the table again whenever something changed.
It ends with one line saying it stops and a summary.

Ctrl-C reaches the demo alone: the servers and the worker run in sessions of their own (a
terminal sends SIGINT to its whole foreground process group), so the demo stops them in order,
worker first (one SIGTERM, its writes finish), then the servers it was writing to. The worker logs
at WARNING unless CDCSYNC_LOG_LEVEL says otherwise: what it says then is worth reading.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from opensearchpy import OpenSearch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.servers import free_port, moto_server, osmem_server  # noqa: E402

STATE_DIR = ROOT / ".demo"
TABLE, INDEX = "Users", "users"
POLL_SECONDS = 1.0
CONVERGE_SECONDS = 60.0

Rows = dict[str, dict[str, Any]]


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Watch:
    """What the demo saw: the table and the index as last printed, and how much changed."""

    dynamodb: Any
    client: OpenSearch
    metrics_url: str
    table: Rows = field(default_factory=dict)
    docs: Rows = field(default_factory=dict)
    printed: bool = False
    writes: int = 0  # the demo's own writes to DynamoDB
    table_changes: int = 0
    index_changes: int = 0

    def look(self, *, live: bool) -> bool:
        """Read both sides; if anything changed, print the changes (when live) and the table.

        Returns whether the index holds what the mapping makes of the table.
        """
        table, docs = table_items(self.dynamodb), index_docs(self.client)
        if self.printed and (table, docs) == (self.table, self.docs):
            return converged(table, docs)
        if live:
            seen_table = changes("DynamoDB  ", self.table, table, describe_item)
            seen_index = changes("OpenSearch", self.docs, docs, json.dumps)
            self.table_changes += len(seen_table)
            self.index_changes += len(seen_index)
            for line in seen_table + seen_index:
                say(line)
        self.table, self.docs, self.printed = table, docs, True
        return show(table, docs, self.metrics_url)


def table_items(dynamodb: Any) -> Rows:
    items = dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    plain = {}
    for item in items:
        plain[item["UserId"]["N"]] = {k: next(iter(v.values())) for k, v in item.items()}
    return plain


def index_docs(client: OpenSearch) -> Rows:
    if not client.indices.exists(index=INDEX):
        return {}
    client.indices.refresh(index=INDEX)
    hits = client.search(index=INDEX, body={"query": {"match_all": {}}, "size": 100})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def describe_item(row: dict[str, Any]) -> str:
    return f"{row.get('Username')} {row.get('Email')} {row.get('Status', '')}".strip()


def changes(side: str, before: Rows, after: Rows, describe: Any) -> list[str]:
    """One line per key that appeared, changed or went between two looks at one side."""
    verbs = (
        ("inserted", "updated", "deleted")
        if side.startswith("DynamoDB")
        else ("indexed", "updated", "deleted")
    )
    lines = []
    for key in sorted(set(before) | set(after), key=int):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        verb = verbs[0] if old is None else verbs[2] if new is None else verbs[1]
        shown = f": {describe(new)}" if new is not None else ""
        lines.append(f"  {side} {key:>3} {verb}{shown}")
    return lines


def converged(table: Rows, docs: Rows) -> bool:
    return set(docs) == {k for k, v in table.items() if v.get("Status") != "banned"}


def metric_lines(metrics_url: str) -> list[str]:
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as answer:  # noqa: S310 - our loopback server
            return [str(line) for line in answer.read().decode().splitlines()]
    except OSError:
        return []


def lag(metrics_url: str) -> str:
    for line in metric_lines(metrics_url):
        if line.startswith("cdcsync_replication_lag_seconds{"):
            return line.rsplit(" ", 1)[1] + " s"
    return "n/a"


def record_outcomes(metrics_url: str) -> dict[str, int]:
    """``cdcsync_records_total`` summed per outcome."""
    totals: dict[str, int] = {}
    for line in metric_lines(metrics_url):
        if line.startswith("cdcsync_records_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            totals[outcome] = totals.get(outcome, 0) + int(float(line.rsplit(" ", 1)[1]))
    return totals


def show(table: Rows, docs: Rows, metrics_url: str) -> bool:
    say(f"\n{'UserId':>6}  {'table (DynamoDB)':<44} index (OpenSearch)")
    for user_id in sorted(set(table) | set(docs), key=int):
        row = table.get(user_id)
        cell = describe_item(row) if row else "-"
        doc = docs.get(user_id)
        say(f"{user_id:>6}  {cell:<44} {json.dumps(doc) if doc else '-'}")
    done = converged(table, docs)
    say(f"converged: {'yes' if done else 'not yet'}   replication lag: {lag(metrics_url)}")
    return done


@contextlib.contextmanager
def worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    # Its own session: Ctrl-C at the terminal reaches the demo only, which sends one SIGTERM.
    process = subprocess.Popen(
        [sys.executable, "-m", "cdcsync.entrypoints.cli", "run"], env=env, cwd=ROOT, start_new_session=True
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=35)
        except subprocess.TimeoutExpired:
            process.kill()


def write_changes(watch: Watch) -> None:
    dynamodb = watch.dynamodb

    def put(user_id: int, name: str, **extra: str) -> None:
        item = {"UserId": {"N": str(user_id)}, "Username": {"S": name}, "Email": {"S": f"{name}@example.com"}}
        item.update({k: {"S": v} for k, v in extra.items()})
        dynamodb.put_item(TableName=TABLE, Item=item)
        watch.writes += 1

    say("\nwriting to DynamoDB: 4 inserts, an update, a delete, a ban (leaves the index via `where`)")
    for user_id, name in [(1, "ada"), (2, "grace"), (3, "alan"), (4, "edsger")]:
        put(user_id, name)
    put(2, "grace", Email="grace@navy.mil")
    dynamodb.delete_item(TableName=TABLE, Key={"UserId": {"N": "3"}})
    watch.writes += 1
    put(4, "edsger", Status="banned")


def summary(watch: Watch, seconds: float) -> str:
    outcomes = record_outcomes(watch.metrics_url)
    dead_letters = STATE_DIR / "dlq.jsonl"
    dead = len(dead_letters.read_text().splitlines()) if dead_letters.exists() else 0
    table, docs = table_items(watch.dynamodb), index_docs(watch.client)
    minutes, secs = divmod(round(seconds), 60)
    plural = "" if watch.table_changes == 1 else "s"
    indexed, deleted, skipped = (outcomes.get(name, 0) for name in ("indexed", "deleted", "skipped"))
    return (
        f"summary: ran {minutes // 60}:{minutes % 60:02d}:{secs:02d}; the demo made {watch.writes} writes to "
        f"DynamoDB; {watch.table_changes} change{plural} seen in the table and {watch.index_changes} in the "
        f"index; cdcsync records: {indexed} indexed, {deleted} deleted, {skipped} skipped, "
        f"{dead} dead letter{'' if dead == 1 else 's'}; "
        f"index converged: {'yes' if converged(table, docs) else 'no'} ({len(docs)} documents)"
    )


def sync_live(watch: Watch, exit_after: float) -> None:
    """Print what changes until Ctrl-C or ``exit_after`` seconds (0: until Ctrl-C)."""
    started = time.monotonic()
    try:
        while not exit_after or time.monotonic() - started < exit_after:
            time.sleep(POLL_SECONDS)
            watch.look(live=True)
    except KeyboardInterrupt:
        say("")  # past the ^C the terminal echoed


def main() -> int:
    exit_after = float(os.environ.get("DEMO_EXIT_AFTER", "0") or 0)
    started = time.monotonic()
    STATE_DIR.mkdir(exist_ok=True)
    (STATE_DIR / "dlq.jsonl").unlink(missing_ok=True)
    with moto_server() as moto_url, osmem_server() as opensearch_url:
        metrics_port = free_port()
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": moto_url,
            "CDCSYNC_MAPPINGS": str(ROOT / "mappings" / "users.yaml"),
            "CDCSYNC_OPENSEARCH_URL": opensearch_url,
            "CDCSYNC_DLQ": f"file://{STATE_DIR / 'dlq.jsonl'}",
            "CDCSYNC_CHECKPOINTS": f"file://{STATE_DIR / 'checkpoints.json'}",
            "CDCSYNC_METRICS_ADDR": f"127.0.0.1:{metrics_port}",
            "CDCSYNC_LOG_LEVEL": os.environ.get("CDCSYNC_LOG_LEVEL", "WARNING"),
        }
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        (STATE_DIR / "checkpoints.json").unlink(missing_ok=True)
        (STATE_DIR / "state.json").write_text(
            json.dumps({"dynamodb": moto_url, "opensearch": opensearch_url})
        )
        dynamodb = boto3.client("dynamodb")
        client = OpenSearch(hosts=[opensearch_url])
        say(f"local DynamoDB (moto) at {moto_url}, OpenSearch-compatible osmem at {opensearch_url}")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "UserId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "UserId", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        subprocess.run(
            [sys.executable, "-m", "cdcsync.entrypoints.cli", "indices", "apply"],
            env=env,
            cwd=ROOT,
            check=True,
        )
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        watch = Watch(dynamodb, client, metrics_url)
        with worker(env):
            try:
                write_changes(watch)
                deadline = time.monotonic() + CONVERGE_SECONDS
                while not watch.look(live=False) and time.monotonic() < deadline:
                    time.sleep(POLL_SECONDS)
                say(
                    "\nsyncing live; change the table from another terminal and watch the index follow:\n"
                    "  .venv/bin/python -m demo.change put 42 ada ada@example.com\n"
                    "  .venv/bin/python -m demo.change update 42 --email ada@lovelace.dev\n"
                    "  .venv/bin/python -m demo.change ban 42\n"
                    "  .venv/bin/python -m demo.change delete 42\n"
                    f"  curl -s {metrics_url} | grep cdcsync_\n"
                    "Ctrl-C stops everything."
                )
                sync_live(watch, exit_after)
            except KeyboardInterrupt:
                say("")
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
            closing = summary(watch, time.monotonic() - started)  # while /metrics still answers
            say("stopping: the worker finishes its writes, then the local servers stop")
    say(closing)
    (STATE_DIR / "state.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before the worker ran: the servers were stopped on the way out
        say("\nstopped while starting")
        sys.exit(130)
