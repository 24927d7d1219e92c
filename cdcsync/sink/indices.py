"""``cdcsync indices apply`` / ``indices diff``: create missing indices from their mappings'
``index_body``, and bring existing ones in line where that can be done in place.

The name in a mapping's ``index:`` is what readers query. A missing index ``NAME`` is created as
the physical index ``NAME-000001`` with the alias ``NAME`` pointing at it (its write index), so
``cdcsync rebuild`` can later move the alias to ``NAME-000002`` in one atomic call. An existing
concrete index named ``NAME`` keeps working as it is (``docs/runbooks.md`` tells how to adopt it).
An existing index (or the alias's write index) is compared with ``index_body`` (``drift.py``):
what can change in place is applied (``apply``) or listed (``diff``); the rest is reported as
needing ``cdcsync rebuild --table T``.

Indices cdcsync creates get ``index.gc_deletes`` raised to 24 h (the stream retention): a delete
leaves a versioned tombstone only that long, and a replayed older write arriving after the
tombstone is gone would resurrect the document. A templated index (``orders-{Region}``) cannot be
created up front; it gets an index template matching every index the template can name, at a
priority that grows with the pattern's fixed part (see ``template_priority``), so a rebuild's
``orders-v2-*`` overrides ``orders-*``; a template OpenSearch refuses is an ``IndexTemplateError``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException, RequestError

from cdcsync.errors import IndexTemplateError
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.sink.client import opensearch_error
from cdcsync.sink.drift import Drift, apply_drift, find_drift
from cdcsync.sink.target import OPENSEARCH, Dialect, Target

GC_DELETES = "24h"
_BASE_PRIORITY = 100
_GC_DELETES_SECONDS = 24 * 3600.0
_DEFAULT_GC_DELETES = "60s"


FIRST_GENERATION = 1


def physical_name(name: str, generation: int) -> str:
    """The physical index behind the alias ``name``: ``users-000001``, ``users-000002``, ..."""
    return f"{name}-{generation:06d}"


@dataclass(frozen=True, slots=True)
class IndexReport:
    """One ``indices apply`` result; ``lines()`` is what the command prints."""

    index: str
    action: str  # created | exists | template | skipped
    warning: str | None = None
    physical: str | None = None  # created behind the alias ``index``, or the alias's write index
    changed: tuple[str, ...] = ()  # applied in place (apply) or applicable in place (diff)
    rebuild: tuple[str, ...] = ()  # what only ``cdcsync rebuild --table T`` changes
    table: str = field(default="", compare=False)  # the mapping's table, for the rebuild hint

    def __str__(self) -> str:
        behind = f" as {self.physical} behind the alias {self.index}" if self.action == "created" else ""
        return f"{self.index}: {self.action}{behind}" + (
            f" (warning: {self.warning})" if self.warning else ""
        )

    def lines(self, *, applied: bool) -> list[str]:
        done = "applied" if applied else "can be applied in place"
        return [
            str(self),
            *(f"{self.index}: {change}: {done}" for change in self.changed),
            *(f"{self.index}: {why}: needs `cdcsync rebuild --table {self.table}`" for why in self.rebuild),
        ]


def creation_body(mapping: CompiledMapping, dialect: Dialect) -> dict[str, Any]:
    body = copy.deepcopy(mapping.index_body) if mapping.index_body else {}
    body = {key: value for key, value in body.items() if value}
    if not dialect.has_gc_deletes:  # a target without the setting (AOSS): nothing to raise
        return body
    settings = body.setdefault("settings", {})
    # OpenSearch reads index settings with or without the "index." prefix, flat or nested; a
    # value the mapping sets in any of these spellings is the operator's choice and is kept.
    nested = settings.get("index") if isinstance(settings.get("index"), dict) else {}
    if all(
        value is None
        for value in (settings.get("index.gc_deletes"), settings.get("gc_deletes"), nested.get("gc_deletes"))
    ):
        settings["index.gc_deletes"] = GC_DELETES
    return body


_TIME_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "micros": 1e-6, "nanos": 1e-9}
_TIME_VALUE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(d|h|m|s|ms|micros|nanos)\s*")


def time_value_seconds(value: str) -> float | None:
    """An OpenSearch time value ("60s", "24h") in seconds; None if it is not one."""
    match = _TIME_VALUE.fullmatch(value)
    return float(match[1]) * _TIME_UNITS[match[2]] if match else None


def _gc_deletes(client: OpenSearch, index: str) -> str:
    answer = client.indices.get_settings(
        index=index, params={"include_defaults": "true", "flat_settings": "true"}
    )
    for entry in answer.values():
        for section in ("settings", "defaults"):
            value = entry.get(section, {}).get("index.gc_deletes")
            if value is not None:
                return str(value)
    return _DEFAULT_GC_DELETES


def write_index(client: OpenSearch, name: str) -> str:
    """The concrete index writes to ``name`` reach: ``name`` itself, or the alias's write index."""
    if not client.indices.exists_alias(name=name):
        return name
    found = client.indices.get_alias(name=name)
    for index, entry in found.items():
        if entry.get("aliases", {}).get(name, {}).get("is_write_index"):
            return str(index)
    return str(sorted(found)[0])


def _apply_literal(
    client: OpenSearch, mapping: CompiledMapping, dialect: Dialect, *, change: bool = True
) -> IndexReport:
    name = mapping.index.source
    if not client.indices.exists(index=name):
        if not change:
            return IndexReport(name, "missing", table=mapping.table)
        physical = physical_name(name, FIRST_GENERATION)
        body = creation_body(mapping, dialect)
        body["aliases"] = {**body.get("aliases", {}), name: {"is_write_index": True}}
        try:
            client.indices.create(index=physical, body=body)
        except RequestError as exc:
            # Another process created it between our check and our create: that is success.
            if exc.error != "resource_already_exists_exception":
                raise
        else:
            return IndexReport(name, "created", physical=physical, table=mapping.table)
    live = write_index(client, name)
    drift = find_drift(client, live, mapping.index_body)
    if change and (drift.mapping_additions or drift.setting_changes):
        apply_drift(client, drift)
    report = _exists(client, name, live, drift, mapping.table)
    if not dialect.has_gc_deletes:
        return report
    gc_deletes = _gc_deletes(client, live)
    seconds = time_value_seconds(gc_deletes)
    # The 60 s default is the usual case; any value shorter than the stream retention is as risky.
    if seconds is not None and seconds < _GC_DELETES_SECONDS:
        warning = (
            f"index.gc_deletes is {gc_deletes}: a write replayed more than {gc_deletes} after a delete can "
            f'resurrect the document; run PUT {name}/_settings {{"index.gc_deletes": "{GC_DELETES}"}}'
        )
        return IndexReport(
            name, "exists", warning, report.physical, report.changed, report.rebuild, mapping.table
        )
    return report


def _exists(client: OpenSearch, name: str, live: str, drift: Drift, table: str) -> IndexReport:
    physical = live if live != name else None
    return IndexReport(name, "exists", None, physical, tuple(drift.additions), tuple(drift.conflicts), table)


def _template_name(mapping: CompiledMapping) -> str:
    return "cdcsync-" + re.sub(r"[^a-z0-9_-]+", "-", "-".join(mapping.index.literals).strip("-")).strip("-")


def template_priority(pattern: str) -> int:
    """More specific patterns win: 100 plus the pattern's fixed characters.

    OpenSearch refuses two index templates whose patterns can match one index at one priority, and
    applies the higher one. A rebuild's ``orders-v2-*`` (priority 110) so overrides ``orders-*``
    (107) for the v2 indices. A pattern contained in another has at least as many fixed characters;
    two of equal length that overlap are refused, which ``indices apply`` reports.
    """
    return _BASE_PRIORITY + len(pattern.replace("*", ""))


def _apply_template(client: OpenSearch, mapping: CompiledMapping, dialect: Dialect) -> IndexReport:
    # Adjacent placeholders ("{A}{B}") make one wildcard, not "**".
    pattern = re.sub(r"\*+", "*", "*".join(mapping.index.literals))
    if pattern == "*":
        # A template over every index would impose this mapping's settings on all of them.
        warning = (
            f'index "{mapping.index.source}" ({mapping.source}) has no literal part, so an index template '
            "for it would match every index; none was put: create its indices yourself with index.gc_deletes "
            f"= {GC_DELETES}"
        )
        return IndexReport(mapping.index.source, "skipped", warning)
    body = creation_body(mapping, dialect)
    name, priority = _template_name(mapping), template_priority(pattern)
    try:
        client.indices.put_index_template(
            name=name, body={"index_patterns": [pattern], "template": body, "priority": priority}
        )
    except RequestError as exc:
        reason = " ".join(_reason(exc).split())
        raise IndexTemplateError(
            f'{mapping.source}: index "{mapping.index.source}": OpenSearch refused index template {name} for '
            f'"{pattern}" at priority {priority}: {reason}; rename the index so that no template of the same '
            "priority matches the names it can take, or give the other template another priority"
        ) from exc
    return IndexReport(pattern, "template")


def _reason(exc: RequestError) -> str:
    info = exc.info
    if isinstance(info, dict) and isinstance(info.get("error"), dict):
        return str(info["error"].get("reason", exc.error))
    return str(exc.error)


def apply_indices(
    client: OpenSearch, mappings: MappingSet, target: Target | None = None, *, change: bool = True
) -> list[IndexReport]:
    """Create what is missing, apply in-place drift; report what exists and what needs a rebuild.
    Safe to run from several processes at once. ``change=False`` (``indices diff``) only reports.

    A failed OpenSearch call stops it with our error (``opensearch_error``): what was done stays done.
    ``target`` (its dialect) decides whether ``index.gc_deletes`` exists; without it, OpenSearch.
    Templated indices get their index template (``apply`` only); their drift is not compared yet.
    """
    reports = []
    seen: set[str] = set()
    for mapping in mappings:
        if mapping.index.source in seen:
            continue
        seen.add(mapping.index.source)
        try:
            dialect = OPENSEARCH if target is None else target.dialect
            if mapping.index.is_literal:
                reports.append(_apply_literal(client, mapping, dialect, change=change))
            elif change:
                reports.append(_apply_template(client, mapping, dialect))
        except OpenSearchException as exc:
            raise opensearch_error(exc, f'indices apply: index "{mapping.index.source}"') from exc
    return reports
