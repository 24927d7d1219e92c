"""Sampling segments and walking an index without a cluster (in-memory fake client)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from opensearchpy.exceptions import NotFoundError, TransportError

from cdcsync.errors import TransientError
from cdcsync.verify.reads import sample_segments, scan_segment, walk_documents


@pytest.mark.parametrize(
    ("size", "item_count", "total"),
    [(100, 10_000, 1000), (5, 20, 20), (1, 0, 100), (10, 10**9, 1_000_000)],
)
def test_sample_segments_visit_each_segment_once(size: int, item_count: int, total: int) -> None:
    # GIVEN a sample size and the table's item count
    # WHEN the segments to scan are drawn
    segments = list(itertools.islice(sample_segments(size, item_count, random.Random(7)), 2000))
    # THEN they split the table so one holds ~size/10 items, and form a permutation of all segments
    assert {t for _, t in segments} == {total}
    if total <= 1000:
        assert sorted(s for s, _ in segments) == list(range(total))


def test_sample_segments_order_depends_on_the_random_source() -> None:
    first = [s for s, _ in sample_segments(10, 1000, random.Random(1))][:5]
    second = [s for s, _ in sample_segments(10, 1000, random.Random(2))][:5]
    assert first != second


class FakeClient:
    """Answers like OpenSearch for the calls the walk makes; PIT support is switchable."""

    def __init__(self, ids: list[str], *, pit: bool) -> None:
        self.ids = ids
        self.pit = pit
        self.released: list[str] = []

    def create_pit(self, index: str, params: dict[str, Any]) -> dict[str, Any]:
        if not self.pit:
            raise TransportError(
                400, "illegal_argument_exception", {"error": {"type": "illegal_argument_exception"}}
            )
        return {"pit_id": "p1"}

    def _page(self, start: int) -> dict[str, Any]:
        hits = [
            {"_index": "i", "_id": i, "sort": [n]} for n, i in enumerate(self.ids) if start <= n < start + 2
        ]
        return {"hits": {"hits": hits}, "pit_id": "p1", "_scroll_id": f"s{start + 2}"}

    def search(self, body: dict[str, Any], index: str | None = None, params: Any = None) -> dict[str, Any]:
        after = body.get("search_after")
        return self._page(after[0] + 1 if after else 0)

    def scroll(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._page(int(body["scroll_id"][1:]))

    def delete_pit(self, body: dict[str, Any]) -> None:
        self.released.append("pit")

    def clear_scroll(self, body: dict[str, Any]) -> None:
        self.released.append("scroll")


@pytest.mark.parametrize(("pit", "released"), [(True, "pit"), (False, "scroll")])
def test_walk_documents_pages_through_every_document(pit: bool, released: str) -> None:
    # GIVEN an index of five documents, with or without point-in-time support
    client = FakeClient(["a", "b", "c", "d", "e"], pit=pit)
    # WHEN it is walked
    pages = [[hit["_id"] for hit in page] for page in walk_documents(client, "i")]  # type: ignore[arg-type]
    # THEN every document comes once, page by page, and the search context is released
    assert pages == [["a", "b"], ["c", "d"], ["e"]]
    assert client.released == [released]


def test_walk_documents_missing_index_has_no_documents() -> None:
    # GIVEN no such index
    class Missing(FakeClient):
        def create_pit(self, index: str, params: dict[str, Any]) -> dict[str, Any]:
            raise NotFoundError(
                404, "index_not_found_exception", {"error": {"type": "index_not_found_exception"}}
            )

    # WHEN it is walked THEN nothing is found
    assert list(walk_documents(Missing([], pit=True), "nope")) == []  # type: ignore[arg-type]


def test_scan_segment_answer_without_items_is_transient_not_the_segments_end() -> None:
    # GIVEN a Scan answer with no Items (botocore reads a garbled 200 body as {}: taken as it was,
    # the segment looked finished, the rest of the table unread, and repair would delete its documents)
    class Garbled:
        def scan(self, **request: Any) -> dict[str, Any]:
            return {}

    # WHEN the segment is walked THEN verify stops for now instead of seeing a shorter table
    with pytest.raises(TransientError) as caught:
        list(scan_segment(Garbled(), "T", 0, 2))
    assert str(caught.value) == (
        "verify: Scan segment 0 of 2 of table T: DynamoDB answered without Items; run verify again"
    )
