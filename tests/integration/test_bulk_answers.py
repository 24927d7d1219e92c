"""The writer the entry points build, over HTTP: its filtered ``_bulk`` answers give every outcome."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from opensearchpy import OpenSearch

from cdcsync.metrics import NullMetrics
from cdcsync.settings import load_settings
from cdcsync.sink.bulk import BULK_FILTER_PATH, BulkWriter
from cdcsync.sink.client import build_client
from cdcsync.sink.outcomes import ItemError
from tests.integration.test_bulk_writer import V, put, remove, stored, write
from tests.support.fault_proxy import FaultProxy, fault_proxy, is_bulk


@pytest.fixture
def proxy(opensearch_url: str) -> Iterator[FaultProxy]:
    with fault_proxy(opensearch_url) as running:
        yield running


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


def test_writer_from_settings_filtered_answers_give_written_stale_and_rejected(
    opensearch: OpenSearch, index: str, proxy: FaultProxy
) -> None:
    # GIVEN the writer every entry point builds (BulkWriter.from_settings)
    settings = load_settings(opensearch_url=proxy.url, _env_file=None)
    writer = BulkWriter.from_settings(settings, build_client(settings), NullMetrics())

    # WHEN documents are written, one again at an older version, one with a string where an integer is mapped
    first = write(writer, put(index, "1", V, n=1), put(index, "2", V, n="abc"), remove(index, "3", V))
    again = write(writer, put(index, "1", V - 1000, n=9))

    # THEN each outcome is the same as from OpenSearch's whole answer
    assert first == {
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
    assert again == {"1": ("stale", None)}
    assert stored(opensearch, index, "1") == (V, {"n": 1})
    # AND every _bulk request asked for only the fields the outcomes are read from
    queries = [parse_qs(urlsplit(path).query) for _, path, _ in proxy.requests if is_bulk(path)]
    assert [query.get("filter_path") for query in queries] == [[BULK_FILTER_PATH]] * 2
