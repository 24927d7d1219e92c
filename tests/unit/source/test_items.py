"""Item identities and consistent reads: every valid DynamoDB key has an identity, and exact ones."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from cdcsync.errors import TransientError
from cdcsync.source.items import ItemReader, key_id

BIG_38 = "12345678901234567890123456789012345678"
MAX_N = "9.9999999999999999999999999999999999999E+125"


@pytest.mark.parametrize(
    ("left", "right", "same"),
    [
        ({"Id": {"N": "18446744073709551617"}}, {"Id": {"N": "18446744073709551617"}}, True),
        ({"Id": {"N": BIG_38}}, {"Id": {"N": BIG_38[:-1] + "9"}}, False),
        ({"Id": {"N": "-" + BIG_38}}, {"Id": {"N": BIG_38}}, False),
        ({"Id": {"N": MAX_N}}, {"Id": {"N": "99999999999999999999999999999999999999" + "0" * 88}}, True),
        ({"Id": {"N": "1E-130"}}, {"Id": {"N": "-1E-130"}}, False),
        ({"Id": {"N": "0.10000000000000000001"}}, {"Id": {"N": "0.10000000000000000002"}}, False),
        ({"Id": {"N": "0.10000000000000000001"}}, {"Id": {"N": "0.1"}}, False),
        ({"Id": {"N": "1.5"}}, {"Id": {"N": "1.50"}}, True),
        ({"Id": {"N": "1.5"}}, {"Id": {"N": "15E-1"}}, True),
        ({"Id": {"N": "0"}}, {"Id": {"N": "-0.0"}}, True),
        ({"Id": {"N": "1"}}, {"Id": {"S": "1"}}, False),
        ({"Id": {"B": b"\x00\xff"}}, {"Id": {"B": "AP8="}}, True),
        ({"P": {"S": "a"}, "R": {"N": "1"}}, {"R": {"N": "1"}, "P": {"S": "a"}}, True),
        ({"P": {"S": "a|b"}, "R": {"S": "c"}}, {"P": {"S": "a"}, "R": {"S": "b|c"}}, False),
    ],
)
def test_key_id_keys_are_the_same_item_exactly_when_their_values_are_equal(
    left: dict[str, Any], right: dict[str, Any], same: bool
) -> None:
    # GIVEN two keys of one table, in either input shape and any spelling of their numbers
    # WHEN their identities are built
    # THEN they are equal exactly when the keys name the same item
    assert (key_id("T", left) == key_id("T", right)) is same


def test_key_id_other_table_is_another_item() -> None:
    assert key_id("A", {"Id": {"N": "1"}}) != key_id("B", {"Id": {"N": "1"}})


@pytest.mark.parametrize(
    "keys",
    [
        {"Id": {"N": "abc"}},
        {"Id": {"N": "1E+999999999"}},
        {"Id": {"N": "1" * 5000}},
        {"Id": {"N": 5}},
        {"Id": {"N": None}},
        {"Id": {"X": "1"}},
        {"Id": {"S": "a", "N": "1"}},
        {"Id": "plain"},
        {"Id": {"S": "\ud800"}},
        {"Id": {"B": 7}},
    ],
)
def test_key_id_malformed_key_still_has_an_identity(keys: dict[str, Any]) -> None:
    # GIVEN a key that is not well-formed DynamoDB JSON WHEN its identity is built THEN nothing raises
    assert key_id("T", keys) == key_id("T", dict(keys))


_storable = st.builds(
    lambda coefficient, exponent: Decimal(f"{coefficient}E{exponent}"),
    st.integers(-(10**38) + 1, 10**38 - 1),
    st.integers(-130, 88),
).filter(lambda d: d.is_zero() or -130 <= d.adjusted() <= 125)


@settings(deadline=None)
@given(left=_storable, right=_storable)
def test_key_id_any_dynamodb_numbers_are_one_item_exactly_when_equal(left: Decimal, right: Decimal) -> None:
    # GIVEN any two numbers DynamoDB can hold as keys, in boto3's spelling and in plain notation
    a = {"Id": TypeSerializer().serialize(left)}
    b = {"Id": {"N": format(right, "f")}}
    # WHEN their identities are built THEN nothing raises, and they are equal exactly when the numbers are
    assert (key_id("T", a) == key_id("T", b)) is (left == right)


class FakeDynamoDB:
    """BatchGetItem over a dict of items, answering numbers in DynamoDB's normalised spelling."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.requests: list[Any] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.requests.append(RequestItems)
        ((table, request),) = RequestItems.items()
        wanted = {Decimal(key["Id"]["N"]) for key in request["Keys"]}
        found = [item for item in self.items if Decimal(item["Id"]["N"]) in wanted]
        return {"Responses": {table: found}, "UnprocessedKeys": {}}


def test_item_reader_keys_beyond_64_bits_and_float_precision_are_read() -> None:
    # GIVEN items whose numeric keys are 38 digits, above 2^64, and fractions beyond a float's precision
    numbers = [BIG_38, "18446744073709551617", "0.10000000000000000001", "0.10000000000000000002", "1.5"]
    dynamodb = FakeDynamoDB([{"Id": {"N": n}, "Name": {"S": f"item {n}"}} for n in numbers])
    # WHEN they are read by the keys a stream delivers ("1.50" spelled otherwise than DynamoDB answers)
    keys = [{"Id": {"N": n}} for n in numbers[:-1]] + [{"Id": {"N": "1.50"}}]
    found = ItemReader(dynamodb).read("T", keys)
    # THEN each key finds its own item
    assert [found[key_id("T", key)] for key in keys] == [
        {"Id": int(BIG_38), "Name": f"item {BIG_38}"},
        {"Id": 2**64 + 1, "Name": "item 18446744073709551617"},
        {"Id": Decimal("0.10000000000000000001"), "Name": "item 0.10000000000000000001"},
        {"Id": Decimal("0.10000000000000000002"), "Name": "item 0.10000000000000000002"},
        {"Id": 1.5, "Name": "item 1.5"},
    ]


def test_item_reader_answer_without_responses_is_transient_not_every_item_gone() -> None:
    # GIVEN a BatchGetItem answer with no Responses (botocore reads a garbled 200 body as {}: taken
    # as it was, every item looked deleted, and their documents would be deleted)
    class Garbled(FakeDynamoDB):
        def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
            self.requests.append(RequestItems)
            return {}

    reader = ItemReader(Garbled([]), sleep=lambda _: None)
    # WHEN items are read THEN it fails for now instead of answering "gone"
    with pytest.raises(TransientError) as caught:
        reader.read("T", [{"Id": {"N": "1"}}])
    assert str(caught.value) == (
        "BatchGetItem of 1 items of table T: DynamoDB answered without Responses; retrying later"
    )
