"""What a dead letter keeps (``CDCSYNC_DLQ_CONTENT``), and who may read the files it lands in.

A real rejected record: the Lambda handler writes a user profile whose ``Age`` OpenSearch (the
local server) refuses with ``mapper_parsing_exception``, quoting the value. The mapping excludes
``PasswordHash`` on purpose; the dead letter in the file queue and in ``cdcsync dlq show --json``
must not bring it back, nor quote values, unless ``full`` is asked for.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from cdcsync.dlq.letter import DeadLetter
from cdcsync.entrypoints.cli import main
from tests.integration.lambda_world import LambdaWorld, WorldFactory

T0 = 1_700_000_000
PROFILE = {
    "UserId": 7,
    "Username": "ada",
    "Email": "ada@example.com",
    "Age": "thirty",
    "PasswordHash": "pbkdf2$600000$s3cr3t",
}
MAPPING = "fields: {exclude: [PasswordHash]}\n"
REDACTED_REASON = (
    "failed to parse field [Age] of type [long] in document with id '7'. Preview of field's value: "
    "[redacted] caused by illegal_argument_exception: For input string: [redacted]"
)
FULL_REASON = (
    "failed to parse field [Age] of type [long] in document with id '7'. Preview of field's value: "
    "'thirty' caused by illegal_argument_exception: For input string: \"thirty\""
)
AGE_IS_A_NUMBER = {"mappings": {"properties": {"Age": {"type": "long"}}}}
MakeWorld = Callable[..., LambdaWorld]


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, so a mode of 0644 would show (the process-wide mask is put back after)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def make(
    world_factory: WorldFactory,
    tmp_path: Path,
    opensearch: OpenSearch,
    opensearch_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> MakeWorld:
    """A Lambda world with ``settings``; the CLI reads the same ones from the environment."""

    def build(**settings: Any) -> LambdaWorld:
        world = world_factory(mapping=MAPPING, **settings)
        opensearch.indices.create(
            index=world.index, body={"mappings": {"properties": {"Age": {"type": "long"}}}}
        )
        monkeypatch.setenv("CDCSYNC_MAPPINGS", str(tmp_path / "mappings.yaml"))
        monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", opensearch_url)
        monkeypatch.setenv("CDCSYNC_DLQ", f"file://{world.dlq_path}")
        for name, value in settings.items():
            monkeypatch.setenv(f"CDCSYNC_{name.upper()}", str(value))
        monkeypatch.chdir(tmp_path)
        return world

    return build


def _reject(world: LambdaWorld) -> dict[str, Any]:
    """Send the profile as an INSERT; OpenSearch refuses its Age. Returns the record."""
    record = world.record("INSERT", 7, PROFILE, seconds=T0)
    assert world.invoke(record) == {"batchItemFailures": []}
    return record


def _shown(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The one letter ``cdcsync dlq show --json`` prints."""
    assert main(["dlq", "show", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    shown: dict[str, Any] = json.loads(line)
    return shown


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.usefixtures("umask_022")
def test_handler_rejected_record_default_content_keeps_what_the_mapping_indexes(
    make: MakeWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the default settings and a profile OpenSearch refuses, quoting the value it refused
    world = make()
    # WHEN the handler dead-letters it
    record = _reject(world)
    # THEN the files the queue created are the owner's alone from this first write on
    assert (_mode(world.dlq_path), _mode(world.dlq_path.with_name("dlq.jsonl.lock"))) == (0o600, 0o600)
    # AND the letter keeps keys plus what the mapping indexes: no PasswordHash, no value preview
    raw = world.dlq_path.read_bytes()
    assert b"PasswordHash" not in raw
    assert b"s3cr3t" not in raw
    (letter,) = world.dead_letters()
    indexed = {
        name: value for name, value in record["dynamodb"]["NewImage"].items() if name != "PasswordHash"
    }
    assert letter.record["dynamodb"]["NewImage"] == indexed
    assert letter.record["dynamodb"]["Keys"] == {"UserId": {"N": "7"}}
    assert (letter.error.status, letter.error.type, letter.error.reason) == (
        400,
        "mapper_parsing_exception",
        REDACTED_REASON,
    )
    assert (letter.keys, letter.id, letter.op, letter.mapping) == (
        {"UserId": {"N": "7"}},
        "7",
        "index",
        f"{world.table} -> {world.index}",
    )
    # AND `cdcsync dlq show --json` shows exactly that
    shown = _shown(capsys)
    assert "PasswordHash" not in json.dumps(shown)
    assert shown["error"]["reason"] == REDACTED_REASON
    assert DeadLetter.model_validate(shown) == letter


def test_handler_rejected_record_keys_content_keeps_no_image(
    make: MakeWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN CDCSYNC_DLQ_CONTENT=keys
    world = make(dlq_content="keys")
    # WHEN the handler dead-letters the profile
    record = _reject(world)
    # THEN the letter holds keys, mapping, reason and position, and no attribute of the item
    (letter,) = world.dead_letters()
    body = dict(record["dynamodb"])
    del body["NewImage"]
    assert letter.record == {**record, "dynamodb": body}
    assert letter.error.reason == REDACTED_REASON
    assert (letter.keys, letter.sequence_number, letter.mapping) == (
        {"UserId": {"N": "7"}},
        record["dynamodb"]["SequenceNumber"],
        f"{world.table} -> {world.index}",
    )
    # (the letter's random hex id may spell "ada": look everywhere else)
    stored = json.loads(world.dlq_path.read_text())
    del stored["letter_id"]
    for value in ("ada", "thirty", "s3cr3t"):
        assert value not in json.dumps(stored)
    assert _shown(capsys)["record"] == letter.record


def test_handler_rejected_record_full_content_keeps_everything_and_warns_at_start(
    make: MakeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN CDCSYNC_DLQ_CONTENT=full (debugging)
    with caplog.at_level(logging.WARNING, "cdcsync"):
        world = make(dlq_content="full")
    # THEN starting says what that means, once
    assert caplog.messages == [
        f"CDCSYNC_DLQ_CONTENT=full: dead letters in file://{world.dlq_path} keep whole records, "
        "attributes the mappings exclude and the values OpenSearch quotes included; use it only to "
        "debug, then set projected (the default) or keys"
    ]
    # WHEN the handler dead-letters the profile
    record = _reject(world)
    # THEN the letter is the record as delivered, with OpenSearch's words as they were
    (letter,) = world.dead_letters()
    assert letter.record == record
    assert letter.error.reason == FULL_REASON


def test_redrive_letter_kept_as_keys_writes_the_item_as_the_table_holds_it(
    make: MakeWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a dead letter kept as keys only, and the item since fixed in the table
    world = make(dlq_content="keys")
    _reject(world)
    world.dynamodb.put_item(
        TableName=world.table,
        Item={
            "UserId": {"N": "7"},
            "Username": {"S": "ada"},
            "Age": {"N": "30"},
            "PasswordHash": {"S": "pbkdf2$600000$s3cr3t"},
        },
    )
    # WHEN the operator redrives it
    code = main(["dlq", "redrive"])
    # THEN the item is written from the table (keys, mapping and op were enough), the letter is gone
    assert (code, capsys.readouterr().out.strip()) == (0, f"redriven 1, left 0 in file://{world.dlq_path}")
    assert world.doc("7") == {"UserId": 7, "Username": "ada", "Age": 30}
    assert world.dead_letters() == []
