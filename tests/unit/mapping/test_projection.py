"""Projection: computed JMESPath fields over items holding DynamoDB's exact numbers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdcsync.mapping.projection import Projection
from cdcsync.values import image_to_plain
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


_NAMES = st.sampled_from(["A", "B", "C"])
_TYPED = st.one_of(
    st.sampled_from(["x", "y"]).map(lambda s: {"S": s}),
    st.sampled_from(["1", "1.0", "2"]).map(lambda n: {"N": n}),
    st.permutations(["a", "b"]).map(lambda members: {"SS": members}),
    st.permutations(["1", "2"]).map(lambda members: {"NS": members}),
    st.sampled_from(["x", "y"]).map(lambda s: {"M": {"K": {"S": s}}}),
)
_IMAGES = st.dictionaries(_NAMES, _TYPED, max_size=3)


def _reference_raw_unchanged(projection: Projection, new: dict[str, Any], old: dict[str, Any]) -> bool | None:
    """raw_unchanged as first written: every attribute of either image, in any order."""
    if projection.computed:
        return True if new == old else None
    undecided = False
    for name in new.keys() | old.keys():
        if not projection.indexes(name):
            continue
        a, b = new.get(name), old.get(name)
        if a == b:
            continue
        if a is not None and b is not None and a.keys() == b.keys() and next(iter(a)) in {"SS", "NS", "BS"}:
            undecided = True
            continue
        return False
    return None if undecided else True


@settings(max_examples=400)
@given(
    st.lists(st.tuples(_IMAGES, _IMAGES), min_size=1, max_size=3),
    st.none() | st.frozensets(_NAMES),
    st.frozensets(_NAMES),
    st.booleans(),
)
def test_projection_raw_unchanged_any_images_agrees_with_reference_and_documents(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
    include: frozenset[str] | None,
    exclude: frozenset[str],
    computed: bool,
) -> None:
    # GIVEN a projection that has decided earlier pairs (its hint of a changed attribute set)
    expressions = (("Both", jmespath.compile("[A, B]")),) if computed else ()
    projection = Projection(include=include, exclude=exclude, rename={}, computed=expressions)
    *earlier, (new, old) = pairs
    for earlier_new, earlier_old in earlier:
        projection.raw_unchanged(earlier_new, earlier_old)
    # WHEN two typed images are decided on the typed images
    # THEN the answer is the reference's, and True means equal documents (False may be two
    # spellings of one number, "1" and "1.0": a write of the same document, never a lost one)
    verdict = projection.raw_unchanged(new, old)
    assert verdict == _reference_raw_unchanged(projection, new, old)
    if verdict is True:
        assert projection.apply(image_to_plain(new)) == projection.apply(image_to_plain(old))
