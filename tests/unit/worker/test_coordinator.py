"""The coordinator with a stubbed stream (moto keeps one shard): lineage and ordering across a split."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cdcsync.checkpoint import Lease, ShardInfo
from cdcsync.checkpoint.file import FileLeaseStore
from cdcsync.metrics import NullMetrics, PrometheusMetrics
from cdcsync.pipeline import BatchResult
from cdcsync.worker.coordinator import Coordinator, Health

ARN = "arn:aws:dynamodb:us-east-1:1:table/Users/stream/2026"


class FakeDynamoDB:
    def describe_table(self, TableName: str) -> dict[str, Any]:  # noqa: N803 - boto3's spelling
        return {"Table": {"StreamSpecification": {"StreamEnabled": True}, "LatestStreamArn": ARN}}


class FakeStreams:
    """A stream whose parent shard was split: the parent is closed, the child is open."""

    def __init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self.records = {
            "parent": [self._record(f"1{n:03d}", now) for n in range(5)],
            "child": [self._record(f"2{n:03d}", now) for n in range(3)],
        }
        self.closed = {"parent"}

    @staticmethod
    def _record(sequence: str, at: dt.datetime) -> dict[str, Any]:
        return {
            "eventID": sequence,
            "eventName": "INSERT",
            "dynamodb": {
                "ApproximateCreationDateTime": at,
                "Keys": {"UserId": {"N": sequence}},
                "NewImage": {"UserId": {"N": sequence}},
                "SequenceNumber": sequence,
                "StreamViewType": "NEW_IMAGE",
            },
        }

    def describe_stream(self, **request: Any) -> dict[str, Any]:
        shards = [{"ShardId": "parent"}, {"ShardId": "child", "ParentShardId": "parent"}]
        return {"StreamDescription": {"Shards": shards}}

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        shard = request["ShardId"]
        start = 0
        if request["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER":
            sequences = [r["dynamodb"]["SequenceNumber"] for r in self.records[shard]]
            start = sequences.index(request["SequenceNumber"]) + 1
        return {"ShardIterator": f"{shard}:{start}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803
        shard, position = ShardIterator.split(":")
        records = self.records[shard][int(position) : int(position) + 2]
        end = int(position) + len(records)
        answer: dict[str, Any] = {"Records": records}
        if not (shard in self.closed and end == len(self.records[shard])):
            answer["NextShardIterator"] = f"{shard}:{end}"
        return answer


class RecordingPipeline:
    def __init__(self, store: FileLeaseStore) -> None:
        self.written: list[str] = []
        self.store = store
        self.child_started_with_parent_finished: bool | None = None

    def process(self, records: list[dict[str, Any]], **_: Any) -> BatchResult:
        for record in records:
            sequence = record["dynamodb"]["SequenceNumber"]
            if sequence.startswith("2") and self.child_started_with_parent_finished is None:
                parent = next(
                    lease for lease in self.store.leases("Users", ARN) if lease.shard_id == "parent"
                )
                self.child_started_with_parent_finished = parent.finished
            self.written.append(sequence)
        return BatchResult(size=len(records))


def test_coordinator_child_shard_waits_for_parent_to_finish(tmp_path: Path) -> None:
    # GIVEN a stream whose parent shard was split into a child
    store = FileLeaseStore(tmp_path / "checkpoints.json", worker_id="w1")
    pipeline = RecordingPipeline(store)
    streams = FakeStreams()
    coordinator = Coordinator(
        tables=("Users",),
        store=store,
        pipeline=pipeline,  # type: ignore[arg-type]
        metrics=NullMetrics(),
        dynamodb=FakeDynamoDB(),
        streams=streams,
        check_opensearch=lambda: True,
    )
    # WHEN the coordinator runs rounds until everything is written
    deadline = time.monotonic() + 10
    while len(pipeline.written) < 8 and time.monotonic() < deadline:
        coordinator.round()
        time.sleep(0.05)
    coordinator.shutdown()
    # THEN every parent record was written before any child record, in order, and the child
    # started only once the parent was read to its end and checkpointed as finished
    assert pipeline.written == [f"1{n:03d}" for n in range(5)] + [f"2{n:03d}" for n in range(3)]
    assert pipeline.child_started_with_parent_finished is True
    leases = {lease.shard_id: lease for lease in store.leases("Users", ARN)}
    assert leases["parent"].finished
    assert leases["child"].checkpoint == "2002"
    assert not leases["child"].finished


# --- outages, replaced streams, refused calls ----------------------------------------------------
# A stub of the DynamoDB and DynamoDB Streams clients that can hold several streams per table, forget
# a stream (ResourceNotFoundException) and refuse operations (AccessDeniedException), as AWS does.

OLD_ARN = "arn:aws:dynamodb:us-east-1:1:table/Users/stream/2026-01-01T00:00:00.000"
NEW_ARN = "arn:aws:dynamodb:us-east-1:1:table/Users/stream/2026-01-02T00:00:00.000"
ORDERS_ARN = "arn:aws:dynamodb:us-east-1:1:table/Orders/stream/2026-01-01T00:00:00.000"
TABLE_CREATED = dt.datetime(2025, 12, 31, tzinfo=dt.UTC)  # before every stream above


def label_time(arn: str) -> dt.datetime:
    """When a stream was created, as its ARN's label (an ISO 8601 UTC time) says; else the table's."""
    try:
        return dt.datetime.fromisoformat(arn.partition("/stream/")[2]).replace(tzinfo=dt.UTC)
    except ValueError:
        return TABLE_CREATED


def aws_error(code: str, operation: str) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": f"{code} happened"}}
    response["ResponseMetadata"] = {"HTTPStatusCode": 400}
    return ClientError(response, operation)


def record(sequence: str) -> dict[str, Any]:
    return FakeStreams._record(sequence, dt.datetime.now(dt.UTC))


@dataclass
class StubShard:
    records: list[dict[str, Any]]
    parent: str | None = None
    closed: bool = False


class StubAws:
    """DescribeTable, DescribeStream, GetShardIterator and GetRecords over in-memory streams."""

    def __init__(self) -> None:
        self.current: dict[str, str | None] = {}  # table -> its enabled stream's ARN (None: disabled)
        self.latest: dict[str, str] = {}  # table -> the last ARN it had (kept 24 h after disabling)
        self.created: dict[str, dt.datetime] = {}  # table -> CreationDateTime (default TABLE_CREATED)
        self.streams: dict[str, dict[str, StubShard]] = {}  # ARN -> shards, in DescribeStream order
        self.gone: set[str] = set()  # ARNs past their retention: every call on them is refused
        self.stale: set[str] = set()  # shards the next DescribeStream leaves out (a stale answer)
        self.denied: dict[str, str] = {}  # operation -> error code
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _call(self, operation: str, request: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((operation, request))
        if operation in self.denied:
            raise aws_error(self.denied[operation], operation)
        if request.get("StreamArn") in self.gone:
            raise aws_error("ResourceNotFoundException", operation)

    def requests(self, operation: str) -> list[dict[str, Any]]:
        with self._lock:
            return [request for name, request in self.calls if name == operation]

    def describe_table(self, TableName: str) -> dict[str, Any]:  # noqa: N803 - boto3's spelling
        self._call("DescribeTable", {"TableName": TableName})
        arn = self.current[TableName]
        created = self.created.get(TableName, TABLE_CREATED)
        if arn is None:  # disabled: not enabled
            return {"Table": {"LatestStreamArn": self.latest[TableName], "CreationDateTime": created}}
        self.latest[TableName] = arn
        return {
            "Table": {
                "StreamSpecification": {"StreamEnabled": True},
                "LatestStreamArn": arn,
                "CreationDateTime": created,
            }
        }

    def describe_stream(self, **request: Any) -> dict[str, Any]:
        self._call("DescribeStream", request)
        shards = [
            {"ShardId": shard_id, **({"ParentShardId": shard.parent} if shard.parent else {})}
            for shard_id, shard in self.streams[request["StreamArn"]].items()
            if shard_id not in self.stale
        ]
        self.stale.clear()
        arn = request["StreamArn"]
        label = arn.partition("/stream/")[2]
        description = {"StreamLabel": label, "CreationRequestDateTime": label_time(arn), "Shards": shards}
        return {"StreamDescription": description}

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        self._call("GetShardIterator", request)
        shard = self.streams[request["StreamArn"]][request["ShardId"]]
        start = 0
        if request["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER":
            sequences = [r["dynamodb"]["SequenceNumber"] for r in shard.records]
            start = sequences.index(request["SequenceNumber"]) + 1
        return {"ShardIterator": f"{request['StreamArn']}|{request['ShardId']}|{start}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803
        arn, shard_id, position = ShardIterator.split("|")
        self._call("GetRecords", {"StreamArn": arn, "ShardId": shard_id})
        shard = self.streams[arn][shard_id]
        records = shard.records[int(position) : int(position) + 2]
        end = int(position) + len(records)
        answer: dict[str, Any] = {"Records": records}
        if not (shard.closed and end == len(shard.records)):
            answer["NextShardIterator"] = f"{arn}|{shard_id}|{end}"
        return answer


class WritingPipeline:
    def __init__(self) -> None:
        self.written: list[str] = []

    def process(self, records: list[dict[str, Any]], **_: Any) -> BatchResult:
        self.written.extend(record["dynamodb"]["SequenceNumber"] for record in records)
        return BatchResult(size=len(records))


class Wall:
    """The coordinator's wall clock in epoch ms, moved by the test."""

    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


def make_coordinator(
    tmp_path: Path, aws: StubAws, tables: tuple[str, ...] = ("Users",), **fields: Any
) -> tuple[Coordinator, WritingPipeline, FileLeaseStore, PrometheusMetrics]:
    store = FileLeaseStore(tmp_path / "checkpoints.json", worker_id="w1")
    pipeline = WritingPipeline()
    metrics = PrometheusMetrics()
    coordinator = Coordinator(
        tables=tables,
        store=store,
        pipeline=pipeline,  # type: ignore[arg-type]
        metrics=metrics,
        dynamodb=aws,
        streams=aws,
        check_opensearch=lambda: True,
        **fields,
    )
    return coordinator, pipeline, store, metrics


def rounds_until(coordinator: Coordinator, check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            coordinator.shutdown()
            raise AssertionError("condition not met in time")
        coordinator.round()
        time.sleep(0.05)


def sample(metrics: PrometheusMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def leases_of(store: FileLeaseStore, arn: str = ARN) -> dict[str, Lease]:
    return {lease.shard_id: lease for lease in store.leases("Users", arn)}


def test_coordinator_leased_shard_trimmed_away_is_finished_and_its_child_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a worker that was down longer than the 24 h retention: it read the parent shard up to
    # 1001, and DescribeStream now lists only the child (the parent was trimmed away)
    aws = StubAws()
    aws.current["Users"] = ARN
    aws.streams[ARN] = {"child": StubShard([record(f"2{n:03d}") for n in range(3)], parent="parent")}
    coordinator, pipeline, store, metrics = make_coordinator(tmp_path, aws)
    store.sync_shards("Users", ARN, [ShardInfo("parent"), ShardInfo("child", ("parent",))])
    (parent,) = [lease for lease in store.acquire("Users", ARN) if lease.shard_id == "parent"]
    store.checkpoint(parent, "1001")
    # WHEN the worker coordinates again
    with caplog.at_level(logging.INFO):
        rounds_until(coordinator, lambda: len(pipeline.written) == 3)
        coordinator.round()
    coordinator.shutdown()
    # THEN the child is read, and the parent is finished where it stood
    assert pipeline.written == ["2000", "2001", "2002"]
    assert leases_of(store)["parent"].finished
    assert leases_of(store)["parent"].checkpoint == "1001"
    # AND the loss is counted once and told to the operator once, with what to do
    assert sample(metrics, "cdcsync_trimmed_data_total", table="Users", shard="parent") == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "Users shard parent: records after sequence number 1001 were trimmed by the stream's 24 h "
        "retention before they were read (the shard is no longer listed), so changes were lost; "
        'its child shards are read now. Run "cdcsync backfill --table Users" to load the items that '
        "changed meanwhile"
    ]


def test_coordinator_shard_missing_from_one_stale_listing_is_not_trimmed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a leased shard that is not read yet, and one DescribeStream answer that leaves it out
    aws = StubAws()
    aws.current["Users"] = ARN
    aws.streams[ARN] = {"new": StubShard([record("1000")])}
    aws.denied["GetShardIterator"] = "ThrottlingException"  # nothing of it is read yet
    coordinator, pipeline, store, metrics = make_coordinator(tmp_path, aws)
    rounds_until(coordinator, lambda: ("Users", "new") in coordinator.loops)
    coordinator.shutdown()
    aws.stale.add("new")
    del aws.denied["GetShardIterator"]
    # WHEN the worker coordinates
    with caplog.at_level(logging.ERROR):
        rounds_until(coordinator, lambda: pipeline.written == ["1000"])
    coordinator.shutdown()
    # THEN the shard is read, not finished as trimmed
    assert not leases_of(store)["new"].finished
    assert sample(metrics, "cdcsync_trimmed_data_total", table="Users", shard="new") is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_coordinator_shard_not_read_reports_rising_lag_not_zero(tmp_path: Path) -> None:
    # GIVEN a table with a stream whose only shard cannot be read (GetShardIterator refused), so no
    # shard loop of the table is running
    aws = StubAws()
    aws.current["Users"] = ARN
    aws.streams[ARN] = {"shard": StubShard([record("1000")])}
    aws.denied["GetShardIterator"] = "AccessDeniedException"
    wall = Wall()
    coordinator, _, _, metrics = make_coordinator(tmp_path, aws, wall_ms=wall)
    rounds_until(coordinator, lambda: bool(aws.requests("GetShardIterator")))
    coordinator.round()
    # WHEN time passes with nothing read
    wall.ms += 60_000
    coordinator.round()
    first = sample(metrics, "cdcsync_replication_lag_seconds", table="Users")
    wall.ms += 60_000
    coordinator.round()
    coordinator.shutdown()
    # THEN the shard's age and the table's lag rise with it instead of reading 0
    assert first is not None
    assert first >= 60
    assert sample(metrics, "cdcsync_replication_lag_seconds", table="Users") == first + 60
    assert sample(metrics, "cdcsync_iterator_age_seconds", table="Users", shard="shard") == first + 60


def test_coordinator_shard_access_denied_makes_worker_not_ready_with_one_error_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a worker whose IAM role lacks dynamodb:GetRecords
    aws = StubAws()
    aws.current["Users"] = ARN
    aws.streams[ARN] = {"shard": StubShard([record("1000")])}
    aws.denied["GetRecords"] = "AccessDeniedException"
    coordinator, pipeline, _, metrics = make_coordinator(tmp_path, aws)
    # WHEN it coordinates for several rounds
    with caplog.at_level(logging.INFO):
        rounds_until(coordinator, lambda: bool(aws.requests("GetRecords")))
        for _ in range(5):
            coordinator.round()
            time.sleep(0.05)
    coordinator.shutdown()
    # THEN the shard is not restarted every round, and nothing is written
    assert len(aws.requests("GetRecords")) == 1
    assert pipeline.written == []
    # AND one ERROR line names the missing permission, without a traceback or "unexpected"
    message = (
        f"GetRecords {ARN} shard shard: access denied (AccessDeniedException: AccessDeniedException "
        "happened); grant the worker's IAM role dynamodb:GetRecords on "
        "arn:aws:dynamodb:us-east-1:1:table/Users/stream/*"
    )
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        f"shard shard of table Users stopped: {message}; not ready until it is read again (next try in 300 s)"
    ]
    assert errors[0].exc_info is None
    assert not any("unexpected" in r.getMessage() for r in caplog.records)
    # AND /readyz says why the worker is not ready; the error is counted
    assert coordinator.health.readiness() == (
        False,
        f"dynamodb ok, opensearch ok\nshard shard of table Users: {message}\n",
    )
    assert sample(metrics, "cdcsync_worker_errors_total", table="Users", error="config") == 1


def test_coordinator_failed_shard_is_tried_again_later_and_ready_once_it_reads(tmp_path: Path) -> None:
    # GIVEN a shard that failed because GetRecords was denied
    aws = StubAws()
    aws.current["Users"] = ARN
    aws.streams[ARN] = {"shard": StubShard([record("1000")])}
    aws.denied["GetRecords"] = "AccessDeniedException"
    coordinator, pipeline, _, _ = make_coordinator(tmp_path, aws, failed_retry_seconds=0.3)
    rounds_until(coordinator, lambda: not coordinator.health.readiness()[0])
    # WHEN the permission is granted and the retry pause has passed
    del aws.denied["GetRecords"]
    rounds_until(coordinator, lambda: pipeline.written == ["1000"])
    rounds_until(coordinator, lambda: coordinator.health.readiness()[0])
    coordinator.shutdown()
    # THEN the shard is read again and the worker is ready
    assert coordinator.health.readiness() == (True, "dynamodb ok, opensearch ok\n")


@pytest.mark.parametrize(
    ("break_orders", "kind", "reason"),
    [
        (
            lambda aws: aws.gone.add(ORDERS_ARN),
            "stream_gone",
            f"DescribeStream: stream {ORDERS_ARN} no longer exists (ResourceNotFoundException: "
            "An error occurred (ResourceNotFoundException) when calling the DescribeStream operation: "
            "ResourceNotFoundException happened); the table's stream was disabled or replaced: "
            "look up its current stream",
        ),
        (
            lambda aws: aws.current.update(Orders=None),
            "config",
            "table Orders has no enabled stream; enable one with NEW_AND_OLD_IMAGES: aws dynamodb "
            "update-table --table-name Orders --stream-specification "
            "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES",
        ),
    ],
)
def test_coordinator_one_table_failing_leaves_other_tables_running(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    break_orders: Callable[[StubAws], None],
    kind: str,
    reason: str,
) -> None:
    # GIVEN a worker over two tables, both read so far
    aws = StubAws()
    aws.current.update(Users=ARN, Orders=ORDERS_ARN)
    aws.streams[ARN] = {"users": StubShard([record("1000")])}
    aws.streams[ORDERS_ARN] = {"orders": StubShard([record("5000")])}
    wall = Wall()
    coordinator, pipeline, _, metrics = make_coordinator(
        tmp_path, aws, tables=("Users", "Orders"), wall_ms=wall
    )
    rounds_until(coordinator, lambda: sorted(pipeline.written) == ["1000", "5000"])
    # WHEN the Orders table's stream breaks for several rounds
    break_orders(aws)
    aws.streams[ARN]["users"].records.append(record("1001"))
    with caplog.at_level(logging.INFO):
        for _ in range(4):
            coordinator.round()  # THEN no round raises
            wall.ms += 10_000
        rounds_until(coordinator, lambda: pipeline.written[-1:] == ["1001"])
    coordinator.shutdown()
    # AND the Users table goes on, and the Orders problem is logged once, counted and on /readyz
    assert sorted(pipeline.written) == ["1000", "1001", "5000"]
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name == "cdcsync.worker.coordinator"
    ]
    assert lines == [f"cannot coordinate table Orders: {reason}; trying again every round"]
    assert sample(metrics, "cdcsync_worker_errors_total", table="Orders", error=kind) >= 4
    ready, text = coordinator.health.readiness()
    assert not ready
    assert text == f"dynamodb ok, opensearch ok\ntable Orders: {reason}\n"
    # AND the Orders lag rises while nothing reads it
    lag = sample(metrics, "cdcsync_replication_lag_seconds", table="Orders")
    assert lag is not None
    assert lag >= 40


def test_coordinator_stream_enabled_again_is_followed_within_one_round(tmp_path: Path) -> None:
    # GIVEN a worker reading the table's stream
    aws = StubAws()
    aws.current["Users"] = OLD_ARN
    aws.streams[OLD_ARN] = {"old": StubShard([record("1000")])}
    coordinator, pipeline, store, _ = make_coordinator(tmp_path, aws)
    rounds_until(coordinator, lambda: pipeline.written == ["1000"])
    # WHEN the stream is disabled (its shard closes with one unread record) and enabled again: a new ARN
    aws.streams[OLD_ARN]["old"].records.append(record("1001"))
    aws.streams[OLD_ARN]["old"].closed = True
    aws.streams[NEW_ARN] = {"new": StubShard([record("2000"), record("2001")])}
    aws.current["Users"] = NEW_ARN
    coordinator.round()
    # THEN one round starts reading the new stream from TRIM_HORIZON, not blocked by the old lease
    assert ("Users", "new") in coordinator.loops
    rounds_until(coordinator, lambda: {"1001", "2000", "2001"} <= set(pipeline.written))
    first_iterator = next(r for r in aws.requests("GetShardIterator") if r["ShardId"] == "new")
    assert first_iterator["ShardIteratorType"] == "TRIM_HORIZON"
    # AND the old stream's rest is read to its end and finished
    assert pipeline.written.count("1001") == 1
    rounds_until(coordinator, lambda: leases_of(store, OLD_ARN)["old"].finished)
    # WHEN the old stream is gone (24 h later) THEN rounds go on without an error
    aws.gone.add(OLD_ARN)
    aws.streams[NEW_ARN]["new"].records.append(record("2002"))
    rounds_until(coordinator, lambda: pipeline.written[-1:] == ["2002"])
    describes = len(aws.requests("DescribeStream"))
    coordinator.round()
    coordinator.shutdown()
    assert [r["StreamArn"] for r in aws.requests("DescribeStream")[describes:]] == [NEW_ARN]


def test_coordinator_replaced_stream_gone_with_unread_shard_counts_it_trimmed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a worker whose old stream still had an unread shard when it was replaced and then expired
    aws = StubAws()
    aws.current["Users"] = OLD_ARN
    aws.streams[OLD_ARN] = {"old": StubShard([record("1000")])}
    aws.denied["GetRecords"] = "ThrottlingException"  # nothing of it is read
    coordinator, pipeline, store, metrics = make_coordinator(tmp_path, aws)
    rounds_until(coordinator, lambda: ("Users", "old") in coordinator.loops)
    aws.gone.add(OLD_ARN)
    aws.streams[NEW_ARN] = {"new": StubShard([record("2000")])}
    aws.current["Users"] = NEW_ARN
    del aws.denied["GetRecords"]
    # WHEN the worker coordinates
    with caplog.at_level(logging.INFO):
        rounds_until(coordinator, lambda: pipeline.written == ["2000"])
        rounds_until(coordinator, lambda: leases_of(store, OLD_ARN)["old"].finished)
    coordinator.shutdown()
    # THEN the old shard is finished as trimmed, counted, and the new stream is read
    assert sample(metrics, "cdcsync_trimmed_data_total", table="Users", shard="old") == 1
    assert any(
        "Users shard old: records from the start of the shard were trimmed" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR
    )


def read_old_stream_then_stop(tmp_path: Path) -> StubAws:
    """A worker that read the old stream's first record and stopped; the shard then got one more."""
    aws = StubAws()
    aws.current["Users"] = OLD_ARN
    aws.streams[OLD_ARN] = {"old": StubShard([record("1000")])}
    coordinator, pipeline, _, _ = make_coordinator(tmp_path, aws)
    rounds_until(coordinator, lambda: pipeline.written == ["1000"])
    coordinator.shutdown()
    aws.streams[OLD_ARN]["old"].records.append(record("1001"))
    aws.streams[OLD_ARN]["old"].closed = True
    aws.streams[NEW_ARN] = {"new": StubShard([record("2000")])}
    aws.current["Users"] = NEW_ARN
    return aws


def test_coordinator_restart_after_stream_replaced_reads_old_streams_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a worker that read part of the table's stream, then stopped; while no worker ran the
    # stream was disabled and enabled again (a new ARN), and the old stream still holds record 1001
    aws = read_old_stream_then_stop(tmp_path)
    # WHEN a new worker process starts on the same checkpoints
    coordinator, pipeline, store, metrics = make_coordinator(tmp_path, aws)
    with caplog.at_level(logging.INFO):
        rounds_until(coordinator, lambda: {"1001", "2000"} <= set(pipeline.written))
        rounds_until(coordinator, lambda: leases_of(store, OLD_ARN)["old"].finished)
        coordinator.round()
    coordinator.shutdown()
    # THEN the old stream's rest is read once, from its checkpoint, and its shard finished
    assert sorted(pipeline.written) == ["1001", "2000"]
    assert leases_of(store, OLD_ARN)["old"].checkpoint == "1001"
    assert sample(metrics, "cdcsync_trimmed_data_total", table="Users", shard="old") is None
    # AND the operator is told once, at WARNING, and nothing is said to be ignored
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"table Users: stream {OLD_ARN} has unfinished checkpoints and was replaced by {NEW_ARN} while "
        "no worker ran: reading the rest of it to its end"
    ]
    # AND once it is read, only the current stream is described each round
    describes = len(aws.requests("DescribeStream"))
    coordinator.round()
    coordinator.shutdown()
    assert [r["StreamArn"] for r in aws.requests("DescribeStream")[describes:]] == [NEW_ARN]


@pytest.mark.parametrize("old_stream_gone", [False, True])
def test_coordinator_restart_after_table_recreated_ignores_old_stream_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, old_stream_gone: bool
) -> None:
    # GIVEN a worker that read part of the table's stream, then stopped; while no worker ran the
    # table was deleted and created again (after the old stream was created), with a new stream
    aws = read_old_stream_then_stop(tmp_path)
    aws.created["Users"] = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    if old_stream_gone:
        aws.gone.add(OLD_ARN)
    # WHEN a new worker process starts on the same checkpoints
    coordinator, pipeline, store, metrics = make_coordinator(tmp_path, aws)
    with caplog.at_level(logging.INFO):
        rounds_until(coordinator, lambda: pipeline.written == ["2000"])
        for _ in range(4):
            coordinator.round()
    coordinator.shutdown()
    # THEN the old stream's records (of items of a table that no longer exists) are not read, nor
    # counted as lost, and its checkpoint stays as it was
    assert pipeline.written == ["2000"]
    assert leases_of(store, OLD_ARN)["old"].checkpoint == "1000"
    assert not leases_of(store, OLD_ARN)["old"].finished
    assert sample(metrics, "cdcsync_trimmed_data_total", table="Users", shard="old") is None
    # AND one WARNING says so and what to run
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"table Users: ignoring the checkpoints of 1 unfinished shard of stream {OLD_ARN}, which is not "
        f"the table's stream now ({NEW_ARN}): the table was recreated after that stream was created; "
        "what was not read from it is not synced (compare with: cdcsync verify --table Users)"
    ]


def test_coordinator_restart_after_stream_replaced_and_gone_counts_its_unread_shards_trimmed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a worker that read part of the table's stream, then stopped; while no worker ran the
    # stream was replaced, and the old one expired (24 h later) with record 1001 unread
    aws = read_old_stream_then_stop(tmp_path)
    aws.gone.add(OLD_ARN)
    # WHEN a new worker process starts on the same checkpoints
    coordinator, pipeline, store, metrics = make_coordinator(tmp_path, aws)
    with caplog.at_level(logging.INFO):
        rounds_until(coordinator, lambda: pipeline.written == ["2000"])
        rounds_until(coordinator, lambda: leases_of(store, OLD_ARN)["old"].finished)
        coordinator.round()
    coordinator.shutdown()
    # THEN the old shard is finished where it stood, and the loss is counted and told once
    assert pipeline.written == ["2000"]
    assert leases_of(store, OLD_ARN)["old"].checkpoint == "1000"
    assert sample(metrics, "cdcsync_trimmed_data_total", table="Users", shard="old") == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "Users shard old: records after sequence number 1000 were trimmed by the stream's 24 h "
        "retention before they were read (the shard is no longer listed), so changes were lost; "
        'its child shards are read now. Run "cdcsync backfill --table Users" to load the items that '
        "changed meanwhile"
    ]
    assert not any("ignoring the checkpoints" in r.getMessage() for r in caplog.records)


def test_health_problem_with_url_credentials_is_masked_on_readyz() -> None:
    # GIVEN a problem whose text (an exception's, e.g. a bug's) embeds a URL with user info
    health = Health(dynamodb_ok=True, opensearch_ok=True)
    health.report(
        "table Users", "unexpected error (a bug): OSError: no route to https://admin:p@ss/w0rd@search:9200"
    )
    # WHEN /readyz answers THEN the credentials are masked, as in log lines
    assert health.readiness() == (
        False,
        "dynamodb ok, opensearch ok\ntable Users: unexpected error (a bug): OSError: no route to https://***@search:9200\n",
    )
