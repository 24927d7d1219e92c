"""``file://`` dead-letter queue: one JSON Lines file on local disk.

Every ``send`` appends its letters in one write, then flushes and fsyncs, so a letter that
``send`` returned for survives a crash. ``remove`` rewrites the file through a temporary file and
``os.replace``, so a crash leaves either the old or the new file, never half of one.

Concurrency: one lock per queue object serialises send, read and remove, so an appender and a
remover in the same process (threads) never lose a letter. Two *processes* writing one file are
not safe (a remover's rewrite can drop a line appended by the other process meanwhile): run more
than one writer only with the SQS or S3 backend.

Decisions:
- A line that is not a dead letter (hand-edited, or cut short by a crash mid-append) makes
  ``read`` raise ``DeadLetterQueueError`` with ``path:line``: skipping it would hide a lost
  record, and returning it flagged would push that check into every caller. ``remove`` keeps such
  lines as they are, so nothing is ever destroyed without a human looking at it.
- A file cut short by a crash does not end in a newline; the next ``send`` starts on a new line,
  so the damage stays on the one truncated line.
- The parent directory is not created: a mistyped path should fail loudly, not write elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from cdcsync.dlq.letter import DeadLetter, DeadLetterQueueError, StoredLetter, count, letter_id_of


class FileDeadLetterQueue:
    """Dead letters appended to a JSON Lines file; ``StoredLetter.handle`` is the 1-based line number."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"file://{self.path.absolute()}"

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        payload = b"".join(letter.to_json() + b"\n" for letter in letters)
        try:
            with self._lock:
                created = not self.path.exists()
                with self.path.open("a+b") as file:
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
        with self._lock:
            lines = self._read_lines()
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
            with self._lock:
                kept = [line for line in self._read_lines() if letter_id_of(line) not in doomed]
                self._replace(kept)
        except OSError as exc:
            raise DeadLetterQueueError(
                f"cannot remove {count(len(stored))} from {self.describe()}: {exc.strerror or exc} "
                "(check the directory is writable and has free space)",
                failed_ids=sorted(doomed),
            ) from exc

    def _read_lines(self) -> list[bytes]:
        try:
            data = self.path.read_bytes()
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
