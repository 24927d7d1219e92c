"""Projection: computed JMESPath fields over items holding DynamoDB's exact numbers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.support.records import compiled

TENTH = Decimal("0.10000000000000000001")  # no float holds it; float(TENTH) == 0.1
BIG = Decimal("12345678901234567.89")
ITEM: dict[str, Any] = {
    "Price": BIG,
    "Tenth": TENTH,
    "Neg": -BIG,
    "Prices": [TENTH, 0.2, 1],
    "Floats": [0.1, 0.2],
    "Lines": [{"P": 0.1}, {"P": TENTH}, {"P": 0.05}],
    "Huge": [2**64, 2**64 + 1],
}


def typed(value: Any) -> Any:
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    return (type(value).__name__, value)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Price", BIG),
        ("type(Price)", "number"),
        ("abs(Neg)", BIG),
        ("ceil(Tenth)", 1),
        ("floor(Price)", 12345678901234567),
        ("to_string(Price)", "12345678901234567.89"),
        ("to_string(Prices)", "[0.10000000000000000001,0.2,1]"),
        ("to_string(Floats)", "[0.1,0.2]"),
        ("sum(Prices)", Decimal("1.30000000000000000001")),
        ("sum(Floats)", 0.30000000000000004),  # floats alone keep JMESPath's float arithmetic
        ("sum(Huge)", 2**65 + 1),
        ("avg([Tenth, Tenth])", TENTH),
        ("max(Prices)", 1),
        ("max([Tenth, `0.1`])", TENTH),
        ("min([Tenth, `0.1`])", 0.1),
        ("max_by(Lines, &P).P", TENTH),
        ("sort_by(Lines, &P)[].P", [0.05, 0.1, TENTH]),
        ("Tenth > `0.1`", True),
        ("Tenth == `0.1`", False),
        ("Tenth != `0.1`", True),
        ("Price >= Price", True),
        ("Lines[?P > `0.1`].P", [TENTH]),
    ],
)
def test_projection_computed_field_over_exact_numbers_is_exact(expression: str, expected: Any) -> None:
    # GIVEN a computed field over numbers no float holds, next to floats and ints
    mapping = compiled(table="T", index="t", fields={"include": ["Price"], "computed": {"c": expression}})
    # WHEN the item is projected
    document = mapping.projection.apply(ITEM)
    # THEN the field is the exact result, a Decimal counting as a JMESPath number
    assert typed(document["c"]) == typed(expected)
