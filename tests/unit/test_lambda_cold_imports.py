"""What a Lambda cold start imports before its first write: only what the configuration uses.

A fresh interpreter (a new Lambda container) imports ``cdcsync.aws_lambda`` and builds what the
handler builds on its first event (settings, mappings, the pipeline with a ``file://`` dead-letter
queue), contacting nothing; the modules it then holds are checked. The same with a handled event
against a server is ``tests/integration/test_lambda_imports.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys
import cdcsync.aws_lambda
from cdcsync.entrypoints.aws_lambda import build_runtime
from cdcsync.settings import load_settings
runtime = build_runtime(load_settings())
assert runtime.pipeline.mappings.tables == ("Users",)
print(json.dumps(sorted(sys.modules)))
"""

# Each is needed only by something the first event of this configuration does not do.
NOT_IMPORTED = [
    "boto3",  # an AWS service (SigV4, an sqs:// or s3:// queue, a KEYS_ONLY read)
    "botocore",  # a failed AWS call, or a client
    "prometheus_client",  # the worker's /metrics (Lambda writes EMF lines)
    "cdcsync.dlq.letter",  # the first dead letter (its pydantic model)
    "cdcsync.dlq.content",  # the first dead letter (what it keeps)
    "cdcsync.dlq.sqs",  # an sqs:// queue
    "cdcsync.dlq.s3",  # an s3:// queue
    "cdcsync.entrypoints.export_lambda",  # the backfill state machine's handlers
    "cdcsync.checkpoint",  # the worker and backfill
    "cdcsync.worker",
    "cdcsync.backfill",
    "cdcsync.verify",
    "cdcsync.source.fast_reads",
]


def test_lambda_cold_start_file_queue_imports_nothing_the_first_event_does_not_use(tmp_path: Path) -> None:
    # GIVEN a Users mapping, a file:// dead-letter queue and no other setting
    (tmp_path / "users.yaml").write_text('table: Users\nindex: users\nid: "{UserId}"\n')
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "AWS_REGION": "us-east-1",
        "CDCSYNC_MAPPINGS": str(tmp_path / "users.yaml"),
        "CDCSYNC_DLQ": f"file://{tmp_path / 'dlq.jsonl'}",
    }

    # WHEN a fresh interpreter imports the handler and builds its runtime
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # THEN none of the modules only other configurations, commands or a dead letter need is loaded
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert [name for name in NOT_IMPORTED if name in loaded] == []


@pytest.mark.parametrize("module", NOT_IMPORTED)
def test_lambda_cold_start_not_imported_names_are_real_modules(module: str) -> None:
    # GIVEN each name the check above looks for; THEN it is a module (no typo hides a load)
    __import__(module)
    assert module in sys.modules
