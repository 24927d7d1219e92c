"""`make demo`: the product's main job on an embedded local default.

Starts moto_server (DynamoDB + Streams) and osmem-server (OpenSearch-compatible) on loopback,
creates the Users table with a stream, applies mappings/users.yaml, starts `cdcsync run`, makes a
few inserts, updates and deletes, and prints the table next to the index as they converge, with
the lag metric. Then it keeps syncing until Ctrl-C (or DEMO_EXIT_AFTER seconds). Everything it
started is stopped on exit.
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
from pathlib import Path
from typing import Any

import boto3
from opensearchpy import OpenSearch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.servers import free_port, moto_server, osmem_server  # noqa: E402

STATE_DIR = ROOT / ".demo"
TABLE, INDEX = "Users", "users"


def say(text: str) -> None:
    print(text, flush=True)


def table_items(dynamodb: Any) -> dict[str, dict[str, Any]]:
    items = dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    plain = {}
    for item in items:
        plain[item["UserId"]["N"]] = {k: next(iter(v.values())) for k, v in item.items()}
    return plain


def index_docs(client: OpenSearch) -> dict[str, dict[str, Any]]:
    if not client.indices.exists(index=INDEX):
        return {}
    client.indices.refresh(index=INDEX)
    hits = client.search(index=INDEX, body={"query": {"match_all": {}}, "size": 100})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def lag(metrics_url: str) -> str:
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as answer:  # noqa: S310 - our loopback server
            text = answer.read().decode()
    except OSError:
        return "n/a"
    for line in text.splitlines():
        if line.startswith("cdcsync_replication_lag_seconds{"):
            return line.rsplit(" ", 1)[1] + " s"
    return "n/a"


def show(dynamodb: Any, client: OpenSearch, metrics_url: str) -> bool:
    table, docs = table_items(dynamodb), index_docs(client)
    expected = {k for k, v in table.items() if v.get("Status") != "banned"}
    say(f"\n{'UserId':>6}  {'table (DynamoDB)':<44} index (OpenSearch)")
    for user_id in sorted(set(table) | set(docs), key=int):
        row = table.get(user_id)
        cell = f"{row.get('Username')} {row.get('Email')} {row.get('Status', '')}".strip() if row else "-"
        doc = docs.get(user_id)
        say(f"{user_id:>6}  {cell:<44} {json.dumps(doc) if doc else '-'}")
    converged = set(docs) == expected
    say(f"converged: {'yes' if converged else 'not yet'}   replication lag: {lag(metrics_url)}")
    return converged


@contextlib.contextmanager
def worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-m", "cdcsync.entrypoints.cli", "run"], env=env, cwd=ROOT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=35)
        except subprocess.TimeoutExpired:
            process.kill()


def changes(dynamodb: Any) -> None:
    def put(user_id: int, name: str, **extra: str) -> None:
        item = {"UserId": {"N": str(user_id)}, "Username": {"S": name}, "Email": {"S": f"{name}@example.com"}}
        item.update({k: {"S": v} for k, v in extra.items()})
        dynamodb.put_item(TableName=TABLE, Item=item)

    say("\nwriting to DynamoDB: 4 inserts, an update, a delete, a ban (leaves the index via `where`)")
    for user_id, name in [(1, "ada"), (2, "grace"), (3, "alan"), (4, "edsger")]:
        put(user_id, name)
    put(2, "grace", Email="grace@navy.mil")
    dynamodb.delete_item(TableName=TABLE, Key={"UserId": {"N": "3"}})
    put(4, "edsger", Status="banned")


def main() -> int:
    exit_after = float(os.environ.get("DEMO_EXIT_AFTER", "0") or 0)
    STATE_DIR.mkdir(exist_ok=True)
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
            "CDCSYNC_LOG_FORMAT": "text",
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
        with worker(env):
            changes(dynamodb)
            deadline = time.monotonic() + 60
            while not show(dynamodb, client, metrics_url) and time.monotonic() < deadline:
                time.sleep(2)
            say(
                "\nsyncing live; change the table from another terminal and watch the index follow:\n"
                "  .venv/bin/python -m demo.change put 42 ada ada@example.com\n"
                "  .venv/bin/python -m demo.change update 42 --email ada@lovelace.dev\n"
                "  .venv/bin/python -m demo.change ban 42\n"
                "  .venv/bin/python -m demo.change delete 42\n"
                f"  curl -s {metrics_url} | grep cdcsync_\n"
                "Ctrl-C stops everything."
            )
            started = time.monotonic()
            try:
                while not exit_after or time.monotonic() - started < exit_after:
                    time.sleep(min(10.0, exit_after or 10.0))
                    show(dynamodb, client, metrics_url)
            except KeyboardInterrupt:
                say("\nstopping")
    (STATE_DIR / "state.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
