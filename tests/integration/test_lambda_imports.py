"""A Lambda cold start loads what the configuration uses, when it uses it.

Each case runs a fresh interpreter, as a new Lambda container does: ``import cdcsync.aws_lambda``
and one event through ``handler`` against the local osmem-server, then reports which modules the
process holds. A stream with images needs no AWS client until a dead letter is sent: no boto3 session,
no DynamoDB client (only KEYS_ONLY records read items), no SQS or S3 client, so no ``s3transfer``
(boto3 itself imports it), and no Prometheus registry (Lambda reports EMF lines). With a ``file://``
queue, neither botocore (its exceptions are looked at when an AWS call fails) nor the dead letter's
model and content rules (``cdcsync.dlq.letter``, ``cdcsync.dlq.content``) are loaded before the first
letter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys
import cdcsync.aws_lambda
event = {"Records": [json.load(open(sys.argv[1]))]}
answer = cdcsync.aws_lambda.handler(event, None)
print(json.dumps({"answer": answer, "modules": sorted(sys.modules)}))
"""

# Never loaded by a NEW_AND_OLD_IMAGES stream without SigV4 until a dead letter is sent.
ABSENT = ["s3transfer", "boto3", "botocore.client", "botocore.session", "prometheus_client"]
# Nor, with a file:// dead-letter queue, botocore at all or the dead letter itself.
ABSENT_FILE_QUEUE = ["botocore", "cdcsync.dlq.letter", "cdcsync.dlq.content"]


def run_handler(tmp_path: Path, opensearch_url: str, index: str, **env: str) -> dict[str, Any]:
    mapping = tmp_path / "users.yaml"
    mapping.write_text(f'table: Users\nindex: {index}\nid: "{{UserId}}"\n')
    settings = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing here may reach AWS
        "CDCSYNC_MAPPINGS": str(mapping),
        "CDCSYNC_OPENSEARCH_URL": opensearch_url,
        "CDCSYNC_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO / "tests" / "fixtures" / "events" / "insert.json")],
        env=settings,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("dlq", ["file", "sqs://letters", "s3://letters/cdcsync"])
def test_handler_images_stream_without_dead_letters_loads_no_aws_client(
    tmp_path: Path, opensearch_url: str, unique_name: str, opensearch: Any, dlq: str
) -> None:
    # GIVEN a NEW_AND_OLD_IMAGES record, no SigV4, and a dead-letter queue of each kind
    queue = f"file://{tmp_path / 'dlq.jsonl'}" if dlq == "file" else dlq

    # WHEN a fresh interpreter imports the handler and handles an event that sends no dead letter
    result = run_handler(tmp_path, opensearch_url, unique_name, CDCSYNC_DLQ=queue)

    # THEN the document is written, and nothing the event did not use was loaded (a queue's AWS
    # client is made when its first letter is sent)
    assert result["answer"] == {"batchItemFailures": []}
    opensearch.indices.refresh(index=unique_name)
    assert opensearch.get(index=unique_name, id="12345")["_source"]["Username"] == "john_doe"
    loaded = set(result["modules"])
    absent = ABSENT + ABSENT_FILE_QUEUE if dlq == "file" else ABSENT
    assert [name for name in absent if name in loaded] == []


def test_handler_sigv4_loads_boto3_for_credentials(
    tmp_path: Path, opensearch_url: str, unique_name: str, opensearch: Any
) -> None:
    # GIVEN SigV4 (the one setting the first event needs AWS credentials for)
    # WHEN a fresh interpreter handles an event
    result = run_handler(
        tmp_path,
        opensearch_url,
        unique_name,
        CDCSYNC_OPENSEARCH_AUTH="sigv4",
        CDCSYNC_OPENSEARCH_ALLOW_INSECURE="true",
    )

    # THEN boto3's session is there (so the check above can see it loaded)
    assert result["answer"] == {"batchItemFailures": []}
    assert {"boto3", "botocore.session"} <= set(result["modules"])


@pytest.mark.parametrize("module", ABSENT + ABSENT_FILE_QUEUE)
def test_absent_modules_are_importable_names(module: str) -> None:
    # GIVEN each name the lazy-import check looks for; THEN it is a real module (no typo hides a load)
    __import__(module)
    assert module in sys.modules
