"""Real local servers for integration tests and the demo: moto_server (AWS) and osmem-server (OpenSearch).

Each is a context manager that starts the server on a free 127.0.0.1 port, waits until it answers,
yields its URL and stops it on exit. Both servers also exit by themselves when their stdin pipe
closes, which happens when this process dies for any reason (even SIGKILL), so a crashed test run
never leaves servers behind. Server output goes to a temporary file, not a pipe: moto logs every
request, and an unread pipe would fill up and block it. Each server runs in a session of its own:
Ctrl-C at a terminal (SIGINT to the whole foreground process group) reaches only the process that
started it, which stops its users first (``make demo``: the worker) and then the server, in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import IO

from osmem_server import resolve_binary

STARTUP_TIMEOUT_SECONDS = 30.0
_STOP_GRACE_SECONDS = 5.0
_PORT_ATTEMPTS = 3
_TAIL_BYTES = 2000

# moto.server's own main(), plus a thread that ends the process as soon as stdin closes, and
# DynamoDB Streams creation times in whole seconds (rounded down), as AWS stamps them. moto alone
# stamps microseconds, which would hide same-second ties (equal external versions) from every
# test that reads a stream. A moto that no longer has StreamRecord fails loudly here.
_MOTO_MAIN = (
    "import os, sys, threading\n"
    "threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()\n"
    "from moto.dynamodb.models import table as _table\n"
    "_init = _table.StreamRecord.__init__\n"
    "def _whole_seconds(self, *args, **kwargs):\n"
    "    _init(self, *args, **kwargs)\n"
    "    body = self.record['dynamodb']\n"
    "    body['ApproximateCreationDateTime'] = body['ApproximateCreationDateTime'].replace(microsecond=0)\n"
    "_table.StreamRecord.__init__ = _whole_seconds\n"
    "from moto.server import main\n"
    "main(sys.argv[1:])\n"
)


class ServerStartError(RuntimeError):
    """A local test server did not come up; the message carries the tail of its output."""


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the caller retries if someone takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0, os.SEEK_END)
    size = log.tell()
    log.seek(max(0, size - _TAIL_BYTES))
    return log.read().decode("utf-8", "replace").strip() or "(no output)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Close stdin (the server exits on its own), then terminate, then kill."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    for signal_step in (None, process.terminate, process.kill):
        if signal_step is not None:
            signal_step()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_STOP_GRACE_SECONDS)
            return


def _moto_answers(url: str) -> bool:
    """True once moto's own API answers; a foreign server on a stolen port would not return this JSON."""
    try:
        with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2) as response:
            return isinstance(json.loads(response.read()), dict)
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return False


def _start_moto(port: int, log: IO[bytes], timeout: float) -> subprocess.Popen[bytes] | None:
    """Start moto on ``port``; None if the port was taken meanwhile (the caller picks another)."""
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", _MOTO_MAIN, "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if "Address already in use" in _tail(log):
                return None
            raise ServerStartError(
                f"moto_server exited with code {process.returncode} while starting on {url}; "
                f"last output:\n{_tail(log)}"
            )
        if _moto_answers(url):
            return process
        time.sleep(0.05)
    _stop(process)
    raise ServerStartError(
        f"moto_server did not answer {url}/moto-api/data.json within {timeout:g} s; "
        f"check that moto[server] is installed (pip install -e '.[dev]'); last output:\n{_tail(log)}"
    )


@contextlib.contextmanager
def moto_server(*, startup_timeout: float = STARTUP_TIMEOUT_SECONDS) -> Iterator[str]:
    """Run one moto server (DynamoDB, DynamoDB Streams, SQS, S3, ...) and yield its endpoint URL."""
    with tempfile.TemporaryFile() as log:
        for _ in range(_PORT_ATTEMPTS):
            port = free_port()
            log.truncate(0)
            process = _start_moto(port, log, startup_timeout)
            if process is not None:
                break
        else:
            raise ServerStartError(
                f"moto_server could not bind a free 127.0.0.1 port in {_PORT_ATTEMPTS} attempts"
            )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(process)


def _read_lines(stream: IO[bytes], first: queue.Queue[bytes]) -> None:
    """Hand the first line over, then keep draining so the server never blocks on a full pipe."""
    line = stream.readline()
    first.put(line)
    while line:
        line = stream.readline()


def _osmem_url(first: queue.Queue[bytes], process: subprocess.Popen[bytes], timeout: float) -> str | None:
    """The URL from the server's first stdout line, or None if it exited, hung or printed something else."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = first.get(timeout=0.05)
        except queue.Empty:
            if process.poll() is not None:
                return None
            continue
        try:
            return str(json.loads(line)["url"])
        except (ValueError, KeyError, TypeError):
            return None
    return None


@contextlib.contextmanager
def osmem_server(*, startup_timeout: float = STARTUP_TIMEOUT_SECONDS) -> Iterator[str]:
    """Run osmem-server (in-memory OpenSearch) on a port it picks itself and yield its URL."""
    command = [resolve_binary(), "-addr", "127.0.0.1:0", "-no-ja", "-parent-pid", str(os.getpid())]
    with (
        tempfile.TemporaryFile() as log,
        subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True
        ) as process,
    ):
        assert process.stdout is not None
        first: queue.Queue[bytes] = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(process.stdout, first), daemon=True)
        reader.start()
        try:
            url = _osmem_url(first, process, startup_timeout)
            if url is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=1)  # an exit closes stdout just before the code is reapable
                raise ServerStartError(
                    f"osmem-server ({command[0]}) did not print its URL as JSON within {startup_timeout:g} s "
                    f"(exit code {process.poll()}); set OSMEM_SERVER_BIN to a working binary; "
                    f"last output:\n{_tail(log)}"
                )
            yield url
        finally:
            _stop(process)
            reader.join(timeout=_STOP_GRACE_SECONDS)  # EOF follows the exit; then Popen closes the pipe
