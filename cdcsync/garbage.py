"""The cyclic garbage collector while pages are written: paced by a timer, not by allocations.

Used by backfill (``backfill/run.py``, ``backfill/shared.py``) and the worker
(``worker/coordinator.py``: its shard threads hold up to ``RecordBudget`` records in flight; on the
rig, 1 shard, ~64 -> ~34 us of CPU per record).

A backfill makes a few dozen containers per item (the parsed page, records, plans, documents,
bulk lines) and holds every segment's page in flight, and read-ahead page, for milliseconds to
tens of milliseconds. CPython collects generation 0 every 700 net container allocations, so
nearly every one of those containers outlives a pass, is walked again in generations 1 and 2,
and every full pass walks everything imported too (botocore's service models, opensearch-py,
pydantic). None of it is cyclic: reference counting frees a page when its write is done. On the
capacity rig that walking was ~40 % of a backfill's CPU at 1 segment and more at 8 (more pages
in flight to walk), while a page leaves ~35 objects of cyclic garbage (the closures of
the pure-Python JSON encoder that writes the indented checkpoint file, exceptions' tracebacks).

So while a backfill runs (``paced_collection``): what exists when it starts is frozen
(``gc.freeze``: the startup heap is never walked again), automatic collection is off, and a
daemon thread collects every ``COLLECT_SECONDS``: a pass over what is in flight only, ~0.1 s of
CPU at 8 segments (two pages each), so ~2 % of the CPU; cyclic garbage lives at most that long
(a few MB; more while writes fail, when a retried request's traceback can hold its actions).
Leaving (the last of overlapping backfills of one process) stops the thread, collects once more
and restores the collector as it was: unfrozen, and on only if it was on. The collector's switch
is the process's, so a backfill run in a process that does other work (a test run) pauses
automatic collection there too, for as long.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

COLLECT_SECONDS = 5.0

_lock = threading.Lock()
_users = 0
_was_enabled = True
_stop = threading.Event()
_timer: threading.Thread | None = None


def _collect_every(seconds: float, stop: threading.Event) -> None:
    while not stop.wait(seconds):
        gc.collect()


@contextlib.contextmanager
def paced_collection(seconds: float = COLLECT_SECONDS) -> Iterator[None]:
    """Inside: the heap of now frozen, automatic collection off, a full collection every ``seconds``."""
    global _users, _was_enabled, _stop, _timer  # noqa: PLW0603 - one collector per process
    with _lock:
        if _users == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
            gc.collect()  # garbage of the start-up must not be frozen with it
            gc.freeze()
            _stop = threading.Event()
            _timer = threading.Thread(
                target=_collect_every, args=(seconds, _stop), name="paced-gc", daemon=True
            )
            _timer.start()
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _stop.set()
                if _timer is not None:
                    _timer.join()
                    _timer = None
                gc.unfreeze()
                gc.collect()
                if _was_enabled:
                    gc.enable()
