"""A tiny AWS JSON-protocol stand-in on 127.0.0.1 that answers each operation from a script.

Each operation (the ``X-Amz-Target`` after the dot: ``GetRecords``, ``Scan``) has a list of answers;
each request takes the next one, and the last one repeats. An answer is ``(status, headers, body)``,
or ``CLOSE`` (the connection is closed without an answer) or ``("sleep", seconds)`` then nothing::

    with scripted_aws({"GetRecords": [(400, {}, THROTTLED), (200, {}, b'{"Records": []}')]}) as server:
        ...  # point a client at server.url
        assert server.calls == ["GetRecords", "GetRecords"]
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from tests.support.any_method import AnyMethodHandler

CLOSE = "close"
Answer = tuple[int, Mapping[str, str], bytes] | str | tuple[str, float]


@dataclass
class ScriptedAws:
    script: dict[str, list[Answer]]
    url: str = ""
    calls: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self, operation: str) -> Answer:
        with self._lock:
            self.calls.append(operation)
            answers = self.script[operation]
            return answers.pop(0) if len(answers) > 1 else answers[0]


class _Handler(AnyMethodHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        operation = str(self.headers.get("X-Amz-Target", "")).rpartition(".")[2]
        answer = self.server.scripted.next_answer(operation)
        if answer == CLOSE:
            self.close_connection = True
            return
        if isinstance(answer, tuple) and answer[0] == "sleep":
            time.sleep(float(answer[1]))
            self.close_connection = True
            return
        status, headers, body = answer  # type: ignore[misc]
        self.send_response(int(status))
        self.send_header("x-amzn-RequestId", f"REQ{len(self.server.scripted.calls)}")
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        for name, value in dict(headers).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, scripted: ScriptedAws) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scripted = scripted


@contextlib.contextmanager
def scripted_aws(script: Mapping[str, Sequence[Answer]]) -> Iterator[ScriptedAws]:
    """Serve the script on a free 127.0.0.1 port until the block ends."""
    scripted = ScriptedAws({operation: list(answers) for operation, answers in script.items()})
    server = _Server(scripted)
    scripted.url = f"http://127.0.0.1:{server.server_address[1]}"
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    try:
        yield scripted
    finally:
        server.shutdown()
        server.server_close()
        serving.join()
