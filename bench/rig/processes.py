"""Processes of a capacity run: the stand-ins started and stopped, CPU pinning, CPU time and memory.

``stand_in("streams_scan")`` starts ``python -m rig.streams_scan`` (``bench/`` on its path), reads
its URL off the first line and yields a ``Served`` (URL, process, JSON helpers); the stand-in exits
when its stdin closes, so nothing is left behind if the caller dies. ``cpu_seconds`` and
``peak_rss_mb`` read ``/proc`` for a process and every descendant (``cdcsync run --processes N``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Served:
    """A running stand-in."""

    url: str
    process: subprocess.Popen[bytes]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=60) as answer:  # noqa: S310 - our loopback stand-in
            return json.loads(answer.read())

    def post(self, path: str, body: object = None, *, method: str = "POST") -> Any:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
            return json.loads(answer.read())

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)


def pin(pid: int, cpus: set[int] | None) -> None:
    """Run ``pid`` (and the threads and children it starts from now on) on ``cpus`` only."""
    if cpus:
        with contextlib.suppress(OSError):  # it may have exited already
            os.sched_setaffinity(pid, cpus)


@contextlib.contextmanager
def stand_in(module: str, *args: str, cpus: set[int] | None = None) -> Iterator[Served]:
    """Start ``rig.<module>`` with ``args``; yield it once it printed its URL; stop it on exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", f"rig.{module}", *args]
    process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: S603 - our interpreter
    pin(process.pid, cpus)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"rig.{module} exited with {process.wait()} before printing its URL")
        yield Served(json.loads(line)["url"], process)
    finally:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (read from /proc/PID/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):
                    todo += [
                        int(child)
                        for child in Path(f"/proc/{current}/task/{task}/children").read_text().split()
                    ]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants so far (exited ones included once
    reaped by their parent, through its cutime/cstime)."""
    total = 0
    for each in descendants(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / TICKS


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(largest VmHWM of one process, sum of VmHWM) over ``pid`` and its descendants, in MB."""
    peaks = []
    for each in descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
    return (max(peaks), sum(peaks)) if peaks else (0.0, 0.0)
