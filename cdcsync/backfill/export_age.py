"""How old an export may be before loading it could bring deleted items back.

An export's items are written with the export time's version, below every change made since. A
delete made since the export outranks them only while OpenSearch remembers it: its tombstone lives
``index.gc_deletes`` (60 s unless set; ``cdcsync indices apply`` sets 24 h), and the stream holds it
24 h for a consumer that has not read it yet. An export older than the shorter of the two could put
deleted items back, so it is refused (``ConfigError``, exit 2) unless ``--allow-old-export``.

``index.gc_deletes`` is read from every index the table's mappings write: the concrete indices
behind an alias, every index a templated name (``orders-{Region}``) matches, and for an index not
created yet, what its index templates would give it. A setting that cannot be read counts as the
60 s default, one that is not a time value as 0 s: a refusal that ``--allow-old-export`` overrides
is better than items silently coming back. The check runs when a load (or a ``--resume``) starts;
a load that takes longer than the margin left is not stopped.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, TransportError

from cdcsync.errors import ConfigError
from cdcsync.mapping.templates import Template
from cdcsync.sink.indices import time_value_seconds

log = logging.getLogger(__name__)

STREAM_RETENTION_SECONDS = 24 * 3600.0
DEFAULT_GC_DELETES = "60s"
_DEFAULT_GC_DELETES_SECONDS = 60.0
_SETTING = "index.gc_deletes"


@dataclass(frozen=True, slots=True)
class DeleteMemory:
    """How long a delete outranks an export's writes, and who forgets it first (for the message)."""

    seconds: float
    reason: str  # 'index "users" forgets a delete after 60s (index.gc_deletes, the default)'


def check_export_age(
    url: str,
    export_time_ms: int,
    table: str,
    indices: Sequence[Template],
    client: OpenSearch,
    *,
    now_ms: int,
    allow_old: bool,
) -> None:
    """Refuse an export older than its targets remember deletes (``ConfigError``), or warn if allowed."""
    age = (now_ms - export_time_ms) / 1000
    memory = delete_memory(client, indices)
    if age <= memory.seconds:
        return
    if allow_old:
        log.warning(
            "backfill of %s: %s was exported %s ago, but %s; loading it anyway (--allow-old-export): "
            "run cdcsync verify --table %s --repair afterwards to delete items that came back",
            table, url, duration(age), memory.reason, table,
        )  # fmt: skip
        return
    exported = dt.datetime.fromtimestamp(export_time_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    raise ConfigError(
        f"--from-export: {url} was exported at {exported}.{export_time_ms % 1000:03d}Z, {duration(age)} ago, "
        f"but {memory.reason}: an item deleted since the export would come back; take a new export and "
        "load it sooner, or scan the table instead (no --from-export), or pass --allow-old-export and then "
        f"run cdcsync verify --table {table} --repair to delete what came back"
    )


def delete_memory(client: OpenSearch, indices: Sequence[Template]) -> DeleteMemory:
    """The shortest of the stream retention and every target index's ``index.gc_deletes``."""
    shortest = DeleteMemory(
        STREAM_RETENTION_SECONDS,
        "the stream keeps a delete for only 24h, so deletes made before that may never have reached "
        "the index",
    )
    for index in {template.source: template for template in indices}.values():
        for memory in _index_memories(client, index):
            if memory.seconds < shortest.seconds:
                shortest = memory
    return shortest


def _index_memories(client: OpenSearch, index: Template) -> list[DeleteMemory]:
    """``index.gc_deletes`` of every existing index that ``index`` names, else of the one it would create."""
    target = index.source if index.is_literal else re.sub(r"\*+", "*", "*".join(index.literals))
    if target == "*":
        reason = f'index "{index.source}" can name any index, so the {DEFAULT_GC_DELETES} default is assumed'
        return [DeleteMemory(_DEFAULT_GC_DELETES_SECONDS, reason)]
    try:
        answer = client.indices.get_settings(
            index=target, name=_SETTING, params={"include_defaults": "true", "flat_settings": "true"}
        )
    except NotFoundError:
        answer = {}
    except TransportError as exc:
        return [_unreadable(target, exc)]
    memories = []
    for name, entry in sorted(answer.items()):
        value = entry.get("settings", {}).get(_SETTING)
        if value is not None:
            memories.append(_memory(f'index "{name}"', str(value), _SETTING))
        else:
            value = entry.get("defaults", {}).get(_SETTING, DEFAULT_GC_DELETES)
            memories.append(_memory(f'index "{name}"', str(value), f"{_SETTING}, the default"))
    return memories or [_not_created(client, index, target)]


def _not_created(client: OpenSearch, index: Template, target: str) -> DeleteMemory:
    """What an index created now would get from the index templates that match its name."""
    probe = index.source if index.is_literal else "x".join(index.literals)  # a name the template can give
    try:
        simulated: dict[str, Any] = client.indices.simulate_index_template(name=probe)
    except TransportError as exc:
        return _unreadable(target, exc)
    settings = simulated.get("template", {}).get("settings", {})
    nested = settings.get("index") if isinstance(settings.get("index"), dict) else {}
    value = settings.get(_SETTING) or nested.get("gc_deletes")
    if value is None:
        return DeleteMemory(
            _DEFAULT_GC_DELETES_SECONDS,
            f'index "{target}" does not exist and no index template sets {_SETTING}, so it would forget '
            f"a delete after {DEFAULT_GC_DELETES} (the default)",
        )
    return _memory(f'index "{target}" (not created yet)', str(value), f"{_SETTING} of its index template")


def _memory(who: str, value: str, source: str) -> DeleteMemory:
    seconds = time_value_seconds(value)
    if seconds is None:
        return DeleteMemory(0.0, f'{who} has {_SETTING} "{value}", not a time value, so it counts as 0s')
    return DeleteMemory(seconds, f"{who} forgets a delete after {value} ({source})")


def _unreadable(target: str, exc: TransportError) -> DeleteMemory:
    what = f"HTTP {exc.status_code}" if isinstance(exc.status_code, int) else "no answer"
    return DeleteMemory(
        _DEFAULT_GC_DELETES_SECONDS,
        f'{_SETTING} of index "{target}" cannot be read ({what}), so the {DEFAULT_GC_DELETES} default is '
        "assumed",
    )


def duration(seconds: float) -> str:
    """``2m``, ``3h``, ``1d 1h``: the largest whole unit and the next one down, if not zero."""
    left = max(0, round(seconds))
    units = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))
    for position, (size, unit) in enumerate(units[:-1]):
        if left >= size:
            below, below_unit = units[position + 1]
            rest = left % size // below
            return f"{left // size}{unit}" + (f" {rest}{below_unit}" if rest else "")
    return f"{left}s"
