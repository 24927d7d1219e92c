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

So while pages are written (``paced_collection``): what exists when it starts is frozen
(``gc.freeze``: the startup heap is never walked again); only the young generation is collected
automatically, every ``YOUNG`` net allocations (a container is walked there once, then left to the
timer), so a young cycle still goes at once: a bulk request that failed at the connection leaves
its body in a cycle through urllib3's frames, ~1 MB a try, which must not wait seconds while every
shard retries. The older generations are collected by a daemon thread every ``COLLECT_SECONDS``:
a pass over what is in flight only, ~0.1 s of CPU at 8 segments (two pages each), so ~2 % of the
CPU. Leaving (the last of overlapping users of one process) stops the thread, collects once more
and restores the collector as it was: thresholds, on or off, and unfrozen unless something was
frozen before (the Lambda handler freezes its import heap). The collector's settings are the
process's, so a backfill run in a process that does other work (a test run) paces it there too.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

COLLECT_SECONDS = 5.0
YOUNG = 10_000  # net container allocations between collections of the young generation
NEVER = 10**9  # collections of the younger generation before an older one: never, the timer does it

_lock = threading.Lock()
_users = 0
_before: tuple[bool, tuple[int, int, int], int] = (True, (700, 10, 10), 0)  # enabled, thresholds, frozen
_stop = threading.Event()
_timer: threading.Thread | None = None


def _collect_every(seconds: float, stop: threading.Event) -> None:
    while not stop.wait(seconds):
        gc.collect()


def _restore() -> None:
    enabled, thresholds, frozen = _before
    if not frozen:
        gc.unfreeze()
    gc.collect()
    gc.set_threshold(*thresholds)
    if enabled:
        gc.enable()
    else:
        gc.disable()


def _start(seconds: float) -> None:
    global _before, _stop, _timer  # noqa: PLW0603 - one collector per process
    _before = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
    gc.disable()
    try:
        gc.collect()  # garbage of the start-up must not be frozen with it
        gc.freeze()
        gc.set_threshold(YOUNG, NEVER, NEVER)
        if _before[0]:
            gc.enable()
        _stop = threading.Event()
        _timer = threading.Thread(target=_collect_every, args=(seconds, _stop), name="paced-gc", daemon=True)
        _timer.start()
    except BaseException:
        _timer = None
        _restore()
        raise


@contextlib.contextmanager
def paced_collection(seconds: float = COLLECT_SECONDS) -> Iterator[None]:
    """Inside: the heap of now frozen, the young generation collected as allocations go, the older
    ones every ``seconds`` on a timer."""
    global _users, _timer  # noqa: PLW0603 - one collector per process
    with _lock:
        if _users == 0:
            _start(seconds)
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
                _restore()
