"""``cdcsync run --processes 2`` as a real process group against moto's streams and the local OpenSearch.

moto gives every table one shard, and every stream the same shard ids: two tables whose names hash
to different processes give each process a shard of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from cdcsync.worker.partition import Partition
from tests.integration.test_worker import docs, eventually, put
from tests.support.servers import free_port
from tests.support.tables import create_users_table


def _create_table(dynamodb: Any, name: str) -> str:
    create_users_table(dynamodb, name, stream_view="NEW_AND_OLD_IMAGES")
    return name


def _shard_id(dynamodb: Any, dynamodbstreams: Any, table: str) -> str:
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    return str(dynamodbstreams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"])


@pytest.fixture
def tables(dynamodb: Any, dynamodbstreams: Any, unique_name: str) -> list[str]:
    """Two tables whose one shard each belongs to process 1/2 and 2/2 respectively."""
    first = _create_table(dynamodb, f"Users-{unique_name}-0")
    shard = _shard_id(dynamodb, dynamodbstreams, first)
    chosen = {Partition(0, 2).owns(first, shard): first}
    for n in range(1, 40):
        name = f"Users-{unique_name}-{n}"
        side = Partition(0, 2).owns(name, shard)
        if side not in chosen:
            chosen[side] = _create_table(dynamodb, name)
            assert _shard_id(dynamodb, dynamodbstreams, name) == shard  # moto repeats shard ids
            break
    return [chosen[True], chosen[False]]  # process 1/2's table, then process 2/2's


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
def group(
    tmp_path: Path, tables: list[str], unique_name: str, opensearch_url: str, moto_endpoint: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    folder = tmp_path / "mappings"
    folder.mkdir()
    for n, table in enumerate(tables):
        (folder / f"t{n}.yaml").write_text(f'table: {table}\nindex: {unique_name}-{n}\nid: "{{UserId}}"\n')
    port = free_port()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "CDCSYNC_MAPPINGS": str(folder),
        "CDCSYNC_OPENSEARCH_URL": opensearch_url,
        "CDCSYNC_DLQ": f"file://{tmp_path / 'dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": f"file://{tmp_path / 'checkpoints.json'}",
        "CDCSYNC_METRICS_ADDR": f"127.0.0.1:{port}",
        "CDCSYNC_LEASE_SECONDS": "3",  # a round a second
        "CDCSYNC_LOG_FORMAT": "text",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cdcsync.entrypoints.cli", "run", "--processes", "2"],
            env=env,
            cwd=tmp_path,
            stderr=stderr,
        )
    try:
        yield process, log, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for pid in re.findall(r"started process \d/2 \(pid (\d+)\)", log.read_text()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _pids(log: Path) -> dict[int, list[int]]:
    """Per process number, the pids it ran as, in order."""
    found: dict[int, list[int]] = {}
    for number, pid in re.findall(r"started process (\d)/2 \(pid (\d+)\)", log.read_text()):
        found.setdefault(int(number), []).append(int(pid))
    return found


def _owner_pids(tmp_path: Path, tables: list[str]) -> list[int | None]:
    """Per table, the pid in the owner of its lease (the process that last checkpointed it)."""
    try:
        leases = json.loads((tmp_path / "checkpoints.json").read_text())["leases"]
    except (OSError, ValueError):
        return [None for _ in tables]
    owners: list[int | None] = []
    for table in tables:
        owner = next(
            (lease.get("owner") for key, lease in leases.items() if key.startswith(f"{table}|")), None
        )
        owners.append(int(owner.rsplit("-", 2)[1]) if owner else None)
    return owners


def test_worker_processes_split_shards_restart_a_killed_process_and_converge(
    dynamodb: Any,
    tables: list[str],
    unique_name: str,
    opensearch: OpenSearch,
    group: tuple[subprocess.Popen[bytes], Path, int],
    tmp_path: Path,
) -> None:
    process, log, port = group
    base = f"http://127.0.0.1:{port}"
    # GIVEN `run --processes 2` over two tables, each with one shard that hashes to another process
    for user_id in range(1, 6):
        for table in tables:
            put(dynamodb, table, user_id, f"user{user_id}")
    expected = {str(n) for n in range(1, 6)}
    eventually(lambda: all(set(docs(opensearch, f"{unique_name}-{n}")) == expected for n in range(2)), 60)
    # THEN the group is ready on one endpoint, and each shard is read by exactly one process: its own
    eventually(lambda: _get(f"{base}/readyz")[0] == 200, 30)
    status, metrics = _get(f"{base}/metrics")
    assert status == 200
    for table in tables:
        assert f'cdcsync_shards_owned{{table="{table}"}} 1.0' in metrics
    assert "cdcsync_worker_process_restarts_total 0.0" in metrics
    pids = _pids(log)
    assert sorted(pids) == [1, 2]
    eventually(lambda: _owner_pids(tmp_path, tables) == [pids[1][0], pids[2][0]])
    assert _get(f"{base}/healthz")[0] == 200

    # WHEN process 1/2 is killed with SIGKILL, and both tables change meanwhile
    killed = pids[1][0]
    os.kill(killed, signal.SIGKILL)
    for table in tables:
        for user_id in range(6, 11):
            put(dynamodb, table, user_id, f"user{user_id}")
        dynamodb.delete_item(TableName=table, Key={"UserId": {"N": "3"}})
    # THEN the supervisor says so and starts it again; the new process reads the same shard on
    expected = {str(n) for n in range(1, 11)} - {"3"}
    eventually(lambda: len(_pids(log).get(1, [])) == 2, 30)
    assert re.search(
        rf"process 1/2 \(pid {killed}\) ended unexpectedly \(killed by SIGKILL\); starting it again in 1 s",
        log.read_text(),
    )
    eventually(lambda: all(set(docs(opensearch, f"{unique_name}-{n}")) == expected for n in range(2)), 60)
    restarted = _pids(log)[1][1]
    eventually(lambda: _owner_pids(tmp_path, tables) == [restarted, pids[2][0]])
    eventually(lambda: "cdcsync_worker_process_restarts_total 1.0" in _get(f"{base}/metrics")[1], 10)
    assert process.poll() is None

    # WHEN the supervisor gets SIGTERM THEN every process stops cleanly, and so does the group (exit 0)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=45) == 0
    assert time.monotonic() - started < 40
    for pid in (restarted, pids[2][0]):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    text = log.read_text()
    assert "received SIGTERM: stopping the 2 worker processes (each finishes its in-flight writes)" in text
    assert "stopped (exit 0)" in text


def test_worker_processes_supervisor_killed_its_processes_stop(
    group: tuple[subprocess.Popen[bytes], Path, int],
) -> None:
    process, log, port = group
    # GIVEN a running group
    eventually(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60)
    children = [pids[0] for pids in _pids(log).values()]
    assert len(children) == 2
    # WHEN its supervisor is killed with SIGKILL (nothing can pass a signal on)
    process.kill()
    process.wait(timeout=10)

    # THEN each process notices it is orphaned, finishes its writes and exits
    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    eventually(lambda: all(gone(pid) for pid in children), 40)
    assert log.read_text().count("is gone: finishing in-flight writes, then exiting") == 2


def test_worker_processes_table_without_stream_stops_the_group_with_exit_2(
    dynamodb: Any, unique_name: str, opensearch_url: str, moto_endpoint: str, tmp_path: Path
) -> None:
    # GIVEN a mapped table without a stream
    table = f"Plain-{unique_name}"
    create_users_table(dynamodb, table)
    (tmp_path / "plain.yaml").write_text(f'table: {table}\nindex: {unique_name}\nid: "{{UserId}}"\n')
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "CDCSYNC_MAPPINGS": str(tmp_path / "plain.yaml"),
        "CDCSYNC_OPENSEARCH_URL": opensearch_url,
        "CDCSYNC_DLQ": f"file://{tmp_path / 'dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": f"file://{tmp_path / 'checkpoints.json'}",
        "CDCSYNC_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        "CDCSYNC_WORKER_PROCESSES": "2",  # the setting, instead of --processes
        "CDCSYNC_LOG_FORMAT": "text",
    }
    # WHEN the group starts THEN a process stops on the configuration error, and the group exits 2
    done = subprocess.run(
        [sys.executable, "-m", "cdcsync.entrypoints.cli", "run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=90,
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert re.search(
        r"process [12]/2 \(pid \d+\) stopped on a configuration error \(exit 2; its log says why\): "
        r"stopping every process",
        stderr,
    )
    assert f"table {table} has no enabled stream; enable one with NEW_AND_OLD_IMAGES" in stderr
    assert "stopped (exit 2)" in stderr
