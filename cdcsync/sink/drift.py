"""Drift: how a live index differs from its mapping's ``index_body``, and which differences can be
applied in place.

In place (``PUT /{index}/_mapping``, ``PUT /{index}/_settings``): a field the index lacks (at any
depth of ``properties``), a new multi-field (``fields``) of an existing field, a dynamic setting.
Everything else needs a new index: a field whose type or options changed, any ``index.analysis.*``
setting (analyzers are read when the index opens), a static setting such as the shard count.
Fields and settings the index has and ``index_body`` does not name are not drift (dynamic mapping
adds fields; OpenSearch adds settings). ``aliases`` in ``index_body`` are not compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch

# Settings OpenSearch fixes when an index is created (besides every index.analysis.* setting).
_STATIC = frozenset(
    {
        "index.number_of_shards",
        "index.number_of_routing_shards",
        "index.routing_partition_size",
        "index.codec",
        "index.knn",
        "index.soft_deletes.enabled",
        "index.load_fixed_bitset_filters_eagerly",
        "index.shard.check_on_startup",
        "index.hidden",
    }
)


@dataclass
class Drift:
    """What differs between ``index_body`` and the live ``index``."""

    index: str
    mapping_additions: dict[str, Any] = field(default_factory=dict)  # properties for PUT _mapping
    setting_changes: dict[str, str] = field(default_factory=dict)  # flat settings for PUT _settings
    additions: list[str] = field(default_factory=list)  # "field x (keyword)", "setting a.b: 1 -> 2"
    conflicts: list[str] = field(default_factory=list)  # what only a rebuild changes

    @property
    def empty(self) -> bool:
        return not self.additions and not self.conflicts


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"index": {"number_of_shards": 1}}`` and ``{"number_of_shards": 1}`` as
    ``{"index.number_of_shards": "1"}``, the way OpenSearch answers ``flat_settings``."""
    flat: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_settings(value, f"{name}."))
        else:
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flat[name if name.startswith("index.") else f"index.{name}"] = text
    return flat


def _describe(definition: Mapping[str, Any]) -> str:
    kind = definition.get("type", "object" if "properties" in definition else "?")
    return str(kind)


def _fields(want: Mapping[str, Any], have: Mapping[str, Any], path: str, drift: Drift) -> dict[str, Any]:
    """The properties of ``want`` to put in place; conflicts go to ``drift``."""
    additions: dict[str, Any] = {}
    live = have.get("properties", {})
    for name, definition in want.get("properties", {}).items():
        full = f"{path}{name}"
        current = live.get(name)
        if current is None:
            additions[name] = definition
            drift.additions.append(f"field {full} ({_describe(definition)})")
            continue
        nested = _fields(definition, current, f"{full}.", drift) if "properties" in definition else {}
        if nested:
            additions[name] = {"properties": nested}
        new_fields = {
            sub: value
            for sub, value in definition.get("fields", {}).items()
            if sub not in current.get("fields", {})
        }
        for sub, value in definition.get("fields", {}).items():
            if sub in current.get("fields", {}) and current["fields"][sub] != value:
                drift.conflicts.append(
                    f"field {full}.{sub}: {current['fields'][sub]} in the index, {value} in index_body"
                )
        if new_fields:
            additions[name] = {**current, "fields": {**current.get("fields", {}), **new_fields}}
            drift.additions.extend(f"field {full}.{sub} ({_describe(v)})" for sub, v in new_fields.items())
        for key, value in definition.items():
            if key in ("properties", "fields"):
                continue
            found = current.get(key, "object" if key == "type" and "properties" in current else None)
            if str(found).lower() != str(value).lower():
                drift.conflicts.append(f"field {full}: {key} {found} in the index, {value} in index_body")
    return additions


def find_drift(client: OpenSearch, index: str, index_body: Mapping[str, Any] | None) -> Drift:
    """Compare ``index_body`` with the live ``index`` (a concrete index name)."""
    drift = Drift(index)
    body = index_body or {}
    if body.get("mappings"):
        live = client.indices.get_mapping(index=index).get(index, {}).get("mappings", {})
        drift.mapping_additions = _fields(body["mappings"], live, "", drift)
    if body.get("settings"):
        answer = client.indices.get_settings(index=index, params={"flat_settings": "true"})
        live_settings = answer.get(index, {}).get("settings", {})
        for name, value in flat_settings(body["settings"]).items():
            found = live_settings.get(name)
            if found is not None and str(found).lower() == value.lower():
                continue
            if name in _STATIC or name.startswith("index.analysis."):
                drift.conflicts.append(
                    f"setting {name}: {found or 'unset'} in the index, {value} in index_body"
                )
            else:
                drift.setting_changes[name] = value
                drift.additions.append(f"setting {name}: {found or 'unset'} -> {value}")
    return drift


def apply_drift(client: OpenSearch, drift: Drift) -> None:
    """Put what can change in place (``drift.additions``); conflicts are left for a rebuild."""
    if drift.mapping_additions:
        client.indices.put_mapping(index=drift.index, body={"properties": drift.mapping_additions})
    if drift.setting_changes:
        client.indices.put_settings(index=drift.index, body=drift.setting_changes)
