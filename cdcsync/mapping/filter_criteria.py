"""Lambda ``FilterCriteria`` for one table's event source mapping, built from its mappings' filters.

Pushing filters down to Lambda means records no mapping wants never invoke the function. It is only an
optimisation: the pipeline re-checks every mapping's filter in-process, so when a push-down would be wrong
or rejected by AWS we export nothing (every record is delivered) and say why, instead of guessing.

Limits (Lambda developer guide, "Control which events Lambda sends to your function" and the ``Filter``
API type): a mapping ORs its filters; 5 filters per event source mapping by default (a quota increase
allows up to 10); a filter ``Pattern`` is at most 4096 characters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cdcsync.mapping.patterns import Pattern

__all__ = ["DEFAULT_MAX_FILTERS", "MAX_PATTERN_CHARS", "FilterCriteriaExport", "filter_criteria"]

DEFAULT_MAX_FILTERS: Final = 5
MAX_PATTERN_CHARS: Final = 4096
# Operators EventBridge Pipes documents as unsupported ("Pipe support: No"); Lambda event source
# mappings run the same filtering and do not document them either, so we never push them down.
_NOT_PUSHED_DOWN: Final = (
    "wildcard",
    "anything-but with an object (prefix, suffix, equals-ignore-case, wildcard)",
)


@dataclass(frozen=True)
class FilterCriteriaExport:
    """What ``cdcsync filters`` prints: the criteria, or None with the reasons in ``warnings``."""

    criteria: dict[str, Any] | None
    warnings: tuple[str, ...]


def filter_criteria(
    patterns: Sequence[Pattern | None],
    *,
    table: str,
    max_filters: int = DEFAULT_MAX_FILTERS,
    names: Sequence[str] | None = None,
) -> FilterCriteriaExport:
    """Build the FilterCriteria that lets through every record any mapping of ``table`` needs.

    ``patterns`` holds each mapping's ``filter`` in mapping order; None means that mapping has no filter.
    ``max_filters`` is the account's quota of filters per event source mapping (5 unless raised).
    ``names`` names the mappings in warnings (e.g. their ``file:line``); by default, their positions.
    """
    if not patterns:
        return FilterCriteriaExport(
            None, (f"Table {table} has no mappings, so there is no filter to export.",)
        )
    labels = list(names) if names is not None else [str(n) for n in range(1, len(patterns) + 1)]
    unfiltered = [label for label, pattern in zip(labels, patterns, strict=True) if pattern is None]
    if unfiltered:
        one = len(unfiltered) == 1
        return FilterCriteriaExport(
            None,
            (
                # Worded as `validate` words it ("no filter (every record)"), and never advising a
                # filter for selecting items: that is `where`'s job (a filter that skips a REMOVE, or
                # the MODIFY that takes an item out, leaves its document in the index for good).
                f"{'Mapping' if one else 'Mappings'} {_join(unfiltered)} of table {table} "
                f"{'has' if one else 'have'} no filter (every record), so no FilterCriteria is exported "
                "and Lambda delivers every record; that is right for a mapping that selects items with "
                "where, which needs every REMOVE and MODIFY to delete what leaves it; give a mapping a "
                "filter only for records it never needs.",
            ),
        )

    unique = list(dict.fromkeys(pattern for pattern in patterns if pattern is not None))
    texts = [json.dumps(pattern.source, separators=(",", ":"), ensure_ascii=False) for pattern in unique]
    warnings: list[str] = []
    if len(unique) > max_filters:
        warnings.append(
            f"Table {table} needs {len(unique)} distinct filters, more than the {max_filters} filters per "
            "event source mapping that Lambda allows, so no FilterCriteria is exported; merge filters "
            "with $or, or request a Lambda quota increase (up to 10 filters) and pass the raised limit."
        )
    for number, text in enumerate(texts, start=1):
        if len(text) > MAX_PATTERN_CHARS:
            warnings.append(
                f"Filter {number} of table {table} is {len(text)} characters of JSON, over Lambda's "
                f"{MAX_PATTERN_CHARS}-character limit for a filter pattern, so no FilterCriteria is "
                "exported; shorten the filter."
            )
    for number, pattern in enumerate(unique, start=1):
        if operators := sorted(set(_unsupported_operators(pattern.source))):
            warnings.append(
                f"Filter {number} of table {table} uses {_join(operators)}, which Lambda event source "
                "mappings do not support, so no FilterCriteria is exported; the filter still applies "
                "in-process."
            )
    if warnings:
        return FilterCriteriaExport(None, tuple(warnings))
    return FilterCriteriaExport({"Filters": [{"Pattern": text} for text in texts]}, ())


def _unsupported_operators(pattern: Mapping[str, Any]) -> Iterator[str]:
    """Yield the operators in a (validated) pattern that are evaluated here but not pushed down."""
    for key, value in pattern.items():
        if key == "$or":
            for alternative in value:
                yield from _unsupported_operators(alternative)
        elif isinstance(value, Mapping):
            yield from _unsupported_operators(value)
        else:
            for matcher in value:
                if isinstance(matcher, Mapping) and "wildcard" in matcher:
                    yield _NOT_PUSHED_DOWN[0]
                if isinstance(matcher, Mapping) and isinstance(matcher.get("anything-but"), Mapping):
                    yield _NOT_PUSHED_DOWN[1]


def _join(items: Sequence[str]) -> str:
    """Join for a sentence: "1", "1 and 2", "1, 2 and 3"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
