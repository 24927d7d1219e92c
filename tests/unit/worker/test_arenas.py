"""The worker caps glibc's malloc arenas: 64 shard threads otherwise each grow an arena of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from cdcsync.worker.arenas import ARENAS, cap_malloc_arenas

# Threads that allocate at once, then the number of heaps malloc_info reports (arenas in use).
COUNT_HEAPS = textwrap.dedent(
    """
    import ctypes, os, re, sys, tempfile, threading
    from cdcsync.worker.arenas import cap_malloc_arenas
    if sys.argv[1] == "capped":
        assert cap_malloc_arenas()
    start = threading.Barrier(16)
    def work():
        start.wait()
        kept = [bytearray(200) for _ in range(20000)]
        start.wait()
    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    path = os.path.join(tempfile.mkdtemp(), "malloc.xml")
    stream = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(len(re.findall(r"<heap nr=", open(path).read())))
    """
)


def heaps(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", COUNT_HEAPS, mode], capture_output=True, text=True, timeout=60, check=True,
        env={name: value for name, value in os.environ.items() if name != "MALLOC_ARENA_MAX"},
    )  # fmt: skip
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_cap_malloc_arenas_threads_allocating_at_once_share_at_most_the_cap() -> None:
    # GIVEN 16 threads allocating at the same moment, as a worker's shard threads do
    # WHEN the arenas are not capped, THEN malloc gives them more than the cap (the cost measured)
    assert heaps("default") > ARENAS
    # AND WHEN they are capped first, THEN they share at most ARENAS arenas
    assert heaps("capped") <= ARENAS


def test_cap_malloc_arenas_again_is_harmless() -> None:
    # GIVEN arenas capped once (the worker of a test run may start more than once in one process)
    first = cap_malloc_arenas()
    # WHEN capped again, THEN the answer is the same
    assert cap_malloc_arenas() == first


def test_cap_malloc_arenas_with_malloc_arena_max_set_leaves_the_operators_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN an operator who set MALLOC_ARENA_MAX (glibc read it at start)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    # WHEN the worker would cap the arenas, THEN it does not override that choice
    assert cap_malloc_arenas() is False
