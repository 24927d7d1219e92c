"""Reads for ``cdcsync verify``: table scans and samples, realtime mget, and index walks.

Every read yields a page at a time, so a verify of any size holds one page of items and one page
of documents (plus the 8-byte hashes of ``compare.DocumentHashes``).
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, TransportError

from cdcsync.aws import aws_error
from cdcsync.errors import TransientError
from cdcsync.sink.target import OPENSEARCH, Dialect
from cdcsync.source.tables import table_description

log = logging.getLogger(__name__)

MGET_BATCH = 500
WALK_PAGE = 1000
KEEP_ALIVE = "5m"  # long enough to confirm one page of candidates with GetItem before the next
MAX_SEGMENTS = 1_000_000  # DynamoDB's limit on TotalSegments
UNKNOWN_COUNT_SEGMENTS = 100

DocumentRef = tuple[str, str, str | None]  # index, id, routing
MgetAnswer = dict[str, Any] | str | None  # the document; a text when OpenSearch failed it; None: absent


# --- table ---------------------------------------------------------------------------------------


def describe_table(dynamodb: Any, table: str) -> tuple[dict[str, str], int, dict[str, Any]]:
    """The key attributes with their types (S, N, B), DynamoDB's (six-hourly) item count, and the
    whole description (stream view and ARN, for synthetic records)."""
    description = table_description(dynamodb, table, who="verify")
    types = {d["AttributeName"]: d["AttributeType"] for d in description.get("AttributeDefinitions", [])}
    keys = {k["AttributeName"]: types.get(k["AttributeName"], "S") for k in description["KeySchema"]}
    return keys, int(description.get("ItemCount", 0)), description


def default_segments(item_count: int) -> int:
    """One segment per 250,000 items, 1 to 8: the threads mostly wait on DynamoDB and OpenSearch."""
    return max(1, min(8, 1 + item_count // 250_000))


def scan_segment(dynamodb: Any, table: str, segment: int, total: int) -> Iterator[list[dict[str, Any]]]:
    """The pages of one segment of a parallel scan (eventually consistent: repair re-reads)."""
    request: dict[str, Any] = {"TableName": table, "Segment": segment, "TotalSegments": total}
    while True:
        try:
            page = dynamodb.scan(**request)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(
                exc,
                call="verify: Scan",
                resource=f"segment {segment} of {total} of table {table}",
                permission=f"dynamodb:Scan on table {table}",
            ) from exc
        if "Items" not in page:  # a garbled 200 reads as {}: a shorter table would make documents "extra"
            raise TransientError(
                f"verify: Scan segment {segment} of {total} of table {table}: DynamoDB answered without "
                "Items; run verify again"
            )
        yield page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def sample_segments(size: int, item_count: int, rng: random.Random) -> Iterator[tuple[int, int]]:
    """Random segments of a parallel scan split so finely that one holds about a tenth of the sample.

    DynamoDB assigns items to segments by the hash of their partition key, so a segment is a
    pseudo-random slice of the table: every item has about the same chance to be picked, but the
    sample is a cluster sample (about ten slices, all items of one partition key together, the last
    slice cut short in hash order), not N independent draws. ``ItemCount`` is refreshed by DynamoDB
    about every six hours; an unknown count (0) falls back to 100 segments. Segments are visited in
    the order of a random affine permutation, so no list of up to a million segments is held.
    """
    per_segment = max(1, size // 10)
    total = min(MAX_SEGMENTS, max(1, -(-item_count // per_segment))) if item_count else UNKNOWN_COUNT_SEGMENTS
    start = rng.randrange(total)
    stride = rng.randrange(1, total) if total > 1 else 1
    while math.gcd(stride, total) != 1:
        stride += 1
    for step in range(total):
        yield (start + step * stride) % total, total


# --- index ---------------------------------------------------------------------------------------


def _error_type(exc: TransportError) -> str | None:
    info = exc.info
    if isinstance(info, dict) and isinstance(info.get("error"), dict):
        return str(info["error"].get("type"))
    return None


def mget_documents(client: OpenSearch, refs: Sequence[DocumentRef], table: str) -> list[MgetAnswer]:
    """Realtime mget (sees writes before a refresh), one answer per ref, in order."""
    docs = [
        {"_index": index, "_id": doc_id, **({"routing": routing} if routing is not None else {})}
        for index, doc_id, routing in refs
    ]
    try:
        answer = client.mget(body={"docs": docs}, params={"realtime": "true"})
    except TransportError as exc:
        raise TransientError(f"mget of {len(docs)} documents for table {table} failed: {exc}") from exc
    results: list[MgetAnswer] = []
    for doc in answer.get("docs", []):
        error = doc.get("error")
        if error is None:
            results.append(doc if doc.get("found") else None)
        elif isinstance(error, dict) and error.get("type") == "index_not_found_exception":
            results.append(None)
        else:
            results.append(f"mget failed: {error}")
    return results


def _call(pattern: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return call()
    except TransportError as exc:
        raise TransientError(f"cannot walk the documents of {pattern}: {exc}") from exc


def _release(pattern: str, call: Callable[[], Any]) -> None:
    try:
        call()
    except TransportError as exc:  # the context expires by itself after KEEP_ALIVE
        log.warning("could not release the search context on %s: %s", pattern, exc)


def index_aliases(client: OpenSearch, pattern: str) -> dict[str, tuple[str, ...]]:
    """The open concrete indices ``pattern`` (an index, an alias, a wildcard over both) names, each
    with its aliases, sorted (none when nothing matches)."""
    try:
        answer = client.indices.get_alias(
            index=pattern,
            params={"allow_no_indices": "true", "ignore_unavailable": "true", "expand_wildcards": "open"},
        )
    except NotFoundError:
        return {}
    except TransportError as exc:
        raise TransientError(f"cannot list the indices and aliases of {pattern}: {exc}") from exc
    return {
        index: tuple(sorted((entry or {}).get("aliases") or {}))
        for index, entry in sorted(answer.items())
        if isinstance(entry, dict)
    }


def walk_documents(
    client: OpenSearch, pattern: str, dialect: Dialect = OPENSEARCH
) -> Iterator[list[dict[str, Any]]]:
    """Every document of ``pattern`` (ids, indices, routing; no source), a page at a time.

    Point in time, as the dialect spells it, + ``search_after`` on its tiebreaker (a consistent
    view, the cheapest sort); a scroll where PIT is refused (OpenSearch before 2.4, some managed
    offerings) and the target has scroll (AOSS has none). A missing index has no documents.
    """
    try:
        pit_id = dialect.open_pit(client, pattern, KEEP_ALIVE)
    except NotFoundError as exc:
        if _error_type(exc) == "index_not_found_exception":
            return
        yield from _scroll(client, pattern, exc, dialect)
        return
    except TransportError as exc:
        yield from _scroll(client, pattern, exc, dialect)
        return
    try:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": WALK_PAGE,
                "pit": {"id": pit_id, "keep_alive": KEEP_ALIVE},
                "sort": [{dialect.tiebreaker: "asc"}],
                "_source": False,
                "track_total_hits": False,
            }
            if after is not None:
                body["search_after"] = after
            answer = _call(pattern, functools.partial(client.search, body=body))
            pit_id = answer.get("pit_id", pit_id)
            hits = answer["hits"]["hits"]
            if not hits:
                return
            yield hits
            after = hits[-1]["sort"]
    finally:
        _release(pattern, functools.partial(dialect.close_pit, client, pit_id))


def _scroll(
    client: OpenSearch, pattern: str, reason: TransportError, dialect: Dialect
) -> Iterator[list[dict[str, Any]]]:
    if not dialect.has_scroll:
        raise TransientError(
            f"cannot walk the documents of {pattern}: {dialect.label} refused a point in time ({reason}) "
            "and has no scroll to fall back on"
        )
    log.info("point in time not available on %s (%s); walking it with a scroll", pattern, reason)
    body = {"size": WALK_PAGE, "sort": ["_doc"], "_source": False}
    try:
        answer = client.search(index=pattern, body=body, params={"scroll": KEEP_ALIVE})
    except NotFoundError:
        return
    except TransportError as exc:
        raise TransientError(f"cannot walk the documents of {pattern}: {exc}") from exc
    scroll_id = answer.get("_scroll_id")
    try:
        while answer["hits"]["hits"]:
            yield answer["hits"]["hits"]
            scroll_id = answer.get("_scroll_id", scroll_id)
            follow = {"scroll_id": scroll_id, "scroll": KEEP_ALIVE}
            answer = _call(pattern, functools.partial(client.scroll, body=follow))
    finally:
        if scroll_id:
            _release(pattern, functools.partial(client.clear_scroll, body={"scroll_id": scroll_id}))
