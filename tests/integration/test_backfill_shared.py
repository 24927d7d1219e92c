"""``cdcsync backfill --run-id``: real processes sharing one run over moto and the local OpenSearch server.

DynamoDB calls of the processes go through a forwarding proxy in front of moto (``fault_proxy`` with
no faults), and their bulk writes through one in front of OpenSearch, so the test counts every Scan
(segment and start key) and every written action.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from cdcsync.backfill import BackfillStoppedError, run_backfill
from cdcsync.backfill.run import build_pipeline
from cdcsync.backfill.units import Unit
from cdcsync.checkpoint import LeaseStore
from cdcsync.checkpoint.open import open_lease_store
from cdcsync.metrics import NullMetrics
from cdcsync.settings import DynamoDbTarget, load_settings
from cdcsync.versions import backfill_version, read_version
from tests.integration.test_backfill import (
    SCAN_START_MS,
    World,
    doc_id,
    items_world,
    sample_item,
    write_export,
)
from tests.support.fault_proxy import FaultProxy, fault_proxy

ITEMS = 2400
SEGMENTS = 6
PAGE = 50
RUN = "run-1"
# Short enough for a quick takeover, long enough that a process on this busy 2-core machine renews
# in time (a lapse would make a live owner's unit look dead and be read twice, failing the count).
LEASE = 5


@pytest.fixture(params=["dynamodb", "file"])
def shared(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    unique_name: str,
    dynamodb: Any,
    opensearch: Any,
    opensearch_url: str,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    store = f"dynamodb://leases-{unique_name}" if request.param == "dynamodb" else None
    with items_world(
        tmp_path, unique_name, dynamodb, opensearch, opensearch_url, checkpoints=store, lease_seconds=LEASE
    ) as made:
        yield made


def store_of(world: World, worker: str = "test") -> LeaseStore:
    return open_lease_store(world.settings.checkpoint_target, worker_id=worker, lease_seconds=LEASE)


def units_of(store: LeaseStore, run: str = RUN) -> list[Unit]:
    return [Unit.of(record) for record in store.load_records(f"backfill-unit|{run}|")]


def scans(proxy: FaultProxy, table: str) -> list[tuple[int, str | None]]:
    """(segment, ExclusiveStartKey as JSON) of every Scan of ``table`` the processes sent."""
    found = []
    for _, _, body in proxy.requests:
        request = json.loads(body or b"{}")
        if request.get("TableName") == table and "Segment" in request:
            start = request.get("ExclusiveStartKey")
            found.append((request["Segment"], json.dumps(start, sort_keys=True) if start else None))
    return found


def written_ids(proxy: FaultProxy, index: str) -> list[str]:
    """The document id of every index action of ``index`` the processes sent."""
    ids = []
    for _, path, body in proxy.requests:
        if "/_bulk" not in path:
            continue
        for line in body.decode().splitlines():
            action = json.loads(line)
            meta = action.get("index")
            if isinstance(meta, dict) and "_id" in meta and path.startswith(f"/{index}/"):
                ids.append(meta["_id"])
    return ids


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "cdcsync.entrypoints.cli", *args],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_backfill_three_processes_one_killed_mid_unit_converge_with_each_unit_done_once(
    shared: World, moto_endpoint: str
) -> None:
    world = shared
    items = [sample_item(number) for number in range(ITEMS)]
    world.load(items)
    store = store_of(world)  # creates the lease table before the processes race for it
    with fault_proxy(moto_endpoint) as aws, fault_proxy(world.opensearch_url) as search:
        env = process_env(world, moto_endpoint, aws.url, search.url)
        command = [sys.executable, "-m", "cdcsync.entrypoints.cli", "backfill", "--table", world.table,
                   "--run-id", RUN, "--segments", str(SEGMENTS), "--page-items", str(PAGE),
                   "--workers", "2"]  # fmt: skip

        def start(name: str) -> subprocess.Popen[bytes]:
            with (world.tmp / f"{name}.log").open("w") as log:  # the child keeps its own descriptor
                return subprocess.Popen(command, env=env, cwd=world.tmp, stdout=log, stderr=subprocess.STDOUT)

        # GIVEN three processes joining one run of 6 segments, 50 items a page
        victim, others = start("a"), [start("b"), start("c")]
        victim_id = f"backfill-{socket.gethostname()}-{victim.pid}"
        try:
            # WHEN the first is frozen right after a page checkpoint of its own, then killed (a
            # process frozen holding the file store's flock would block the status: killed at once)
            wait_for(
                lambda: any(u.owner == victim_id and u.pages and not u.done for u in units_of(store)),
                timeout=120, what="a page checkpoint of the first process",
            )  # fmt: skip
            status = None
            if isinstance(world.settings.checkpoint_target, DynamoDbTarget):
                victim.send_signal(signal.SIGSTOP)
                held = {u.number: u for u in units_of(store) if u.owner == victim_id and not u.done}
                status = run_cli(env, "backfill", "--status", "--run-id", RUN)
            victim.kill()
            victim.wait(timeout=30)
            if status is None:
                held = {u.number: u for u in units_of(store) if u.owner == victim_id and not u.done}
            codes = [process.wait(timeout=240) for process in others]
        finally:
            for process in (victim, *others):
                if process.poll() is None:
                    process.kill()
                    process.wait()
        logs = {name: (world.tmp / f"{name}.log").read_text() for name in "abc"}
        # THEN the others finish the run, the killed process's units included (exit 0)
        assert codes == [0, 0], logs
        assert held, "the killed process held no unit"
        assert any(f"(expired, owner {victim_id})" in text for text in (logs["b"], logs["c"])), logs
        # AND the status of the frozen moment showed its units in progress, with their owner
        for number in held if status is not None else ():
            assert status is not None
            assert status.returncode == 0, status.stderr
            assert re.search(
                rf"^  unit {number}: {victim_id}, claimed \S+ ago, last written", status.stdout, re.M
            )
        # AND no page was scanned twice, except each killed unit's page after its last checkpoint
        counted = Counter(scans(aws, world.table))
        twice = {scan: n for scan, n in counted.items() if n > 1}
        allowed = {
            (n, json.dumps(u.position["next_key"], sort_keys=True) if u.position else None)
            for n, u in held.items()
        }
        assert set(twice) <= allowed, (twice, logs)
        assert all(n == 2 for n in twice.values()), (twice, logs)
        # AND every item was written, only those pages' items more than once
        ids = Counter(written_ids(search, world.index))
        assert set(ids) == {doc_id(item) for item in items}
        assert sum(ids.values()) - ITEMS <= PAGE * len(twice), (sum(ids.values()), logs)
    # AND the index converged to the table, at the run's one version, and the status says so
    env.pop("AWS_ENDPOINT_URL_DYNAMODB")  # the proxy is gone
    assert_converged(world, store, items, env)


def process_env(world: World, moto_endpoint: str, aws_url: str, search_url: str) -> dict[str, str]:
    """A process's environment: DynamoDB and OpenSearch through the counting proxies."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": aws_url,
        "CDCSYNC_MAPPINGS": str(world.tmp / "mappings.yaml"),
        "CDCSYNC_OPENSEARCH_URL": search_url,
        "CDCSYNC_DLQ": f"file://{world.tmp / 'dlq.jsonl'}",
        "CDCSYNC_CHECKPOINTS": world.settings.checkpoints,
        "CDCSYNC_LEASE_SECONDS": str(LEASE),
    }


def assert_converged(
    world: World,
    store: LeaseStore,
    items: list[dict[str, Any]],
    env: dict[str, str],
    segments: int = SEGMENTS,
) -> None:
    """Every item's document as a stream INSERT builds it, at the run's version; the run finished."""
    documents = world.documents()
    assert len(documents) == len(items)
    run = store.load_records(f"backfill-run|{RUN}")[0].value
    for item in items:
        source, version = documents[doc_id(item)]
        assert source == world.stream_document(item)
        assert version == run["version_ms"]
    status = run_cli(env, "backfill", "--status", "--run-id", RUN, "--table", world.table, "--json")
    final = json.loads(status.stdout)
    counts = (final["done"], final["in_progress"], final["remaining"], final["items"], final["finished"])
    assert counts == (segments, [], 0, len(items), True)


@pytest.mark.parametrize(
    "apply_at_page", [0, 3], ids=["changes-before-most-pages", "changes-after-most-pages"]
)
def test_backfill_run_racing_stream_changes_converges_to_the_changes(
    shared: World, apply_at_page: int
) -> None:
    # GIVEN 100 items, and stream updates and deletes made after the run's scan started, applied
    # between two pages of a process that joined the run
    world = shared
    items = [sample_item(number) for number in range(100)]
    world.load(items)
    pipeline = build_pipeline(world.settings, world.table, session=boto3.Session(), metrics=NullMetrics())
    stream_seconds = SCAN_START_MS // 1000
    updated = {number: {**items[number], "Flag": "changed"} for number in range(0, 100, 3)}
    deleted = set(range(1, 100, 7))
    records = [world.stream_record("MODIFY", item, stream_seconds, n) for n, item in updated.items()]
    records += [world.stream_record("REMOVE", items[n], stream_seconds, 1000 + n) for n in deleted]

    def stream_meanwhile(_unit: int, page: int) -> None:
        if page == apply_at_page:
            assert pipeline.process(records).ok

    # WHEN the run (one segment, 15-item pages) is done by this process with the changes in between
    report = run_backfill(world.settings, world.table, run_id="race", segments=1, page_items=15,
                          session=boto3.Session(), on_page=stream_meanwhile,
                          wall_ms=lambda: SCAN_START_MS)  # fmt: skip
    # THEN the index holds the changed items, without the deleted ones, and the rest at the run's version
    assert (report.finished, report.items_read) == (True, 100)
    documents = world.documents()
    for number, item in enumerate(items):
        found = documents.get(doc_id(item))
        if number in deleted:
            assert found is None, number
        elif number in updated:
            assert found is not None, number
            assert found[0] == world.stream_document(updated[number]), number
        else:
            assert found == (world.stream_document(item), backfill_version(SCAN_START_MS)), number


def test_backfill_run_process_told_to_stop_releases_its_units_and_exits_1(
    shared: World, moto_endpoint: str
) -> None:
    # GIVEN one process of a run of 2 segments, 20 items a page, after its first page checkpoint
    world = shared
    items = [sample_item(number) for number in range(400)]
    world.load(items)
    store = store_of(world)
    env = process_env(world, moto_endpoint, moto_endpoint, world.opensearch_url)
    command = [sys.executable, "-m", "cdcsync.entrypoints.cli", "backfill", "--table", world.table,
               "--run-id", RUN, "--segments", "2", "--page-items", "20", "--workers", "1"]  # fmt: skip
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_id = f"backfill-{socket.gethostname()}-{first.pid}"
    try:
        wait_for(lambda: any(u.owner == first_id and u.pages for u in units_of(store)), 120, "a checkpoint")
        # WHEN it gets SIGTERM (Kubernetes stopping the pod)
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # THEN it finishes its page, gives its unit back with the position kept, and exits 1
    assert first.returncode == 1, err
    assert "received SIGTERM: finishing the pages in flight, then releasing the units" in err
    assert f"units of run {RUN} left; run the command again" in err
    units = units_of(store)
    assert all(unit.owner is None or unit.done for unit in units), units
    assert any(unit.position and not unit.done for unit in units), units
    # AND another process takes the unit at once (it was released) and finishes the run
    second = run_cli(env, *command[3:])
    assert second.returncode == 0, second.stderr
    assert "(free) at page" in second.stderr
    assert "waiting" not in second.stderr
    assert_converged(world, store, items, env, segments=2)


class SimulatedCrashError(RuntimeError):
    """A failure in the middle of a unit."""


def test_backfill_run_from_export_resumes_a_data_file_after_its_written_lines(
    shared: World, s3: Any, unique_name: str
) -> None:
    # GIVEN an export of 300 items in 2 data files, 30 s old, and a process of a run over it that
    # fails after its second page (40 lines a page) of the first file it took
    items = [sample_item(number) for number in range(300)]
    url = write_export(s3, unique_name, shared.table, items, "2026-01-01T00:00:00.000Z")
    pages: list[tuple[int, int]] = []

    def fail_on_second_page(unit: int, page: int) -> None:
        pages.append((unit, page))
        if len(pages) == 2:
            raise SimulatedCrashError("killed")

    def join(on_page: Any = None) -> Any:
        return run_backfill(shared.settings, shared.table, run_id="exp", from_export=url, workers=1,
                            page_items=40, session=boto3.Session(), on_page=on_page,
                            wall_ms=lambda: SCAN_START_MS + 30_000)  # fmt: skip

    with pytest.raises(BackfillStoppedError, match="run it again with --run-id exp"):
        join(fail_on_second_page)
    stopped = {unit.number: unit for unit in units_of(store_of(shared), "exp")}
    # WHEN another process joins the run
    report = join()
    # THEN it loads only what is left: that file from its 81st line, and the other file
    (first_unit, _), _ = pages
    assert stopped[first_unit].position == {"items_done": 80}
    assert (report.finished, report.items_read) == (True, 300 - 80)
    documents = shared.documents()
    assert len(documents) == 300
    for item in items:
        assert documents[doc_id(item)] == (shared.stream_document(item), read_version(SCAN_START_MS))


def test_backfill_run_page_failing_past_retries_says_join_the_run_again_not_resume(
    shared: World, unique_name: str
) -> None:
    # GIVEN a run whose OpenSearch keeps answering _bulk with 503, and no retries left to wait for
    items = [sample_item(number) for number in range(10)]
    shared.load(items)
    with fault_proxy(shared.opensearch_url) as search:
        search.fail(times=1000, status=503)
        settings = load_settings(
            mappings=shared.tmp / "mappings.yaml", opensearch_url=search.url,
            dlq=f"file://{shared.tmp / 'dlq.jsonl'}", checkpoints=shared.settings.checkpoints,
            lease_seconds=LEASE, max_retries=0, retry_max_seconds=0.2, _env_file=None,
        )  # fmt: skip
        # WHEN a process of the run gives up on its page
        with pytest.raises(BackfillStoppedError) as stopped:
            run_backfill(settings, shared.table, run_id="down", segments=1, workers=1,
                         session=boto3.Session(), sleep=lambda _: None)  # fmt: skip
    # THEN its one line says how to continue this run (--resume is refused with --run-id)
    message = str(stopped.value)
    assert "--resume" not in message
    assert message.endswith("the unit's checkpoint is before this page: fix OpenSearch, then join run "
                            "down again (--run-id down)")  # fmt: skip
