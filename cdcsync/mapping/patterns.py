"""Lambda event filtering / EventBridge event patterns, evaluated in-process.

The same pattern is pushed down to Lambda as ``FilterCriteria`` and re-checked here (and used for the
item-level ``where`` key), so it must give the results AWS gives. The semantics follow AWS event-ruler,
the engine behind both services, as validated against AWS by LocalStack's recorded tests:

* Pattern objects AND their keys; a leaf is a list of values/matchers that are ORed; ``$or`` ORs whole
  sub-patterns. Nested objects recurse into the event.
* Only *leaf* values (strings, numbers, booleans, null) are seen by matchers. An event object where the
  pattern expects a leaf counts as absent: ``{"Status": ["x"]}`` does not match ``{"Status": {"S": "x"}}``.
* Event arrays match when any element matches; when the pattern goes deeper, one array element must match
  the whole sub-pattern (event-ruler's array-consistent matching).
* A missing field matches nothing but ``{"exists": false}``; it also matches when its parent is missing.
  ``null`` is a present value: it matches ``[null]`` and ``anything-but``, never ``[""]``.
* A key with dots names the nested path: event-ruler flattens pattern and event to dot-joined paths,
  so ``{"state.status": [...]}`` matches ``{"state": {"status": ...}}`` and the other way round (AWS's
  "Considerations when creating event patterns"; LocalStack's dot_joining_* cases, recorded on AWS).
  DynamoDB attribute names may contain dots, so both shapes meet in images and items.
* Exact numbers match by their JSON text, and by value when a double holds both (event-ruler adds a
  numeric-equality matcher for every number: ``[300]`` matches ``300.0``, though AWS's documentation
  says otherwise; LocalStack's number_comparison_float, recorded on AWS). Numbers no double holds
  (``2**64``, 38-digit fractions) match by text only.
  ``numeric`` and numeric ``anything-but`` compare exact decimal values, a float standing for the
  number its shortest text shows: items hold DynamoDB numbers of 38 digits (``Decimal`` where no
  float holds them, ints beyond 64 bits), and ``0.10000000000000000001`` is neither ``= 0.1`` nor
  excluded by ``anything-but: [0.1]``.
* ``numeric`` only matches JSON numbers. DynamoDB stream records carry numbers as strings
  (``{"N": "5"}``), and Lambda does no conversion, so ``numeric`` never matches an ``N`` value there.
* ``anything-but`` needs the field present; a value of another type (a number, null) is "anything but".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from cdcsync.errors import PatternError
from cdcsync.mapping.pattern_matchers import (
    Matcher,
    StringTest,
    always,
    check_finite,
    compile_matcher,
    exact_test,
    is_number,
    kind,
    never,
)

__all__ = ["Pattern", "compile_pattern"]

Path = tuple[str | int, ...]
_NodeTest = Callable[[Any], bool]  # takes an event value, or _MISSING

_MISSING: Final = object()
_EMPTY: Final[Mapping[str, Any]] = {}


class Pattern:
    """A compiled pattern: validated once, then evaluated per record through prebuilt closures."""

    __slots__ = ("_canonical", "_test", "source")

    source: Mapping[str, Any]

    def __init__(self, source: Mapping[str, Any], test: _NodeTest) -> None:
        self.source = source
        self._test = test
        self._canonical = json.dumps(source, sort_keys=True, separators=(",", ":"), default=str)

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True when ``event`` (a stream record or a plain item) satisfies the pattern."""
        return self._test(event)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other._canonical == self._canonical

    def __hash__(self) -> int:
        return hash(self._canonical)

    def __repr__(self) -> str:
        return f"Pattern({self._canonical})"


def compile_pattern(pattern: Any) -> Pattern:
    """Validate ``pattern`` and compile it; raises PatternError(path, message) on the first problem."""
    if not isinstance(pattern, Mapping):
        raise PatternError((), f"a pattern must be an object of field names, got {kind(pattern)}")
    source = _plain(pattern)
    _compile_object(source, ())  # problems are reported at the keys as written
    return Pattern(source, _compile_object(normalized(source), ()))


def normalized(pattern: Mapping[str, Any], path: Path = ()) -> dict[str, Any]:
    """``pattern`` with every dotted key split into nested objects, as event-ruler reads it.

    ``{"a.b": [1]}`` becomes ``{"a": {"b": [1]}}``; a path named twice (``"a.b"`` and ``a: {b:}``) is
    refused, since one JSON object cannot AND two leaves at one path.
    """
    result: dict[str, Any] = {}
    for key, value in pattern.items():
        if key == "$or" and isinstance(value, list):
            result[key] = [normalized(alt, path) if isinstance(alt, Mapping) else alt for alt in value]
            continue
        head, dot, rest = key.partition(".") if isinstance(key, str) else (key, "", "")
        part = {rest: value} if dot else value
        if isinstance(part, Mapping):
            part = normalized(part, (*path, head))
        if head not in result:
            result[head] = part
            continue
        try:
            result[head] = _merge_pattern(result[head], part, (head,))
        except _SamePathError as twice:
            raise PatternError(
                (*path, head), f"names the field {twice} twice (once with dots in a key name); write it once"
            ) from None
    return result


def named_fields(pattern: Mapping[str, Any]) -> list[str]:
    """The dotted paths of the fields ``pattern`` tests, in order, each once (``$or`` alternatives too)."""
    names: dict[str, None] = {}

    def walk(node: Mapping[str, Any], path: str) -> None:
        for key, value in node.items():
            if key == "$or" and isinstance(value, list):
                for alternative in value:
                    if isinstance(alternative, Mapping):
                        walk(alternative, path)
            elif isinstance(value, Mapping):
                walk(value, f"{path}{key}.")
            else:
                names[f"{path}{key}"] = None

    walk(normalized(pattern), "")
    return list(names)


class _SamePathError(Exception):
    """Two keys of a pattern name one path (``"a.b"`` and ``a: {b:}``)."""


def _merge_pattern(first: Any, second: Any, path: Path) -> Any:
    both_objects = isinstance(first, Mapping) and isinstance(second, Mapping)
    if both_objects and "$or" not in first.keys() & second.keys():
        merged = dict(first)
        for key, value in second.items():
            merged[key] = _merge_pattern(merged[key], value, (*path, key)) if key in merged else value
        return merged
    raise _SamePathError(".".join(str(part) for part in path))


def _plain(value: Any) -> Any:
    """Deep copy into dicts and lists, so the pattern cannot change under us and exports as JSON."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


# --- structure -------------------------------------------------------------------------------------------


def _compile_object(obj: Mapping[str, Any], path: Path) -> _NodeTest:
    if not obj:
        raise PatternError(path, "a pattern object must name at least one field, got an empty object")
    fields: list[tuple[str, _NodeTest]] = []
    alternatives: list[tuple[_NodeTest, ...]] = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise PatternError(path, f"field names must be strings, got {kind(key)} ({key!r})")
        here = (*path, key)
        if key == "$or":
            alternatives.append(_compile_or(value, here))
        elif isinstance(value, Mapping):
            fields.append((key, _compile_object(value, here)))
        elif isinstance(value, list):
            fields.append((key, _compile_leaf(value, here)))
        else:
            raise PatternError(here, f"expected a list of values or matchers, got {kind(value)}")
    return _object_test(tuple(fields), tuple(alternatives))


def _compile_or(value: Any, path: Path) -> tuple[_NodeTest, ...]:
    if not isinstance(value, list) or len(value) < 2:  # noqa: PLR2004 - AWS needs two alternatives
        found = f"{len(value)} item(s)" if isinstance(value, list) else kind(value)
        raise PatternError(path, f"$or expects a list of at least two pattern objects, got {found}")
    tests = []
    for index, alternative in enumerate(value):
        if not isinstance(alternative, Mapping):
            raise PatternError(
                (*path, index), f"each $or item must be a pattern object, got {kind(alternative)}"
            )
        tests.append(_compile_object(alternative, (*path, index)))
    return tuple(tests)


def _iter_flat(values: Sequence[Any]) -> Iterator[Any]:
    for value in values:
        if type(value) is list:
            yield from _iter_flat(value)
        else:
            yield value


def _is_object(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # the dict check skips the slow ABC check


def _object_test(
    fields: tuple[tuple[str, _NodeTest], ...], ors: tuple[tuple[_NodeTest, ...], ...]
) -> _NodeTest:
    def test_mapping(event: Mapping[str, Any]) -> bool:
        if _has_dotted_key(event):
            event = _dotted_view(event)
        get = event.get
        for key, child in fields:
            if not child(get(key, _MISSING)):
                return False
        return not ors or all(any(alternative(event) for alternative in group) for group in ors)

    def test(value: Any) -> bool:
        if type(value) is dict or _is_object(value):  # an item or record: a dict, tested first
            return test_mapping(value)
        if type(value) is list:
            objects = [item for item in _iter_flat(value) if _is_object(item)]
            if objects:
                return any(test_mapping(item) for item in objects)
        # Missing, a leaf, or no objects inside: every field below is absent (exists:false can still match).
        return test_mapping(_EMPTY)

    return test


def _has_dotted_key(event: Mapping[str, Any]) -> bool:
    try:
        return "." in "".join(event)  # one C-level pass: this runs for every object of every record
    except TypeError:  # a key that is not a string (never in JSON)
        return any("." in key for key in event if type(key) is str)


def _dotted_view(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event with each dotted key split once (``"a.b": v`` as ``"a": {"b": v}``), merged with
    what it nests: two values at one path become a list of both (an event array: any may match)."""
    view: dict[str, Any] = {}
    for key, value in event.items():
        head, dot, rest = key.partition(".") if type(key) is str else (key, "", "")
        part = {rest: value} if dot else value
        view[head] = _merge_event(view[head], part) if head in view else part
    return view


def _merge_event(first: Any, second: Any) -> Any:
    if _is_object(first) and _is_object(second):
        merged = dict(first)
        for key, value in second.items():
            merged[key] = _merge_event(merged[key], value) if key in merged else value
        return merged
    return [
        *(first if type(first) is list else [first]),
        *(second if type(second) is list else [second]),
    ]


def _leaf_values(value: Any) -> tuple[Any, ...]:
    if type(value) is str:
        return (value,)
    if value is _MISSING or _is_object(value):
        return ()
    if type(value) is list:
        return tuple(item for item in _iter_flat(value) if not _is_object(item))
    return (value,)


def _leaf_test(matchers: tuple[Matcher, ...]) -> _NodeTest:
    """ORs the matchers of one field; a string value (the commonest) takes their string tests."""
    on_string = _any_string_test(tuple(string for _, string in matchers))
    if len(matchers) == 1:
        ((only, _),) = matchers

        def test_one(value: Any) -> bool:
            if type(value) is str:
                return on_string(value)
            return only(_leaf_values(value))

        return test_one

    tests = tuple(found for found, _ in matchers)

    def test(value: Any) -> bool:
        if type(value) is str:
            return on_string(value)
        found = _leaf_values(value)
        return any(leaf(found) for leaf in tests)

    return test


def _any_string_test(tests: tuple[StringTest, ...]) -> StringTest:
    """The OR of string tests, with the constant ones folded away."""
    if always in tests:
        return always
    left = tuple(test for test in tests if test is not never)
    if not left:
        return never
    if len(left) == 1:
        return left[0]
    return lambda value: any(test(value) for test in left)


# --- leaves ----------------------------------------------------------------------------------------------


def _compile_leaf(items: list[Any], path: Path) -> _NodeTest:
    if not items:
        raise PatternError(path, "expected at least one value or matcher, got an empty list")
    exact: list[Any] = []
    tests: list[Matcher] = []
    for index, item in enumerate(items):
        here = (*path, index)
        if isinstance(item, Mapping):
            tests.append(compile_matcher(item, here))
        elif item is None or isinstance(item, str | bool) or is_number(item):
            check_finite(item, here)
            exact.append(item)
        else:
            raise PatternError(
                here, f"a value must be a string, number, boolean, null or matcher object, got {kind(item)}"
            )
    if exact:
        tests.insert(0, exact_test(exact))
    return _leaf_test(tuple(tests))
