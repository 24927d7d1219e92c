"""Files only their owner reads: the ``file://`` dead-letter queue, the checkpoint file, their locks.

``open_private`` opens such a file as itself, never through a symbolic link (``O_NOFOLLOW``: whoever
can write the folder could otherwise point ``dlq.jsonl`` at another file of ours, which we would
append to or narrow), creates it mode 0600 and narrows an existing one to its owner
(``fchmod``): a file an older version left 0644 stops being readable by others at its first use.
A file of another user (a shared group setup) is left as it is: only its owner may change its mode.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

FILE_MODE = 0o600  # created owner-only (umask only narrows)


def open_private(path: Path, flags: int) -> int:
    """``os.open(path, flags)`` without following a final symbolic link; owner-only as the module says.

    Raises ``OSError``; a symbolic link's says so in its ``strerror``, as the caller quotes that.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP and path.is_symlink():
            raise OSError(
                errno.ELOOP, f"{path} is a symbolic link, which is not followed; name the file itself"
            ) from exc
        raise
    try:
        status = os.fstat(fd)
        others = stat.S_IMODE(status.st_mode) & 0o077
        if others and status.st_uid == os.geteuid():
            os.fchmod(fd, stat.S_IMODE(status.st_mode) & ~0o077)
    except BaseException:
        os.close(fd)
        raise
    return fd
