"""``CDCSYNC_LOG_KEYS``: item keys in record log lines, as operators read them.

The Lambda handler, configured from the environment as in Lambda, dead-letters a record against
moto and the local OpenSearch server; its JSON log line on stderr is checked, and the hash it
carries is the one ``cdcsync preview --table T --key ...`` prints for the item.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from cdcsync.entrypoints import aws_lambda
from cdcsync.entrypoints.cli import main
from tests.integration.lambda_world import FakeContext
from tests.support.records import stream_record
from tests.support.tables import create_users_table

T0 = 1_700_000_000


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The handler configures process-wide logging: put the root logger back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def table(
    unique_name: str,
    dynamodb: Any,
    opensearch: OpenSearch,
    opensearch_url: str,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """A Users table holding item 7 (whose Age OpenSearch refuses), its mapping, and the environment."""
    table = f"Users-{unique_name}"
    create_users_table(dynamodb, table)
    dynamodb.put_item(TableName=table, Item={"UserId": {"N": "7"}, "Age": {"S": "thirty"}})
    opensearch.indices.create(index=unique_name, body={"mappings": {"properties": {"Age": {"type": "long"}}}})
    mappings = tmp_path / "users.yaml"
    mappings.write_text(f'table: {table}\nindex: {unique_name}\nid: "{{UserId}}"\n')
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "CDCSYNC_MAPPINGS": str(mappings),
        "CDCSYNC_OPENSEARCH_URL": opensearch_url,
        "CDCSYNC_DLQ": f"file://{tmp_path / 'dlq.jsonl'}",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(aws_lambda, "_runtime", None)  # a fresh Lambda container
    return table


def _dead_letter_line(table: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Run the handler on item 7's INSERT; return its one dead-letter line (JSON on stderr)."""
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2026-01-01T00:00:00.000"
    record = stream_record("INSERT", {"UserId": 7}, {"UserId": 7, "Age": "thirty"}, seconds=T0, arn=arn)
    assert aws_lambda.handler({"Records": [record]}, FakeContext()) == {"batchItemFailures": []}
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (line,) = [line for line in lines if line["message"].startswith("dead letter in table")]
    return line


@pytest.mark.parametrize("mode", ["hash", "none"])
def test_handler_log_keys_below_plain_logs_no_key(
    table: str, mode: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN CDCSYNC_LOG_KEYS=hash or none
    monkeypatch.setenv("CDCSYNC_LOG_KEYS", mode)
    # WHEN the handler dead-letters item 7
    line = _dead_letter_line(table, capsys)
    # THEN the line names table, sequence number and reason, but neither the key nor the document id
    assert "key" not in line
    assert (line["table"], line["seq"], line["reason"]) == (
        table,
        "100000000000000000001",
        "mapper_parsing_exception",
    )
    assert "in document with id '[hidden]'" in line["message"]
    assert "'7'" not in line["message"]
    assert ("key_hash" in line) == (mode == "hash")


def test_handler_log_keys_hash_is_what_preview_prints_for_the_item(
    table: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN CDCSYNC_LOG_KEYS=hash, and a dead-letter line carrying a key hash
    monkeypatch.setenv("CDCSYNC_LOG_KEYS", "hash")
    logged = _dead_letter_line(table, capsys)["key_hash"]
    # WHEN the operator previews the item they suspect, as JSON and as text
    assert main(["preview", "--table", table, "--key", "UserId=7", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert main(["preview", "--table", table, "--key", "UserId=7"]) == 0
    text = capsys.readouterr().out.splitlines()[0]
    # THEN preview prints the same hash, and another item's differs
    assert shown["key_hash"] == logged
    assert text.startswith(f'item {table} {{"UserId":7}} (key hash {logged}), read ')
    assert main(["preview", "--table", table, "--key", "UserId=8", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["key_hash"] not in (logged, None)
    assert len(logged) == 16
