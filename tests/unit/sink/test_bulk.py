"""BulkWriter against a scripted fake client: chunking, per-item outcomes, retries, splits, metrics.

No sockets and no real sleeping: the fake client records each ``_bulk`` request and answers from a
script (a response, a list of item statuses, or an exception shaped as opensearch-py raises it),
and a fake clock advances only when the writer sleeps or a request "takes" time.
"""

from __future__ import annotations

import io
import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opensearchpy.exceptions import (
    HTTP_EXCEPTIONS,
    ConnectionError,
    ConnectionTimeout,
    TransportError,
)

from cdcsync.change import ChangeRecord
from cdcsync.errors import TransientError
from cdcsync.logs import LogKeys, configure_logging
from cdcsync.metrics import NullMetrics
from cdcsync.plan.actions import Action, DeleteAction, IndexAction
from cdcsync.sink.bulk import BulkLimits, BulkWriter, RetryBudget, WriteResult
from cdcsync.sink.bulk_body import action_lines
from cdcsync.sink.copies import IndexCopies
from cdcsync.sink.outcomes import ItemError
from tests.support.records import change, compiled

MAPPING = compiled(table="Users", index="users")
VERSION = 1_700_000_000_000
T0 = 1000.0

_ERROR_TYPES = {
    400: "mapper_parsing_exception",
    404: "index_not_found_exception",
    409: "version_conflict_engine_exception",
    429: "es_rejected_execution_exception",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "unavailable_shards_exception",
}


@cache
def record(seq: int) -> ChangeRecord:
    return change("MODIFY", {"UserId": seq}, {"UserId": seq}, sequence=f"{seq:021d}")


def index(
    doc_id: str,
    *,
    version: int = VERSION,
    seq: int = 1,
    size: int = 0,
    routing: str | None = None,
    into: str = "users",
) -> IndexAction:
    return IndexAction(
        into, doc_id, routing, version, {"id": doc_id, "pad": "x" * size}, MAPPING, record(seq)
    )


def delete(
    doc_id: str, *, version: int = VERSION, seq: int = 1, routing: str | None = None, into: str = "users"
) -> DeleteAction:
    return DeleteAction(into, doc_id, routing, version, MAPPING, record(seq))


def http_error(status: int, error_type: str | None = None, reason: str = "injected") -> TransportError:
    """A whole-request HTTP error exactly as opensearch-py's connection raises it."""
    kind = error_type or _ERROR_TYPES.get(status, "http_error")
    info = {"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}}
    error = HTTP_EXCEPTIONS.get(status, TransportError)(status, kind, {**info, "status": status})
    assert isinstance(error, TransportError)
    return error


def item(op: str, meta: dict[str, Any], status: int, index: str | None) -> dict[str, Any]:
    """One ``items`` entry of a ``_bulk`` response for an action with this status.

    ``index`` is the request path's (``/{index}/_bulk``), used where the action line names none.
    """
    body: dict[str, Any] = {"_index": meta.get("_index", index), "_id": meta["_id"], "status": status}
    if 200 <= status < 300:
        body.update(_version=meta["version"], result="deleted" if op == "delete" else "created")
    elif status == 404 and op == "delete":
        body.update(_version=meta["version"], result="not_found")
    else:
        body["error"] = {"type": _ERROR_TYPES.get(status, "http_error"), "reason": f"status {status}"}
    return {op: body}


@dataclass
class Request:
    actions: list[tuple[str, dict[str, Any]]]  # (op, metadata) in body order
    params: dict[str, Any]
    size: int
    index: str | None  # the index in the request's path: /{index}/_bulk; None for /_bulk

    @property
    def ids(self) -> list[str]:
        return [meta["_id"] for _, meta in self.actions]


Answer = dict[str, Any] | list[int] | Exception
ALL_OK: list[int] = []  # an empty status list means "every action 201" (or 200 for deletes)


@dataclass
class FakeClient:
    """Stands in for ``OpenSearch``: records ``bulk`` calls and answers them from ``script``."""

    script: list[Answer] = field(default_factory=list)
    default: Answer = field(default_factory=lambda: ALL_OK)
    clock: FakeClock | None = None
    request_seconds: float = 0.0
    requests: list[Request] = field(default_factory=list)
    refuse: Callable[[Request], Exception | None] | None = None  # refuses whole requests first

    def bulk(self, *, body: bytes, params: dict[str, Any], index: str | None = None) -> dict[str, Any]:
        lines = [line for line in body.split(b"\n") if line]
        actions = []
        while lines:
            op, meta = next(iter(json.loads(lines[0]).items()))
            actions.append((op, meta))
            lines = lines[1 if op == "delete" else 2 :]
        self.requests.append(Request(actions, params, len(body), index))
        if self.clock is not None:
            self.clock.now += self.request_seconds
        refusal = self.refuse(self.requests[-1]) if self.refuse is not None else None
        if refusal is not None:
            raise refusal
        answer = self.script.pop(0) if self.script else self.default
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, dict):
            return answer
        statuses = answer or [200 if op == "delete" else 201 for op, _ in actions]
        items = [item(op, meta, status, index) for (op, meta), status in zip(actions, statuses, strict=True)]
        return {"took": 1, "errors": any(s >= 300 for s in statuses), "items": items}


@dataclass
class FakeClock:
    now: float = T0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingMetrics(NullMetrics):
    def __init__(self) -> None:
        self.durations: list[float] = []
        self.retries: list[int] = []

    def bulk_request(self, seconds: float) -> None:
        super().bulk_request(seconds)
        self.durations.append(seconds)

    def bulk_retries(self, count: int = 1) -> None:
        super().bulk_retries(count)
        self.retries.append(count)


@dataclass
class Rig:
    client: FakeClient
    clock: FakeClock
    metrics: RecordingMetrics
    writer: BulkWriter

    def write(self, actions: list[Action], deadline: float | None = None) -> dict[str, WriteResult]:
        return {r.entry.action.id: r for r in self.writer.write(actions, deadline=deadline)}


def rig(
    *script: Answer,
    default: Answer = ALL_OK,
    limits: BulkLimits | None = None,
    budget: RetryBudget | None = None,
    request_seconds: float = 0.0,
) -> Rig:
    clock = FakeClock()
    client = FakeClient(list(script), default, clock, request_seconds)
    metrics = RecordingMetrics()
    writer = BulkWriter(
        client,  # type: ignore[arg-type]  # duck-typed: only bulk() is used
        metrics,
        limits or BulkLimits(),
        budget or RetryBudget(max_retries=3, max_seconds=60.0, first_wait=0.1, longest_wait=10.0),
        request_timeout=30.0,
        sleep=clock.sleep,
        clock=clock,
    )
    return Rig(client, clock, metrics, writer)


@pytest.fixture
def upper_jitter(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """Make full jitter draw the top of its window (deterministic), and record each window."""
    windows: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        windows.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", uniform)
    return windows


def outcomes(results: dict[str, WriteResult]) -> dict[str, str]:
    return {doc_id: result.outcome for doc_id, result in results.items()}


# --- requests: coalescing and chunking ---------------------------------------------------------


def test_write_no_actions_sends_nothing() -> None:
    # GIVEN a writer WHEN it is given no actions THEN no request is made
    r = rig()
    assert r.writer.write([]) == []
    assert r.client.requests == []


def test_write_same_document_sends_one_action_per_request() -> None:
    # GIVEN three actions for document "1" (index, delete, index) and one for "2"
    actions: list[Action] = [index("1", seq=1), delete("1", seq=2), index("2", seq=3), index("1", seq=4)]
    r = rig()
    # WHEN written
    results = r.write(actions)
    # THEN one request carries each document once, "1" as its last action (seq 4), in first-seen order
    (request,) = r.client.requests
    assert [(op, meta["_id"]) for op, meta in request.actions] == [("index", "1"), ("index", "2")]
    assert [rec.sequence_number for rec in results["1"].entry.records] == [f"{seq:021d}" for seq in (1, 2, 4)]


@pytest.mark.parametrize(
    ("count", "max_actions", "sizes"),
    [(5, 2, [2, 2, 1]), (4, 4, [4]), (3, 1, [1, 1, 1]), (1, 1000, [1])],
)
def test_write_chunks_by_max_actions(count: int, max_actions: int, sizes: list[int]) -> None:
    # GIVEN `count` documents and a limit of `max_actions` per request
    r = rig(limits=BulkLimits(max_actions=max_actions, max_bytes=10**9))
    # WHEN written THEN the requests hold `sizes` actions, in order, and all are written
    results = r.write([index(str(n)) for n in range(count)])
    assert [len(req.actions) for req in r.client.requests] == sizes
    assert [i for req in r.client.requests for i in req.ids] == [str(n) for n in range(count)]
    assert set(outcomes(results).values()) == {"written"}


def test_write_chunks_by_max_bytes_and_sends_oversized_action_alone() -> None:
    # GIVEN actions of known sizes and a byte limit that fits two small ones but not the big one
    small = [index(str(n)) for n in range(4)]
    big = index("big", size=500)
    one = len(action_lines(small[0]))
    limit = 2 * one + 10
    assert len(action_lines(big)) > limit
    r = rig(limits=BulkLimits(max_actions=1000, max_bytes=limit))
    # WHEN written
    r.write([small[0], small[1], small[2], big, small[3]])
    # THEN no request exceeds the limit unless it holds one oversized action alone
    assert [req.ids for req in r.client.requests] == [["0", "1"], ["2"], ["big"], ["3"]]
    assert all(req.size <= limit for req in r.client.requests if req.ids != ["big"])


def test_write_sends_external_gte_version_and_request_timeout() -> None:
    # GIVEN one index action WHEN written without a deadline
    r = rig()
    r.write([index("1", version=42)])
    # THEN its metadata carries the external version, the request the configured timeout, and the
    # index is the request's path (/users/_bulk), not a field of the action line
    (request,) = r.client.requests
    assert request.actions == [("index", {"_id": "1", "version": 42, "version_type": "external_gte"})]
    assert (request.index, request.params) == ("users", {"request_timeout": 30.0})


# --- index-scoped requests: /{index}/_bulk, one index per request ------------------------------


def scoped(r: Rig) -> list[tuple[str | None, list[tuple[str, str]]]]:
    """Every request as (the index in its path, its (op, id) actions); no action line names an index."""
    assert [meta for req in r.client.requests for _, meta in req.actions if "_index" in meta] == []
    return [(req.index, [(op, meta["_id"]) for op, meta in req.actions]) for req in r.client.requests]


def test_write_two_indices_posts_one_request_per_index() -> None:
    # GIVEN a batch whose actions go to two indices, interleaved, "1" in both (two documents)
    actions: list[Action] = [index("1"), index("1", into="orders"), delete("3"), index("4", into="orders")]
    r = rig()
    # WHEN written
    results = r.writer.write(actions)
    # THEN each index gets its own request, in order of first sight, posted to its path
    assert scoped(r) == [
        ("users", [("index", "1"), ("delete", "3")]),
        ("orders", [("index", "1"), ("index", "4")]),
    ]
    assert [(res.entry.action.index, res.entry.action.id, res.outcome) for res in results] == [
        ("users", "1", "written"),
        ("users", "3", "written"),
        ("orders", "1", "written"),
        ("orders", "4", "written"),
    ]


def test_write_two_indices_each_chunked_by_max_actions() -> None:
    # GIVEN three actions for users and two for orders, at most two per request
    r = rig(limits=BulkLimits(max_actions=2, max_bytes=10**9))
    # WHEN written
    r.write([index("1"), index("a", into="orders"), index("2"), index("3"), index("b", into="orders")])
    # THEN every index is chunked on its own: no request mixes indices, none exceeds the limit
    assert scoped(r) == [
        ("users", [("index", "1"), ("index", "2")]),
        ("users", [("index", "3")]),
        ("orders", [("index", "a"), ("index", "b")]),
    ]


def test_write_routing_move_beside_other_index_keeps_its_waves() -> None:
    # GIVEN users "1" moving from routing a to b, and orders "1" (another document) in the same batch
    r = rig([429], default=ALL_OK)
    # WHEN written, the move's delete answered 429 once
    actions: list[Action] = [delete("1", routing="a"), index("1", routing="b"), index("1", into="orders")]
    results = r.writer.write(actions)
    # THEN the delete is retried and the index at b is sent only after it, in a later request, while
    # orders' document goes out with the first wave
    assert scoped(r) == [
        ("users", [("delete", "1")]),
        ("orders", [("index", "1")]),
        ("users", [("delete", "1")]),
        ("users", [("index", "1")]),
    ]
    assert [(res.entry.action.index, res.entry.action.op, res.outcome) for res in results] == [
        ("orders", "index", "written"),
        ("users", "delete", "written"),
        ("users", "index", "written"),
    ]


def test_write_index_move_deletes_and_indexes_in_one_wave_to_each_index() -> None:
    # GIVEN an item moving from index orders-eu to orders-us (a templated index): two documents
    r = rig([429], budget=RetryBudget(max_retries=0))
    # WHEN written, the delete in orders-eu answered 429 and not retried (no budget)
    results = r.writer.write([delete("1", into="orders-eu"), index("1", into="orders-us")])
    # THEN the index in orders-us went out in the same wave all the same: the documents are independent
    assert scoped(r) == [("orders-eu", [("delete", "1")]), ("orders-us", [("index", "1")])]
    assert {res.entry.action.index: res.outcome for res in results} == {
        "orders-eu": "failed",
        "orders-us": "written",
    }


_indices = st.sampled_from(["users", "orders"])


@given(st.lists(st.tuples(st.booleans(), _indices, st.sampled_from(["1", "2"]), st.sampled_from(["a", "b"]))))
@settings(max_examples=100, deadline=None)
def test_write_any_batch_over_two_indices_sends_each_index_as_if_alone(
    steps: list[tuple[bool, str, str, str]],
) -> None:
    # GIVEN any batch of index/delete actions over two indices, two ids and two routings
    actions: list[Action] = [
        (index if is_index else delete)(doc_id, routing=routing, seq=n + 1, version=VERSION + n, into=name)
        for n, (is_index, name, doc_id, routing) in enumerate(steps)
    ]
    # WHEN the batch is written, and each index's actions are written alone
    together = rig()
    together.writer.write(actions)
    for name in ("users", "orders"):
        alone = rig()
        alone.writer.write([action for action in actions if action.index == name])
        # THEN each index receives exactly the requests it would receive alone, in the same order
        assert [(i, a) for i, a in scoped(together) if i == name] == scoped(alone)


# --- per-item outcomes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status", "outcome", "error"),
    [
        (index("1"), 201, "written", None),
        (index("1"), 200, "written", None),
        (delete("1"), 200, "written", None),
        (delete("1"), 404, "written", None),
        (index("1"), 404, "rejected", ItemError(404, "index_not_found_exception", "status 404")),
        (index("1"), 409, "stale", None),
        (delete("1"), 409, "stale", None),
        (index("1"), 400, "rejected", ItemError(400, "mapper_parsing_exception", "status 400")),
    ],
)
def test_write_item_status_gives_final_outcome(
    action: Action, status: int, outcome: str, error: ItemError | None
) -> None:
    # GIVEN OpenSearch answers the action with `status` WHEN written
    r = rig([status])
    (result,) = r.write([action]).values()
    # THEN the outcome is final after one request
    assert (result.outcome, result.error, result.attempts) == (outcome, error, 1)
    assert len(r.client.requests) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_write_transient_item_is_retried_then_written(status: int) -> None:
    # GIVEN the first answer fails the item with a transient status, the second accepts it
    r = rig([status])
    (result,) = r.write([index("1")]).values()
    # THEN it is sent twice and written on the second attempt, its first failure remembered
    assert (result.outcome, result.attempts, len(r.client.requests)) == ("written", 2, 2)
    assert result.first_failure_at is not None


def test_write_resubmits_only_failed_items() -> None:
    # GIVEN four documents, of which the 2nd (429) and 4th (503) fail in the first answer
    r = rig([201, 429, 201, 503])
    # WHEN written
    results = r.write([index(str(n)) for n in range(1, 5)])
    # THEN the retry carries only those two, all end written, and the retry metric counts two actions
    assert [req.ids for req in r.client.requests] == [["1", "2", "3", "4"], ["2", "4"]]
    assert outcomes(results) == dict.fromkeys("1234", "written")
    assert {k: v.attempts for k, v in results.items()} == {"1": 1, "2": 2, "3": 1, "4": 2}
    assert r.metrics.retries == [2]


# --- retry budget: attempts, seconds, deadline, jitter -----------------------------------------


def test_write_retries_stop_at_max_retries(upper_jitter: list[tuple[float, float]]) -> None:
    # GIVEN an item that always fails with 503 and a budget of 3 retries
    r = rig(default=[503], budget=RetryBudget(max_retries=3, max_seconds=60.0, first_wait=0.1))
    # WHEN written
    (result,) = r.write([index("1")]).values()
    # THEN it is sent 1 + 3 times, sleeping between, and reported failed with the last error
    assert len(r.client.requests) == 4
    assert r.clock.sleeps == pytest.approx([0.1, 0.2, 0.4])
    assert (result.outcome, result.attempts) == ("failed", 4)
    assert result.error == ItemError(503, "unavailable_shards_exception", "status 503")
    assert r.metrics.retries == [1, 1, 1]


def test_write_zero_retries_sends_once() -> None:
    # GIVEN a budget of no retries WHEN a transient failure comes back THEN nothing is resent
    r = rig(default=[429], budget=RetryBudget(max_retries=0))
    (result,) = r.write([index("1")]).values()
    assert (len(r.client.requests), result.outcome, r.clock.sleeps) == (1, "failed", [])


def test_write_retries_stop_before_max_seconds(upper_jitter: list[tuple[float, float]]) -> None:
    # GIVEN a budget of 5 s (many retries allowed) and waits drawn at the top of 1, 2, 4, ... s
    budget = RetryBudget(max_retries=100, max_seconds=5.0, first_wait=1.0, longest_wait=100.0)
    r = rig(default=[503], budget=budget)
    # WHEN the item keeps failing
    (result,) = r.write([index("1")]).values()
    # THEN the writer sleeps 1 s and 2 s, then stops: a 4 s wait would end at 7 s, past the budget
    assert r.clock.sleeps == [1.0, 2.0]
    assert len(r.client.requests) == 3
    assert result.outcome == "failed"


def test_write_retry_budget_counts_request_time(upper_jitter: list[tuple[float, float]]) -> None:
    # GIVEN requests that take 2 s each and a 5 s budget
    budget = RetryBudget(max_retries=100, max_seconds=5.0, first_wait=1.0, longest_wait=100.0)
    r = rig(default=[503], budget=budget, request_seconds=2.0)
    # WHEN the item keeps failing
    r.write([index("1")])
    # THEN after 2 s + 1 s wait + 2 s the budget is spent: no second wait
    assert (r.clock.sleeps, len(r.client.requests)) == ([1.0], 2)


def test_write_retries_stop_before_deadline(upper_jitter: list[tuple[float, float]]) -> None:
    # GIVEN a deadline 10 s away (1 s of it kept for the answer) and waits of 1, 2, 4, 8 s
    budget = RetryBudget(max_retries=100, max_seconds=600.0, first_wait=1.0, longest_wait=100.0)
    r = rig(default=[503], budget=budget)
    # WHEN the item keeps failing
    (result,) = r.write([index("1")], deadline=T0 + 10).values()
    # THEN the 8 s wait (ending at 15 s) is not taken, and each request's timeout ends before the deadline
    assert r.clock.sleeps == [1.0, 2.0, 4.0]
    assert [req.params["request_timeout"] for req in r.client.requests] == [9.0, 8.0, 6.0, 2.0]
    assert result.outcome == "failed"
    assert r.clock.now < T0 + 10


def test_write_chunk_not_started_when_deadline_too_close() -> None:
    # GIVEN three one-action requests that take 5 s each and a deadline 8 s away
    r = rig(limits=BulkLimits(max_actions=1), request_seconds=5.0)
    # WHEN written
    results = r.write([index("1"), index("2"), index("3")], deadline=T0 + 8)
    # THEN the third request is not started (it could not be answered in time) and is reported failed
    assert [req.ids for req in r.client.requests] == [["1"], ["2"]]
    assert outcomes(results) == {"1": "written", "2": "written", "3": "failed"}
    assert results["3"].attempts == 0
    assert results["3"].error == ItemError(
        None,
        "deadline_exceeded",
        "not sent: less than 1 s was left before the caller's deadline; reported as failed for redelivery",
    )


def test_write_split_half_not_started_when_deadline_too_close() -> None:
    # GIVEN requests that take 5 s, a 413 on the first, and a deadline 10.5 s away
    r = rig(http_error(413), request_seconds=5.0)
    # WHEN four actions are written
    results = r.write([index(str(n)) for n in range(1, 5)], deadline=T0 + 10.5)
    # THEN the first half goes out at 5 s, the second half (due at 10 s) is left unsent
    assert [req.ids for req in r.client.requests] == [["1", "2", "3", "4"], ["1", "2"]]
    assert outcomes(results) == {"1": "written", "2": "written", "3": "failed", "4": "failed"}
    assert results["3"].error is not None
    assert results["3"].error.type == "deadline_exceeded"


def test_write_waits_use_full_jitter_windows(upper_jitter: list[tuple[float, float]]) -> None:
    # GIVEN first_wait 0.5 s capped at 4 s WHEN six retries happen
    budget = RetryBudget(max_retries=6, max_seconds=600.0, first_wait=0.5, longest_wait=4.0)
    r = rig(default=[503], budget=budget)
    r.write([index("1")])
    # THEN each wait is drawn uniformly from [0, min(cap, first_wait * 2**n)]: full jitter
    # (tenacity draws the next wait before it checks the budget, so one more window is drawn)
    assert upper_jitter[:6] == [(0, 0.5), (0, 1.0), (0, 2.0), (0, 4.0), (0, 4.0), (0, 4.0)]
    assert r.clock.sleeps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_write_waits_stay_within_jitter_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a real, seeded random source (the global one is left alone)
    monkeypatch.setattr(random, "uniform", random.Random(20240501).uniform)
    budget = RetryBudget(max_retries=8, max_seconds=600.0, first_wait=0.5, longest_wait=4.0)
    r = rig(default=[503], budget=budget)
    # WHEN eight retries happen
    r.write([index("1")])
    # THEN every wait lies in its window, and they are not all at the top (they are random)
    highs = [min(4.0, 0.5 * 2**n) for n in range(8)]
    assert len(r.clock.sleeps) == 8
    assert all(0 <= wait <= high for wait, high in zip(r.clock.sleeps, highs, strict=True))
    assert r.clock.sleeps != highs


# --- whole-request failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (http_error(429), ItemError(429, "es_rejected_execution_exception", "injected")),
        (http_error(503), ItemError(503, "unavailable_shards_exception", "injected")),
        (http_error(502, "bad_gateway"), ItemError(502, "bad_gateway", "injected")),
        (
            ConnectionError("N/A", "connection refused", OSError(111, "refused")),
            ItemError(None, "connection_error", "connection refused"),
        ),
        (
            ConnectionTimeout("TIMEOUT", "Read timed out. (read timeout=30)", OSError("timeout")),
            ItemError(None, "connection_timeout", "Read timed out. (read timeout=30)"),
        ),
        # Documented choice: auth failures are retried (every record would fail alike; the fix is
        # a permission), not dead-lettered.
        (http_error(401, "security_exception"), ItemError(401, "security_exception", "injected")),
        (http_error(403, "security_exception"), ItemError(403, "security_exception", "injected")),
    ],
)
def test_write_request_failure_retries_every_action(error: TransportError, expected: ItemError) -> None:
    # GIVEN the whole first request fails with `error`, then the cluster recovers
    r = rig(error)
    # WHEN two documents are written
    results = r.write([index("1"), index("2")])
    # THEN both are resent and written
    assert [req.ids for req in r.client.requests] == [["1", "2"], ["1", "2"]]
    assert outcomes(results) == {"1": "written", "2": "written"}
    # AND when it never recovers, both end failed with that error
    r = rig(default=error, budget=RetryBudget(max_retries=1))
    assert {k: (v.outcome, v.error) for k, v in r.write([index("1"), index("2")]).items()} == {
        "1": ("failed", expected),
        "2": ("failed", expected),
    }


def test_write_request_failure_logs_retry(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a 503 on the whole request WHEN two actions are written
    r = rig(http_error(503, reason="no shards"))
    with caplog.at_level(logging.WARNING, logger="cdcsync.sink.bulk"):
        r.write([index("1"), index("2")])
    # THEN the operator reads what failed and that it is retried
    assert caplog.messages == [
        "bulk request of 2 actions failed, will retry: unavailable_shards_exception: no shards (status 503)"
    ]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            http_error(400, "illegal_argument_exception", "malformed action/metadata line [1]"),
            ItemError(400, "illegal_argument_exception", "malformed action/metadata line [1]"),
        ),
        (http_error(404), ItemError(404, "index_not_found_exception", "injected")),
        (http_error(405, "method_not_allowed"), ItemError(405, "method_not_allowed", "injected")),
    ],
)
def test_write_request_client_error_on_every_half_rejects_every_action(
    error: TransportError, expected: ItemError
) -> None:
    # GIVEN every request fails whole with a 4xx other than 401/403/413/429 (request-wide)
    r = rig(default=error)
    # WHEN eight actions are written
    results = r.write([index(str(n)) for n in range(8)])
    # THEN the request is tried in halves once; both halves refused alike end it: nothing is
    # resent, and every action is rejected with that error
    assert [len(req.ids) for req in r.client.requests] == [8, 4, 4]
    assert {k: (v.outcome, v.error, v.attempts) for k, v in results.items()} == {
        str(n): ("rejected", expected, 1) for n in range(8)
    }
    assert all(result.first_failure_at is not None for result in results.values())
    assert r.clock.sleeps == []


LONG = "x" * 513  # OpenSearch refuses ids over 512 bytes, and with them the whole bulk request


def refuse_long_ids(request: Request) -> Exception | None:
    """Answer as OpenSearch does: a 400 for the whole request, listing every id over 512 bytes."""
    bad = [doc_id for doc_id in request.ids if len(doc_id.encode()) > 512]
    if not bad:
        return None
    return http_error(400, "action_request_validation_exception", validation_failed(*bad))


def validation_failed(*ids: str) -> str:
    problems = (
        f"{n}: id [{doc_id}] is too long, must be no longer than 512 bytes but was: {len(doc_id)};"
        for n, doc_id in enumerate(ids, 1)
    )
    return "Validation Failed: " + "".join(problems)


def test_write_request_refused_for_one_action_isolates_it() -> None:
    # GIVEN eight actions, the sixth with an id OpenSearch refuses (and the whole request with it)
    ids = ["0", "1", "2", "3", "4", LONG, "6", "7"]
    r = rig()
    r.client.refuse = refuse_long_ids
    # WHEN written
    results = r.write([index(doc_id) for doc_id in ids])
    # THEN the request is split in halves down to the refused action, which alone is rejected
    assert [req.ids for req in r.client.requests] == [
        ids,
        ids[:4],
        ids[4:],
        ids[4:6],
        ids[6:],
        ["4"],
        [LONG],
    ]
    assert {k: (v.outcome, v.attempts) for k, v in results.items()} == {
        **{doc_id: ("written", 1) for doc_id in ids if doc_id != LONG},
        LONG: ("rejected", 1),
    }
    assert results[LONG].error == ItemError(
        400, "action_request_validation_exception", validation_failed(LONG)
    )
    assert r.clock.sleeps == []
    assert r.metrics.retries == []


@pytest.mark.parametrize(
    ("keys", "shown"), [("plain", f"[{LONG}]"), ("hash", "[hidden]"), ("none", "[hidden]")]
)
def test_write_request_refused_log_keys_below_plain_hides_ids_in_the_warnings(
    keys: LogKeys, shown: str
) -> None:
    # GIVEN logs with CDCSYNC_LOG_KEYS=keys, and a request OpenSearch refuses whole for one long id
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("json", "INFO", stream=stream, keys=keys)
    try:
        r = rig()
        r.client.refuse = refuse_long_ids
        # WHEN two actions are written
        r.write([index("0"), index(LONG)])
    finally:
        root.handlers[:], root.level = handlers, level
    # THEN the request-level warnings quote the refused id only with plain keys
    reason = validation_failed(LONG).replace(f"[{LONG}]", shown)
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == [
        f"bulk request of 2 actions refused: action_request_validation_exception: {reason} (status 400); "
        "sending it in halves to find the actions it was refused for"
    ]


def test_write_request_refused_for_two_actions_rejects_both_only() -> None:
    # GIVEN two refused ids, one in each half
    long_b = "y" * 600
    ids = ["0", LONG, "2", "3", "4", "5", long_b, "7"]
    r = rig()
    r.client.refuse = refuse_long_ids
    # WHEN written THEN each is isolated and rejected with its own reason, the rest written
    results = r.write([index(doc_id) for doc_id in ids])
    assert {k: v.outcome for k, v in results.items()} == {
        doc_id: "rejected" if doc_id in (LONG, long_b) else "written" for doc_id in ids
    }
    assert results[long_b].error == ItemError(
        400, "action_request_validation_exception", validation_failed(long_b)
    )


@pytest.mark.parametrize("position", [0, 499, 777, 999])
def test_write_request_refused_splitting_takes_log2_levels(position: int) -> None:
    # GIVEN 1000 actions, one of them refused
    ids = [LONG if n == position else str(n) for n in range(1000)]
    r = rig()
    r.client.refuse = refuse_long_ids
    # WHEN written
    results = r.write([index(doc_id) for doc_id in ids])
    # THEN at most ten levels of halves (1000 -> 500 -> ... -> 1), two requests each, find it
    assert 1 + 2 * math.floor(math.log2(1000)) <= len(r.client.requests) <= 1 + 2 * math.ceil(math.log2(1000))
    assert [k for k, v in results.items() if v.outcome != "written"] == [LONG]


def test_write_request_refused_logs_split(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a request refused whole, then request-wide
    r = rig(default=http_error(400, "illegal_argument_exception", "bad request"))
    with caplog.at_level(logging.WARNING, logger="cdcsync.sink.bulk"):
        r.write([index("1"), index("2")])
    # THEN the operator reads what was refused, that it is split, and that it was request-wide
    assert caplog.messages == [
        "bulk request of 2 actions refused: illegal_argument_exception: bad request (status 400); "
        "sending it in halves to find the actions it was refused for",
        "both halves of the bulk request of 2 actions refused alike: illegal_argument_exception: bad "
        "request (status 400); rejecting all 2",
    ]


def test_write_too_large_splits_in_halves_recursively() -> None:
    # GIVEN 413 for the first request of 4 and for its first half of 2
    r = rig(http_error(413, "content_too_long"), http_error(413, "content_too_long"))
    # WHEN written
    results = r.write([index(str(n)) for n in range(1, 5)])
    # THEN the request is split 4 -> 2 + 2, the first half again 2 -> 1 + 1, and all are written once
    assert [req.ids for req in r.client.requests] == [
        ["1", "2", "3", "4"],
        ["1", "2"],
        ["1"],
        ["2"],
        ["3", "4"],
    ]
    assert outcomes(results) == dict.fromkeys("1234", "written")
    assert {result.attempts for result in results.values()} == {1}
    assert r.clock.sleeps == []
    assert r.metrics.retries == []


def test_write_too_large_single_action_is_rejected() -> None:
    # GIVEN one action that the cluster refuses as too large on its own
    action = index("1", size=100)
    r = rig(default=http_error(413, "content_too_long"))
    # WHEN written
    (result,) = r.write([action]).values()
    # THEN it is rejected (dead-lettered) with the request_too_large type, after one request
    size = len(action_lines(action))
    assert (result.outcome, result.attempts, len(r.client.requests)) == ("rejected", 1, 1)
    assert result.error == ItemError(
        413, "request_too_large", f"one action of {size} bytes exceeds http.max_content_length"
    )
    assert result.first_failure_at is not None


@pytest.mark.parametrize("answered", [0, 1, 3])
def test_write_response_item_count_mismatch_is_retried(answered: int) -> None:
    # GIVEN a response with `answered` items for a request of 2 actions, then a proper one
    wrong = {"took": 1, "errors": False, "items": [{"index": {"_id": "x", "status": 201}}] * answered}
    r = rig(wrong)
    # WHEN written THEN both actions are resent and written
    results = r.write([index("1"), index("2")])
    assert [req.ids for req in r.client.requests] == [["1", "2"], ["1", "2"]]
    assert outcomes(results) == {"1": "written", "2": "written"}
    # AND when it keeps happening, the error says what was wrong
    r = rig(default=wrong, budget=RetryBudget(max_retries=0))
    (result, _) = r.write([index("1"), index("2")]).values()
    assert result.error == ItemError(None, "bulk_response_mismatch", f"{answered} items answered 2 actions")


# --- metrics -----------------------------------------------------------------------------------


def test_write_observes_each_request_duration() -> None:
    # GIVEN requests that take 0.25 s, a 413 on the first one, and a 429 on one item afterwards
    r = rig(http_error(413), [201, 429], request_seconds=0.25)
    # WHEN four actions are written
    r.write([index(str(n)) for n in range(1, 5)])
    # THEN every request (the refused one, both halves and the retry) is observed at its own duration
    assert [req.ids for req in r.client.requests] == [["1", "2", "3", "4"], ["1", "2"], ["3", "4"], ["2"]]
    assert r.metrics.durations == [0.25, 0.25, 0.25, 0.25]
    assert r.metrics.retries == [1]


def test_write_observes_duration_of_failed_request() -> None:
    # GIVEN a connection error after 3 s WHEN written with no retries THEN the 3 s are observed
    r = rig(default=ConnectionError("N/A", "reset", OSError()), budget=RetryBudget(max_retries=0))
    r.client.request_seconds = 3.0
    r.write([index("1")])
    assert r.metrics.durations == [3.0]


def test_write_non_transport_exception_propagates() -> None:
    # GIVEN a client bug (not an OpenSearch transport error) WHEN written THEN it is not swallowed
    r = rig(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        r.write([index("1")])


# --- routing moves: one document is deleted where it was strictly before it is indexed anew -----

Sent = tuple[str, str, str | None, int]  # op, id, routing, version


def sent(r: Rig) -> list[list[Sent]]:
    """Every request, as the actions it carried."""
    return [
        [(op, meta["_id"], meta.get("routing"), meta["version"]) for op, meta in req.actions]
        for req in r.client.requests
    ]


def by_step(results: list[WriteResult]) -> list[tuple[str, str | None, str, int]]:
    """(op, routing, outcome, attempts) per result, in the order the results came."""
    return [(res.entry.action.op, res.entry.action.routing, res.outcome, res.attempts) for res in results]


def test_write_routing_move_sends_old_routing_delete_in_earlier_request() -> None:
    # GIVEN a move of document "1" from routing a to b (delete a, index b, one version) and document "2"
    r = rig()
    # WHEN written
    results = r.writer.write(
        [delete("1", routing="a", seq=1), index("1", routing="b", seq=1), index("2", seq=2)]
    )
    # THEN the delete goes with the other documents, the index alone in a later request
    assert sent(r) == [
        [("delete", "1", "a", VERSION), ("index", "2", None, VERSION)],
        [("index", "1", "b", VERSION)],
    ]
    assert by_step(results) == [
        ("delete", "a", "written", 1),
        ("index", None, "written", 1),
        ("index", "b", "written", 1),
    ]


def test_write_routing_move_and_back_deletes_other_routing_before_index() -> None:
    # GIVEN document "1" moved a -> b at V and back b -> a at V + 1000 in one batch
    later = VERSION + 1000
    actions: list[Action] = [
        delete("1", routing="a", seq=1),
        index("1", routing="b", seq=1),
        delete("1", routing="b", seq=2, version=later),
        index("1", routing="a", seq=2, version=later),
    ]
    r = rig()
    # WHEN written
    r.writer.write(actions)
    # THEN the delete at b (the same document in a one-shard index) is sent first, the index at a after
    # it, never [index a, delete b] at one version in one request, where the delete would win
    assert sent(r) == [[("delete", "1", "b", later)], [("index", "1", "a", later)]]


def test_write_routing_move_delete_retried_before_index_is_sent() -> None:
    # GIVEN the move's delete is answered 429 once
    r = rig([429])
    # WHEN written
    results = r.writer.write([delete("1", routing="a"), index("1", routing="b")])
    # THEN the delete is retried, and the index is sent only after the delete succeeded
    assert sent(r) == [
        [("delete", "1", "a", VERSION)],
        [("delete", "1", "a", VERSION)],
        [("index", "1", "b", VERSION)],
    ]
    assert by_step(results) == [("delete", "a", "written", 2), ("index", "b", "written", 1)]


def test_write_routing_move_delete_failing_holds_index_back() -> None:
    # GIVEN the move's delete keeps failing with 429, within a budget of one retry
    r = rig(default=[429], budget=RetryBudget(max_retries=1))
    # WHEN written
    results = r.writer.write([delete("1", routing="a", seq=1), index("1", routing="b", seq=1)])
    # THEN the index is never sent, and both are failed, so the record is delivered again and the
    # pair is replayed in order (a delete is never resent after its paired index was written)
    assert sent(r) == [[("delete", "1", "a", VERSION)], [("delete", "1", "a", VERSION)]]
    assert by_step(results) == [("delete", "a", "failed", 2), ("index", "b", "failed", 0)]
    assert results[1].error == ItemError(
        None,
        "held_back",
        'not sent: the delete of "1" at routing "a" in "users" before it failed; reported as failed '
        "for redelivery",
    )


def test_write_routing_move_rejected_delete_still_sends_index() -> None:
    # GIVEN the move's delete is refused (a 4xx: dead-lettered, never retried)
    r = rig([400])
    # WHEN written THEN the index at the new routing still goes out after it
    results = r.writer.write([delete("1", routing="a"), index("1", routing="b")])
    assert by_step(results) == [("delete", "a", "rejected", 1), ("index", "b", "written", 1)]


_ids = st.sampled_from(["1", "2"])
_routings = st.sampled_from(["a", "b", "c"])
_steps = st.lists(st.tuples(st.booleans(), _ids, _routings), min_size=1, max_size=12)


@given(_steps)
@settings(max_examples=200, deadline=None)
def test_write_any_batch_converges_in_one_and_many_shard_indices(steps: list[tuple[bool, str, str]]) -> None:
    # GIVEN any batch of index/delete actions over two ids and three routings, versions in stream order
    actions: list[Action] = [
        (index if is_index else delete)(doc_id, routing=routing, seq=n + 1, version=VERSION + 1000 * n)
        for n, (is_index, doc_id, routing) in enumerate(steps)
    ]
    r = rig()
    # WHEN written
    r.writer.write(actions)
    # THEN no request carries one id twice
    for request in r.client.requests:
        assert len(request.ids) == len(set(request.ids))
    # AND applying the requests in order with external_gte gives the state of the last action, both
    # where every routing is one document (one shard) and where each routing is its own copy
    one_shard: dict[str, tuple[int, str | None]] = {}  # id -> (version, routing if present)
    many_shards: dict[tuple[str, str | None], tuple[int, bool]] = {}  # (id, routing) -> (version, present)
    for op, doc_id, routing, version in (step for request in sent(r) for step in request):
        if version >= one_shard.get(doc_id, (0, None))[0]:
            one_shard[doc_id] = (version, routing if op == "index" else None)
        if version >= many_shards.get((doc_id, routing), (0, False))[0]:
            many_shards[(doc_id, routing)] = (version, op == "index")
    last = {action.id: action for action in actions}
    assert {k: v[1] for k, v in one_shard.items()} == {
        k: a.routing if a.op == "index" else None for k, a in last.items()
    }
    assert {k for k, (_, present) in many_shards.items() if present} == {
        (k, a.routing) for k, a in last.items() if a.op == "index"
    }


@dataclass
class ShardedStore:
    """An in-memory ``_bulk`` endpoint: one copy per (id, shard), external_gte versions, injected 429s."""

    shard_of: dict[str | None, int]
    faults: list[bool]  # per action, in order sent: answer 429 (not applied); afterwards none
    docs: dict[tuple[str, int], tuple[int, bool]] = field(default_factory=dict)  # -> (version, present)

    def bulk(self, *, body: bytes, params: dict[str, Any], index: str | None = None) -> dict[str, Any]:
        lines = [json.loads(line) for line in body.split(b"\n") if line]
        items = []
        while lines:
            ((op, meta),) = lines.pop(0).items()
            if op == "index":
                lines.pop(0)
            key = (meta["_id"], self.shard_of[meta.get("routing")])
            if self.faults and self.faults.pop(0):
                status = 429
            elif meta["version"] < self.docs.get(key, (0, False))[0]:
                status = 409
            else:
                status = 201 if op == "index" else 200
                self.docs[key] = (meta["version"], op == "index")
            items.append(item(op, meta, status, index))
        return {"took": 1, "errors": True, "items": items}


@given(
    st.lists(st.tuples(_ids, st.one_of(st.none(), _routings)), min_size=1, max_size=10),
    st.sampled_from([{"a": 0, "b": 0, "c": 0}, {"a": 0, "b": 1, "c": 0}]),
    st.lists(st.booleans(), max_size=30),
)
@settings(max_examples=200, deadline=None)
def test_write_replayed_suffixes_with_throttled_items_converge(
    history: list[tuple[str, str | None]], shard_of: dict[str | None, int], faults: list[bool]
) -> None:
    # GIVEN a history of items set to a routing or removed (None), planned as the planner does: a
    # changed routing deletes where the item was, then indexes where it is, at the record's version
    # (two records per second, so versions tie), and a store answering some actions 429
    per_record: list[list[Action]] = []
    where: dict[str, str | None] = {}
    for n, (doc_id, routing) in enumerate(history):
        version, before = VERSION + 1000 * (n // 2), where.get(doc_id)
        steps: list[Action] = []
        if before is not None and before != routing:
            steps.append(delete(doc_id, routing=before, seq=n, version=version))
        if routing is not None:
            steps.append(index(doc_id, routing=routing, seq=n, version=version))
        per_record.append(steps)
        where[doc_id] = routing
    store = ShardedStore(shard_of, faults)
    writer = BulkWriter(store, NullMetrics(), budget=RetryBudget(max_retries=1), sleep=lambda _: None)  # type: ignore[arg-type]
    # WHEN the batch is written, and replayed from the earliest failed record until nothing fails
    start = 0
    for _ in range(len(faults) + 1):
        results = writer.write([a for steps in per_record[start:] for a in steps])
        failed = [int(r.entry.earliest.sequence_number) for r in results if r.outcome == "failed"]
        if not failed:
            break
        start = min(failed)
    else:
        raise AssertionError("still failing after every fault was used up")
    # THEN each item has exactly one copy, where its last record put it, or none if it was removed
    present = {key for key, (_, exists) in store.docs.items() if exists}
    assert present == {(doc_id, shard_of[r]) for doc_id, r in where.items() if r is not None}


# --- dual writes during a rebuild ---------------------------------------------------------------


class FixedCopies(IndexCopies):
    """The rebuild aliases as a writer last read them (no cluster)."""

    def __init__(self, targets: dict[str, str] | Exception) -> None:
        self.answer = targets

    def targets(self) -> dict[str, str]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return dict(self.answer)


@pytest.mark.parametrize(
    ("copy_answers", "outcome", "error_type"),
    [
        ([ALL_OK], "written", None),
        ([[409]], "written", None),  # the copy found a newer version: stale there, written here
        ([[400]], "rejected", "mapper_parsing_exception"),
        ([[503]] * 4, "failed", "unavailable_shards_exception"),
    ],
    ids=["written", "copy-stale", "copy-rejected", "copy-failed"],
)
def test_bulk_writer_copy_outcome_decides_original_when_worse(
    copy_answers: list[Answer], outcome: str, error_type: str | None
) -> None:
    # GIVEN a writer during a rebuild of "users" (users-rebuild -> users-000002)
    r = rig(ALL_OK, *copy_answers)
    r.writer.copies = FixedCopies({"users": "users-000002"})
    # WHEN one action is written
    (result,) = r.writer.write([index("1")])
    # THEN it went to both indices, one result came back, and the worse outcome is the record's
    assert [request.index for request in r.client.requests][:2] == ["users", "users-000002"]
    assert result.entry.action.index == "users"
    assert result.outcome == outcome
    assert (result.error.type if result.error else None) == error_type


def test_bulk_writer_rebuild_aliases_unreadable_writes_nothing_and_fails_all() -> None:
    # GIVEN a writer that cannot read the rebuild aliases
    r = rig()
    r.writer.copies = FixedCopies(
        TransientError("reading the rebuild aliases (*-rebuild): OpenSearch is down")
    )
    # WHEN actions are written
    results = r.writer.write([index("1"), delete("2")])
    # THEN nothing is sent and every action failed (retried later), so no change reaches only one index
    assert r.client.requests == []
    assert [(res.outcome, res.error.type if res.error else None) for res in results] == [
        ("failed", "rebuild_aliases_unknown"),
        ("failed", "rebuild_aliases_unknown"),
    ]
