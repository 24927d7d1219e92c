"""opensearch-py's JSON answers read with orjson where that is exact, else with ``values.load_json``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdcsync.sink.client import ExactJSONSerializer
from cdcsync.values import dump_json, load_json


def typed(value: Any) -> Any:
    """``value`` with every leaf's type beside it, so 1 and 1.0 (or a float and a Decimal) differ."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize(
    "text",
    [
        '{"items":[{"index":{"status":201}},{"delete":{"status":404}}]}',
        '{"n": 12345678901234567.89, "f": 0.1, "i": 5}',
        '{"big": 18446744073709551616, "neg": -9223372036854775809, "max": 18446744073709551615}',
        '{"e": 1e5, "E": 2E-3, "huge": 1e400}',
        '{"reason": "version [5] is higher than 1.5e3", "nan": NaN, "inf": -Infinity}',
        '{"a": 1, "a": 2, "s": "\\ud800", "u": "\\u00e9"}',
        "[]",
        '"text"',
        "-0",
    ],
)
def test_serializer_loads_same_values_and_types_as_exact_parser(text: str) -> None:
    # GIVEN an answer's JSON text; WHEN the client's serializer reads it
    # THEN it holds what values.load_json reads, type for type
    assert typed(ExactJSONSerializer().loads(text)) == typed(load_json(text))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False).map(Decimal.normalize)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_serializer_loads_any_answer_as_exact_parser(value: Any) -> None:
    # GIVEN any JSON text (integers beyond 64 bits, exact fractions and floats among its numbers)
    text = dump_json(value).decode()
    # THEN the serializer and the exact parser agree, type for type
    assert typed(ExactJSONSerializer().loads(text)) == typed(load_json(text))
