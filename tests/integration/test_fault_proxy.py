"""The fault proxy forwards transparently and every fault reaches a real client exactly as documented."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import ConnectionTimeout, NotFoundError, TransportError

from tests.support.fault_proxy import FaultProxy, fault_proxy
from tests.support.servers import free_port


@pytest.fixture
def proxy(opensearch_url: str) -> Iterator[FaultProxy]:
    with fault_proxy(opensearch_url) as running:
        yield running


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[OpenSearch]:
    """An OpenSearch client that talks to the proxy and reports every error at once."""
    through_proxy = OpenSearch(hosts=[proxy.url], timeout=10, max_retries=0, retry_on_timeout=False)
    yield through_proxy
    through_proxy.close()


class _EchoHandler(BaseHTTPRequestHandler):
    """Upstream stand-in: answers with what it received, with the status the client asks for."""

    protocol_version = "HTTP/1.1"

    def _echo(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen: dict[str, str | None] = {"method": self.command, "path": self.path, "body": body.decode()}
        seen |= {name: self.headers.get(name) for name in ("Content-Type", "Authorization", "Host")}
        answer = json.dumps(seen).encode()
        self.send_response(int(self.headers.get("X-Echo-Status", "200")))
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", "yes")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _echo  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on answers, not on the access log."""


@contextlib.contextmanager
def _echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        serving.join()


def _call(
    url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers, body)."""
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _bulk(*lines: dict[str, Any]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def test_fault_proxy_index_get_exists_through_proxy_match_upstream(
    client: OpenSearch, opensearch: OpenSearch, proxy: FaultProxy, unique_name: str
) -> None:
    # GIVEN a client that talks only to the proxy
    # WHEN it indexes, reads and probes documents
    indexed = client.index(index=unique_name, id="u1", body={"name": "Ann"}, refresh=True)
    through_proxy = client.get(index=unique_name, id="u1")
    # THEN statuses and bodies are those of the real server
    assert indexed["result"] == "created"
    assert through_proxy == opensearch.get(index=unique_name, id="u1")
    assert through_proxy["_source"] == {"name": "Ann"}
    assert client.exists(index=unique_name, id="u1") is True
    assert client.exists(index=unique_name, id="nobody") is False
    with pytest.raises(NotFoundError) as missing:
        client.get(index=unique_name, id="nobody")
    assert missing.value.status_code == 404
    # AND the proxy recorded every request in order, with its body
    assert [(method, path.split("?")[0]) for method, path, _ in proxy.requests] == [
        ("PUT", f"/{unique_name}/_doc/u1"),
        ("GET", f"/{unique_name}/_doc/u1"),
        ("HEAD", f"/{unique_name}/_doc/u1"),
        ("HEAD", f"/{unique_name}/_doc/nobody"),
        ("GET", f"/{unique_name}/_doc/nobody"),
    ]
    assert json.loads(proxy.requests[0][2]) == {"name": "Ann"}
    assert proxy.faults_injected == 0


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [
        pytest.param("GET", b"", 200, id="get"),
        pytest.param("PUT", b'{"a": 1}', 201, id="put-created"),
        pytest.param("POST", b'{"q": 1}', 409, id="post-conflict"),
        pytest.param("DELETE", b"", 404, id="delete-missing"),
        pytest.param("HEAD", b"", 200, id="head"),
    ],
)
def test_fault_proxy_forwarding_keeps_method_target_headers_body_and_status(
    method: str, body: bytes, status: int
) -> None:
    # GIVEN a proxy in front of an upstream that echoes what it receives
    headers = {"Content-Type": "application/x-ndjson", "Authorization": "Basic YTpi"}
    with _echo_server() as upstream, fault_proxy(f"http://{upstream}") as proxy:
        # WHEN a client sends a request with headers and a body
        answered, answer_headers, answer = _call(
            proxy.url, method, "/i/_doc/1?refresh=true", body, headers | {"X-Echo-Status": str(status)}
        )
    # THEN the client gets the upstream's status and headers
    assert answered == status
    assert answer_headers["X-Echo"] == "yes"
    if method == "HEAD":  # no body, but the length a GET would have had
        assert answer == b""
        assert int(answer_headers["Content-Length"]) > 0
        return
    # AND the upstream saw the same method, target, body and headers, with its own Host
    expected = {"method": method, "path": "/i/_doc/1?refresh=true", "body": body.decode(), "Host": upstream}
    assert json.loads(answer) == expected | headers


@pytest.mark.parametrize(
    ("client_headers", "upstream_saw"),
    [
        pytest.param({}, "Basic b3BzOnMzY3IzdA==", id="from-upstream-url"),
        pytest.param({"Authorization": "Bearer abc"}, "Bearer abc", id="client-wins"),
    ],
)
def test_fault_proxy_upstream_url_credentials_become_authorization_unless_client_sends_one(
    client_headers: dict[str, str], upstream_saw: str
) -> None:
    # GIVEN a proxy whose upstream URL carries credentials (ops:s3cr3t)
    with _echo_server() as upstream, fault_proxy(f"http://ops:s3cr3t@{upstream}") as proxy:
        # WHEN a client calls it with or without its own Authorization header
        _, _, answer = _call(proxy.url, "GET", "/", headers=client_headers)
    # THEN the upstream sees the client's header if there was one, else the URL's credentials
    assert json.loads(answer)["Authorization"] == upstream_saw


def test_fault_proxy_keeps_one_client_connection_alive_across_answers_and_faults(proxy: FaultProxy) -> None:
    # GIVEN one HTTP/1.1 client connection to the proxy
    connection = http.client.HTTPConnection(proxy.url.removeprefix("http://"), timeout=10)
    proxy.fail(status=503, path="^/$")
    statuses = []
    sockets = []
    try:
        # WHEN it sends a faulted request and then two forwarded ones
        for _ in range(3):
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            sockets.append(connection.sock)
    finally:
        connection.close()
    # THEN all three went over the same socket (urllib3's pool depends on this)
    assert statuses == [503, 200, 200]
    assert sockets[0] is not None
    assert sockets == [sockets[0]] * 3


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        pytest.param(429, "es_rejected_execution_exception", id="429-too-many-requests"),
        pytest.param(503, "cluster_block_exception", id="503-unavailable"),
        pytest.param(413, "request_entity_too_large_exception", id="413-too-large"),
    ],
)
def test_fault_proxy_fail_answers_status_with_opensearch_error_without_forwarding(
    client: OpenSearch,
    opensearch: OpenSearch,
    proxy: FaultProxy,
    unique_name: str,
    *,
    status: int,
    error_type: str,
) -> None:
    # GIVEN one scheduled failure for bulk requests
    proxy.fail(status=status)
    body = _bulk({"index": {"_index": unique_name, "_id": "u1"}}, {"name": "Ann"})
    # WHEN the client sends a bulk request
    with pytest.raises(TransportError) as failed:
        client.bulk(body=body, refresh=True)
    # THEN it sees the status and an OpenSearch-shaped error body
    reason = f"injected by fault_proxy: HTTP {status}"
    cause = {"type": error_type, "reason": reason}
    assert failed.value.status_code == status
    assert failed.value.error == error_type
    assert failed.value.info == {"error": {"root_cause": [cause], **cause}, "status": status}
    # AND nothing reached the server, while the same request afterwards is forwarded
    assert not opensearch.indices.exists(index=unique_name)
    assert client.bulk(body=body, refresh=True)["errors"] is False
    assert opensearch.get(index=unique_name, id="u1")["_source"] == {"name": "Ann"}
    assert proxy.faults_injected == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"Message": "Request size exceeded"}, b'{"Message": "Request size exceeded"}', id="dict"
        ),
        pytest.param(b"<html>busy</html>", b"<html>busy</html>", id="bytes"),
    ],
)
def test_fault_proxy_fail_with_body_answers_that_body(
    proxy: FaultProxy, body: dict[str, Any] | bytes, expected: bytes
) -> None:
    # GIVEN a failure with a custom body (e.g. Amazon OpenSearch Service's own 413 shape)
    proxy.fail(status=413, body=body, path=None)
    # WHEN any request arrives
    status, _, answer = _call(proxy.url, "GET", "/")
    # THEN it gets exactly that body
    assert (status, answer) == (413, expected)


def test_fault_proxy_drop_closes_connection_without_answer_and_forwards_nothing(
    client: OpenSearch, opensearch: OpenSearch, proxy: FaultProxy, unique_name: str
) -> None:
    # GIVEN one dropped request on document writes
    proxy.drop(path="/_doc/")
    # WHEN the client writes a document
    started = time.monotonic()
    with pytest.raises(OpenSearchConnectionError) as dropped:
        client.index(index=unique_name, id="u1", body={"name": "Ann"}, refresh=True)
    # THEN it sees a connection error at once (not a timeout) and the write never happened
    assert not isinstance(dropped.value, ConnectionTimeout)
    assert "Remote end closed connection without response" in str(dropped.value)
    assert time.monotonic() - started < 2
    assert not opensearch.indices.exists(index=unique_name)
    # AND the next write goes through (the drop was used up)
    assert client.index(index=unique_name, id="u1", body={"name": "Ann"}, refresh=True)["result"] == "created"
    assert proxy.faults_injected == 1


def test_fault_proxy_delay_times_out_client_and_request_still_lands(
    client: OpenSearch, opensearch: OpenSearch, proxy: FaultProxy, unique_name: str
) -> None:
    # GIVEN a 0.6 s delay on document writes and a client that waits 0.2 s
    proxy.delay(seconds=0.6, path="/_doc/")
    # WHEN the client writes a document
    started = time.monotonic()
    with pytest.raises(ConnectionTimeout):
        client.index(index=unique_name, id="u1", body={"name": "Ann"}, refresh=True, request_timeout=0.2)
    # THEN it times out before the delay ends
    assert time.monotonic() - started < 0.6
    # AND the write is still forwarded afterwards, as a slow cluster would apply it
    deadline = time.monotonic() + 5
    while not opensearch.exists(index=unique_name, id="u1") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert opensearch.get(index=unique_name, id="u1")["_source"] == {"name": "Ann"}
    assert proxy.faults_injected == 1


# Five actions, one of each shape; "c" and "d" exist beforehand so update and delete succeed.
_BULK_OPERATIONS = ["index", "create", "update", "delete", "index"]
_BULK_IDS = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("every", "operation", "rejected"),
    [
        pytest.param(2, None, {1, 3}, id="every-2nd"),
        pytest.param(3, None, {2}, id="every-3rd-update"),
        pytest.param(1, None, {0, 1, 2, 3, 4}, id="all-answered-by-proxy"),
        pytest.param(6, None, set(), id="fewer-than-every"),
        pytest.param(1, "delete", {3}, id="deletes-only"),
        pytest.param(2, "index", {4}, id="every-2nd-index"),
    ],
)
def test_fault_proxy_reject_bulk_items_splices_failures_in_request_order(
    client: OpenSearch,
    opensearch: OpenSearch,
    proxy: FaultProxy,
    unique_name: str,
    *,
    every: int,
    operation: str | None,
    rejected: set[int],
) -> None:
    # GIVEN documents c and d, and a partial rejection of the next bulk
    for doc_id in ("c", "d"):
        opensearch.index(index=unique_name, id=doc_id, body={"v": 0}, refresh=True)
    proxy.reject_bulk_items(every=every, item_status=429, operation=operation)
    body = _bulk(
        {"index": {"_index": unique_name, "_id": "a"}},
        {"v": 1},
        {"create": {"_id": "b"}},  # no _index: the proxy takes it from the URL, as OpenSearch does
        {"v": 1},
        {"update": {"_index": unique_name, "_id": "c"}},
        {"doc": {"v": 1}},
        {"delete": {"_index": unique_name, "_id": "d"}},
        {"index": {"_index": unique_name, "_id": "e"}},
        {"v": 1},
    )
    # WHEN the client sends it
    answer = client.bulk(body=body, index=unique_name, refresh=True)
    # THEN items keep request order, rejected ones carry the injected failure, the others really ran
    assert answer["errors"] is bool(rejected)
    items = [next(iter(item.items())) for item in answer["items"]]
    assert [(operation, item["_id"], item["_index"]) for operation, item in items] == [
        (operation, doc_id, unique_name)
        for operation, doc_id in zip(_BULK_OPERATIONS, _BULK_IDS, strict=True)
    ]
    reason = "rejected execution of coordinating operation [injected by fault_proxy, 429]"
    for position, (_, item) in enumerate(items):
        if position in rejected:
            assert (item["status"], item["error"]) == (
                429,
                {"type": "es_rejected_execution_exception", "reason": reason},
            )
        else:
            assert 200 <= item["status"] < 300
            assert "error" not in item
    # AND the index holds exactly the effects of the actions that were not rejected
    sources = {
        doc_id: opensearch.get(index=unique_name, id=doc_id, ignore=404).get("_source")
        for doc_id in _BULK_IDS
    }
    expected = {"a": {"v": 1}, "b": {"v": 1}, "c": {"v": 1}, "d": None, "e": {"v": 1}}
    untouched = {"a": None, "b": None, "c": {"v": 0}, "d": {"v": 0}, "e": None}
    assert sources == {
        doc_id: untouched[doc_id] if position in rejected else expected[doc_id]
        for position, doc_id in enumerate(_BULK_IDS)
    }
    assert proxy.faults_injected == 1


def _schedule_paths_and_order(proxy: FaultProxy) -> None:
    proxy.fail(status=429, path="^/$")
    proxy.fail(times=2, status=503, path="^/_cluster/health")
    proxy.fail(status=500, path=None)


def _schedule_same_path_in_order(proxy: FaultProxy) -> None:
    proxy.fail(status=429, path=None)
    proxy.drop(path="^/$")
    proxy.fail(status=503, path=None)


def _schedule_then_reset(proxy: FaultProxy) -> None:
    proxy.fail(times=5, status=503, path=None)
    proxy.reset()


@pytest.mark.parametrize(
    ("schedule", "calls", "expected", "injected"),
    [
        pytest.param(
            _schedule_paths_and_order,
            ["/_cluster/health", "/", "/", "/_cluster/health", "/_cluster/health", "/"],
            [503, 429, 500, 503, 200, 200],
            4,
            id="first-matching-fault-per-path",
        ),
        pytest.param(
            _schedule_same_path_in_order,
            ["/", "/", "/", "/"],
            [429, "dropped", 503, 200],
            3,
            id="added-order",
        ),
        pytest.param(_schedule_then_reset, ["/", "/"], [200, 200], 0, id="reset-clears"),
    ],
)
def test_fault_proxy_schedule_consumes_first_matching_fault_in_request_order(
    proxy: FaultProxy,
    schedule: Callable[[FaultProxy], None],
    calls: list[str],
    expected: list[int | str],
    injected: int,
) -> None:
    # GIVEN a fault schedule
    schedule(proxy)
    # WHEN requests arrive one after another
    outcomes: list[int | str] = []
    for path in calls:
        try:
            outcomes.append(_call(proxy.url, "GET", path)[0])
        except http.client.RemoteDisconnected:
            outcomes.append("dropped")
    # THEN each took the first fault that matched its path, and the rest were forwarded
    assert outcomes == expected
    assert proxy.faults_injected == injected
    assert [path for _, path, _ in proxy.requests] == calls


def test_fault_proxy_exit_with_open_connection_and_pending_delay_closes_port_and_joins_threads(
    opensearch_url: str,
) -> None:
    # GIVEN a proxy with an idle keep-alive connection and a request sleeping in a 30 s delay
    threads_before = set(threading.enumerate())
    outcomes: list[str] = []
    with fault_proxy(opensearch_url) as proxy:
        idle = http.client.HTTPConnection(proxy.url.removeprefix("http://"), timeout=10)
        idle.request("GET", "/")
        idle.getresponse().read()
        proxy.delay(seconds=30, path=None)

        def delayed_call() -> None:
            try:
                _call(proxy.url, "GET", "/")
                outcomes.append("answered")
            except http.client.RemoteDisconnected:
                outcomes.append("dropped")

        waiting = threading.Thread(target=delayed_call)
        waiting.start()
        while not proxy.faults_injected:
            time.sleep(0.01)
        # WHEN the context exits
        started = time.monotonic()
    stopped_in = time.monotonic() - started
    waiting.join(timeout=5)
    idle.close()
    # THEN it returned promptly, the delayed request got no answer, and no proxy thread is left
    assert stopped_in < 2
    assert outcomes == ["dropped"]
    assert set(threading.enumerate()) <= threads_before
    # AND the port is closed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(proxy.url.rsplit(":", 1)[1])), timeout=2).close()


def test_fault_proxy_unreachable_upstream_answers_502_with_reason() -> None:
    # GIVEN a proxy whose upstream port has no server
    port = free_port()
    with fault_proxy(f"http://127.0.0.1:{port}") as proxy:
        # WHEN a request arrives
        status, _, answer = _call(proxy.url, "GET", "/_cluster/health")
    # THEN it gets a 502 that names the upstream
    assert status == 502
    error = json.loads(answer)["error"]
    assert error["type"] == "bad_gateway"
    assert error["reason"].startswith(
        f"fault_proxy could not forward GET /_cluster/health to 127.0.0.1:{port}: ConnectionRefusedError("
    )


@pytest.mark.parametrize(
    ("configure", "message"),
    [
        pytest.param(lambda p: p.fail(times=0), "fault_proxy: fail(times=0) must be at least 1", id="times"),
        pytest.param(
            lambda p: p.reject_bulk_items(every=0),
            "fault_proxy: reject_bulk_items(every=0) must be at least 1",
            id="every",
        ),
    ],
)
def test_fault_proxy_invalid_schedule_raises_value_error(
    configure: Callable[[FaultProxy], None], message: str
) -> None:
    # GIVEN a proxy object (not started: no socket needed)
    proxy = FaultProxy("http://127.0.0.1:9200")
    # WHEN a fault is scheduled with an impossible count THEN the error says which and why
    with pytest.raises(ValueError, match=r"^" + re.escape(message) + "$"):
        configure(proxy)


def test_fault_proxy_non_http_upstream_raises_value_error() -> None:
    # GIVEN/WHEN a proxy to something that is not an http(s) URL THEN construction fails with the URL
    with pytest.raises(
        ValueError, match=r"^fault_proxy: upstream URL '127\.0\.0\.1:9200' is not http\(s\)://host\[:port\]$"
    ):
        FaultProxy("127.0.0.1:9200")


def test_fault_proxy_forbid_explicit_index_refuses_index_in_body_as_opensearch(
    client: OpenSearch, opensearch: OpenSearch, proxy: FaultProxy, unique_name: str
) -> None:
    # GIVEN a proxy answering as a cluster with rest.action.multi.allow_explicit_index: false
    proxy.forbid_explicit_index()
    named = _bulk({"index": {"_index": unique_name, "_id": "a"}}, {"v": 1})
    unnamed = _bulk({"index": {"_id": "a"}}, {"v": 1})
    # WHEN a bulk names _index in its body (even the path's), or has no index at all (root /_bulk)
    # THEN it is refused whole with OpenSearch's error, unforwarded, and not counted as a fault
    refusals = []
    for body, index in ((named, unique_name), (named, None), (unnamed, None)):
        with pytest.raises(TransportError) as refused:
            client.bulk(body=body, index=index)
        refusals.append(
            (refused.value.status_code, refused.value.error, refused.value.info["error"]["reason"])
        )
    assert refusals == [
        (400, "illegal_argument_exception", "explicit index in bulk is not allowed"),
        (400, "illegal_argument_exception", "explicit index in bulk is not allowed"),
        (400, "action_request_validation_exception", "Validation Failed: 1: index is missing;"),
    ]
    assert not opensearch.indices.exists(index=unique_name)
    assert proxy.faults_injected == 0
    # AND a bulk posted to /{index}/_bulk with no _index in its lines is forwarded and applied
    assert client.bulk(body=unnamed, index=unique_name, refresh=True)["errors"] is False
    assert opensearch.get(index=unique_name, id="a")["_source"] == {"v": 1}
