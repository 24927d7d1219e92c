"""The planner: each record kind and mapping rule, one case per behaviour."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from cdcsync.change import parse_record
from cdcsync.plan import DeleteAction, FetchItem, IndexAction, Rejected, Skip, plan_fetched, plan_record
from tests.support.records import change, compiled, fixture_event, mapping_set, stream_record

T0 = 1_700_000_000
USERS = compiled(table="Users", index="users", id="{UserId}")
ALICE = {"UserId": 1, "Username": "alice", "Status": "active"}


def only(steps: list[Any]) -> Any:
    assert len(steps) == 1, steps
    return steps[0]


def test_plan_seed_insert_indexes_document_with_ms_version() -> None:
    # GIVEN the seed blog's sample INSERT and a Users mapping
    record = parse_record(fixture_event("insert"))
    # WHEN planned
    action = only(plan_record(record, mapping_set(USERS)))
    # THEN the document is the plain item, versioned by creation time in ms
    assert isinstance(action, IndexAction)
    assert (action.index, action.id, action.routing, action.version) == (
        "users",
        "12345",
        None,
        1627992080000,
    )
    assert action.document == {"UserId": 12345, "Username": "john_doe", "Email": "john.doe@example.com"}


def test_plan_modify_indexes_new_image() -> None:
    action = only(plan_record(parse_record(fixture_event("modify")), mapping_set(USERS)))
    assert isinstance(action, IndexAction)
    assert action.document["Profile"] == {"Age": 41, "Tags": ["a", "b"]}
    assert action.version == 1627992090000


def test_plan_remove_deletes_document() -> None:
    action = only(plan_record(parse_record(fixture_event("remove")), mapping_set(USERS)))
    assert isinstance(action, DeleteAction)
    assert (action.index, action.id, action.version) == ("users", "12345", 1627992100000)


@pytest.mark.parametrize(
    ("deletes", "fixture", "expected"),
    [
        ({"on_ttl_expiry": "ignore"}, "ttl_remove", "ignored_ttl_expiry"),
        ({"on_ttl_expiry": "delete"}, "ttl_remove", "delete"),
        ({"on_remove": "ignore"}, "remove", "ignored_remove"),
        ({"on_remove": "ignore"}, "ttl_remove", "delete"),
        ({"on_remove": "delete", "on_ttl_expiry": "ignore"}, "remove", "delete"),
    ],
)
def test_plan_remove_follows_deletes_setting(deletes: dict[str, str], fixture: str, expected: str) -> None:
    # GIVEN a mapping whose deletes key treats user deletes and TTL expiries differently
    mapping = compiled(table="Users", index="users", deletes=deletes)
    # WHEN a REMOVE (TTL or not) is planned
    step = only(plan_record(parse_record(fixture_event(fixture)), mapping_set(mapping)))
    # THEN it is deleted or skipped with the reason
    if expected == "delete":
        assert isinstance(step, DeleteAction)
    else:
        assert isinstance(step, Skip)
        assert step.reason == expected


def test_plan_keys_only_modify_asks_for_fetch_then_indexes_fetched_item() -> None:
    # GIVEN a KEYS_ONLY MODIFY
    record = parse_record(fixture_event("keys_only"))
    # WHEN planned THEN the caller is asked to fetch the item
    fetch = only(plan_record(record, mapping_set(USERS)))
    assert isinstance(fetch, FetchItem)
    # AND planned again with the item read now, it is indexed with the record's version
    action = only(plan_fetched(fetch, {"UserId": 12345, "Username": "x"}))
    assert isinstance(action, IndexAction)
    assert (action.id, action.version, action.document) == (
        "12345",
        1627992120000,
        {"UserId": 12345, "Username": "x"},
    )
    # AND when the item is gone by then, the document is deleted
    gone = only(plan_fetched(fetch, None))
    assert isinstance(gone, DeleteAction)
    assert gone.version == 1627992120000


@pytest.mark.parametrize(
    ("deletes", "expected"),
    [
        ({}, "delete"),
        ({"on_remove": "ignore"}, "item_gone"),
        ({"on_ttl_expiry": "ignore"}, "item_gone"),
        ({"on_remove": "ignore", "on_ttl_expiry": "ignore"}, "item_gone"),
    ],
)
def test_plan_fetched_gone_item_follows_deletes_setting(deletes: dict[str, str], expected: str) -> None:
    # GIVEN a KEYS_ONLY MODIFY of a mapping whose deletes may keep a removed item's document
    mapping = compiled(table="Users", index="users", deletes=deletes)
    fetch = only(plan_record(parse_record(fixture_event("keys_only")), mapping_set(mapping)))
    # WHEN the item is gone by the time it is read
    step = only(plan_fetched(fetch, None))
    # THEN the document is deleted only if every REMOVE that could have removed it deletes it;
    # otherwise the REMOVE record that follows in the shard decides by its own kind
    if expected == "delete":
        assert isinstance(step, DeleteAction)
    else:
        assert isinstance(step, Skip)
        assert step.reason == expected


def test_plan_keys_only_remove_deletes_by_keys() -> None:
    record = change("REMOVE", {"UserId": 7}, view="KEYS_ONLY")
    action = only(plan_record(record, mapping_set(USERS)))
    assert isinstance(action, DeleteAction)
    assert action.id == "7"


def test_plan_filter_not_matching_skips() -> None:
    # GIVEN the seed's filter: only MODIFY events
    mapping = compiled(table="Users", index="users", filter={"eventName": ["MODIFY"]})
    # WHEN an INSERT and a MODIFY are planned
    insert = only(plan_record(parse_record(fixture_event("insert")), mapping_set(mapping)))
    modify = only(plan_record(parse_record(fixture_event("modify")), mapping_set(mapping)))
    # THEN the INSERT is skipped by the filter and the MODIFY indexed
    assert isinstance(insert, Skip)
    assert insert.reason == "filter"
    assert isinstance(modify, IndexAction)


def test_plan_filter_on_typed_new_image_matches() -> None:
    mapping = compiled(
        table="Users", index="users", filter={"dynamodb": {"NewImage": {"Status": {"S": ["active"]}}}}
    )
    assert isinstance(
        only(plan_record(parse_record(fixture_event("modify")), mapping_set(mapping))), IndexAction
    )
    assert isinstance(only(plan_record(parse_record(fixture_event("insert")), mapping_set(mapping))), Skip)


WHERE = compiled(table="Users", index="users", where={"Status": [{"anything-but": ["banned"]}]})


@pytest.mark.parametrize(
    ("event", "new", "old", "expected"),
    [
        ("INSERT", {**ALICE}, None, IndexAction),
        ("INSERT", {**ALICE, "Status": "banned"}, None, Skip),
        ("MODIFY", {**ALICE, "Status": "banned"}, {**ALICE}, DeleteAction),
        ("MODIFY", {**ALICE}, {**ALICE, "Status": "banned"}, IndexAction),
        ("MODIFY", {**ALICE, "Status": "banned"}, {**ALICE, "Status": "banned"}, Skip),
        ("REMOVE", None, {**ALICE, "Status": "banned"}, Skip),
        ("REMOVE", None, {**ALICE}, DeleteAction),
    ],
    ids=[
        "insert-member",
        "insert-outside",
        "modify-leaving",
        "modify-entering",
        "modify-outside",
        "remove-outside",
        "remove-member",
    ],
)
def test_plan_where_decides_membership(
    event: str, new: dict[str, Any] | None, old: dict[str, Any] | None, expected: type
) -> None:
    step = only(plan_record(change(event, {"UserId": 1}, new, old, seconds=T0), mapping_set(WHERE)))
    assert isinstance(step, expected)
    if isinstance(step, DeleteAction | IndexAction):
        assert step.version == T0 * 1000


def test_plan_modify_leaving_where_without_old_image_deletes_document() -> None:
    # GIVEN a NEW_IMAGE view: nobody knows whether the item was in the index
    record = change("MODIFY", {"UserId": 1}, {**ALICE, "Status": "banned"}, view="NEW_IMAGE")
    # THEN deleting is the safe answer
    assert isinstance(only(plan_record(record, mapping_set(WHERE))), DeleteAction)


def test_plan_single_table_routes_entity_types_to_their_indices() -> None:
    # GIVEN one table whose users and orders go to two indices by key prefix
    users = compiled(table="Users", index="app-users", id="{PK}", where={"PK": [{"prefix": "USER#"}]})
    orders = compiled(table="Users", index="app-orders", id="{PK}|{SK}", where={"SK": [{"prefix": "ORDER#"}]})
    mappings = mapping_set(users, orders)
    user = {"PK": "USER#1", "SK": "PROFILE", "Name": "a"}
    order = {"PK": "USER#1", "SK": "ORDER#9", "Total": 5}
    # WHEN both kinds are planned
    user_steps = plan_record(change("INSERT", {"PK": "USER#1", "SK": "PROFILE"}, user), mappings)
    order_steps = plan_record(change("INSERT", {"PK": "USER#1", "SK": "ORDER#9"}, order), mappings)
    # THEN each lands in its own index (the order also starts with USER#, so both mappings take it)
    assert [(type(s).__name__, getattr(s, "index", None)) for s in user_steps] == [
        ("IndexAction", "app-users"),
        ("Skip", None),
    ]
    assert [getattr(s, "id", None) for s in order_steps] == ["USER#1", "USER#1|ORDER#9"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {
                "include": ["UserId", "Username"],
                "rename": {"Username": "username"},
                "computed": {"full_name": "join(' ', [FirstName, LastName])", "nothing": "Missing"},
            },
            {"UserId": 1, "username": "a", "full_name": "Ada Lovelace"},
        ),
        (
            {"exclude": ["PasswordHash", "FirstName", "LastName"]},
            {"UserId": 1, "Username": "a"},
        ),
    ],
    ids=["include-rename-computed", "exclude"],
)
def test_plan_fields_project_item_into_document(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    mapping = compiled(table="Users", index="users", fields=fields)
    item = {"UserId": 1, "Username": "a", "FirstName": "Ada", "LastName": "Lovelace", "PasswordHash": "x"}
    action = only(plan_record(change("INSERT", {"UserId": 1}, item), mapping_set(mapping)))
    assert action.document == expected


def test_plan_computed_error_rejects_record_with_reason() -> None:
    mapping = compiled(table="Users", index="users", fields={"computed": {"n": "join(' ', [A, B])"}})
    step = only(plan_record(change("INSERT", {"UserId": 1}, {"UserId": 1, "A": "x"}), mapping_set(mapping)))
    assert isinstance(step, Rejected)
    assert str(step.error).startswith("fields.computed.n: \"join(' ', [A, B])\" failed on this item:")


def test_plan_id_naming_non_key_attribute_rejects_record() -> None:
    mapping = compiled(table="Users", index="users", id="{UserID}")
    step = only(plan_record(change("INSERT", {"UserId": 1}, {"UserId": 1}), mapping_set(mapping)))
    assert isinstance(step, Rejected)
    assert (
        str(step.error)
        == 'id: "{UserID}" names UserID, which is not in the keys of table Users (has: UserId)'
    )


def test_plan_default_id_joins_keys_in_name_order() -> None:
    mapping = compiled(table="Users", index="users")
    keys = {"SK": "ORDER#9", "PK": "USER#1"}
    action = only(plan_record(change("INSERT", keys, keys), mapping_set(mapping)))
    assert action.id == "USER#1|ORDER#9"


def test_plan_index_template_lowercases_and_moves_document() -> None:
    # GIVEN orders indexed by region, routed by tenant
    mapping = compiled(table="Users", index="orders-{Region}", id="{UserId}", routing="{Tenant}")
    old = {"UserId": 1, "Region": "EU", "Tenant": "t1"}
    new = {"UserId": 1, "Region": "US", "Tenant": "t1"}
    # WHEN the region changes
    steps = plan_record(change("MODIFY", {"UserId": 1}, new, old, seconds=T0), mapping_set(mapping))
    # THEN it is deleted from the old index and indexed in the new one, at the same version
    assert [(s.op, s.index, s.routing, s.version) for s in steps] == [
        ("delete", "orders-eu", "t1", T0 * 1000),
        ("index", "orders-us", "t1", T0 * 1000),
    ]


def test_plan_index_template_missing_attribute_rejects_only_that_mapping() -> None:
    broken = compiled(table="Users", index="orders-{Region}")
    fine = compiled(table="Users", index="users")
    steps = plan_record(change("INSERT", {"UserId": 1}, {"UserId": 1}), mapping_set(broken, fine))
    assert [type(s) for s in steps] == [Rejected, IndexAction]
    assert (
        str(steps[0].error)
        == 'index: "orders-{Region}" names Region, which is not in the new image (has: UserId)'
    )


@pytest.mark.parametrize(
    ("new", "expected"),
    [({**ALICE, "Status": "active", "Seen": 2}, Skip), ({**ALICE, "Username": "bob"}, IndexAction)],
    ids=["unprojected-change", "projected-change"],
)
def test_plan_skip_unchanged_compares_projected_documents(new: dict[str, Any], expected: type) -> None:
    mapping = compiled(table="Users", index="users", skip_unchanged=True, fields={"exclude": ["Seen"]})
    old = {**ALICE, "Seen": 1}
    step = only(plan_record(change("MODIFY", {"UserId": 1}, new, old), mapping_set(mapping)))
    assert isinstance(step, expected)


def test_plan_attribute_version_uses_item_counter() -> None:
    mapping = compiled(table="Users", index="users", version="attribute:Version")
    index = only(
        plan_record(change("MODIFY", {"UserId": 1}, {"UserId": 1, "Version": 7}), mapping_set(mapping))
    )
    remove = only(
        plan_record(change("REMOVE", {"UserId": 1}, None, {"UserId": 1, "Version": 7}), mapping_set(mapping))
    )
    assert (index.version, remove.version) == (7, 8)
    keys_only = only(plan_record(change("REMOVE", {"UserId": 1}, view="KEYS_ONLY"), mapping_set(mapping)))
    assert isinstance(keys_only, Rejected)
    assert "needs the item image" in str(keys_only.error)


def test_plan_table_without_mapping_skips() -> None:
    record = change("INSERT", {"Id": 1}, {"Id": 1}, arn="arn:aws:dynamodb:us-east-1:1:table/Other/stream/x")
    step = only(plan_record(record, mapping_set(USERS)))
    assert isinstance(step, Skip)
    assert step.reason == "no_mapping"


APP_USERS = compiled(
    table="Users",
    index="app-users",
    id="{PK}",
    where={"PK": [{"prefix": "USER#"}], "SK": [{"prefix": "PROFILE"}]},
)


@pytest.mark.parametrize(
    ("event", "view"), [("MODIFY", "NEW_IMAGE"), ("REMOVE", "NEW_IMAGE"), ("REMOVE", "KEYS_ONLY")]
)
def test_plan_where_on_keys_decides_without_old_image(event: str, view: str) -> None:
    # GIVEN a single-table users mapping whose where names only key attributes
    keys = {"PK": "USER#1", "SK": "ORDER#9"}
    new = {**keys, "Total": 5} if event == "MODIFY" else None
    record = change(event, keys, new, view=view)
    # WHEN an order item of the same partition changes THEN the user's document is left alone
    step = only(plan_record(record, mapping_set(APP_USERS)))
    assert isinstance(step, Skip)
    assert step.reason == "where"


def test_plan_keys_only_fetch_of_non_member_is_skipped_when_keys_decide() -> None:
    fetch = only(
        plan_record(
            change("MODIFY", {"PK": "USER#1", "SK": "ORDER#9"}, view="KEYS_ONLY"), mapping_set(APP_USERS)
        )
    )
    assert isinstance(fetch, FetchItem)
    step = only(plan_fetched(fetch, {"PK": "USER#1", "SK": "ORDER#9", "Total": 5}))
    assert isinstance(step, Skip)


def test_plan_old_image_view_moves_fetched_document() -> None:
    # GIVEN an OLD_IMAGE stream (no new image) and a templated index
    mapping = compiled(table="Users", index="users-{Region}", id="{UserId}")
    record = change(
        "MODIFY", {"UserId": 1}, None, {"UserId": 1, "Region": "EU"}, view="OLD_IMAGE", seconds=T0
    )
    fetch = only(plan_record(record, mapping_set(mapping)))
    # WHEN the item, read now, has moved region
    steps = plan_fetched(fetch, {"UserId": 1, "Region": "US"})
    # THEN the old document is deleted where the old image put it
    assert [(s.op, s.index) for s in steps] == [("delete", "users-eu"), ("index", "users-us")]


def test_plan_leaving_where_when_old_image_names_no_index_skips() -> None:
    mapping = compiled(table="Users", index="users-{Region}", where={"Status": ["active"]})
    record = change(
        "MODIFY",
        {"UserId": 1},
        {"UserId": 1, "Status": "gone", "Region": "EU"},
        {"UserId": 1, "Status": "active"},
    )
    step = only(plan_record(record, mapping_set(mapping)))
    assert isinstance(step, Skip)


@pytest.mark.parametrize(
    ("old", "new", "fields", "expected"),
    [
        ({"Tags": {"a", "b"}, "N": 1}, {"Tags": {"b", "a"}, "N": 1}, {}, Skip),
        ({"Tags": {"a", "b"}}, {"Tags": {"a", "c"}}, {}, IndexAction),
        ({"N": 1, "Seen": 1}, {"N": 1, "Seen": 2}, {"exclude": ["Seen"]}, Skip),
        ({"N": 1}, {"N": 2}, {"exclude": ["Seen"]}, IndexAction),
        ({"N": 1, "Status": "banned"}, {"N": 1, "Status": "active"}, {"exclude": ["Status"]}, IndexAction),
        (
            {"A": "x", "B": "y"},
            {"A": "x", "B": "z"},
            {"include": ["A"], "computed": {"ab": "join('', [A, B])"}},
            IndexAction,
        ),
        (
            {"A": "x", "B": "y"},
            {"A": "x", "B": "y"},
            {"include": ["A"], "computed": {"ab": "join('', [A, B])"}},
            Skip,
        ),
    ],
    ids=[
        "set-reordered",
        "set-changed",
        "excluded-change",
        "projected-change",
        "entering-where",
        "computed-change",
        "computed-same",
    ],
)
def test_plan_skip_unchanged_decides_from_typed_images(
    old: dict[str, Any], new: dict[str, Any], fields: dict[str, Any], expected: type
) -> None:
    # GIVEN a mapping that skips unchanged documents and admits only items that are not banned
    mapping = compiled(
        table="Users",
        index="users",
        skip_unchanged=True,
        fields=fields,
        where={"Status": [{"anything-but": ["banned"]}, {"exists": False}]},
    )
    record = change("MODIFY", {"UserId": 1}, {"UserId": 1, **new}, {"UserId": 1, **old})
    # WHEN planned THEN only a real change of the document (or of its membership) is written
    assert isinstance(only(plan_record(record, mapping_set(mapping))), expected)


# --- A new image that can no longer name its target (templated index or routing) ---------------


@pytest.mark.parametrize(
    ("keys", "new", "old", "deleted", "message"),
    [
        (
            {"index": "orders-{Region}"},
            {"UserId": 1},
            {"UserId": 1, "Region": "EU"},
            ("orders-eu", None),
            'index: "orders-{Region}" names Region, which is not in the new image (has: UserId); '
            "its document was deleted from orders-eu",
        ),
        (
            {"index": "orders", "routing": "{Tenant}"},
            {"UserId": 1},
            {"UserId": 1, "Tenant": "t1"},
            ("orders", "t1"),
            'routing: "{Tenant}" names Tenant, which is not in the new image (has: UserId); '
            "its document was deleted from orders (routing t1)",
        ),
    ],
    ids=["index", "routing"],
)
def test_plan_modify_new_image_naming_no_target_deletes_old_document_and_rejects(
    keys: dict[str, str],
    new: dict[str, Any],
    old: dict[str, Any],
    deleted: tuple[str, str | None],
    message: str,
) -> None:
    # GIVEN a templated mapping and a MODIFY that removed the attribute the template names
    mapping = compiled(table="Users", id="{UserId}", **keys)
    record = change("MODIFY", {"UserId": 1}, new, old, seconds=T0)
    # WHEN planned
    steps = plan_record(record, mapping_set(mapping))
    # THEN the document is deleted where the old image put it, and the record is a dead letter
    assert [type(s) for s in steps] == [DeleteAction, Rejected]
    assert (steps[0].index, steps[0].routing, steps[0].id, steps[0].version) == (*deleted, "1", T0 * 1000)
    assert str(steps[1].error) == message
    assert steps[1].reason == "plan_error"


def test_plan_fetched_item_naming_no_index_deletes_old_document_and_rejects() -> None:
    # GIVEN an OLD_IMAGE stream: the item read back no longer has the attribute the index names
    mapping = compiled(table="Users", index="orders-{Region}", id="{UserId}")
    record = change("MODIFY", {"UserId": 1}, None, {"UserId": 1, "Region": "EU"}, view="OLD_IMAGE")
    fetch = only(plan_record(record, mapping_set(mapping)))
    steps = plan_fetched(fetch, {"UserId": 1})
    # THEN the old document is deleted and the record is a dead letter for its new side
    assert [(type(s).__name__, getattr(s, "index", None)) for s in steps] == [
        ("DeleteAction", "orders-eu"),
        ("Rejected", None),
    ]


@pytest.mark.parametrize(
    ("record", "mapping", "why"),
    [
        (
            change("MODIFY", {"UserId": 1}, {"UserId": 1}, view="NEW_IMAGE"),
            {},
            "no OldImage (stream view NEW_IMAGE)",
        ),
        (
            change(
                "MODIFY",
                {"UserId": 1},
                {"UserId": 1, "Status": "published"},
                {"UserId": 1, "Status": "draft"},
            ),
            {"filter": {"dynamodb": {"NewImage": {"Status": {"S": ["published"]}}}}},
            "its OldImage, which the filter may have skipped, names none",
        ),
        (
            change("MODIFY", {"UserId": 1}, {"UserId": 1, "Hidden": True}, view="NEW_IMAGE"),
            {"where": {"Hidden": [{"exists": False}]}},
            "no OldImage (stream view NEW_IMAGE)",
        ),
    ],
    ids=["new-image-view", "old-image-the-filter-skipped-naming-no-place", "leaving-where"],
)
def test_plan_modify_naming_no_target_without_old_place_rejects_naming_the_doubt(
    record: Any, mapping: dict[str, Any], why: str
) -> None:
    # GIVEN a MODIFY whose new image names no index, and nothing known of where the item was
    step = only(
        plan_record(
            record, mapping_set(compiled(table="Users", index="orders-{Region}", id="{UserId}", **mapping))
        )
    )
    # THEN it is a dead letter that tells the operator an earlier document may stay
    assert isinstance(step, Rejected)
    assert step.reason == "plan_error"
    assert str(step.error).endswith(
        f"; where an earlier state put its document is unknown ({why}): delete id 1 from the indices "
        "orders-* by hand if it is there"
    )


# --- Ids over OpenSearch's 512-byte limit ------------------------------------------------------

LONG_KEY = {"UserId": "é" * 257}  # 514 bytes in UTF-8, 257 characters


@pytest.mark.parametrize(
    ("id_template", "message"),
    [
        (
            None,
            "id: the default id (the key values joined by |) is 514 bytes; OpenSearch refuses ids over "
            '512 bytes (UTF-8): give the mapping an id template over shorter key attributes (id: "{...}")',
        ),
        (
            "{UserId}",
            'id: the id made by "{UserId}" is 514 bytes; OpenSearch refuses ids over 512 bytes '
            '(UTF-8): give the mapping an id template over shorter key attributes (id: "{...}")',
        ),
    ],
    ids=["default-id", "id-template"],
)
def test_plan_id_over_512_bytes_rejects_record_naming_limit(id_template: str | None, message: str) -> None:
    # GIVEN a key whose id would be 514 bytes
    mapping = compiled(table="Users", index="users", **({"id": id_template} if id_template else {}))
    # WHEN its INSERT is planned
    step = only(plan_record(change("INSERT", LONG_KEY, LONG_KEY), mapping_set(mapping)))
    # THEN it is a dead letter of its own reason, not an action that fails its whole bulk request
    assert isinstance(step, Rejected)
    assert str(step.error) == message
    assert step.reason == "id_too_long"


def test_plan_id_of_512_bytes_indexes() -> None:
    keys = {"UserId": "é" * 256}
    action = only(plan_record(change("INSERT", keys, keys), mapping_set(USERS)))
    assert isinstance(action, IndexAction)
    assert len(action.id.encode()) == 512


@pytest.mark.parametrize(
    ("event", "new", "old", "view"),
    [
        ("REMOVE", None, {**LONG_KEY, "Status": "active"}, "NEW_AND_OLD_IMAGES"),
        ("REMOVE", None, None, "KEYS_ONLY"),
        ("MODIFY", {**LONG_KEY, "Status": "banned"}, {**LONG_KEY, "Status": "active"}, "NEW_AND_OLD_IMAGES"),
        ("MODIFY", {**LONG_KEY, "Status": "banned"}, None, "NEW_IMAGE"),
    ],
    ids=["remove", "keys-only-remove", "leaving-where", "leaving-where-new-image"],
)
def test_plan_delete_of_id_over_512_bytes_skips(
    event: str, new: dict[str, Any] | None, old: dict[str, Any] | None, view: str
) -> None:
    # GIVEN a document OpenSearch could never have stored (its id is over 512 bytes)
    mapping = compiled(table="Users", index="users", where={"Status": ["active"]})
    # WHEN a record would delete it THEN there is nothing to delete: skipped, no dead letter
    step = only(plan_record(change(event, LONG_KEY, new, old, view=view), mapping_set(mapping)))
    assert isinstance(step, Skip)
    assert step.reason == "id_too_long"


def test_plan_fetched_gone_item_with_id_over_512_bytes_skips() -> None:
    fetch = only(plan_record(change("MODIFY", LONG_KEY, view="KEYS_ONLY"), mapping_set(USERS)))
    step = only(plan_fetched(fetch, None))
    assert isinstance(step, Skip)
    assert step.reason == "id_too_long"


# --- A filter: the OldImage is trusted only if the record that wrote it passed the filter ---------

PUBLISHED = {"dynamodb": {"NewImage": {"Status": {"S": ["published"]}}}}


@pytest.mark.parametrize(
    "index", ["posts", "posts-{Category}"], ids=["literal-index-fast-path", "templated-index"]
)
def test_plan_skip_unchanged_old_image_the_filter_skipped_writes(index: str) -> None:
    # GIVEN posts indexed only when published, titles only, unchanged documents skipped
    mapping = compiled(
        table="Users",
        index=index,
        id="{UserId}",
        filter=PUBLISHED,
        skip_unchanged=True,
        fields={"include": ["UserId", "Title", "Category"]},
    )
    # WHEN a post edited as a draft (a record the filter skipped) is published
    old = {"UserId": 1, "Category": "a", "Title": "new", "Status": "draft"}
    new = {**old, "Status": "published"}
    step = only(plan_record(change("MODIFY", {"UserId": 1}, new, old), mapping_set(mapping)))
    # THEN it is written: the index never saw the draft's title
    assert isinstance(step, IndexAction)
    assert step.document == {"UserId": 1, "Title": "new", "Category": "a"}


def test_plan_skip_unchanged_old_image_the_filter_passed_skips() -> None:
    mapping = compiled(
        table="Users", index="posts", filter=PUBLISHED, skip_unchanged=True, fields={"include": ["Title"]}
    )
    old = {"UserId": 1, "Title": "t", "Status": "published", "Views": 1}
    step = only(plan_record(change("MODIFY", {"UserId": 1}, {**old, "Views": 2}, old), mapping_set(mapping)))
    assert isinstance(step, Skip)
    assert step.reason == "unchanged"


@pytest.mark.parametrize(
    ("filter_pattern", "skipped"),
    [
        ({"eventName": ["INSERT", "MODIFY"]}, True),
        ({"eventName": ["MODIFY"]}, False),  # the old state may come from an INSERT the filter skipped
        (
            {"dynamodb": {"OldImage": {"Status": {"S": ["published"]}}}},
            False,
        ),  # the earlier OldImage is unknown
        ({"dynamodb": {"Keys": {"UserId": {"N": ["1"]}}}}, True),
        ({"$or": [{"eventName": ["REMOVE"]}, PUBLISHED]}, True),
        ({"$or": [{"eventName": ["INSERT"]}, {"eventName": ["MODIFY"]}]}, True),
        ({"eventName": [{"prefix": "MOD"}]}, False),
        ({"dynamodb": {"$or": [PUBLISHED["dynamodb"], {"Keys": {"UserId": {"N": ["2"]}}}]}}, True),
        (
            {
                "dynamodb": {
                    "$or": [{"NewImage": {"Views": {"N": ["2"]}}}, {"Keys": {"UserId": {"N": ["2"]}}}]
                }
            },
            False,
        ),
    ],
    ids=[
        "insert-and-modify",
        "modify-only",
        "names-old-image",
        "keys",
        "or-remove-or-published",
        "or-of-events",
        "event-prefix",
        "nested-or-passing",
        "nested-or-failing",
    ],
)
def test_plan_old_image_trusted_only_when_every_record_that_wrote_it_passes(
    filter_pattern: dict[str, Any], skipped: bool
) -> None:
    mapping = compiled(
        table="Users", index="posts", filter=filter_pattern, skip_unchanged=True, fields={"include": ["T"]}
    )
    old = {"UserId": 1, "T": "t", "Status": "published", "Views": 1}
    record = change("MODIFY", {"UserId": 1}, {**old, "Views": 2}, old)
    step = only(plan_record(record, mapping_set(mapping)))
    assert isinstance(step, Skip if skipped else IndexAction)


# --- Where the document was, when nothing says (templated index without a trusted old image) ----

REGIONAL = compiled(table="Users", index="orders-{Region}", id="{UserId}")


@pytest.mark.parametrize(
    ("record", "mapping", "known", "deleted"),
    [
        (
            change("MODIFY", {"UserId": 1}, {"UserId": 1, "Region": "US"}, {"UserId": 1, "Region": "EU"}),
            REGIONAL,
            True,
            ["orders-eu"],
        ),
        (
            change("MODIFY", {"UserId": 1}, {"UserId": 1, "Region": "US"}, view="NEW_IMAGE"),
            REGIONAL,
            False,
            [],
        ),
        (
            change("INSERT", {"UserId": 1}, {"UserId": 1, "Region": "US"}, view="NEW_IMAGE"),
            REGIONAL,
            True,
            [],
        ),
        (change("MODIFY", {"UserId": 1}, {"UserId": 1, "Region": "US"}, view="NEW_IMAGE"), USERS, True, []),
        (
            change(
                "MODIFY",
                {"UserId": 1},
                {"UserId": 1, "Region": "US", "Status": "published"},
                {"UserId": 1, "Region": "EU", "Status": "draft"},
            ),
            compiled(table="Users", index="orders-{Region}", id="{UserId}", filter=PUBLISHED),
            False,
            ["orders-eu"],  # where the untrusted old image says; an older state's place is unknown
        ),
        (
            change(
                "MODIFY",
                {"UserId": 1},
                {"UserId": 1, "Region": "US", "Status": "published"},
                {"UserId": 1, "Region": "US", "Status": "draft"},
            ),
            compiled(table="Users", index="orders-{Region}", id="{UserId}", filter=PUBLISHED),
            False,
            [],
        ),
    ],
    ids=[
        "old-image",
        "new-image-view",
        "insert",
        "literal-index",
        "old-image-the-filter-skipped",
        "old-image-the-filter-skipped-same-place",
    ],
)
def test_plan_index_action_says_whether_old_location_is_known(
    record: Any, mapping: Any, known: bool, deleted: list[str]
) -> None:
    steps = plan_record(record, mapping_set(mapping))
    action = steps[-1]
    assert isinstance(action, IndexAction)
    assert action.old_location_known is known
    assert [(type(s), s.index) for s in steps[:-1]] == [(DeleteAction, index) for index in deleted]


def test_plan_keys_only_fetched_templated_write_has_unknown_old_location() -> None:
    fetch = only(plan_record(change("MODIFY", {"UserId": 1}, view="KEYS_ONLY"), mapping_set(REGIONAL)))
    action = only(plan_fetched(fetch, {"UserId": 1, "Region": "US"}))
    assert isinstance(action, IndexAction)
    assert action.old_location_known is False


@pytest.mark.parametrize(
    ("record", "mapping", "message"),
    [
        (
            change("REMOVE", {"UserId": 1}, view="KEYS_ONLY"),
            REGIONAL,
            'index: "orders-{Region}" needs the old image to find the document of this REMOVE, and the '
            "record carries none (stream view KEYS_ONLY); the document stays: delete id 1 from the "
            "indices orders-* by hand, and stream NEW_AND_OLD_IMAGES",
        ),
        (
            change("REMOVE", {"UserId": 1}, None, {"UserId": 1, "Status": "draft"}),
            compiled(
                table="Users",
                index="posts",
                id="{UserId}",
                routing="{Tenant}",
                filter={"$or": [{"eventName": ["REMOVE"]}, PUBLISHED]},
            ),
            'routing: "{Tenant}" needs the old image to find the document of this REMOVE, and its '
            "OldImage, which the filter may have skipped, names none; the document stays: delete id 1 "
            "from the index posts by hand",
        ),
    ],
    ids=["keys-only", "old-image-the-filter-skipped-naming-no-place"],
)
def test_plan_remove_with_unknown_location_rejects_as_unknown_location(
    record: Any, mapping: Any, message: str
) -> None:
    step = only(plan_record(record, mapping_set(mapping)))
    assert isinstance(step, Rejected)
    assert str(step.error) == message
    assert step.reason == "unknown_location"


@pytest.mark.parametrize(
    ("view", "old", "expected"),
    [
        ("OLD_IMAGE", {"UserId": 1, "Region": "EU"}, ("delete", "orders-eu")),
        ("KEYS_ONLY", None, "unknown_location"),
    ],
)
def test_plan_fetched_gone_item_deletes_where_old_image_put_it(
    view: str, old: dict[str, Any] | None, expected: Any
) -> None:
    # GIVEN a MODIFY without a new image whose item is gone when read back
    fetch = only(plan_record(change("MODIFY", {"UserId": 1}, None, old, view=view), mapping_set(REGIONAL)))
    step = only(plan_fetched(fetch, None))
    # THEN the document is deleted where the old image put it; without one its place is unknown
    if isinstance(step, Rejected):
        assert step.reason == expected
    else:
        assert (step.op, step.index) == expected


@pytest.mark.parametrize(
    ("id_template", "expected"),
    [
        (None, ["p|0.10000000000000000001", "p|0.10000000000000000002"]),
        ("{PK}/{SK}", ["p/0.10000000000000000001", "p/0.10000000000000000002"]),
    ],
)
def test_plan_keys_differing_in_20th_decimal_get_two_documents(
    id_template: str | None, expected: list[str]
) -> None:
    # GIVEN two items whose numeric sort keys differ only in the 20th decimal
    mapping = compiled(table="Users", index="users", **({"id": id_template} if id_template else {}))
    ids = []
    for sk in ("0.10000000000000000001", "0.10000000000000000002"):
        keys = {"PK": "p", "SK": Decimal(sk)}
        record = parse_record(stream_record("INSERT", keys, {**keys, "V": 1}))
        # WHEN each is planned
        (action,) = plan_record(record, mapping_set(mapping))
        assert isinstance(action, IndexAction)
        ids.append(action.id)
        # THEN the document holds the exact key
        assert action.document["SK"] == Decimal(sk)
    # AND the ids differ: deleting one can never delete the other
    assert ids == expected


# --- An OldImage the filter may have skipped still names a place: delete there too ----------------
# The index holds the item's last state the filter passed: this OldImage, or an older state nobody
# knows. Deleting where the OldImage says is harmless when nothing is there (the id is this item's,
# and after this record its document belongs only where the record says), so the planner deletes
# there and counts only the doubt that remains (old_location_known=False).

POSTS = {"table": "Users", "index": "posts-{Region}", "id": "{UserId}"}
PUBLISHED_OR_REMOVE = {"$or": [{"eventName": ["REMOVE"]}, PUBLISHED]}


def apply_to(index: dict[tuple[str, str], int], steps: list[Any]) -> None:
    """Apply planned actions to an index of (index, id) -> version (no versions checked)."""
    for step in steps:
        if isinstance(step, IndexAction):
            index[(step.index, step.id)] = step.version
        elif isinstance(step, DeleteAction):
            index.pop((step.index, step.id), None)


@pytest.mark.parametrize(
    "filter_pattern",
    [
        {"dynamodb": {"SizeBytes": [{"numeric": ["<", 400000]}]}},
        {"eventName": ["MODIFY", "REMOVE"]},
        PUBLISHED_OR_REMOVE,
    ],
    ids=["size-cannot-judge", "modify-and-remove-only", "old-image-the-filter-skipped"],
)
def test_plan_remove_old_image_the_filter_may_have_skipped_deletes_where_it_names(
    filter_pattern: dict[str, Any],
) -> None:
    # GIVEN a templated index and a filter that cannot vouch for the REMOVE's OldImage
    mapping = compiled(table="Users", index="orders-{Region}", id="{UserId}", filter=filter_pattern)
    record = change("REMOVE", {"UserId": 1}, None, {"UserId": 1, "Region": "EU", "Status": "draft"})
    # WHEN planned
    step = only(plan_record(record, mapping_set(mapping)))
    # THEN the document is deleted where the OldImage puts it, the doubt that remains counted
    assert isinstance(step, DeleteAction), step
    assert (step.index, step.id, step.version) == ("orders-eu", "1", T0 * 1000)
    assert step.old_location_known is False


def test_plan_post_moved_when_published_deletes_copy_where_old_image_names() -> None:
    # GIVEN a post published in EU, edited as a draft (skipped), then published in US
    mapping = compiled(**POSTS, filter=PUBLISHED)
    published_eu = {"UserId": 1, "Region": "EU", "Status": "published", "Title": "a"}
    draft_eu = {**published_eu, "Status": "draft", "Title": "b"}
    published_us = {**draft_eu, "Region": "US", "Status": "published"}
    history = [
        change("INSERT", {"UserId": 1}, published_eu, None, seconds=T0),
        change("MODIFY", {"UserId": 1}, draft_eu, published_eu, seconds=T0 + 1),
        change("MODIFY", {"UserId": 1}, published_us, draft_eu, seconds=T0 + 2),
    ]
    # WHEN planned and applied
    index: dict[tuple[str, str], int] = {}
    steps = [plan_record(record, mapping_set(mapping)) for record in history]
    for record_steps in steps:
        apply_to(index, record_steps)
    # THEN only the US document is left: the EU copy was deleted where the OldImage put it
    assert index == {("posts-us", "1"): (T0 + 2) * 1000}
    delete, write = steps[2]
    assert isinstance(delete, DeleteAction)
    assert (delete.index, delete.version) == ("posts-eu", (T0 + 2) * 1000)
    assert isinstance(write, IndexAction)
    assert write.old_location_known is False  # an older state may have been elsewhere


def test_plan_post_moved_while_filtered_leaves_copy_counted_as_unknown_location() -> None:
    # GIVEN a post published in EU, moved to US as a draft (skipped), then published in US.
    # Only the skipped record knew the EU place, and Lambda never delivers it: the limit.
    mapping = compiled(**POSTS, filter=PUBLISHED)
    published_eu = {"UserId": 1, "Region": "EU", "Status": "published"}
    draft_us = {**published_eu, "Region": "US", "Status": "draft"}
    history = [
        change("INSERT", {"UserId": 1}, published_eu, None, seconds=T0),
        change("MODIFY", {"UserId": 1}, draft_us, published_eu, seconds=T0 + 1),
        change("MODIFY", {"UserId": 1}, {**draft_us, "Status": "published"}, draft_us, seconds=T0 + 2),
    ]
    index: dict[tuple[str, str], int] = {}
    steps = [plan_record(record, mapping_set(mapping)) for record in history]
    for record_steps in steps:
        apply_to(index, record_steps)
    # THEN the EU copy stays, and the write that may have left it is counted
    assert set(index) == {("posts-eu", "1"), ("posts-us", "1")}
    write = only(steps[2])
    assert isinstance(write, IndexAction)
    assert write.old_location_known is False


def test_plan_new_image_naming_no_place_deletes_where_untrusted_old_image_names() -> None:
    # GIVEN a published post whose Region was removed, its OldImage a draft the filter skipped
    mapping = compiled(**POSTS, filter=PUBLISHED)
    record = change(
        "MODIFY",
        {"UserId": 1},
        {"UserId": 1, "Status": "published"},
        {"UserId": 1, "Region": "EU", "Status": "draft"},
        seconds=T0,
    )
    # WHEN planned
    steps = plan_record(record, mapping_set(mapping))
    # THEN the document is deleted where the OldImage puts it, and the record is a dead letter
    assert [type(s) for s in steps] == [DeleteAction, Rejected]
    assert (steps[0].index, steps[0].version, steps[0].old_location_known) == ("posts-eu", T0 * 1000, False)
    assert str(steps[1].error) == (
        'index: "posts-{Region}" names Region, which is not in the new image (has: Status, UserId); '
        "its document was deleted from posts-eu, where its OldImage puts it (the filter may have "
        "skipped the record that wrote that OldImage, so a copy may stay where an older state put it)"
    )


@pytest.mark.parametrize(
    ("old", "deleted"),
    [
        ({"UserId": 1, "Region": "EU", "Status": "draft"}, ["posts-us", "posts-eu"]),
        ({"UserId": 1, "Region": "US", "Status": "draft"}, ["posts-us"]),
    ],
    ids=["old-image-elsewhere", "old-image-same-place"],
)
def test_plan_leaving_where_with_untrusted_old_image_deletes_where_both_images_name(
    old: dict[str, Any], deleted: list[str]
) -> None:
    # GIVEN posts indexed while published and not hidden
    mapping = compiled(**POSTS, filter=PUBLISHED, where={"Hidden": [{"exists": False}]})
    # WHEN a post is hidden in US, its OldImage a draft the filter skipped
    new = {"UserId": 1, "Region": "US", "Status": "published", "Hidden": True}
    steps = plan_record(change("MODIFY", {"UserId": 1}, new, old, seconds=T0), mapping_set(mapping))
    # THEN it is deleted where both images put it, the doubt counted once
    assert all(isinstance(s, DeleteAction) for s in steps), steps
    assert [s.index for s in steps] == deleted
    assert [s.old_location_known for s in steps] == [False] + [True] * (len(deleted) - 1)


def test_plan_fetched_gone_item_with_untrusted_old_image_deletes_where_it_names() -> None:
    # GIVEN an OLD_IMAGE stream, a filter that cannot vouch for an OldImage, and the item gone
    mapping = compiled(
        table="Users",
        index="orders-{Region}",
        id="{UserId}",
        filter={"dynamodb": {"SizeBytes": [{"numeric": ["<", 400000]}]}},
    )
    record = change("MODIFY", {"UserId": 1}, None, {"UserId": 1, "Region": "EU"}, view="OLD_IMAGE")
    fetch = only(plan_record(record, mapping_set(mapping)))
    # WHEN planned with the item gone
    step = only(plan_fetched(fetch, None))
    # THEN its document is deleted where the OldImage puts it, the doubt counted
    assert isinstance(step, DeleteAction), step
    assert (step.index, step.old_location_known) == ("orders-eu", False)


# --- skip_unchanged never condemns a record for its old image ----------------------------------


@pytest.mark.parametrize("index", ["users", "users-{Region}"], ids=["literal-index", "templated-index"])
def test_plan_skip_unchanged_old_image_failing_computed_field_writes(index: str) -> None:
    # GIVEN a computed field that fails on items without Prices, and skip_unchanged
    mapping = compiled(
        table="Users",
        index=index,
        id="{UserId}",
        skip_unchanged=True,
        fields={"computed": {"total": "sum(Prices)"}},
    )
    # WHEN a MODIFY adds the Prices its old image lacked
    old = {"UserId": 1, "Region": "EU"}
    record = change("MODIFY", {"UserId": 1}, {**old, "Prices": [1, 2]}, old)
    step = only(plan_record(record, mapping_set(mapping)))
    # THEN the fixed item is written: an old image that cannot be projected differs from the new one
    assert isinstance(step, IndexAction), step
    assert step.document["total"] == 3
