"""``load_export_file``: one export data file per invocation, with fakes behind the pipeline and S3.

The rules that decide where the next invocation starts: a failure after some progress answers
unfinished from the first record not done; one with no progress raises ``TransientError`` (the state
machine retries with backoff); the deadline stops before a page; records carry the export's version.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from cdcsync.backfill.export_file import ExportFile, FileCounts, answer, load_export_file, parse_event
from cdcsync.errors import ConfigError, TransientError
from cdcsync.metrics import NullMetrics
from cdcsync.pipeline import BatchResult
from cdcsync.source.synthetic import TableStream
from cdcsync.versions import read_version

EXPORT_MS = 1_767_225_600_000
STREAM = TableStream(
    table="Users",
    key_names=("UserId",),
    stream_arn="arn:aws:dynamodb:eu-west-1:123456789012:table/Users/stream/x",
    region="eu-west-1",
    view="NEW_AND_OLD_IMAGES",
)


class FakeS3:
    """``get_object`` of one gzipped DYNAMODB_JSON data file of ``count`` items."""

    def __init__(self, count: int) -> None:
        lines = (json.dumps({"Item": {"UserId": {"N": str(n)}}}) + "\n" for n in range(count))
        self.body = gzip.compress("".join(lines).encode())

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"Body": io.BytesIO(self.body)}


@dataclass
class FakePipeline:
    """Writes every record, except that call number ``fail_call`` fails from record ``fail_from`` on."""

    fail_call: int | None = None
    fail_from: int = 0
    calls: list[tuple[list[str], int | None]] = field(default_factory=list)

    def process(
        self,
        raw_records: Sequence[Mapping[str, Any]],
        *,
        version_ms: int | None = None,
        deadline: float | None = None,
    ) -> BatchResult:
        keys = [record["dynamodb"]["Keys"]["UserId"]["N"] for record in raw_records]
        self.calls.append((keys, version_ms))
        if len(self.calls) - 1 == self.fail_call:
            return BatchResult(
                size=len(raw_records),
                retry_from=self.fail_from,
                retry_sequence_number=raw_records[self.fail_from]["dynamodb"]["SequenceNumber"],
                outcomes={"indexed": self.fail_from},
            )
        return BatchResult(size=len(raw_records), outcomes={"indexed": len(raw_records)})

    def written(self) -> list[int]:
        return [int(key) for keys, _ in self.calls for key in keys]


def _load(pipeline: FakePipeline, items: int, done: int = 0, **kwargs: Any) -> Any:
    file = ExportFile("Users", "bucket", "exports/data/a.json.gz", EXPORT_MS, unit=2, items_done=done)
    return load_export_file(
        file, s3=FakeS3(items), stream=STREAM, pipeline=pipeline, metrics=NullMetrics(), bulk_max_actions=400,
        **kwargs,
    )  # fmt: skip


def test_load_export_file_writes_every_item_once_with_the_export_read_version() -> None:
    # GIVEN a data file of 2,500 items (three pages of 1,000; bulk requests of 400)
    pipeline = FakePipeline()
    # WHEN it is loaded in one invocation
    load = _load(pipeline, 2500)
    # THEN every item is written once, in order, with the export time's read version
    assert pipeline.written() == list(range(2500))
    assert {version for _, version in pipeline.calls} == {read_version(EXPORT_MS)}
    assert (load.finished, load.file.items_done, load.counts.items_read, load.counts.written) == (
        True,
        2500,
        2500,
        2500,
    )


def test_load_export_file_failure_after_progress_answers_unfinished_from_the_failed_record() -> None:
    # GIVEN a pipeline whose fourth bulk request fails transiently from its 150th record on
    # (requests: 0-399, 400-799, 800-999, 1000-1399: the failure is at item 1150)
    pipeline = FakePipeline(fail_call=3, fail_from=150)
    # WHEN the file is loaded
    load = _load(pipeline, 2500)
    # THEN the answer is unfinished at the first record not done, with what was done counted
    assert (load.finished, load.file.items_done, load.counts.items_read) == (False, 1150, 1150)
    # AND the next invocation starts there and writes the rest once
    again = FakePipeline()
    rest = _load(again, 2500, done=load.file.items_done)
    assert again.written() == list(range(1150, 2500))
    assert (rest.finished, rest.file.items_done) == (True, 2500)


def test_load_export_file_failure_before_any_progress_raises_transient_error() -> None:
    # GIVEN an invocation that starts at item 1000 and whose first request fails at its first record
    pipeline = FakePipeline(fail_call=0, fail_from=0)
    # WHEN it loads THEN it raises TransientError (the state machine retries it with backoff)
    with pytest.raises(TransientError) as caught:
        _load(pipeline, 2500, done=1000)
    assert str(caught.value) == (
        "export load of Users: 400 records of s3://bucket/exports/data/a.json.gz from item 1000 failed "
        "transiently (first export-00002-000000001-000000); nothing was lost: the state machine retries "
        "the file from there"
    )


def test_load_export_file_stops_before_a_page_when_the_deadline_is_near() -> None:
    # GIVEN a clock that moves 20 s per bulk request, and 70 s until the deadline
    now = [0.0]

    class SlowPipeline(FakePipeline):
        def process(self, raw_records: Sequence[Mapping[str, Any]], **kwargs: Any) -> BatchResult:
            now[0] += 20
            return super().process(raw_records, **kwargs)

    pipeline = SlowPipeline()
    # WHEN the file is loaded: page 1 (three requests) ends at 60 s, 10 s before the deadline
    load = _load(pipeline, 2500, deadline=70.0, clock=lambda: now[0])
    # THEN no second page starts (a page needs 30 s in hand), and the answer is unfinished after page 1
    assert (load.finished, load.file.items_done) == (False, 1000)
    assert pipeline.written() == list(range(1000))


def test_load_export_file_deadline_too_near_for_any_page_raises_config_error() -> None:
    # GIVEN an invocation with 20 s in hand (a function Timeout lowered below the 30 s a page needs)
    pipeline = FakePipeline()
    # WHEN it loads THEN it refuses with one line (exit: the execution fails), rather than answering
    # unfinished with nothing done: the state machine would invoke it again, forever, doing nothing
    with pytest.raises(ConfigError) as caught:
        _load(pipeline, 2500, done=1000, deadline=20.0, clock=lambda: 0.0)
    assert pipeline.calls == []
    assert str(caught.value) == (
        "export load of Users: 20 s left in the invocation, less than the 30 s a page of "
        "s3://bucket/exports/data/a.json.gz needs: no progress is possible; raise the export "
        "function's Timeout (the template sets 900 s)"
    )


def test_export_event_round_trips_through_the_answer() -> None:
    # GIVEN an answer of an unfinished file
    file = ExportFile("Users", "bucket", "k.json.gz", EXPORT_MS, unit=4, items_done=17)
    from cdcsync.backfill.export_file import FileLoad  # noqa: PLC0415 - only here

    out = answer(FileLoad(file, FileCounts(items_read=17, written=15, stale=1, skipped=1), finished=False))
    # THEN it is the next invocation's event, as the Choice hands it back
    assert out == {
        "table": "Users", "bucket": "bucket", "dataFileS3Key": "k.json.gz", "exportTimeMs": EXPORT_MS,
        "unit": 4, "itemsDone": 17, "itemsRead": 17, "written": 15, "stale": 1, "skipped": 1,
        "deadLettered": 0, "finished": False,
    }  # fmt: skip
    assert parse_event(out) == (file, FileCounts(items_read=17, written=15, stale=1, skipped=1))


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {"table": "Users", "bucket": "b", "dataFileS3Key": "k", "exportTimeMs": "soon"},
            "export handler: exportTimeMs is 'soon' in the event; expected a whole number",
        ),
        (
            {"table": "Users", "bucket": "b", "dataFileS3Key": "k", "exportTimeMs": 1, "itemsDone": -1},
            "export handler: itemsDone is -1 in the event; expected a whole number",
        ),
    ],
)
def test_export_event_with_a_bad_number_is_a_configuration_error(event: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_event(event)
    assert str(caught.value) == message
