"""The worker's periodic summary: per table, what its shards did since the last summary line.

Every minute (``Coordinator.summary_seconds``) in which a table settled records, one INFO line for it::

    summary of the last 60 s for table Users: 1200 records (1150 indexed, 40 deleted, 10 dlq),
    10 dead letters (mapper_parsing_exception 10), lag 0.4 s

(one line in the log), with ``records``, ``dead_letters`` (by reason) and ``lag_seconds`` as fields
too. A quiet table writes nothing; lag alone is on ``/metrics`` and in the lag alert.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from cdcsync.pipeline import BatchResult

log = logging.getLogger(__name__)

# The order outcomes are named in; one not listed (none today) comes after them.
_OUTCOME_ORDER = ("indexed", "deleted", "stale", "coalesced", "skipped", "dlq")


@dataclass
class Activity:
    """One table's settled records by outcome and dead letters by reason."""

    records: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)


@dataclass
class Summary:
    """Adds up batch results from every shard thread; ``write`` logs them and starts again."""

    since_ms: int = 0  # wall time (epoch ms) of the last summary, or the start
    _tables: dict[str, Activity] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, table: str, result: BatchResult) -> None:
        with self._lock:
            activity = self._tables.setdefault(table, Activity())
            for outcome, count in result.outcomes.items():
                activity.records[outcome] = activity.records.get(outcome, 0) + count
            for reason, count in result.dead_letter_reasons.items():
                activity.dead_letters[reason] = activity.dead_letters.get(reason, 0) + count

    def write(self, now_ms: int, lags: Mapping[str, float]) -> None:
        """One INFO line per table that settled records since ``since_ms``; then start again at ``now_ms``."""
        with self._lock:
            tables, self._tables = self._tables, {}
            seconds = (now_ms - self.since_ms) / 1000
            self.since_ms = now_ms
        for table, activity in sorted(tables.items()):
            if not activity.records:
                continue
            lag = lags.get(table)
            log.info(
                "%s",
                summary_line(table, activity, seconds, lag),
                extra={
                    "table": table,
                    "records": activity.records,
                    "dead_letters": activity.dead_letters,
                    "lag_seconds": lag,
                },
            )


def summary_line(table: str, activity: Activity, seconds: float, lag: float | None) -> str:
    """``summary of the last 60 s for table Users: 3 records (2 indexed, 1 dlq), ..., lag 0.4 s``."""
    records = activity.records
    order = [*_OUTCOME_ORDER, *sorted(set(records) - set(_OUTCOME_ORDER))]
    by_outcome = ", ".join(f"{records[outcome]} {outcome}" for outcome in order if records.get(outcome))
    parts = [f"{_count(sum(records.values()), 'record')} ({by_outcome})"]
    letters = activity.dead_letters
    if letters:
        by_reason = ", ".join(f"{reason} {count}" for reason, count in sorted(letters.items()))
        parts.append(f"{_count(sum(letters.values()), 'dead letter')} ({by_reason})")
    else:
        parts.append("no dead letters")
    if lag is not None:
        parts.append(f"lag {lag:.1f} s")
    return f"summary of the last {seconds:.0f} s for table {table}: {', '.join(parts)}"


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
