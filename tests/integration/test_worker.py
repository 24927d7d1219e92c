"""The container worker against moto's DynamoDB Streams and the local OpenSearch, over HTTP."""

from __future__ import annotations

import json
import os
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
from cdcsync.settings import Settings, load_settings
from cdcsync.worker.coordinator import Coordinator
from cdcsync.worker.http import MetricsServer
from tests.support.fault_proxy import fault_proxy
from tests.support.servers import free_port

ROOT = Path(__file__).parents[2]


@pytest.fixture
def table(dynamodb: Any, unique_name: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    name = f"Users-{unique_name}"
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "UserId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "UserId", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
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
    server = MetricsServer(("127.0.0.1", port), worker.metrics.registry, worker.health, stuck_after=5)  # type: ignore[attr-defined]
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
    dynamodb.create_table(
        TableName=orders,
        KeySchema=[{"AttributeName": "UserId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "UserId", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
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
    server = MetricsServer(("127.0.0.1", port), worker.metrics.registry, worker.health, stuck_after=5)  # type: ignore[attr-defined]
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
