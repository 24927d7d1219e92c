"""Which indices ``cdcsync verify`` walks to find extra documents of a table's mappings.

A literal index (or alias) is walked as it is. A templated index (``orders-{Region}``) is walked
index by index, among the open indices its wildcard (``orders-*``) matches: only those its
template renders in full, and none that another mapping of any table names (literal) or renders
(template): ``orders-*`` also matches a rebuild's ``orders-v2-eu``, whose documents are not
this mapping's. A template that starts with a placeholder (``{Tenant}``) could name any index
in the cluster, so nothing is walked. Each index left out is named in a note.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from opensearchpy import OpenSearch

from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.verify.reads import matching_indices


def walk_pattern(mapping: CompiledMapping) -> str:
    """The index (or wildcard over templated names) that holds the mapping's documents."""
    return mapping.index.source if mapping.index.is_literal else "*".join(mapping.index.literals)


def hash_scope(mapping: CompiledMapping, index: str) -> str:
    # A literal index may be an alias: documents come back from the walk with the concrete index
    # name, so they are named by the mapping's index instead. Templated names are concrete.
    return mapping.index.source if mapping.index.is_literal else index


def template_regex(mapping: CompiledMapping) -> re.Pattern[str]:
    """The index names the mapping's index template can render (placeholders: any text)."""
    literals = [re.escape(literal) for literal in mapping.index.literals]
    return re.compile("(?:.*)".join(literals) if not mapping.index.is_literal else literals[0])


def claims(mapping: CompiledMapping, index: str) -> bool:
    """Whether ``mapping`` may write to ``index`` (its literal index, or a name its template renders)."""
    if mapping.index.is_literal:
        return mapping.index.source == index
    return template_regex(mapping).fullmatch(index) is not None


def indices_to_walk(
    client: OpenSearch, mappings: MappingSet, pattern: str, group: Sequence[CompiledMapping]
) -> tuple[list[str], list[str]]:
    """The indices to walk for one group of mappings sharing ``pattern``, and notes on those left out."""
    if group[0].index.is_literal:
        return [pattern], []
    if not pattern.split("*", 1)[0]:
        return [], [
            f'extra documents not looked for in "{group[0].index.source}": an index template that '
            "starts with a placeholder could name any index; give it a literal prefix"
        ]
    table = group[0].table
    others = [m for m in mappings if all(m is not g for g in group)]
    walked: list[str] = []
    notes: list[str] = []
    for index in matching_indices(client, pattern):
        if not any(claims(mapping, index) for mapping in group):
            continue  # e.g. "orders-*" matches "orders", which "orders-{Region}" never renders
        claimant = next((m for m in others if claims(m, index)), None)
        if claimant is None:
            walked.append(index)
        elif not (claimant.table == table and walk_pattern(claimant).split("*", 1)[0]):
            # (a mapping of this same table with its own prefix walks the index itself)
            notes.append(
                f"extra documents not looked for in {index}: {claimant.name} ({claimant.source}) writes there"
            )
    return walked, notes
