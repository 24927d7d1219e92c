"""process_batch(): the one place the stages meet.

    records -> ChangeRecord -> plan -> (fetch for KEYS_ONLY) -> bulk write -> outcomes
                    |            |                                  |
                    +------------+------ dead letters --------------+

A batch is a run of records in stream order (a Lambda batch, a GetRecords page). The result
names the earliest record whose work failed transiently: everything from it on must be delivered
again (Lambda retries from there; the worker does not move its checkpoint past it). Records
before it are done: written, stale, skipped or dead-lettered. Dead letters of records from the
failure point on are not sent now, since those records will be replayed and judged again.

Each record counts once per mapping in ``cdcsync_records_total``, by what became of its own last
action: ``indexed``/``deleted``/``stale`` when that action was written; ``coalesced`` when a later
record's action for the same document in the batch replaced it (it was never sent: the later
record's outcome says what the document became); ``skipped``; ``dlq``. The delete at an old place
that a move adds (planned, or made by coalescing a routing move) is not counted on its own.
Every dead letter stored gets a WARNING line (``DeadLetterLog``: at most 5 a minute per table and
reason, then a count at the end of every batch that had more).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cdcsync.change import ChangeRecord, parse_record, table_from_arn
from cdcsync.dlq.queue import DeadLetterQueue, DeadLetterQueueError, json_safe
from cdcsync.errors import ConfigError, RecordError, TransientError
from cdcsync.logs import DeadLetterLog, record_fields
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.metrics import Metrics
from cdcsync.plan import (
    Action,
    DeleteAction,
    FetchItem,
    IndexAction,
    Rejected,
    Skip,
    Step,
    plan_fetched,
    plan_record,
)
from cdcsync.sink.bulk import BulkWriter, WriteResult
from cdcsync.source.items import ItemReader, key_id
from cdcsync.values import image_to_plain

if TYPE_CHECKING:
    from cdcsync.dlq.content import DlqContent
    from cdcsync.dlq.letter import DeadLetter, DeadLetterError

log = logging.getLogger(__name__)

_ACTIONS = (IndexAction, DeleteAction)  # isinstance() with a tuple: cheaper than with a union type


@dataclass
class BatchResult:
    """What became of a batch. ``retry_from`` is the position of the first record to deliver again."""

    size: int
    retry_from: int | None = None
    retry_sequence_number: str | None = None
    dead_letters: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    newest_ms: dict[str, int] = field(default_factory=dict)  # per table: the newest record's time
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)  # dead letters stored, by reason

    @property
    def ok(self) -> bool:
        return self.retry_from is None


@dataclass
class _Batch:
    """Bookkeeping while one batch moves through the stages."""

    raw: Sequence[Mapping[str, Any]]
    position: dict[int, int] = field(default_factory=dict)  # id(ChangeRecord) -> position in batch
    failed: set[int] = field(default_factory=set)  # positions
    letters: list[tuple[int, DeadLetter]] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    newest_ms: dict[str, int] = field(default_factory=dict)

    counted: list[tuple[int, str, str, str]] = field(default_factory=list)  # position, table, event, outcome
    unknown_location: list[tuple[int, str]] = field(default_factory=list)  # position, table
    # Per record and mapping, its last action (a move's delete comes first): the one it is counted by.
    last_actions: dict[tuple[int, int], Action] = field(default_factory=dict)

    def fail(self, record: ChangeRecord) -> None:
        self.failed.add(self.position[id(record)])

    def count(self, record: ChangeRecord, outcome: str) -> None:
        """Note an outcome; it is reported only if the record is not delivered again (see _finish)."""
        self.counted.append((self.position[id(record)], record.table, record.event, outcome))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _letter_error(status: int | None, kind: str, reason: str) -> DeadLetterError:
    """Why a record failed (``status`` is OpenSearch's, None for a record refused before writing).

    The letter model (pydantic) and the content rules are imported with the first dead letter, not
    with the pipeline: a Lambda cold start that sends none does not build them.
    """
    from cdcsync.dlq.letter import DeadLetterError  # noqa: PLC0415

    return DeadLetterError(status=status, type=kind, reason=reason)


def dead_letter(
    raw: Mapping[str, Any],
    *,
    record: ChangeRecord | None,
    mapping: CompiledMapping | None,
    error: DeadLetterError,
    action: Action | None = None,
    attempts: int = 1,
    first_failure_at: dt.datetime | None = None,
    content: DlqContent = "projected",
) -> DeadLetter:
    """The dead letter of ``raw``, keeping what ``content`` (``CDCSYNC_DLQ_CONTENT``) allows."""
    from cdcsync.dlq.content import kept  # noqa: PLC0415 - see _letter_error
    from cdcsync.dlq.letter import DeadLetter  # noqa: PLC0415

    now = _now()
    body = raw.get("dynamodb") if isinstance(raw.get("dynamodb"), Mapping) else {}
    letter = DeadLetter(
        record=json_safe(raw),
        table=record.table if record else _table_of(raw),
        keys=json_safe(record.raw_keys if record else (body or {}).get("Keys") or {}),
        sequence_number=record.sequence_number if record else (body or {}).get("SequenceNumber"),
        mapping=mapping.name if mapping else None,
        index=action.index if action else None,
        id=action.id if action else None,
        routing=action.routing if action else None,
        op=action.op if action else None,
        version=action.version if action else None,
        error=error,
        attempts=attempts,
        first_failure_at=first_failure_at or now,
        last_failure_at=now,
    )
    return kept(letter, content, mapping)


@dataclass
class Pipeline:
    """The stages wired together; entry points differ only in how records arrive."""

    mappings: MappingSet
    writer: BulkWriter
    dead_letters: DeadLetterQueue
    metrics: Metrics
    items: ItemReader | None = None
    dead_letter_log: DeadLetterLog = field(default_factory=lambda: DeadLetterLog(log))
    dead_letter_content: DlqContent = "projected"

    def __post_init__(self) -> None:
        if self.dead_letter_content == "full":
            log.warning(
                "CDCSYNC_DLQ_CONTENT=full: dead letters in %s keep whole records, attributes the "
                "mappings exclude and the values OpenSearch quotes included; use it only to debug, "
                "then set projected (the default) or keys",
                self.dead_letters.describe(),
            )

    def process(
        self,
        raw_records: Sequence[Mapping[str, Any]],
        *,
        stream_arn: str | None = None,
        deadline: float | None = None,
        version_ms: int | None = None,
    ) -> BatchResult:
        """Plan, write and settle one batch. ``version_ms``: synthetic records of a table read
        (backfill) write with this version, not their creation time (see ``parse_record``)."""
        batch = _Batch(raw_records)
        per_record: list[list[Step]] = []
        records: list[ChangeRecord | None] = []
        newest_ms, mappings = batch.newest_ms, self.mappings
        for position, raw in enumerate(raw_records):
            try:
                record = parse_record(raw, stream_arn=stream_arn, version_ms=version_ms)
            except RecordError as exc:
                error = _letter_error(None, "invalid_record", str(exc))
                letter = dead_letter(
                    raw, record=None, mapping=None, error=error, content=self.dead_letter_content
                )
                batch.letters.append((position, letter))
                records.append(None)
                per_record.append([])
                continue
            batch.position[id(record)] = position
            newest_ms[record.table] = max(newest_ms.get(record.table, 0), record.created_ms)
            records.append(record)
            per_record.append(plan_record(record, mappings))
        self._fetch(batch, per_record)
        actions = self._collect(batch, per_record)
        self._settle(batch, self.writer.write(actions, deadline=deadline))
        return self._finish(batch, records)

    def _fetch(self, batch: _Batch, per_record: list[list[Step]]) -> None:
        """Replace FetchItem steps by the plan for the item as it is now (KEYS_ONLY views)."""
        fetches = [step for steps in per_record for step in steps if isinstance(step, FetchItem)]
        if not fetches:
            return
        by_table: dict[str, list[FetchItem]] = {}
        for fetch in fetches:
            by_table.setdefault(fetch.record.table, []).append(fetch)
        found: dict[bytes, dict[str, Any] | None] = {}
        for table, table_fetches in by_table.items():
            if self.items is None:
                raise ConfigError(f"table {table} streams KEYS_ONLY records but no item reader is configured")
            try:
                found.update(self.items.read(table, [f.record.raw_keys for f in table_fetches]))
            except TransientError as exc:
                log.warning("cannot read items for KEYS_ONLY records of %s: %s", table, exc)
                for fetch in table_fetches:
                    batch.fail(fetch.record)
        for steps in per_record:
            for index, step in enumerate(steps):
                if isinstance(step, FetchItem):
                    if batch.position[id(step.record)] in batch.failed:
                        continue
                    item = found.get(key_id(step.record.table, step.record.raw_keys))
                    steps[index : index + 1] = plan_fetched(step, item)

    def _collect(self, batch: _Batch, per_record: list[list[Step]]) -> list[Action]:
        actions: list[Action] = []
        last_actions = batch.last_actions
        for steps in per_record:
            for step in steps:
                if isinstance(step, _ACTIONS):
                    actions.append(step)
                    last_actions[(id(step.record), id(step.mapping))] = step
                elif isinstance(step, Skip):
                    batch.count(step.record, "skipped")
                elif isinstance(step, Rejected):
                    error = _letter_error(None, step.reason, str(step.error))
                    letter = dead_letter(
                        step.record.raw,
                        record=step.record,
                        mapping=step.mapping,
                        error=error,
                        content=self.dead_letter_content,
                    )
                    batch.letters.append((batch.position[id(step.record)], letter))
        return actions

    def _settle(self, batch: _Batch, results: list[WriteResult]) -> None:
        sent: dict[int, WriteResult] = {}  # id(action) -> its result, for actions sent as planned
        for result in results:
            action = result.entry.action
            records = result.entry.records
            sent[id(action)] = result
            if result.outcome == "failed":
                batch.fail(result.entry.earliest)
                continue
            if result.outcome == "rejected" and result.error is not None:
                last = records[-1]
                error = _letter_error(result.error.status, result.error.type, result.error.reason)
                letter = dead_letter(
                    last.raw,
                    record=last,
                    mapping=action.mapping,
                    error=error,
                    action=action,
                    attempts=result.attempts,
                    first_failure_at=result.first_failure_at,
                    content=self.dead_letter_content,
                )
                batch.letters.append((batch.position[id(last)], letter))
                continue
            if not action.old_location_known:
                last = records[-1]
                batch.unknown_location.append((batch.position[id(last)], last.table))
        for action in batch.last_actions.values():
            found = sent.get(id(action))
            if found is None:
                batch.count(action.record, "coalesced")
            elif found.outcome == "stale":
                batch.count(action.record, "stale")
            elif found.outcome == "written":
                batch.count(action.record, "indexed" if action.op == "index" else "deleted")
            # failed: delivered again and counted then; rejected: counted as its dead letter

    def _finish(self, batch: _Batch, records: list[ChangeRecord | None]) -> BatchResult:
        retry_from = min(batch.failed) if batch.failed else None
        letters = [
            letter for position, letter in batch.letters if retry_from is None or position < retry_from
        ]
        reasons: dict[str, int] = {}
        if letters:
            try:
                self.dead_letters.send(letters)
            except DeadLetterQueueError as exc:
                # Never dropped: a record whose dead letter cannot be stored is delivered again.
                log.error("%s; the records will be retried", exc)  # noqa: TRY400 - the message says it all
                failed_ids = set(getattr(exc, "failed_ids", ()) or (letter.letter_id for letter in letters))
                positions = [p for p, letter in batch.letters if letter.letter_id in failed_ids]
                retry_from = min([*positions, *([retry_from] if retry_from is not None else [])])
                letters = [letter for letter in letters if letter.letter_id not in failed_ids]
            try:
                for letter in letters:
                    batch.outcomes["dlq"] = batch.outcomes.get("dlq", 0) + 1
                    self.metrics.records(letter.table, _event_of(letter), "dlq")
                    self.metrics.dead_letters(letter.table, letter.error.type)
                    reasons[letter.error.type] = reasons.get(letter.error.type, 0) + 1
                    self._warn(letter)
            finally:  # no batch ends silent about its dead letters, even one a bug stops here
                self.dead_letter_log.flush()
        # Records from the retry point on are delivered again and counted then, not twice.
        tally: dict[tuple[str, str, str], int] = {}
        for position, table, event, outcome in batch.counted:
            if retry_from is None or position < retry_from:
                batch.outcomes[outcome] = batch.outcomes.get(outcome, 0) + 1
                tally[(table, event, outcome)] = tally.get((table, event, outcome), 0) + 1
        for (table, event, outcome), count in tally.items():  # one call per label set, not per record
            self.metrics.records(table, event, outcome, count)
        unknown: dict[str, int] = {}
        for position, table in batch.unknown_location:
            if retry_from is None or position < retry_from:
                unknown[table] = unknown.get(table, 0) + 1
        for table, count in unknown.items():
            self.metrics.unknown_location_writes(table, count)
        retry_record = records[retry_from] if retry_from is not None else None
        retry_sequence = (
            retry_record.sequence_number
            if retry_record is not None
            else (_raw_sequence(batch.raw[retry_from]) if retry_from is not None else None)
        )
        return BatchResult(
            size=len(batch.raw),
            retry_from=retry_from,
            retry_sequence_number=retry_sequence,
            dead_letters=len(letters),
            outcomes=batch.outcomes,
            newest_ms=batch.newest_ms,
            dead_letter_reasons=reasons,
        )

    def _warn(self, letter: DeadLetter) -> None:
        """The dead letter's WARNING line: where, why, where it is kept, and what to do."""
        error = letter.error
        status = f" (status {error.status})" if error.status is not None else ""
        message = (
            f"dead letter in table {letter.table}: {error.type}: {error.reason}{status}; "
            f"kept in {self.dead_letters.describe()}: {_advice(error)}"
        )
        fields = record_fields(
            letter.table, _plain_keys(letter.keys), letter.sequence_number, document_id=letter.id
        )
        fields["reason"] = error.type
        self.dead_letter_log.warn(letter.table, error.type, message, fields)


def _advice(error: DeadLetterError) -> str:
    """What an operator does about a dead letter, by who refused the record."""
    if error.status is not None:
        return "fix the index's field mappings or the item, then run cdcsync dlq redrive"
    if error.type == "invalid_record":
        return "not a DynamoDB stream record cdcsync can read; see cdcsync dlq show"
    return "fix the mapping (cdcsync validate) or the item, then run cdcsync dlq redrive"


def _plain_keys(keys: Mapping[str, Any]) -> Mapping[str, Any]:
    """Typed keys as plain values for the log line; as stored when they are not DynamoDB values."""
    try:
        return image_to_plain(keys)
    except RecordError:
        return keys


def _table_of(raw: Mapping[str, Any]) -> str:
    """The table of a record that could not be parsed: its name, else its ARN as given, else ``?``."""
    if raw.get("tableName"):
        return str(raw["tableName"])
    arn = str(raw.get("eventSourceARN") or "?")
    try:
        return table_from_arn(arn)
    except RecordError:
        return arn


def _event_of(letter: DeadLetter) -> str:
    return str(letter.record.get("eventName", "UNKNOWN")) if isinstance(letter.record, Mapping) else "UNKNOWN"


def _raw_sequence(raw: Mapping[str, Any]) -> str | None:
    body = raw.get("dynamodb")
    if isinstance(body, Mapping) and body.get("SequenceNumber"):
        return str(body["SequenceNumber"])
    kinesis = raw.get("kinesis")
    return str(kinesis.get("sequenceNumber")) if isinstance(kinesis, Mapping) else None
