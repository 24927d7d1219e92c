"""Checks of valid mappings whose combination loses what users expect (``cdcsync validate``).

Pure: the caller reads the table's stream settings (``validate --tables``) and passes them in.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
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


# An OldImage the filter may have skipped still names a place: the planner deletes there too.
_FILTER_UNKNOWN_PLACE = (
    "a document is deleted where the OldImage puts it, but a copy stays where an older state put it if the "
    "item moved in records the filter skipped (counted in cdcsync_unknown_location_writes_total)"
)


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
        effects.append(_FILTER_UNKNOWN_PLACE)
    return f"{head}{',' if trust == 'per record' else ':'} {'; '.join(effects)}"


@dataclass(frozen=True, slots=True)
class TableFinding:
    """What a mapping meets on its live table (``validate --tables``, the worker at start-up)."""

    key: str  # the mapping key it is about
    message: str  # what fails, and the fix
    refuses: bool  # never works (validate exits 1, the worker does not start); else works with limits


_NEW_AND_OLD = (
    "; fix: stream NEW_AND_OLD_IMAGES (a view type cannot change in place: disable the stream, enable it "
    "with NEW_AND_OLD_IMAGES, then run cdcsync backfill)"
)


def _key_like(name: str, key_names: Collection[str]) -> str | None:
    """The key attribute ``name`` most likely misspells, if any."""
    folded = {key.lower(): key for key in key_names}
    if name.lower() in folded:
        return folded[name.lower()]
    close = difflib.get_close_matches(name, list(key_names), n=1, cutoff=0.8)
    return close[0] if close else None


def _name_findings(mapping: CompiledMapping, key_names: Collection[str]) -> list[TableFinding]:
    keys = f"keys: {', '.join(sorted(key_names))}"
    findings = []
    for key, template in (("id", mapping.id), ("index", mapping.index), ("routing", mapping.routing)):
        if template is None:
            continue
        missing = [name for name in template.names if name not in key_names]
        if not missing:
            continue
        guesses = {name: _key_like(name, key_names) for name in missing}
        fixed = template.source
        for name, guess in guesses.items():
            fixed = fixed.replace(f"{{{name}}}", f"{{{guess}}}") if guess else fixed
        head = (
            f'"{template.source}" names {", ".join(missing)}, not a key attribute of table '
            f"{mapping.table} ({keys})"
        )
        if key == "id":
            fix = (
                f'write "{fixed}"'
                if all(guesses.values())
                else "name only key attributes (a REMOVE carries nothing else)"
            )
            findings.append(TableFinding(key, f"{head}: every record is a dead letter; {fix}", refuses=True))
        elif any(guesses.values()):
            findings.append(
                TableFinding(
                    key,
                    f'{head}: an item without it is a dead letter; if you meant the key, write "{fixed}"',
                    refuses=False,
                )
            )
    return findings


def table_findings(
    mapping: CompiledMapping, view: str | None, key_names: Collection[str]
) -> list[TableFinding]:
    """What ``mapping`` meets on a table with stream ``view`` (None: no stream) and these key names."""
    if view is None:
        return [
            TableFinding(
                "table",
                f"table {mapping.table} has no enabled stream: nothing reaches the index; enable one: "
                f"aws dynamodb update-table --table-name {mapping.table} --stream-specification "
                "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES",
                refuses=True,
            )
        ]
    findings = _name_findings(mapping, key_names)
    if view not in VIEWS_WITHOUT_OLD_IMAGE:
        return findings
    carries = f"which the table's {view} stream does not carry"
    for key, template in (("index", mapping.index), ("routing", mapping.routing)):
        if template is not None and not set(template.names) <= set(key_names):
            needs = f'"{template.source}" needs the old image to find a document'
            message = f"{needs}, {carries}: {_UNKNOWN_PLACE}{_NEW_AND_OLD}"
            findings.append(TableFinding(key, message, refuses=True))
            break
    if mapping.where is not None and not mapping.where_fields <= set(key_names):
        beyond = ", ".join(sorted(mapping.where_fields - set(key_names)))
        findings.append(
            TableFinding(
                "where",
                f"names {beyond}, not only key attributes, and the table's {view} stream carries no old "
                f"image: each write of an item outside where deletes its document, indexed or not"
                f"{_NEW_AND_OLD}",
                refuses=False,
            )
        )
    if mapping.skip_unchanged:
        findings.append(
            TableFinding(
                "skip_unchanged",
                f"needs the old image, {carries}: every MODIFY is written{_NEW_AND_OLD}",
                refuses=False,
            )
        )
    if mapping.version_attribute is not None and (mapping.delete_on_remove or mapping.delete_on_ttl_expiry):
        findings.append(
            TableFinding(
                "version",
                f"attribute:{mapping.version_attribute} needs the old image to version a delete, {carries}: "
                f"every REMOVE is a dead letter{_NEW_AND_OLD}, or set deletes: "
                "{on_remove: ignore, on_ttl_expiry: ignore}",
                refuses=True,
            )
        )
    return findings


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
