"""The planner: one change record + the mappings -> steps. Pure: no I/O, no clock, no globals.

Rules, in order, for each mapping of the record's table:
1. ``filter`` on the record as Lambda sees it; no match -> Skip("filter").
2. REMOVE: ``deletes`` decides (TTL expiries separately); a delete needs only the keys.
3. INSERT/MODIFY without a new image (KEYS_ONLY, OLD_IMAGE views) -> FetchItem.
4. ``where`` decides membership: an item that stops matching is deleted, one that starts is indexed.
5. A document whose index or routing changed is deleted where it was, then indexed where it is.
6. ``skip_unchanged``: a MODIFY whose projected document and target did not change -> Skip.
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


def document_id(record: ChangeRecord, mapping: CompiledMapping) -> str:
    if mapping.id is not None:
        return mapping.id.render(record.keys, what="id", scope=lambda: f"the keys of table {record.table}")
    # Sorted key names make the default id the same from every path (stream, backfill, redrive),
    # none of which can rely on the order of the Keys map.
    parts = []
    for name in sorted(record.keys):
        text = format_scalar(record.keys[name])
        if text is None:
            raise PlanError(f"id: key attribute {name} of table {record.table} is not a scalar")
        parts.append(text)
    return "|".join(parts)


def _target(record: ChangeRecord, mapping: CompiledMapping, item: Mapping[str, Any], scope: str) -> Target:
    index = mapping.index.source
    if not mapping.index.is_literal:
        # Index names must be lowercase; attribute values such as "EU" would otherwise be refused.
        index = mapping.index.render(item, what="index", scope=scope).lower()
    routing = None if mapping.routing is None else mapping.routing.render(item, what="routing", scope=scope)
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


def _delete(record: ChangeRecord, mapping: CompiledMapping, target: Target, version: int) -> DeleteAction:
    index, doc_id, routing = target
    return DeleteAction(index, doc_id, routing, version, mapping, record)


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
    old = record.old_image
    where = mapping.where
    if where is not None:
        if old is not None and not where.matches(old):
            return Skip("where", mapping, record)
        if old is None and _where_decided_by_keys(record, mapping) and not where.matches(record.keys):
            return Skip("where", mapping, record)
    item = old if old is not None else record.keys
    scope = "the old image" if old is not None else f"the keys (stream view {record.stream_view_type})"
    # Attribute versions: the delete outranks the last write it removes, so a replay of that write
    # is stale; a re-created item must carry a higher version than the deleted one.
    return _delete(
        record, mapping, _target(record, mapping, item, scope), _version(record, mapping, old, bump=1)
    )


def _plan_leaving(
    record: ChangeRecord, mapping: CompiledMapping, where: Pattern, new: dict[str, Any]
) -> list[Step]:
    """The item does not match ``where`` now: delete its document if it may have been indexed."""
    old = record.old_image
    if old is not None:
        was_member = where.matches(old)
    else:
        # An INSERT had no earlier state; keys never change, so a keys-only where that fails now
        # failed before too. Otherwise nobody knows, and deleting is the safe answer.
        was_member = record.event != "INSERT" and not _where_decided_by_keys(record, mapping)
    if not was_member:
        return [Skip("where", mapping, record)]
    if old is not None:
        try:
            target = _target(record, mapping, old, "the old image")
        except PlanError:
            return [Skip("where", mapping, record)]  # the old image could not name a place: never indexed
    else:
        target = _target(record, mapping, new, "the new image")
    return [_delete(record, mapping, target, _version(record, mapping, new))]


def _cheaply_unchanged(record: ChangeRecord, mapping: CompiledMapping) -> bool | None:
    """``skip_unchanged`` on the typed images, when the target cannot move (literal index, no routing).

    Converting the old image costs as much as planning the rest of the record; most MODIFYs can be
    decided without it. None: decide the slow way.
    """
    if not (
        mapping.skip_unchanged
        and record.event == "MODIFY"
        and mapping.index.is_literal
        and mapping.routing is None
    ):
        return None
    new, old = record.raw_new_image, record.raw_old_image
    if new is None or old is None:
        return None
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
    index, doc_id, routing = target
    index_action: list[Step] = [IndexAction(index, doc_id, routing, version, document, mapping, record)]
    if not unchanged:
        return index_action
    where = mapping.where
    if where is not None and record.raw_old_image is not None:
        # The old item must have been in the index for "unchanged" to mean "nothing to write";
        # only the attributes the where pattern names are converted to find out.
        names = mapping.where_fields
        old = image_to_plain({k: v for k, v in record.raw_old_image.items() if k in names})
        if not where.matches(old):
            return index_action
    return [Skip("unchanged", mapping, record)]


def _plan_image(
    record: ChangeRecord, mapping: CompiledMapping, new: dict[str, Any], *, fetched: bool = False
) -> list[Step]:
    # The old image is read (and converted) only by the rules that need it. A fetched item (the
    # record had no new image) is planned with the record's old image when it carries one.
    where = mapping.where
    if where is not None and not where.matches(new):
        return _plan_leaving(record, mapping, where, new)
    target = _target(record, mapping, new, "the new image")
    version = _version(record, mapping, new)
    document = mapping.projection.apply(new)
    steps: list[Step] = []
    verdict = None if fetched else _cheaply_unchanged(record, mapping)
    if verdict is not None:
        return _cheaply_decided_steps(
            record, mapping, verdict, target=target, version=version, document=document
        )
    old = record.old_image if mapping.compares_old_image else None
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
            and mapping.projection.apply(old) == document
        ):
            return [Skip("unchanged", mapping, record)]
    index, doc_id, routing = target
    steps.append(IndexAction(index, doc_id, routing, version, document, mapping, record))
    return steps


def _plan_one(record: ChangeRecord, mapping: CompiledMapping) -> list[Step]:
    if mapping.filter is not None and not mapping.filter.matches(record.event_view):
        return [Skip("filter", mapping, record)]
    if record.event == "REMOVE":
        return [_plan_remove(record, mapping)]
    if record.new_image is None:
        return [FetchItem(mapping, record)]
    return _plan_image(record, mapping, record.new_image, fetched=False)


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
            target = _target(record, mapping, record.keys, "the keys (the item no longer exists)")
            return [_delete(record, mapping, target, _version(record, mapping, None))]
        return _plan_image(record, mapping, item, fetched=True)
    except RecordError as exc:
        return [Rejected(exc, mapping, record)]
