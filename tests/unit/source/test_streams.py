"""Stream discovery, shard lineage and ShardReader against a scripted fake DynamoDB Streams client."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections import deque
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from cdcsync.checkpoint import TRIM_HORIZON, ShardInfo
from cdcsync.errors import ConfigError, FatalError, TransientError
from cdcsync.metrics import NullMetrics
from cdcsync.source.streams import (
    ShardBatch,
    ShardReader,
    StreamGoneError,
    list_shards,
    ready_shards,
    stream_arn_of,
)

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2024-05-01T00:00:00.000"
SHARD = "shardId-00000001700000000000-aaaaaaaa"
NOW = 1_714_566_600.0  # 2024-05-01T12:30:00Z
Script = list[dict[str, Any] | Exception]


def aws_error(code: str, status: int = 400, operation: str = "GetRecords") -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": f"{code} happened"}}
    response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, operation)


def record(sequence: int, seconds_ago: float = 10.0) -> dict[str, Any]:
    """A GetRecords-shaped record (datetime creation time, as boto3 returns it)."""
    return {
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"UserId": {"S": f"u{sequence}"}},
            "SequenceNumber": str(sequence),
            "ApproximateCreationDateTime": dt.datetime.fromtimestamp(NOW - seconds_ago, tz=dt.UTC),
        },
    }


def page(*sequences: int, end: bool = False, iterator: str = "it-next") -> dict[str, Any]:
    answer: dict[str, Any] = {"Records": [record(s) for s in sequences]}
    if not end:
        answer["NextShardIterator"] = iterator
    return answer


class FakeStreams:
    """Answers each operation from its script, in order, and records every request."""

    def __init__(self, **scripts: Script) -> None:
        self.scripts = {name: deque(script) for name, script in scripts.items()}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((operation, request))
        script = self.scripts.get(operation)
        if not script:
            raise AssertionError(f"unexpected {operation} {request}")
        answer = script.popleft()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def describe_table(self, **request: Any) -> dict[str, Any]:
        return self._answer("describe_table", request)

    def describe_stream(self, **request: Any) -> dict[str, Any]:
        return self._answer("describe_stream", request)

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        answer = self._answer("get_shard_iterator", request)
        return answer or {"ShardIterator": f"it-{request.get('SequenceNumber', TRIM_HORIZON)}"}

    def get_records(self, **request: Any) -> dict[str, Any]:
        return self._answer("get_records", request)

    def requests(self, operation: str) -> list[dict[str, Any]]:
        return [request for name, request in self.calls if name == operation]


class FakeTime:
    """A monotonic clock that only moves when the reader sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


class RecordingMetrics(NullMetrics):
    def __init__(self) -> None:
        self.ages: list[tuple[str, str, float]] = []
        self.trimmed: list[tuple[str, str]] = []

    def iterator_age(self, table: str, shard: str, seconds: float) -> None:
        super().iterator_age(table, shard, seconds)
        self.ages.append((table, shard, seconds))

    def trimmed_data(self, table: str, shard: str) -> None:
        self.trimmed.append((table, shard))


def make_reader(
    streams: FakeStreams, checkpoint: str = TRIM_HORIZON, metrics: RecordingMetrics | None = None
) -> tuple[ShardReader, FakeTime, RecordingMetrics]:
    time = FakeTime()
    metrics = metrics or RecordingMetrics()
    reader = ShardReader(
        streams,
        ARN,
        SHARD,
        checkpoint,
        table="Users",
        metrics=metrics,
        clock=time.clock,
        sleep=time.sleep,
        wall=lambda: NOW,
    )
    return reader, time, metrics


# --- discovery -------------------------------------------------------------------------------


def test_list_shards_two_pages_follows_last_evaluated_shard_id() -> None:
    # GIVEN a stream whose DescribeStream answer comes in two pages
    streams = FakeStreams(
        describe_stream=[
            {
                "StreamDescription": {
                    "Shards": [{"ShardId": "s1"}, {"ShardId": "s2", "ParentShardId": "s1"}],
                    "LastEvaluatedShardId": "s2",
                }
            },
            {"StreamDescription": {"Shards": [{"ShardId": "s3", "ParentShardId": "s2"}]}},
        ]
    )
    # WHEN the shards are listed
    shards = list_shards(streams, ARN)
    # THEN both pages are read, the second from after the last shard of the first
    assert shards == [ShardInfo("s1"), ShardInfo("s2", ("s1",)), ShardInfo("s3", ("s2",))]
    assert streams.requests("describe_stream") == [
        {"StreamArn": ARN, "Limit": 100},
        {"StreamArn": ARN, "Limit": 100, "ExclusiveStartShardId": "s2"},
    ]


def test_list_shards_stream_deleted_raises_stream_gone() -> None:
    # GIVEN a stream that no longer exists
    streams = FakeStreams(
        describe_stream=[aws_error("ResourceNotFoundException", operation="DescribeStream")]
    )
    # WHEN the shards are listed THEN StreamGoneError names the stream and says what to do
    with pytest.raises(StreamGoneError) as caught:
        list_shards(streams, ARN)
    assert str(caught.value) == (
        f"DescribeStream: stream {ARN} no longer exists (ResourceNotFoundException: An error occurred "
        "(ResourceNotFoundException) when calling the DescribeStream operation: "
        "ResourceNotFoundException happened); the table's stream was disabled or replaced: "
        "look up its current stream"
    )
    assert caught.value.stream_arn == ARN


@pytest.mark.parametrize(
    ("shards", "finished", "known", "ready"),
    [
        pytest.param([ShardInfo("p"), ShardInfo("c", ("p",))], set(), set(), ["p"], id="parent-unfinished"),
        pytest.param(
            [ShardInfo("p"), ShardInfo("c", ("p",))], {"p"}, {"p", "c"}, ["c"], id="parent-finished"
        ),
        pytest.param([ShardInfo("c", ("p",))], set(), set(), ["c"], id="parent-trimmed"),
        pytest.param([ShardInfo("c", ("p",))], set(), {"p"}, [], id="parent-leased-not-listed"),
        pytest.param(
            [ShardInfo("p"), ShardInfo("c1", ("p",)), ShardInfo("c2", ("p",)), ShardInfo("g", ("c1",))],
            {"p"},
            set(),
            ["c1", "c2"],
            id="grandchild-waits",
        ),
    ],
)
def test_ready_shards_lineage_decides_which_start(
    shards: list[ShardInfo], finished: set[str], known: set[str], ready: list[str]
) -> None:
    # GIVEN shards with parents, some finished  WHEN readiness is decided
    result = ready_shards(shards, finished, known)
    # THEN only unfinished shards whose parents are finished or gone are ready
    assert [shard.shard_id for shard in result] == ready


@pytest.mark.parametrize(
    ("table", "required", "expected"),
    [
        pytest.param(
            {"StreamSpecification": {"StreamEnabled": True}, "LatestStreamArn": ARN}, True, ARN, id="on"
        ),
        pytest.param(
            {"StreamSpecification": {"StreamEnabled": False}, "LatestStreamArn": ARN}, False, None, id="off"
        ),
        pytest.param({}, False, None, id="never"),
    ],
)
def test_stream_arn_of_stream_state_gives_arn_or_none(
    table: dict[str, Any], required: bool, expected: str | None
) -> None:
    # GIVEN a table with or without an enabled stream
    dynamodb = FakeStreams(describe_table=[{"Table": {"TableName": "Users", **table}}])
    # WHEN its stream is looked up THEN the enabled stream's ARN (or None) comes back
    assert stream_arn_of(dynamodb, "Users", required=required) == expected


def test_stream_arn_of_no_stream_raises_config_error() -> None:
    # GIVEN a table whose stream was disabled (DescribeTable still shows the old ARN)
    dynamodb = FakeStreams(
        describe_table=[{"Table": {"StreamSpecification": {"StreamEnabled": False}, "LatestStreamArn": ARN}}]
    )
    # WHEN the stream is required THEN the error says how to enable one
    with pytest.raises(ConfigError) as caught:
        stream_arn_of(dynamodb, "Users")
    assert str(caught.value) == (
        "table Users has no enabled stream; enable one with NEW_AND_OLD_IMAGES: aws dynamodb update-table "
        "--table-name Users --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
    )


def test_stream_arn_of_missing_table_raises_config_error() -> None:
    # GIVEN no such table
    dynamodb = FakeStreams(describe_table=[aws_error("ResourceNotFoundException", operation="DescribeTable")])
    # WHEN its stream is looked up THEN a ConfigError names the table
    with pytest.raises(ConfigError, match=r"^table Users does not exist in this account and region"):
        stream_arn_of(dynamodb, "Users")


# --- reading ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("checkpoint", "request_"),
    [
        (TRIM_HORIZON, {"ShardIteratorType": "TRIM_HORIZON"}),
        ("", {"ShardIteratorType": "TRIM_HORIZON"}),
        ("300", {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "300"}),
    ],
)
def test_reader_first_read_iterator_type_follows_checkpoint(
    checkpoint: str, request_: dict[str, str]
) -> None:
    # GIVEN a reader of a new shard or of a checkpointed one
    streams = FakeStreams(get_shard_iterator=[{}], get_records=[page(301)])
    reader, _, _ = make_reader(streams, checkpoint)
    # WHEN it reads
    reader.read()
    # THEN the first iterator starts at the trim horizon or right after the checkpoint
    assert streams.requests("get_shard_iterator") == [{"StreamArn": ARN, "ShardId": SHARD, **request_}]


def test_reader_consecutive_reads_use_next_shard_iterator() -> None:
    # GIVEN a shard with records over two pages
    streams = FakeStreams(get_shard_iterator=[{}], get_records=[page(1, 2, iterator="it-2"), page(3)])
    reader, _, metrics = make_reader(streams)
    # WHEN it is read twice
    first, second = reader.read(), reader.read()
    # THEN one iterator is taken, then each NextShardIterator is used, with the 1000-record limit
    assert [r["dynamodb"]["SequenceNumber"] for r in first.records + second.records] == ["1", "2", "3"]
    assert streams.requests("get_records") == [
        {"ShardIterator": "it-TRIM_HORIZON", "Limit": 1000},
        {"ShardIterator": "it-2", "Limit": 1000},
    ]
    assert len(streams.requests("get_shard_iterator")) == 1
    assert reader.position == "3"
    # AND the iterator age is now minus the last record's creation time
    assert first.millis_behind == 10_000.0
    assert first.seconds_behind == 10.0
    assert metrics.ages == [("Users", SHARD, 10.0), ("Users", SHARD, 10.0)]


def test_reader_shard_end_reports_ended_and_stops_calling() -> None:
    # GIVEN a closed shard whose last page has no NextShardIterator
    streams = FakeStreams(get_shard_iterator=[{}], get_records=[page(1, 2, end=True)])
    reader, _, metrics = make_reader(streams)
    # WHEN it is read to its end and read again
    last = reader.read()
    after = reader.read()
    # THEN the last records come with the end marker, and nothing more is asked of DynamoDB
    assert [r["dynamodb"]["SequenceNumber"] for r in last.records] == ["1", "2"]
    assert last.ended
    assert last.next_position is None
    assert after == ShardBatch([], None, None)
    assert len(streams.requests("get_records")) == 1
    assert metrics.ages == [("Users", SHARD, 10.0)]


def test_reader_record_after_an_idle_spell_restores_the_short_wait() -> None:
    # GIVEN a shard that is idle long enough to back off, then gets a record, then is idle again
    script: Script = [page()] * 30 + [page(7), page(), page(), page()]
    streams = FakeStreams(get_shard_iterator=[{}], get_records=script)
    reader, time, metrics = make_reader(streams)
    # WHEN it is read to the end of the script
    batches = [reader.read() for _ in script]
    # THEN it had backed off to 2 s, and after the record it polls every 0.25 s again
    assert time.sleeps[-5:] == [2.0, 2.0, 0.25, 0.25, 0.25]
    assert [len(b.records) for b in batches[-4:]] == [1, 0, 0, 0]
    # AND an empty read of an open shard means caught up: iterator age 0
    assert batches[0].millis_behind == 0.0
    assert [age for _, _, age in metrics.ages][-4:] == [10.0, 0.0, 0.0, 0.0]


def test_reader_empty_read_backoff_counts_time_already_spent() -> None:
    # GIVEN an idle shard and a worker that spent 0.2 s between two reads
    streams = FakeStreams(get_shard_iterator=[{}], get_records=[page(), page()])
    reader, time, _ = make_reader(streams)
    reader.read()
    time.now += 0.2
    # WHEN it reads again
    reader.read()
    # THEN it waits only the rest of the 0.25 s
    assert time.sleeps == [0.05]


@pytest.mark.parametrize(
    ("checkpoint", "first_page", "expected_iterator_requests"),
    [
        pytest.param(
            TRIM_HORIZON,
            page(1, 2),
            [
                {"ShardIteratorType": "TRIM_HORIZON"},
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "2"},
            ],
            id="after-last-record",
        ),
        pytest.param(
            "50",
            page(),
            [
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "50"},
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "50"},
            ],
            id="after-checkpoint",
        ),
    ],
)
def test_reader_expired_iterator_resumes_after_last_returned(
    checkpoint: str, first_page: dict[str, Any], expected_iterator_requests: list[dict[str, str]]
) -> None:
    # GIVEN a reader whose iterator expires after its first read
    streams = FakeStreams(
        get_shard_iterator=[{}, {}],
        get_records=[first_page, aws_error("ExpiredIteratorException"), page(60)],
    )
    reader, _, _ = make_reader(streams, checkpoint)
    reader.read()
    # WHEN it reads again
    batch = reader.read()
    # THEN it takes a new iterator after the last record handed out, transparently
    assert [r["dynamodb"]["SequenceNumber"] for r in batch.records] == ["60"]
    assert streams.requests("get_shard_iterator") == [
        {"StreamArn": ARN, "ShardId": SHARD, **request} for request in expected_iterator_requests
    ]


TRIM_LOG = (
    "Users shard shardId-00000001700000000000-aaaaaaaa: records after sequence number 123 were trimmed by "
    "the stream's 24 h retention before they were read (TrimmedDataAccessException), so changes were "
    'lost; reading on from TRIM_HORIZON. Run "cdcsync backfill --table Users" to load the items that '
    "changed meanwhile"
)


@pytest.mark.parametrize(
    ("iterator_script", "records_script"),
    [
        pytest.param(
            [aws_error("TrimmedDataAccessException", operation="GetShardIterator"), {}],
            [page(900)],
            id="iterator",
        ),
        pytest.param([{}, {}], [aws_error("TrimmedDataAccessException"), page(900)], id="get-records"),
    ],
)
def test_reader_trimmed_checkpoint_logs_loss_counts_and_reads_from_trim_horizon(
    iterator_script: Script, records_script: Script, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a checkpoint older than the stream's retention
    streams = FakeStreams(get_shard_iterator=iterator_script, get_records=records_script)
    reader, _, metrics = make_reader(streams, "123")
    # WHEN the shard is read
    with caplog.at_level(logging.INFO, logger="cdcsync.source.streams"):
        batch = reader.read()
    # THEN the operator is told records were lost and to backfill, the loss is counted,
    # and reading goes on from the oldest record still in the shard
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [TRIM_LOG]
    assert (errors[0].table, errors[0].shard, errors[0].seq) == ("Users", SHARD, "123")  # type: ignore[attr-defined]
    assert metrics.trimmed == [("Users", SHARD)]
    assert streams.requests("get_shard_iterator")[-1]["ShardIteratorType"] == "TRIM_HORIZON"
    assert [r["dynamodb"]["SequenceNumber"] for r in batch.records] == ["900"]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("LimitExceededException", 400),
        ("ProvisionedThroughputExceededException", 400),
        ("InternalServerError", 500),
        ("ServiceUnavailable", 503),
    ],
)
def test_reader_throttled_every_attempt_raises_transient_after_backoff(code: str, status: int) -> None:
    # GIVEN GetRecords throttled or failing on every attempt
    streams = FakeStreams(get_shard_iterator=[{}], get_records=[aws_error(code, status)] * 5)
    reader, time, _ = make_reader(streams)
    # WHEN the shard is read THEN it backs off four times, then gives up with a TransientError
    with pytest.raises(TransientError) as caught:
        reader.read()
    assert time.sleeps == [0.1, 0.2, 0.4, 0.8]
    assert str(caught.value).startswith(
        f"GetRecords Users shard {SHARD}: still failing after 5 attempts ({code}: "
    )
    assert str(caught.value).endswith("DynamoDB Streams is throttling or unavailable, retrying later")


def test_reader_throttled_then_served_returns_records() -> None:
    # GIVEN a throttle and a dropped connection before GetRecords answers
    streams = FakeStreams(
        get_shard_iterator=[{}],
        get_records=[
            aws_error("LimitExceededException"),
            EndpointConnectionError(endpoint_url="http://streams"),
            page(4),
        ],
    )
    reader, time, _ = make_reader(streams)
    # WHEN the shard is read THEN the records arrive after two short waits
    assert [r["dynamodb"]["SequenceNumber"] for r in reader.read().records] == ["4"]
    assert time.sleeps == [0.1, 0.2]


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        ("ResourceNotFoundException", StreamGoneError, r"^GetRecords: .*\(ResourceNotFoundException: "),
        ("ValidationException", FatalError, rf"^GetRecords {ARN} shard {SHARD}: .*\(ValidationException: "),
    ],
)
def test_reader_unrecoverable_error_raises_specific_error(
    code: str, error: type[Exception], message: str
) -> None:
    # GIVEN a stream that is gone, or a call DynamoDB Streams refuses
    streams = FakeStreams(get_shard_iterator=[{}], get_records=[aws_error(code)])
    reader, _, _ = make_reader(streams)
    # WHEN the shard is read THEN the error says what the worker must do next
    with pytest.raises(error, match=message):
        reader.read()


@pytest.mark.parametrize("operation", ["GetShardIterator", "GetRecords"])
def test_reader_access_denied_raises_config_error_naming_the_missing_permission(operation: str) -> None:
    # GIVEN a worker whose IAM role lacks one of the read permissions
    denied = aws_error("AccessDeniedException", operation=operation)
    if operation == "GetShardIterator":
        streams = FakeStreams(get_shard_iterator=[denied])
    else:
        streams = FakeStreams(get_shard_iterator=[{}], get_records=[denied])
    reader, _, _ = make_reader(streams)
    # WHEN the shard is read THEN one configuration error names the permission and the streams to grant it on
    with pytest.raises(ConfigError) as caught:
        reader.read()
    assert str(caught.value) == (
        f"{operation} {ARN} shard {SHARD}: access denied (AccessDeniedException: AccessDeniedException "
        f"happened); grant the worker's IAM role dynamodb:{operation} on "
        "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/*"
    )


def test_list_shards_access_denied_names_describe_stream() -> None:
    streams = FakeStreams(describe_stream=[aws_error("AccessDeniedException", operation="DescribeStream")])
    with pytest.raises(ConfigError, match=r"grant the worker's IAM role dynamodb:DescribeStream on "):
        list_shards(streams, ARN)


@pytest.mark.parametrize(
    ("rewind_to", "request_"),
    [
        ("2", {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "2"}),
        (None, {"ShardIteratorType": "TRIM_HORIZON"}),
        (TRIM_HORIZON, {"ShardIteratorType": "TRIM_HORIZON"}),
    ],
)
def test_reader_rewind_rereads_after_given_sequence(rewind_to: str | None, request_: dict[str, str]) -> None:
    # GIVEN a reader that handed out records 1..3 of an ended shard
    streams = FakeStreams(get_shard_iterator=[{}, {}], get_records=[page(1, 2, 3, end=True), page(3)])
    reader, _, _ = make_reader(streams)
    assert reader.read().ended
    # WHEN it is rewound (the write of record 3 failed) and read again
    reader.rewind(rewind_to)
    batch = reader.read()
    # THEN a new iterator starts right after the given sequence number
    assert streams.requests("get_shard_iterator")[-1] == {"StreamArn": ARN, "ShardId": SHARD, **request_}
    assert [r["dynamodb"]["SequenceNumber"] for r in batch.records] == ["3"]


def test_reader_limit_out_of_range_raises_value_error() -> None:
    # GIVEN a limit above what GetRecords accepts  WHEN a reader is made  THEN it is refused
    with pytest.raises(ValueError, match=r"^GetRecords limit must be 1\.\.1000, got 1001$"):
        ShardReader(FakeStreams(), ARN, SHARD, TRIM_HORIZON, table="Users", metrics=NullMetrics(), limit=1001)


# --- polling pace: how soon a reader calls GetRecords again --------------------------------------


class TimedStreams:
    """A shard whose records appear on the reader's fake clock: one every ``1 / rate`` seconds from
    ``start`` until ``until`` (or forever); each GetRecords returns those created since the last
    call (at most ``Limit``), taking ``call_seconds`` of fake time. Records every call start."""

    def __init__(
        self,
        time: FakeTime,
        rate: float,
        *,
        start: float = 100.0,
        until: float = float("inf"),
        call_seconds: float = 0.005,
    ) -> None:
        self.time = time
        self.rate = rate
        self.start = start
        self.until = until
        self.call_seconds = call_seconds
        self.handed = 0  # records handed out so far
        self.calls: list[float] = []  # fake time at the start of each GetRecords
        self.latencies: list[float] = []  # per record: from its creation to the call that returned it

    def _created(self, n: int) -> float:
        return self.start + n / self.rate

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "it"}

    def get_records(self, **request: Any) -> dict[str, Any]:
        now = self.time.now
        self.calls.append(now)
        records = []
        while len(records) < request["Limit"] and self._created(self.handed) <= min(now, self.until):
            self.latencies.append(now - self._created(self.handed))
            records.append(record(self.handed + 1))
            self.handed += 1
        self.time.now += self.call_seconds
        return {"Records": records, "NextShardIterator": "it"}


def read_for(reader: ShardReader, time: FakeTime, seconds: float, *, work: float = 0.0) -> None:
    """Read in a loop for ``seconds`` of fake time, spending ``work`` after each page with records."""
    end = time.now + seconds
    while time.now < end:
        if reader.read().records:
            time.now += work


def timed_reader(streams: TimedStreams, time: FakeTime) -> ShardReader:
    return ShardReader(
        streams,
        ARN,
        SHARD,
        TRIM_HORIZON,
        table="Users",
        metrics=NullMetrics(),
        clock=time.clock,
        sleep=time.sleep,
        wall=lambda: NOW,
    )


def most_calls_in_one_second(calls: list[float]) -> int:
    return max(sum(1 for c in calls if start <= c < start + 1.0) for start in calls)


@pytest.mark.parametrize("rate", [0.2, 1.0, 3.0, 75.0, 2000.0])
def test_reader_steady_rate_shard_waits_at_most_the_short_wait(rate: float) -> None:
    # GIVEN a shard written at a steady rate (one record every 5 s up to a backlog-sized flow)
    time = FakeTime()
    streams = TimedStreams(time, rate)
    reader = timed_reader(streams, time)
    # WHEN it is read for two minutes, the worker spending 10 ms on each page
    read_for(reader, time, 120.0, work=0.01)
    # THEN no wait between reads ever exceeds the short wait, so no record waits longer to be read
    assert max(time.sleeps, default=0.0) <= 0.25
    assert max(streams.latencies) <= 0.25 + 0.005 + 0.01 + 1e-9
    assert streams.handed >= int(rate * 119)


def test_reader_idle_shard_converges_to_one_call_every_two_seconds() -> None:
    # GIVEN a shard that got records for 10 s and then none
    time = FakeTime()
    streams = TimedStreams(time, 50.0, until=110.0)
    reader = timed_reader(streams, time)
    # WHEN it is read for five minutes
    read_for(reader, time, 300.0)
    # THEN a few seconds after the last record it backs off, and ends at one call every 2 s
    late = [c for c in streams.calls if c >= 130.0]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(late)]
    assert gaps
    assert set(gaps) == {2.0}
    assert len([c for c in streams.calls if c >= 340.0]) <= 31  # the last minute
    # AND no wait is longer than 2 s, so the first record after an idle spell waits at most that
    assert max(time.sleeps) <= 2.0


def test_reader_idle_from_start_backs_off_after_the_active_spell() -> None:
    # GIVEN a reader of a shard with nothing in it
    streams = FakeStreams(get_shard_iterator=[{}], get_records=[page()] * 40)
    reader, time, _ = make_reader(streams)
    # WHEN it reads forty times
    for _ in range(40):
        reader.read()
    # THEN it polls at the short wait while the shard may still be active, then doubles to 2 s
    short = [s for s in time.sleeps if s == 0.25]
    assert time.sleeps[: len(short)] == short
    assert 0.25 * len(short) == pytest.approx(5.0, abs=0.25)
    assert time.sleeps[len(short) : len(short) + 4] == [0.5, 1.0, 2.0, 2.0]
    assert set(time.sleeps[len(short) + 2 :]) == {2.0}


@pytest.mark.parametrize(
    ("rate", "work"),
    [
        pytest.param(3_000.0, 0.0, id="just-under-full-pages"),
        pytest.param(5.0, 0.0, id="a-record-every-read"),
        pytest.param(75.0, 0.001, id="steady"),
    ],
)
def test_reader_call_rate_never_exceeds_four_per_second(rate: float, work: float) -> None:
    # GIVEN a shard with records at every read (never a full page), and a worker that writes them
    # in no time
    time = FakeTime()
    streams = TimedStreams(time, rate, call_seconds=0.0)
    reader = timed_reader(streams, time)
    # WHEN it is read for a minute
    read_for(reader, time, 60.0, work=work)
    # THEN no second holds more than 4 GetRecords calls (Lambda's pollers' pace)
    assert most_calls_in_one_second(streams.calls) <= 4
    assert min(b - a for a, b in itertools.pairwise(streams.calls)) >= 0.25 - 1e-9


def test_reader_backlog_of_full_pages_is_read_without_waiting() -> None:
    # GIVEN a shard with a backlog far larger than a page (a worker catching up after downtime)
    time = FakeTime()
    streams = TimedStreams(time, 1_000_000.0, start=0.0, until=0.01, call_seconds=0.001)
    reader = timed_reader(streams, time)
    # WHEN it is read page after page, the worker spending 20 ms on each
    pages = [len(reader.read().records) for _ in range(10)]
    # THEN every page is full and no read waits: the backlog drains as fast as it is written
    assert pages == [1000] * 10
    assert time.sleeps == []
    # AND once it is caught up (a page short of full), the pace is back to 4 calls a second at most
    streams.until = time.now + 1.0
    streams.rate = 100.0
    read_for(reader, time, 10.0)
    assert most_calls_in_one_second(streams.calls[10:]) <= 4


def test_reader_rewind_counts_as_activity() -> None:
    # GIVEN a reader that backed off on an idle shard
    streams = FakeStreams(get_shard_iterator=[{}, {}], get_records=[page()] * 44)
    reader, time, _ = make_reader(streams)
    for _ in range(40):
        reader.read()
    assert time.sleeps[-1] == 2.0
    # WHEN it is rewound (a write failed) and reads four times
    reader.rewind("5")
    time.sleeps.clear()
    for _ in range(4):
        reader.read()
    # THEN it reads again at the short pace (the shard is active: records are to be read again)
    assert time.sleeps == [0.25] * 4


def test_reader_answer_without_records_is_transient_not_the_shards_end() -> None:
    # GIVEN a GetRecords answer with no Records and no NextShardIterator (botocore reads a garbled
    # 200 body as {}: taken as it was, the shard looked closed and read to its end)
    streams = FakeStreams(get_shard_iterator=[{"ShardIterator": "it-0"}], get_records=[{}])
    reader, _, _ = make_reader(streams, checkpoint="41")
    # WHEN it is read THEN it fails for now, and the shard is neither ended nor moved on
    with pytest.raises(TransientError) as caught:
        reader.read()
    assert str(caught.value) == (
        f"GetRecords Users shard {SHARD}: DynamoDB Streams answered without Records (nor an end of "
        "the shard); retrying later"
    )
    assert reader.position == "41"


def test_reader_backlog_of_pages_cut_by_the_megabyte_is_read_without_waiting() -> None:
    # GIVEN a backlog of large items: each page is cut by GetRecords' 1 MB limit at 3 records,
    # far fewer than asked for
    def big_page(first: int) -> dict[str, Any]:
        answer = page(first, first + 1, first + 2)
        for one in answer["Records"]:
            one["dynamodb"]["SizeBytes"] = 300_000
        return answer

    streams = FakeStreams(
        get_shard_iterator=[{"ShardIterator": "it-0"}], get_records=[big_page(3 * n) for n in range(5)]
    )
    reader, time, _ = make_reader(streams)
    # WHEN it is read page after page
    for _ in range(5):
        assert len(reader.read().records) == 3
    # THEN no read waited: 900 kB in a page is a backlog (no shard writes that much in 0.25 s)
    assert time.sleeps == []
