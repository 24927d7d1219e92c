"""What the metrics endpoint answers, without sockets (the limits: tests/integration/test_worker_http.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from cdcsync.worker.coordinator import Health
from cdcsync.worker.http import Answer, Endpoints, MetricsServer, parse_request_line


def _endpoints(*, ready: bool = True) -> Endpoints:
    registry = CollectorRegistry()
    Counter("cdcsync_records", "records settled", registry=registry).inc()
    health = Health(last_round=time.monotonic(), dynamodb_ok=True, opensearch_ok=ready)
    return Endpoints(registry, health, stuck_after=30.0)


@pytest.mark.parametrize(
    ("head", "parsed"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x", ("GET", "/metrics")),
        (b"HEAD /readyz?verbose=1 HTTP/1.0", ("HEAD", "/readyz")),
        (b"POST /healthz HTTP/1.1\nContent-Length: 3", ("POST", "/healthz")),
    ],
)
def test_parse_request_line_gives_method_and_path_without_query(head: bytes, parsed: tuple[str, str]) -> None:
    assert parse_request_line(head) == parsed


@pytest.mark.parametrize(
    "head",
    [
        b"GET /metrics",
        b"GET /metrics HTTP/2.0",
        b"get /metrics HTTP/1.1",
        b"GET  /metrics HTTP/1.1",
        b"\x16\x03",
    ],
)
def test_parse_request_line_malformed_is_400(head: bytes) -> None:
    assert parse_request_line(head) == Answer(400, b"bad request: expected METHOD PATH HTTP/1.1\n")


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/metrics", 200, ""),
        ("HEAD", "/metrics", 200, ""),
        ("GET", "/healthz", 200, ""),
        ("GET", "/readyz", 200, ""),
        ("POST", "/metrics", 405, "GET, HEAD"),
        ("PUT", "/readyz", 405, "GET, HEAD"),
        ("TRACE", "/healthz", 405, "GET, HEAD"),
        ("GET", "/", 404, ""),
        ("POST", "/nope", 404, ""),
        ("GET", "/metrics/", 404, ""),
    ],
)
def test_endpoints_answer_only_get_and_head_on_their_paths(
    method: str, path: str, status: int, allow: str
) -> None:
    answer = _endpoints().answer(method, path)
    assert (answer.status, answer.allow) == (status, allow)


def test_endpoints_405_says_what_to_use() -> None:
    assert (
        _endpoints().answer("POST", "/metrics").body
        == b"method POST not allowed on /metrics: use GET or HEAD\n"
    )


def test_endpoints_metrics_is_the_prometheus_exposition() -> None:
    answer = _endpoints().answer("GET", "/metrics")
    assert answer.content_type == CONTENT_TYPE_LATEST
    assert b"cdcsync_records_total 1.0\n" in answer.body


def test_endpoints_readyz_not_ready_is_503_with_its_lines() -> None:
    answer = _endpoints(ready=False).answer("GET", "/readyz")
    assert (answer.status, answer.body) == (503, b"dynamodb ok, opensearch unreachable\n")


def test_answer_encode_head_keeps_the_get_headers_and_drops_the_body() -> None:
    answer = Answer(200, b"ok: last round 0 s ago\n")
    head = answer.encode(head_only=True)
    assert answer.encode() == head + b"ok: last round 0 s ago\n"
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\n"
        b"Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    )


def test_server_idle_waits_in_select_instead_of_spinning() -> None:
    # GIVEN a metrics server with no connection open
    server = MetricsServer(("127.0.0.1", 0), Endpoints(CollectorRegistry(), Health(), 30))
    timeouts: list[float | None] = []
    select = server._selector.select

    def recording_select(timeout: float | None = None) -> list[Any]:
        timeouts.append(timeout)
        return select(timeout)

    server._selector.select = recording_select  # type: ignore[method-assign]
    # WHEN it runs for a second
    server.start()
    try:
        time.sleep(1.0)
    finally:
        server.shutdown()
        server.server_close()
    # THEN it waited in select for its poll interval each turn (it used to poll with timeout 0,
    # ~80,000 turns a second holding the GIL the shard threads need)
    assert len(timeouts) <= 5
    assert all(t is not None and t > 0.4 for t in timeouts[:-1])
