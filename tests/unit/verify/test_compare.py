"""The pure parts of verify: JSON comparison, expected documents, document hashes, keys of extras."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from cdcsync.values import load_json
from cdcsync.verify import compare
from cdcsync.verify.compare import (
    DocumentHashes,
    TableShape,
    candidate_keys,
    compare_document,
    document_hash,
    expected_documents,
    first_difference,
)
from tests.support.records import compiled, mapping_set, typed

SHAPE = TableShape("Orders", {"TenantId": "S", "OrderId": "N"}, "eu-west-1")


@pytest.mark.parametrize(
    ("expected", "actual", "difference"),
    [
        ({"a": 1, "b": [1, "x"]}, {"b": [1, "x"], "a": 1}, None),
        ({"n": 1}, {"n": 1.0}, None),
        ({"n": 2**70}, {"n": 2**70}, None),
        ({"n": 1}, {"n": 1.5}, "n: expected 1, found 1.5"),
        ({"f": True}, {"f": 1}, "f: expected True, found 1"),
        ({"p": {"age": 30}}, {"p": {"age": 31}}, "p.age: expected 30, found 31"),
        ({"a": 1}, {}, "a: expected 1, found nothing"),
        ({}, {"z": None}, "z: expected nothing, found None"),
        ({"l": [1, 2]}, {"l": [1]}, "l: expected 2 elements, found 1"),
        ({"l": [{"k": "a"}]}, {"l": [{"k": "b"}]}, "l[0].k: expected 'a', found 'b'"),
        ({"a": 1}, None, "document: expected {'a': 1}, found None"),
        # Numbers compare by exact decimal value; a float stands for the number its text shows.
        ({"p": Decimal("12345678901234567.89")}, {"p": Decimal("12345678901234567.89")}, None),
        (
            {"p": Decimal("12345678901234567.89")},
            {"p": 1.2345678901234568e16},
            "p: expected 12345678901234567.89, found 1.2345678901234568e+16",
        ),
        (
            {"p": Decimal("0.10000000000000000001")},
            {"p": Decimal("0.10000000000000000002")},
            "p: expected 0.10000000000000000001, found 0.10000000000000000002",
        ),
        (
            {"p": Decimal("0.10000000000000000001")},
            {"p": 0.1},
            "p: expected 0.10000000000000000001, found 0.1",
        ),
        ({"p": 0.1}, {"p": Decimal("0.1")}, None),
        (
            {"p": 0.1},
            {"p": Decimal("0.1000000000000000055511151231257827021181583404541015625")},
            "p: expected 0.1, found 0.10000000000000000555111512312578270...",
        ),
        (
            {"n": 2**64 + 1},
            {"n": 1.8446744073709552e19},
            "n: expected 18446744073709551617, found 1.8446744073709552e+19",
        ),
        ({"n": 10**16}, {"n": 1e16}, None),
        ({"n": 10**16}, {"n": Decimal("1E+16")}, None),
    ],
)
def test_first_difference_compares_as_json(expected: Any, actual: Any, difference: str | None) -> None:
    # GIVEN two JSON values WHEN compared THEN the first difference is named, or None when equal
    assert first_difference(expected, actual) == difference


def test_expected_documents_where_excluded_item_expects_nothing() -> None:
    # GIVEN a mapping whose where excludes banned items
    mappings = mapping_set(
        compiled(table="Orders", index="orders", where={"Status": [{"anything-but": ["banned"]}]})
    )
    item = typed({"TenantId": "t1", "OrderId": 7, "Status": "banned"})
    # WHEN the expected documents of the item are built
    expected = expected_documents(SHAPE, item, "s1", mappings, seconds=1)
    # THEN there are none, and nothing is rejected
    assert (expected.documents, expected.rejected) == ([], [])


def test_expected_documents_templates_index_routing_and_id() -> None:
    # GIVEN a mapping with templated index, routing and projected fields
    mappings = mapping_set(
        compiled(
            table="Orders",
            index="orders-{Region}",
            routing="{TenantId}",
            fields={"include": ["OrderId", "Region"], "rename": {"Region": "region"}},
        )
    )
    item = typed({"TenantId": "t1", "OrderId": 7, "Region": "EU"})
    # WHEN the expected documents are built
    (document,) = expected_documents(SHAPE, item, "s1", mappings, seconds=1).documents
    # THEN they are the stream INSERT's: lowercased index, routing, default id, projection
    assert (document.index, document.id, document.routing, document.document) == (
        "orders-eu",
        "7|t1",
        "t1",
        {"OrderId": 7, "region": "EU"},
    )


def test_expected_documents_missing_template_attribute_is_rejected() -> None:
    # GIVEN an item without the attribute its index template names
    mappings = mapping_set(compiled(table="Orders", index="orders-{Region}"))
    # WHEN its documents are built THEN the mapping rejects it with the planner's message
    (rejected,) = expected_documents(
        SHAPE, typed({"TenantId": "t", "OrderId": 1}), "s", mappings, seconds=1
    ).rejected
    assert str(rejected.error).startswith(
        'index: "orders-{Region}" names Region, which is not in the new image'
    )


@pytest.mark.parametrize(
    ("answer", "kind", "detail"),
    [
        (None, "missing", ""),
        ({"found": False}, "missing", ""),
        ({"found": True, "_source": {"OrderId": 7.0, "TenantId": "t1"}, "_version": 3}, None, ""),
        (
            {"found": True, "_source": {"OrderId": 8, "TenantId": "t1"}, "_version": 3},
            "stale",
            "OrderId: expected 7, found 8",
        ),
    ],
)
def test_compare_document_classifies_answer(answer: Any, kind: str | None, detail: str) -> None:
    # GIVEN an expected document and the mget answer for it
    mappings = mapping_set(compiled(table="Orders", index="orders"))
    (document,) = expected_documents(
        SHAPE, typed({"TenantId": "t1", "OrderId": 7}), "s", mappings, seconds=1
    ).documents
    # WHEN compared THEN the drift kind (or none) and its detail are as expected
    drift = compare_document(document, answer)
    assert (drift.kind if drift else None, drift.detail if drift else "") == (kind, detail)


def test_document_hashes_find_added_across_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN hashes added over several sorted runs
    monkeypatch.setattr(compare, "_RUN", 7)
    hashes = DocumentHashes()
    added = [document_hash("orders", str(n)) for n in range(50)]
    for value in added:
        hashes.add(value)
    # WHEN frozen
    hashes.freeze()
    # THEN every added hash is found and others are not
    assert len(hashes) == 50
    assert all(value in hashes for value in added)
    assert document_hash("orders", "50") not in hashes
    assert document_hash("other", "1") not in hashes


def test_document_hashes_lookup_before_freeze_raises() -> None:
    hashes = DocumentHashes()
    hashes.add(1)
    with pytest.raises(RuntimeError, match="DocumentHashes lookup before freeze"):
        _ = 1 in hashes


@pytest.mark.parametrize(
    ("mapping_keys", "doc_id", "source", "keys"),
    [
        ({}, "7|t1", None, {"OrderId": {"N": "7"}, "TenantId": {"S": "t1"}}),
        (
            {"id": "order#{TenantId}#{OrderId}"},
            "order#t1#7",
            None,
            {"TenantId": {"S": "t1"}, "OrderId": {"N": "7"}},
        ),
        (
            {"id": "{OrderId}-{TenantId}"},
            "7-t1",
            {"tenant": "t1"},
            {"TenantId": {"S": "t1"}, "OrderId": {"N": "7"}},
        ),
        (
            {"fields": {"rename": {"TenantId": "tenant"}}},
            "7|a|b",
            {"tenant": "a|b", "OrderId": 7},
            {"TenantId": {"S": "a|b"}, "OrderId": {"N": "7"}},
        ),
        (  # the id lacks OrderId; _source holds it as a Decimal (no float holds it)
            {"id": "order#{TenantId}"},
            "order#t1",
            {"OrderId": Decimal("0.10000000000000000001"), "TenantId": "t1"},
            {"TenantId": {"S": "t1"}, "OrderId": {"N": "0.10000000000000000001"}},
        ),
        ({}, "x|t1", None, None),  # OrderId is a number
        ({"id": "order#{OrderId}"}, "order#7", None, None),  # the id does not hold TenantId
        ({}, "07|t1", None, None),  # 07 renders as 7: not this id
    ],
)
def test_candidate_keys_reads_the_one_key_back(
    mapping_keys: dict[str, Any], doc_id: str, source: dict[str, Any] | None, keys: dict[str, Any] | None
) -> None:
    # GIVEN a document the scan did not expect
    mapping = compiled(table="Orders", index="orders", **mapping_keys)
    # WHEN its item key is derived THEN it is the one key that renders its id again, or none
    assert candidate_keys(mapping, SHAPE.key_types, doc_id, source) == ([keys] if keys else [])


@pytest.mark.parametrize(
    ("template", "doc_id", "readings"),
    [
        (
            "{PK}#{SK}",
            "CUST#1#ORDER#7",
            [("CUST", "1#ORDER#7"), ("CUST#1", "ORDER#7"), ("CUST#1#ORDER", "7")],
        ),
        ("{PK}#{SK}", "A#B", [("A", "B")]),
        ("x-{PK}{SK}", "x-ab", [("a", "b")]),  # key values are never empty
        (None, "a|b|c", [("a", "b|c"), ("a|b", "c")]),  # the default id joins with |
        ("{PK}#{SK}", "nohash", []),
    ],
)
def test_candidate_keys_every_reading_of_an_ambiguous_id(
    template: str | None, doc_id: str, readings: list[tuple[str, str]]
) -> None:
    # GIVEN string keys PK and SK and an id template whose separator may occur inside them
    mapping = compiled(table="T", index="t", **({"id": template} if template else {}))
    # WHEN the keys of a document are derived THEN every reading that renders back is a candidate
    assert candidate_keys(mapping, {"PK": "S", "SK": "S"}, doc_id, None) == [
        {"PK": {"S": pk}, "SK": {"S": sk}} for pk, sk in readings
    ]


@pytest.mark.parametrize(
    ("stored", "parse", "kind", "detail"),
    [
        ('{"OrderId":7,"TenantId":"t1","Total":12345678901234567.89}', load_json, None, ""),
        (
            '{"OrderId":7,"TenantId":"t1","Total":12345678901234567.89}',
            json.loads,
            "stale",
            "Total: expected 12345678901234567.89, found 1.2345678901234568e+16",
        ),
        (
            '{"OrderId":7,"TenantId":"t1","Total":12345678901234567.88}',
            load_json,
            "stale",
            "Total: expected 12345678901234567.89, found 12345678901234567.88",
        ),
    ],
    ids=["exact-read-same", "float-read-rounded", "exact-read-other"],
)
def test_compare_document_number_beyond_float_precision_compares_exactly(
    stored: str, parse: Any, kind: str | None, detail: str
) -> None:
    # GIVEN an item whose number no float holds, and its document's _source as OpenSearch returns it
    mappings = mapping_set(compiled(table="Orders", index="orders"))
    item = typed({"TenantId": "t1", "OrderId": 7, "Total": Decimal("12345678901234567.89")})
    (document,) = expected_documents(SHAPE, item, "s", mappings, seconds=1).documents
    answer = {"found": True, "_source": parse(stored), "_version": 3}
    # WHEN compared
    drift = compare_document(document, answer)
    # THEN an exactly read copy of the same number is no drift, and any other number is
    assert (drift.kind if drift else None, drift.detail if drift else "") == (kind, detail)
