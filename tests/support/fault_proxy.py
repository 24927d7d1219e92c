"""A fault-injecting HTTP proxy in front of OpenSearch, for integration tests.

Clients under test talk real HTTP to the proxy; it forwards each request to the upstream server
(osmem-server or a real cluster) unless the test's fault schedule says otherwise. This is how the
tests show that cdcsync survives 429/503/413 answers, timeouts, dropped connections and partial
bulk rejections without patching any client::

    with fault_proxy(opensearch_url) as proxy:
        proxy.fail(times=2, status=429)          # the next two /_bulk requests get 429, unforwarded
        proxy.reject_bulk_items(every=3)         # then every 3rd action of one bulk is rejected
        client = OpenSearch(hosts=[proxy.url], max_retries=0)
        ...
        assert proxy.faults_injected == 3

Cluster settings: ``forbid_explicit_index()`` makes the proxy answer as OpenSearch does with
``rest.action.multi.allow_explicit_index: false`` (a node setting osmem-server does not have): a
``_bulk`` whose action lines name an ``_index`` is refused whole, 400, unforwarded.

Schedule: faults are kept in the order they were added. Each request takes the FIRST fault whose
``path`` pattern matches (``re.search`` on the path without query string; ``None`` matches every
path) and uses up one of its ``times``; a request no fault matches is forwarded untouched.

Forwarding: one upstream connection per client connection (HTTP/1.1 keep-alive on both sides, so
urllib3's pool behaves as against OpenSearch). Hop-by-hop headers and ``Host`` are not forwarded;
``Accept-Encoding`` is dropped and gzip request bodies are inflated, so recorded bodies and bulk
responses are always plain JSON. Credentials in the upstream URL (``https://user:pw@host``) become
an ``Authorization`` header when the client sends none. An unreachable upstream answers 502.

Shutdown: leaving the context stops accepting, interrupts pending delays, shuts every open client
socket (so keep-alive readers wake up) and joins every thread it started.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import json
import logging
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from tests.support.any_method import AnyMethodHandler

_log = logging.getLogger(__name__)

UPSTREAM_TIMEOUT_SECONDS = 30.0
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer"}
_HOP_BY_HOP |= {"transfer-encoding", "upgrade"}
_SKIP_REQUEST_HEADERS = _HOP_BY_HOP | {"host", "content-length", "content-encoding", "accept-encoding"}
_SKIP_RESPONSE_HEADERS = _HOP_BY_HOP | {"content-length", "date", "server"}
# Synthetic error types, shaped like OpenSearch's; tests should key off the status, not these.
_ERROR_TYPES = {
    400: "illegal_argument_exception",
    413: "request_entity_too_large_exception",
    429: "es_rejected_execution_exception",
    503: "cluster_block_exception",
}
_JSON = "application/json; charset=UTF-8"

FaultKind = Literal["fail", "delay", "drop", "reject_bulk_items"]


@dataclass
class _Fault:
    kind: FaultKind
    remaining: int
    path: re.Pattern[str] | None
    status: int = 503
    body: bytes = b""
    seconds: float = 0.0
    every: int = 2
    error_type: str = ""
    operation: str | None = None


def error_body(status: int, reason: str, error_type: str | None = None) -> bytes:
    """An OpenSearch-shaped error document: ``{"error": {"type", "reason", ...}, "status"}``."""
    cause = {"type": error_type or _ERROR_TYPES.get(status, "fault_proxy_exception"), "reason": reason}
    return json.dumps({"error": {"root_cause": [cause], **cause}, "status": status}).encode()


class FaultProxy:
    """The running proxy: its ``url``, the fault schedule and what it saw. All methods are thread-safe."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"fault_proxy: upstream URL {upstream_url!r} is not http(s)://host[:port]")
        self.upstream = parts
        self.upstream_auth: str | None = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.upstream_auth = "Basic " + base64.b64encode(pair).decode()
        self.url = ""  # set once the server is bound
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._schedule: list[_Fault] = []
        self._requests: list[tuple[str, str, bytes]] = []
        self._faults_injected = 0
        self._explicit_index_forbidden = False

    def fail(
        self,
        times: int = 1,
        status: int = 503,
        body: bytes | dict[str, Any] | None = None,
        path: str | None = "/_bulk",
    ) -> None:
        """Answer ``times`` requests with ``status`` and an error body, without forwarding them.

        The default body is OpenSearch-shaped (see :func:`error_body`); a dict is sent as JSON.
        ``path`` defaults to bulk requests, the writer's retry tests being the main use.
        """
        if body is None:
            data = error_body(status, f"injected by fault_proxy: HTTP {status}")
        else:
            data = json.dumps(body).encode() if isinstance(body, dict) else body
        self._add(_Fault("fail", times, _compile(path), status=status, body=data))

    def delay(self, times: int = 1, seconds: float = 1.0, path: str | None = None) -> None:
        """Wait ``seconds`` before forwarding (the request still lands, as a slow cluster's would)."""
        self._add(_Fault("delay", times, _compile(path), seconds=seconds))

    def drop(self, times: int = 1, path: str | None = None) -> None:
        """Read the request, then close the connection without answering (client: connection error)."""
        self._add(_Fault("drop", times, _compile(path)))

    def reject_bulk_items(
        self,
        times: int = 1,
        item_status: int = 429,
        every: int = 2,
        error_type: str = "es_rejected_execution_exception",
        path: str | None = r"/_bulk$",
        operation: str | None = None,
    ) -> None:
        """Reject every ``every``-th action (1-based: every=2 rejects the 2nd, 4th, ...) of a bulk.

        With ``operation`` (``"delete"``, ``"index"``...), only actions of that operation are counted
        and rejected.

        The rejected actions are cut from the body, the rest is forwarded, and failure items
        (``status: item_status``) are spliced into the real response at the cut positions, with
        ``errors: true``. A bulk with fewer than ``every`` actions passes whole but uses up one time;
        one where every action is rejected is answered without forwarding.
        """
        if every < 1:
            raise ValueError(f"fault_proxy: reject_bulk_items(every={every}) must be at least 1")
        fault = _Fault("reject_bulk_items", times, _compile(path), status=item_status, every=every)
        fault.error_type = error_type
        fault.operation = operation
        self._add(fault)

    def forbid_explicit_index(self) -> None:
        """From now on refuse any ``_bulk`` naming ``_index`` in its body, and a root ``/_bulk``.

        As OpenSearch's ``RestBulkAction`` with ``rest.action.multi.allow_explicit_index: false``:
        ``illegal_argument_exception`` "explicit index in bulk is not allowed" (400); a root
        ``/_bulk`` then has no index for its actions: ``action_request_validation_exception`` (400).
        These answers are the cluster's configuration, not faults: ``faults_injected`` is unchanged.
        """
        with self._lock:
            self._explicit_index_forbidden = True

    def reset(self) -> None:
        """Clear the fault schedule (the counters stay)."""
        with self._lock:
            self._schedule.clear()

    @property
    def requests(self) -> list[tuple[str, str, bytes]]:
        """A snapshot of every request seen, faulted or not: (method, path with query, body)."""
        with self._lock:
            return list(self._requests)

    @property
    def faults_injected(self) -> int:
        """How many requests a fault was applied to."""
        with self._lock:
            return self._faults_injected

    def _add(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError(f"fault_proxy: {fault.kind}(times={fault.remaining}) must be at least 1")
        with self._lock:
            self._schedule.append(fault)

    def take(self, method: str, target: str, body: bytes) -> _Fault | None:
        """Record one request and consume the first fault that applies to it."""
        path = target.split("?", 1)[0]
        with self._lock:
            self._requests.append((method, target, body))
            if self._explicit_index_forbidden and is_bulk(path):
                refusal = _explicit_index_refusal(path, body)
                if refusal is not None:
                    return _Fault("fail", 1, None, status=400, body=refusal)
            for fault in self._schedule:
                if fault.path is None or fault.path.search(path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._schedule.remove(fault)
                    self._faults_injected += 1
                    return fault
        return None


def is_bulk(target: str) -> bool:
    """Whether a request path (with or without its query) is a ``_bulk``: ``/_bulk`` or ``/{index}/_bulk``."""
    return re.search(r"(?:^|/)_bulk$", target.split("?", 1)[0]) is not None


def _explicit_index_refusal(path: str, body: bytes) -> bytes | None:
    try:
        metas = [next(iter(json.loads(action[0]).values())) for action in _split_bulk(body)]
    except (ValueError, AttributeError, StopIteration):
        return None  # not a bulk body: let the upstream answer it
    if any("_index" in meta for meta in metas):
        return error_body(400, "explicit index in bulk is not allowed", "illegal_argument_exception")
    if path.strip("/") == "_bulk" and metas:
        reasons = "".join(f"{n}: index is missing;" for n in range(1, len(metas) + 1))
        return error_body(400, f"Validation Failed: {reasons}", "action_request_validation_exception")
    return None


def _compile(path: str | None) -> re.Pattern[str] | None:
    return None if path is None else re.compile(path)


def _split_bulk(body: bytes) -> list[list[bytes]]:
    """NDJSON bulk body -> actions, each its metadata line plus its source line (none for delete)."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    actions: list[list[bytes]] = []
    while lines:
        size = 1 if "delete" in json.loads(lines[0]) else 2
        actions.append(lines[:size])
        lines = lines[size:]
    return actions


def _rejected_item(action: list[bytes], default_index: str | None, fault: _Fault) -> dict[str, Any]:
    """The per-item failure OpenSearch reports for an action it rejected under load."""
    operation, meta = next(iter(json.loads(action[0]).items()))
    reason = f"rejected execution of coordinating operation [injected by fault_proxy, {fault.status}]"
    item: dict[str, Any] = {"_index": meta.get("_index", default_index)}
    if "_id" in meta:
        item["_id"] = meta["_id"]
    item.update(status=fault.status, error={"type": fault.error_type, "reason": reason})
    return {operation: item}


class _Handler(AnyMethodHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one client connection serves many requests
    server: _Server
    upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("fault_proxy: " + format, *args)

    def finish(self) -> None:
        super().finish()
        if self.upstream is not None:
            self.upstream.close()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers end with an empty line
                pass
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body

    def _serve(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        if proxy.closing.is_set():  # woken by shutdown, possibly mid-body: forward nothing
            self.close_connection = True
            return
        fault = proxy.take(self.command, self.path, body)
        if fault is None:
            self._answer(*self._forward(body))
        elif fault.kind == "fail":
            self._answer(fault.status, [("Content-Type", _JSON)], fault.body)
        elif fault.kind == "drop":
            self.close_connection = True  # finish() closes the socket: the client gets EOF, no status
        elif fault.kind == "delay":
            if proxy.closing.wait(fault.seconds):
                self.close_connection = True  # shutting down: do not start a forward now
            else:
                self._answer(*self._forward(body))
        else:
            self._reject_bulk_items(fault, body)

    def _reject_bulk_items(self, fault: _Fault, body: bytes) -> None:
        try:
            actions = _split_bulk(body)
        except (ValueError, AttributeError) as exc:  # a test sent something that is no bulk body
            reason = f"fault_proxy could not split the bulk body of {self.path} into actions: {exc!r}"
            self._answer(400, [("Content-Type", _JSON)], error_body(400, reason))
            return
        counted = [n for n, action in enumerate(actions) if fault.operation in (None, *json.loads(action[0]))]
        rejected = {n for k, n in enumerate(counted) if (k + 1) % fault.every == 0}
        kept = b"".join(
            line + b"\n" for n, action in enumerate(actions) if n not in rejected for line in action
        )
        if kept:
            status, headers, answer = self._forward(kept)
        else:
            status, headers, answer = 200, [("Content-Type", _JSON)], b'{"took":0,"errors":false,"items":[]}'
        document = json.loads(answer) if status == 200 else None
        if not isinstance(document, dict) or len(document.get("items", ())) != len(actions) - len(rejected):
            self._answer(status, headers, answer)  # not a bulk answer we can splice into: pass it on
            return
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        default_index = parts[0] if len(parts) > 1 else None
        real = iter(document["items"])
        document["items"] = [
            _rejected_item(action, default_index, fault) if n in rejected else next(real)
            for n, action in enumerate(actions)
        ]
        document["errors"] = document["errors"] or bool(rejected)
        self._answer(status, headers, json.dumps(document).encode())

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the request upstream on this connection's upstream connection; retry once if stale."""
        proxy = self.server.proxy
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _SKIP_REQUEST_HEADERS}
        if proxy.upstream_auth and "authorization" not in {k.lower() for k in headers}:
            headers["Authorization"] = proxy.upstream_auth
        target = proxy.upstream.path.rstrip("/") + self.path
        for _ in range(2):
            reused = self.upstream is not None
            if self.upstream is None:
                connection = http.client.HTTPSConnection if proxy.upstream.scheme == "https" else None
                self.upstream = (connection or http.client.HTTPConnection)(
                    proxy.upstream.hostname or "", proxy.upstream.port, timeout=UPSTREAM_TIMEOUT_SECONDS
                )
            try:
                self.upstream.request(self.command, target, body=body, headers=headers)
                response = self.upstream.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.upstream.close()
                self.upstream = None
                stale = isinstance(
                    exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError
                )
                if reused and stale:
                    continue  # the upstream had closed this kept-alive connection: one fresh try
                host = f"{proxy.upstream.hostname}:{proxy.upstream.port}"
                reason = f"fault_proxy could not forward {self.command} {self.path} to {host}: {exc!r}"
                return 502, [("Content-Type", _JSON)], error_body(502, reason, "bad_gateway")
            if response.will_close:
                self.upstream.close()
                self.upstream = None
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _SKIP_RESPONSE_HEADERS]
            if self.command == "HEAD":  # no body, but the length GET would have had
                kept.append(("Content-Length", response.getheader("Content-Length", "0")))
            return response.status, kept, answer
        raise AssertionError("unreachable: a second attempt is always on a fresh connection")

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError as exc:  # the client gave up (e.g. its read timeout fired during a delay)
            _log.debug("fault_proxy: client left before the %s answer to %s: %r", status, self.path, exc)
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # handler threads are joined by server_close(): none is left behind
    block_on_close = True

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy
        self.clients: set[socket.socket] = set()
        self.clients_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.clients_lock:  # registered before serve_forever returns, so shutdown sees it
            self.clients.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.clients_lock:
            self.clients.discard(request)
        super().shutdown_request(request)

    def wake_clients(self) -> None:
        """Shut every open client socket so handler threads blocked on keep-alive reads end."""
        with self.clients_lock:
            for client in self.clients:
                with contextlib.suppress(OSError):  # already closed by the client: nothing to wake
                    client.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def fault_proxy(upstream_url: str) -> Iterator[FaultProxy]:
    """Run a proxy to ``upstream_url`` on a free 127.0.0.1 port; stop it and join its threads on exit."""
    proxy = FaultProxy(upstream_url)
    server = _Server(proxy)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fault-proxy-{proxy.url}"
    )
    serving.start()
    try:
        yield proxy
    finally:
        proxy.closing.set()
        server.shutdown()
        server.wake_clients()
        server.server_close()  # closes the listening socket, then joins the handler threads
        serving.join()
