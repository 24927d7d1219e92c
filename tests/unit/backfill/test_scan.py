"""Segments, key encoding, the shared capacity limit and throttling backoff (no sockets)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from cdcsync.backfill.scan import (
    THROTTLE_ATTEMPTS,
    CapacityLimiter,
    SegmentScan,
    decode_key,
    default_segments,
    encode_key,
    scan_plan,
)
from cdcsync.errors import ConfigError, TransientError


@pytest.mark.parametrize(
    ("size_bytes", "items", "expected"),
    [
        (0, 0, 4),  # a fresh table reports 0: the floor keeps reads and writes overlapping
        (5 << 30, 10, 5),  # one per GiB
        (1 << 20, 750_000, 8),  # one per 100,000 items
        (100 << 30, 10**9, 16),  # the ceiling
    ],
)
def test_default_segments_table_size_picks_count(size_bytes: int, items: int, expected: int) -> None:
    # GIVEN a table size WHEN segments are chosen THEN they follow the documented rule
    assert default_segments(size_bytes, items) == expected


@pytest.mark.parametrize(
    "key",
    [
        {"Pk": {"S": "user-1"}},
        {"Pk": {"N": "12345678901234567890123456789"}, "Sk": {"S": "é|x"}},
        {"Pk": {"B": b"\x00\xff\x10"}, "Sk": {"B": b""}},
    ],
)
def test_encode_key_any_key_decodes_to_the_same_key(key: dict[str, Any]) -> None:
    # GIVEN a LastEvaluatedKey as boto3 returns it WHEN encoded to JSON-safe values and decoded
    encoded = encode_key(key)
    # THEN the decoded key is exactly the original (bytes included) and the encoding is plain text
    assert decode_key(encoded) == key
    assert all(isinstance(text, str) for value in encoded.values() for text in value.values())


def test_encode_key_non_key_type_raises_value_error() -> None:
    # GIVEN a key value of a type no key attribute can have WHEN encoded THEN it is refused
    with pytest.raises(
        ValueError, match=r"key attribute Pk: expected one S, N or B value, got \{'L': \[\]\}"
    ):
        encode_key({"Pk": {"L": []}})


class FakeTime:
    """A clock that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("rate", "page_cost", "pages"), [(10.0, 1.0, 200), (100.0, 128.0, 50), (5.0, 0.5, 300)]
)
def test_capacity_limiter_steady_pages_consume_at_the_rate(rate: float, page_cost: float, pages: int) -> None:
    # GIVEN a limiter and pages of a fixed cost
    time = FakeTime()
    limiter = CapacityLimiter(rate, clock=time.clock, sleep=time.sleep)
    # WHEN the pages are read one after another
    for _ in range(pages):
        reserved = limiter.acquire()
        limiter.settle(reserved, page_cost, 10)
    # THEN past the one-second burst the consumed capacity per second is the rate (within 2%)
    consumed_after_burst = pages * page_cost - rate
    assert time.now == pytest.approx(consumed_after_burst / rate, rel=0.02, abs=page_cost / rate)


def test_capacity_limiter_pause_holds_every_caller_back() -> None:
    # GIVEN a full bucket WHEN DynamoDB throttles and the limiter is paused for 2 s
    time = FakeTime()
    limiter = CapacityLimiter(10.0, clock=time.clock, sleep=time.sleep)
    limiter.pause(2.0)
    # THEN the next page waits the pause plus its own cost
    limiter.acquire()
    assert time.slept == [pytest.approx(2.1)]


def test_capacity_limiter_page_limit_follows_item_cost() -> None:
    # GIVEN a limiter of 40 RCU/s shared by 4 segments
    limiter = CapacityLimiter(40.0, clock=lambda: 0.0, sleep=lambda _: None)
    # WHEN nothing is known yet THEN the first page is small; once items cost 0.01 RCU, a page is 1000
    assert limiter.page_limit(4) == 100
    limiter.settle(1.0, 1.0, 100)
    assert limiter.page_limit(4) == 1000
    limiter.settle(1.0, 100.0, 100)  # now ~0.3 RCU per item on average
    assert limiter.page_limit(4) == 32


def throttled() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "Scan"
    )


class FakeDynamoDb:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []

    def scan(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        result: dict[str, Any] = answer
        return result


def test_segment_scan_throttled_then_served_backs_off_and_continues(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN DynamoDB throttles once, then serves two pages from a resumed key
    start = {"Pk": {"B": b"\x01"}}
    dynamodb = FakeDynamoDb([
        throttled(),
        {"Items": [{"Pk": {"S": "a"}}], "LastEvaluatedKey": {"Pk": {"S": "a"}},
         "ConsumedCapacity": {"CapacityUnits": 2.5}},
        {"Items": [], "ConsumedCapacity": {"CapacityUnits": 0.5}},
    ])  # fmt: skip
    slept: list[float] = []
    scan = SegmentScan(dynamodb, "Users", 2, 4, start, sleep=slept.append)
    # WHEN the segment is read
    with caplog.at_level(logging.WARNING):
        pages = list(scan.pages())
    # THEN it waited once, sent the parallel-scan parameters, and ended on the page without a key
    assert [(page.number, len(page.items), page.consumed, page.last_key) for page in pages] == [
        (0, 1, 2.5, {"Pk": {"S": "a"}}),
        (1, 0, 0.5, None),
    ]
    assert len(slept) == 1
    assert dynamodb.requests[0] == {
        "TableName": "Users", "Segment": 2, "TotalSegments": 4, "ReturnConsumedCapacity": "TOTAL",
        "ExclusiveStartKey": start,
    }  # fmt: skip
    assert dynamodb.requests[2]["ExclusiveStartKey"] == {"Pk": {"S": "a"}}
    assert caplog.messages[0].startswith(
        "DynamoDB throttled the scan of segment 2 of 4 of table Users "
        "(ProvisionedThroughputExceededException); waiting"
    )


@pytest.mark.parametrize(
    "failure",
    [throttled, lambda: ReadTimeoutError(endpoint_url="http://dynamodb")],
    ids=["throttled", "timeout"],
)
def test_segment_scan_failing_beyond_budget_raises_transient_error(failure: Callable[[], Exception]) -> None:
    # GIVEN DynamoDB throttles or times out on every call WHEN the segment is read
    dynamodb = FakeDynamoDb([failure() for _ in range(THROTTLE_ATTEMPTS)])
    # THEN it stops after the budget, with the way on
    scan = SegmentScan(dynamodb, "Users", 0, 1, sleep=lambda _: None)
    with pytest.raises(TransientError) as caught:
        list(scan.pages())
    assert str(caught.value) == (
        "DynamoDB kept throttling or failing the scan of segment 0 of 1 of table Users "
        f"after {THROTTLE_ATTEMPTS} attempts; "
        "lower --max-rcu or raise the table's read capacity, then run again with --resume"
    )


def test_segment_scan_of_a_shared_run_failing_beyond_budget_says_join_the_run_again() -> None:
    # GIVEN a segment of a shared run (shared.py names the run) that DynamoDB keeps throttling
    dynamodb = FakeDynamoDb([throttled() for _ in range(THROTTLE_ATTEMPTS)])
    scan = SegmentScan(dynamodb, "Users", 0, 1, sleep=lambda _: None, rerun="join run r1 again (--run-id r1)")
    # WHEN it gives up THEN its line says how to continue the run (--resume is refused with --run-id)
    with pytest.raises(TransientError, match=r"capacity, then join run r1 again \(--run-id r1\)$"):
        list(scan.pages())


def test_scan_plan_resume_continues_unfinished_segments_from_their_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a stored backfill of 3 segments: one done, one halfway, one not started
    previous = {
        "kind": "scan", "scan_start_ms": 1, "total_segments": 3, "items_read": 7, "finished": False,
        "parts": {"0": {"next_key": None, "done": True},
                  "1": {"next_key": encode_key({"Pk": {"B": b"\x07"}}), "done": False},
                  "2": {"next_key": None, "done": False}},
    }  # fmt: skip
    # WHEN it is resumed with another --segments
    with caplog.at_level(logging.INFO):
        state, todo = scan_plan("Users", previous, resume=True, segments=8, default=4, wall_ms=lambda: 99)
    # THEN the stored record, its segment count and scan start are kept
    assert state is previous
    assert todo == [(1, {"Pk": {"B": b"\x07"}}), (2, None)]
    assert caplog.messages == ["backfill of Users: --segments 8 ignored: resuming with its 3 segments"]


@pytest.mark.parametrize(
    ("previous", "resume", "message"),
    [
        (None, True, "backfill of Users: no backfill to resume; starting a new one"),
        (
            {"finished": True, "started_at": "2026-01-01T00:00:00.000+00:00", "items_read": 9},
            False,
            "backfill of Users: starting over (the finished backfill started at "
            "2026-01-01T00:00:00.000+00:00 had read 9 items; use --resume to continue an unfinished one)",
        ),
    ],
)
def test_scan_plan_new_backfill_starts_over_and_says_so(
    previous: dict[str, Any] | None, resume: bool, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN no or a finished stored backfill WHEN a backfill is planned
    with caplog.at_level(logging.INFO):
        state, todo = scan_plan(
            "Users", previous, resume=resume, segments=None, default=2, wall_ms=lambda: 1_000
        )
    # THEN it starts over with a new scan start, every segment from its beginning
    assert caplog.messages == [message]
    assert todo == [(0, None), (1, None)]
    assert (state["scan_start_ms"], state["total_segments"], state["finished"]) == (1_000, 2, False)


def test_scan_plan_resume_of_an_export_raises_config_error() -> None:
    # GIVEN a stored export backfill WHEN a scan resumes it THEN the operator is told what to do
    with pytest.raises(ConfigError) as caught:
        scan_plan(
            "Users",
            {"kind": "export", "export": "s3://b/x"},
            resume=True,
            segments=None,
            default=1,
            wall_ms=lambda: 0,
        )
    assert str(caught.value) == (
        "--resume: the stored backfill of Users loads an export (s3://b/x), not a scan; "
        "run with --from-export to resume it, or without --resume to start over"
    )


def test_segment_scan_asks_for_the_next_page_while_the_caller_writes_this_one() -> None:
    # GIVEN a segment of three pages
    second_asked = threading.Event()

    class Recording(FakeDynamoDb):
        def scan(self, **request: Any) -> dict[str, Any]:
            answer = super().scan(**request)
            if len(self.requests) == 2:
                second_asked.set()
            return answer

    dynamodb = Recording([
        {"Items": [{"Pk": {"S": "a"}}], "LastEvaluatedKey": {"Pk": {"S": "a"}}},
        {"Items": [{"Pk": {"S": "b"}}], "LastEvaluatedKey": {"Pk": {"S": "b"}}},
        {"Items": [{"Pk": {"S": "c"}}]},
    ])  # fmt: skip
    pages = SegmentScan(dynamodb, "Users", 0, 1).pages()
    # WHEN the caller holds the first page (it is still writing it)
    first = next(pages)
    # THEN the second Scan is already on its way, from the first page's key
    assert second_asked.wait(timeout=10)
    assert dynamodb.requests[1]["ExclusiveStartKey"] == first.last_key
    # AND the pages still come in order, each once, and a closed reader asks for nothing more
    assert [page.items for page in pages] == [[{"Pk": {"S": "b"}}], [{"Pk": {"S": "c"}}]]
    assert len(dynamodb.requests) == 3


def test_segment_scan_closed_early_stops_reading_ahead() -> None:
    # GIVEN a long segment WHEN the caller stops after the first page (a stop, a lost claim)
    dynamodb = FakeDynamoDb([
        {"Items": [{"Pk": {"S": str(n)}}], "LastEvaluatedKey": {"Pk": {"S": str(n)}}} for n in range(10)
    ])  # fmt: skip
    pages = SegmentScan(dynamodb, "Users", 0, 1).pages()
    next(pages)
    pages.close()
    # THEN at most the one page read ahead was asked for, and none after the close
    asked = len(dynamodb.requests)
    assert asked <= 2
    time.sleep(0.2)
    assert len(dynamodb.requests) == asked


def test_segment_scan_closed_while_reading_ahead_returns_without_waiting_for_that_scan() -> None:
    # GIVEN a segment whose second Scan (the one read ahead) hangs: a throttled table backing off,
    # a connection waiting out its 120 s read timeout
    answered = threading.Event()
    asked = threading.Event()

    class Hanging(FakeDynamoDb):
        def scan(self, **request: Any) -> dict[str, Any]:
            if self.requests:
                asked.set()
                answered.wait(timeout=30)
            return super().scan(**request)

    dynamodb = Hanging([
        {"Items": [{"Pk": {"S": "a"}}], "LastEvaluatedKey": {"Pk": {"S": "a"}}},
        {"Items": [{"Pk": {"S": "b"}}]},
    ])  # fmt: skip
    pages = SegmentScan(dynamodb, "Users", 0, 1).pages()
    next(pages)
    assert asked.wait(timeout=10)
    # WHEN the caller stops after the first page (SIGTERM: it then releases its unit, and a
    # Kubernetes pod has terminationGracePeriodSeconds to do it)
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (pages.close(), closed.set()))
    closer.start()
    try:
        # THEN closing does not wait for the page nobody will write
        assert closed.wait(timeout=5), "close() waited for the Scan read ahead"
    finally:
        answered.set()
        closer.join()


def test_segment_scan_answer_without_items_is_retried_not_the_segments_end() -> None:
    # GIVEN a Scan answer with no Items and no LastEvaluatedKey (botocore reads a garbled 200 body as
    # {}: taken as it was, the segment looked finished), then the real page
    dynamodb = FakeDynamoDb([{}, {"Items": [{"Pk": {"S": "a"}}]}])
    slept: list[float] = []
    # WHEN the segment is read
    pages = list(SegmentScan(dynamodb, "Users", 0, 1, sleep=slept.append).pages())
    # THEN the empty answer was retried after a wait, and the page it hid was read
    assert [page.items for page in pages] == [[{"Pk": {"S": "a"}}]]
    assert len(dynamodb.requests) == 2
    assert len(slept) == 1


def test_segment_scan_without_read_ahead_asks_for_a_page_only_when_the_caller_wants_it() -> None:
    # GIVEN a segment of a shared run (read_ahead=False: a process killed mid-unit must not have
    # scanned past the page it was writing, so the unit's next owner repeats one page at most)
    dynamodb = FakeDynamoDb([
        {"Items": [{"Pk": {"S": "a"}}], "LastEvaluatedKey": {"Pk": {"S": "a"}}},
        {"Items": [{"Pk": {"S": "b"}}]},
    ])  # fmt: skip
    pages = SegmentScan(dynamodb, "Users", 0, 1, read_ahead=False).pages()
    # WHEN the caller holds the first page
    next(pages)
    time.sleep(0.2)
    # THEN only that page was asked for; the next comes when the caller asks
    assert len(dynamodb.requests) == 1
    assert [page.items for page in pages] == [[{"Pk": {"S": "b"}}]]
    assert len(dynamodb.requests) == 2
