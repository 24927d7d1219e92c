"""Which actions go in which ``_bulk`` request: one index per request, within the size limits.

Each request is posted to ``/{index}/_bulk`` and its action lines name no ``_index``
(``bulk_body``). So an IAM policy on ``domain/NAME/INDEX/*`` confines the writer to the indices it
is granted (a request to the root ``/_bulk`` path could name any index inside its body), and a domain
with ``rest.action.multi.allow_explicit_index: false``, which refuses any ``_index`` in a body,
accepts every request.

Grouping by index keeps the writer's ordering guarantees (ARCHITECTURE.md, premise 3): a document is
an (index, id), so every action of one document is in its index's requests, still one per request;
the writer groups each wave on its own, so a routing move's steps stay in successive waves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar


@dataclass(frozen=True, slots=True)
class BulkLimits:
    max_actions: int = 1000
    max_bytes: int = 5 * 1024 * 1024


class BulkItem(Protocol):
    """An action on its way: the index it goes to and its NDJSON lines."""

    @property
    def index(self) -> str: ...

    @property
    def lines(self) -> bytes: ...


Item = TypeVar("Item", bound=BulkItem)


def bulk_requests(items: Iterable[Item], limits: BulkLimits) -> Iterator[list[Item]]:
    """``items`` as requests: per index in order of first sight, in order, at most ``limits`` each.

    An action larger than ``max_bytes`` goes alone (OpenSearch answers 413 if it is too large).
    """
    by_index: dict[str, list[Item]] = {}
    for item in items:
        by_index.setdefault(item.index, []).append(item)
    for group in by_index.values():
        request: list[Item] = []
        size = 0
        for item in group:
            if request and (len(request) >= limits.max_actions or size + len(item.lines) > limits.max_bytes):
                yield request
                request, size = [], 0
            request.append(item)
            size += len(item.lines)
        if request:
            yield request
