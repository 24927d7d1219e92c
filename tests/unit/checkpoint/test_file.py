"""The file:// lease store: one process, atomic rewrites, safe for the worker's shard threads."""

from __future__ import annotations

import json
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cdcsync.checkpoint import TRIM_HORIZON, Lease, ShardInfo
from cdcsync.checkpoint.file import FileLeaseStore
from cdcsync.checkpoint.open import open_lease_store
from cdcsync.errors import FatalError
from cdcsync.settings import parse_checkpoints
from tests.support.store_processes import checkpoint_shards, run_together, save_backfill_progress

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2024-05-01T00:00:00.000"
OTHER_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2024-06-01T00:00:00.000"
SHARDS = [ShardInfo("shardId-1"), ShardInfo("shardId-2", ("shardId-1",)), ShardInfo("shardId-3")]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints.json"


@pytest.fixture
def store(path: Path) -> FileLeaseStore:
    store = FileLeaseStore(path, worker_id="worker-a")
    store.sync_shards("Users", ARN, SHARDS)
    return store


def _lease(shard_id: str, *, checkpoint: str = TRIM_HORIZON, owner: str | None = "worker-a") -> Lease:
    parents = ("shardId-1",) if shard_id == "shardId-2" else ()
    return Lease("Users", ARN, shard_id, parents, owner, 0, checkpoint, finished=False)


def test_file_store_opened_from_target_is_file_store(path: Path) -> None:
    # GIVEN a file:// checkpoint setting WHEN the store is opened
    store = open_lease_store(parse_checkpoints(f"file://{path}"), worker_id="worker-a")
    # THEN it is the file store on that path, and opening wrote nothing yet
    assert isinstance(store, FileLeaseStore)
    assert store.path == path
    assert not path.exists()


def test_file_store_sync_shards_creates_unowned_leases_at_trim_horizon(store: FileLeaseStore) -> None:
    # GIVEN shards synced once WHEN they are synced again with one more shard
    store.sync_shards("Users", ARN, [*SHARDS, ShardInfo("shardId-4", ("shardId-3",))])
    # THEN every shard has one lease, unowned, at TRIM_HORIZON, with its parents
    leases = store.leases("Users", ARN)
    assert [(lease.shard_id, lease.parent_shard_ids) for lease in leases] == [
        ("shardId-1", ()),
        ("shardId-2", ("shardId-1",)),
        ("shardId-3", ()),
        ("shardId-4", ("shardId-3",)),
    ]
    assert {(lease.owner, lease.checkpoint, lease.finished) for lease in leases} == {
        (None, TRIM_HORIZON, False)
    }


def test_file_store_acquire_returns_every_unfinished_lease_owned_by_worker(store: FileLeaseStore) -> None:
    # GIVEN one finished shard and a lease of another stream of the same table
    lease = store.acquire("Users", ARN)[0]
    store.checkpoint(lease, "00000000000000000000100", finished=True)
    store.sync_shards("Users", OTHER_ARN, [ShardInfo("shardId-9")])
    # WHEN the worker acquires the first stream's leases
    acquired = store.acquire("Users", ARN)
    # THEN it owns every unfinished shard of that stream, and only those
    assert acquired == [_lease("shardId-2"), _lease("shardId-3")]


def test_file_store_round_trip_survives_reopen(store: FileLeaseStore, path: Path) -> None:
    # GIVEN checkpoints, a finished shard, a released lease and a progress record
    first, second, third = store.acquire("Users", ARN)
    store.checkpoint(first, "00000000000000000000100", finished=True)
    store.checkpoint(second, "00000000000000000000200")
    store.release(third)
    store.save_progress("backfill|Users|segment-0", {"last_key": {"UserId": {"N": "7"}}, "done": False})
    # WHEN another store (a restarted process) opens the same file
    reopened = FileLeaseStore(path, worker_id="worker-b")
    # THEN it sees exactly what was written
    assert reopened.leases("Users", ARN) == [
        Lease("Users", ARN, "shardId-1", (), "worker-a", 0, "00000000000000000000100", finished=True),
        _lease("shardId-2", checkpoint="00000000000000000000200"),
        _lease("shardId-3", owner=None),
    ]
    assert reopened.load_progress("backfill|Users|segment-0") == {
        "last_key": {"UserId": {"N": "7"}},
        "done": False,
    }
    assert reopened.load_progress("backfill|Users|segment-1") is None
    # AND the document has the documented shape
    document = json.loads(path.read_text())
    assert set(document) == {"leases", "progress"}
    assert sorted(document["leases"]) == ["Users|shardId-1", "Users|shardId-2", "Users|shardId-3"]


def test_file_store_checkpoint_after_release_still_succeeds(store: FileLeaseStore) -> None:
    # GIVEN a released lease (one process: nobody else can own it)
    lease = store.acquire("Users", ARN)[0]
    store.release(lease)
    # WHEN the shard still checkpoints
    updated = store.checkpoint(lease, "00000000000000000000300")
    # THEN it is recorded, never LeaseLostError
    assert updated == _lease("shardId-1", checkpoint="00000000000000000000300")
    assert store.leases("Users", ARN)[0] == updated


def test_file_store_progress_is_a_private_copy(store: FileLeaseStore) -> None:
    # GIVEN a saved record WHEN the caller mutates what it saved and what it loaded
    value = {"segments": [1, 2]}
    store.save_progress("k", value)
    value["segments"].append(3)
    loaded = store.load_progress("k")
    assert loaded is not None
    loaded["segments"].append(4)
    # THEN the store's record is unchanged
    assert store.load_progress("k") == {"segments": [1, 2]}


def test_file_store_crash_before_replace_keeps_old_file(
    store: FileLeaseStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a stored checkpoint
    lease = store.acquire("Users", ARN)[0]
    store.checkpoint(lease, "00000000000000000000100")
    before = path.read_bytes()

    # WHEN the process fails after writing the temporary file but before replacing the old one
    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(FatalError) as caught:
        store.checkpoint(lease, "00000000000000000000200")
    monkeypatch.undo()
    # THEN the error says what failed and what to check
    assert str(caught.value) == (
        f"cannot write checkpoint file {path}: No space left on device "
        "(check the folder exists, is writable and has free space); the previous checkpoints are kept"
    )
    # AND the old file is intact and readable, memory agrees with disk, no temporary file is left
    # (the lock file beside it stays: it is created once and never deleted)
    assert path.read_bytes() == before
    assert FileLeaseStore(path, worker_id="w").leases("Users", ARN)[0].checkpoint == "00000000000000000000100"
    assert store.leases("Users", ARN)[0].checkpoint == "00000000000000000000100"
    assert sorted(entry.name for entry in path.parent.iterdir()) == [path.name, f"{path.name}.lock"]


def test_file_store_leftover_temporary_file_is_ignored(store: FileLeaseStore, path: Path) -> None:
    # GIVEN a half-written temporary file left by a process killed mid-write
    (path.parent / f".{path.name}.abc123.tmp").write_bytes(b'{"leases": {"Users|sh')
    # WHEN the file is opened again
    reopened = FileLeaseStore(path, worker_id="worker-a")
    # THEN the last complete document is what counts
    assert [lease.shard_id for lease in reopened.leases("Users", ARN)] == [
        "shardId-1",
        "shardId-2",
        "shardId-3",
    ]


def test_file_store_threads_checkpoint_concurrently_without_losing_any(
    store: FileLeaseStore, path: Path
) -> None:
    # GIVEN eight shards, each checkpointed by its own thread, all at once
    shards = [ShardInfo(f"shardId-{n:02d}") for n in range(8)]
    store.sync_shards("Users", ARN, shards)
    leases = {lease.shard_id: lease for lease in store.acquire("Users", ARN)}
    start = threading.Barrier(len(shards))

    def run(shard_id: str) -> None:
        start.wait()
        lease = leases[shard_id]
        for sequence in range(1, 11):
            lease = store.checkpoint(lease, f"{sequence:021d}")

    # WHEN they run to completion
    with ThreadPoolExecutor(max_workers=len(shards)) as pool:
        futures = [pool.submit(run, shard.shard_id) for shard in shards]
    for future in futures:
        future.result()  # re-raises a thread's error here
    # THEN no write was lost, in memory or on disk
    expected = {shard.shard_id: f"{10:021d}" for shard in shards}
    on_disk = FileLeaseStore(path, worker_id="w").leases("Users", ARN)
    assert {lease.shard_id: lease.checkpoint for lease in on_disk if lease.shard_id in expected} == expected
    assert {lease.shard_id: lease.checkpoint for lease in store.leases("Users", ARN)} == {
        "shardId-1": TRIM_HORIZON,
        "shardId-2": TRIM_HORIZON,
        "shardId-3": TRIM_HORIZON,
        **expected,
    }


def test_file_store_run_and_backfill_processes_share_one_file_without_losing_any(path: Path) -> None:
    # GIVEN one file:// store used by `cdcsync run` (4 shards) and `cdcsync backfill`, side by side
    # as the runbook has them, each in its own OS process
    # WHEN the worker checkpoints every shard 40 times while the backfill saves its progress 80 times
    codes = run_together(
        (checkpoint_shards, (str(path), ARN, 4, 40)), (save_backfill_progress, (str(path), 80))
    )
    # THEN both finished, and the file holds the last write of each: no process overwrote the other
    assert codes == [0, 0]
    reopened = FileLeaseStore(path, worker_id="w")
    assert {lease.shard_id: lease.checkpoint for lease in reopened.leases("Users", ARN)} == {
        f"shardId-{n:02d}": f"{40:021d}" for n in range(4)
    }
    assert reopened.load_progress("backfill|Users") == {"kind": "scan", "pages": 80}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            b"{not json",
            "is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        ),
        (b"[]", ': expected {"leases": {...}, "progress": {...}}'),
        (b'{"leases": [], "progress": {}}', ': expected {"leases": {...}, "progress": {...}}'),
        (b'{"leases": {}, "progress": {"k": 1}}', ': "progress" must map keys to objects'),
        (
            b'{"leases": {"Users|s": {"table": "Users"}}, "progress": {}}',
            ": lease \"Users|s\" is malformed (KeyError('parent_shard_ids'))",
        ),
        (
            b'{"leases": {"Users|s": {"table": "Users", "stream_arn": "a", "shard_id": "s",'
            b' "checkpoint": "1", "parent_shard_ids": [], "owner": null,'
            b' "counter": "0", "finished": false}}}',
            ': lease "Users|s" is malformed '
            "(TypeError('counter must be an integer and finished true or false'))",
        ),
    ],
)
def test_file_store_malformed_file_raises_fatal_error(path: Path, content: bytes, problem: str) -> None:
    # GIVEN a checkpoint file that is not a valid document
    path.write_bytes(content)
    # WHEN it is opened THEN the worker stops, rather than silently restarting every shard
    with pytest.raises(FatalError) as caught:
        FileLeaseStore(path, worker_id="worker-a")
    separator = " " if problem.startswith("is") else ""
    assert str(caught.value) == (
        f"checkpoint file {path}{separator}{problem}; "
        "fix or restore the file; deleting it restarts every shard from TRIM_HORIZON"
    )


def test_file_store_missing_folder_raises_fatal_error(tmp_path: Path) -> None:
    # GIVEN a path in a folder that does not exist
    path = tmp_path / "missing" / "checkpoints.json"
    store = FileLeaseStore(path, worker_id="worker-a")
    # WHEN the first write happens THEN it fails loudly instead of creating the folder
    with pytest.raises(FatalError) as caught:
        store.sync_shards("Users", ARN, SHARDS)
    assert str(caught.value) == (
        f"cannot write checkpoint file {path}: No such file or directory "
        "(check the folder exists, is writable and has free space); the previous checkpoints are kept"
    )


@pytest.mark.parametrize(
    ("live", "replaced"),
    [((ARN,), True), ((OTHER_ARN, ARN), False)],
    ids=["old-stream-not-read", "old-stream-still-read"],
)
def test_file_store_sync_shards_other_streams_unfinished_leases_are_returned_and_a_clash_replaced(
    tmp_path: Path, live: tuple[str, ...], replaced: bool
) -> None:
    # GIVEN checkpoints in the table's old stream: shardId-1 half read, shardId-2 finished
    store = FileLeaseStore(tmp_path / "fresh.json", worker_id="worker-a")
    store.sync_shards("Users", OTHER_ARN, [ShardInfo("shardId-1"), ShardInfo("shardId-2")])
    half, done = store.acquire("Users", OTHER_ARN)
    half = store.checkpoint(half, "100")
    done = store.checkpoint(done, "200", finished=True)
    # WHEN the table's new stream lists a shard with the same id (emulators repeat shard ids)
    ignored = store.sync_shards("Users", ARN, [ShardInfo("shardId-1")], live_streams=live)
    # THEN an old stream nobody reads: its unfinished lease is returned (to report) and the new
    # stream's shard gets its own lease; an old stream still read keeps its lease
    if replaced:
        assert ignored == [half]
        assert store.leases("Users", ARN) == [_lease("shardId-1", owner=None)]
        assert store.leases("Users", OTHER_ARN) == [done]
    else:
        assert ignored == []
        assert store.leases("Users", ARN) == []
        assert store.leases("Users", OTHER_ARN) == [half, done]


def test_file_store_created_files_are_owner_only_from_first_write(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the usual umask (0644 files unless asked otherwise), and a spy on the rewrite's swap
    swapped: list[int] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        swapped.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    old_umask = os.umask(0o022)
    try:
        # WHEN the first state is written
        FileLeaseStore(path, worker_id="worker-a").sync_shards("Users", ARN, SHARDS)
    finally:
        os.umask(old_umask)
    # THEN the document, its temporary file and its lock file are the owner's alone
    lock = path.with_name(f"{path.name}.lock")
    assert (swapped, stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(lock.stat().st_mode)) == (
        [0o600],
        0o600,
        0o600,
    )


def test_file_store_existing_files_others_can_read_become_owner_only(
    store: FileLeaseStore, path: Path
) -> None:
    # GIVEN a document and lock file an older version left readable by everyone
    for each in (path, store.lock_path):
        each.chmod(0o644)
    # WHEN the state is next read
    assert len(store.leases("Users", ARN)) == len(SHARDS)
    # THEN both are the owner's alone again
    assert (stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(store.lock_path.stat().st_mode)) == (0o600, 0o600)


@pytest.mark.parametrize("linked", ["document", "lock"])
def test_file_store_symbolic_link_is_refused_and_its_target_untouched(
    path: Path, tmp_path: Path, linked: str
) -> None:
    # GIVEN a stored state whose document or lock file is then a symbolic link to another file of the owner
    FileLeaseStore(path, worker_id="worker-a").sync_shards("Users", ARN, SHARDS)
    target = tmp_path / "notes.txt"
    target.write_text("{}\n")
    target.chmod(0o644)
    named = path if linked == "document" else path.with_name(f"{path.name}.lock")
    named.unlink()
    named.symlink_to(target)
    # WHEN the store is opened and read THEN it is refused, and the other file is neither read as state
    # nor narrowed
    with pytest.raises(FatalError) as caught:
        FileLeaseStore(path, worker_id="worker-a").leases("Users", ARN)
    action = "read" if linked == "document" else "write"
    assert str(caught.value).startswith(
        f"cannot {action} checkpoint file {path}: {named} is a symbolic link, which is not followed; "
        "name the file itself"
    )
    assert (target.read_text(), stat.S_IMODE(target.stat().st_mode)) == ("{}\n", 0o644)
