"""``file://PATH`` lease store: one worker process owns every shard; state is one JSON document on disk.

The document is ``{"leases": {"<table>|<shard_id>": {...}}, "progress": {"<key>": {...}}}``, plus
``"records": {"<key>": {"revision": n, "value": {...}}}`` once a shared backfill run has written
one (``put_record``: a compare-and-set on the revision, under the lock below). Every
change rewrites it whole: a temporary file in the same folder is written, flushed and fsynced,
then ``os.replace``-d over the old one and the folder is fsynced. A crash at any point leaves
either the old or the new document, never half of one (a leftover ``.PATH.*.tmp`` file is
harmless and may be deleted).

Concurrency: every change is a read-modify-write under an exclusive ``flock`` on the sidecar
``PATH.lock`` (plus a thread lock): the document is re-read under the lock, only the caller's own
keys change (a shard's lease, a backfill's progress record), and the whole document is written
back atomically as above. So the worker's shard threads, and ``cdcsync run`` and ``cdcsync
backfill`` sharing one file as the runbook has them, never overwrite each other's state. Reads
take a shared lock and read the disk, never a copy in memory. The lock file is created beside the
document and never deleted. ``flock`` is local to one host: processes on several hosts (one file on
NFS) and several ``run`` replicas need ``dynamodb://TABLE``, which has leases and conditional writes.

Decisions:
- One process owns everything, so ``acquire`` returns every unfinished lease of the stream,
  ``checkpoint`` never raises ``LeaseLostError`` (there is nobody to lose a lease to) and
  ``write_window`` never closes.
- Nothing is kept in memory between calls: the disk is the only state, so nobody ever claims
  progress the disk does not hold, and a write that fails leaves the previous document in force.
- An unreadable or malformed file stops the worker (``FatalError``) rather than being treated as
  empty: silently starting over would replay every shard from ``TRIM_HORIZON``.
- The parent folder is not created: a mistyped path should fail loudly, not write elsewhere.
- Every file this store creates is mode 0600 from its creation (the document is a ``mkstemp``
  file swapped in; the lock is created so): checkpoints name tables and shards of the account.
  The document and its lock are opened by ``open_private``: an existing one others could read
  (an older version's 0644) is narrowed to its owner at its first use, and a symbolic link is
  refused, not followed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cdcsync.checkpoint import (
    TRIM_HORIZON,
    Lease,
    Record,
    RecordChangedError,
    ShardInfo,
    WriteWindow,
    is_foreign,
)
from cdcsync.errors import FatalError
from cdcsync.private_files import open_private

_WRITE_HINT = "check the folder exists, is writable and has free space"
# (leases, progress records, compare-and-set records), as stored on disk
_State = tuple[dict[str, Lease], dict[str, dict[str, Any]], dict[str, Record]]


def lease_key(table: str, shard_id: str) -> str:
    """The key of a shard's lease: table names never contain ``|``."""
    return f"{table}|{shard_id}"


class FileLeaseStore:
    """``LeaseStore`` on one local JSON file: one worker process, plus backfills beside it."""

    def __init__(self, path: Path, *, worker_id: str) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.worker_id = worker_id
        self._lock = threading.Lock()
        _load(path)  # an unreadable or malformed file stops the caller now, not at its first write

    def describe(self) -> str:
        """The store as ``CDCSYNC_CHECKPOINTS`` would name it."""
        return f"file://{self.path.absolute()}"

    def sync_shards(
        self,
        table: str,
        stream_arn: str,
        shards: Sequence[ShardInfo],
        *,
        live_streams: Collection[str] = (),
    ) -> list[Lease]:
        live = {*live_streams, stream_arn}
        with self._exclusive() as (leases, progress, records):
            ignored = [
                lease for lease in leases.values() if is_foreign(lease, table, live) and not lease.finished
            ]
            added = {
                lease_key(table, shard.shard_id): Lease(
                    table=table,
                    stream_arn=stream_arn,
                    shard_id=shard.shard_id,
                    parent_shard_ids=shard.parent_shard_ids,
                    owner=None,
                    counter=0,
                    checkpoint=TRIM_HORIZON,
                    finished=False,
                )
                for shard in shards
                if (stored := leases.get(lease_key(table, shard.shard_id))) is None
                or is_foreign(stored, table, live)
            }
            if added:
                self._write({**leases, **added}, progress, records)
        return sorted(ignored, key=lambda lease: lease.shard_id)

    def leases(self, table: str, stream_arn: str) -> list[Lease]:
        leases, _, _ = self._read()
        return _of_stream(leases, table, stream_arn)

    def acquire(self, table: str, stream_arn: str) -> list[Lease]:
        with self._exclusive() as (stored, progress, records):
            taken = {
                lease_key(table, lease.shard_id): replace(lease, owner=self.worker_id)
                for lease in _of_stream(stored, table, stream_arn)
                if not lease.finished and lease.owner != self.worker_id
            }
            leases = {**stored, **taken}
            if taken:
                self._write(leases, progress, records)
        return [lease for lease in _of_stream(leases, table, stream_arn) if not lease.finished]

    def checkpoint(self, lease: Lease, sequence_number: str, *, finished: bool = False) -> Lease:
        key = lease_key(lease.table, lease.shard_id)
        with self._exclusive() as (leases, progress, records):
            stored = leases.get(key, lease)  # the stored lineage and counter win over the caller's copy
            updated = replace(stored, owner=self.worker_id, checkpoint=sequence_number, finished=finished)
            self._write({**leases, key: updated}, progress, records)
        return updated

    def write_window(self, lease: Lease) -> WriteWindow:
        return WriteWindow(opens_in=0.0, closes_in=math.inf)

    def release(self, lease: Lease) -> None:
        key = lease_key(lease.table, lease.shard_id)
        with self._exclusive() as (leases, progress, records):
            stored = leases.get(key)
            if stored is not None and stored.owner is not None:
                self._write({**leases, key: replace(stored, owner=None)}, progress, records)

    def save_progress(self, key: str, value: Mapping[str, Any]) -> None:
        record = json.loads(json.dumps(value))  # a private, JSON-shaped copy; fails early if not JSON-able
        with self._exclusive() as (leases, progress, records):
            self._write(leases, {**progress, key: record}, records)

    def load_progress(self, key: str) -> dict[str, Any] | None:
        _, progress, _ = self._read()
        return progress.get(key)  # freshly parsed: the caller's copy is its own

    def put_record(self, key: str, value: Mapping[str, Any], *, revision: int | None) -> Record:
        copy = json.loads(json.dumps(value))  # a private, JSON-shaped copy; fails early if not JSON-able
        with self._exclusive() as (leases, progress, records):
            stored = records.get(key)
            if (None if stored is None else stored.revision) != revision:
                raise RecordChangedError(key, stored)
            written = Record(key, 1 if stored is None else stored.revision + 1, copy)
            self._write(leases, progress, {**records, key: written})
        return written

    def load_records(self, prefix: str) -> list[Record]:
        _, _, records = self._read()
        return [record for key, record in sorted(records.items()) if key.startswith(prefix)]

    def _read(self) -> _State:
        """The state on disk now, read under a shared lock (no half-replaced view is possible anyway)."""
        if not self.path.exists():
            return {}, {}, {}  # nothing stored yet; reading creates no lock file
        with self._lock, self._locked(fcntl.LOCK_SH):
            return _load(self.path)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[_State]:
        """Hold this process's lock and the cross-process ``flock``; yield the state on disk now.

        Every change is a read-modify-write inside this block: re-read, change only the caller's
        own keys, ``_write``. So a worker's checkpoints and a backfill's progress, written by two
        processes, never overwrite each other.
        """
        with self._lock, self._locked(fcntl.LOCK_EX):
            yield _load(self.path)

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        """``flock`` on the sidecar ``PATH.lock``.

        Not on the document itself: every write swaps in a new inode, and a process waiting for a
        lock on the old one would go on to read a file that is no longer the document. A fresh
        descriptor per call, closed (so unlocked) on the way out, also on error.
        """
        try:
            fd = open_private(self.lock_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise FatalError(
                f"cannot write checkpoint file {self.path}: {exc.strerror or exc} ({_WRITE_HINT}); "
                "the previous checkpoints are kept"
            ) from exc
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    def _write(
        self, leases: dict[str, Lease], progress: dict[str, dict[str, Any]], records: dict[str, Record]
    ) -> None:
        """Write the whole new state to disk atomically (the caller holds the exclusive lock)."""
        document: dict[str, Any] = {
            "leases": {key: _lease_to_json(lease) for key, lease in sorted(leases.items())},
            "progress": progress,
        }
        if records:  # absent until a shared backfill run writes one: older documents stay as they were
            document["records"] = {
                key: {"revision": record.revision, "value": record.value}
                for key, record in sorted(records.items())
            }
        _write_atomically(self.path, json.dumps(document, indent=2, sort_keys=True).encode() + b"\n")


def _of_stream(leases: Mapping[str, Lease], table: str, stream_arn: str) -> list[Lease]:
    chosen = (lease for lease in leases.values() if lease.table == table and lease.stream_arn == stream_arn)
    return sorted(chosen, key=lambda lease: lease.shard_id)


def _write_atomically(path: Path, payload: bytes) -> None:
    """Temp file in the same folder + fsync + ``os.replace`` + folder fsync."""
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_directory(path.parent)
    except OSError as exc:
        raise FatalError(
            f"cannot write checkpoint file {path}: {exc.strerror or exc} ({_WRITE_HINT}); "
            "the previous checkpoints are kept"
        ) from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lease_to_json(lease: Lease) -> dict[str, Any]:
    return {
        "table": lease.table,
        "stream_arn": lease.stream_arn,
        "shard_id": lease.shard_id,
        "parent_shard_ids": list(lease.parent_shard_ids),
        "owner": lease.owner,
        "counter": lease.counter,
        "checkpoint": lease.checkpoint,
        "finished": lease.finished,
    }


def _lease_from_json(data: Any) -> Lease:
    """Strict: a field of the wrong type raises (KeyError, TypeError, ValueError)."""
    if not isinstance(data, dict):
        raise TypeError(f"expected an object, got {type(data).__name__}")
    parents = data["parent_shard_ids"]
    owner = data.get("owner")
    fields = (data["table"], data["stream_arn"], data["shard_id"], data["checkpoint"])
    if not all(isinstance(field, str) for field in fields) or not isinstance(parents, list):
        raise TypeError("table, stream_arn, shard_id and checkpoint must be strings, parent_shard_ids a list")
    if owner is not None and not isinstance(owner, str):
        raise TypeError("owner must be a string or null")
    if not isinstance(data["counter"], int) or not isinstance(data["finished"], bool):
        raise TypeError("counter must be an integer and finished true or false")
    return Lease(
        table=data["table"],
        stream_arn=data["stream_arn"],
        shard_id=data["shard_id"],
        parent_shard_ids=tuple(str(parent) for parent in parents),
        owner=owner,
        counter=data["counter"],
        checkpoint=data["checkpoint"],
        finished=data["finished"],
    )


def _load(path: Path) -> _State:
    """The stored state, or an empty one if the file does not exist yet."""
    fix = "fix or restore the file; deleting it restarts every shard from TRIM_HORIZON"
    try:
        with os.fdopen(open_private(path, os.O_RDONLY), "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        return {}, {}, {}
    except OSError as exc:
        raise FatalError(f"cannot read checkpoint file {path}: {exc.strerror or exc}") from exc
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise FatalError(f"checkpoint file {path} is not JSON ({exc}); {fix}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("leases", {}), dict):
        raise FatalError(
            f'checkpoint file {path}: expected {{"leases": {{...}}, "progress": {{...}}}}; {fix}'
        )
    progress = document.get("progress", {})
    if not isinstance(progress, dict) or not all(isinstance(value, dict) for value in progress.values()):
        raise FatalError(f'checkpoint file {path}: "progress" must map keys to objects; {fix}')
    leases: dict[str, Lease] = {}
    for key, data in document.get("leases", {}).items():
        try:
            leases[key] = _lease_from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise FatalError(f'checkpoint file {path}: lease "{key}" is malformed ({exc!r}); {fix}') from exc
    records: dict[str, Record] = {}
    for key, data in _object(document.get("records", {}), path, '"records"', fix).items():
        entry = data if isinstance(data, dict) else {}
        revision, value = entry.get("revision"), entry.get("value")
        if not isinstance(revision, int) or not isinstance(value, dict):
            raise FatalError(
                f'checkpoint file {path}: record "{key}" is malformed (expected revision and value); {fix}'
            )
        records[key] = Record(key, revision, value)
    return leases, progress, records


def _object(value: Any, path: Path, what: str, fix: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FatalError(f"checkpoint file {path}: {what} must be an object; {fix}")
    return value
