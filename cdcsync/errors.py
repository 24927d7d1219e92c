"""Every error cdcsync raises, split by what the caller does next.

    CdcsyncError
    ├── ConfigError            fix the configuration; the CLI exits 2
    │   ├── SettingsError      a CDCSYNC_* setting is invalid
    │   ├── MappingError       one or more mapping files are invalid (all problems, with file:line)
    │   └── IndexTemplateError OpenSearch refused an index template a mapping needs (indices apply)
    ├── PatternError           a filter/where pattern is malformed (wrapped into MappingError on load)
    ├── RecordError            this record cannot be planned or written: it goes to the dead-letter queue
    │   └── PlanError          the planner could not build an action (missing attribute, bad version, ...);
    │                          its reason (plan_error, id_too_long, unknown_location) labels the dead letter
    ├── TransientError         the sink may succeed later: retry with backoff within the budget
    ├── FatalError             cannot go on by itself (access denied, unreadable stream): the CLI
    │   │                      exits 1; the worker stops that table or shard, is not ready (the
    │   │                      reason on /readyz) and tries it again later
    │   └── BackfillStoppedError   (backfill/run.py) a page kept failing; --resume continues
    ├── DeadLetterQueueError   (dlq/letter.py) the DLQ cannot be written: report the records failed
    ├── LeaseLostError         (checkpoint/__init__.py) another worker owns the shard: stop writing
    └── StreamGoneError        (source/shards.py) the stream was replaced: resolve its ARN again

The last four live beside the code that raises them; they are listed here so the tree is whole.

Each error's ``kind`` says what a command does with it at its boundary (``cdcsync`` exits 2 for
``configuration``, 1 for the others, and adds "nothing was lost; run the command again" to
``transient``). It follows the class, except for ``DeadLetterQueueError``, whose kind is its cause's
(a missing queue is configuration, an unreachable one transient). AWS failures get theirs from
``cdcsync/aws.py``, the one translation of AWS errors.

Messages say what failed, on which thing, what was found and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ErrorKind = Literal["transient", "configuration", "fatal"]


class CdcsyncError(Exception):
    """Base of every error raised by cdcsync."""

    kind: ErrorKind = "fatal"


class ConfigError(CdcsyncError):
    """The configuration is wrong; nothing can run until it is fixed (exit code 2)."""

    kind: ErrorKind = "configuration"


class SettingsError(ConfigError):
    """A CDCSYNC_* setting is invalid."""


@dataclass(frozen=True, slots=True)
class MappingProblem:
    """One problem in one mapping file, located as precisely as the YAML allows."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class MappingError(ConfigError):
    """One or more mapping files are invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[MappingProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class IndexTemplateError(ConfigError):
    """OpenSearch refused the index template of a templated index (``indices apply``)."""


class PatternError(CdcsyncError):
    """A filter or where pattern is malformed.

    ``path`` locates the offending part inside the pattern (keys and list indexes), so the mapping
    loader can turn it into ``file:line: filter.eventName.0.prefix: ...``.
    """

    def __init__(self, path: Sequence[str | int], message: str) -> None:
        self.path = tuple(path)
        self.message = message
        where = ".".join(str(p) for p in self.path)
        super().__init__(f"{where}: {message}" if where else message)


class RecordError(CdcsyncError):
    """This record cannot be processed as it is; it goes to the dead-letter queue with this reason."""


class PlanError(RecordError):
    """The planner could not build an action for a record (e.g. a template names a missing attribute).

    ``reason`` is the dead letter's error type (the ``reason`` label of ``cdcsync_dlq_records_total``):
    ``plan_error``, or a narrower one an operator acts on differently (``id_too_long``,
    ``unknown_location``).
    """

    def __init__(self, message: str, *, reason: str = "plan_error") -> None:
        super().__init__(message)
        self.reason = reason


class TransientError(CdcsyncError):
    """A failure that may go away (429, 5xx, connection lost): retry with backoff within the budget."""

    kind: ErrorKind = "transient"


class FatalError(CdcsyncError):
    """Cannot go on without a fix (e.g. a missing IAM permission): a command stops (exit 1); the
    worker stops only the table or shard it happened to, reports it on ``/readyz`` and tries again."""
