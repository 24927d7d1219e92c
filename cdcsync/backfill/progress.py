"""How far a backfill is: one updating line on a terminal, a plain log line every ~10 s otherwise.

The line: ``backfill of Users: 12,345 of ~100,000 items (12%), 4,100 items/s, ETA 0:00:21, 0 dead letters``.
The total is DescribeTable's ``ItemCount`` (or the export's ``itemCount``), which DynamoDB refreshes
only every ~6 hours, hence the "~"; the percentage stops at 99% until the backfill has finished,
and its last line says ``backfill of Users: 100,412 items (100%), 4,100 items/s, 0 dead letters``.
The summary (items read, written, stale, skipped) is the command's output, printed once by the CLI.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger(__name__)

TERMINAL_INTERVAL = 0.2
LOG_INTERVAL = 10.0


def describe_progress(
    table: str, items: int, total: int, seconds: float, dead_letters: int, *, finished: bool = False
) -> str:
    """The progress line (without a line ending); ``finished``: every item read, 100%."""
    rate = items / seconds if seconds > 0 else 0.0
    parts = [f"backfill of {table}: {items:,}"]
    if finished:
        parts[0] += " items (100%)"
    elif total > 0:
        percent = min(99, items * 100 // total)
        parts[0] += f" of ~{total:,} items ({percent}%)"
    else:
        parts[0] += " items"
    parts.append(f"{rate:,.0f} items/s")
    if total > 0 and rate > 0 and not finished:
        left = max(0, total - items) / rate
        parts.append(f"ETA {dt.timedelta(seconds=round(left))}")
    parts.append(f"{dead_letters:,} dead letter{'s' if dead_letters != 1 else ''}")
    return ", ".join(parts)


class Progress:
    """Counts items from every segment's thread and shows them at most every interval."""

    def __init__(
        self,
        table: str,
        out: TextIO,
        *,
        total: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.out = out
        self.total = total
        self.clock = clock
        self.terminal = _isatty(out)
        self.interval = TERMINAL_INTERVAL if self.terminal else LOG_INTERVAL
        self.items = 0
        self.dead_letters = 0
        self._lock = threading.Lock()
        self._started = clock()
        self._shown_at = self._started
        self._width = 0

    def add(self, items: int, dead_letters: int) -> None:
        """Count a written page; show the line if the interval has passed."""
        with self._lock:
            self.items += items
            self.dead_letters += dead_letters
            now = self.clock()
            if now - self._shown_at < self.interval:
                return
            self._shown_at = now
            self._show(now)

    def close(self, *, finished: bool = False) -> None:
        """Show the final counts (100% when ``finished``) and end the terminal line."""
        with self._lock:
            self._show(self.clock(), finished=finished)
            if self.terminal:
                self.out.write("\n")
                self.out.flush()

    def _show(self, now: float, *, finished: bool = False) -> None:
        seconds = now - self._started
        line = describe_progress(
            self.table, self.items, self.total, seconds, self.dead_letters, finished=finished
        )
        if self.terminal:
            # Pad over the previous line's leftovers; \r returns to the start of the same line.
            self.out.write("\r" + line.ljust(self._width))
            self.out.flush()
            self._width = len(line)
        else:
            log.info("%s", line)


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream: treat as a log
        return False
