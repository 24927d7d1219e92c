"""Checks of valid mappings whose combination loses what users expect (``cdcsync validate``).

Pure: the caller reads the table's stream settings (``validate --tables``) and passes them in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final, Literal

from cdcsync.mapping.compiled import CompiledMapping, filter_can_judge_old_image
from cdcsync.mapping.patterns import compile_pattern, normalized

OldImageTrust = Literal["always", "never", "per record"]
VIEWS_WITHOUT_OLD_IMAGE = frozenset({"NEW_IMAGE", "KEYS_ONLY"})
_UNKNOWN_PLACE = (
    "a document moved meanwhile stays in its old place (counted in cdcsync_unknown_location_writes_total) "
    "and a REMOVE is a dead letter (unknown_location)"
)


def old_image_trust(mapping: CompiledMapping) -> OldImageTrust:
    """Whether the planner trusts a record's OldImage to be what the index holds (see plan/planner.py)."""
    patterns = mapping.old_image_filters
    if patterns is None:
        return "never"
    return "per record" if patterns else "always"


def filter_warning(mapping: CompiledMapping) -> str | None:
    """A filter meeting ``skip_unchanged`` or a templated index/routing: what it costs, in one line."""
    trust = old_image_trust(mapping)
    if trust == "always" or not (mapping.skip_unchanged or mapping.places_by_item):
        return None
    if trust == "never":
        why = (
            "names what the record that wrote an OldImage need not share (its OldImage, time, size or id)"
            if mapping.model.filter is not None and not filter_can_judge_old_image(mapping.model.filter)
            else "skips INSERT or MODIFY records, and either may have written an OldImage"
        )
        head = f"filter: {why}, so no OldImage is trusted to be what the index holds"
    else:
        head = (
            "filter: an OldImage is trusted to be what the index holds only if the filter would have "
            "passed the record that wrote it (as an INSERT and as a MODIFY); for the others"
        )
    effects = []
    if mapping.skip_unchanged:
        effects.append("skip_unchanged writes" if trust == "per record" else "skip_unchanged never skips")
    if mapping.places_by_item:
        effects.append(_UNKNOWN_PLACE)
    return f"{head}{',' if trust == 'per record' else ':'} {'; '.join(effects)}"


def view_problems(
    mapping: CompiledMapping, view: str | None, key_names: Collection[str]
) -> list[tuple[str, str]]:
    """What ``mapping`` cannot do on a stream of ``view`` (None: no stream): (mapping key, message)."""
    if view is None:
        return [("table", f"table {mapping.table} has no enabled stream: nothing reaches the index")]
    if view not in VIEWS_WITHOUT_OLD_IMAGE:
        return []
    carries = f"which the table's {view} stream does not carry"
    fix = "; stream NEW_AND_OLD_IMAGES"
    problems: list[tuple[str, str]] = []
    for key, template in (("index", mapping.index), ("routing", mapping.routing)):
        if template is not None and not set(template.names) <= set(key_names):
            needs = f'"{template.source}" needs the old image to find a document'
            problems.append((key, f"{needs}, {carries}: {_UNKNOWN_PLACE}{fix}"))
            break
    if mapping.skip_unchanged:
        problems.append(("skip_unchanged", f"needs the old image, {carries}: it never skips{fix}"))
    if mapping.version_attribute is not None and mapping.delete_on_remove:
        problems.append(
            (
                "version",
                f"attribute:{mapping.version_attribute} needs the old image to version a delete, {carries}: "
                f"every REMOVE is a dead letter{fix}",
            )
        )
    return problems


# --- the filter trap ------------------------------------------------------------------------------------
# A filter skips records, and a skipped record changes nothing: a filter that can skip a REMOVE, or the
# MODIFY that takes an item out of `where` (or, without `where`, any MODIFY), leaves a document that
# should have gone or changed. The filter is judged on what every such record surely is; the rest is
# unknown, and a condition on it can skip.
_SAME: Final = object()  # the same on every record of the stream, or of one item (Keys): decides nothing
_UNKNOWN: Final = object()  # differs between records: a condition on it may fail
_ABSENT: Final = object()
_TTL_IDENTITY: Final = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
_STREAM_FIELDS: Final = (
    "eventSource",
    "eventVersion",
    "awsRegion",
    "eventSourceARN",
    "tableName",
    "recordFormat",
)


def _record_shape(event: str, *, ttl: bool = False) -> dict[str, Any]:
    return {
        **dict.fromkeys(_STREAM_FIELDS, _SAME),
        "eventID": _UNKNOWN,
        "eventName": event,
        "userIdentity": _TTL_IDENTITY if ttl else _ABSENT,
        "dynamodb": {
            "Keys": _SAME,  # keys never change: a key condition skips all of an item's records or none
            "StreamViewType": _SAME,
            "NewImage": _ABSENT if event == "REMOVE" else _UNKNOWN,
            "OldImage": _UNKNOWN,
            "SizeBytes": _UNKNOWN,
            "SequenceNumber": _UNKNOWN,
            "ApproximateCreationDateTime": _UNKNOWN,
        },
    }


def _judge(pattern: Mapping[str, Any], shape: Mapping[str, Any]) -> bool | None:
    """Whether every record of ``shape`` matches (True), none does (False), or it depends (None)."""
    results = []
    for key, value in pattern.items():
        if key == "$or":
            judged = [_judge(alternative, shape) for alternative in value]
            results.append(True if True in judged else False if all(j is False for j in judged) else None)
            continue
        known = shape.get(key, _ABSENT)
        if known is _SAME:
            results.append(True)  # if it fails, it fails for every record alike: not this trap
        elif known is _UNKNOWN:
            results.append(None)
        elif isinstance(value, Mapping) and isinstance(known, dict) and known is not _TTL_IDENTITY:
            results.append(_judge(value, known))
        else:
            record = {} if known is _ABSENT else {key: known}
            results.append(compile_pattern({key: value}).matches(record))
    if False in results:
        return False
    return True if all(result is True for result in results) else None


def filter_trap_warning(mapping: CompiledMapping) -> str | None:
    """The filter can skip a record that must delete or change a document: what stays, in one line."""
    if mapping.model.filter is None:
        return None
    pattern = normalized(mapping.model.filter)
    removes = [
        kind
        for kind, ttl, deletes in (
            ("deletes", False, mapping.delete_on_remove),
            ("TTL expiries", True, mapping.delete_on_ttl_expiry),
        )
        if deletes and _judge(pattern, _record_shape("REMOVE", ttl=ttl)) is not True
    ]
    effects = []
    if removes:
        which = "" if len(removes) == 2 else f" of {removes[0]}"  # noqa: PLR2004 - both kinds
        effects.append(f"REMOVE records{which} (a deleted item's document stays in the index)")
    if _judge(pattern, _record_shape("MODIFY")) is not True:
        effects.append(
            "MODIFY records that take an item out of where (its document stays in the index)"
            if mapping.where is not None
            else "MODIFY records (the document keeps the item's old values)"
        )
    if not effects:
        return None
    return (
        f"filter: can skip {' and '.join(effects)}; express membership with where, which deletes an "
        "item that stops matching, and filter only records this mapping never needs"
    )
