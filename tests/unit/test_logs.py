"""Log lines: exact JSON and text lines, a record's identity, one handler, no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cdcsync.logs import (
    HANDLER_NAME,
    LogFormat,
    configure_logging,
    format_timestamp,
    record_fields,
    redact_text,
)

NOW = 1_714_564_800.123  # 2024-05-01T12:00:00.123Z
TS = "2024-05-01T12:00:00.123Z"
log = logging.getLogger("cdcsync.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put the root logger back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = [logging.getLogger(name) for name in ("opensearch", "botocore", "urllib3", "cdcsync")]
    levels = [logger.level for logger in named]
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for logger, logger_level in zip(named, levels, strict=True):
        logger.setLevel(logger_level)


def _freeze(record: logging.LogRecord) -> bool:
    record.created = NOW
    return True


def _configure(format: LogFormat, level: str = "INFO") -> io.StringIO:
    """configure_logging into a buffer, with every record's time set to NOW."""
    stream = io.StringIO()
    configure_logging(format, level, stream=stream)
    (handler,) = logging.getLogger().handlers
    handler.addFilter(_freeze)
    return stream


def _fail(error: Exception) -> None:
    raise error


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


# --- line formats --------------------------------------------------------------------------------


def test_logs_json_warning_with_record_fields_writes_one_exact_line() -> None:
    # GIVEN JSON logging
    stream = _configure("json")
    # WHEN a warning about a record is logged with its identity
    log.warning(
        "sent to the DLQ: %s",
        "mapper_parsing_exception",
        extra=record_fields("Users", {"UserId": "1"}, "111", "s-1"),
    )
    # THEN it is one JSON object: core fields first, then the record's identity
    assert _lines(stream) == [
        '{"ts":"2024-05-01T12:00:00.123Z","level":"WARNING","logger":"cdcsync.test",'
        '"message":"sent to the DLQ: mapper_parsing_exception",'
        '"table":"Users","key":{"UserId":"1"},"seq":"111","shard":"s-1"}'
    ]


@pytest.mark.parametrize(
    ("fields", "suffix"),
    [
        (record_fields("Users", {"UserId": "1"}, "111"), " table=Users key=UserId=1 seq=111"),
        (
            record_fields("Orders", {"TenantId": "t1", "OrderId": 7}, "222", "shardId-9"),
            " table=Orders key=TenantId=t1,OrderId=7 seq=222 shard=shardId-9",
        ),
        (record_fields("Users", {"UserId": "1"}, None), " table=Users key=UserId=1"),
        (record_fields("Users", {"UserId": "Ann Lee"}, None), ' table=Users key="UserId=Ann Lee"'),
        ({"attempts": 3, "statuses": [429, 503], "index": None}, " attempts=3 statuses=[429,503] index=null"),
        ({}, ""),
    ],
)
def test_logs_text_extra_fields_are_appended_as_name_value_pairs(fields: dict[str, Any], suffix: str) -> None:
    # GIVEN text logging
    stream = _configure("text")
    # WHEN a line is logged with extra fields
    log.warning("record skipped", extra=fields)
    # THEN they follow the message as name=value, quoted where they contain spaces
    assert _lines(stream) == [f"{TS} WARNING cdcsync.test: record skipped{suffix}"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (record_fields("Users", {"UserId": "1"}, None), {"table": "Users", "key": {"UserId": "1"}}),
        (
            record_fields("Users", {"UserId": 1, "Sk": "a"}, "333", "s-2"),
            {"table": "Users", "key": {"UserId": 1, "Sk": "a"}, "seq": "333", "shard": "s-2"},
        ),
    ],
)
def test_record_fields_known_parts_only_returns_identity(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    # GIVEN a record's identity WHEN made into fields THEN unknown parts (None) are left out
    assert fields == expected


def test_logs_json_exception_is_one_line_with_traceback_text() -> None:
    # GIVEN JSON logging
    stream = _configure("json")
    # WHEN an exception is logged
    try:
        _fail(ValueError("boom"))
    except ValueError:
        log.exception("bulk request failed")
    # THEN it stays one line, with the traceback under "exception"
    (line,) = _lines(stream)
    entry = json.loads(line)
    assert entry["message"] == "bulk request failed"
    assert entry["level"] == "ERROR"
    assert entry["exception"].startswith("Traceback (most recent call last):\n")
    assert entry["exception"].endswith("ValueError: boom")


def test_logs_text_exception_follows_the_line() -> None:
    # GIVEN text logging
    stream = _configure("text")
    # WHEN an exception is logged
    try:
        _fail(ValueError("boom"))
    except ValueError:
        log.exception("bulk request failed", extra={"index": "users"})
    # THEN the line comes first, the traceback after it
    lines = _lines(stream)
    assert lines[0] == f"{TS} ERROR cdcsync.test: bulk request failed index=users"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"


def test_logs_json_extra_named_like_a_core_field_does_not_replace_it() -> None:
    # GIVEN JSON logging WHEN an extra field is called "level" THEN the line's level stays the real one
    stream = _configure("json")
    log.info("started", extra={"level": "fake", "ts": "fake"})
    entry = json.loads(_lines(stream)[0])
    assert (entry["level"], entry["ts"]) == ("INFO", TS)


def test_logs_json_integer_beyond_64_bits_is_still_written() -> None:
    # GIVEN JSON logging WHEN an extra holds a 40-digit integer (orjson refuses it) THEN the line is written
    stream = _configure("json")
    sequence = 10**39 + 7
    log.info("checkpoint", extra={"seq": sequence})
    assert json.loads(_lines(stream)[0])["seq"] == sequence


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (NOW, TS),
        (1_714_564_800.0004, "2024-05-01T12:00:00.000Z"),
        (1_714_564_800.9996, "2024-05-01T12:00:01.000Z"),
    ],
)
def test_format_timestamp_epoch_seconds_returns_utc_iso_with_ms(created: float, expected: str) -> None:
    # GIVEN a record time WHEN formatted THEN it is ISO-8601 UTC with milliseconds
    assert format_timestamp(created) == expected


# --- configuration -------------------------------------------------------------------------------


def test_configure_logging_replaces_runtime_handler_and_is_idempotent() -> None:
    # GIVEN a handler installed before us (as the Lambda runtime does)
    root = logging.getLogger()
    runtime_stream = io.StringIO()
    root.addHandler(logging.StreamHandler(runtime_stream))
    # WHEN logging is configured twice
    configure_logging("json", "INFO", stream=io.StringIO())
    stream = _configure("text")
    log.info("one line")
    # THEN only our last handler remains, and a message is written once, by it
    assert [handler.name for handler in root.handlers] == [HANDLER_NAME]
    assert _lines(stream) == [f"{TS} INFO cdcsync.test: one line"]
    assert runtime_stream.getvalue() == ""


@pytest.mark.parametrize(
    ("level", "written"),
    [
        ("INFO", ["info", "warning"]),
        ("warning", ["warning"]),
        ("DEBUG", ["debug", "info", "warning"]),
    ],
)
def test_configure_logging_level_drops_lower_lines(level: str, written: list[str]) -> None:
    # GIVEN a level (any case)
    stream = _configure("text", level)
    # WHEN lines of each level are logged
    log.debug("debug")
    log.info("info")
    log.warning("warning")
    # THEN only those at or above it are written
    assert [line.rsplit(": ", 1)[1] for line in _lines(stream)] == written


def test_configure_logging_unknown_level_raises_value_error() -> None:
    # GIVEN a misspelt level WHEN configured THEN the error says what was given and what to set
    message = (
        'log level "LOUD" is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL; '
        "set CDCSYNC_LOG_LEVEL to one of them"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        configure_logging("json", "LOUD")


@pytest.mark.parametrize(("level", "chatty_level"), [("INFO", logging.ERROR), ("DEBUG", logging.NOTSET)])
def test_configure_logging_holds_opensearch_request_lines_unless_debug(level: str, chatty_level: int) -> None:
    # GIVEN opensearch-py's logger, which writes one INFO line per request and a WARNING with a
    # traceback per failed request (the bulk writer already reports those, once, with context)
    stream = _configure("text", level)
    # WHEN it logs a request and a failure
    logging.getLogger("opensearch").info("POST http://127.0.0.1:9200/_bulk [status:200 request:0.004s]")
    logging.getLogger("opensearch").warning("POST http://127.0.0.1:9200/_bulk [status:N/A request:0.001s]")
    # THEN the lines are written only at DEBUG
    assert logging.getLogger("opensearch").level == chatty_level
    assert len(_lines(stream)) == (2 if level == "DEBUG" else 0)


def test_configure_logging_debug_shows_cdcsync_lines_not_botocore_signing() -> None:
    # GIVEN CDCSYNC_LOG_LEVEL=DEBUG
    stream = _configure("text", "DEBUG")
    # WHEN botocore signs a request (it logs the canonical request and string to sign at DEBUG),
    # urllib3 opens a connection, and cdcsync logs a debug line
    request = AWSRequest(method="GET", url="https://dynamodb.us-east-1.amazonaws.com/", data=b"")
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "dynamodb", "us-east-1").add_auth(request)
    logging.getLogger("urllib3.connectionpool").debug("Starting new HTTPS connection (1): example.com:443")
    log.debug("read 3 records")
    # THEN only cdcsync's line is written
    assert _lines(stream) == [f"{TS} DEBUG cdcsync.test: read 3 records"]


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as ``sys.stderr`` does in an interactive shell."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("format", "terminal", "expected"),
    [
        (None, True, f"{TS} INFO cdcsync.test: one line"),
        (None, False, f'{{"ts":"{TS}","level":"INFO","logger":"cdcsync.test","message":"one line"}}'),
        ("json", True, f'{{"ts":"{TS}","level":"INFO","logger":"cdcsync.test","message":"one line"}}'),
        ("text", False, f"{TS} INFO cdcsync.test: one line"),
    ],
)
def test_configure_logging_format_unset_follows_terminal_set_overrides(
    format: LogFormat | None, terminal: bool, expected: str
) -> None:
    # GIVEN a terminal or a pipe, and CDCSYNC_LOG_FORMAT unset or set
    stream = _Terminal() if terminal else io.StringIO()
    configure_logging(format, "INFO", stream=stream)
    logging.getLogger().handlers[0].addFilter(_freeze)
    # WHEN a line is logged THEN it is text at a terminal, JSON elsewhere, unless the format is set
    log.info("one line")
    assert _lines(stream) == [expected]


def test_configure_logging_format_unset_on_a_pty_writes_text() -> None:
    # GIVEN a real pseudo-terminal as the log stream
    controller, terminal_fd = os.openpty()
    with os.fdopen(terminal_fd, "w") as terminal, os.fdopen(controller, "rb", buffering=0) as screen:
        configure_logging(None, "INFO", stream=terminal)
        logging.getLogger().handlers[0].addFilter(_freeze)
        # WHEN a line is logged
        log.warning("one line", extra={"table": "Users"})
        terminal.flush()
        shown = screen.read(4096).decode()
    # THEN the terminal shows the text line
    assert shown == f"{TS} WARNING cdcsync.test: one line table=Users\r\n"


# --- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("connecting to https://admin:hunter2@search.example.com:443", "connecting to https://***@search.example.com:443"),
        ("GET http://search.local/_cat?password=hunter2&v=true", "GET http://search.local/_cat?password=***&v=true"),
        ("retrying with db_token=abc123, attempt 2", "retrying with db_token=***, attempt 2"),
        (
            "headers {'Authorization': 'Basic YWRtaW46aHVudGVyMg==', 'Accept': '*/*'}",
            "headers {'Authorization': '***', 'Accept': '*/*'}",
        ),
        ('body {"api_key": "k-123", "user": "ann"}', 'body {"api_key": "***", "user": "ann"}'),
        ("Authorization: Bearer eyJhbGciOi", "Authorization: ***"),
        # a header value quoted without its name (http.client's refusal of a key with a line break)
        (
            "OpenSearch does not answer (Invalid header value b'ApiKey VnVhQ2ZHY0JDZGJr\\n==')",
            "OpenSearch does not answer (Invalid header value b'ApiKey ***')",
        ),
        ("sent Basic YWRtaW46aHVudGVyMg== to search", "sent Basic *** to search"),
        ('{"headers": ["Bearer eyJhbGciOi.eyJzdWIi.c2ln"]}', '{"headers": ["Bearer ***"]}'),
        # left alone: no secret value in them
        ("token bucket empty, waiting", "token bucket empty, waiting"),
        (
            "CDCSYNC_OPENSEARCH_PASSWORD: expected a string, got a hidden value",
            "CDCSYNC_OPENSEARCH_PASSWORD: expected a string, got a hidden value",
        ),
        ("mailto:ann@example.com", "mailto:ann@example.com"),
        ("apikey credentials go to http://search:9200", "apikey credentials go to http://search:9200"),
        # an @, / ? or # in the password: user info ends at the last @ of the URL (a host never holds
        # one), so a path holding an @ is masked too (http://host/a@b): it cannot be told apart
        ("to https://admin:p@ssw0rd@search:443 now", "to https://***@search:443 now"),
        ("to https://admin:p/ss?w#rd@search:443/_bulk now", "to https://***@search:443/_bulk now"),
        ("https://a:b@h1 and https://c:d@h2", "https://***@h1 and https://***@h2"),
        ("http://host/a@b", "http://***@b"),
        ("GET https://search/_bulk?api_key=c2VjcmV0&x=1", "GET https://search/_bulk?api_key=***&x=1"),
    ],
)  # fmt: skip
def test_redact_text_masks_credentials(message: str, expected: str) -> None:
    # GIVEN a message WHEN redacted THEN credentials are masked and everything else is kept
    assert redact_text(message) == expected


@pytest.mark.parametrize("format", ["json", "text"])
def test_logs_message_with_url_credentials_args_is_masked(format: LogFormat) -> None:
    # GIVEN either format
    stream = _configure(format)
    # WHEN a URL with credentials is logged through %-args
    log.warning("cannot reach %s", "https://admin:hunter2@search.example.com")
    # THEN the password is not in the output
    output = stream.getvalue()
    assert "hunter2" not in output
    assert "https://***@search.example.com" in output


def test_logs_json_extra_fields_named_like_secrets_are_masked_and_callers_dict_kept() -> None:
    # GIVEN JSON logging and extras carrying secrets, nested too
    stream = _configure("json")
    headers = {"Authorization": "Basic YWRtaW46aHVudGVyMg==", "Accept": "application/json"}
    # WHEN they are logged
    log.info(
        "request",
        extra={
            "password": "hunter2",
            "aws_session_token": "FQoG",
            "headers": headers,
            "url": "https://admin:hunter2@host",
            "steps": [{"client_secret": "s"}],
        },
    )
    # THEN their values are masked, the structure is kept, and the caller's dict is unchanged
    entry = json.loads(_lines(stream)[0])
    assert {name: entry[name] for name in ("password", "aws_session_token", "headers", "url", "steps")} == {
        "password": "***",
        "aws_session_token": "***",
        "headers": {"Authorization": "***", "Accept": "application/json"},
        "url": "https://***@host",
        "steps": [{"client_secret": "***"}],
    }
    assert headers["Authorization"] == "Basic YWRtaW46aHVudGVyMg=="


def test_logs_text_exception_with_url_credentials_is_masked() -> None:
    # GIVEN text logging
    stream = _configure("text")
    # WHEN an exception whose message holds a URL with credentials is logged
    try:
        _fail(ConnectionError("cannot connect to https://admin:hunter2@search.example.com"))
    except ConnectionError:
        log.exception("bulk request failed")
    # THEN the traceback shows the URL without the password
    output = stream.getvalue()
    assert "hunter2" not in output
    assert output.rstrip().endswith("ConnectionError: cannot connect to https://***@search.example.com")


# --- untrusted text ------------------------------------------------------------------------------

# An item value made to clear the operator's screen and print a reassuring line of its own, then
# C1 CSI, DEL, a right-to-left override and a line separator.
FORGED = f"\x1b[2J\x1b[H\n{TS} INFO cdcsync.redrive: all dead letters redriven OK"
HOSTILE = "u\x1b[2J1\x9b\x7f\u202e\u2028"


def test_logs_text_control_characters_from_items_are_escaped() -> None:
    # GIVEN text logging
    stream = _configure("text")
    # WHEN a line about a record quotes item values in its message, its key and another field
    log.warning(
        "rejected: %s",
        FORGED,
        extra={**record_fields("Users", {"UserId": HOSTILE}, "111"), "reason": FORGED},
    )
    # THEN it stays one line, every non-printable character escaped
    assert _lines(stream) == [
        f"{TS} WARNING cdcsync.test: rejected: \\x1b[2J\\x1b[H\\n{TS} INFO cdcsync.redrive: all dead letters "
        'redriven OK table=Users key="UserId=u\\u001b[2J1\\x9b\\x7f\\u202e\\u2028" seq=111 '
        f'reason="\\u001b[2J\\u001b[H\\n{TS} INFO cdcsync.redrive: all dead letters redriven OK"'
    ]


def test_logs_text_exception_message_from_items_is_escaped_on_its_line() -> None:
    # GIVEN text logging
    stream = _configure("text")
    # WHEN an exception whose message quotes an item value is logged, with a cause
    try:
        try:
            _fail(KeyError("UserId"))
        except KeyError as cause:
            raise ValueError(f"cannot plan {FORGED}") from cause
    except ValueError:
        log.exception("planning failed")
    # THEN the traceback keeps its own lines, and the message stays on the last one, escaped
    lines = _lines(stream)
    assert lines[0] == f"{TS} ERROR cdcsync.test: planning failed"
    assert lines[1] == "Traceback (most recent call last):"
    assert "The above exception was the direct cause of the following exception:" in lines
    assert lines[-1] == (
        f"ValueError: cannot plan \\x1b[2J\\x1b[H\\n{TS} INFO cdcsync.redrive: all dead letters redriven OK"
    )
    assert all(line.isprintable() for line in lines)


def test_logs_json_control_characters_from_items_are_escaped_and_read_back() -> None:
    # GIVEN JSON logging
    stream = _configure("json")
    # WHEN a line quotes item values in its message, key and another field, with a traceback
    try:
        _fail(ValueError(HOSTILE))
    except ValueError:
        log.exception("rejected: %s", FORGED, extra={**record_fields("Users", {"UserId": HOSTILE}, "111")})
    # THEN it is one line with no raw control or invisible character, and reads back as logged
    (line,) = _lines(stream)
    assert line.isprintable()
    entry = json.loads(line)
    assert (entry["message"], entry["key"]) == (f"rejected: {FORGED}", {"UserId": HOSTILE})
    assert entry["exception"].endswith(f"ValueError: {HOSTILE}")
