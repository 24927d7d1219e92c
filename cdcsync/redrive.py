"""``cdcsync dlq redrive``: re-apply dead letters from what the table holds now.

A stored image may be older than the item; replaying it could put an old state back. So redrive
re-reads each item with a consistent read and writes that (or deletes the document when the item
is gone), versioned with ``read_version`` of the time taken just before the read (that time less
5 s, because stream times are whole seconds): any change made after the read still wins. An
entry is removed only when every action for it succeeded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cdcsync.change import ChangeRecord
from cdcsync.dlq.letter import DeadLetterQueue, StoredLetter
from cdcsync.errors import TransientError
from cdcsync.mapping.compiled import MappingSet
from cdcsync.metrics import Metrics
from cdcsync.plan import Action, DeleteAction, FetchItem, IndexAction, Rejected, plan_fetched
from cdcsync.sink.bulk import BulkWriter
from cdcsync.source.items import ItemReader, key_id
from cdcsync.versions import read_version

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
    return ChangeRecord(
        table=letter.table,
        event="MODIFY",
        raw_keys=letter.keys,
        sequence_number=letter.sequence_number or f"redrive:{letter.letter_id}",
        created_ms=read_version(read_ms),
        is_ttl_expiry=False,
        stream_view_type="REDRIVE",
        raw=letter.record,
    )


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
        for mapping in table_mappings:
            for step in plan_fetched(FetchItem(mapping, record), item):
                if isinstance(step, IndexAction | DeleteAction):
                    actions.append(step)
                    owner[id(step.record)] = entry
                elif isinstance(step, Rejected):
                    failed.add(entry.letter.letter_id)
                    report.problems.append(f"{_name(entry)}: {step.error}")
    for result in writer.write(actions):
        if result.outcome in ("rejected", "failed"):
            for record in result.entry.records:
                entry = owner[id(record)]
                failed.add(entry.letter.letter_id)
                report.problems.append(f"{_name(entry)}: {result.outcome}: {result.error}")
    return [entry for entry in entries if entry.letter.letter_id not in failed]


def _name(entry: StoredLetter) -> str:
    letter = entry.letter
    return f"{letter.table} {letter.keys} (letter {letter.letter_id})"
