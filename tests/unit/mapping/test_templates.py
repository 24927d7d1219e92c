"""{Attribute} templates."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from cdcsync.errors import PlanError
from cdcsync.mapping.templates import parse_template


@pytest.mark.parametrize(
    ("source", "item", "expected"),
    [
        ("users", {}, "users"),
        ("{UserId}", {"UserId": 12345}, "12345"),
        ("{PK}|{SK}", {"PK": "USER#1", "SK": "ORDER#2"}, "USER#1|ORDER#2"),
        ("orders-{Region}-v1", {"Region": "eu"}, "orders-eu-v1"),
        ("{Flag}", {"Flag": True}, "true"),
        ("{Score}", {"Score": 1.5}, "1.5"),
        ("{ Name }", {"Name": "x"}, "x"),
        ("{Score}", {"Score": 0.1}, "0.1"),
        ("{Score}", {"Score": 1e-05}, "1e-05"),
        ("{Id}", {"Id": 2**64 + 1}, "18446744073709551617"),
        ("p|{Id}", {"Id": Decimal("0.10000000000000000001")}, "p|0.10000000000000000001"),
        ("orders-{N}", {"N": Decimal("12345678901234567.89")}, "orders-12345678901234567.89"),
    ],
)
def test_template_render_fills_placeholders(source: str, item: dict[str, Any], expected: str) -> None:
    assert parse_template(source).render(item, what="id") == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{}", '"{}" has an empty placeholder {} at character 1'),
        ("{a", '"{a" has an unbalanced brace; placeholders look like {Attribute}'),
        ("a}", '"a}" has an unbalanced brace; placeholders look like {Attribute}'),
    ],
)
def test_template_parse_malformed_raises_value_error(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_template(source)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({}, 'index: "orders-{Region}" names Region, which is not in the item (has: nothing)'),
        (
            {"Region": ["eu"]},
            'index: "orders-{Region}" needs a string, number or boolean in Region, got a list',
        ),
        (
            {"Region": None},
            'index: "orders-{Region}" needs a string, number or boolean in Region, got a NoneType',
        ),
    ],
)
def test_template_render_bad_attribute_raises_plan_error(item: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_template("orders-{Region}").render(item, what="index")
    assert str(caught.value) == message
