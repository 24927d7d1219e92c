"""``cdcsync indices apply``: create missing indices from their mappings' ``index_body``.

Indices cdcsync creates get ``index.gc_deletes`` raised to 24 h (the stream retention): a delete
leaves a versioned tombstone only that long, and a replayed older write arriving after the
tombstone is gone would resurrect the document. A templated index (``orders-{Region}``) cannot be
created up front; it gets an index template matching every index the template can name.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError

from cdcsync.mapping.compiled import CompiledMapping, MappingSet

GC_DELETES = "24h"
_DEFAULT_GC_DELETES = "60s"


@dataclass(frozen=True, slots=True)
class IndexReport:
    """One line of ``indices apply`` output."""

    index: str
    action: str  # created | exists | template
    warning: str | None = None

    def __str__(self) -> str:
        return f"{self.index}: {self.action}" + (f" (warning: {self.warning})" if self.warning else "")


def _body(mapping: CompiledMapping) -> dict[str, Any]:
    body = copy.deepcopy(mapping.index_body) if mapping.index_body else {}
    body = {key: value for key, value in body.items() if value}
    settings = body.setdefault("settings", {})
    flat = settings.get("index.gc_deletes")
    nested = settings.get("index", {}).get("gc_deletes") if isinstance(settings.get("index"), dict) else None
    if flat is None and nested is None:
        settings["index.gc_deletes"] = GC_DELETES
    return body


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


def _apply_literal(client: OpenSearch, mapping: CompiledMapping) -> IndexReport:
    name = mapping.index.source
    if not client.indices.exists(index=name):
        try:
            client.indices.create(index=name, body=_body(mapping))
        except RequestError as exc:
            # Another process created it between our check and our create: that is success.
            if exc.error != "resource_already_exists_exception":
                raise
        else:
            return IndexReport(name, "created")
    gc_deletes = _gc_deletes(client, name)
    warning = None
    if gc_deletes == _DEFAULT_GC_DELETES:
        warning = (
            f"index.gc_deletes is {gc_deletes}: a write replayed more than {gc_deletes} after a delete can "
            f'resurrect the document; run PUT {name}/_settings {{"index.gc_deletes": "{GC_DELETES}"}}'
        )
    return IndexReport(name, "exists", warning)


def _template_name(mapping: CompiledMapping) -> str:
    return "cdcsync-" + re.sub(r"[^a-z0-9_-]+", "-", "-".join(mapping.index.literals).strip("-")).strip("-")


def _apply_template(client: OpenSearch, mapping: CompiledMapping) -> IndexReport:
    pattern = "*".join(mapping.index.literals)
    body = _body(mapping)
    client.indices.put_index_template(
        name=_template_name(mapping), body={"index_patterns": [pattern], "template": body, "priority": 100}
    )
    return IndexReport(pattern, "template")


def apply_indices(client: OpenSearch, mappings: MappingSet) -> list[IndexReport]:
    """Create what is missing; report what exists. Safe to run from several processes at once."""
    reports = []
    seen: set[str] = set()
    for mapping in mappings:
        if mapping.index.source in seen:
            continue
        seen.add(mapping.index.source)
        apply = _apply_literal if mapping.index.is_literal else _apply_template
        reports.append(apply(client, mapping))
    return reports
