"""Which indices ``cdcsync verify`` walks to find extra documents of a table's mappings.

Every index a mapping of the table names is resolved to the open concrete indices behind it, each
with its aliases (one ``GET <pattern>/_alias``): a literal index or alias as it is, a templated one
(``orders-{Region}``) through its wildcard (``orders-*``). An index is walked once, for every
mapping of the table that may write there (its ``Claim``s), and only when:

- a mapping of the table names it: its literal index, or an alias of it, is the mapping's index,
  or its template renders the index's name (or an alias's) in full: ``orders-*`` also matches
  ``orders``, which ``orders-{Region}`` never renders;
- no mapping of another table names it the same way (a literal index, an alias over the index,
  or a template rendering its name or an alias's): ``orders-*`` also matches a rebuild's
  ``orders-v2-eu``, and a literal ``orders-eu`` may be another table's ``orders-{Region}``;
- a literal mapping names it, or an item of the table is indexed there now (the scan expected a
  document there). An index whose name only *fits* a template (``orders-archive-2019`` for
  ``orders-{Region}``) may be another application's: nothing proves its documents are this
  mapping's, so it is not walked, and nothing in it is ever deleted.

A template that starts with a placeholder (``{Tenant}``) could name any index in the cluster, so
its wildcard is not listed. Each index left out, and why, is a note in the report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from opensearchpy import OpenSearch

from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.verify.reads import index_aliases


def walk_pattern(mapping: CompiledMapping) -> str:
    """The index (or wildcard over templated names) that holds the mapping's documents."""
    return mapping.index.source if mapping.index.is_literal else "*".join(mapping.index.literals)


def hash_scope(mapping: CompiledMapping, index: str) -> str:
    """The name an expected document is remembered by: the mapping's literal index (an alias
    stays an alias), or the name its template rendered."""
    return mapping.index.source if mapping.index.is_literal else index


def template_regex(mapping: CompiledMapping) -> re.Pattern[str]:
    """The index names the mapping's index template can render (placeholders: any text)."""
    literals = [re.escape(literal) for literal in mapping.index.literals]
    return re.compile("(?:.*)".join(literals) if not mapping.index.is_literal else literals[0])


def scope_in(mapping: CompiledMapping, index: str, aliases: Sequence[str] = ()) -> str | None:
    """The name by which ``mapping`` writes to the concrete ``index`` (known by ``aliases`` too),
    the ``hash_scope`` of its documents there; None when the mapping never writes there."""
    names = (index, *aliases)
    if mapping.index.is_literal:
        return mapping.index.source if mapping.index.source in names else None
    regex = template_regex(mapping)
    return next((name for name in names if regex.fullmatch(name)), None)


def claims(mapping: CompiledMapping, index: str, aliases: Sequence[str] = ()) -> bool:
    """Whether ``mapping`` may write to ``index``: its literal index (or an alias of it), or a
    name its template renders."""
    return scope_in(mapping, index, aliases) is not None


@dataclass(frozen=True, slots=True)
class Claim:
    """A mapping that may write to a walked index, and the name it writes there by."""

    mapping: CompiledMapping
    scope: str


@dataclass(frozen=True, slots=True)
class Walk:
    """One concrete index to walk, and the table's mappings that may have written its documents."""

    index: str
    claims: tuple[Claim, ...]


def plan_walks(
    client: OpenSearch, mappings: MappingSet, table: str, live: Mapping[str, AbstractSet[str]]
) -> tuple[list[Walk], list[str]]:
    """The indices to walk for ``table``'s mappings, and notes on those left out.

    ``live``: per ``walk_pattern``, the index names the scan expected documents in.
    """
    mine = mappings.for_table(table)
    notes: list[str] = []
    found: dict[str, tuple[str, ...]] = {}
    for mapping in mine:
        pattern = walk_pattern(mapping)
        if not mapping.index.is_literal and not pattern.split("*", 1)[0]:
            notes.append(
                f'extra documents not looked for in "{mapping.index.source}": an index template that '
                "starts with a placeholder could name any index; give it a literal prefix"
            )
            continue
        found.update(index_aliases(client, pattern))
    walks: list[Walk] = []
    for index in sorted(found):
        aliases = found[index]
        own = [Claim(m, scope) for m in mine if (scope := scope_in(m, index, aliases)) is not None]
        if not own:
            continue
        foreign = next((m for m in mappings if m.table != table and claims(m, index, aliases)), None)
        if foreign is not None:
            notes.append(
                f"extra documents not looked for in {index}: {foreign.name} ({foreign.source}) writes there"
            )
            continue
        if not any(
            claim.mapping.index.is_literal or claim.scope in live.get(walk_pattern(claim.mapping), ())
            for claim in own
        ):
            notes.append(
                f'extra documents not looked for in {index}: its name fits "{own[0].mapping.index.source}", '
                f"but no item of {table} is indexed there now, so it may be another application's index; "
                "delete its documents by hand if they are this mapping's"
            )
            continue
        walks.append(Walk(index, tuple(own)))
    return walks, notes
