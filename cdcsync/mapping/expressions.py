"""JMESPath for ``fields.computed``, over items that hold DynamoDB's exact numbers.

An item's numbers are ints, floats (when the float is the number) and ``Decimal`` (fractions of up
to 38 digits no float holds; see ``values``). Plain jmespath knows only int and float: its
functions refuse a ``Decimal`` by type name, Python mixes a ``Decimal`` and a float in arithmetic
not at all and in comparisons by the float's binary value, so ``Tenth > `0.1``` would be false for
``0.10000000000000000001``. Here, only where a ``Decimal`` takes part (floats and ints alone keep
JMESPath's results):

- a ``Decimal`` is a JMESPath ``number`` for every function and ``type()``;
- ordering and equality, ``max``/``min``/``sort``/``*_by`` compare exact decimal values, a float
  standing for the number its shortest text shows;
- ``sum``, ``avg`` and ``abs`` compute in decimal with enough precision to be exact (``avg`` to
  DynamoDB's 38 digits), and give the result as the converter would (int, float or ``Decimal``);
- ``to_string`` writes a ``Decimal`` as its exact digits.
"""

from __future__ import annotations

import decimal
import difflib
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, Final

import jmespath
import jmespath.functions
import jmespath.parser
import jmespath.visitor
from jmespath.functions import signature

from cdcsync.mapping.pattern_matchers import exact_value, is_number
from cdcsync.values import dump_json, plain_number

# jmespath's private methods extended here are not in its type stubs.
_BASE: Any = jmespath.functions.Functions
_EQUALITY_OPS: Final = ("==", "!=")
# Exact for sums of DynamoDB numbers (38 digits, exponents -130..125); avg rounds to 38 digits.
_EXACT: Final = decimal.Context(prec=320, Emax=999_999, Emin=-999_999)
_DYNAMODB_DIGITS: Final = decimal.Context(prec=38, Emax=999_999, Emin=-999_999)


def _has_decimal(values: Any) -> bool:
    return any(type(value) is Decimal for value in values)


def _decimal_of(value: int | float | Decimal) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _sort_key(value: Any) -> Any:
    return exact_value(value) if is_number(value) else value


class _Functions(jmespath.functions.Functions):
    """jmespath's functions, with ``Decimal`` a number (see the module docstring)."""

    def _get_allowed_pytypes(self, types: Any) -> Any:
        allowed, subtypes = _BASE._get_allowed_pytypes(self, types)
        return _with_decimal(allowed), [_with_decimal(subtype) for subtype in subtypes]

    def _convert_to_jmespath_type(self, pyobject: Any) -> Any:
        return "number" if pyobject == "Decimal" else _BASE._convert_to_jmespath_type(self, pyobject)

    @signature({"types": ["number"]})
    def _func_abs(self, arg: Any) -> Any:
        return _EXACT.abs(arg) if type(arg) is Decimal else abs(arg)

    @signature({"types": ["array-number"]})
    def _func_sum(self, arg: Any) -> Any:
        if not _has_decimal(arg):
            return sum(arg)
        total = Decimal(0)
        for value in arg:
            total = _EXACT.add(total, _decimal_of(value))
        return plain_number(total)

    @signature({"types": ["array-number"]})
    def _func_avg(self, arg: Any) -> Any:
        if not _has_decimal(arg):
            return _BASE._func_avg(self, arg)
        total = Decimal(0)
        for value in arg:
            total = _EXACT.add(total, _decimal_of(value))
        return plain_number(_DYNAMODB_DIGITS.divide(total, Decimal(len(arg))))

    @signature({"types": ["array-number", "array-string"]})
    def _func_max(self, arg: Any) -> Any:
        return max(arg, key=_sort_key) if _has_decimal(arg) else _BASE._func_max(self, arg)

    @signature({"types": ["array-number", "array-string"]})
    def _func_min(self, arg: Any) -> Any:
        return min(arg, key=_sort_key) if _has_decimal(arg) else _BASE._func_min(self, arg)

    @signature({"types": ["array-string", "array-number"]})
    def _func_sort(self, arg: Any) -> Any:
        return sorted(arg, key=_sort_key) if _has_decimal(arg) else _BASE._func_sort(self, arg)

    @signature({"types": []})
    def _func_type(self, arg: Any) -> Any:
        return "number" if type(arg) is Decimal else _BASE._func_type(self, arg)

    @signature({"types": []})
    def _func_to_string(self, arg: Any) -> Any:
        if type(arg) is Decimal or (isinstance(arg, list | dict) and _contains_decimal(arg)):
            return dump_json(arg).decode()
        return _BASE._func_to_string(self, arg)

    def _create_key_func(self, expref: Any, allowed_types: Any, function_name: str) -> Callable[[Any], Any]:
        key = _BASE._create_key_func(self, expref, allowed_types, function_name)
        return lambda value: _sort_key(key(value))


def _with_decimal(types: Any) -> Any:
    return [*types, "Decimal"] if "float" in types else types


def _contains_decimal(value: Any) -> bool:
    if type(value) is Decimal:
        return True
    if isinstance(value, dict):
        return any(_contains_decimal(item) for item in value.values())
    if isinstance(value, list):
        return any(_contains_decimal(item) for item in value)
    return False


class _Interpreter(jmespath.visitor.TreeInterpreter):
    """Comparisons with a ``Decimal`` on either side compare exact decimal values."""

    def visit_comparator(self, node: Any, value: Any) -> Any:
        left = self.visit(node["children"][0], value)
        right = self.visit(node["children"][1], value)
        compare = self.COMPARATOR_FUNC[node["value"]]
        if (type(left) is Decimal or type(right) is Decimal) and is_number(left) and is_number(right):
            exact_left, exact_right = exact_value(left), exact_value(right)
            if exact_left is not None and exact_right is not None:
                return compare(exact_left, exact_right)
        if node["value"] in _EQUALITY_OPS:
            return compare(left, right)
        comparable = all(isinstance(side, str) or is_number(side) for side in (left, right))
        return compare(left, right) if comparable else None


_FUNCTIONS: Final = _Functions()
_INTERPRETER: Final = _Interpreter(jmespath.Options(custom_functions=_FUNCTIONS))


def call_problems(expression: jmespath.parser.ParsedResult) -> list[str]:
    """The calls in ``expression`` that fail on every item: a function JMESPath does not have, or the
    wrong number of arguments. jmespath finds both only when the call runs; a mapping must not
    dead-letter every record for a typo, so ``validate`` asks here."""
    table = _FUNCTIONS.FUNCTION_TABLE
    problems = []
    for name, count in _calls(expression.parsed):
        if name not in table:
            close = difflib.get_close_matches(name, table, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]}()?)" if close else ""
            problems.append(f"calls {name}(), which JMESPath does not have{hint}")
            continue
        signature = table[name]["signature"]
        variadic = bool(signature) and bool(signature[-1].get("variadic"))
        if count < len(signature) or (count > len(signature) and not variadic):
            takes = f"at least {len(signature)}" if variadic else str(len(signature))
            problems.append(
                f"calls {name}() with {count} argument{'' if count == 1 else 's'}, which takes {takes}"
            )
    return problems


def _calls(node: Any) -> Iterator[tuple[str, int]]:
    """Each function call in a parsed expression, in reading order: (name, number of arguments)."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "function_expression":
        yield str(node["value"]), len(node["children"])
    for child in node.get("children", ()):
        yield from _calls(child)


def evaluate(expression: jmespath.parser.ParsedResult, item: Any) -> Any:
    """``expression.search(item)`` with exact numbers; raises what jmespath raises."""
    return _INTERPRETER.visit(expression.parsed, item)
