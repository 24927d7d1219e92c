"""The worker's /metrics, /healthz and /readyz endpoint under abuse: a real ``cdcsync run`` process.

Half-open and slow connections must not cost a thread each nor stop the probes from being answered;
only GET and HEAD are served. Everything here stays on loopback, and every socket is closed at the end.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from cdcsync.worker.coordinator import Health
from cdcsync.worker.http import MAX_CONNECTIONS, READ_TIMEOUT_SECONDS, Endpoints, MetricsServer
from tests.support.servers import free_port
from tests.support.tables import create_users_table

FLOOD = 300  # half-open connections, as many as the report's 400 within the test's file budget


@dataclass(frozen=True)
class Worker:
    pid: int
    base: str
    port: int
    log: Path  # its stderr

    def threads(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])


def _status(url: str, method: str = "GET", timeout: float = 1.0) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, data=b"x=1" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as failed:
        with failed:
            return failed.code, dict(failed.headers), failed.read()


def _eventually_healthy(base: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if _status(f"{base}/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base}/healthz did not answer 200 within {seconds} s")


@pytest.fixture(scope="module")
def worker(
    dynamodb: Any, moto_endpoint: str, opensearch_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """One ``cdcsync run`` process over an empty table, its metrics endpoint on a loopback port."""
    name = f"t-{secrets.token_hex(3)}"
    table = f"Users-{name}"
    create_users_table(dynamodb, table, stream_view="NEW_AND_OLD_IMAGES")
    folder = tmp_path_factory.mktemp("worker-http")
    (folder / "users.yaml").write_text(f'table: {table}\nindex: {name}\nid: "{{UserId}}"\n')
    port = free_port()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "CDCSYNC_MAPPINGS": str(folder / "users.yaml"),
        "CDCSYNC_OPENSEARCH_URL": opensearch_url,
        "CDCSYNC_DLQ": f"file://{folder / 'dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": f"file://{folder / 'checkpoints.json'}",
        "CDCSYNC_METRICS_ADDR": f"127.0.0.1:{port}",
        "CDCSYNC_LOG_FORMAT": "text",
    }
    log = folder / "stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cdcsync.entrypoints.cli", "run"], env=env, cwd=folder, stderr=stderr
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _eventually_healthy(base)
        yield Worker(process.pid, base, port, log)
    finally:
        process.kill()
        process.wait(timeout=10)
        dynamodb.delete_table(TableName=table)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _read_all(sock: socket.socket, seconds: float) -> bytes:
    """What the server sends until it closes the connection (or ``seconds`` pass)."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data + b"<still open>"
    except ConnectionResetError:
        return data + b"<reset>"
    return data


def test_metrics_endpoint_half_open_flood_holds_no_thread_each_and_probes_still_answer(
    worker: Worker,
) -> None:
    # GIVEN a running worker and its thread count at rest
    _eventually_healthy(worker.base)
    time.sleep(1.0)  # its shard loop has started
    at_rest = worker.threads()
    assert MAX_CONNECTIONS < FLOOD
    with ExitStack() as stack:
        # WHEN 300 connections are opened and send nothing (or half a request line)
        flood = [stack.enter_context(_connect(worker.port)) for _ in range(FLOOD)]
        for sock in flood[::2]:
            sock.sendall(b"GET /metr")
        time.sleep(1.0)
        # THEN the process holds no thread per connection
        flooded = worker.threads()
        assert flooded <= at_rest + 2, (at_rest, flooded)
        # AND /healthz and /readyz answer within a second, every time, while the connections stay open
        latencies = []
        for path in ["/healthz", "/readyz", "/metrics"] * 5:
            started = time.monotonic()
            status, _, _ = _status(f"{worker.base}{path}", timeout=1.0)
            latencies.append(time.monotonic() - started)
            assert status == 200, path
        assert max(latencies) < 1.0
        # AND the oldest connections beyond the cap were answered 503 and closed at once
        assert _read_all(flood[0], 1.0).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        # AND the newest ones are still open, waiting for their request within the read timeout
        assert _read_all(flood[-1], 0.2).endswith(b"<still open>")
        assert (
            f"metrics endpoint 127.0.0.1:{worker.port}: {MAX_CONNECTIONS} connections open, closing the "
            "oldest (from 127.0.0.1); something opens connections and sends no request: only the "
            "monitoring namespace should reach this port"
        ) in worker.log.read_text()
        print(
            f"\nthreads at rest {at_rest}, with {FLOOD} half-open connections {flooded}; "
            f"probe latency max {max(latencies) * 1000:.1f} ms, "
            f"median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms"
        )
    # AND once they are gone the endpoint serves as before
    assert _status(f"{worker.base}/healthz")[0] == 200


def test_metrics_endpoint_cuts_a_slow_client_after_the_read_timeout(worker: Worker) -> None:
    # GIVEN a client that sends its request one byte every half second (slowloris)
    with _connect(worker.port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        sock.settimeout(0.5)
        try:
            while time.monotonic() - started < READ_TIMEOUT_SECONDS + 5:
                sock.sendall(b"X")
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                answer += chunk
                if not chunk:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        cut_after = time.monotonic() - started
    # THEN the server answers 408 and closes the connection once the read timeout is over
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert answer.endswith(f"request not complete within {READ_TIMEOUT_SECONDS:g} s\n".encode())
    assert READ_TIMEOUT_SECONDS - 0.5 <= cut_after <= READ_TIMEOUT_SECONDS + 1.5, cut_after
    # AND the operator sees who it was
    assert (
        f"WARNING cdcsync.worker.http: metrics endpoint 127.0.0.1:{worker.port}: closed a connection "
        f"from 127.0.0.1 that sent no complete request within {READ_TIMEOUT_SECONDS:g} s"
    ) in worker.log.read_text()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/metrics", 405),
        ("PUT", "/healthz", 405),
        ("DELETE", "/readyz", 405),
        ("OPTIONS", "/metrics", 405),
        ("POST", "/nope", 404),
        ("GET", "/nope", 404),
        ("GET", "/healthz", 200),
        ("GET", "/readyz?verbose=1", 200),
    ],
)
def test_metrics_endpoint_answers_only_get_and_head_on_its_paths(
    worker: Worker, method: str, path: str, status: int
) -> None:
    # WHEN a request is made THEN only GET and HEAD on the three paths are served
    answered, headers, body = _status(f"{worker.base}{path}", method=method)
    assert answered == status
    if status == 405:
        assert headers["Allow"] == "GET, HEAD"
        assert body == f"method {method} not allowed on {path}: use GET or HEAD\n".encode()


def test_metrics_endpoint_head_gives_the_get_headers_without_a_body(worker: Worker) -> None:
    # GIVEN what GET /metrics answers
    status, headers, body = _status(f"{worker.base}/metrics")
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert b"# TYPE cdcsync_records_total counter\n" in body
    # WHEN HEAD asks for it THEN the same status and type come back, and no body
    with _connect(worker.port) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_all(sock, 2.0)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Type: text/plain; charset=utf-8" in head
    assert b"\r\nContent-Length: " in head
    assert rest == b""


def test_metrics_endpoint_refuses_an_oversized_request_head(worker: Worker) -> None:
    # WHEN a request head is larger than any probe or scraper sends THEN 431 and the connection closes
    with _connect(worker.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 20_000 + b"\r\n\r\n")
        answer = _read_all(sock, 2.0)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]


class _BrokenReadiness(Health):
    def readiness(self) -> tuple[bool, str]:
        raise RuntimeError("a bug in readiness")


def test_metrics_endpoint_bug_in_one_answer_is_500_and_the_endpoint_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN an endpoint whose /readyz answer raises (a bug), and whose loop is healthy
    server = MetricsServer(
        ("127.0.0.1", 0), Endpoints(CollectorRegistry(), _BrokenReadiness(last_round=time.monotonic()), 30.0)
    )
    server.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        # WHEN /readyz is asked THEN it answers 500 and logs the traceback as a bug
        assert _status(f"{base}/readyz")[:3:2] == (
            500,
            b"internal error: a bug in cdcsync (the worker's log has the traceback)\n",
        )
        # AND the other paths still answer
        assert _status(f"{base}/healthz")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
    (record,) = [r for r in caplog.records if r.name == "cdcsync.worker.http"]
    assert record.getMessage() == (
        f"metrics endpoint {server.server_address[0]}:{server.server_address[1]}: GET /readyz failed: "
        "RuntimeError: a bug in readiness (a bug in cdcsync)"
    )
    assert record.exc_info is not None


def _flood(port: int, stop: threading.Event, source: str = "127.0.0.1", held: int = 40) -> None:
    """Open connections in a loop and send nothing, holding the last ``held`` open."""
    open_socks: deque[socket.socket] = deque()
    try:
        while not stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1, source_address=(source, 0))
            except OSError:
                continue
            open_socks.append(sock)
            if len(open_socks) > held:
                open_socks.popleft().close()
    finally:
        for sock in open_socks:
            sock.close()


def test_metrics_endpoint_connection_flood_from_the_probes_address_fails_no_probe(worker: Worker) -> None:
    # GIVEN three threads opening connections from 127.0.0.1 in a loop, sending nothing
    stop = threading.Event()
    threads = [threading.Thread(target=_flood, args=(worker.port, stop), daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    # WHEN /healthz is probed every 50 ms for four seconds, from the same address
    failures, probes = [], 0
    try:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            probes += 1
            try:
                # The kubelet's probe timeout (deployment.yaml: timeoutSeconds 5): what fails a probe is
                # its connection closed or refused, not a busy 2-core CI machine answering in 1.1 s.
                status = _status(f"{worker.base}/healthz", timeout=5.0)[0]
                if status != 200:
                    failures.append(str(status))
            except OSError as exc:
                failures.append(repr(exc))
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    # THEN every probe is answered 200
    assert probes > 40
    assert failures == [], f"{len(failures)} of {probes} probes failed: {failures[:5]}"
    assert _status(f"{worker.base}/healthz")[0] == 200


def test_metrics_endpoint_flood_from_one_address_never_closes_another_clients_connection(
    worker: Worker,
) -> None:
    # GIVEN a client on 127.0.0.1 that connects and sends its request only after 1.5 s
    stop = threading.Event()
    with _connect(worker.port) as patient:
        time.sleep(0.2)  # accepted, and seen by a loop turn
        # WHEN 127.0.0.2 floods the endpoint with connections that send nothing meanwhile
        thread = threading.Thread(target=_flood, args=(worker.port, stop, "127.0.0.2"), daemon=True)
        thread.start()
        try:
            time.sleep(1.5)
            patient.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = _read_all(patient, 2.0)
        finally:
            stop.set()
            thread.join(timeout=10)
    # THEN its connection was kept, and its request answered: only the flooding address lost some
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200]
