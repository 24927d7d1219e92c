"""``file://`` dead-letter queue: one JSON Lines file on local disk.

Every ``send`` appends its letters in one write, then flushes and fsyncs, so a letter that
``send`` returned for survives a crash. ``remove`` rewrites the file through a temporary file and
``os.replace``, so a crash leaves either the old or the new file, never half of one.

Concurrency: every ``send`` and ``remove`` holds an exclusive ``flock`` on a sidecar lock file,
``PATH.lock``, and ``read`` a shared one; so a worker appending and ``cdcsync dlq redrive``
removing, in threads or in separate processes on one host, never lose a letter: a rewrite reads
the file under the lock that every appender needs, so nothing can be appended between its read and
its swap. The lock sits on a file of its own because ``remove`` swaps in a new inode: a lock on the
queue file itself would let an appender that locked the old inode append to a file no longer
linked. The lock file is created beside the queue on first use and never deleted (deleting it
while a process waits on it would split the lock in two). ``flock`` is advisory and local: a
queue on a network file system (NFS) shared by several hosts needs the SQS or S3 backend.

Decisions:
- A line that is not a dead letter (hand-edited, or cut short by a crash mid-append) makes
  ``read`` raise ``DeadLetterQueueError`` with ``path:line``: skipping it would hide a lost
  record, and returning it flagged would push that check into every caller. ``remove`` keeps such
  lines as they are, so nothing is ever destroyed without a human looking at it.
- A file cut short by a crash does not end in a newline; the next ``send`` starts on a new line,
  so the damage stays on the one truncated line.
- The parent directory is not created: a mistyped path should fail loudly, not write elsewhere.
- Every file this queue creates (the queue, ``PATH.lock``, the temporary file of a rewrite) is
  mode 0600 from its creation: letters hold item keys and attributes. The queue and its lock are
  opened by ``open_private``: an existing one others could read (an older version's 0644) is
  narrowed to its owner at its first use, and a symbolic link is refused, not followed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cdcsync.dlq.queue import DeadLetterQueueError, StoredLetter, count, letter_id_of
from cdcsync.private_files import open_private

if TYPE_CHECKING:
    from cdcsync.dlq.letter import DeadLetter


class FileDeadLetterQueue:
    """Dead letters appended to a JSON Lines file; ``StoredLetter.handle`` is the 1-based line number."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def describe(self) -> str:
        return f"file://{self.path.absolute()}"

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        payload = b"".join(letter.to_json() + b"\n" for letter in letters)
        try:
            with self._locked(fcntl.LOCK_EX):
                created = not self.path.exists()
                # Owner-only from the first write: letters hold keys and item attributes.
                fd = open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
                with os.fdopen(fd, "a+b") as file:
                    if not created and _lacks_final_newline(file.fileno()):
                        payload = b"\n" + payload
                    file.write(payload)
                    file.flush()
                    os.fsync(file.fileno())
                if created:
                    _fsync_directory(self.path.parent)
        except OSError as exc:
            raise DeadLetterQueueError(
                f"cannot write {count(len(letters))} to {self.describe()}: {exc.strerror or exc} "
                "(check the directory exists, is writable and has free space)",
                failed_ids=[letter.letter_id for letter in letters],
            ) from exc

    def read(self, limit: int | None = None) -> list[StoredLetter]:
        if not self.path.exists():
            return []  # nothing was ever sent; reading creates no lock file either
        try:
            with self._locked(fcntl.LOCK_SH):
                lines = self._read_lines()
        except OSError as exc:
            raise DeadLetterQueueError(
                f"cannot read {self.describe()}: {exc.strerror or exc} (check the file and its folder are "
                f"readable and {self.lock_path.name} can be created there)"
            ) from exc
        from cdcsync.dlq.letter import DeadLetter  # noqa: PLC0415 - the model, when letters are read

        stored: list[StoredLetter] = []
        for number, line in enumerate(lines, start=1):
            if limit is not None and len(stored) >= limit:
                break
            if line.strip():
                letter = DeadLetter.from_json(line, where=f"{self.path}:{number}")
                stored.append(StoredLetter(letter, number))
        return stored

    def remove(self, stored: Sequence[StoredLetter]) -> None:
        if not stored:
            return
        doomed = {item.letter.letter_id for item in stored}
        try:
            with self._locked(fcntl.LOCK_EX):
                kept = [line for line in self._read_lines() if letter_id_of(line) not in doomed]
                self._replace(kept)
        except OSError as exc:
            raise DeadLetterQueueError(
                f"cannot remove {count(len(stored))} from {self.describe()}: {exc.strerror or exc} "
                "(check the directory is writable and has free space)",
                failed_ids=sorted(doomed),
            ) from exc

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        """Hold ``flock(mode)`` on the sidecar lock file: every process and thread sees the same lock.

        A fresh open per call: ``flock`` locks belong to an open file description, so two threads
        of one process, each with its own descriptor, exclude each other like two processes do.
        """
        fd = open_private(self.lock_path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _read_lines(self) -> list[bytes]:
        try:
            with os.fdopen(open_private(self.path, os.O_RDONLY), "rb") as file:
                data = file.read()
        except FileNotFoundError:
            return []  # nothing was ever sent
        except OSError as exc:
            raise DeadLetterQueueError(
                f"cannot read {self.describe()}: {exc.strerror or exc} (check the file is readable)"
            ) from exc
        return data.splitlines()

    def _replace(self, lines: list[bytes]) -> None:
        """Write ``lines`` to a temporary file next to the queue and swap it in atomically."""
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(b"".join(line + b"\n" for line in lines))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)  # the original file is untouched; only the temporary copy goes
            raise
        _fsync_directory(self.path.parent)


def _lacks_final_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _fsync_directory(directory: Path) -> None:
    """Make a new or replaced directory entry durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows; the data itself is already fsynced
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
