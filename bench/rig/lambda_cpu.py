"""The Lambda handler's warm CPU per record, cdcsync beside the naive handler, on the rig's sink.

    python bench/rig/lambda_cpu.py SINK_URL [--records 20000] [--batch 100]

The history, the naive handler and the mapping are bench/lambda_e2e.py's (imported, not copied):
each batch goes to both handlers in turn (who goes first alternates); the first invocation of
each is left out (cold: clients, the version probe). CPU is ``time.process_time()`` of this
process around each call, so the sink's CPU is not counted. Prints one JSON line, with whether
each index equals the history's final table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
# The cdcsync measured: RIG_CDCSYNC_REPO's (bench/capacity.py --cdcsync-repo), else this checkout's.
sys.path[:0] = [os.environ.get("RIG_CDCSYNC_REPO", str(BENCH.parent)), str(BENCH)]

import lambda_e2e  # noqa: E402 - bench/lambda_e2e.py (history, naive handler, mapping); imports cdcsync first
from opensearchpy import OpenSearch  # noqa: E402

from cdcsync.entrypoints.aws_lambda import build_runtime  # noqa: E402
from cdcsync.metrics import EmfMetrics  # noqa: E402
from cdcsync.settings import load_settings  # noqa: E402


def state_matches(client: OpenSearch, index: str, final: dict[str, Any]) -> bool:
    docs = client.transport.perform_request("GET", "/_rig/state", params={"index": index})["docs"]
    return {doc_id: doc["source"] for doc_id, doc in docs.items()} == final


def measure(url: str, records: int, batch: int) -> dict[str, Any]:
    history = lambda_e2e.make_history(records, 50)
    gc.collect()
    gc.freeze()
    batches = [history.records[i : i + batch] for i in range(0, records, batch)]
    client = OpenSearch(hosts=[url], timeout=60)
    run = f"lambda-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as null:
        mapping = Path(tmp) / "users.yaml"
        body = json.dumps(lambda_e2e.INDEX_BODY)
        mapping.write_text(
            lambda_e2e.MAPPING.format(index=f"{run}-cdcsync", body=body, skip_unchanged="true")
        )
        for name in ("cdcsync", "naive"):
            client.indices.create(index=f"{run}-{name}", body=lambda_e2e.INDEX_BODY)
        settings = load_settings(
            mappings=mapping, opensearch_url=url, dlq=f"file://{tmp}/dlq.jsonl", _env_file=None
        )
        runtime = build_runtime(
            settings, session=lambda_e2e.fake_aws_session(), metrics=EmfMetrics(stream=null)
        )
        handlers = {"cdcsync": runtime.handle, "naive": lambda_e2e.NaiveHandler(client, f"{run}-naive")}
        cpu = dict.fromkeys(handlers, 0.0)
        timed = dict.fromkeys(handlers, 0)
        for number, records_batch in enumerate(batches):
            for name in list(handlers)[:: 1 if number % 2 else -1]:
                started = time.process_time()
                answer = handlers[name]({"Records": records_batch}, lambda_e2e.FakeContext())
                if number:  # the first invocation is the cold one
                    cpu[name] += time.process_time() - started
                    timed[name] += len(records_batch)
                if answer["batchItemFailures"]:
                    raise RuntimeError(f"{name} handler reported failures: {answer['batchItemFailures'][:3]}")
    return {
        "cdcsync_us_per_record": cpu["cdcsync"] / timed["cdcsync"] * 1e6,
        "naive_us_per_record": cpu["naive"] / timed["naive"] * 1e6,
        "records": records,
        "converged": state_matches(client, f"{run}-cdcsync", history.final),
        "naive_converged": state_matches(client, f"{run}-naive", history.final),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("sink_url")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(measure(args.sink_url, args.records, args.batch)), flush=True)


if __name__ == "__main__":
    main()
