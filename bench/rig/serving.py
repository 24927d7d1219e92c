"""The stand-ins' HTTP layer: keep-alive HTTP/1.1, a thread per connection, one write per answer.

An ``App`` answers ``Request``s with a ``Reply``; a reply's ``delay`` (the stand-in's request latency)
is slept in the connection's own thread before the answer is written, so it costs no CPU and holds
up no other connection. ``serve`` binds a free loopback port, prints ``{"url": ...}`` as its first
line and serves until stdin closes (the parent exited) or SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import orjson

REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 500: "Error"}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    delay: float = 0.0  # seconds slept before answering (no CPU)


def json_reply(value: object, status: int = 200, *, content_type: str = "application/json") -> Reply:
    return Reply(status, orjson.dumps(value), content_type)


class App(Protocol):
    def handle(self, request: Request) -> Reply: ...


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(split.query, keep_blank_values=True).items()}
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            reply = self.server.app.handle(Request(self.command, split.path, query, headers, body))
        except Exception as exc:  # noqa: BLE001 - a stand-in's bug is answered as a 500 and shown
            print(
                f"rig: {self.command} {self.path}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True
            )
            reply = json_reply({"error": {"type": "rig_error", "reason": str(exc)}, "status": 500}, 500)
        if reply.delay > 0:
            time.sleep(reply.delay)
        payload = b"" if self.command == "HEAD" else reply.body
        head = (
            f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}\r\n"
            f"Content-Type: {reply.content_type}\r\nContent-Length: {len(reply.body)}\r\n\r\n"
        ).encode()
        self.wfile.write(head + payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve  # noqa: N815 - http.server's names


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, app: App) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away is no error
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def serve(app: App, *, announce: dict[str, object] | None = None) -> None:
    """Serve ``app`` on a free loopback port until stdin closes or SIGTERM; first line: its URL."""
    server = _Server(app)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    print(json.dumps({"url": url, **(announce or {})}), flush=True)

    def stop_on_eof() -> None:
        sys.stdin.buffer.read()
        threading.Thread(target=server.shutdown, daemon=True).start()

    if not sys.stdin.isatty():
        threading.Thread(target=stop_on_eof, daemon=True).start()
    threading.Thread(target=_freeze_what_lives, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    server.serve_forever(poll_interval=0.2)


def _freeze_what_lives(seconds: float = 2.0) -> None:
    """The stand-in's heap is its tables and documents, millions of objects that live until it
    exits: CPython's full collections walked them all, pauses that grew with every table made
    (a latency run's p99 doubled late in a whole capacity run). Every ``seconds``, what survives a
    collection is frozen, so each pass walks only what was made since the last."""
    gc.disable()
    while True:
        gc.collect()
        gc.freeze()
        time.sleep(seconds)


def main_with(build: Callable[[argparse.Namespace], App], parser: argparse.ArgumentParser) -> None:
    """Parse the command line, build the app, serve it."""
    serve(build(parser.parse_args()))
