"""glibc's malloc arenas for a process of many shard threads.

glibc gives a thread that finds the arenas in use an arena of its own, up to 8 per core, and an
arena keeps the pages it grew to. A worker's shard threads (64 at 64 shards) allocate pages of
records at once, so on the capacity rig a 64-shard process peaked at ~196 MB with the default and
~131 MB with 2 arenas, at the same records/s (docs/operations.md, "Capacity"). Setting
``MALLOC_ARENA_MAX`` in the environment does the same from the outside (the Dockerfile sets it);
``mallopt`` does it from inside for arenas made after the call, so the worker calls it before it
starts a shard thread.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas at ``arenas`` for this process; False where malloc is not glibc's, or
    where ``MALLOC_ARENA_MAX`` is set (the operator's choice stands: mallopt would override it)."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl (Alpine) has no mallopt: its malloc has no arenas
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(_M_ARENA_MAX, arenas) != 1:
        log.debug("mallopt(M_ARENA_MAX, %d) refused", arenas)
        return False
    return True
