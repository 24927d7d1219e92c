"""DynamoDB attribute values to plain JSON-ready values: exact cases, errors, and agreement with boto3."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import DYNAMODB_CONTEXT, Binary, TypeDeserializer, TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from cdcsync.errors import RecordError
from cdcsync.values import dump_json, image_to_plain, load_json, number_text, to_plain

BIG = "12345678901234567890123456789012345678"  # 38 digits, far beyond 64 bits
ALLOWED = "S, N, B, BOOL, NULL, M, L, SS, NS, BS"
NOT_AV = f"expected an AttributeValue (an object with one of {ALLOWED}), found"
RANGE = "magnitude 1E-130 to 9.9999999999999999999999999999999999999E+125"


def typed(value: Any) -> Any:
    """``value`` with every leaf paired with its type, so 1 == 1.0 and True == 1 no longer compare equal."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"S": "héllo"}, "héllo"),
        ({"S": ""}, ""),
        ({"N": "5"}, 5),
        ({"N": "-5"}, -5),
        ({"N": "0"}, 0),
        ({"N": "-0"}, 0),
        ({"N": "-0.0"}, 0),
        ({"N": "0.000"}, 0),
        ({"N": BIG}, int(BIG)),
        ({"N": "-" + BIG}, -int(BIG)),
        ({"N": "18446744073709551616"}, 2**64),
        ({"N": "1E+3"}, 1000),
        ({"N": "1.5E+2"}, 150),
        ({"N": "10.0"}, 10),
        ({"N": "1E+125"}, 10**125),
        ({"N": "9.9999999999999999999999999999999999999E+125"}, (10**38 - 1) * 10**88),
        ({"N": "0.1"}, 0.1),
        ({"N": "-1.5"}, -1.5),
        ({"N": "1E-130"}, 1e-130),
        ({"N": "-1.5E-7"}, -1.5e-7),
        # Beyond a float's precision: the exact decimal, never the nearest float.
        (
            {"N": "1.0000000000000000000000000000000000001"},
            Decimal("1.0000000000000000000000000000000000001"),
        ),
        (
            {"N": "1234567890123456789012345678901234567.5"},
            Decimal("1234567890123456789012345678901234567.5"),
        ),
        ({"N": "12345678901234567.89"}, Decimal("12345678901234567.89")),
        ({"N": "0.10000000000000000001"}, Decimal("0.10000000000000000001")),
        ({"N": "-0.10000000000000000002"}, Decimal("-0.10000000000000000002")),
        ({"N": "1.2345678901234567891E-20"}, Decimal("1.2345678901234567891E-20")),
        # A float whose shortest text is the same number stays a float, however it is spelled.
        ({"N": "0.00001"}, 1e-05),
        ({"N": "1.5E-130"}, 1.5e-130),
        ({"N": "0.30000000000000004"}, 0.30000000000000004),
        ({"B": b"\x00\xff"}, "AP8="),
        ({"B": bytearray(b"hi")}, "aGk="),
        ({"B": b""}, ""),
        ({"B": "AP8="}, "AP8="),
        ({"B": "not normalised"}, "not normalised"),
        ({"BOOL": True}, True),
        ({"BOOL": False}, False),
        ({"NULL": True}, None),
        ({"M": {}}, {}),
        ({"L": []}, []),
        (
            {"M": {"a": {"N": "1"}, "b": {"M": {"c": {"L": [{"S": "x"}, {"N": "2.5"}]}}}}},
            {"a": 1, "b": {"c": ["x", 2.5]}},
        ),
        (
            {"L": [{"L": [{"L": []}]}, {"M": {"k": {"NULL": True}}}, {"BOOL": False}]},
            [[[]], {"k": None}, False],
        ),
        ({"SS": ["b", "é", "B", "a"]}, ["B", "a", "b", "é"]),
        ({"NS": ["10", "9", "-1.5", "1E+3", "0.5"]}, [-1.5, 0.5, 9, 10, 1000]),
        ({"NS": [BIG, "1"]}, [1, int(BIG)]),
        (
            {"NS": ["0.10000000000000000002", "0.1", "0.10000000000000000001"]},
            [0.1, Decimal("0.10000000000000000001"), Decimal("0.10000000000000000002")],
        ),
        # Sorted by bytes (00 < 61 < ff), not by their base64 text ("/w==" < "AA==" < "YQ==").
        ({"BS": [b"\xff", b"\x00", b"a"]}, ["AA==", "YQ==", "/w=="]),
        ({"BS": ["/w==", "AA==", "YQ=="]}, ["AA==", "YQ==", "/w=="]),
    ],
)
def test_to_plain_well_formed_value_converts_exactly(value: Mapping[str, Any], expected: Any) -> None:
    # GIVEN one AttributeValue of either input shape
    # WHEN it is converted
    got = to_plain(value)
    # THEN value and type match exactly (1 is not 1.0, 0 is not -0.0)
    assert typed(got) == typed(expected)


LAMBDA_ITEM = {
    "UserId": {"S": "u-1"},
    "Age": {"N": "42"},
    "Avatar": {"B": "AP8="},
    "Keys": {"BS": ["/w==", "AA=="]},
    "Profile": {"M": {"Tags": {"L": [{"S": "a"}, {"N": "3"}]}, "Roles": {"SS": ["viewer", "admin"]}}},
}
BOTO3_ITEM = {
    "UserId": {"S": "u-1"},
    "Age": {"N": "42"},
    "Avatar": {"B": b"\x00\xff"},
    "Keys": {"BS": [b"\xff", b"\x00"]},
    "Profile": {"M": {"Tags": {"L": [{"S": "a"}, {"N": "3"}]}, "Roles": {"SS": ["viewer", "admin"]}}},
}
PLAIN_ITEM = {
    "UserId": "u-1",
    "Age": 42,
    "Avatar": "AP8=",
    "Keys": ["AA==", "/w=="],
    "Profile": {"Tags": ["a", 3], "Roles": ["admin", "viewer"]},
}


@pytest.mark.parametrize(
    ("image", "expected"), [(LAMBDA_ITEM, PLAIN_ITEM), (BOTO3_ITEM, PLAIN_ITEM), ({}, {})]
)
def test_image_to_plain_lambda_or_boto3_shape_gives_same_document(
    image: Mapping[str, Mapping[str, Any]], expected: dict[str, Any]
) -> None:
    # GIVEN an item image as a Lambda event carries it (base64 text) or as boto3 returns it (bytes)
    # WHEN it is converted
    got = image_to_plain(image)
    # THEN both give the same plain document
    assert typed(got) == typed(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"X": "1"}, f"attribute value: unknown type tag 'X' (allowed: {ALLOWED})"),
        (
            {"S": "a", "N": "1"},
            f"attribute value: expected exactly one type tag ({ALLOWED}), found 2: 'S', 'N'",
        ),
        ({}, f"attribute value: expected exactly one type tag ({ALLOWED}), found none"),
        (
            ["S"],
            f"attribute value: {NOT_AV} list ['S']",
        ),
        (
            "S",
            f"attribute value: {NOT_AV} str 'S'",
        ),
        ({"N": "abc"}, "attribute value: N is not a number, found str 'abc'"),
        ({"N": "NaN"}, "attribute value: N is not a number, found str 'NaN'"),
        ({"N": "Infinity"}, "attribute value: N is not a number, found str 'Infinity'"),
        ({"N": ""}, "attribute value: N is not a number, found str ''"),
        ({"N": 5}, "attribute value: N must be a number in a string, found int 5"),
        ({"N": b"5"}, "attribute value: N must be a number in a string, found bytes b'5'"),
        (
            {"N": "1E+126"},
            f"attribute value: N is outside DynamoDB's number range ({RANGE}), found str '1E+126'",
        ),
        (
            {"N": "1.5E-131"},
            f"attribute value: N is outside DynamoDB's number range ({RANGE}), found str '1.5E-131'",
        ),
        (
            {"N": "1E+999999999"},
            f"attribute value: N is outside DynamoDB's number range ({RANGE}), found str '1E+999999999'",
        ),
        (
            {"N": "1" * 5000},
            f"attribute value: N is outside DynamoDB's number range ({RANGE}), found str '{'1' * 56}...",
        ),
        ({"B": 5}, "attribute value: B must be bytes or a base64 string, found int 5"),
        (
            {"M": []},
            "attribute value: M must be an object of attribute names to AttributeValues, found list []",
        ),
        ({"L": "abc"}, "attribute value: L must be a list, found str 'abc'"),
        ({"SS": "abc"}, "attribute value: SS must be a list, found str 'abc'"),
        ({"NS": "1"}, "attribute value: NS must be a list, found str '1'"),
        ({"SS": ["a", 1]}, "attribute value[1]: SS member must be a string, found int 1"),
        ({"NS": ["1", "x"]}, "attribute value[1]: NS member is not a number, found str 'x'"),
        ({"BS": [b"\x00", 7]}, "attribute value[1]: BS member must be bytes or a base64 string, found int 7"),
        ({"BS": ["AA==", "!!"]}, "attribute value[1]: BS member is not valid base64, found str '!!'"),
        (
            {"L": [{"S": "a"}, {"M": {"k": {"Z": 1}}}]},
            f"attribute [1].k: unknown type tag 'Z' (allowed: {ALLOWED})",
        ),
    ],
)
def test_to_plain_malformed_value_raises_record_error(value: Any, message: str) -> None:
    # GIVEN a value that is not well-formed DynamoDB JSON
    # WHEN it is converted
    with pytest.raises(RecordError) as caught:
        to_plain(value)
    # THEN the error says where, what was found and what is allowed, and keeps the cause
    assert str(caught.value) == message
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            {"Profile": {"M": {"Tags": {"L": [{"S": "a"}, {"S": "b"}, {"Q": "c"}]}}}},
            f"attribute Profile.Tags[2]: unknown type tag 'Q' (allowed: {ALLOWED})",
        ),
        ({"Id": {"S": "1"}, "Age": {"N": "forty"}}, "attribute Age: N is not a number, found str 'forty'"),
        (
            {"Id": {"S": "1", "N": "1"}},
            f"attribute Id: expected exactly one type tag ({ALLOWED}), found 2: 'S', 'N'",
        ),
        (
            {"Scores": {"NS": ["1", "2", "x"]}},
            "attribute Scores[2]: NS member is not a number, found str 'x'",
        ),
        (
            {"A": {"M": {"B": {"M": {"C": {"N": 1}}}}}},
            "attribute A.B.C: N must be a number in a string, found int 1",
        ),
        (
            {"Id": "1"},
            f"attribute Id: {NOT_AV} str '1'",
        ),
        (
            {"Blob": {"S": "x" * 100}, "Bad": {"N": "y" * 100}},
            f"attribute Bad: N is not a number, found str '{'y' * 56}...",
        ),
        (
            [{"S": "1"}],
            "item image: expected an object of attribute names to AttributeValues, found list [{'S': '1'}]",
        ),
        (None, "item image: expected an object of attribute names to AttributeValues, found NoneType None"),
    ],
)
def test_image_to_plain_malformed_attribute_raises_record_error_with_path(image: Any, message: str) -> None:
    # GIVEN an item image with one malformed attribute, possibly deep inside
    # WHEN it is converted
    with pytest.raises(RecordError) as caught:
        image_to_plain(image)
    # THEN the error names the attribute path
    assert str(caught.value) == message


class _UnreadableMapping(Mapping[str, Any]):
    """Claims one key but cannot return it: a failure the path-finding walker cannot explain either."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(["S"])

    def __len__(self) -> int:
        return 1


def test_to_plain_unexplainable_failure_raises_record_error_with_cause() -> None:
    # GIVEN a Mapping that breaks both the converter and the walker that locates problems
    # WHEN it is converted
    with pytest.raises(RecordError) as caught:
        to_plain(_UnreadableMapping())
    # THEN the error still is a RecordError, naming the underlying failure
    assert (
        str(caught.value)
        == "attribute value: cannot be converted to plain JSON (KeyError: 'unknown type tag')"
    )


# --- agreement with boto3's TypeDeserializer ---------------------------------------------------------


def _storable(d: Decimal) -> bool:
    """True if DynamoDB can hold ``d``: 38 significant digits, magnitude 1E-130 up to below 1E+126.

    boto3's serializer checks the digits, but its context lets through some subnormals (1E-131).
    """
    try:
        DYNAMODB_CONTEXT.create_decimal(d)
    except ArithmeticError:
        return False
    return d.is_zero() or -130 <= d.adjusted() <= 125


def _decimal(coefficient: int, exponent: int) -> Decimal:
    return Decimal(f"{coefficient}E{exponent}")


numbers = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**6), max_value=10**6),
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1).map(Decimal),
    st.builds(_decimal, st.integers(-(10**38) + 1, 10**38 - 1), st.integers(-167, 125)),
).filter(_storable)
leaves = st.one_of(
    st.text(),
    st.booleans(),
    st.none(),
    numbers,
    st.binary(),
    st.sets(st.text(), min_size=1),
    st.sets(numbers, min_size=1),
    st.sets(st.binary(), min_size=1),
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
images = st.dictionaries(st.text(min_size=1), values, max_size=6)


def _reference_number(value: Decimal) -> int | float | Decimal:
    """An int when integral, a float when its shortest text is the same number, else the Decimal."""
    if value == value.to_integral_value():
        return int(value)
    return float(value) if Decimal(repr(float(value))) == value else value


def _reference_plain(value: Any) -> Any:
    """What the contract promises, built from boto3's deserialised value: Decimal, set and Binary."""
    if isinstance(value, Decimal):
        return _reference_number(value)
    if isinstance(value, Binary):
        return base64.b64encode(_bytes_of(value)).decode("ascii")
    if isinstance(value, set):
        members = sorted(_bytes_of(m) if isinstance(m, Binary) else m for m in value)  # Binary has no order
        return [
            base64.b64encode(m).decode("ascii") if isinstance(m, bytes) else _reference_plain(m)
            for m in members
        ]
    if isinstance(value, dict):
        return {k: _reference_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reference_plain(v) for v in value]
    return value


def _bytes_of(binary: Binary) -> bytes:
    # boto3-stubs declare Binary.__bytes__ as returning str; at runtime it returns the bytes.
    raw: bytes = bytes(binary)  # type: ignore[call-overload]
    return raw


def _as_lambda_json(av: Any) -> Any:
    """The AttributeValue as a Lambda event carries it: JSON, binary as base64 text."""
    return json.loads(json.dumps(av, default=lambda b: base64.b64encode(b).decode("ascii")))


@settings(deadline=None)
@given(image=images)
def test_image_to_plain_any_item_agrees_with_boto3_deserializer(image: dict[str, Any]) -> None:
    # GIVEN any item, serialised by boto3 the way DynamoDB returns it, and as a Lambda event carries it
    serializer, deserializer = TypeSerializer(), TypeDeserializer()
    boto3_image = {name: serializer.serialize(value) for name, value in image.items()}
    expected = {name: _reference_plain(deserializer.deserialize(av)) for name, av in boto3_image.items()}
    # WHEN both shapes are converted
    from_boto3 = image_to_plain(boto3_image)
    from_lambda = image_to_plain(_as_lambda_json(boto3_image))
    # THEN both equal boto3's reading, number types included (1 is not 1.0, 0.1 not Decimal("0.1"))
    want = typed(expected)
    assert typed(from_boto3) == want
    assert typed(from_lambda) == want


@settings(deadline=None)
@given(number=numbers)
def test_to_plain_any_number_is_int_exactly_when_integral(number: Decimal) -> None:
    # GIVEN any number DynamoDB can hold, in boto3's string form
    av = TypeSerializer().serialize(number)
    # WHEN it is converted
    got = to_plain(av)
    # THEN an integral value is the exact int; any other a float only if the float's shortest text
    # is the same number (so writing it as JSON loses nothing), else the exact Decimal
    if number == number.to_integral_value():
        assert type(got) is int
        assert got == number
    elif type(got) is float:
        assert Decimal(repr(got)) == number
    else:
        assert type(got) is Decimal
        assert got == number
        assert Decimal(repr(float(number))) != number


# --- exact JSON text of plain values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"n": Decimal("12345678901234567.89")}, b'{"n":12345678901234567.89}'),
        ([Decimal("0.10000000000000000001"), 0.1], b"[0.10000000000000000001,0.1]"),
        ([Decimal("-1.2345678901234567891E-20")], b"[-0.000000000000000000012345678901234567891]"),
        (
            {"a": [2**64, {"b": -(2**63) - 1}], "c": Decimal("0.10000000000000000001")},
            b'{"a":[18446744073709551616,{"b":-9223372036854775809}],"c":0.10000000000000000001}',
        ),
        ({"big": int(BIG), "t": (1, 2)}, b'{"big":' + BIG.encode() + b',"t":[1,2]}'),
        (
            {"b": True, "i": 2**63 - 1, "u": 2**64 - 1, "s": "é"},
            '{"b":true,"i":9223372036854775807,"u":18446744073709551615,"s":"é"}'.encode(),
        ),
    ],
)
def test_dump_json_any_plain_number_is_written_exactly(value: Any, text: bytes) -> None:
    # GIVEN plain values holding Decimals and integers beyond 64 bits, as DynamoDB numbers become
    # WHEN they are written as JSON
    # THEN every number is the exact text of its value
    assert dump_json(value) == text


def test_dump_json_sort_keys_orders_keys() -> None:
    assert dump_json({"b": 2**70, "a": 1}, sort_keys=True) == b'{"a":1,"b":1180591620717411303424}'


def test_dump_json_indent_keeps_numbers_exact() -> None:
    # GIVEN a document with a 38-digit integer and a fraction no float holds
    value = {"big": 12345678901234567890123456789012345678, "fraction": Decimal("0.10000000000000000001")}
    # WHEN written indented (cdcsync preview) THEN the numbers are the same text, two spaces deep
    assert dump_json(value, indent=True) == (
        b'{\n  "big": 12345678901234567890123456789012345678,\n  "fraction": 0.10000000000000000001\n}'
    )


def test_dump_json_not_json_raises_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dump_json({"a": object()})
    with pytest.raises(TypeError):
        dump_json({"a": [2**64, object()]})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"n":12345678901234567.89}', {"n": Decimal("12345678901234567.89")}),
        ("[0.1, 1e-05, 0.00001, 1.5e300, 2.5]", [0.1, 1e-05, 1e-05, 1.5e300, 2.5]),
        ("[0.10000000000000000001, 10.0, -0.0]", [Decimal("0.10000000000000000001"), 10.0, -0.0]),
        ("[" + BIG + ", 1]", [int(BIG), 1]),
    ],
)
def test_load_json_numbers_are_read_exactly(text: str, expected: Any) -> None:
    # GIVEN JSON text, as OpenSearch returns a document's _source
    # WHEN it is read
    # THEN a number is a float only when the float is the same number, else the exact Decimal
    assert typed(load_json(text)) == typed(expected)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5, "5"),
        (int(BIG), BIG),
        (0.1, "0.1"),
        (1e-05, "1e-05"),
        (Decimal("0.10000000000000000001"), "0.10000000000000000001"),
        (Decimal("1.2345678901234567891E-20"), "0.000000000000000000012345678901234567891"),
    ],
)
def test_number_text_plain_number_gives_its_exact_text(value: Any, text: str) -> None:
    assert number_text(value) == text


@settings(deadline=None)
@given(number=numbers)
def test_dump_json_any_dynamodb_number_reads_back_as_the_same_value_and_type(number: Decimal) -> None:
    # GIVEN any number DynamoDB can hold, converted to a plain value
    plain = to_plain(TypeSerializer().serialize(number))
    # WHEN it is written as JSON and read back exactly
    back = load_json(dump_json([plain]))[0]
    # THEN it is the same number, exactly (an int may come back as an int only, a float as a float)
    assert back == plain
    assert type(back) is type(plain)
    assert Decimal(str(back)) == number if not isinstance(back, float) else Decimal(repr(back)) == number


short_fractions = st.builds(_decimal, st.integers(-(10**15) + 1, 10**15 - 1), st.integers(-145, 110)).filter(
    lambda d: _storable(d) and d != d.to_integral_value()
)


@settings(deadline=None)
@given(number=short_fractions)
def test_to_plain_fraction_of_at_most_15_digits_is_the_float_that_is_exactly_it(number: Decimal) -> None:
    # GIVEN a fraction of at most 15 significant digits, spelled as DynamoDB or in plain notation
    for text in (str(number), format(number, "f")):
        # WHEN it is converted
        got = to_plain({"N": text})
        # THEN it is a float whose shortest text is the same number (no digit lost, none invented)
        assert type(got) is float
        assert Decimal(repr(got)) == number
