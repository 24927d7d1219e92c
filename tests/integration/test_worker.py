"""The container worker against moto's DynamoDB Streams and the local OpenSearch, over HTTP."""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from cdcsync.entrypoints.worker import build_coordinator
from cdcsync.garbage import NEVER, YOUNG
from cdcsync.settings import Settings, load_settings
from cdcsync.worker.coordinator import Coordinator
from cdcsync.worker.http import Endpoints, MetricsServer
from tests.support.fault_proxy import fault_proxy
from tests.support.servers import free_port
from tests.support.tables import create_users_table

ROOT = Path(__file__).parents[2]


@pytest.fixture
def table(dynamodb: Any, unique_name: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    name = f"Users-{unique_name}"
    create_users_table(dynamodb, name, stream_view="NEW_AND_OLD_IMAGES")
    return name


@pytest.fixture
def make_settings(
    tmp_path: Path, table: str, unique_name: str, opensearch_url: str
) -> Callable[..., Settings]:
    mapping = tmp_path / "users.yaml"
    mapping.write_text(
        f'table: {table}\nindex: {unique_name}\nid: "{{UserId}}"\n'
        "where: {Status: [{anything-but: [banned]}, {exists: false}]}\n"
    )

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "mappings": mapping,
            "opensearch_url": opensearch_url,
            "dlq": f"file://{tmp_path / 'dlq.jsonl'}",
            "checkpoints": f"file://{tmp_path / 'checkpoints.json'}",
            "_env_file": None,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def start_worker() -> Iterator[Callable[[Settings], Coordinator]]:
    running: list[tuple[Coordinator, threading.Thread]] = []

    def start(settings: Settings) -> Coordinator:
        coordinator, _ = build_coordinator(settings)
        coordinator.round_seconds = 0.3
        thread = threading.Thread(target=coordinator.run, daemon=True)
        thread.start()
        running.append((coordinator, thread))
        return coordinator

    yield start
    for coordinator, thread in running:
        coordinator.stopping.set()
        thread.join(timeout=30)


def put(dynamodb: Any, table: str, user_id: int, name: str, status: str | None = None) -> None:
    item = {"UserId": {"N": str(user_id)}, "Username": {"S": name}}
    if status:
        item["Status"] = {"S": status}
    dynamodb.put_item(TableName=table, Item=item)


def docs(opensearch: OpenSearch, index: str) -> dict[str, Any]:
    if not opensearch.indices.exists(index=index):
        return {}
    opensearch.indices.refresh(index=index)
    hits = opensearch.search(index=index, body={"query": {"match_all": {}}, "size": 100})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def eventually(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def test_worker_syncs_stream_and_resumes_from_checkpoint(
    dynamodb: Any,
    table: str,
    unique_name: str,
    opensearch: OpenSearch,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], Coordinator],
    tmp_path: Path,
) -> None:
    # GIVEN a worker over the table's stream
    settings = make_settings()
    worker = start_worker(settings)
    # WHEN items are inserted, updated, banned and deleted
    for user_id, name in [(1, "ada"), (2, "grace"), (3, "alan")]:
        put(dynamodb, table, user_id, name)
    put(dynamodb, table, 2, "grace hopper")
    put(dynamodb, table, 3, "alan", status="banned")
    dynamodb.delete_item(TableName=table, Key={"UserId": {"N": "1"}})
    # THEN the index converges to the table
    eventually(lambda: docs(opensearch, unique_name) == {"2": {"UserId": 2, "Username": "grace hopper"}})
    worker.stopping.set()
    eventually(lambda: not worker.loops, 30)
    checkpoint = json.loads((tmp_path / "checkpoints.json").read_text())
    assert any(lease["checkpoint"] != "TRIM_HORIZON" for lease in checkpoint["leases"].values())
    # AND a restarted worker goes on from its checkpoint: only the new change is written
    again = start_worker(settings)
    put(dynamodb, table, 4, "edsger")
    eventually(lambda: "4" in docs(opensearch, unique_name))
    metrics = again.metrics.registry  # type: ignore[attr-defined]
    indexed = metrics.get_sample_value(
        "cdcsync_records_total", {"table": table, "event": "INSERT", "outcome": "indexed"}
    )
    assert indexed == 1


def test_worker_serves_metrics_health_and_readiness(
    dynamodb: Any,
    table: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], Coordinator],
) -> None:
    worker = start_worker(make_settings())
    port = free_port()
    server = MetricsServer(("127.0.0.1", port), Endpoints(worker.metrics.registry, worker.health, 5))  # type: ignore[attr-defined]
    server.start()
    try:
        eventually(lambda: worker.health.last_round > 0)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz") as answer:
            assert answer.status == 200
        with urllib.request.urlopen(f"{base}/readyz") as answer:
            assert answer.read().decode() == "dynamodb ok, opensearch ok\n"
        with urllib.request.urlopen(f"{base}/metrics") as answer:
            text = answer.read().decode()
        assert f'cdcsync_shards_owned{{table="{table}"}} 1.0' in text
        assert f'cdcsync_replication_lag_seconds{{table="{table}"}}' in text
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/nope")
        assert missing.value.code == 404
        missing.value.close()
    finally:
        server.shutdown()
        server.server_close()


def test_worker_replicas_share_a_lease_table_and_take_over(
    dynamodb: Any,
    table: str,
    unique_name: str,
    opensearch: OpenSearch,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], Coordinator],
) -> None:
    # GIVEN two replicas sharing a DynamoDB lease table
    settings = make_settings(checkpoints=f"dynamodb://{unique_name}-leases")
    first, second = start_worker(settings), start_worker(settings)
    put(dynamodb, table, 1, "ada")
    eventually(lambda: "1" in docs(opensearch, unique_name))
    # THEN exactly one of them reads the (single) shard
    eventually(lambda: len(first.loops) + len(second.loops) == 1)
    owner, other = (first, second) if first.loops else (second, first)
    # WHEN the owner shuts down (releasing its lease) THEN the other takes over and goes on
    owner.stopping.set()
    eventually(lambda: len(other.loops) == 1, 30)
    put(dynamodb, table, 2, "grace")
    eventually(lambda: set(docs(opensearch, unique_name)) == {"1", "2"})


def test_worker_process_exits_cleanly_on_sigterm(
    table: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    port = free_port()
    env = {
        **os.environ,
        "CDCSYNC_MAPPINGS": str(settings.mappings),
        "CDCSYNC_OPENSEARCH_URL": settings.opensearch_url[0],
        "CDCSYNC_DLQ": settings.dlq,
        "CDCSYNC_CHECKPOINTS": settings.checkpoints,
        "CDCSYNC_METRICS_ADDR": f"127.0.0.1:{port}",
        "CDCSYNC_LOG_FORMAT": "text",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cdcsync.entrypoints.cli", "run"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
    )
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                    return answer.status == 200
            except OSError:
                return False

        eventually(healthy, 30)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0
        assert time.monotonic() - started < 30
        assert "received SIGTERM: finishing in-flight writes, then exiting" in stderr.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_worker_iterator_age_rises_while_opensearch_is_down_then_falls_to_zero(
    dynamodb: Any,
    table: str,
    unique_name: str,
    opensearch_url: str,
    opensearch: OpenSearch,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], Coordinator],
) -> None:
    with fault_proxy(opensearch_url) as proxy:
        # GIVEN a worker whose OpenSearch answers every bulk request with 503
        proxy.fail(times=100_000, status=503, path="/_bulk")
        worker = start_worker(make_settings(opensearch_url=proxy.url, max_retries=1, retry_max_seconds=1))
        registry = worker.metrics.registry  # type: ignore[attr-defined]

        def age() -> float:
            shards = list(worker.loops)
            if not shards:
                return -1.0
            labels = {"table": table, "shard": shards[0][1]}
            return registry.get_sample_value("cdcsync_iterator_age_seconds", labels) or 0.0

        # WHEN a change is made
        put(dynamodb, table, 1, "ada")
        eventually(lambda: age() >= 1.0)
        first = age()
        eventually(lambda: age() >= first + 1.0)  # THEN its age keeps rising while nothing is written
        lag = registry.get_sample_value("cdcsync_replication_lag_seconds", {"table": table})
        assert lag is not None
        assert lag >= first
        # WHEN OpenSearch comes back THEN the change is written and the age falls to 0
        proxy.reset()
        eventually(lambda: "1" in docs(opensearch, unique_name), 30)
        eventually(lambda: age() == 0.0)


def test_worker_replica_killed_with_sigkill_loses_its_shard_to_the_other(
    dynamodb: Any,
    table: str,
    unique_name: str,
    opensearch: OpenSearch,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    # GIVEN two worker processes sharing a lease table, with a short lease for the test
    settings = make_settings(checkpoints=f"dynamodb://{unique_name}-leases")
    env = {
        **os.environ,
        "CDCSYNC_MAPPINGS": str(settings.mappings),
        "CDCSYNC_OPENSEARCH_URL": settings.opensearch_url[0],
        "CDCSYNC_DLQ": settings.dlq,
        "CDCSYNC_CHECKPOINTS": settings.checkpoints,
        "CDCSYNC_LEASE_SECONDS": "3",
        "CDCSYNC_LOG_FORMAT": "text",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "cdcsync.entrypoints.cli", "run"],
            env={**env, "CDCSYNC_METRICS_ADDR": f"127.0.0.1:{free_port()}"},
            cwd=tmp_path,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        for user_id in range(1, 11):
            put(dynamodb, table, user_id, f"user{user_id}")
        eventually(lambda: len(docs(opensearch, unique_name)) == 10, 30)

        def owner_pid() -> int | None:
            leases = dynamodb.scan(TableName=f"{unique_name}-leases", ConsistentRead=True)["Items"]
            owners = [item["owner"]["S"] for item in leases if "owner" in item and "shard_id" in item]
            return int(owners[0].rsplit("-", 2)[1]) if owners else None

        eventually(lambda: owner_pid() in {p.pid for p in processes}, 15)
        owner = next(p for p in processes if p.pid == owner_pid())
        # WHEN the owner is killed mid-stream, without a chance to release its lease
        for user_id in range(11, 16):
            put(dynamodb, table, user_id, f"user{user_id}")
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        for user_id in range(16, 21):
            put(dynamodb, table, user_id, f"user{user_id}")
        dynamodb.delete_item(TableName=table, Key={"UserId": {"N": "3"}})
        # THEN the survivor takes the lease after it expires and the index converges to the table
        expected = {str(n) for n in range(1, 21)} - {"3"}
        eventually(lambda: set(docs(opensearch, unique_name)) == expected, 40)
        survivor = next(p for p in processes if p is not owner)
        assert owner_pid() == survivor.pid
        assert survivor.poll() is None
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def test_worker_table_deleted_leaves_other_tables_syncing(
    dynamodb: Any,
    table: str,
    unique_name: str,
    opensearch: OpenSearch,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], Coordinator],
    tmp_path: Path,
) -> None:
    # GIVEN a worker over two tables, both syncing
    orders = f"Orders-{unique_name}"
    create_users_table(dynamodb, orders, stream_view="NEW_AND_OLD_IMAGES")
    mappings = tmp_path / "two.yaml"
    mappings.write_text(
        f"mappings:\n  - {{table: {table}, index: {unique_name}}}\n"
        f"  - {{table: {orders}, index: {unique_name}-orders}}\n"
    )
    worker = start_worker(make_settings(mappings=mappings))
    put(dynamodb, table, 1, "ada")
    put(dynamodb, orders, 1, "order")
    eventually(
        lambda: "1" in docs(opensearch, unique_name) and "1" in docs(opensearch, f"{unique_name}-orders")
    )
    # WHEN one table is deleted (its stream goes with it)
    dynamodb.delete_table(TableName=orders)
    put(dynamodb, table, 2, "grace")
    # THEN the other table goes on syncing, and /readyz says which table stopped and why
    eventually(lambda: "2" in docs(opensearch, unique_name))
    port = free_port()
    server = MetricsServer(("127.0.0.1", port), Endpoints(worker.metrics.registry, worker.health, 5))  # type: ignore[attr-defined]
    server.start()
    try:

        def readyz() -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as answer:
                    return answer.status, answer.read().decode()
            except urllib.error.HTTPError as failed:
                with failed:
                    return failed.code, failed.read().decode()

        eventually(lambda: f"\ntable {orders}: table {orders} does not exist" in readyz()[1])
        status, text = readyz()
    finally:
        server.shutdown()
        server.server_close()
    assert status == 503
    assert text == (
        "dynamodb ok, opensearch ok\n"
        f"table {orders}: table {orders} does not exist in this account and region "
        "(ResourceNotFoundException); check the mapping's table name and AWS_REGION\n"
    )
    rounds = worker.health.last_round
    eventually(lambda: worker.health.last_round > rounds)  # the coordinator is still going
    registry = worker.metrics.registry  # type: ignore[attr-defined]
    errors = registry.get_sample_value("cdcsync_worker_errors_total", {"table": orders, "error": "config"})
    assert errors is not None
    assert errors >= 1


# --- the worker process at a terminal --------------------------------------------------------------


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `cdcsync run` process over ``settings`` (logs as they default)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CDCSYNC_")}
    env.update(
        CDCSYNC_MAPPINGS=str(settings.mappings),
        CDCSYNC_OPENSEARCH_URL=settings.opensearch_url[0],
        CDCSYNC_DLQ=settings.dlq,
        CDCSYNC_CHECKPOINTS=settings.checkpoints,
        CDCSYNC_METRICS_ADDR=f"127.0.0.1:{free_port()}",
        CDCSYNC_LEASE_SECONDS="3",  # a round a second
    )
    env.update(extra)
    return env


class TerminalProcess:
    """`cdcsync run ...` with its stderr on a pseudo-terminal, as when a person starts it in a shell."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        controller, terminal = os.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cdcsync.entrypoints.cli", *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=terminal,
        )
        os.close(terminal)
        self._screen = controller
        self.text = ""

    def read(self, timeout: float = 0.2) -> str:
        """Everything the terminal showed so far (pty line endings as \\n)."""
        import select  # noqa: PLC0415 - only this helper waits on a file descriptor

        while select.select([self._screen], [], [], timeout)[0]:
            try:
                chunk = os.read(self._screen, 65536)
            except OSError:  # EIO: the process closed its side of the terminal
                break
            if not chunk:
                break
            self.text += chunk.decode().replace("\r\n", "\n")
        return self.text

    def wait_for(self, pattern: str, seconds: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + seconds
        while (found := re.search(pattern, self.read(), re.MULTILINE)) is None:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"{pattern!r} not shown; the terminal shows:\n{self.read()}")
        return found

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._screen)


@pytest.fixture
def terminal_worker(tmp_path: Path) -> Iterator[Callable[..., TerminalProcess]]:
    started: list[TerminalProcess] = []

    def start(env: dict[str, str], *args: str) -> TerminalProcess:
        process = TerminalProcess(["run", *args], env, tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


TEXT_LINE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR) cdcsync\.[\w.]+: "


def test_worker_process_at_terminal_logs_text_and_the_metrics_port_bound(
    table: str, make_settings: Callable[..., Settings], terminal_worker: Callable[..., TerminalProcess]
) -> None:
    # GIVEN `cdcsync run` started at a terminal, CDCSYNC_LOG_FORMAT unset, on any free metrics port
    worker = terminal_worker(worker_env(make_settings(), CDCSYNC_METRICS_ADDR="127.0.0.1:0"))
    # WHEN it starts THEN it says, in text, which port it bound, and that port answers
    shown = worker.wait_for(TEXT_LINE + rf"syncing {table}; metrics on http://127\.0\.0\.1:(\d+)/metrics$")
    port = int(shown.group(2))
    assert port != 0
    eventually(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200)
    # AND every line it wrote is a text line
    worker.process.send_signal(signal.SIGINT)
    assert worker.process.wait(timeout=30) == 0
    lines = worker.read().splitlines()
    assert lines
    assert all(re.match(TEXT_LINE, line) for line in lines), lines


def test_worker_process_piped_logs_json(
    table: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # GIVEN `cdcsync run` with stderr on a pipe (a container's log collector), format unset
    process = subprocess.Popen(
        [sys.executable, "-m", "cdcsync.entrypoints.cli", "run"],
        env=worker_env(make_settings()),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = json.loads(process.stderr.readline())
        # THEN its lines are JSON objects
        assert first["logger"] == "cdcsync.entrypoints.worker"
        assert first["message"].startswith(f"syncing {table}; metrics on http://127.0.0.1:")
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
        assert [json.loads(line)["level"] for line in rest.splitlines()]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.fixture
def streamless_table(
    dynamodb: Any, unique_name: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A table created without a stream (moto cannot enable one again once disabled)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    name = f"Plain-{unique_name}"
    create_users_table(dynamodb, name)
    return name


def streamless_settings(
    make_settings: Callable[..., Settings], table: str, index: str, tmp_path: Path
) -> Settings:
    mapping = tmp_path / "plain.yaml"
    mapping.write_text(f'table: {table}\nindex: {index}\nid: "{{UserId}}"\n')
    return make_settings(mappings=mapping)


def test_worker_process_table_without_stream_says_so_once_and_exits_2(
    streamless_table: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # GIVEN a mapped table without a stream
    table = streamless_table
    settings = streamless_settings(make_settings, table, "plain", tmp_path)
    # WHEN the worker is started
    done = subprocess.run(
        [sys.executable, "-m", "cdcsync.entrypoints.cli", "run"],
        env=worker_env(settings, CDCSYNC_LOG_FORMAT="text"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # THEN it says once how to enable the stream, and exits 2 (a configuration error)
    assert done.returncode == 2, done.stderr
    message = (
        f"table {table} has no enabled stream; enable one with NEW_AND_OLD_IMAGES: "
        f"aws dynamodb update-table --table-name {table} "
        "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES "
        "(or start the worker with --wait-for-stream)"
    )
    assert done.stderr.splitlines()[-1] == f"cdcsync: {message}"
    assert done.stderr.count("has no enabled stream") == 1
    assert "Traceback" not in done.stderr


def test_worker_process_wait_for_stream_syncs_once_the_stream_is_enabled(
    dynamodb: Any,
    streamless_table: str,
    unique_name: str,
    opensearch: OpenSearch,
    make_settings: Callable[..., Settings],
    terminal_worker: Callable[..., TerminalProcess],
    tmp_path: Path,
) -> None:
    # GIVEN a worker told to wait for the table's stream
    table = streamless_table
    settings = streamless_settings(make_settings, table, unique_name, tmp_path)
    worker = terminal_worker(worker_env(settings), "--wait-for-stream")
    # THEN it says once what it waits for
    worker.wait_for(
        rf"WARNING cdcsync\.worker\.coordinator: cannot coordinate table {table}: "
        rf"table {table} has no enabled stream; .*; trying again every round table={table}$"
    )
    # WHEN the stream is enabled and an item written
    dynamodb.update_table(
        TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    )
    put(dynamodb, table, 1, "ada")
    # THEN the item is synced, and the wait was reported once
    eventually(lambda: "1" in docs(opensearch, unique_name), 30)
    worker.wait_for(rf"INFO cdcsync\.worker\.coordinator: table {table}: coordinating again")
    assert worker.process.poll() is None
    assert worker.read().count("has no enabled stream") == 1


@pytest.mark.parametrize("store", ["file", "dynamodb"])
def test_worker_process_checkpoint_of_a_recreated_tables_old_stream_is_reported_and_ignored(
    dynamodb: Any,
    table: str,
    unique_name: str,
    opensearch: OpenSearch,
    make_settings: Callable[..., Settings],
    terminal_worker: Callable[..., TerminalProcess],
    store: str,
) -> None:
    # GIVEN a worker that synced the table and stopped, leaving a checkpoint in its stream
    checkpoints = {"dynamodb": f"dynamodb://{unique_name}-leases"}.get(store)
    settings = make_settings(**({"checkpoints": checkpoints} if checkpoints else {}))
    first = terminal_worker(worker_env(settings))
    put(dynamodb, table, 1, "ada")
    eventually(lambda: "1" in docs(opensearch, unique_name), 30)
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=30) == 0
    old_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    # WHEN the table is deleted and created again (a new stream, whose shard ids may repeat the old's)
    dynamodb.delete_table(TableName=table)
    time.sleep(1.1)  # a new stream label (the creation second)
    create_users_table(dynamodb, table, stream_view="NEW_AND_OLD_IMAGES")
    new_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    assert new_arn != old_arn
    # AND the worker is started again and an item written
    again = terminal_worker(worker_env(settings))
    put(dynamodb, table, 2, "grace")
    # THEN the old checkpoint is reported once and ignored: the new stream is read and synced
    eventually(lambda: "2" in docs(opensearch, unique_name), 30)
    again.wait_for(
        rf"WARNING cdcsync\.worker\.old_streams: table {table}: ignoring the checkpoints of 1 unfinished "
        rf"shard of stream {re.escape(old_arn)}, which is not the table's stream now "
        rf"\({re.escape(new_arn)}\): "
        r"the table was recreated after that stream was created; what was not read from it "
        rf"is not synced \(compare with: cdcsync verify --table {table}\)"
    )
    assert again.read().count("ignoring the checkpoints") == 1


def test_worker_running_pages_are_written_with_older_generations_paced_and_restored_after(
    dynamodb: Any,
    table: str,
    unique_name: str,
    opensearch: OpenSearch,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], Coordinator],
) -> None:
    # GIVEN a process whose collector is on and nothing frozen, as every process starts (a Lambda
    # test of this run may have frozen its heap)
    gc.unfreeze()
    assert gc.isenabled()
    thresholds = gc.get_threshold()
    # WHEN a worker syncs a change
    worker = start_worker(make_settings())
    put(dynamodb, table, 1, "ada")
    eventually(lambda: "1" in docs(opensearch, unique_name))
    # THEN while it runs, only the young generation is collected automatically and the heap of
    # before is frozen (garbage.py: the collector walked every page in flight again and again,
    # half a worker's CPU on the rig)
    assert gc.get_threshold() == (YOUNG, NEVER, NEVER)
    assert gc.get_freeze_count() > 0
    # AND once it stops, the collector is back as it was: its thresholds, nothing frozen
    worker.stopping.set()
    eventually(lambda: gc.get_threshold() == thresholds, 30)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
