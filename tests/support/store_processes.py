"""Bodies of the second OS processes that hammer the file:// stores in tests (run with ``spawn``).

Each body waits on a shared barrier so both processes start together, then does its work through
the store's public methods only, as ``cdcsync run``, ``cdcsync backfill`` and ``cdcsync dlq redrive``
would. They live in a module of their own so a spawned child imports little.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from cdcsync.checkpoint import ShardInfo
from cdcsync.checkpoint.file import FileLeaseStore
from cdcsync.dlq import DeadLetter, DeadLetterError
from cdcsync.dlq.file import FileDeadLetterQueue
from tests.support.records import stream_record

AT = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
SPAWN = multiprocessing.get_context("spawn")  # no fork of a threaded pytest process


def dead_letter(n: int) -> DeadLetter:
    """A dead letter for item ``UserId = n``, told apart by its sequence number (letter ids are random)."""
    sequence = f"{100 + n:021d}"
    return DeadLetter(
        record=stream_record("INSERT", {"UserId": n}, {"UserId": n}, sequence=sequence),
        table="Users",
        keys={"UserId": {"N": str(n)}},
        sequence_number=sequence,
        error=DeadLetterError(status=400, type="mapper_parsing_exception", reason="bad"),
        attempts=1,
        first_failure_at=AT,
        last_failure_at=AT,
    )


def append_letters(path: str, numbers: list[int], start: Barrier) -> None:
    """A worker: one ``send`` per dead letter."""
    queue = FileDeadLetterQueue(Path(path))
    start.wait()
    for n in numbers:
        queue.send([dead_letter(n)])


def remove_letters(path: str, numbers: list[int], start: Barrier) -> None:
    """A redrive: read the queue, then remove the letters of ``numbers`` one ``remove`` at a time."""
    queue = FileDeadLetterQueue(Path(path))
    doomed = {dead_letter(n).sequence_number for n in numbers}
    stored = [item for item in queue.read() if item.letter.sequence_number in doomed]
    start.wait()
    for item in stored:
        queue.remove([item])


def checkpoint_shards(path: str, arn: str, shards: int, rounds: int, start: Barrier) -> None:
    """``cdcsync run``: checkpoint every shard ``rounds`` times, round-robin."""
    store = FileLeaseStore(Path(path), worker_id="worker")
    store.sync_shards("Users", arn, [ShardInfo(f"shardId-{n:02d}") for n in range(shards)])
    leases = {lease.shard_id: lease for lease in store.acquire("Users", arn)}
    start.wait()
    for sequence in range(1, rounds + 1):
        for shard_id, lease in leases.items():
            leases[shard_id] = store.checkpoint(lease, f"{sequence:021d}")


def save_backfill_progress(path: str, rounds: int, start: Barrier) -> None:
    """``cdcsync backfill``: save its progress record ``rounds`` times."""
    store = FileLeaseStore(Path(path), worker_id="backfill")
    start.wait()
    for page in range(1, rounds + 1):
        record: dict[str, Any] = {"kind": "scan", "pages": page}
        store.save_progress("backfill|Users", record)


def run_together(*bodies: tuple[Any, tuple[Any, ...]], timeout: float = 60.0) -> list[int | None]:
    """Start one process per ``(function, args)`` behind a shared barrier; their exit codes."""
    start = SPAWN.Barrier(len(bodies), timeout=timeout / 2)
    processes = [SPAWN.Process(target=function, args=(*args, start)) for function, args in bodies]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    return [process.exitcode for process in processes]
