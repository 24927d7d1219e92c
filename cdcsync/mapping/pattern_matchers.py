"""Leaf matchers of event-filter patterns: exact values, prefix, suffix, wildcard, numeric, anything-but.

Split from ``patterns`` (structure: objects, arrays, ``$or``) so each module stays small. The
semantics are documented there.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from cdcsync.errors import PatternError
from cdcsync.mapping.wildcards import check_wildcard_complexity, wildcard_regex
from cdcsync.values import number_text as exact_text

Path = tuple[str | int, ...]
LeafTest = Callable[[tuple[Any, ...]], bool]  # takes the leaf values found at one field
# The same test for the commonest case, one string found at the field (``type(value) is str``):
# ``string_test(v) == leaf_test((v,))`` always, without building the tuple or probing types.
StringTest = Callable[[str], bool]
Matcher = tuple[LeafTest, StringTest]

MATCHERS: Final = ("anything-but", "equals-ignore-case", "exists", "numeric", "prefix", "suffix", "wildcard")
_ANYTHING_BUT_OBJECTS: Final = ("equals-ignore-case", "prefix", "suffix", "wildcard")
_LOWER_OPS: Final = (">", ">=")
_UPPER_OPS: Final = ("<", "<=")
_NUMERIC_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    ">": operator.gt,
    ">=": operator.ge,
}


_KINDS: Final[tuple[tuple[type | tuple[type, ...], str], ...]] = (
    (type(None), "null"),
    (bool, "a boolean"),  # before int: bool is an int subclass
    (str, "a string"),
    (int, "an integer"),
    ((float, Decimal), "a number"),
    (Mapping, "an object"),
    ((list, tuple), "a list"),
)


def kind(value: Any) -> str:
    """How a value is named in messages: "a string", "an integer", "null", ..."""
    return next((name for types, name in _KINDS if isinstance(value, types)), f"a {type(value).__name__}")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def number_text(value: int | float | Decimal) -> str:
    """The JSON text a number would have, which is what AWS compares for exact matches.

    A Decimal is spelled as the converter in ``values`` would give it: an integer, else a float's
    shortest text when the float is that number, else its exact digits (``0.10000000000000000001``
    is not ``0.1``).
    """
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0:
            return str(int(value))
        as_float = float(value)
        return repr(as_float) if Decimal(repr(as_float)) == value else exact_text(value)
    return str(value) if isinstance(value, int) else repr(value)


def exact_value(value: int | float | Decimal) -> int | Decimal | None:
    """A number as the exact decimal it stands for (a float: its shortest text); None for NaN.

    Comparing these is exact across int, float and Decimal: ``2**64 + 1 > 2**64`` and
    ``0.10000000000000000001 > 0.1`` hold, where comparing floats would say no.
    """
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value else None  # noqa: PLR0124 - NaN test
    return value


def check_finite(value: Any, path: Path) -> None:
    if (isinstance(value, float) and not math.isfinite(value)) or (
        isinstance(value, Decimal) and not value.is_finite()
    ):
        raise PatternError(path, f"numbers in a pattern must be finite, got {value}")


def double_value(value: int | float | Decimal) -> Decimal | None:
    """The number as event-ruler compares it (``ComparableNumber``), or None when it cannot.

    event-ruler compares a number by value only when a double holds it as its shortest text shows
    it (Java's ``BigDecimal.valueOf(double)``): ``300``, ``300.0``, ``3.0e2`` and ``0.1`` do;
    ``2**53 + 1``, ``2**64`` and ``0.10000000000000000001`` do not, and match by their text only.
    """
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    try:
        as_double = float(value)
    except OverflowError:
        return None
    exact = Decimal(value)
    return exact if math.isfinite(as_double) and Decimal(repr(as_double)) == exact else None


def _number_matches(value: Any, texts: frozenset[str], doubles: frozenset[Decimal]) -> bool:
    if number_text(value) in texts:
        return True
    return bool(doubles) and double_value(value) in doubles


def exact_test(values: list[Any]) -> Matcher:
    """Exact values. A number matches the same text or, as event-ruler adds a ``numericEquals``
    matcher for each number a pattern names (``JsonRuleCompiler``), the same value when a double
    holds both (``300`` matches ``300.0``: LocalStack's number_comparison_float, recorded on AWS).
    """
    strings = frozenset(v for v in values if isinstance(v, str))
    numbers = frozenset(number_text(v) for v in values if is_number(v))
    doubles = frozenset(d for v in values if is_number(v) and (d := double_value(v)) is not None)
    literals = tuple(v for v in values if v is None or isinstance(v, bool))

    def test(found: tuple[Any, ...]) -> bool:
        for value in found:
            if isinstance(value, str):
                if value in strings:
                    return True
            elif value is None or isinstance(value, bool):
                if any(value is literal for literal in literals):
                    return True
            elif is_number(value) and _number_matches(value, numbers, doubles):
                return True
        return False

    return test, strings.__contains__


def compile_matcher(matcher: Mapping[str, Any], path: Path) -> Matcher:
    if len(matcher) != 1:
        keys = ", ".join(str(key) for key in matcher) or "none"
        raise PatternError(
            path,
            f"a matcher object must have exactly one key, got {len(matcher)}: {keys} "
            "(put each matcher in its own list item)",
        )
    ((name, operand),) = matcher.items()
    here = (*path, name)
    if name in ("prefix", "suffix"):
        return _compile_affix(name, operand, here)
    if name == "equals-ignore-case":
        folded = _require_string(name, operand, here).lower()
        return _string_test(lambda value: value.lower() == folded)
    if name == "wildcard":
        regex = wildcard_regex(_require_string(name, operand, here), here)
        check_wildcard_complexity([operand], here)
        return _string_test(lambda value: regex.fullmatch(value) is not None)
    if name == "exists":
        if not isinstance(operand, bool):
            raise PatternError(here, f"exists expects true or false, got {kind(operand)}")
        return (bool, always) if operand else (_absent, never)
    if name == "numeric":
        return _compile_numeric(operand, here), never
    if name == "anything-but":
        return _compile_anything_but(operand, here)
    raise PatternError(here, f'unknown matcher "{name}" (expected one of: {", ".join(MATCHERS)})')


def _absent(found: tuple[Any, ...]) -> bool:
    return not found


def always(_: str) -> bool:
    """The string test of a matcher every present string passes (``exists: true``)."""
    return True


def never(_: str) -> bool:
    """The string test of a matcher no string passes (``exists: false``, ``numeric``)."""
    return False


def _require_string(name: str, operand: Any, path: Path) -> str:
    if not isinstance(operand, str):
        raise PatternError(path, f"{name} expects a string, got {kind(operand)}")
    return operand


def _string_test(predicate: StringTest) -> Matcher:
    return lambda found: any(isinstance(value, str) and predicate(value) for value in found), predicate


def _compile_affix(name: str, operand: Any, path: Path) -> Matcher:
    has_affix = str.startswith if name == "prefix" else str.endswith
    if isinstance(operand, Mapping):
        if list(operand) != ["equals-ignore-case"]:
            raise PatternError(
                path,
                f'{name} accepts only {{"equals-ignore-case": "..."}} as an object, '
                f"got keys: {', '.join(map(str, operand))}",
            )
        here = (*path, "equals-ignore-case")
        folded = _require_string(f"{name} equals-ignore-case", operand["equals-ignore-case"], here).lower()
        return _string_test(lambda value: has_affix(value.lower(), folded))
    if not isinstance(operand, str):
        raise PatternError(
            path, f'{name} expects a string or {{"equals-ignore-case": "..."}}, got {kind(operand)}'
        )
    return _string_test(lambda value: has_affix(value, operand))


def _compile_numeric(operand: Any, path: Path) -> LeafTest:
    if not isinstance(operand, list) or len(operand) not in (2, 4):
        found = f"{len(operand)} item(s)" if isinstance(operand, list) else kind(operand)
        raise PatternError(path, f'numeric expects [operator, number] or [">", low, "<=", high], got {found}')
    bounds: list[tuple[str, int | Decimal]] = []
    for index in range(0, len(operand), 2):
        name, number = operand[index], operand[index + 1]
        if not isinstance(name, str) or name not in _NUMERIC_OPS:
            raise PatternError(
                (*path, index),
                f"unknown numeric operator {json.dumps(name)} (expected one of: {', '.join(_NUMERIC_OPS)})",
            )
        if not is_number(number):
            raise PatternError(
                (*path, index + 1), f'numeric operand after "{name}" must be a number, got {kind(number)}'
            )
        check_finite(number, (*path, index + 1))
        bounds.append((name, Decimal(repr(number)) if isinstance(number, float) else number))
    if len(bounds) == 2:  # noqa: PLR2004
        (low_op, low), (high_op, high) = bounds
        if low_op not in _LOWER_OPS or high_op not in _UPPER_OPS:
            raise PatternError(
                path,
                'a numeric range is a lower bound (">" or ">=") then an upper bound ("<" or "<="), '
                f'got "{low_op}" then "{high_op}"',
            )
        if low >= high:
            raise PatternError(
                path,
                f"numeric range is empty: lower bound {operand[1]} is not below upper bound {operand[3]}",
            )
    checks = tuple((_NUMERIC_OPS[name], bound) for name, bound in bounds)

    def within(value: Any) -> bool:
        exact = exact_value(value)
        return exact is not None and all(op(exact, bound) for op, bound in checks)

    def test(found: tuple[Any, ...]) -> bool:
        return any(is_number(v) and within(v) for v in found)

    return test


def _compile_anything_but(operand: Any, path: Path) -> Matcher:
    excluded: Callable[[Any], bool]
    excluded_string: StringTest = never
    if isinstance(operand, Mapping):
        excluded = excluded_string = _anything_but_object(operand, path)
    elif isinstance(operand, str) or is_number(operand):
        excluded, excluded_string = _anything_but_values([operand], path)
    elif isinstance(operand, list):
        excluded, excluded_string = _anything_but_values(operand, path)
    else:
        raise PatternError(
            path,
            "anything-but expects a string, a number, a list of strings or of numbers, "
            f"or an object with one of: {', '.join(_ANYTHING_BUT_OBJECTS)}; got {kind(operand)}",
        )

    # The field must be present; then any value that is not excluded (null and other types included) matches.
    return (
        lambda found: any(not excluded(value) for value in found),
        always if excluded_string is never else lambda value: not excluded_string(value),
    )


def _anything_but_values(values: list[Any], path: Path) -> tuple[Callable[[Any], bool], StringTest]:
    """Whether a value is excluded, and the same for a string (a number list excludes none)."""
    if not values:
        raise PatternError(path, "anything-but expects at least one value, got an empty list")
    for index, value in enumerate(values):
        if not (isinstance(value, str) or is_number(value)):
            raise PatternError(
                (*path, index), f"anything-but list items must be strings or numbers, got {kind(value)}"
            )
        check_finite(value, (*path, index))
        if isinstance(value, str) != isinstance(values[0], str):
            raise PatternError(
                (*path, index),
                "anything-but list must hold only strings or only numbers, "
                f"got {kind(values[0])} and {kind(value)}",
            )
    strings = frozenset(v for v in values if isinstance(v, str))
    numbers = frozenset(exact_value(v) for v in values if not isinstance(v, str))
    return (
        lambda value: (
            value in strings if isinstance(value, str) else is_number(value) and exact_value(value) in numbers
        ),
        strings.__contains__ if strings else never,
    )


def _anything_but_object(operand: Mapping[str, Any], path: Path) -> Callable[[Any], bool]:
    if len(operand) != 1:
        keys = ", ".join(map(str, operand)) or "none"
        raise PatternError(
            path, f"an anything-but object must have exactly one key, got {len(operand)}: {keys}"
        )
    ((name, operand_value),) = operand.items()
    here = (*path, name)
    if name not in _ANYTHING_BUT_OBJECTS:
        raise PatternError(
            here,
            f'unknown anything-but matcher "{name}" (expected one of: {", ".join(_ANYTHING_BUT_OBJECTS)})',
        )
    texts = operand_value if isinstance(operand_value, list) else [operand_value]
    if not texts or not all(isinstance(text, str) for text in texts):
        raise PatternError(
            here,
            f"anything-but {name} expects a string or a non-empty list of strings, got {kind(operand_value)}",
        )
    if name in ("prefix", "suffix") and "" in texts:
        raise PatternError(here, f"anything-but {name} must not be empty")
    if name in ("prefix", "suffix"):
        has_affix = str.startswith if name == "prefix" else str.endswith
        affixes = tuple(texts)  # startswith/endswith take a tuple: one call for the whole list
        return lambda value: isinstance(value, str) and has_affix(value, affixes)
    if name == "wildcard":
        regexes = tuple(wildcard_regex(text, here) for text in texts)
        check_wildcard_complexity(texts, here)
        return lambda value: isinstance(value, str) and any(regex.fullmatch(value) for regex in regexes)
    folded = frozenset(text.lower() for text in texts)
    return lambda value: isinstance(value, str) and value.lower() in folded
