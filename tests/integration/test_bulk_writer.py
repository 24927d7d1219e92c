"""BulkWriter against an OpenSearch-compatible server over HTTP, with faults from the fault proxy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from cdcsync.change import ChangeRecord
from cdcsync.metrics import NullMetrics
from cdcsync.plan.actions import Action, DeleteAction, IndexAction
from cdcsync.settings import load_settings
from cdcsync.sink.bulk import BulkLimits, BulkWriter, RetryBudget, WriteResult
from cdcsync.sink.client import build_client
from cdcsync.sink.outcomes import ItemError
from tests.support.fault_proxy import FaultProxy, fault_proxy, is_bulk
from tests.support.records import change, compiled

MAPPING = compiled(table="Users", index="users")
V = 1_700_000_000_000  # a stream version (ms)


@cache
def record(seq: int) -> ChangeRecord:
    return change("MODIFY", {"UserId": seq}, {"UserId": seq}, sequence=f"{seq:021d}")


def writer(url: str, *, request_timeout: float = 10.0, max_actions: int = 1000) -> BulkWriter:
    """A writer as the entry points build it, with short waits so retries cost no real time."""
    return BulkWriter(
        build_client(load_settings(opensearch_url=url), timeout=request_timeout),
        NullMetrics(),
        BulkLimits(max_actions=max_actions),
        RetryBudget(max_retries=3, max_seconds=20.0, first_wait=0.01, longest_wait=0.05),
        request_timeout=request_timeout,
    )


@pytest.fixture
def index(opensearch: OpenSearch, unique_name: str) -> str:
    """An index with an integer field ``n``, so a string there is a mapping error."""
    opensearch.indices.create(
        index=unique_name,
        body={
            "settings": {"index.gc_deletes": "24h"},
            "mappings": {"properties": {"n": {"type": "integer"}}},
        },
    )
    return unique_name


@pytest.fixture
def proxy(opensearch_url: str) -> Iterator[FaultProxy]:
    """The fault proxy, answering as a domain with rest.action.multi.allow_explicit_index: false."""
    with fault_proxy(opensearch_url) as running:
        running.forbid_explicit_index()
        yield running


def put(index: str, doc_id: str, version: int, **doc: Any) -> IndexAction:
    return IndexAction(index, doc_id, None, version, doc, MAPPING, record(version % 1000))


def remove(index: str, doc_id: str, version: int) -> DeleteAction:
    return DeleteAction(index, doc_id, None, version, MAPPING, record(version % 1000))


def write(w: BulkWriter, *actions: Action) -> dict[str, tuple[str, ItemError | None]]:
    results: list[WriteResult] = w.write(list(actions))
    return {r.entry.action.id: (r.outcome, r.error) for r in results}


def stored(opensearch: OpenSearch, index: str, doc_id: str) -> tuple[int, dict[str, Any]] | None:
    try:
        got = opensearch.get(index=index, id=doc_id)
    except NotFoundError:
        return None
    return got["_version"], got["_source"]


def bulk_sizes(proxy: FaultProxy) -> list[int]:
    """Actions per _bulk request the proxy saw (every action here is an index: two lines)."""
    return [body.count(b"\n") // 2 for _, path, body in proxy.requests if is_bulk(path)]


def test_writer_same_version_applied_lower_version_stale(
    opensearch: OpenSearch, opensearch_url: str, index: str
) -> None:
    w = writer(opensearch_url)
    # GIVEN a document written at version V
    assert write(w, put(index, "1", V, n=1)) == {"1": ("written", None)}
    # WHEN the same version comes again with other content THEN it is applied (external_gte)
    assert write(w, put(index, "1", V, n=2)) == {"1": ("written", None)}
    assert stored(opensearch, index, "1") == (V, {"n": 2})
    # WHEN an older version comes THEN it is stale (a success) and changes nothing
    assert write(w, put(index, "1", V - 1000, n=3)) == {"1": ("stale", None)}
    assert stored(opensearch, index, "1") == (V, {"n": 2})
    # WHEN a newer version comes THEN it is applied
    assert write(w, put(index, "1", V + 1000, n=4)) == {"1": ("written", None)}
    assert stored(opensearch, index, "1") == (V + 1000, {"n": 4})


def test_writer_delete_tombstone_makes_older_write_stale(
    opensearch: OpenSearch, opensearch_url: str, index: str
) -> None:
    w = writer(opensearch_url)
    # GIVEN a document deleted at V + 1000
    write(w, put(index, "1", V, n=1))
    assert write(w, remove(index, "1", V + 1000)) == {"1": ("written", None)}
    # WHEN the older index write is replayed after the delete
    answer = write(w, put(index, "1", V, n=1))
    # THEN the tombstone's version makes it stale: the document is not resurrected
    assert answer == {"1": ("stale", None)}
    assert stored(opensearch, index, "1") is None
    # AND a delete of a document that never existed is written (its tombstone is recorded)
    assert write(w, remove(index, "never", V)) == {"never": ("written", None)}
    assert write(w, put(index, "never", V - 1, n=1)) == {"never": ("stale", None)}


def bulk_paths(proxy: FaultProxy) -> list[tuple[str, list[str]]]:
    """Path and action ids of each _bulk request the proxy saw; asserts no action line names _index."""
    requests = []
    for _, path, body in proxy.requests:
        if is_bulk(path):
            metas = [next(iter(json.loads(line).values())) for line in body.splitlines()[::2]]
            assert [meta for meta in metas if "_index" in meta] == []
            requests.append((path, [meta["_id"] for meta in metas]))
    return requests


def test_writer_posts_to_index_path_with_no_index_in_body(
    opensearch: OpenSearch, index: str, proxy: FaultProxy
) -> None:
    # GIVEN a domain that refuses an explicit _index in bulk bodies (the proxy fixture)
    # WHEN three documents are written
    answer = write(writer(proxy.url), *(put(index, str(n), V, n=n) for n in range(3)))
    # THEN they are written by one request posted to /{index}/_bulk, its lines naming no index
    assert answer == {str(n): ("written", None) for n in range(3)}
    assert bulk_paths(proxy) == [(f"/{index}/_bulk", ["0", "1", "2"])]
    assert [stored(opensearch, index, str(n)) for n in range(3)] == [(V, {"n": n}) for n in range(3)]


def test_writer_batch_over_two_indices_posts_one_request_per_index(
    opensearch: OpenSearch, index: str, proxy: FaultProxy
) -> None:
    # GIVEN a second index, and a batch whose actions alternate between the two, "1" in both
    other = f"{index}-other"
    opensearch.indices.create(index=other, body={"settings": {"index.gc_deletes": "24h"}})
    actions = [
        put(index, "1", V, n=1),
        put(other, "1", V, n=2),
        put(index, "2", V, n=3),
        remove(other, "9", V),
    ]
    # WHEN written (at most two actions per request)
    results = writer(proxy.url, max_actions=2).write(actions)
    # THEN each index gets its own request, to its own path, and every document lands in its index
    assert bulk_paths(proxy) == [(f"/{index}/_bulk", ["1", "2"]), (f"/{other}/_bulk", ["1", "9"])]
    assert [(r.entry.action.index, r.entry.action.id, r.outcome) for r in results] == [
        (index, "1", "written"),
        (index, "2", "written"),
        (other, "1", "written"),
        (other, "9", "written"),
    ]
    assert [stored(opensearch, index, "1"), stored(opensearch, other, "1")] == [(V, {"n": 1}), (V, {"n": 2})]


def test_writer_mapping_error_rejects_only_that_document(
    opensearch: OpenSearch, opensearch_url: str, index: str, proxy: FaultProxy
) -> None:
    # GIVEN three documents in one request, the second with a string where an integer is mapped
    w = writer(proxy.url)
    # WHEN written
    answer = write(w, put(index, "1", V, n=1), put(index, "2", V, n="abc"), put(index, "3", V, n=3))
    # THEN the bad one is rejected with OpenSearch's status, type and reason, the others are written
    assert answer == {
        "1": ("written", None),
        "2": (
            "rejected",
            ItemError(
                400,
                "mapper_parsing_exception",
                "failed to parse field [n] of type [integer] in document with id '2'. "
                "Preview of field's value: 'abc' caused by number_format_exception: "
                'For input string: "abc"',
            ),
        ),
        "3": ("written", None),
    }
    assert bulk_sizes(proxy) == [3]  # one request, nothing resent
    assert [stored(opensearch, index, i) for i in "123"] == [(V, {"n": 1}), None, (V, {"n": 3})]


def test_writer_request_too_large_splits_and_succeeds(
    opensearch: OpenSearch, index: str, proxy: FaultProxy
) -> None:
    # GIVEN the proxy answers the first bulk request with 413
    proxy.fail(status=413, times=1)
    w = writer(proxy.url)
    # WHEN four documents are written
    answer = write(w, *(put(index, str(n), V, n=n) for n in range(4)))
    # THEN the request is split in halves, both go through, and every document is there
    assert answer == {str(n): ("written", None) for n in range(4)}
    assert bulk_sizes(proxy) == [4, 2, 2]
    assert [stored(opensearch, index, str(n)) for n in range(4)] == [(V, {"n": n}) for n in range(4)]


@pytest.mark.parametrize("status", [429, 502, 503])
def test_writer_overloaded_request_is_retried(
    opensearch: OpenSearch, index: str, proxy: FaultProxy, status: int
) -> None:
    # GIVEN the next two bulk requests fail with `status`
    proxy.fail(status=status, times=2)
    # WHEN two documents are written THEN the third attempt writes both
    answer = write(writer(proxy.url), put(index, "1", V, n=1), put(index, "2", V, n=2))
    assert answer == {"1": ("written", None), "2": ("written", None)}
    assert bulk_sizes(proxy) == [2, 2, 2]


def test_writer_rejected_items_are_resent_alone(
    opensearch: OpenSearch, index: str, proxy: FaultProxy
) -> None:
    # GIVEN the next bulk rejects every 2nd action with 429 (the rest is forwarded and written)
    proxy.reject_bulk_items(times=1, item_status=429, every=2)
    # WHEN four documents are written
    answer = write(writer(proxy.url), *(put(index, str(n), V, n=n) for n in range(4)))
    # THEN only the two rejected ones are resent, and all four are stored
    assert answer == {str(n): ("written", None) for n in range(4)}
    resent = [body for _, path, body in proxy.requests if is_bulk(path)][1]
    assert [json.loads(line)["index"]["_id"] for line in resent.splitlines()[::2]] == ["1", "3"]
    assert [stored(opensearch, index, str(n)) for n in range(4)] == [(V, {"n": n}) for n in range(4)]


def test_writer_dropped_connection_is_retried(opensearch: OpenSearch, index: str, proxy: FaultProxy) -> None:
    # GIVEN the proxy closes the connection on the next bulk request without answering
    proxy.drop(times=1, path="/_bulk")
    # WHEN a document is written THEN it is resent and written
    assert write(writer(proxy.url), put(index, "1", V, n=1)) == {"1": ("written", None)}
    assert bulk_sizes(proxy) == [1, 1]
    assert stored(opensearch, index, "1") == (V, {"n": 1})


def test_writer_read_timeout_is_retried(opensearch: OpenSearch, index: str, proxy: FaultProxy) -> None:
    # GIVEN the next bulk request is held for 1 s and the client waits 0.3 s
    proxy.delay(times=1, seconds=1.0, path="/_bulk")
    # WHEN a document is written THEN the timed-out request is resent and the document is written
    assert write(writer(proxy.url, request_timeout=0.3), put(index, "1", V, n=1)) == {"1": ("written", None)}
    assert bulk_sizes(proxy) == [1, 1]
    assert stored(opensearch, index, "1") == (V, {"n": 1})


def test_writer_cluster_down_reports_failed_with_connection_error(index: str) -> None:
    # GIVEN a URL where nothing listens (a proxy that was stopped)
    with fault_proxy("http://127.0.0.1:9") as stopped:
        url = stopped.url
    # WHEN written THEN after the retry budget the document is failed with a connection error
    ((outcome, error),) = write(writer(url), put(index, "1", V, n=1)).values()
    assert outcome == "failed"
    assert error is not None
    assert (error.status, error.type) == (None, "connection_error")


# --- routing moves: in a one-shard index two routings of one id are one document -----------------


def routed_index(opensearch: OpenSearch, name: str, shards: int) -> str:
    opensearch.indices.create(
        index=name, body={"settings": {"index.gc_deletes": "24h", "index.number_of_shards": shards}}
    )
    return name


def put_at(index: str, doc_id: str, routing: str, version: int, **doc: Any) -> IndexAction:
    return IndexAction(index, doc_id, routing, version, doc, MAPPING, record(version % 1000))


def remove_at(index: str, doc_id: str, routing: str, version: int) -> DeleteAction:
    return DeleteAction(index, doc_id, routing, version, MAPPING, record(version % 1000))


def move(index: str, doc_id: str, old: str, new: str, version: int, **doc: Any) -> list[Action]:
    """What the planner emits when an item's routing changes: delete where it was, index where it is."""
    return [remove_at(index, doc_id, old, version), put_at(index, doc_id, new, version, **doc)]


def copies(opensearch: OpenSearch, index: str, doc_id: str, *routings: str) -> dict[str, tuple[int, Any]]:
    """The document as each routing finds it (in a one-shard index every routing finds the one copy)."""
    found = {}
    for routing in routings:
        got = opensearch.get(index=index, id=doc_id, routing=routing, ignore=404)
        if got.get("found"):
            found[routing] = (got["_version"], got["_source"])
    return found


def other_shard_routing(opensearch: OpenSearch, index: str, routing: str) -> str:
    """A routing value whose shard is not ``routing``'s (probed with a throwaway document)."""
    opensearch.index(index=index, id="probe", routing=routing, body={}, refresh=True)
    try:
        for candidate in "bcdefghijklmnop":
            if not opensearch.get(index=index, id="probe", routing=candidate, ignore=404).get("found"):
                return candidate
    finally:
        opensearch.delete(index=index, id="probe", routing=routing, refresh=True)
    raise AssertionError(f"no routing lands on another shard than {routing!r} in {index}")


def steps(results: list[WriteResult]) -> list[tuple[str, str | None, str]]:
    return [(r.entry.action.op, r.entry.action.routing, r.outcome) for r in results]


OPS = {"index", "create", "update", "delete"}


def bulk_actions(proxy: FaultProxy) -> list[list[tuple[str, str | None]]]:
    """(op, routing) of each action of each _bulk request the proxy saw."""
    requests = []
    for _, path, body in proxy.requests:
        if is_bulk(path):
            metas = [json.loads(line) for line in body.splitlines() if line.strip()]
            requests.append(
                [(op, meta.get("routing")) for entry in metas for op, meta in entry.items() if op in OPS]
            )
    return requests


def test_writer_routing_move_delete_throttled_never_undoes_index(
    opensearch: OpenSearch, unique_name: str, proxy: FaultProxy
) -> None:
    # GIVEN a one-shard index (OpenSearch's default) holding document "1" at routing a
    index = routed_index(opensearch, unique_name, shards=1)
    w = writer(proxy.url)
    assert steps(w.write([put_at(index, "1", "a", V, n=0)])) == [("index", "a", "written")]
    # AND the next delete item is answered 429 while whatever comes with it is written
    proxy.reject_bulk_items(times=1, item_status=429, every=1, operation="delete")
    # WHEN the item moves to routing b
    results = w.write(move(index, "1", "a", "b", V + 1000, n=1))
    # THEN the document is there (every routing finds the one copy)
    assert copies(opensearch, index, "1", "a", "b") == {"a": (V + 1000, {"n": 1}), "b": (V + 1000, {"n": 1})}
    # AND the delete was retried before the index was sent
    assert bulk_actions(proxy)[1:] == [[("delete", "a")], [("delete", "a")], [("index", "b")]]
    assert steps(results) == [("delete", "a", "written"), ("index", "b", "written")]


def test_writer_routing_move_and_back_in_one_batch_keeps_document(
    opensearch: OpenSearch, opensearch_url: str, unique_name: str
) -> None:
    # GIVEN a one-shard index holding document "1" at routing a
    index = routed_index(opensearch, unique_name, shards=1)
    w = writer(opensearch_url)
    w.write([put_at(index, "1", "a", V, n=0)])
    # WHEN one batch moves it a -> b and back b -> a
    results = w.write(
        [*move(index, "1", "a", "b", V + 1000, n=1), *move(index, "1", "b", "a", V + 2000, n=2)]
    )
    # THEN it is deleted at b first and indexed at a after: the document holds the last state
    assert copies(opensearch, index, "1", "a") == {"a": (V + 2000, {"n": 2})}
    assert steps(results) == [("delete", "b", "written"), ("index", "a", "written")]


@pytest.mark.parametrize(("back", "final"), [(False, "b"), (True, "a")], ids=["a-to-b", "a-to-b-to-a"])
def test_writer_routing_moves_in_many_shard_index_leave_one_copy(
    opensearch: OpenSearch, opensearch_url: str, unique_name: str, *, back: bool, final: str
) -> None:
    # GIVEN a three-shard index holding document "1" at routing a, and a routing b on another shard
    index = routed_index(opensearch, unique_name, shards=3)
    b = other_shard_routing(opensearch, index, "a")
    w = writer(opensearch_url)
    w.write([put_at(index, "1", "a", V, n=0)])
    # WHEN one batch moves it to b (and back to a)
    actions = move(index, "1", "a", b, V + 1000, n=1)
    if back:
        actions += move(index, "1", b, "a", V + 2000, n=2)
    w.write(actions)
    # THEN exactly one copy is left, at the last routing, holding the last state
    expected = (V + 2000, {"n": 2}) if back else (V + 1000, {"n": 1})
    assert copies(opensearch, index, "1", "a", b) == {final if final == "a" else b: expected}
    opensearch.indices.refresh(index=index)
    assert opensearch.count(index=index)["count"] == 1


# --- a request refused whole for one action: split to find it ------------------------------------


def test_writer_overlong_id_rejects_only_that_action(
    opensearch: OpenSearch, index: str, proxy: FaultProxy
) -> None:
    # GIVEN eight documents, the sixth with a 513-byte id: OpenSearch refuses the whole request (400)
    long_id = "x" * 513
    ids = ["0", "1", "2", "3", "4", long_id, "6", "7"]
    # WHEN written
    answer = write(writer(proxy.url), *(put(index, doc_id, V, n=n) for n, doc_id in enumerate(ids)))
    # THEN the request is split in halves down to that action, which alone is rejected with
    # OpenSearch's reason; the seven others are written
    reason = (
        f"Validation Failed: 1: id [{long_id}] is too long, must be no longer than 512 bytes but was: 513;"
    )
    assert answer == {
        **{doc_id: ("written", None) for doc_id in ids if doc_id != long_id},
        long_id: ("rejected", ItemError(400, "action_request_validation_exception", reason)),
    }
    assert bulk_sizes(proxy) == [8, 4, 4, 2, 2, 1, 1]
    assert [stored(opensearch, index, doc_id) for doc_id in ids if doc_id != long_id] == [
        (V, {"n": n}) for n, doc_id in enumerate(ids) if doc_id != long_id
    ]


def test_writer_request_refused_by_every_half_rejects_all_and_ends(
    opensearch: OpenSearch, index: str, proxy: FaultProxy
) -> None:
    # GIVEN the next three bulk requests are refused whole with 400 (a request-wide refusal)
    proxy.fail(status=400, times=3)
    # WHEN eight documents are written
    answer = write(writer(proxy.url), *(put(index, str(n), V, n=n) for n in range(8)))
    # THEN both halves refused alike end the split: every action is rejected, after three requests
    error = ItemError(400, "illegal_argument_exception", "injected by fault_proxy: HTTP 400")
    assert answer == {str(n): ("rejected", error) for n in range(8)}
    assert bulk_sizes(proxy) == [8, 4, 4]
    assert proxy.faults_injected == 3
    assert [stored(opensearch, index, str(n)) for n in range(8)] == [None] * 8
