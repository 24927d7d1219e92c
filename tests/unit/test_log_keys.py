"""``CDCSYNC_LOG_KEYS``: a record line's key as it is, as a stable hash, or not at all."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest

from cdcsync.logs import LogFormat, LogKeys, configure_logging, key_hash, record_fields

NOW = 1_714_564_800.123  # 2024-05-01T12:00:00.123Z
TS = "2024-05-01T12:00:00.123Z"
log = logging.getLogger("cdcsync.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put the root logger back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _freeze(record: logging.LogRecord) -> bool:
    record.created = NOW
    return True


def _line(format: LogFormat, keys: LogKeys, message: str, document_id: str | None = "7") -> str:
    """One record line logged through configure_logging with ``keys``."""
    stream = io.StringIO()
    configure_logging(format, "INFO", stream=stream, keys=keys)
    (handler,) = logging.getLogger().handlers
    handler.addFilter(_freeze)
    fields = record_fields("Users", {"UserId": 7}, "111", document_id=document_id)
    log.warning("%s", message, extra=fields)
    return stream.getvalue().rstrip("\n")


HASH = key_hash("Users", {"UserId": 7})
MESSAGE = "dead letter: failed to parse field [Age] in document with id '7'. (status 400)"
HIDDEN = "dead letter: failed to parse field [Age] in document with id '[hidden]'. (status 400)"


@pytest.mark.parametrize(
    ("keys", "json_line", "text_line"),
    [
        pytest.param(
            "plain",
            {"message": MESSAGE, "table": "Users", "key": {"UserId": 7}, "seq": "111"},
            f"{MESSAGE} table=Users key=UserId=7 seq=111",
            id="plain",
        ),
        pytest.param(
            "hash",
            {"message": HIDDEN, "table": "Users", "seq": "111", "key_hash": HASH},
            f"{HIDDEN} table=Users seq=111 key_hash={HASH}",
            id="hash",
        ),
        pytest.param(
            "none",
            {"message": HIDDEN, "table": "Users", "seq": "111"},
            f"{HIDDEN} table=Users seq=111",
            id="none",
        ),
    ],
)
def test_configure_logging_log_keys_shapes_record_lines(
    keys: LogKeys, json_line: dict[str, str], text_line: str
) -> None:
    # WHEN a record line is logged in JSON and in text
    as_json = json.loads(_line("json", keys, MESSAGE))
    as_text = _line("text", keys, MESSAGE)
    # THEN the key is there as it is, as key_hash, or not at all; the quoted id goes with it
    assert as_json == {"ts": TS, "level": "WARNING", "logger": "cdcsync.test", **json_line}
    assert as_text == f"{TS} WARNING cdcsync.test: {text_line}"


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        pytest.param("delete id 7 from users by hand", "delete id [hidden] from users by hand", id="bare"),
        pytest.param(
            'document with id "7" refused', 'document with id "[hidden]" refused', id="double-quoted"
        ),
        pytest.param("document with id '70' refused", "document with id '70' refused", id="another-id"),
        pytest.param("7 attempts, status 400", "7 attempts, status 400", id="not-an-id"),
        pytest.param(
            "routing_missing_exception: routing is required for [users]/[7] (status 400)",
            "routing_missing_exception: routing is required for [users]/[hidden] (status 400)",
            id="bracketed",
        ),
        pytest.param(
            "document_missing_exception: [7]: document missing (status 404)",
            "document_missing_exception: [hidden]: document missing (status 404)",
            id="bracketed-first",
        ),
        pytest.param(
            "document_missing_exception: [70]: document missing (status 404)",
            "document_missing_exception: [70]: document missing (status 404)",
            id="bracketed-another-id",
        ),
    ],
)
def test_configure_logging_log_keys_none_hides_only_the_document_id(message: str, shown: str) -> None:
    assert json.loads(_line("json", "none", message))["message"] == shown


@pytest.mark.parametrize("keys", ["hash", "none"])
def test_configure_logging_log_keys_below_plain_hides_an_id_of_any_characters(keys: LogKeys) -> None:
    # GIVEN a document id made of an e-mail address key, which OpenSearch quotes in brackets
    message = "routing is required for [users]/[ada+1@example.com] and for id 'ada+1@example.com'"
    # WHEN logged below plain THEN both forms are hidden; plain shows them
    line = json.loads(_line("json", keys, message, document_id="ada+1@example.com"))
    assert line["message"] == "routing is required for [users]/[hidden] and for id '[hidden]'"
    assert json.loads(_line("json", "plain", message, document_id="ada+1@example.com"))["message"] == message


def test_configure_logging_log_keys_hash_line_without_key_adds_no_hash() -> None:
    # GIVEN a shard's line: a record identity without an item key
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream, keys="hash")
    log.warning("cannot checkpoint", extra=record_fields("Users", {}, "111", shard="shardId-1"))
    line = json.loads(stream.getvalue())
    assert (line["table"], line["seq"], line["shard"]) == ("Users", "111", "shardId-1")
    assert "key" not in line
    assert "key_hash" not in line


@pytest.mark.parametrize(
    ("table", "keys", "expected"),
    [
        pytest.param("Users", {"UserId": 7}, "a6b9deb0f6619071", id="number"),
        pytest.param("Orders", {"UserId": 7}, "70808a0c846d614c", id="same-key-other-table"),
        pytest.param(
            "Users", {"Sk": "a", "Pk": Decimal("0.10000000000000000001")}, "b1bb06608b59bfd0", id="exact"
        ),
        pytest.param(
            "Users", {"Pk": Decimal("0.10000000000000000001"), "Sk": "a"}, "b1bb06608b59bfd0", id="order"
        ),
    ],
)
def test_key_hash_is_stable_exact_and_per_table(table: str, keys: dict[str, object], expected: str) -> None:
    # Pinned values: the hash must not change between versions, hosts or processes.
    assert key_hash(table, keys) == expected
