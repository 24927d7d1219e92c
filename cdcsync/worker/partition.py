"""Which shards one process of ``cdcsync run --processes N`` reads, over a ``file://`` store.

The file store has no leases to balance: one process owns every shard. So the N processes of one
``run`` split the shards by a stable hash: process ``i`` reads the shards whose
``crc32("<table>|<shard id>") % N == i``. The hash never changes between runs or processes (unlike
Python's ``hash``), so a restarted process reads exactly the shards its predecessor read, from their
checkpoints. Lineage holds across processes: every process lists every shard and reads every lease
from the shared file (under ``flock``), so a child shard starts, in whichever process owns it, once
its parents are finished, whoever finished them.

Over ``dynamodb://`` the processes are plain replicas with their own worker ids: the lease table
balances the shards among them (and takes over a dead one's after the lease period).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdcsync.checkpoint import Lease, LeaseStore, Record, ShardInfo, WriteWindow
from cdcsync.errors import ConfigError

_SPEC = re.compile(r"(\d+)/(\d+)")


@dataclass(frozen=True, slots=True)
class Partition:
    """Process ``index`` (0-based) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Partition:
        """``I/N`` as ``--partition`` gives it (1-based ``I``, as the logs show processes)."""
        match = _SPEC.fullmatch(text)
        if match is None or not 1 <= int(match[1]) <= int(match[2]):
            raise ConfigError(f"--partition {text}: expected I/N with 1 <= I <= N, e.g. 1/4")
        return cls(int(match[1]) - 1, int(match[2]))

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"

    def owns(self, table: str, shard_id: str) -> bool:
        return zlib.crc32(f"{table}|{shard_id}".encode()) % self.count == self.index


class PartitionedLeaseStore:
    """A ``file://`` store as one process of N sees it: ``acquire`` returns only its partition's
    unfinished leases; everything else (listing, lineage, checkpoints, progress) is the shared file's.

    The file store's ``acquire`` would mark every lease as this process's; here nothing is written
    until the first checkpoint names this process as the shard's owner (the owner is informational
    in the file store: nobody can take a lease from it)."""

    def __init__(self, store: LeaseStore, partition: Partition) -> None:
        self.store = store
        self.partition = partition

    def describe(self) -> str:
        return f"{self.store.describe()} (process {self.partition})"

    def sync_shards(
        self,
        table: str,
        stream_arn: str,
        shards: Sequence[ShardInfo],
        *,
        live_streams: Collection[str] = (),
    ) -> list[Lease]:
        return self.store.sync_shards(table, stream_arn, shards, live_streams=live_streams)

    def leases(self, table: str, stream_arn: str) -> list[Lease]:
        return self.store.leases(table, stream_arn)

    def acquire(self, table: str, stream_arn: str) -> list[Lease]:
        return [
            lease
            for lease in self.store.leases(table, stream_arn)
            if not lease.finished and self.partition.owns(lease.table, lease.shard_id)
        ]

    def checkpoint(self, lease: Lease, sequence_number: str, *, finished: bool = False) -> Lease:
        return self.store.checkpoint(lease, sequence_number, finished=finished)

    def write_window(self, lease: Lease) -> WriteWindow:
        return self.store.write_window(lease)

    def release(self, lease: Lease) -> None:
        self.store.release(lease)

    def save_progress(self, key: str, value: Mapping[str, Any]) -> None:
        self.store.save_progress(key, value)

    def load_progress(self, key: str) -> dict[str, Any] | None:
        return self.store.load_progress(key)

    def put_record(self, key: str, value: Mapping[str, Any], *, revision: int | None) -> Record:
        return self.store.put_record(key, value, revision=revision)

    def load_records(self, prefix: str) -> list[Record]:
        return self.store.load_records(prefix)
