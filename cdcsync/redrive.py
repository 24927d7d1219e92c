"""``cdcsync dlq redrive``: re-apply dead letters from what the table holds now.

A stored image may be older than the item; replaying it could put an old state back. So redrive
re-reads each item with a consistent read and writes that, versioned with ``read_version`` of the
time taken just before the read (that time less 5 s, because stream times are whole seconds): any
change made after the read still wins. An entry is removed only when every action for it
succeeded.

A letter is redriven for its own mapping only (the one named in it; every mapping of the table
when the record failed before any mapping was chosen): the table's other mappings handled the
record when it arrived. When the item is gone, the document is deleted only if the mapping's
REMOVE rules delete it however the item went (``reread.judge_gone``): ``deletes: ignore`` or a
filter that skips REMOVEs keeps it, and the letter is done.

A letter for a *delete* OpenSearch rejected names where that delete was aimed (``index``, ``id``,
``routing``): the place the item had left (a routing or index move, or ``where``) or the place of a
removed item. Writing the item where it is now leaves a copy there (in an index of several shards
a routing is a separate copy), so redrive sends that delete again, first, unless the item's plan
now writes (or deletes) exactly there; for a gone item only when the mapping's REMOVE rules delete
it. A letter written before letters kept ``op`` and ``routing`` has the place derived from its
record, planned again (``_aimed_deletes``), when its record still carries the images.

So redrive needs no image: keys, mapping, ``op``/``index``/``id``/``routing``/``version`` and the
record's envelope (stream ARN, region, view type: what synthetic REMOVEs look like) are kept at
every ``CDCSYNC_DLQ_CONTENT`` level, and a letter kept as ``keys`` redrives like a ``full`` one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdcsync.change import ChangeRecord, parse_record
from cdcsync.dlq.letter import DeadLetter
from cdcsync.dlq.queue import DeadLetterQueue, StoredLetter
from cdcsync.errors import RecordError, TransientError
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.metrics import Metrics
from cdcsync.plan import Action, DeleteAction, FetchItem, IndexAction, Rejected, plan_fetched, plan_record
from cdcsync.reread import judge_gone, reread_record
from cdcsync.sink.bulk import BulkWriter
from cdcsync.source.items import ItemReader, key_id
from cdcsync.source.synthetic import DEFAULT_VIEW, TableStream
from cdcsync.values import dump_json

log = logging.getLogger(__name__)


@dataclass
class RedriveReport:
    redriven: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _record(stored: StoredLetter, read_ms: int) -> ChangeRecord:
    letter = stored.letter
    sequence = letter.sequence_number or f"redrive:{letter.letter_id}"
    return reread_record(letter.table, letter.keys, read_ms, sequence=sequence, raw=letter.record)


def _stream(letter: DeadLetter) -> TableStream:
    """The table's stream as the letter's record shows it (what synthetic REMOVEs must look like)."""
    record: Mapping[str, Any] = letter.record
    body = record.get("dynamodb") if isinstance(record.get("dynamodb"), Mapping) else {}
    arn = record.get("eventSourceARN")
    return TableStream(
        table=letter.table,
        key_names=tuple(letter.keys),
        stream_arn=str(arn) if arn else f"arn:aws:dynamodb:::table/{letter.table}/stream/redrive",
        region=str(record.get("awsRegion") or ""),
        view=str((body or {}).get("StreamViewType") or DEFAULT_VIEW),
    )


def _own_mappings(letter: DeadLetter, table_mappings: tuple[CompiledMapping, ...]) -> list[CompiledMapping]:
    """The mappings a letter is redriven for: the one it names, or all when it names none."""
    if letter.mapping is None:
        return list(table_mappings)
    return [mapping for mapping in table_mappings if mapping.name == letter.mapping]


def redrive(
    queue: DeadLetterQueue,
    *,
    mappings: MappingSet,
    items: ItemReader,
    writer: BulkWriter,
    metrics: Metrics,
    limit: int | None = None,
    clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
) -> RedriveReport:
    """Redrive up to ``limit`` entries; remove those that succeed; report the rest."""
    report = RedriveReport()
    by_table: dict[str, list[StoredLetter]] = {}
    for entry in queue.read(limit):
        by_table.setdefault(entry.letter.table, []).append(entry)
    done: list[StoredLetter] = []
    for table, entries in by_table.items():
        succeeded = _redrive_table(
            table, entries, mappings=mappings, items=items, writer=writer, clock_ms=clock_ms, report=report
        )
        if succeeded:
            metrics.records(table, "REDRIVE", "indexed", len(succeeded))
        done += succeeded
    if done:
        queue.remove(done)
    report.redriven = len(done)
    return report


def _redrive_table(
    table: str,
    entries: list[StoredLetter],
    *,
    mappings: MappingSet,
    items: ItemReader,
    writer: BulkWriter,
    clock_ms: Callable[[], int],
    report: RedriveReport,
) -> list[StoredLetter]:
    """Redrive one table's entries; return those that fully succeeded."""
    table_mappings = mappings.for_table(table)
    if not table_mappings:
        report.problems += [
            f"{_name(e)}: no mapping for table {table} any more; left in the queue" for e in entries
        ]
        return []
    read_ms = clock_ms()  # before the read: a change after it has a later stream time
    try:
        found = items.read(table, [e.letter.keys for e in entries])
    except TransientError as exc:
        report.problems += [f"{_name(e)}: {exc}" for e in entries]
        return []
    actions: list[Action] = []
    owner: dict[int, StoredLetter] = {}
    failed: set[str] = set()
    for entry in entries:
        record = _record(entry, read_ms)
        item = found.get(key_id(table, entry.letter.keys))
        steps, problems = _plan_letter(entry.letter, record, item, table_mappings, read_ms)
        if problems:
            failed.add(entry.letter.letter_id)
            report.problems += [f"{_name(entry)}: {problem}" for problem in problems]
        for step in steps:
            owner[id(step.record)] = entry
        actions += steps
    for result in writer.write(actions):
        if result.outcome in ("rejected", "failed"):
            for record in result.entry.records:
                entry = owner[id(record)]
                failed.add(entry.letter.letter_id)
                report.problems.append(f"{_name(entry)}: {result.outcome}: {result.error}")
    return [entry for entry in entries if entry.letter.letter_id not in failed]


def _plan_letter(
    letter: DeadLetter,
    record: ChangeRecord,
    item: dict[str, Any] | None,
    table_mappings: tuple[CompiledMapping, ...],
    read_ms: int,
) -> tuple[list[Action], list[str]]:
    """The actions for one letter's own mappings, and the problems that keep it in the queue."""
    own = _own_mappings(letter, table_mappings)
    if not own:
        return [], [f"no mapping {letter.mapping} any more; left in the queue"]
    actions: list[Action] = []
    problems: list[str] = []
    for mapping in own:
        if item is None:
            gone = judge_gone(_stream(letter), mapping, letter.keys, seconds=read_ms // 1000)
            if gone.verdict == "kept":
                continue  # the mapping keeps the document of a gone item: nothing to do
            if gone.verdict == "unknown":
                problems.append(f"item gone, but {gone.reason}; left in the queue")
                continue
        planned: list[Action] = []
        for step in plan_fetched(FetchItem(mapping, record), item):
            if isinstance(step, IndexAction | DeleteAction):
                planned.append(step)
            elif isinstance(step, Rejected):
                problems.append(str(step.error))
        named = {(action.index, action.id, action.routing) for action in planned}
        # The delete again first: coalescing sends a document's delete at another routing before
        # its index, and would turn an index listed earlier into a delete.
        version = _delete_version(letter, mapping, record)
        actions += [
            DeleteAction(index, doc_id, routing, version, mapping, record)
            for index, doc_id, routing in _aimed_deletes(letter, mapping)
            if (index, doc_id, routing) not in named and version is not None
        ]
        actions += planned
    return actions, problems


Place = tuple[str, str, str | None]  # index, id, routing


def _aimed_deletes(letter: DeadLetter, mapping: CompiledMapping) -> list[Place]:
    """Where the rejected delete the letter stands for was aimed (none: the letter is no such delete)."""
    if letter.index is None or letter.id is None or letter.mapping != mapping.name:
        return []
    if letter.op is not None:
        return [(letter.index, letter.id, letter.routing)] if letter.op == "delete" else []
    if letter.error.status is None:
        return []  # a planning failure: nothing was sent
    # A letter from before letters kept op and routing: the deletes its own record plans there.
    try:
        steps = plan_record(parse_record(letter.record), MappingSet((mapping,)))
    except RecordError:
        return []
    return [
        (step.index, step.id, step.routing)
        for step in steps
        if isinstance(step, DeleteAction)
        and (step.index, step.id, step.version) == (letter.index, letter.id, letter.version)
    ]


def _delete_version(letter: DeadLetter, mapping: CompiledMapping, record: ChangeRecord) -> int | None:
    """The read's version; with attribute versions (the item's own counter) the letter's delete's."""
    return record.created_ms if mapping.version_attribute is None else letter.version


def _name(entry: StoredLetter) -> str:
    letter = entry.letter
    return f"{letter.table} {dump_json(letter.keys).decode()} (letter {letter.letter_id})"
