"""Where the container worker (and backfill) remember how far they got, and who owns which shard.

A *lease* is one shard of one table's stream: its checkpoint (the last sequence number whose
record is written to OpenSearch or the dead-letter queue), whether the shard is finished (read to
its end and checkpointed), its parents (a child starts only after they finish), and which worker
owns it. Two stores implement ``LeaseStore``: ``file://`` (one process owns everything) and
``dynamodb://TABLE`` (a lease table shared by replicas, with conditional writes).

Both also keep *records*: small JSON values under a key, each with a revision the store raises on
every write, written only if the caller names the revision it last read (compare-and-set). Shared
backfill runs build their unit claims on them (``cdcsync/backfill/units.py``): on ``file://`` the
processes of one host share them under ``flock``, on ``dynamodb://`` any number of machines do.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cdcsync.errors import CdcsyncError

TRIM_HORIZON = "TRIM_HORIZON"  # checkpoint of a shard nobody has read yet


@dataclass(frozen=True, slots=True)
class Record:
    """A record as stored: its key, the revision of this value (1 when first written) and the value."""

    key: str
    revision: int
    value: dict[str, Any]


class RecordChangedError(Exception):
    """A compare-and-set found another revision (or none): ``current`` is the record as it is now.

    Not a cdcsync error: the caller decides (read again, give up the claim); it never reaches a user.
    """

    def __init__(self, key: str, current: Record | None) -> None:
        super().__init__(f"record {key} changed (now revision {current.revision if current else 'none'})")
        self.key = key
        self.current = current


class LeaseLostError(CdcsyncError):
    """Another worker took this lease (or it expired): stop writing for the shard at once."""


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """A shard as DescribeStream lists it."""

    shard_id: str
    parent_shard_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    """One shard's lease, as last read or written by this worker."""

    table: str
    stream_arn: str
    shard_id: str
    parent_shard_ids: tuple[str, ...]
    owner: str | None
    counter: int
    checkpoint: str  # a SequenceNumber, or TRIM_HORIZON
    finished: bool


@dataclass(frozen=True, slots=True)
class WriteWindow:
    """When this worker may write for a lease, in seconds from now on its own monotonic clock.

    ``opens_in``: how long to wait before the first write; above 0 only for a new owner of an
    expired or stolen lease, whose previous owner may still be writing. ``closes_in``: every write
    must end within this, the lease's remaining validity minus a margin; ``math.inf`` where
    nobody else can own the lease. See ARCHITECTURE.md, "Versions: why the index converges".
    """

    opens_in: float
    closes_in: float


def is_foreign(lease: Lease, table: str, live_streams: Collection[str]) -> bool:
    """A lease of ``table`` in a stream nobody reads: its checkpoint is ignored."""
    return lease.table == table and lease.stream_arn not in live_streams


class LeaseStore(Protocol):
    """Leases and checkpoints for the worker; progress records and unit records for backfill."""

    def describe(self) -> str:
        """The store as ``CDCSYNC_CHECKPOINTS`` would name it."""

    def sync_shards(
        self,
        table: str,
        stream_arn: str,
        shards: Sequence[ShardInfo],
        *,
        live_streams: Collection[str] = (),
    ) -> list[Lease]:
        """Create a lease (at TRIM_HORIZON, unowned) for every shard of the stream that has none.

        Returns the unfinished leases of the table's *other* streams that are not among
        ``live_streams`` (the streams the caller reads; ``stream_arn`` is always one): a stream
        the table no longer has (recreated, or its stream replaced while no worker ran), for the
        caller to read to its end or ignore. Leases are keyed by table and shard id,
        and emulators (moto) give every stream the same shard ids: a lease of such a stream under
        a shard id this stream lists is replaced by a new one for this stream.
        """

    def leases(self, table: str, stream_arn: str) -> list[Lease]:
        """Every lease of the stream (any owner), for lineage and balancing decisions."""

    def acquire(self, table: str, stream_arn: str) -> list[Lease]:
        """Renew this worker's leases and take its fair share of free or expired ones.

        Returns the unfinished leases this worker owns now. A lease it owned but could not renew
        is absent: its shard must stop. Call it every third of the lease period or more often.
        Raises ``TransientError`` when the store is throttled or unreachable (try again next round).
        """

    def checkpoint(self, lease: Lease, sequence_number: str, *, finished: bool = False) -> Lease:
        """Record progress and return the lease as stored.

        Raises ``LeaseLostError`` if this worker no longer owns the lease (taken, released, or not
        renewed within the lease period), ``TransientError`` if the store is throttled or
        unreachable, ``FatalError`` if it cannot be written at all. ``finished=True`` marks the
        shard read to its end: its lease is never taken again and its children may start.
        """

    def write_window(self, lease: Lease) -> WriteWindow:
        """How long from now this worker may write for ``lease``: ask before every write round.

        Raises ``LeaseLostError`` if this worker no longer owns the lease, or it may lapse before a
        write started now could end (not renewed for the lease period minus the margin).
        """

    def release(self, lease: Lease) -> None:
        """Give the lease up (shutdown), keeping its checkpoint, so another worker takes it at once."""

    def save_progress(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a small JSON-able record under ``key`` (backfill segments)."""

    def load_progress(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None."""

    def put_record(self, key: str, value: Mapping[str, Any], *, revision: int | None) -> Record:
        """Write ``value`` under ``key`` if its stored revision is ``revision`` (None: no record yet).

        Returns the record as written (revision + 1; 1 for a new one). Raises ``RecordChangedError``
        with the stored record if another write came first, ``TransientError`` or ``FatalError``
        as the store's other writes do.
        """

    def load_records(self, prefix: str) -> list[Record]:
        """Every record whose key starts with ``prefix``, by key, as stored now (consistent read)."""
