"""The planner: one change record + the mappings -> steps. Pure: no I/O, no clock, no globals.

Rules, in order, for each mapping of the record's table:
1. ``filter`` on the record as Lambda sees it; no match -> Skip("filter").
2. REMOVE: ``deletes`` decides (TTL expiries separately); a delete needs only the keys, unless the
   index or routing is templated over other attributes: then it needs the old image, and without
   one the document's place is unknown -> Rejected("unknown_location").
3. INSERT/MODIFY without a new image (KEYS_ONLY, OLD_IMAGE views) -> FetchItem. An item gone by
   then is deleted only if ``deletes`` deletes on both REMOVE kinds, else Skip("item_gone").
4. ``where`` decides membership: an item that stops matching is deleted, one that starts is indexed.
5. A document whose index or routing changed is deleted where it was, then indexed where it is. A
   new image that names no place (a template attribute removed) still deletes the old one, and the
   record is Rejected for its new side.
6. ``skip_unchanged``: a MODIFY whose projected document and target did not change -> Skip (an
   old image the projection fails on differs: the MODIFY may be what fixes the item).
The old image is what the index holds only if the record that wrote it passed the filter; it is
trusted only when the filter would pass a record built from it (as INSERT and as MODIFY), and
otherwise every rule plans as if the record had none (NEW_IMAGE view), with one addition: the
document is also deleted where that untrusted old image puts it, if that is not where this record
writes it. The index holds the item's last state the filter passed, which is that old image or an
older one; only the latter's place stays unknown (``old_location_known=False``, counted).
Ids over OpenSearch's 512 bytes: a write is Rejected("id_too_long"), a delete Skip("id_too_long")
(such a document can never have been written, and one over-long id fails a whole bulk request).
A ``RecordError`` for one mapping becomes ``Rejected`` (dead-letter queue) and the others go on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdcsync.change import ChangeRecord
from cdcsync.errors import PlanError, RecordError
from cdcsync.mapping.compiled import CompiledMapping, MappingSet
from cdcsync.mapping.patterns import Pattern
from cdcsync.mapping.templates import format_scalar
from cdcsync.plan.actions import DeleteAction, FetchItem, IndexAction, Rejected, Skip, Step
from cdcsync.values import image_to_plain
from cdcsync.versions import MAX_VERSION, attribute_version

Target = tuple[str, str, str | None]  # index, id, routing

ID_MAX_BYTES = 512  # OpenSearch refuses longer _id values (UTF-8), failing the whole bulk request
_ID_SURELY_SHORT_CHARS = ID_MAX_BYTES // 4  # a character is at most 4 bytes in UTF-8
_VIEWS_WITHOUT_OLD_IMAGE = frozenset({"KEYS_ONLY", "NEW_IMAGE"})


def document_id(record: ChangeRecord, mapping: CompiledMapping) -> str:
    template = mapping.id
    if template is not None:
        keys = record.keys
        doc_id = template.fill(keys)
        if doc_id is None:  # render says why
            doc_id = template.render(keys, what="id", scope=f"the keys of table {record.table}")
    else:
        # Sorted key names make the default id the same from every path (stream, backfill,
        # redrive), none of which can rely on the order of the Keys map.
        parts = []
        for name in sorted(record.keys):
            text = format_scalar(record.keys[name])
            if text is None:
                raise PlanError(f"id: key attribute {name} of table {record.table} is not a scalar")
            parts.append(text)
        doc_id = "|".join(parts)
    # A character is at most 4 bytes in UTF-8: only long ids are encoded to be measured.
    if len(doc_id) > _ID_SURELY_SHORT_CHARS and (size := len(doc_id.encode())) > ID_MAX_BYTES:
        made_by = (
            f'the id made by "{mapping.id.source}"'
            if mapping.id is not None
            else "the default id (the key values joined by |)"
        )
        raise PlanError(
            f"id: {made_by} is {size} bytes; OpenSearch refuses ids over {ID_MAX_BYTES} bytes "
            '(UTF-8): give the mapping an id template over shorter key attributes (id: "{...}")',
            reason="id_too_long",
        )
    return doc_id


def _old_image_indexed(record: ChangeRecord, mapping: CompiledMapping) -> bool:
    """Whether the record's OldImage is what this mapping wrote last (so the index may hold it).

    The OldImage was the NewImage of an earlier INSERT or MODIFY of the item; if the filter skipped
    that record, the index holds something older (or nothing). The mapping carries the filter
    rewritten for that record (``old_image_filters``: as an INSERT and as a MODIFY, since which one
    it was is unknown), matched here on this record.
    """
    if record.raw_old_image is None:
        return False
    patterns = mapping.old_image_filters
    if patterns is None:
        return False
    if not patterns:
        return True
    view = record.event_view
    return all(pattern.matches(view) for pattern in patterns)


def _indexed_old_image(record: ChangeRecord, mapping: CompiledMapping) -> dict[str, Any] | None:
    """The old image if the index may hold it (see ``_old_image_indexed``), else None."""
    return record.old_image if _old_image_indexed(record, mapping) else None


def _placed_by_keys(record: ChangeRecord, mapping: CompiledMapping) -> bool:
    """Whether the keys alone (which never change) name the document's index and routing."""
    keys = record.keys
    return all(name in keys for name in mapping.index.names) and (
        mapping.routing is None or all(name in keys for name in mapping.routing.names)
    )


def _untrusted_old_target(record: ChangeRecord, mapping: CompiledMapping) -> Target | None:
    """Where an old image the filter may have skipped puts the document (call when it is not trusted).

    None: the record has no old image, the place cannot move, or the old image names none. Deleting
    there is harmless when nothing is there. The id is this item's, and only this mapping writes it
    (mappings of one table writing one index are refused); after this record the item's document
    belongs only where the record puts it, so a copy anywhere else is stale. The tombstone carries
    this record's version, and every later record of the item carries one at least as high, which
    ``external_gte`` applies: a later move back is never blocked, only replays of older writes.
    """
    if not mapping.places_by_item or (old := record.old_image) is None:
        return None
    try:
        return _target(record, mapping, old, "the old image")
    except PlanError:
        return None  # no place (or an id too long, which was never written)


def _delete_from_unknown_place(record: ChangeRecord, mapping: CompiledMapping) -> Skip:
    """A deleted item whose document's place is named by attributes no trusted old image carries.

    Raises ``PlanError("unknown_location")``: the document stays, and an operator must find it.
    """
    try:
        doc_id = document_id(record, mapping)
    except PlanError as exc:
        if exc.reason == "id_too_long":
            return Skip("id_too_long", mapping, record)
        raise
    keys = record.keys
    template = mapping.index
    if all(name in keys for name in template.names) and mapping.routing is not None:
        template = mapping.routing
    what = "index" if template is mapping.index else "routing"
    if record.raw_old_image is not None:
        why = "its OldImage, which the filter may have skipped, names none"
        fix = ""
    else:
        why = f"the record carries none (stream view {record.stream_view_type})"
        fix = ", and stream NEW_AND_OLD_IMAGES" if record.stream_view_type in _VIEWS_WITHOUT_OLD_IMAGE else ""
    raise PlanError(
        f'{what}: "{template.source}" needs the old image to find the document of this {record.event}, and '
        f"{why}; the document stays: delete id {doc_id} from {_indices(mapping)} by hand{fix}",
        reason="unknown_location",
    )


def _indices(mapping: CompiledMapping) -> str:
    index = mapping.index
    return (
        f"the index {index.source}" if index.is_literal else f"the indices {'*'.join(index.literals).lower()}"
    )


def _old_place_unknown(record: ChangeRecord, mapping: CompiledMapping, error: PlanError) -> PlanError:
    """``error`` (the new image names no place), saying that a document placed earlier may stay.

    Unknown: without a trusted old image (or an untrusted one naming a place), a MODIFY's item may
    have been indexed anywhere its template reaches.
    """
    if record.event == "INSERT" or _placed_by_keys(record, mapping):
        return error
    try:
        doc_id = document_id(record, mapping)
    except PlanError:
        return error  # no id either: never written
    why = (
        f"no OldImage (stream view {record.stream_view_type})"
        if record.raw_old_image is None
        else "its OldImage, which the filter may have skipped, names none"
    )
    return PlanError(
        f"{error}; where an earlier state put its document is unknown ({why}): delete id {doc_id} "
        f"from {_indices(mapping)} by hand if it is there",
        reason=error.reason,
    )


def _target(record: ChangeRecord, mapping: CompiledMapping, item: Mapping[str, Any], scope: str) -> Target:
    index_template, routing_template = mapping.index, mapping.routing
    if index_template.names:
        # Index names must be lowercase; attribute values such as "EU" would otherwise be refused.
        index = index_template.render(item, what="index", scope=scope).lower()
    else:
        index = index_template.source
    routing = None if routing_template is None else routing_template.render(item, what="routing", scope=scope)
    return index, document_id(record, mapping), routing


def _version(
    record: ChangeRecord, mapping: CompiledMapping, item: dict[str, Any] | None, bump: int = 0
) -> int:
    if mapping.version_attribute is None:
        return record.created_ms
    if item is None:
        raise PlanError(
            f"version: attribute:{mapping.version_attribute} needs the item image, which this "
            f"{record.event} record does not carry (stream view {record.stream_view_type}); use the "
            "NEW_AND_OLD_IMAGES view or version: stream"
        )
    return min(attribute_version(item, mapping.version_attribute) + bump, MAX_VERSION)


def _delete(
    record: ChangeRecord, mapping: CompiledMapping, target: Target, version: int, *, known: bool = True
) -> DeleteAction:
    index, doc_id, routing = target
    return DeleteAction(index, doc_id, routing, version, mapping, record, old_location_known=known)


def _delete_at(
    record: ChangeRecord,
    mapping: CompiledMapping,
    item: Mapping[str, Any],
    scope: str,
    version: int,
    *,
    known: bool = True,
) -> DeleteAction | Skip:
    """Delete the document ``item`` places; one whose id is too long was never written: Skip."""
    try:
        target = _target(record, mapping, item, scope)
    except PlanError as exc:
        if exc.reason == "id_too_long":
            return Skip("id_too_long", mapping, record)
        raise
    return _delete(record, mapping, target, version, known=known)


def _delete_where_old_image_says(record: ChangeRecord, mapping: CompiledMapping, version: int) -> Step:
    """A gone item without a trusted old image, placed by attributes the keys do not carry.

    Deleted where an old image the filter may have skipped puts it (the doubt that remains is
    counted); without a place to delete, a dead letter (``unknown_location``).
    """
    target = _untrusted_old_target(record, mapping)
    if target is None:
        return _delete_from_unknown_place(record, mapping)
    return _delete(record, mapping, target, version, known=False)


def _where_decided_by_keys(record: ChangeRecord, mapping: CompiledMapping) -> bool:
    """Whether ``where`` names only key attributes, so the keys alone (which never change) decide it.

    Single-table designs select entity types by key prefix; this lets KEYS_ONLY and NEW_IMAGE
    streams know that an order item was never in the users index, without an old image.
    """
    return bool(mapping.where_fields) and mapping.where_fields <= record.keys.keys()


def _plan_remove(record: ChangeRecord, mapping: CompiledMapping) -> Step:
    if record.is_ttl_expiry and not mapping.delete_on_ttl_expiry:
        return Skip("ignored_ttl_expiry", mapping, record)
    if not record.is_ttl_expiry and not mapping.delete_on_remove:
        return Skip("ignored_remove", mapping, record)
    old = _indexed_old_image(record, mapping)
    if not _removed_member(record, mapping, old):
        return Skip("where", mapping, record)
    # Attribute versions: the delete outranks the last write it removes, so a replay of that write
    # is stale; a re-created item must carry a higher version than the deleted one. The item's
    # counter is in any OldImage, trusted or not.
    version = _version(record, mapping, record.old_image, bump=1)
    if old is not None:
        return _delete_at(record, mapping, old, "the old image", version)
    if mapping.places_by_item and not _placed_by_keys(record, mapping):
        return _delete_where_old_image_says(record, mapping, version)
    scope = f"the keys (stream view {record.stream_view_type})"
    return _delete_at(record, mapping, record.keys, scope, version)


def _removed_member(record: ChangeRecord, mapping: CompiledMapping, old: dict[str, Any] | None) -> bool:
    """Whether a removed item may have been in the index by ``where`` (the keys decide alone if they can)."""
    where = mapping.where
    if where is None:
        return True
    if old is not None:
        return where.matches(old)
    return not _where_decided_by_keys(record, mapping) or where.matches(record.keys)


def _plan_leaving(
    record: ChangeRecord, mapping: CompiledMapping, where: Pattern, new: dict[str, Any]
) -> list[Step]:
    """The item does not match ``where`` now: delete its document if it may have been indexed."""
    old = _indexed_old_image(record, mapping)
    if old is not None:
        was_member = where.matches(old)
    else:
        # An INSERT had no earlier state; keys never change, so a keys-only where that fails now
        # failed before too. Otherwise nobody knows, and deleting is the safe answer.
        was_member = record.event != "INSERT" and not _where_decided_by_keys(record, mapping)
    if not was_member:
        return [Skip("where", mapping, record)]
    version = _version(record, mapping, new)
    if old is not None:
        try:
            return [_delete_at(record, mapping, old, "the old image", version)]
        except PlanError:
            return [Skip("where", mapping, record)]  # the old image could not name a place: never indexed
    # Deleted where the new image puts it, and where an untrusted old image does; an earlier place
    # of a moved item stays unknown (counted).
    untrusted = _untrusted_old_target(record, mapping)
    known = not mapping.places_by_item or _placed_by_keys(record, mapping)
    try:
        step = _delete_at(record, mapping, new, "the new image", version, known=known)
    except PlanError as exc:
        if untrusted is None:
            raise _old_place_unknown(record, mapping, exc) from exc
        return [_delete(record, mapping, untrusted, version, known=False)]
    if untrusted is None or isinstance(step, Skip) or untrusted == (step.index, step.id, step.routing):
        return [step]
    return [step, _delete(record, mapping, untrusted, version)]


def _cheaply_unchanged(record: ChangeRecord, mapping: CompiledMapping) -> bool | None:
    """``skip_unchanged`` on the typed images, when the target cannot move (literal index, no routing).

    Converting the old image costs as much as planning the rest of the record; most MODIFYs can be
    decided without it. None: decide the slow way.
    """
    if not (
        mapping.skip_unchanged
        and record.event == "MODIFY"
        and not mapping.index.names
        and mapping.routing is None
    ):
        return None
    new, old = record.raw_new_image, record.raw_old_image
    if new is None or old is None:
        return None
    if mapping.old_image_filters != () and not _old_image_indexed(record, mapping):  # (): trusted
        return False  # the index may hold something older: write, as without an old image
    return mapping.projection.raw_unchanged(new, old)


def _cheaply_decided_steps(
    record: ChangeRecord,
    mapping: CompiledMapping,
    unchanged: bool,
    *,
    target: Target,
    version: int,
    document: dict[str, Any],
) -> list[Step]:
    if not unchanged:
        index, doc_id, routing = target
        return [IndexAction(index, doc_id, routing, version, document, mapping, record)]
    where = mapping.where
    if where is not None and record.raw_old_image is not None:
        # The old item must have been in the index for "unchanged" to mean "nothing to write";
        # only the attributes the where pattern names are converted to find out.
        names = mapping.where_fields
        old = image_to_plain({k: v for k, v in record.raw_old_image.items() if k in names})
        if not where.matches(old):
            return _cheaply_decided_steps(
                record, mapping, False, target=target, version=version, document=document
            )
    return [Skip("unchanged", mapping, record)]


def _plan_image(
    record: ChangeRecord, mapping: CompiledMapping, new: dict[str, Any], *, fetched: bool = False
) -> list[Step]:
    # The old image is read (and converted) only by the rules that need it. A fetched item (the
    # record had no new image) is planned with the record's old image when it carries one.
    where = mapping.where
    if where is not None and not where.matches(new):
        return _plan_leaving(record, mapping, where, new)
    try:
        target = _target(record, mapping, new, "the new image")
    except PlanError as exc:
        if exc.reason != "plan_error" or not mapping.places_by_item:
            raise
        return _plan_placeless(record, mapping, new, exc)
    version = record.created_ms if mapping.version_attribute is None else _version(record, mapping, new)
    document = mapping.projection.apply(new)
    steps: list[Step] = []
    verdict = None if fetched else _cheaply_unchanged(record, mapping)
    if verdict is not None:
        return _cheaply_decided_steps(
            record, mapping, verdict, target=target, version=version, document=document
        )
    index, doc_id, routing = target
    if not mapping.compares_old_image:
        return [IndexAction(index, doc_id, routing, version, document, mapping, record)]
    old = _indexed_old_image(record, mapping)
    if old is not None and (where is None or where.matches(old)):
        try:
            old_target: Target | None = _target(record, mapping, old, "the old image")
        except PlanError:
            old_target = None  # the old image cannot name a place: nothing to move away from
        if old_target is not None and old_target != target:
            steps.append(_delete(record, mapping, old_target, version))
        elif (
            not fetched
            and mapping.skip_unchanged
            and record.event == "MODIFY"
            and _projects_to(mapping, old, document)
        ):
            return [Skip("unchanged", mapping, record)]
    elif old is None:
        untrusted = _untrusted_old_target(record, mapping)
        if untrusted is not None and untrusted != target:
            steps.append(_delete(record, mapping, untrusted, version))
    # Without a trusted old image, an item that existed may have been placed elsewhere before.
    known = (
        old is not None
        or record.event == "INSERT"
        or not mapping.places_by_item
        or _placed_by_keys(record, mapping)
    )
    steps.append(
        IndexAction(index, doc_id, routing, version, document, mapping, record, old_location_known=known)
    )
    return steps


def _projects_to(mapping: CompiledMapping, old: dict[str, Any], document: dict[str, Any]) -> bool:
    """Whether the old image projects to ``document``; one the projection fails on differs.

    The MODIFY may be what fixes the item (a computed field that failed on the old image), and an
    error in the old image must not condemn the new one.
    """
    try:
        return mapping.projection.apply(old) == document
    except RecordError:
        return False


def _plan_placeless(
    record: ChangeRecord, mapping: CompiledMapping, new: dict[str, Any], error: PlanError
) -> list[Step]:
    """The new image names no index or routing: delete the document where the old image put it.

    Otherwise it stays there for good: no later record can name that place either. The record is
    still a dead letter for its new side (redrive writes the item once it names a place again).
    """
    old = _indexed_old_image(record, mapping)
    where = mapping.where
    known = old is not None
    if old is None:
        untrusted = _untrusted_old_target(record, mapping)
        if untrusted is None:
            raise _old_place_unknown(record, mapping, error) from error
        old_target = untrusted
    elif where is not None and not where.matches(old):
        raise error
    else:
        try:
            old_target = _target(record, mapping, old, "the old image")
        except PlanError:
            raise error from None  # nor did the old image: nothing was indexed
    index, _, routing = old_target
    place = index if routing is None else f"{index} (routing {routing})"
    doubt = (
        ""
        if known
        else ", where its OldImage puts it (the filter may have skipped the record that wrote that "
        "OldImage, so a copy may stay where an older state put it)"
    )
    rejected = PlanError(f"{error}; its document was deleted from {place}{doubt}", reason=error.reason)
    return [
        _delete(record, mapping, old_target, _version(record, mapping, new), known=known),
        Rejected(rejected, mapping, record),
    ]


def _plan_gone(record: ChangeRecord, mapping: CompiledMapping) -> Step:
    """The fetched item no longer exists: delete its document where the old image (if any) put it.

    Only when every REMOVE that could have removed it deletes it: with ``deletes`` keeping either
    kind, the REMOVE record that follows in the shard decides by its own kind.
    """
    if not (mapping.delete_on_remove and mapping.delete_on_ttl_expiry):
        return Skip("item_gone", mapping, record)
    version = _version(record, mapping, None)
    old = _indexed_old_image(record, mapping)
    if old is not None:
        return _delete_at(record, mapping, old, "the old image", version)
    if mapping.places_by_item and not _placed_by_keys(record, mapping):
        return _delete_where_old_image_says(record, mapping, version)
    return _delete_at(record, mapping, record.keys, "the keys (the item no longer exists)", version)


def _plan_one(record: ChangeRecord, mapping: CompiledMapping) -> list[Step]:
    if mapping.filter is not None and not mapping.filter.matches(record.event_view):
        return [Skip("filter", mapping, record)]
    if record.event == "REMOVE":
        return [_plan_remove(record, mapping)]
    new = record.new_image
    if new is None:
        return [FetchItem(mapping, record)]
    return _plan_image(record, mapping, new)


def plan_record(record: ChangeRecord, mappings: MappingSet) -> list[Step]:
    """Plan one record against every mapping of its table (none -> one Skip("no_mapping"))."""
    table_mappings = mappings.for_table(record.table)
    if not table_mappings:
        return [Skip("no_mapping", None, record)]
    steps: list[Step] = []
    for mapping in table_mappings:
        try:
            steps += _plan_one(record, mapping)
        except RecordError as exc:
            steps.append(Rejected(exc, mapping, record))
    return steps


def plan_fetched(fetch: FetchItem, item: dict[str, Any] | None) -> list[Step]:
    """Plan a KEYS_ONLY record again with the item as read now (``None``: the item is gone).

    The fetched image is at least as new as the record, so writing it with the record's version is
    safe: any later change to the item has a later record, which is planned and written after it.
    """
    record, mapping = fetch.record, fetch.mapping
    try:
        if item is None:
            return [_plan_gone(record, mapping)]
        return _plan_image(record, mapping, item, fetched=True)
    except RecordError as exc:
        return [Rejected(exc, mapping, record)]
