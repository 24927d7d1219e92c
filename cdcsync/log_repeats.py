"""Repeated warnings, collapsed: an outage says so once, not once per request.

``RepeatedLines`` is a ``logging.Filter`` for a logger whose lines repeat while one cause lasts
(the bulk writer's "will retry", backfill's per-page retries). Two lines are alike when they have
the same format string and the same text arguments (numbers, such as an action count or a wait,
may differ). The first line of a kind is logged; the alike ones within ``interval`` seconds after
it are counted, not logged; the first alike line after that is logged with
``(and N more like it in the last S s)``, and a new interval starts.

``collapsed(*loggers)`` puts one on each named logger for the length of a run (backfill), so state
never outlives the run that made it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_MAX_KINDS = 1000


@dataclass
class _Seen:
    since: float
    suppressed: int = 0


class RepeatedLines(logging.Filter):
    """Log the first of alike lines, then one per ``interval`` seconds with how many were left out."""

    def __init__(self, interval: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._seen: dict[tuple[object, ...], _Seen] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        texts = (str(arg) for arg in args if not isinstance(arg, int | float))
        key = (record.levelno, str(record.msg), *texts)
        now = self.clock()
        with self._lock:
            if len(self._seen) > _MAX_KINDS:  # forget the kinds whose interval has passed
                self._seen = {k: v for k, v in self._seen.items() if now - v.since < self.interval}
            seen = self._seen.get(key)
            if seen is not None and now - seen.since < self.interval:
                seen.suppressed += 1
                return False
            self._seen[key] = _Seen(since=now)
        if seen is not None and seen.suppressed:
            text = str(record.msg) if args else str(record.msg).replace("%", "%%")
            record.msg = f"{text} (and %d more like it in the last %.0f s)"
            record.args = (*args, seen.suppressed, now - seen.since)
        return True


@contextlib.contextmanager
def collapsed(*names: str, interval: float = 30.0) -> Iterator[RepeatedLines]:
    """Collapse alike lines of the named loggers while the block runs."""
    repeats = RepeatedLines(interval)
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(repeats)
    try:
        yield repeats
    finally:
        for logger in loggers:
            logger.removeFilter(repeats)
