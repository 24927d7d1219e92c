"""Items read again now: what ``dlq redrive`` and ``verify --repair`` write, and what they may delete.

Both re-read an item with a consistent read and act on what the table holds, versioned
``read_version(time just before the read)``:

- **The item exists**: it is planned as a fetched item (``plan_fetched``), exactly as a KEYS_ONLY
  stream record of it would be: ``where``, ``fields``, id, index and routing templates decide.
- **The item is gone**: a document is deleted only when the stream would have deleted it, whatever
  removed the item. ``judge_gone`` plans the two REMOVEs that could have done it, a user delete and a
  TTL expiry (synthetic records shaped like the table's real ones, ``source/synthetic.py``), with
  the planner's own rules: ``filter``, ``deletes.on_remove`` / ``on_ttl_expiry``, ``where`` on keys.
  Delete only if both delete; if either is skipped, the mapping keeps the document (``kept``).
  When the filter names what only the gone item's old image could tell (``dynamodb.OldImage``, or
  ``SizeBytes`` on a stream that carries old images), nothing can be proved (``unknown``): the
  document is left alone and reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cdcsync.change import ChangeRecord, parse_record
from cdcsync.errors import RecordError
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.plan import Skip, plan_record
from cdcsync.source.synthetic import TableStream, names_old_image, remove_record
from cdcsync.versions import read_version

GoneVerdict = Literal["delete", "kept", "unknown"]

_KEPT_BECAUSE = {
    ("ignored_remove", False): "deletes.on_remove: ignore",
    ("ignored_ttl_expiry", True): "deletes.on_ttl_expiry: ignore",
    ("filter", False): "the filter skips its REMOVE",
    ("filter", True): "the filter skips its TTL expiry",
    ("where", False): "where excludes its keys",
    ("where", True): "where excludes its keys",
}


@dataclass(frozen=True, slots=True)
class Gone:
    """What a mapping does with the document of an item that no longer exists, and why."""

    verdict: GoneVerdict
    reason: str = ""


def judge_gone(
    stream: TableStream, mapping: CompiledMapping, keys: Mapping[str, Any], *, seconds: int
) -> Gone:
    """Whether the stream would delete ``mapping``'s document of the gone item with typed ``keys``."""
    if stream.has_old_image and names_old_image(mapping):
        return Gone(
            "unknown",
            "its filter names the old image (or SizeBytes), which went with the item",
        )
    only = MappingSet((mapping,))
    reasons: list[str] = []
    for ttl in (False, True):
        raw = remove_record(
            stream, keys, seconds=seconds, sequence=f"gone-{'ttl' if ttl else 'remove'}", ttl=ttl
        )
        try:
            steps = plan_record(parse_record(raw), only)
        except RecordError as exc:
            return Gone("unknown", f"its REMOVE cannot be planned: {exc}")
        for step in steps:
            if isinstance(step, Skip):
                reasons.append(_KEPT_BECAUSE.get((step.reason, ttl), step.reason))
    if reasons:
        return Gone("kept", "; ".join(dict.fromkeys(reasons)))
    return Gone("delete")


def reread_record(
    table: str, keys: Mapping[str, Any], read_ms: int, *, sequence: str, raw: Mapping[str, Any] | None = None
) -> ChangeRecord:
    """The record a re-read item is planned with (``plan_fetched``): its keys, and the read version.

    A MODIFY without images: what the item looked like before is unknown, so a fetched item that
    ``where`` excludes may have been indexed and its document is deleted. ``raw`` is what dead
    letters of it keep (redrive: the letter's own record).
    """
    return ChangeRecord(
        table=table,
        event="MODIFY",
        raw_keys=keys,
        sequence_number=sequence,
        created_ms=read_version(read_ms),
        is_ttl_expiry=False,
        stream_view_type="KEYS_ONLY",
        raw=raw if raw is not None else {"Keys": dict(keys)},
    )
