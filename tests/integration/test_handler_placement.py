"""Where a document is, when the index or routing is templated: moves, lost places, dead letters.

Through the Lambda handler against moto and an OpenSearch-compatible server, as operators see it:
documents, dead letters and metrics.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.lambda_world import LambdaWorld, WorldFactory

T0 = 1_700_000_000
ROUTED = 'routing: "{Tenant}"\n'


@pytest.fixture
def world(world_factory: WorldFactory) -> LambdaWorld:
    return world_factory(mapping=ROUTED)


def _routed_doc(world: LambdaWorld, doc_id: str, routing: str) -> dict[str, Any] | None:
    answer = world.opensearch.get(index=world.index, id=doc_id, routing=routing, ignore=[404])  # type: ignore[call-arg]
    return answer["_source"] if answer.get("found") else None


def _sample(world: LambdaWorld, name: str, **labels: str) -> float:
    return world.metrics.registry.get_sample_value(name, {"table": world.table, **labels}) or 0.0


def test_handler_modify_removing_routing_attribute_deletes_old_document_and_dead_letters(
    world: LambdaWorld,
) -> None:
    # GIVEN a document routed by its Tenant
    item = {"UserId": 1, "Tenant": "t1", "Name": "a"}
    world.invoke(world.record("INSERT", 1, item, seconds=T0))
    assert _routed_doc(world, "1", "t1") == item
    # WHEN the item loses its Tenant
    answer = world.invoke(world.record("MODIFY", 1, {"UserId": 1, "Name": "a"}, item, seconds=T0 + 1))
    # THEN the routed document is deleted, and the record is a dead letter for its new side
    assert answer == {"batchItemFailures": []}
    assert _routed_doc(world, "1", "t1") is None
    (letter,) = world.dead_letters()
    assert (letter.error.type, letter.error.reason) == (
        "plan_error",
        'routing: "{Tenant}" names Tenant, which is not in the new image (has: Name, UserId); '
        f"its document was deleted from {world.index} (routing t1)",
    )
    assert world.counter("MODIFY", "dlq") == 1
    assert _sample(world, "cdcsync_dlq_records_total", reason="plan_error") == 1


def test_handler_new_image_view_makes_unknown_places_visible(world: LambdaWorld) -> None:
    # GIVEN a NEW_IMAGE stream: records carry no old image, so nothing says where a document was
    item = {"UserId": 1, "Tenant": "t1"}
    insert = world.record("INSERT", 1, item, seconds=T0, view="NEW_IMAGE")
    modify = world.record("MODIFY", 1, {**item, "Tenant": "t2"}, seconds=T0 + 1, view="NEW_IMAGE")
    remove = world.record("REMOVE", 1, seconds=T0 + 2, view="NEW_IMAGE")
    # WHEN the item is created, moved and removed
    assert world.invoke(insert, modify, remove) == {"batchItemFailures": []}
    # THEN the moving write is counted as one whose earlier place was unknown (on an index of
    # several shards, the copy routed by t1 stays)
    assert _sample(world, "cdcsync_unknown_location_writes_total") == 1
    # AND the REMOVE is a dead letter of its own reason, naming what to delete by hand
    (letter,) = world.dead_letters()
    assert (letter.error.type, letter.error.reason) == (
        "unknown_location",
        'routing: "{Tenant}" needs the old image to find the document of this REMOVE, and the record '
        f"carries none (stream view NEW_IMAGE); the document stays: delete id 1 from the index "
        f"{world.index} by hand, and stream NEW_AND_OLD_IMAGES",
    )
    assert _sample(world, "cdcsync_dlq_records_total", reason="unknown_location") == 1


def test_handler_id_over_512_bytes_is_dead_letter_and_batch_goes_on(
    world_factory: WorldFactory,
) -> None:
    # GIVEN a table with string keys, and a batch holding one key too long for an OpenSearch id
    world = world_factory(key_type="S")
    long_key = "k" * 513
    keys: list[Any] = ["a", long_key, "b"]
    records = [world.record("INSERT", key, {"UserId": key}, seconds=T0) for key in keys]
    # WHEN the handler runs
    assert world.invoke(*records) == {"batchItemFailures": []}
    # THEN the others are indexed and the long one is a dead letter naming the limit and the fix
    assert set(world.docs()) == {"a", "b"}
    (letter,) = world.dead_letters()
    assert (letter.error.type, letter.error.reason) == (
        "id_too_long",
        'id: the id made by "{UserId}" is 513 bytes; OpenSearch refuses ids over 512 bytes (UTF-8): '
        'give the mapping an id template over shorter key attributes (id: "{...}")',
    )
    assert _sample(world, "cdcsync_dlq_records_total", reason="id_too_long") == 1


def test_handler_remove_whose_old_image_the_filter_may_have_skipped_deletes_and_counts(
    world_factory: WorldFactory,
) -> None:
    # GIVEN posts routed by Tenant, indexed while published (REMOVEs pass the filter)
    world = world_factory(
        mapping=ROUTED
        + "filter:\n  $or:\n    - eventName: [REMOVE]\n"
        + "    - dynamodb: {NewImage: {Status: {S: [published]}}}\n"
    )
    published = {"UserId": 1, "Tenant": "t1", "Status": "published"}
    draft = {**published, "Status": "draft"}
    # WHEN a post is published, edited as a draft (skipped by the filter), then removed
    answer = world.invoke(
        world.record("INSERT", 1, published, seconds=T0),
        world.record("MODIFY", 1, draft, published, seconds=T0 + 1),
        world.record("REMOVE", 1, None, draft, seconds=T0 + 2),
    )
    # THEN the document is deleted where the REMOVE's OldImage puts it, with no dead letter
    assert answer == {"batchItemFailures": []}
    assert _routed_doc(world, "1", "t1") is None
    assert world.dead_letters() == []
    assert world.counter("REMOVE", "deleted") == 1
    # AND the doubt left (an older state may have been routed elsewhere) is counted
    assert _sample(world, "cdcsync_unknown_location_writes_total") == 1
