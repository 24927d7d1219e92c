"""A paused lease owner never writes after the new owner wrote (moto lease table, local OpenSearch).

Two workers share a ``dynamodb://`` lease table on their real monotonic clocks, with a 5 s lease.
A owns the shard and is paused (deterministically, in-process: the moment a SIGSTOP, GC pause or
VM freeze would hit) while it holds an old image of item 1; B takes the expired lease and writes
the item's newer image. Both images carry the same whole-second stream time, so an ``external_gte``
write of A's older image after B's would be applied: only the lease rules keep it out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from opensearchpy import OpenSearch

from cdcsync.checkpoint import Lease, ShardInfo
from cdcsync.checkpoint.dynamodb import DynamoDbLeaseStore
from cdcsync.checkpoint.open import open_lease_store
from cdcsync.dlq.file import FileDeadLetterQueue
from cdcsync.metrics import NullMetrics
from cdcsync.pipeline import Pipeline
from cdcsync.settings import DynamoDbTarget, load_settings
from cdcsync.sink.bulk import BulkWriter, RetryBudget
from cdcsync.sink.client import build_client
from cdcsync.source.items import ItemReader
from cdcsync.source.streams import ShardBatch
from cdcsync.worker.shard_loop import ShardLoop
from tests.support.fault_proxy import FaultProxy, fault_proxy
from tests.support.records import compiled, mapping_set, stream_record
from tests.support.tables import create_users_table

LEASE_SECONDS = 5.0  # leaves a round 3.5 s to fail its first request under load before the pause
SECOND = 1_714_566_600  # both records' ApproximateCreationDateTime: one whole second
PAUSE_POINTS = ["after GetRecords", "after the KEYS_ONLY item read", "in a retry's backoff"]


class Pause:
    """Where A stops: ``hit()`` blocks the calling thread until the test resumes it."""

    def __init__(self) -> None:
        self.paused = threading.Event()
        self.resumed = threading.Event()
        self.armed = True

    def hit(self) -> None:
        if self.armed:
            self.armed = False
            self.paused.set()
            assert self.resumed.wait(30), "the test never resumed the paused owner"


class PageReader:
    """A shard that hands out one page again after every rewind (the ``ShardReader`` interface)."""

    def __init__(self, records: list[dict[str, Any]], on_read: Callable[[], None] = lambda: None) -> None:
        self.records = records
        self.on_read = on_read
        self.handed_out = False

    def pace(self) -> None:
        pass  # read() waits itself when there is nothing to hand out

    def read(self, limit: int | None = None) -> ShardBatch:
        if self.handed_out:
            time.sleep(0.05)
            return ShardBatch([], "open", 0.0)
        self.handed_out = True
        self.on_read()
        return ShardBatch(list(self.records), "open", 0.0)

    def rewind(self, sequence_number: str | None) -> None:
        self.handed_out = False


class PausingItemReader(ItemReader):
    """The real item reader; A pauses right after the read returned (holding the old image)."""

    pause: Pause | None = None

    def read(self, table: str, keys: Sequence[Mapping[str, Any]]) -> dict[bytes, dict[str, Any] | None]:
        found = super().read(table, keys)
        if self.pause is not None:
            self.pause.hit()
        return found


@pytest.fixture(autouse=True)
def _boto3_endpoint(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)


@pytest.fixture
def proxy(opensearch_url: str) -> Iterator[FaultProxy]:
    with fault_proxy(opensearch_url) as running:
        yield running


def _records(table: str, view: str) -> list[dict[str, Any]]:
    """Item 1 named "old", then renamed "new", in the same whole second."""
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2024-05-01T00:00:00.000"
    images = view != "KEYS_ONLY"
    return [
        stream_record(
            event,
            {"UserId": 1},
            {"UserId": 1, "Name": name} if images else None,
            seconds=SECOND,
            sequence=sequence,
            view=view,
            arn=arn,
        )
        for event, name, sequence in [("INSERT", "old", "101"), ("MODIFY", "new", "102")]
    ]


def _pipeline(
    url: str,
    table: str,
    index: str,
    dynamodb: Any,
    tmp_path: Path,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Pipeline:
    writer = BulkWriter(
        build_client(load_settings(opensearch_url=url, _env_file=None), timeout=10.0),
        NullMetrics(),
        budget=RetryBudget(max_retries=3, max_seconds=30.0, first_wait=0.01, longest_wait=0.05),
        request_timeout=10.0,
        sleep=sleep,
    )
    return Pipeline(
        mappings=mapping_set(compiled(table=table, index=index, id="{UserId}")),
        writer=writer,
        dead_letters=FileDeadLetterQueue(tmp_path / f"dlq-{id(writer)}.jsonl"),
        metrics=NullMetrics(),
        items=PausingItemReader(dynamodb),
    )


def _store(session: boto3.Session, lease_table: str, worker: str) -> DynamoDbLeaseStore:
    store = open_lease_store(
        DynamoDbTarget(lease_table), worker_id=worker, session=session, lease_seconds=LEASE_SECONDS
    )
    assert isinstance(store, DynamoDbLeaseStore)
    return store


@pytest.mark.parametrize("pause_at", PAUSE_POINTS)
def test_lease_paused_owner_does_not_write_after_the_new_owner_wrote(
    aws_session: boto3.Session,
    dynamodb: Any,
    unique_name: str,
    opensearch: OpenSearch,
    opensearch_url: str,
    proxy: FaultProxy,
    tmp_path: Path,
    pause_at: str,
) -> None:
    # GIVEN a table whose item 1 is named "old", and its shard's lease owned by worker A
    table = f"Users-{unique_name}"
    create_users_table(dynamodb, table)
    dynamodb.put_item(TableName=table, Item={"UserId": {"N": "1"}, "Name": {"S": "old"}})
    view = "KEYS_ONLY" if pause_at == "after the KEYS_ONLY item read" else "NEW_AND_OLD_IMAGES"
    records = _records(table, view)
    a, b = _store(aws_session, unique_name, "worker-a"), _store(aws_session, unique_name, "worker-b")
    arn = records[0]["eventSourceARN"]
    a.sync_shards(table, arn, [ShardInfo("shardId-1")])
    (lease_a,) = a.acquire(table, arn)
    b.leases(table, arn)  # B starts watching A's counter now
    # AND A has read item 1's first record (named "old") and is paused before writing it
    pause = Pause()
    pipeline_a = _pipeline(proxy.url, table, unique_name, dynamodb, tmp_path, sleep=lambda _: pause.hit())
    reader_a = PageReader(records[:1])
    if pause_at == "after GetRecords":
        reader_a.on_read = pause.hit
    elif pause_at == "after the KEYS_ONLY item read":
        assert isinstance(pipeline_a.items, PausingItemReader)
        pipeline_a.items.pause = pause
    else:
        proxy.fail(times=1, status=503, path="/_bulk")  # A's first attempt fails; it backs off
    loop_a = ShardLoop(lease_a, reader_a, pipeline_a, a, threading.Event())  # type: ignore[arg-type]
    loop_a.start()
    assert pause.paused.wait(10)
    # WHEN the item is renamed "new" and B, once A's counter stood still for the lease period,
    # takes the lease and writes both records
    dynamodb.put_item(TableName=table, Item={"UserId": {"N": "1"}, "Name": {"S": "new"}})
    taken: list[Lease] = []
    while not taken:
        time.sleep(0.2)
        taken = b.acquire(table, arn)
    pipeline_b = _pipeline(opensearch_url, table, unique_name, dynamodb, tmp_path)
    loop_b = ShardLoop(taken[0], PageReader(records), pipeline_b, b, threading.Event())  # type: ignore[arg-type]
    loop_b.start()
    deadline = time.monotonic() + 20
    while b.leases(table, arn)[0].checkpoint != "102":
        assert time.monotonic() < deadline, "B never wrote its page"
        time.sleep(0.1)
    loop_b.stopping.set()
    assert _name(opensearch, unique_name) == "new"
    # AND A resumes
    pause.resumed.set()
    assert loop_a.thread is not None
    loop_a.thread.join(15)
    # THEN A stopped without writing: the index keeps the newer image, as the table does
    assert loop_a.done
    assert _name(opensearch, unique_name) == "new"
    assert a.leases(table, arn)[0].checkpoint == "102"


def _name(opensearch: OpenSearch, index: str) -> str:
    opensearch.indices.refresh(index=index)
    return str(opensearch.get(index=index, id="1")["_source"]["Name"])
