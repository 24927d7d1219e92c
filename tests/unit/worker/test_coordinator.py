"""The coordinator with a stubbed stream (moto keeps one shard): lineage and ordering across a split."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from cdcsync.checkpoint.file import FileLeaseStore
from cdcsync.metrics import NullMetrics
from cdcsync.pipeline import BatchResult
from cdcsync.worker.coordinator import Coordinator

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
