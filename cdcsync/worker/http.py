"""``/metrics``, ``/healthz`` and ``/readyz`` on CDCSYNC_METRICS_ADDR.

``/healthz``: the process is alive and its coordinator loop is not stuck (a round finished within
three round periods). ``/readyz``: the last round reached DynamoDB and OpenSearch, and no table or
shard is stopped by an error (each one is a line of the answer: where, and why).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cdcsync.errors import ConfigError
from cdcsync.worker.coordinator import Health


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            age = time.monotonic() - self.server.health.last_round
            healthy = self.server.health.last_round > 0 and age < self.server.stuck_after
            self._answer(
                200 if healthy else 503, f"{'ok' if healthy else 'stuck'}: last round {age:.0f} s ago\n"
            )
        elif path == "/readyz":
            ready, text = self.server.health.readiness()
            self._answer(200 if ready else 503, text)
        else:
            self._answer(404, "not found: try /metrics, /healthz or /readyz\n")

    def _answer(
        self, status: int, body: bytes | str, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every 15 s would drown the log; nothing to say per request."""


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, health: Health, stuck_after: float
    ):
        try:
            super().__init__(address, _Handler)
        except OSError as exc:  # in use, not an address of this host, a port below 1024 unprivileged
            host, port = address
            raise ConfigError(
                f"CDCSYNC_METRICS_ADDR={host}:{port}: cannot listen there ({exc.strerror or exc}); "
                "stop what uses the port or choose another one (port 0 picks a free one)"
            ) from exc
        self.registry = registry
        self.health = health
        self.stuck_after = stuck_after

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="metrics-http", daemon=True)
        thread.start()
        return thread
