"""Checks of valid mappings whose combination loses what users expect (``cdcsync validate``).

Pure: the caller reads the table's stream settings (``validate --tables``) and passes them in.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from cdcsync.mapping.compiled import CompiledMapping, filter_can_judge_old_image

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
