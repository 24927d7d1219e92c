"""The coordinator: which shards this worker reads, and the loops that read them.

Every round (a third of the lease period) and for each mapped table: resolve the stream (again
when it was disabled and re-enabled: a new ARN), list its shards (re-listed every round, so new
shards after a split are found), create their leases, renew ours and take a fair share, start a
loop for each owned shard whose parents are finished (lineage: a child never runs ahead of its
parent), and stop loops whose lease was lost. Lag is the oldest iterator age over owned shards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdcsync.checkpoint import Lease, LeaseStore
from cdcsync.errors import ConfigError, TransientError
from cdcsync.metrics import Metrics
from cdcsync.pipeline import Pipeline
from cdcsync.source.streams import ShardReader, list_shards, ready_shards, stream_arn_of
from cdcsync.worker.shard_loop import ShardLoop

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 25.0  # SIGTERM to exit within 30 s: in-flight batches end by then (shard_loop)


@dataclass
class Health:
    """What /healthz and /readyz answer from: the coordinator's last successful round."""

    last_round: float = 0.0  # monotonic
    dynamodb_ok: bool = False
    opensearch_ok: bool = False


@dataclass
class Coordinator:
    tables: tuple[str, ...]
    store: LeaseStore
    pipeline: Pipeline
    metrics: Metrics
    dynamodb: Any
    streams: Any
    check_opensearch: Callable[[], bool]
    stopping: threading.Event = field(default_factory=threading.Event)
    round_seconds: float = 10.0
    health: Health = field(default_factory=Health)
    loops: dict[tuple[str, str], ShardLoop] = field(default_factory=dict)
    retiring: list[ShardLoop] = field(default_factory=list)
    _arns: dict[str, str] = field(default_factory=dict)

    def run(self) -> None:
        """Coordinate until ``stopping`` is set; then stop the loops and release the leases."""
        while not self.stopping.is_set():
            self.round()
            self.stopping.wait(self.round_seconds)
        self.shutdown()

    def round(self) -> None:
        dynamodb_ok = True
        for table in self.tables:
            try:
                self._table_round(table)
            except TransientError as exc:
                dynamodb_ok = False
                log.warning("cannot coordinate %s this round: %s", table, exc)
            except ConfigError as exc:
                dynamodb_ok = False
                log.error("%s", exc)  # noqa: TRY400 - the message tells the operator what to fix
        self.health.dynamodb_ok = dynamodb_ok
        self.health.opensearch_ok = self.check_opensearch()
        self.health.last_round = time.monotonic()

    def _stream_arn(self, table: str) -> str:
        arn = self._arns.get(table)
        if arn is None:
            arn = str(stream_arn_of(self.dynamodb, table))  # raises ConfigError, saying how to enable it
            self._arns[table] = arn
        return arn

    def _table_round(self, table: str) -> None:
        if any(loop.stream_gone for (t, _), loop in self.loops.items() if t == table):
            log.warning("stream of %s was replaced; following the new one", table)
            self._arns.pop(table, None)
            self._stop_loops(table)
        arn = self._stream_arn(table)
        shards = list_shards(self.streams, arn)
        self.store.sync_shards(table, arn, shards)
        owned = {lease.shard_id: lease for lease in self.store.acquire(table, arn)}
        every = self.store.leases(table, arn)
        finished = {lease.shard_id for lease in every if lease.finished}
        known = {lease.shard_id for lease in every}
        ready = {shard.shard_id for shard in ready_shards(shards, finished, known)}
        for (loop_table, shard_id), loop in list(self.loops.items()):
            if loop_table == table and (shard_id not in owned or loop.done):
                if shard_id not in owned and loop.alive:
                    log.info("lease of shard %s moved to another worker; stopping it", shard_id)
                    loop.stopping.set()
                    self.retiring.append(loop)
                    self.metrics.release_shard(table, shard_id)  # its new owner reports its age now
                del self.loops[(loop_table, shard_id)]
        self.retiring = [loop for loop in self.retiring if loop.alive]
        busy = {(loop.lease.table, loop.shard_id) for loop in self.retiring}
        for shard_id, lease in owned.items():
            # A loop told to stop may still be finishing a write: never two loops for one shard.
            if (table, shard_id) not in self.loops and (table, shard_id) not in busy and shard_id in ready:
                self._start(lease)
        self.metrics.shards_owned(table, len(owned))
        self._report_lag(table)

    def _report_lag(self, table: str) -> None:
        """Iterator age per shard and the table's lag; called by each round and by each loop's progress."""
        now_ms = time.time_ns() // 1_000_000
        ages = []
        for (loop_table, shard_id), loop in list(self.loops.items()):
            age = loop.lag_seconds(now_ms) if loop_table == table else None
            if age is not None:
                self.metrics.iterator_age(table, shard_id, age)
                ages.append(age)
        self.metrics.replication_lag(table, max(ages, default=0.0))

    def _start(self, lease: Lease) -> None:
        stopping = threading.Event()
        reader = ShardReader(
            self.streams,
            lease.stream_arn,
            lease.shard_id,
            lease.checkpoint,
            table=lease.table,
            metrics=self.metrics,
            sleep=stopping.wait,  # empty-read backoff ends at once on shutdown
        )
        loop = ShardLoop(lease, reader, self.pipeline, self.store, stopping)
        loop.on_progress = lambda: self._report_lag(lease.table)
        self.loops[(lease.table, lease.shard_id)] = loop
        log.info("reading shard %s of %s from %s", lease.shard_id, lease.table, lease.checkpoint)
        loop.start()

    def _stop_loops(self, table: str | None = None) -> list[ShardLoop]:
        stopped = [loop for (t, _), loop in self.loops.items() if table is None or t == table]
        for loop in stopped:
            loop.stopping.set()
        deadline = time.monotonic() + SHUTDOWN_SECONDS  # all loops drain at once, within one budget
        for loop in stopped:
            if loop.thread is not None:
                loop.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for key in [k for k in self.loops if table is None or k[0] == table]:
            del self.loops[key]
        return stopped

    def shutdown(self) -> None:
        """Finish in-flight writes, checkpoint, release leases (another replica takes them at once)."""
        for loop in self._stop_loops():
            try:
                self.store.release(loop.lease)
            except TransientError as exc:
                log.warning("could not release shard %s: %s", loop.shard_id, exc)
