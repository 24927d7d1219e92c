"""Peak memory of `cdcsync run` over many shards, each with a backlog: the worst case for memory.

    .venv/bin/python bench/worker_memory.py [--shards 1,8,64] [--records 2000] [--processes 1]
                                            [--tracemalloc] [--json]

A stand-in DynamoDB + DynamoDB Streams endpoint (this file with ``--serve``, a process of its own)
serves one table whose stream has ``--shards`` open shards, each holding ``--records`` INSERT records
of ~600-byte items, generated on the fly (DescribeTable, DescribeStream, GetShardIterator,
GetRecords: at most ``Limit`` records a page, then empty pages). osmem-server is the OpenSearch. So
every shard thread of the worker has full pages to hold while the (slow) sink takes them: what the
worker keeps per shard shows in its peak RSS. ``cdcsync run`` runs as a real process (file
checkpoints); its VmHWM (peak RSS; for ``--processes N``, the largest of the processes') is read
when every record is in the index. ``--tracemalloc`` runs it under tracemalloc and prints the top
allocation sites at the peak of traced memory (slower; the RSS then includes tracemalloc's own).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]  # tests.support is not installed: run from a checkout

from tests.support.servers import free_port, osmem_server  # noqa: E402

TABLE = "Bench"
REGION = "us-east-1"
STREAM_ARN = f"arn:aws:dynamodb:{REGION}:000000000000:table/{TABLE}/stream/2024-05-01T00:00:00.000"
CREATED = 1_714_566_600  # whole seconds, as DynamoDB Streams stamps them
MAPPING = 'table: {table}\nindex: {index}\nid: "{{UserId}}"\n'

# `cdcsync run` under tracemalloc: every 2 s the top allocation sites are remembered when traced
# memory is at its highest; printed on exit.
TRACED_MAIN = """\\
import atexit, os, sys, threading, time, tracemalloc
tracemalloc.start(12)
best = [0, None]
def watch():
    while True:
        time.sleep(2)
        current, _ = tracemalloc.get_traced_memory()
        if current > best[0]:
            best[:] = [current, tracemalloc.take_snapshot()]
threading.Thread(target=watch, daemon=True).start()
atexit.register(lambda: best[1] is not None and best[1].dump(os.environ["BENCH_TRACE_FILE"]))
from cdcsync.entrypoints.cli import main
sys.exit(main(sys.argv[1:]))
"""


def print_trace(path: Path) -> None:
    """The top allocation sites of the snapshot ``cdcsync run`` dumped at its traced peak."""
    import tracemalloc  # noqa: PLC0415 - only --tracemalloc needs it

    snapshot = tracemalloc.Snapshot.load(str(path))
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    print(f"tracemalloc at the traced peak: {total / 2**20:.1f} MiB")
    for stat in snapshot.statistics("traceback")[:15]:
        print(f"{stat.size / 2**20:8.1f} MiB {stat.count:8d} blocks")
        for line in stat.traceback.format(limit=-6):
            print("        " + line)


# --- the stand-in DynamoDB / DynamoDB Streams endpoint ---------------------------------------------


def _record(shard: int, n: int) -> dict[str, Any]:
    user = shard * 1_000_000 + n
    image = {
        "UserId": {"N": str(user)},
        "Username": {"S": f"user{user}"},
        "Email": {"S": f"user{user}@example.com"},
        "Status": {"S": "active"},
        "Score": {"N": str(n * 7 % 1000)},
        "Tags": {"SS": ["a", "b", "c"]},
        "Profile": {"M": {"Bio": {"S": "x" * 300}, "Age": {"N": "42"}, "City": {"S": "Paris"}}},
    }
    return {
        "eventID": f"{shard}-{n}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": {
            "ApproximateCreationDateTime": CREATED + n // 100,
            "Keys": {"UserId": {"N": str(user)}},
            "NewImage": image,
            "SequenceNumber": f"{shard:05d}{n + 1:016d}",
            "SizeBytes": 600,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def _shard_id(n: int) -> str:
    return f"shardId-{CREATED:020d}-{n:08x}"  # as long as DynamoDB's (28 characters at least)


def serve(port: int, shards: int, records: int) -> None:
    """The stand-in endpoint until stdin closes."""

    def answer(target: str, body: dict[str, Any]) -> dict[str, Any]:
        operation = target.rsplit(".", 1)[1]
        if operation == "DescribeTable":
            return {
                "Table": {
                    "TableName": TABLE,
                    "TableStatus": "ACTIVE",
                    "TableArn": f"arn:aws:dynamodb:{REGION}:000000000000:table/{TABLE}",
                    "CreationDateTime": CREATED - 3600,
                    "KeySchema": [{"AttributeName": "UserId", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "UserId", "AttributeType": "N"}],
                    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
                    "LatestStreamArn": STREAM_ARN,
                }
            }
        if operation == "DescribeStream":
            start = body.get("ExclusiveStartShardId")
            ids = [_shard_id(i) for i in range(shards)]
            first = ids.index(start) + 1 if start else 0
            page = ids[first : first + int(body.get("Limit", 100))]
            description: dict[str, Any] = {
                "StreamArn": STREAM_ARN,
                "StreamStatus": "ENABLED",
                "StreamViewType": "NEW_AND_OLD_IMAGES",
                "CreationRequestDateTime": CREATED - 3600,
                "TableName": TABLE,
                "KeySchema": [{"AttributeName": "UserId", "KeyType": "HASH"}],
                "Shards": [
                    {"ShardId": i, "SequenceNumberRange": {"StartingSequenceNumber": "1"}} for i in page
                ],
            }
            if first + len(page) < len(ids):
                description["LastEvaluatedShardId"] = page[-1]
            return {"StreamDescription": description}
        if operation == "GetShardIterator":
            shard = int(body["ShardId"].rsplit("-", 1)[1], 16)
            position = 0
            if body["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER":
                position = int(body["SequenceNumber"][5:])
            return {"ShardIterator": f"{shard}:{position}"}
        if operation == "GetRecords":
            shard, position = (int(part) for part in body["ShardIterator"].split(":"))
            end = min(records, position + int(body.get("Limit", 1000)))
            page_records = [_record(shard, n) for n in range(position, end)]
            return {"Records": page_records, "NextShardIterator": f"{shard}:{end}"}
        raise ValueError(operation)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            try:
                data = json.dumps(answer(self.headers.get("X-Amz-Target", ""), body)).encode()
                status = 200
            except (ValueError, KeyError) as exc:
                data = json.dumps({"__type": "ValidationException", "message": str(exc)}).encode()
                status = 400
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.buffer.read()  # until the bench ends
    os._exit(0)


# --- the measurement ----------------------------------------------------------------------------------


def _status(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _count(url: str, index: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/{index}/_count", timeout=5) as answer:  # noqa: S310 - osmem
            return int(json.load(answer)["count"])
    except OSError:
        return 0


def measure(
    opensearch_url: str,
    shards: int,
    records: int,
    processes: int,
    *,
    traced: bool,
    timeout: float,
    hold: float = 0.0,
) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our interpreter
        [sys.executable, __file__, "--serve", str(port), str(shards), str(records)], stdin=subprocess.PIPE
    )
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        index = f"bench-{shards}-{port}"
        (work / "bench.yaml").write_text(MAPPING.format(table=TABLE, index=index))
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": REGION,
            "CDCSYNC_MAPPINGS": str(work / "bench.yaml"),
            "CDCSYNC_OPENSEARCH_URL": opensearch_url,
            "CDCSYNC_CHECKPOINTS": f"file://{work / 'checkpoints.json'}",
            "CDCSYNC_DLQ": f"file://{work / 'dlq.jsonl'}",
            "CDCSYNC_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            "CDCSYNC_LOG_FORMAT": "text",
            "CDCSYNC_LOG_LEVEL": "WARNING",
            "BENCH_TRACE_FILE": str(work / "trace.bin"),
        }
        command = ["run"] + (["--processes", str(processes)] if processes > 1 else [])
        program = ["-c", TRACED_MAIN] if traced else ["-m", "cdcsync.entrypoints.cli"]
        started = time.monotonic()
        worker = subprocess.Popen([sys.executable, *program, *command], env=env, cwd=work)  # noqa: S603
        peak: dict[int, float] = {}
        try:
            while _count(opensearch_url, index) < shards * records:
                if time.monotonic() - started > timeout or worker.poll() is not None:
                    break
                for pid in [worker.pid, *_children(worker.pid)]:
                    peak[pid] = max(peak.get(pid, 0.0), _status(pid, "VmHWM"))
                time.sleep(0.5)
            seconds = time.monotonic() - started
            hold_until = time.monotonic() + hold
            while time.monotonic() < hold_until and worker.poll() is None:  # the steady state after
                for pid in [worker.pid, *_children(worker.pid)]:
                    peak[pid] = max(peak.get(pid, 0.0), _status(pid, "VmHWM"))
                time.sleep(0.5)
            for pid in [worker.pid, *_children(worker.pid)]:
                peak[pid] = max(peak.get(pid, 0.0), _status(pid, "VmHWM"))
            written = _count(opensearch_url, index)
            final = _status(worker.pid, "VmRSS")
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=120)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            server.stdin.close()  # type: ignore[union-attr]
            server.wait(timeout=10)
        if traced and (work / "trace.bin").exists():
            print_trace(work / "trace.bin")
    return {
        "shards": shards,
        "records": shards * records,
        "written": written,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(max(peak.values(), default=0.0), 1),
        "final_rss_mb": round(final, 1),
        "processes": {str(pid): round(mb, 1) for pid, mb in peak.items()},
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", default="1,8,64", help="comma-separated shard counts")
    parser.add_argument("--records", type=int, default=2000, help="records per shard")
    parser.add_argument("--processes", type=int, default=1, help="cdcsync run --processes")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per shard count")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to go on after the last record")
    parser.add_argument("--tracemalloc", action="store_true", help="print the top allocation sites")
    parser.add_argument("--json", action="store_true", help="one JSON object per shard count")
    args = parser.parse_args()
    with osmem_server() as opensearch_url:
        for shards in (int(s) for s in args.shards.split(",")):
            row = measure(
                opensearch_url,
                shards,
                args.records,
                args.processes,
                traced=args.tracemalloc,
                timeout=args.timeout,
                hold=args.hold,
            )
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(
                    f"{row['shards']:3d} shards x {args.records} records: "
                    f"peak RSS {row['peak_rss_mb']:.0f} MB (at the end {row['final_rss_mb']:.0f} MB), "
                    f"{row['written']}/{row['records']} written in {row['seconds']:.0f} s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
