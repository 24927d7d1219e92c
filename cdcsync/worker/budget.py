"""How many stream records one worker process holds at a time, across its shard threads.

A shard thread holds its page from GetRecords until the page is written and checkpointed: the
records as parsed, their changes, the documents and the bulk body all grow with it, a few kB per
record. Unbounded, 64 shards with a backlog hold 64 pages of up to 1,000 records at once (and send
64 bulk requests at once, which a small cluster answers with timeouts). So before each GetRecords a
shard thread takes a share of the process's budget, asks for no more records than that (the call's
``Limit``), gives back what the page did not fill as soon as it returns, and the rest once the page
is written (or given up). Records in flight never exceed the budget, whatever the shard count.

Shares are handed out first come, first served (a thread that waits longest is served first, so
no shard starves), at most a full page (1,000) each, and at least ``MIN_SHARE`` unless less was
asked for: a few busy shards read full pages, many busy shards take turns with full pages rather
than all reading slivers. Idle shards hold their share only while their GetRecords is in flight.
"""

from __future__ import annotations

import threading
from collections import deque

RECORDS_IN_FLIGHT = 4000  # per process: 4 full pages
MIN_SHARE = 100  # below this a GetRecords call costs more than its records are worth
_POLL_SECONDS = 0.1  # how soon a waiting thread notices it is told to stop


class RecordBudget:
    """A counting budget with first-come-first-served shares; thread-safe."""

    def __init__(self, capacity: int = RECORDS_IN_FLIGHT, *, min_share: int = MIN_SHARE) -> None:
        if capacity < 1:
            raise ValueError(f"record budget must be at least 1, got {capacity}")
        self.capacity = capacity
        self.min_share = min(min_share, capacity)
        self._free = capacity
        self._waiting: deque[object] = deque()
        self._changed = threading.Condition()
        self.most_in_flight = 0  # the largest number of records ever taken at once

    @property
    def in_flight(self) -> int:
        with self._changed:
            return self.capacity - self._free

    def take(self, want: int, stopping: threading.Event) -> int:
        """Up to ``want`` records of budget, once at least ``min(want, min_share)`` are free and
        every thread that asked earlier was served; 0 if ``stopping`` is set meanwhile."""
        want = min(want, self.capacity)
        least = min(want, self.min_share)
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            try:
                while self._waiting[0] is not ticket or self._free < least:
                    if stopping.is_set():
                        return 0
                    self._changed.wait(_POLL_SECONDS)
                share = min(want, self._free)
                self._free -= share
                self.most_in_flight = max(self.most_in_flight, self.capacity - self._free)
                return share
            finally:
                self._waiting.remove(ticket)
                self._changed.notify_all()

    def give_back(self, count: int) -> None:
        """Return ``count`` records of budget taken earlier."""
        if count <= 0:
            return
        with self._changed:
            self._free = min(self.capacity, self._free + count)
            self._changed.notify_all()
