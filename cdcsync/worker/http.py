"""``/metrics``, ``/healthz`` and ``/readyz`` on CDCSYNC_METRICS_ADDR.

``/healthz``: the process is alive and its coordinator loop is not stuck (a round finished within
three round periods). ``/readyz``: the last round reached DynamoDB and OpenSearch, and no table or
shard is stopped by an error (each one is a line of the answer: where, and why).

The endpoint is served by one thread, whatever the clients do: a selector loop reads every
connection's request head without blocking, answers it from the registry and the health, and closes
the connection (HTTP/1.1 with ``Connection: close``; probes and scrapers send one request each).
What a client can hold is bounded, so half-open and slow connections (slowloris) cost a socket and a
few kilobytes each, never a thread, and never keep the probes from being answered:

- the whole request head must arrive within READ_TIMEOUT_SECONDS of the connection (408, closed);
  the answer must be taken within WRITE_TIMEOUT_SECONDS (closed);
- at most MAX_CONNECTIONS are open. When a new one needs room, the client address holding the most
  connections pays: its oldest one still waiting for its request is closed (503). So a flood from one
  address (another pod) never closes a probe's connection from another address (the kubelet's);
- a flood from the probes' own address cannot push a probe out before it was read: each loop turn
  reads the connections that sent something before it accepts new ones; a new connection is read at
  once (a request that waited in the listen backlog is answered there and then); before closing any,
  the loop reads every connection that is ready; and a connection accepted in this turn is never
  closed to make room (the others wait in the listen backlog for the next turn);
- a request head over MAX_HEAD_BYTES is refused (431); bodies are never read;
- only GET and HEAD on the three paths (405 with ``Allow: GET, HEAD`` for other methods there, 404
  elsewhere).
"""

from __future__ import annotations

import contextlib
import logging
import re
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cdcsync.errors import ConfigError
from cdcsync.log_repeats import RepeatedLines
from cdcsync.worker.coordinator import Health

log = logging.getLogger(__name__)

READ_TIMEOUT_SECONDS = 5.0  # a kubelet probe or a scrape sends its request in one packet at once
WRITE_TIMEOUT_SECONDS = 5.0  # the kubelet gives up on a probe after timeoutSeconds (5 s here)
LINGER_SECONDS = 1.0  # after the answer: read and drop what the client still sends, so no RST eats it
MAX_CONNECTIONS = 64  # a few probes and scrapers at a time; far more are someone else
MAX_HEAD_BYTES = 8192
PATHS = ("/metrics", "/healthz", "/readyz")
ALLOWED_METHODS = "GET, HEAD"

_TEXT = "text/plain; charset=utf-8"
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_METHOD = re.compile(r"[A-Z]{1,20}")
_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = _TEXT
    allow: str = ""

    def encode(self, *, head_only: bool = False) -> bytes:
        """The whole answer as sent; ``head_only`` (HEAD) keeps the GET's headers and drops the body."""
        lines = [
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
        ]
        if self.allow:
            lines.append(f"Allow: {self.allow}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        return head if head_only else head + self.body


def text_answer(status: int, text: str, allow: str = "") -> Answer:
    return Answer(status, text.encode(), allow=allow)


class Answering(Protocol):
    """What the server asks for each request: ``Endpoints`` (one worker process), or the process
    group's endpoints of ``run --processes N`` (``worker/processes.py``)."""

    def answer(self, method: str, path: str) -> Answer: ...


def parse_request_line(head: bytes) -> tuple[str, str] | Answer:
    """``(method, path)`` of a request head (query string dropped), or the 400 that refuses it."""
    line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not _METHOD.fullmatch(parts[0]) or parts[2] not in {"HTTP/1.0", "HTTP/1.1"}:  # noqa: PLR2004
        return text_answer(400, "bad request: expected METHOD PATH HTTP/1.1\n")
    method, target, _ = parts
    return method, target.split("?", 1)[0]


def refusal(method: str, path: str) -> Answer | None:
    """The 404 or 405 for a request the endpoints do not serve; None for GET or HEAD on ``PATHS``."""
    if path not in PATHS:
        return text_answer(404, "not found: try /metrics, /healthz or /readyz\n")
    if method not in {"GET", "HEAD"}:
        return text_answer(405, f"method {method} not allowed on {path}: use GET or HEAD\n", ALLOWED_METHODS)
    return None


@dataclass
class Endpoints:
    """What each path answers: the only place requests meet the registry and the health."""

    registry: CollectorRegistry
    health: Health
    stuck_after: float

    def answer(self, method: str, path: str) -> Answer:
        if (refused := refusal(method, path)) is not None:
            return refused
        if path == "/metrics":
            return Answer(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            age = time.monotonic() - self.health.last_round
            healthy = self.health.last_round > 0 and age < self.stuck_after
            return text_answer(
                200 if healthy else 503, f"{'ok' if healthy else 'stuck'}: last round {age:.0f} s ago\n"
            )
        ready, text = self.health.readiness()
        return text_answer(200 if ready else 503, text)


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    peer: str
    deadline: float
    inbox: bytearray = field(default_factory=bytearray)
    outbox: memoryview | None = None  # set once the request is answered
    lingering: bool = False  # the answer is sent; dropping what the client still sends
    turn: int = 0  # the loop turn that accepted it: never closed to make room in that turn

    @property
    def waiting(self) -> bool:
        """Still waiting for its request head."""
        return self.outbox is None and not self.lingering


class MetricsServer:
    """The endpoint on one thread: ``start()``, then ``shutdown()`` and ``server_close()``."""

    def __init__(self, address: tuple[str, int], endpoints: Answering) -> None:
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind(address)
            self.socket.listen(1024)  # a burst of connections waits here, not in our memory
        except OSError as exc:  # in use, not an address of this host, a port below 1024 unprivileged
            self.socket.close()
            raise ConfigError(
                f"CDCSYNC_METRICS_ADDR={host}:{port}: cannot listen there ({exc.strerror or exc}); "
                "stop what uses the port or choose another one (port 0 picks a free one)"
            ) from exc
        self.socket.setblocking(False)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self.endpoints = endpoints
        self._connections: dict[socket.socket, _Connection] = {}  # oldest first
        self._held: Counter[str] = Counter()  # open connections per client address
        self._turn = 0
        self._wake_read, self._wake_write = socket.socketpair()  # shutdown() wakes the loop at once
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.socket, selectors.EVENT_READ)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._repeats = RepeatedLines(interval=60.0)
        log.addFilter(self._repeats)

    def start(self) -> threading.Thread:
        self._stopped.clear()
        thread = threading.Thread(target=self.serve_forever, name="metrics-http", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        """Stop the loop and wait for it (as ``socketserver``'s ``shutdown``)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        self._stopped.wait()

    def server_close(self) -> None:
        log.removeFilter(self._repeats)
        self._selector.close()
        for sock in (self.socket, self._wake_read, self._wake_write):
            sock.close()

    def serve_forever(self) -> None:
        self._stopped.clear()
        try:
            while not self._stopping.is_set():
                self._turn += 1
                ready = self._selector.select(self._timeout())
                self._serve_ready(ready)  # before accepting: no request read is pushed out by newcomers
                if any(key.fileobj is self.socket for key, _ in ready):
                    self._accept()
                self._expire()
            for connection in list(self._connections.values()):
                self._close(connection)
        except Exception:
            log.exception(
                "metrics endpoint %s stopped (a bug in cdcsync): /healthz no longer answers, so the "
                "liveness probe restarts the worker",
                self._where,
            )
        finally:
            self._stopped.set()

    # --- the loop's steps -------------------------------------------------------------------------------
    def _timeout(self) -> float:
        # The poll interval, or less when a connection's deadline comes sooner (never 0 when idle:
        # a zero timeout spins the loop and starves the shard threads of the GIL).
        now = time.monotonic()
        soonest = min((c.deadline for c in self._connections.values()), default=now + _POLL_SECONDS)
        return max(0.0, min(_POLL_SECONDS, soonest - now))

    def _serve_ready(self, ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, _ in ready:
            if isinstance(key.data, _Connection):
                self._serve(key.data)

    def _accept(self) -> None:
        polled = False  # the ready connections were read again in this batch
        for _ in range(MAX_CONNECTIONS):  # then let the others have a turn
            if len(self._connections) >= MAX_CONNECTIONS and not polled:
                self._serve_ready(self._selector.select(0))  # those that sent something are answered
                polled = True
            if len(self._connections) >= MAX_CONNECTIONS and not self._make_room():
                return  # the rest wait in the listen backlog for the next turn
            try:
                sock, peer = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of file descriptors: the backlog waits for the next turn
                log.warning("metrics endpoint %s: cannot accept connections: %s", self._where, exc)
                time.sleep(0.05)
                return
            sock.setblocking(False)
            deadline = time.monotonic() + READ_TIMEOUT_SECONDS
            connection = _Connection(sock, str(peer[0]), deadline, turn=self._turn)
            self._connections[sock] = connection
            self._held[connection.peer] += 1
            self._selector.register(sock, selectors.EVENT_READ, connection)
            self._serve(connection)  # a request already here is answered at once

    def _make_room(self) -> bool:
        """Close one connection of the client holding the most, none accepted in this turn: its
        oldest waiting for a request, else its oldest answered one. False if there is none."""
        heaviest = max(self._held, key=self._held.__getitem__)
        earlier = (c for c in self._connections.values() if c.peer == heaviest and c.turn < self._turn)
        answered = None
        for connection in earlier:  # oldest first
            if connection.waiting:
                oldest = connection
                break
            answered = answered or connection
        else:
            if answered is None:
                return False
            oldest = answered
        log.warning(
            "metrics endpoint %s: %d connections open, closing the oldest (from %s); something opens "
            "connections and sends no request: only the monitoring namespace should reach this port",
            self._where,
            MAX_CONNECTIONS,
            oldest.peer,
        )
        if oldest.waiting:
            text = f"too many connections from {oldest.peer}: closed its oldest one waiting for a request\n"
            self._send_last(oldest, text_answer(503, text))
        self._close(oldest)
        return True

    def _serve(self, connection: _Connection) -> None:
        if connection.sock not in self._connections:
            return  # closed to make room earlier in this turn
        try:
            if connection.outbox is not None:
                self._write(connection)
            elif not (chunk := connection.sock.recv(65536)):
                self._close(connection)  # the client hung up (or, lingering, took the answer)
            elif not connection.lingering:
                connection.inbox += chunk
                self._read(connection)
        except BlockingIOError:  # read at accept, nothing sent yet: the selector says when
            return
        except OSError:  # reset, broken pipe: the client is gone
            self._close(connection)

    def _read(self, connection: _Connection) -> None:
        end = _HEAD_END.search(connection.inbox)
        if end is None and len(connection.inbox) <= MAX_HEAD_BYTES:
            return
        if end is None or end.end() > MAX_HEAD_BYTES:
            answer, head_only = text_answer(431, f"request head over {MAX_HEAD_BYTES} bytes\n"), False
        else:
            request = parse_request_line(bytes(connection.inbox[: end.start()]))
            if isinstance(request, Answer):
                answer, head_only = request, False
            else:
                answer, head_only = self._answer(*request), request[0] == "HEAD"
        connection.inbox = bytearray()
        connection.outbox = memoryview(answer.encode(head_only=head_only))
        connection.deadline = time.monotonic() + WRITE_TIMEOUT_SECONDS
        self._write(connection)

    def _answer(self, method: str, path: str) -> Answer:
        try:
            return self.endpoints.answer(method, path)
        except Exception as exc:  # the loop serves the probes too: it must outlive a bug in one answer
            log.error(
                "metrics endpoint %s: %s %s failed: %s: %s (a bug in cdcsync)",
                self._where,
                method,
                path,
                type(exc).__name__,
                exc,
                exc_info=True,
            )
            return text_answer(500, "internal error: a bug in cdcsync (the worker's log has the traceback)\n")

    def _write(self, connection: _Connection) -> None:
        if connection.outbox is None:
            return
        try:
            sent = connection.sock.send(connection.outbox)
        except BlockingIOError:
            sent = 0
        connection.outbox = connection.outbox[sent:]
        if connection.outbox:
            self._selector.modify(connection.sock, selectors.EVENT_WRITE, connection)
            return
        connection.outbox = None
        connection.lingering = True
        connection.deadline = time.monotonic() + LINGER_SECONDS
        connection.sock.shutdown(socket.SHUT_WR)
        self._selector.modify(connection.sock, selectors.EVENT_READ, connection)

    def _expire(self) -> None:
        now = time.monotonic()
        for connection in [c for c in self._connections.values() if c.deadline <= now]:
            if connection.waiting:
                log.warning(
                    "metrics endpoint %s: closed a connection from %s that sent no complete request "
                    "within %g s",
                    self._where,
                    connection.peer,
                    READ_TIMEOUT_SECONDS,
                )
                text = f"request not complete within {READ_TIMEOUT_SECONDS:g} s\n"
                self._send_last(connection, text_answer(408, text))
            self._close(connection)

    def _send_last(self, connection: _Connection, answer: Answer) -> None:
        """Best effort, never blocking: the connection is closed right after."""
        with contextlib.suppress(OSError):
            connection.sock.send(answer.encode())

    def _close(self, connection: _Connection) -> None:
        if self._connections.pop(connection.sock, None) is not None:
            self._held[connection.peer] -= 1
            if not self._held[connection.peer]:
                del self._held[connection.peer]
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)
        connection.sock.close()

    @property
    def _where(self) -> str:
        host, port = self.server_address
        return f"{host}:{port}"
