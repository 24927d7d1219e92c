"""Log lines: one JSON object a line (default) or text, with a record's identity and no secrets.

JSON: ``{"ts": "2024-05-01T12:00:00.123Z", "level": "WARNING", "logger": "cdcsync.pipeline",
"message": "...", "table": "Users", "key": {"UserId": "1"}, "seq": "111"}``; an exception adds
``"exception"`` (the traceback text). Text: ``2024-05-01T12:00:00.123Z WARNING cdcsync.pipeline:
... table=Users key=UserId=1 seq=111``. Fields passed with ``extra=`` appear in both.

Decisions:
- Logs go to stderr: stdout carries command output (``cdcsync filters`` prints JSON to pipe
  somewhere) and, in Lambda, the EMF metric lines. Lambda sends both streams to CloudWatch Logs.
- ``configure_logging`` replaces the root logger's handlers: the Lambda runtime installs its own,
  and a second handler would print every line twice.
- The ``opensearch`` logger writes one INFO line per HTTP request; it is held at WARNING unless
  the level is DEBUG (the metrics count requests already).
- Secrets are masked by a filter on our handler, so third-party log lines are covered too: values
  of extra fields named like password/secret/token/authorization, ``user:pass@`` in URLs, and
  ``password=...``-style pairs and Authorization headers in messages, extra strings and tracebacks.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["json", "text"]

HANDLER_NAME = "cdcsync"
MASK = "***"
_CHATTY_LOGGERS = ("opensearch", "botocore", "urllib3")  # a line per request or credential lookup
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",  # Python 3.12+
}
_CORE_FIELDS = ("ts", "level", "logger", "message")

_SECRET_NAME = re.compile(r"pass(?:word|wd)?|secret|token|authori[sz]ation|api[_-]?key|credential", re.I)
_SENSITIVE_KEY = r"[\w.-]*?(?:password|passwd|secret|token|api[_-]?key)"
_TEXT_SECRETS = (
    # https://user:pass@host -> https://***@host; user info ends at the URL's last @ (a password may
    # hold @ / ? #, a host never holds an @), as cdcsync.urls.origin reads it
    (re.compile(r"(?<=//)[^\s\"'<>]*@"), MASK + "@"),
    # password=hunter2, db_token=abc (query strings, key=value log lines)
    (re.compile(rf"(?i)\b({_SENSITIVE_KEY})=[^\s&,;]+"), rf"\1={MASK}"),
    # 'password': 'hunter2', "api_key": "abc" (dict reprs and JSON in messages)
    (
        re.compile(rf"""(?i)(["']{_SENSITIVE_KEY}["']\s*:\s*)(["'])(?:(?!\2).)*\2"""),
        rf"\1\2{MASK}\2",
    ),
    # Authorization: Basic dXNlcjpwYXNz / Bearer ... / AWS4-HMAC-SHA256 Credential=..., Signature=...
    (re.compile(r"""(?i)\b(authorization["']?\s*[:=]\s*["']?)[^\n"']+"""), rf"\1{MASK}"),
)


def configure_logging(format: LogFormat, level: str, *, stream: TextIO | None = None) -> None:
    """Send every log line through one handler on the root logger; safe to call again.

    ``stream`` defaults to ``sys.stderr``. Raises ValueError for an unknown level name.
    """
    levelno = logging.getLevelNamesMapping().get(level.upper())
    if levelno is None:
        raise ValueError(
            f'log level "{level}" is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL; '
            "set CDCSYNC_LOG_LEVEL to one of them"
        )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)  # not closed: the Lambda runtime's handler is not ours to close
    root.addHandler(handler)
    root.setLevel(levelno)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if levelno <= logging.DEBUG else logging.WARNING)
    # opensearch-py logs every failed request at WARNING with a traceback; the bulk writer already
    # says what failed and what happens next, once per request, with the record's identity.
    if levelno > logging.DEBUG:
        logging.getLogger("opensearch").setLevel(logging.ERROR)


def record_fields(
    table: str, keys: Mapping[str, Any], sequence_number: str | None, shard: str | None = None
) -> dict[str, Any]:
    """A record's identity for ``extra=``: ``table``, ``key`` and, when known, ``seq`` and ``shard``."""
    fields: dict[str, Any] = {"table": table, "key": dict(keys)}
    if sequence_number is not None:
        fields["seq"] = sequence_number
    if shard is not None:
        fields["shard"] = shard
    return fields


def redact_text(text: str) -> str:
    """``text`` with credentials in URLs, ``password=...`` pairs and Authorization values masked."""
    for pattern, replacement in _TEXT_SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(name: str, value: Any) -> Any:
    if _SECRET_NAME.search(name):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: _redact_value(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", item) for item in value]
    return value


class SecretFilter(logging.Filter):
    """Masks secrets in the message and extra fields before any formatter sees the record.

    The record is changed in place (message merged with its args, extras replaced by masked copies):
    every handler after this one sees the masked form, and the caller's dicts stay untouched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        for name, value in extra_fields(record).items():
            setattr(record, name, _redact_value(name, value))
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller attached with ``extra=``, in the order given."""
    return {
        name: value
        for name, value in vars(record).items()
        if name not in _RECORD_ATTRIBUTES and not name.startswith("_")
    }


def format_timestamp(created: float) -> str:
    """Epoch seconds -> ``2024-05-01T12:00:00.123Z`` (UTC, milliseconds)."""
    seconds, millis = divmod(round(created * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits (e.g. a sequence number passed as int); the
        # standard library writes them, slower, rather than losing the log line.
        return json.dumps(value, default=str, ensure_ascii=False)


class _Formatter(logging.Formatter):
    def _trailer(self, record: logging.LogRecord) -> tuple[str | None, str | None]:
        """Exception and stack text, masked (a connection error may print the URL it used)."""
        exception = record.exc_text
        if exception is None and record.exc_info:
            exception = self.formatException(record.exc_info)
        stack = self.formatStack(record.stack_info) if record.stack_info else None
        return (
            redact_text(exception) if exception else None,
            redact_text(stack) if stack else None,
        )


class JsonFormatter(_Formatter):
    """One JSON object per line; core fields first, then extras; a core name is never overridden."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": format_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in extra_fields(record).items():
            payload.setdefault(name, value)
        exception, stack = self._trailer(record)
        if exception:
            payload["exception"] = exception
        if stack:
            payload["stack"] = stack
        return _json(payload)


class TextFormatter(_Formatter):
    """``TS LEVEL LOGGER: MESSAGE name=value ...`` with the traceback on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{format_timestamp(record.created)} {record.levelname} {record.name}: {record.getMessage()}",
            *(f"{name}={_text_value(value)}" for name, value in extra_fields(record).items()),
        ]
        line = " ".join(parts)
        exception, stack = self._trailer(record)
        return "\n".join(part for part in (line, exception, stack) if part)


def _text_value(value: Any) -> str:
    """The value quoted (JSON string) when it has spaces or quotes, so ``name=value`` pairs still
    split on spaces."""
    text = _plain_text(value)
    if not text or any(char.isspace() or char in "\"'" for char in text):
        return _json(text)
    return text


def _plain_text(value: Any) -> str:
    """``UserId=1,Sk=a`` for a key mapping, the value itself for a string, JSON otherwise."""
    if isinstance(value, Mapping):
        return ",".join(f"{name}={_plain_text(item)}" for name, item in value.items())
    if isinstance(value, str):
        return value
    return _json(value)


DEAD_LETTER_LINES_PER_MINUTE = 5


@dataclass
class _Minute:
    started: float
    logged: int = 0
    unreported: int = 0  # dead letters past the limit not yet named in a line
    reported: bool = False  # a count line was written in this minute already


@dataclass
class DeadLetterLog:
    """One WARNING line per dead letter, at most ``limit`` a minute per table and reason.

    A poison flood (a mapping error, a field OpenSearch cannot parse) must not drown the log: the
    first ``limit`` dead letters of a (table, reason) in a minute get their line; the rest are
    counted, and ``flush`` (the pipeline calls it after each batch) names them in one line: once
    as soon as a batch had any (so a Lambda invocation says it), then once when the minute ends if
    more came. So a (table, reason) writes at most ``limit + 2`` lines a minute. The minute starts
    at its first dead letter. Every dead letter is still stored and counted in
    ``cdcsync_dlq_records_total``; the lines are for the person reading the log.
    """

    logger: logging.Logger
    limit: int = DEAD_LETTER_LINES_PER_MINUTE
    window_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _minutes: dict[tuple[str, str], _Minute] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def warn(self, table: str, reason: str, message: str, fields: Mapping[str, Any]) -> None:
        """Log ``message`` (``fields`` as ``extra=``) unless (table, reason) used up this minute's lines."""
        with self._lock:
            now = self.clock()
            key = (table, reason)
            minute = self._minutes.get(key)
            if minute is not None and now - minute.started >= self.window_seconds:
                self._report(key, minute)
                minute = None
            if minute is None:
                minute = self._minutes[key] = _Minute(now)
            if minute.logged < self.limit:
                minute.logged += 1
                self.logger.warning("%s", message, extra=dict(fields))
            else:
                minute.unreported += 1

    def flush(self) -> None:
        """Name the dead letters that got no line of their own: those of ended minutes, and the
        first ones of a minute still running."""
        with self._lock:
            now = self.clock()
            for key, minute in list(self._minutes.items()):
                if now - minute.started >= self.window_seconds:
                    self._report(key, minute)
                    del self._minutes[key]
                elif minute.unreported and not minute.reported:
                    self._report(key, minute)
                    minute.reported = True

    def _report(self, key: tuple[str, str], minute: _Minute) -> None:
        if not minute.unreported:
            return
        table, reason = key
        self.logger.warning(
            "%d more dead letters in table %s for reason %s were not logged one by one (a line each "
            "for the first %d a minute per table and reason); cdcsync dlq show lists them",
            minute.unreported,
            table,
            reason,
            self.limit,
            extra={"table": table, "reason": reason, "count": minute.unreported},
        )
        minute.unreported = 0
