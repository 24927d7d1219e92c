"""One ``_bulk`` response item -> written | stale | retry | rejected, with OpenSearch's error."""

from __future__ import annotations

from typing import Any

import pytest

from cdcsync.sink.outcomes import ItemError, Outcome, classify_item, is_transient_status

MAPPER_ERROR = {
    "type": "mapper_parsing_exception",
    "reason": "failed to parse field [age] of type [integer] in document with id '7'",
    "caused_by": {"type": "number_format_exception", "reason": 'For input string: "old"'},
}
CONFLICT = {
    "type": "version_conflict_engine_exception",
    "reason": "[7]: version conflict, current version [5] is higher than the one provided [4]",
}


@pytest.mark.parametrize(
    ("op", "item", "expected"),
    [
        pytest.param("index", {"status": 201, "result": "created"}, ("written", None), id="201"),
        pytest.param("index", {"status": 200, "result": "updated"}, ("written", None), id="200"),
        pytest.param("delete", {"status": 200, "result": "deleted"}, ("written", None), id="delete-200"),
        pytest.param(
            "delete", {"status": 404, "result": "not_found"}, ("written", None), id="delete-404-not-found"
        ),
        pytest.param(
            "index",
            {"status": 404, "error": {"type": "index_not_found_exception", "reason": "no such index [x]"}},
            ("rejected", ItemError(404, "index_not_found_exception", "no such index [x]")),
            id="index-404-with-error",
        ),
        pytest.param(
            "delete",
            {"status": 404, "error": {"type": "index_not_found_exception", "reason": "no such index [x]"}},
            ("rejected", ItemError(404, "index_not_found_exception", "no such index [x]")),
            id="delete-404-with-error",
        ),
        pytest.param("index", {"status": 409, "error": CONFLICT}, ("stale", None), id="index-409"),
        pytest.param("delete", {"status": 409, "error": CONFLICT}, ("stale", None), id="delete-409"),
        pytest.param(
            "index",
            {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}},
            ("retry", ItemError(429, "es_rejected_execution_exception", "queue full")),
            id="429",
        ),
        pytest.param(
            "index",
            {"status": 500, "error": {"type": "exception", "reason": "boom"}},
            ("retry", ItemError(500, "exception", "boom")),
            id="500",
        ),
        pytest.param(
            "index",
            {"status": 502, "error": {"type": "bad_gateway", "reason": "upstream"}},
            ("retry", ItemError(502, "bad_gateway", "upstream")),
            id="502",
        ),
        pytest.param(
            "delete",
            {"status": 503, "error": {"type": "unavailable_shards_exception", "reason": "primary shard"}},
            ("retry", ItemError(503, "unavailable_shards_exception", "primary shard")),
            id="503",
        ),
        pytest.param(
            "index",
            {"status": 400, "error": MAPPER_ERROR},
            (
                "rejected",
                ItemError(
                    400,
                    "mapper_parsing_exception",
                    "failed to parse field [age] of type [integer] in document with id '7' "
                    'caused by number_format_exception: For input string: "old"',
                ),
            ),
            id="400-mapper-parsing-with-cause",
        ),
        pytest.param(
            "index",
            {"status": 400, "error": "illegal_argument_exception: bad id"},
            ("rejected", ItemError(400, "unknown", "illegal_argument_exception: bad id")),
            id="400-string-error",
        ),
        pytest.param(
            "index",
            {"status": 400},
            ("rejected", ItemError(400, "unknown", "status 400")),
            id="400-without-error",
        ),
    ],
)
def test_classify_item_status_gives_outcome(
    op: str, item: dict[str, Any], expected: tuple[Outcome, ItemError | None]
) -> None:
    # GIVEN one item of a bulk response WHEN classified THEN outcome and error are as in the table
    assert classify_item(op, item) == expected


def test_item_error_str_reads_type_reason_status() -> None:
    # GIVEN a rejected item's error WHEN shown THEN it reads "type: reason (status N)"
    error = classify_item("index", {"status": 400, "error": MAPPER_ERROR})[1]
    assert str(error) == (
        "mapper_parsing_exception: failed to parse field [age] of type [integer] in document with id '7' "
        'caused by number_format_exception: For input string: "old" (status 400)'
    )
    assert str(ItemError(None, "connection_error", "refused")) == "connection_error: refused (no status)"


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (400, False),
        (404, False),
        (409, False),
        (413, False),
        (429, True),
        (500, True),
        (503, True),
        (504, True),
    ],
)
def test_is_transient_status_only_429_and_5xx(status: int, transient: bool) -> None:
    # GIVEN an HTTP status WHEN asked whether a retry may help THEN only 429 and 5xx say yes
    assert is_transient_status(status) is transient
