"""Log lines: text at a terminal, one JSON object a line elsewhere; a record's identity, no secrets.

JSON: ``{"ts": "2024-05-01T12:00:00.123Z", "level": "WARNING", "logger": "cdcsync.pipeline",
"message": "...", "table": "Users", "key": {"UserId": "1"}, "seq": "111"}``; an exception adds
``"exception"`` (the traceback text). Text: ``2024-05-01T12:00:00.123Z WARNING cdcsync.pipeline:
... table=Users key=UserId=1 seq=111``. Fields passed with ``extra=`` appear in both.

Decisions:
- The format follows the reader unless ``CDCSYNC_LOG_FORMAT`` says otherwise: text when the log
  stream is a terminal (a person running ``cdcsync run`` or ``make demo``), JSON when it is not (a
  container, systemd, CI, Lambda: something that collects and parses lines).
- ``CDCSYNC_LOG_LEVEL=DEBUG`` is cdcsync's own debug lines: the root logger stays at INFO, so
  libraries' DEBUG lines (botocore's canonical requests and strings to sign, urllib3's connection
  pool) never show; botocore and urllib3 are held at WARNING at every level (their INFO lines are
  credential lookups and dropped connections).
- Logs go to stderr: stdout carries command output (``cdcsync filters`` prints JSON to pipe
  somewhere) and, in Lambda, the EMF metric lines. Lambda sends both streams to CloudWatch Logs.
- ``configure_logging`` replaces the root logger's handlers: the Lambda runtime installs its own,
  and a second handler would print every line twice.
- The ``opensearch`` logger writes one INFO line per HTTP request; it is held at WARNING unless
  the level is DEBUG (the metrics count requests already).
- ``CDCSYNC_LOG_KEYS`` (``plain``, ``hash``, ``none``) is a filter on our handler too: every line
  with a ``key`` field (``record_fields``) gets it as is, as ``key_hash`` (``key_hash()``, which
  ``cdcsync preview --table T --key ...`` prints) or without it, and its document id hidden.
- Secrets are masked by a filter on our handler, so third-party log lines are covered too: values
  of extra fields named like password/secret/token/authorization, ``user:pass@`` in URLs, and
  ``password=...``-style pairs, Authorization headers and ``ApiKey``/``Basic``/``Bearer`` values in
  messages, extra strings and tracebacks.
- Untrusted text stays text: item values, keys and reasons can hold terminal escape sequences and
  line breaks. Text lines escape every non-printable character (``\\x1b``, ``\\n``); JSON lines
  write them as ``\\u`` escapes, DEL, C1 and U+202E included (``cdcsync.printable``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TextIO

import orjson

from cdcsync.printable import printable, printable_json
from cdcsync.values import dump_json

LogFormat = Literal["json", "text"]
LogKeys = Literal["plain", "hash", "none"]

HANDLER_NAME = "cdcsync"
MASK = "***"
_OWN_LOGGER = "cdcsync"
_LIBRARY_LEVEL = logging.INFO  # the lowest level any library's line is written at
_CHATTY_LOGGERS = ("botocore", "urllib3")  # a line per credential lookup or connection
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",  # Python 3.12+
}
_CORE_FIELDS = ("ts", "level", "logger", "message")
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
# Chunks of ``traceback.format_exception`` whose line breaks are the traceback's own: its header,
# the separators of a chained exception, and frames (also exception groups' ``  |   File``); any
# other chunk is an exception's message or note, whose line breaks come from what it quotes.
_TRACEBACK_CHUNKS = frozenset(
    {
        "Traceback (most recent call last):\n",
        "\nThe above exception was the direct cause of the following exception:\n\n",
        "\nDuring handling of the above exception, another exception occurred:\n\n",
    }
)
_FRAME = re.compile(r'[ |+]*File "')
_DOCUMENT_ID = "_document_id"  # an extra that is never printed (``extra_fields`` skips "_" names)
KEY_HASH_DIGITS = 16
HIDDEN_ID = "[hidden]"

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
    # a header value quoted without its name: http.client's "Invalid header value b'ApiKey ...'".
    # The schemes as clients spell them (a lowercase "basic credentials" is prose, not a header).
    (re.compile(r"""\b(ApiKey|Basic|Bearer) [^\s"']+"""), rf"\1 {MASK}"),
)


def configure_logging(
    format: LogFormat | None, level: str, *, stream: TextIO | None = None, keys: LogKeys = "plain"
) -> None:
    """Send every log line through one handler on the root logger; safe to call again.

    ``format`` None: text when ``stream`` is a terminal, else JSON. ``stream`` defaults to
    ``sys.stderr``; ``keys`` is ``CDCSYNC_LOG_KEYS`` (``KeyFilter``). Raises ValueError for an
    unknown level name.
    """
    levelno = logging.getLevelNamesMapping().get(level.upper())
    if levelno is None:
        raise ValueError(
            f'log level "{level}" is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL; '
            "set CDCSYNC_LOG_LEVEL to one of them"
        )
    out = stream if stream is not None else sys.stderr
    chosen = format if format is not None else default_format(out)
    handler = logging.StreamHandler(out)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    handler.addFilter(SecretFilter())
    handler.addFilter(KeyFilter(keys))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)  # not closed: the Lambda runtime's handler is not ours to close
    root.addHandler(handler)
    root.setLevel(max(levelno, _LIBRARY_LEVEL))
    logging.getLogger(_OWN_LOGGER).setLevel(levelno)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(levelno, logging.WARNING))
    # opensearch-py logs every failed request at WARNING with a traceback; the bulk writer already
    # says what failed and what happens next, once per request, with the record's identity. At
    # DEBUG its one INFO line per request shows (the root's INFO holds its DEBUG bodies back).
    logging.getLogger("opensearch").setLevel(logging.NOTSET if levelno <= logging.DEBUG else logging.ERROR)


def default_format(stream: TextIO) -> LogFormat:
    """``text`` for a terminal, ``json`` for anything else (a pipe, a file, a closed stream)."""
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def record_fields(
    table: str,
    keys: Mapping[str, Any],
    sequence_number: str | None,
    shard: str | None = None,
    *,
    document_id: str | None = None,
) -> dict[str, Any]:
    """A record's identity for ``extra=``: ``table``, ``key`` and, when known, ``seq`` and ``shard``.

    ``keys`` are plain values. ``document_id`` (not a field of its own) names the document id the
    message may quote, which ``CDCSYNC_LOG_KEYS=hash|none`` hides as it hides the key.
    """
    fields: dict[str, Any] = {"table": table, "key": dict(keys)}
    if sequence_number is not None:
        fields["seq"] = sequence_number
    if shard is not None:
        fields["shard"] = shard
    if document_id is not None:
        fields[_DOCUMENT_ID] = document_id
    return fields


def document_ids(ids: list[str]) -> dict[str, Any]:
    """``extra=`` for a line about several documents (a bulk request): ``CDCSYNC_LOG_KEYS=hash|none``
    hides their ids in the message as it hides a record line's ``document_id``."""
    return {_DOCUMENT_ID: tuple(ids)}


def key_hash(table: str, keys: Mapping[str, Any]) -> str:
    """A short stable hash of one item's key (plain values) in ``table``: ``CDCSYNC_LOG_KEYS=hash``
    logs it as ``key_hash``, and ``cdcsync preview --table T --key ...`` prints it for the item.

    SHA-256 of the table and the key in one exact JSON spelling (names sorted, numbers exact), cut
    to 16 hex digits. A pseudonym, not a secret: whoever can guess a key can compute its hash.
    """
    canonical = dump_json([table, dict(keys)], sort_keys=True)
    return hashlib.sha256(canonical).hexdigest()[:KEY_HASH_DIGITS]


class KeyFilter(logging.Filter):
    """``CDCSYNC_LOG_KEYS``: a record line's ``key`` as it is (``plain``), as ``key_hash`` or left out.

    Below ``plain`` the document id that ``record_fields(document_id=...)`` names (or the ids
    ``document_ids`` names) is hidden in the message too, as OpenSearch quotes it: ``id '7'``,
    ``id 7``, ``[7]`` (``routing is required for [users]/[7]``, ``[7]: document missing``), as ids
    are made of keys.
    """

    def __init__(self, mode: LogKeys) -> None:
        super().__init__()
        self.mode = mode

    def filter(self, record: logging.LogRecord) -> bool:
        if self.mode == "plain":
            return True
        keys = getattr(record, "key", None)
        if isinstance(keys, Mapping):
            delattr(record, "key")
            if self.mode == "hash" and keys:
                setattr(record, "key_hash", key_hash(str(getattr(record, "table", "")), keys))  # noqa: B010
        ids = getattr(record, _DOCUMENT_ID, None)
        named = [ids] if isinstance(ids, str) else list(ids) if isinstance(ids, tuple) else []
        named = sorted({name for name in named if isinstance(name, str) and name}, key=len, reverse=True)
        if named:
            message = record.getMessage()
            any_id = "|".join(re.escape(name) for name in named)
            quoted = re.compile(rf"""(\bid (['"]?))(?:{any_id})(?=\2(?:[^\w|]|$))""")
            hidden = re.sub(rf"\[(?:{any_id})\]", HIDDEN_ID, quoted.sub(rf"\1{HIDDEN_ID}", message))
            if hidden != message:
                record.msg, record.args = hidden, ()
        return True


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
        # JSON escapes only U+0000-U+001F: DEL, C1 controls and U+202E from items would reach a
        # terminal (``kubectl logs``) raw.
        return printable_json(_json(payload))


class TextFormatter(_Formatter):
    """``TS LEVEL LOGGER: MESSAGE name=value ...`` with the traceback on the following lines.

    Messages and fields quote item values, keys and OpenSearch's reasons, which can hold anything:
    every non-printable character is escaped (``printable``), so a record's line stays one line and
    no value can clear the screen or pose as a line of its own. The traceback keeps its own line
    breaks; an exception's message, which may quote a value, stays on its line.
    """

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{format_timestamp(record.created)} {record.levelname} {record.name}: {record.getMessage()}",
            *(f"{name}={_text_value(value)}" for name, value in extra_fields(record).items()),
        ]
        exception, stack = self._trailer(record)
        trailer = [line for part in (exception, stack) if part for line in part.split("\n")]
        return "\n".join(printable(line) for line in (" ".join(parts), *trailer))

    def formatException(self, ei: _ExcInfo) -> str:  # noqa: N802 - logging's name
        """The traceback with each exception's message (and notes) escaped onto its own line."""
        if ei[1] is None:
            return super().formatException(ei)
        chunks = traceback.format_exception(ei[0], ei[1], ei[2])
        return "".join(
            chunk if chunk in _TRACEBACK_CHUNKS or _FRAME.match(chunk) else printable(chunk[:-1]) + chunk[-1:]
            for chunk in chunks
        ).removesuffix("\n")


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


@dataclass
class DeadLetterLog:
    """One WARNING line per dead letter, at most ``limit`` a minute per table and reason.

    A poison flood (a mapping error, a field OpenSearch cannot parse) must not drown the log: the
    first ``limit`` dead letters of a (table, reason) in a minute get their line; the rest are
    counted, and ``flush`` names them in one line. The pipeline flushes at the end of every batch,
    so no batch is silent about its dead letters: a Lambda invocation ends with its own lines (a
    frozen or recycled container never writes a later one), and the worker's shard threads say each
    batch's count as it ends (the coordinator flushes once more at shutdown). So a (table, reason)
    writes at most ``limit`` lines a minute, plus one count line per batch that had more dead
    letters (a batch holds up to 1,000 records: the lines stay far fewer than the letters). The
    minute starts at its first dead letter. Every dead letter is still stored and counted in
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
        """Name, one line per (table, reason), every dead letter that got no line of its own yet;
        forget the minutes that ended."""
        with self._lock:
            now = self.clock()
            for key, minute in list(self._minutes.items()):
                self._report(key, minute)
                if now - minute.started >= self.window_seconds:
                    del self._minutes[key]

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
