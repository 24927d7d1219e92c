"""The writer the entry points build asks for only the ``_bulk`` answer's fields it reads."""

from __future__ import annotations

from typing import Any

import pytest

from cdcsync.metrics import NullMetrics
from cdcsync.settings import load_settings
from cdcsync.sink.bulk import BULK_FILTER_PATH, BulkWriter
from tests.unit.sink.test_bulk import FakeClient, index


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, BULK_FILTER_PATH),
        ({"target": "opensearch"}, BULK_FILTER_PATH),
        ({"target": "elasticsearch"}, BULK_FILTER_PATH),
        ({"opensearch_auth": "sigv4", "opensearch_sigv4_service": "aoss"}, None),
        ({"target": "aoss", "opensearch_auth": "sigv4", "opensearch_sigv4_service": "aoss"}, None),
    ],
)
def test_writer_from_settings_filters_answer_except_on_aoss(
    settings: dict[str, Any], expected: str | None
) -> None:
    # GIVEN the writer the entry points build for a target
    client = FakeClient()
    writer = BulkWriter.from_settings(
        load_settings(opensearch_url="https://search.example:443", _env_file=None, **settings),
        client,  # type: ignore[arg-type]
        NullMetrics(),
    )
    writer.copies = None  # no alias refresh against the fake

    # WHEN it writes
    writer.write([index("1")])

    # THEN the request names the fields outcomes are read from (OpenSearch, Elasticsearch), or none (AOSS)
    (request,) = client.requests
    assert request.params.get("filter_path") == expected


def test_bulk_filter_path_keeps_what_outcomes_are_read_from() -> None:
    # GIVEN the filter; THEN it keeps each item's status and error, and a whole refusal's error and status
    assert BULK_FILTER_PATH.split(",") == ["errors", "items.*.status", "items.*.error", "error", "status"]
