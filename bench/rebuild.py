"""``cdcsync rebuild`` of a table under a live Lambda writer: wall time and dual-write overhead.

    .venv/bin/python bench/rebuild.py [--items 10000] [--refresh 2] [--batch 50] [--baseline-seconds 10]

One moto_server holds a table of ``--items`` users, backfilled into osmem-server behind the alias
``users`` (``users-000001``). A thread plays the Lambda handler (``build_runtime``, the deployed
code path): stream batches of ``--batch`` MODIFY records, one every 50 ms. Measured in this order:

- baseline: the writer alone for ``--baseline-seconds``: bulk actions per live record (1.00 unless
  records are coalesced or dead-lettered);
- rebuild: ``Rebuild.start`` (the CLI's ``cdcsync rebuild --table Users --sample 1000``) with the
  mapping's Name changed from keyword to text, the writer still running: wall time (the wait for
  the writers, ``--refresh`` + 5 s, included), bulk actions per live record over the rebuild and
  the peak over one batch.

Bulk actions of the writer = its records written (``cdcsync_records_total``: indexed, deleted,
stale; each was one action) + ``cdcsync_rebuild_dual_writes_total`` (the copies). The dual-write
overhead ratio is the rebuild's actions per record over the baseline's. The writer changes the
table before each batch, as DynamoDB would, so verify compares the new index with a live table.
Not run by ``make test``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]  # tests.support is not installed: run from a checkout

from cdcsync.backfill import run_backfill  # noqa: E402
from cdcsync.entrypoints.aws_lambda import build_runtime  # noqa: E402
from cdcsync.metrics import NullMetrics, PrometheusMetrics  # noqa: E402
from cdcsync.rebuild.run import WAIT_MARGIN_SECONDS, Rebuild  # noqa: E402
from cdcsync.services import Services  # noqa: E402
from cdcsync.settings import Settings, load_settings  # noqa: E402
from cdcsync.sink.indices import apply_indices  # noqa: E402
from tests.support.records import stream_record  # noqa: E402
from tests.support.servers import moto_server, osmem_server  # noqa: E402

TABLE = "Users"
STREAM_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/stream/2026-01-01T00:00:00.000"
MAPPING = (
    'table: Users\nindex: users\nid: "{UserId}"\n'
    "index_body:\n  mappings: {properties: {Name: {type: keyword}}}\n"
)
SENT = ("indexed", "deleted", "stale")  # outcomes whose record was one bulk action


class Writer:
    """The Lambda handler under a steady stream of MODIFY batches, counting records and actions."""

    def __init__(self, settings: Settings, items: int, batch: int) -> None:
        self.metrics = PrometheusMetrics()
        self.runtime = build_runtime(settings, session=boto3.Session(), metrics=self.metrics)
        self.items, self.batch = items, batch
        self.records = 0
        self.peak = 0.0  # the most bulk actions per record of one batch
        self.sequence = 10**20
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.dynamodb = boto3.client("dynamodb")

    def actions(self) -> float:
        registry = self.metrics.registry
        written = sum(
            registry.get_sample_value(
                "cdcsync_records_total", {"table": TABLE, "event": "MODIFY", "outcome": outcome}
            )
            or 0.0
            for outcome in SENT
        )
        return written + (registry.get_sample_value("cdcsync_rebuild_dual_writes_total") or 0.0)

    def _run(self) -> None:
        while not self.stop.is_set():
            seconds = int(time.time())
            records: list[dict[str, Any]] = []
            items: list[dict[str, Any]] = []
            for _ in range(self.batch):
                self.sequence += 1
                key = (self.sequence * 7919) % self.items  # 7919 is prime: a batch never repeats a key
                item = {"UserId": key, "Name": f"u {self.sequence}"}
                items.append(item)
                records.append(
                    stream_record(
                        "MODIFY",
                        {"UserId": key},
                        item,
                        item,
                        arn=STREAM_ARN,
                        sequence=str(self.sequence),
                        seconds=seconds,
                    )
                )
            for start in range(0, len(records), 25):  # the table changes too, as the stream says
                self.dynamodb.batch_write_item(
                    RequestItems={
                        TABLE: [
                            {
                                "PutRequest": {
                                    "Item": {"UserId": {"N": str(r["UserId"])}, "Name": {"S": r["Name"]}}
                                }
                            }
                            for r in items[start : start + 25]
                        ]
                    }
                )
            before = self.actions()
            answer = self.runtime.handle({"Records": records}, None)
            if answer != {"batchItemFailures": []}:
                raise SystemExit(f"the writer's batch failed: {answer}")
            self.peak = max(self.peak, (self.actions() - before) / len(records))
            self.records += len(records)
            time.sleep(0.05)

    def window(self) -> tuple[int, float]:
        """(records, actions) so far, to subtract."""
        return self.records, self.actions()


def load_table(items: int) -> None:
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "UserId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "UserId", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for start in range(0, items, 25):
        dynamodb.batch_write_item(
            RequestItems={
                TABLE: [
                    {"PutRequest": {"Item": {"UserId": {"N": str(key)}, "Name": {"S": f"user {key}"}}}}
                    for key in range(start, min(start + 25, items))
                ]
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--refresh", type=float, default=2.0, help="CDCSYNC_TARGETS_REFRESH_SECONDS")
    parser.add_argument("--batch", type=int, default=50, help="stream records per Lambda batch")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    args = parser.parse_args()
    for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        os.environ.setdefault(name, value)
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    with moto_server() as moto, osmem_server() as url, tempfile.TemporaryDirectory() as folder:
        os.environ["AWS_ENDPOINT_URL"] = moto
        tmp = Path(folder)
        load_table(args.items)
        mappings = tmp / "users.yaml"
        mappings.write_text(MAPPING)

        def settings(dlq: str) -> Settings:
            return load_settings(
                mappings=mappings, opensearch_url=url, dlq=f"file://{tmp}/{dlq}.jsonl",
                checkpoints=f"file://{tmp}/checkpoints.json", targets_refresh_seconds=args.refresh,
                _env_file=None,
            )  # fmt: skip

        first = settings("dlq")
        services = Services(first, session=boto3.Session(), metrics=NullMetrics())
        apply_indices(services.client, services.mappings)
        run_backfill(first, TABLE, services=services, out=io.StringIO())
        writer = Writer(first, args.items, args.batch)
        writer.thread.start()
        records0, actions0 = writer.window()
        time.sleep(args.baseline_seconds)
        records1, actions1 = writer.window()
        baseline = (actions1 - actions0) / max(records1 - records0, 1)
        baseline_peak, writer.peak = writer.peak, 0.0
        mappings.write_text(MAPPING.replace("keyword", "text"))
        out = io.StringIO()
        rebuild = Rebuild(
            Services(settings("rebuild-dlq"), session=boto3.Session(), metrics=NullMetrics()), TABLE, out=out
        )
        started = time.monotonic()
        rebuild.start(sample=1000, keep_old_seconds=3600)
        wall = time.monotonic() - started
        records2, actions2 = writer.window()
        writer.stop.set()
        writer.thread.join()
        during = (actions2 - actions1) / max(records2 - records1, 1)
        print(out.getvalue(), end="")
        print(f"items: {args.items}; writer: {args.batch} records per batch, refresh {args.refresh:g} s")
        print(
            f"baseline: {records1 - records0} live records in {args.baseline_seconds:g} s, "
            f"{baseline:.2f} bulk actions per record (peak batch {baseline_peak:.2f})"
        )
        print(
            f"rebuild: wall {wall:.1f} s (of which the wait for the writers "
            f"{args.refresh + WAIT_MARGIN_SECONDS:g} s), {records2 - records1} live records, "
            f"{during:.2f} bulk actions per record (peak batch {writer.peak:.2f})"
        )
        print(f"dual-write overhead ratio (rebuild / baseline): {during / baseline:.2f}")


if __name__ == "__main__":
    main()
