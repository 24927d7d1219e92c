"""Where a re-read item puts its document now, against a document ``verify``'s walk found.

Pure: the item comes from a consistent read the caller made; the planner decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cdcsync.errors import PlanError
from cdcsync.mapping.compiled import CompiledMapping
from cdcsync.plan import FetchItem, IndexAction, Rejected, plan_fetched
from cdcsync.reread import reread_record
from cdcsync.verify.compare import Drift
from cdcsync.verify.scope import Claim


@dataclass(frozen=True, slots=True)
class Place:
    """Where a re-read item puts its document, against a document the walk found.

    ``here``: where it is; ``routing``: same index and id at ``routing`` (another routing);
    ``elsewhere``: not there (``detail`` says why); ``rejected``: the mapping cannot plan the item
    (``detail``: the error), so the stream keeps whatever it wrote before.
    """

    verdict: Literal["here", "routing", "elsewhere", "rejected"]
    detail: str = ""
    routing: str | None = None


def _names_no_place(mapping: CompiledMapping, item: Mapping[str, Any]) -> bool:
    """Whether the item cannot name its index or routing (a template attribute removed)."""
    if not mapping.places_by_item:
        return False
    try:
        mapping.index.render(item, what="index")
        if mapping.routing is not None:
            mapping.routing.render(item, what="routing")
    except PlanError:
        return True
    return False


def place_now(
    table: str,
    claim: Claim,
    drift: Drift,
    *,
    keys: Mapping[str, Any],
    item: dict[str, Any],
    read_ms: int,
) -> Place:
    """Where the item as read now puts its document of ``claim``'s mapping, against ``drift``."""
    mapping = claim.mapping
    record = reread_record(table, keys, read_ms, sequence=f"verify:{read_ms}")
    steps = plan_fetched(FetchItem(mapping, record), item)
    written = [step for step in steps if isinstance(step, IndexAction) and step.id == drift.id]
    for step in written:
        if step.index == claim.scope:
            if mapping.routing is None or step.routing == drift.routing:
                return Place("here")  # created (or changed) since the scan
            return Place("routing", routing=step.routing)
    for other in steps:
        if isinstance(other, Rejected):
            if _names_no_place(mapping, item):
                # The stream deletes the document where the old image put it (planner rule 5).
                return Place("elsewhere", "the item names no index or routing now")
            return Place("rejected", str(other.error))
    if written:
        return Place("elsewhere", f"the item's document is in {written[0].index} now")
    return Place("elsewhere", "item excluded by the mapping")
