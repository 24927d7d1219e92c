"""The file:// dead-letter queue: durable appends, corrupt lines reported, atomic removal."""

from __future__ import annotations

import datetime as dt
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from cdcsync.dlq import (
    DeadLetter,
    DeadLetterError,
    DeadLetterQueueError,
    StoredLetter,
    open_dead_letter_queue,
)
from cdcsync.dlq.file import FileDeadLetterQueue
from cdcsync.settings import parse_dlq
from tests.support.records import stream_record
from tests.support.store_processes import append_letters, dead_letter, remove_letters, run_together

AT = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)


def _letter(n: int = 1, **overrides: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "record": stream_record("INSERT", {"UserId": n}, {"UserId": n}, sequence=f"{100 + n:021d}"),
        "table": "Users",
        "keys": {"UserId": {"N": str(n)}},
        "sequence_number": f"{100 + n:021d}",
        "error": DeadLetterError(status=400, type="mapper_parsing_exception", reason="bad"),
        "attempts": 1,
        "first_failure_at": AT,
        "last_failure_at": AT,
    }
    return DeadLetter(**(fields | overrides))


@pytest.fixture
def queue(tmp_path: Path) -> FileDeadLetterQueue:
    return FileDeadLetterQueue(tmp_path / "dlq.jsonl")


def test_file_queue_send_then_read_returns_letters_in_order(queue: FileDeadLetterQueue) -> None:
    # GIVEN letters sent in two calls
    letters = [_letter(n) for n in range(1, 6)]
    queue.send(letters[:2])
    queue.send(letters[2:])
    # WHEN read back
    stored = queue.read()
    # THEN every letter comes back, equal and in order, with its line number as handle
    assert [item.letter for item in stored] == letters
    assert [item.handle for item in stored] == [1, 2, 3, 4, 5]
    assert queue.path.read_bytes().count(b"\n") == 5


@pytest.mark.parametrize(("limit", "expected"), [(None, 3), (0, 0), (2, 2), (10, 3)])
def test_file_queue_read_limit_caps_count(
    queue: FileDeadLetterQueue, limit: int | None, expected: int
) -> None:
    # GIVEN three letters WHEN read with a limit THEN at most that many come back, oldest first
    letters = [_letter(n) for n in range(3)]
    queue.send(letters)
    assert [item.letter for item in queue.read(limit)] == letters[:expected]


def test_file_queue_missing_file_reads_empty(queue: FileDeadLetterQueue) -> None:
    # GIVEN nothing was ever sent WHEN read THEN there is nothing, and no file is created
    assert queue.read() == []
    assert not queue.path.exists()


def test_file_queue_remove_drops_only_removed_letters(queue: FileDeadLetterQueue) -> None:
    # GIVEN four letters
    letters = [_letter(n) for n in range(4)]
    queue.send(letters)
    stored = queue.read()
    # WHEN two are removed (one twice: removal is idempotent)
    queue.remove([stored[0], stored[2]])
    queue.remove([stored[2]])
    # THEN the others remain, in order, and no temporary file is left behind (only the lock file)
    assert [item.letter for item in queue.read()] == [letters[1], letters[3]]
    assert sorted(p.name for p in queue.path.parent.iterdir()) == ["dlq.jsonl", "dlq.jsonl.lock"]


def test_file_queue_corrupt_line_read_raises_with_file_and_line(queue: FileDeadLetterQueue) -> None:
    # GIVEN a file whose second line was damaged by hand
    queue.send([_letter(1)])
    with queue.path.open("ab") as file:
        file.write(b'{"letter_id": "x", "table": 3}\n')
    queue.send([_letter(3)])
    # WHEN read THEN the error names the file and line, what is wrong and what to do
    with pytest.raises(DeadLetterQueueError) as raised:
        queue.read()
    assert str(raised.value) == (
        f"{queue.path}:2: not a dead letter (record: Field required, and 7 more); "
        "fix or delete this entry, then read again"
    )


def test_file_queue_remove_keeps_corrupt_line(queue: FileDeadLetterQueue) -> None:
    # GIVEN a good letter, a corrupt line and another good letter
    first, last = _letter(1), _letter(2)
    queue.send([first])
    with queue.path.open("ab") as file:
        file.write(b"garbage\n")
    queue.send([last])
    # WHEN the good letters are removed (their handles from a read before the damage)
    queue.remove([_stored(first), _stored(last)])
    # THEN only the corrupt line is left, for a human to look at
    assert queue.path.read_bytes() == b"garbage\n"


def test_file_queue_truncated_last_line_next_send_starts_new_line(queue: FileDeadLetterQueue) -> None:
    # GIVEN a file cut short mid-append (a crash), so it does not end in a newline
    queue.send([_letter(1)])
    with queue.path.open("ab") as file:
        file.write(b'{"record": {"dyna')
    # WHEN another letter is sent
    letter = _letter(2)
    queue.send([letter])
    # THEN the damage stays on line 2 and the new letter is intact on line 3
    lines = queue.path.read_bytes().splitlines()
    assert lines[1] == b'{"record": {"dyna'
    assert DeadLetter.from_json(lines[2], where="line 3") == letter
    with pytest.raises(
        DeadLetterQueueError, match=rf"^{queue.path}:2: not a dead letter \(Invalid JSON: EOF"
    ):
        queue.read()


def test_file_queue_missing_directory_send_raises_naming_target(tmp_path: Path) -> None:
    # GIVEN a path in a directory that does not exist
    queue = FileDeadLetterQueue(tmp_path / "nope" / "dlq.jsonl")
    letters = [_letter(1), _letter(2)]
    # WHEN letters are sent THEN the error names the target, the cause and what to check
    with pytest.raises(DeadLetterQueueError) as raised:
        queue.send(letters)
    assert str(raised.value) == (
        f"cannot write 2 dead letters to file://{tmp_path}/nope/dlq.jsonl: No such file or directory "
        "(check the directory exists, is writable and has free space)"
    )
    assert raised.value.failed_ids == tuple(letter.letter_id for letter in letters)


def test_file_queue_concurrent_send_and_remove_keeps_every_letter(queue: FileDeadLetterQueue) -> None:
    # GIVEN 50 letters already stored, to be removed while 8 threads append 25 letters each
    old = [_letter(n) for n in range(50)]
    queue.send(old)
    doomed = queue.read()
    new = [[_letter(1000 + 100 * t + n) for n in range(25)] for t in range(8)]
    start = threading.Barrier(9)

    def append(letters: list[DeadLetter]) -> None:
        start.wait()
        for letter in letters:
            queue.send([letter])

    def remove() -> None:
        start.wait()
        for item in doomed:
            queue.remove([item])

    threads = [threading.Thread(target=append, args=(batch,)) for batch in new]
    threads.append(threading.Thread(target=remove))
    # WHEN they all run at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN every appended letter survived and every removed one is gone
    left = {item.letter.letter_id for item in queue.read()}
    assert left == {letter.letter_id for batch in new for letter in batch}


def test_file_queue_two_processes_append_and_remove_keep_every_letter(tmp_path: Path) -> None:
    # GIVEN 60 letters stored, which a redrive process removes one by one while a worker process
    # appends 150 new ones (the default file DLQ beside `cdcsync dlq redrive`)
    path = tmp_path / "dlq.jsonl"
    FileDeadLetterQueue(path).send([dead_letter(n) for n in range(60)])
    appended = list(range(1000, 1150))
    # WHEN both run at once, each in its own OS process
    codes = run_together(
        (append_letters, (str(path), appended)), (remove_letters, (str(path), list(range(60))))
    )
    # THEN both finished, every appended letter is there exactly once and every removed one is gone
    assert codes == [0, 0]
    left = [item.letter.sequence_number for item in FileDeadLetterQueue(path).read()]
    assert sorted(left) == [dead_letter(n).sequence_number for n in appended]


def test_open_dead_letter_queue_file_target_describes_absolute_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the default relative CDCSYNC_DLQ
    monkeypatch.chdir(tmp_path)
    # WHEN opened THEN it is a file queue described by its absolute file:// URL
    queue = open_dead_letter_queue(parse_dlq("file://./cdcsync-dlq.jsonl"))
    assert isinstance(queue, FileDeadLetterQueue)
    assert queue.describe() == f"file://{tmp_path}/cdcsync-dlq.jsonl"


def _stored(letter: DeadLetter) -> StoredLetter:
    return StoredLetter(letter, handle=0)


def test_file_queue_created_files_are_owner_only_from_first_write(
    queue: FileDeadLetterQueue, monkeypatch: pytest.MonkeyPatch
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
        # WHEN the first letter is sent
        queue.send([_letter(1), _letter(2)])
        # THEN the queue and its lock file are the owner's alone at once
        assert (_mode(queue.path), _mode(queue.lock_path)) == (0o600, 0o600)
        # AND a rewrite's temporary file is too, and so is what it leaves
        queue.remove(queue.read(1))
    finally:
        os.umask(old_umask)
    assert (swapped, _mode(queue.path)) == ([0o600], 0o600)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("operation", ["send", "read"])
def test_file_queue_existing_files_others_can_read_become_owner_only(
    queue: FileDeadLetterQueue, operation: str
) -> None:
    # GIVEN a queue and lock file an older version left readable by everyone
    queue.send([_letter(1)])
    for path in (queue.path, queue.lock_path):
        os.chmod(path, 0o644)
    # WHEN the queue is next used
    if operation == "send":
        queue.send([_letter(2)])
    else:
        assert len(queue.read()) == 1
    # THEN both are the owner's alone again
    assert (_mode(queue.path), _mode(queue.lock_path)) == (0o600, 0o600)


@pytest.mark.parametrize("linked", ["queue", "lock"])
def test_file_queue_symbolic_link_is_refused_and_its_target_untouched(
    queue: FileDeadLetterQueue, tmp_path: Path, linked: str
) -> None:
    # GIVEN the queue file or its lock file is a symbolic link to another file of the owner
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    target.chmod(0o644)
    (queue.path if linked == "queue" else queue.lock_path).symlink_to(target)
    # WHEN a letter is sent THEN it is refused, and the other file is neither written nor narrowed
    with pytest.raises(DeadLetterQueueError) as caught:
        queue.send([_letter(1)])
    named = queue.path if linked == "queue" else queue.lock_path
    assert str(caught.value) == (
        f"cannot write 1 dead letter to file://{queue.path}: {named} is a symbolic link, which is not "
        "followed; name the file itself (check the directory exists, is writable and has free space)"
    )
    assert (target.read_text(), _mode(target)) == ("mine\n", 0o644)
