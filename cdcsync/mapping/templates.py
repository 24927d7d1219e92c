"""``{Attribute}`` templates for document ids, index names and routing values.

A template is literal text with ``{Name}`` placeholders naming top-level item attributes.
Rendering never raises on data: a missing or non-scalar attribute is reported as a ``PlanError``
so that the one record goes to the dead-letter queue and the batch goes on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cdcsync.errors import PlanError
from cdcsync.values import number_text

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


_ABSENT: Any = object()


def format_scalar(value: Any) -> str | None:
    """The text of a string, number or boolean attribute; None for anything else (or absent).

    Numbers are exact (``values.number_text``): a key ``0.10000000000000000001`` renders as that,
    never as the ``0.1`` of another item.
    """
    # bool before int: bool is an int subclass, and True must not render as "1".
    if type(value) is str:
        return value
    if type(value) is int:  # the common numeric key, before the slower checks
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return number_text(value)
    return None


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: alternating literal text and attribute names.

    ``fill(item)`` is the text, or None where ``render`` raises: a closure built once for the
    template's shape, for the hot path (the id of every record) that needs no error text.
    """

    source: str
    literals: tuple[str, ...]
    names: tuple[str, ...]
    fill: Callable[[Mapping[str, Any]], str | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fill", _filler(self.source, self.literals, self.names))

    @property
    def is_literal(self) -> bool:
        return not self.names

    def render(
        self, item: Mapping[str, Any], *, what: str, scope: Callable[[], str] | str = "the item"
    ) -> str:
        """Fill the placeholders from ``item``.

        ``what`` names the mapping key in errors (``id``, ``index``); ``scope`` says what ``item`` is
        (a callable, so that the hot path never builds an error text it does not need).
        """
        text = self.fill(item)
        if text is not None:
            return text
        raise self._error(item, what, scope() if callable(scope) else scope)

    def _error(self, item: Mapping[str, Any], what: str, scope: str) -> PlanError:
        for name in self.names:
            if name not in item:
                return PlanError(
                    f'{what}: "{self.source}" names {name}, which is not in {scope} '
                    f"(has: {', '.join(sorted(item)) or 'nothing'})"
                )
            if format_scalar(item[name]) is None:
                kind = type(item[name]).__name__
                return PlanError(
                    f'{what}: "{self.source}" needs a string, number or boolean in {name}, got a {kind}'
                )
        raise AssertionError(f"render failed on {self.source} without a missing or non-scalar attribute")


def _filler(
    source: str, literals: tuple[str, ...], names: tuple[str, ...]
) -> Callable[[Mapping[str, Any]], str | None]:
    if not names:
        return lambda item: source
    if len(names) == 1 and not literals[0] and not literals[1]:  # "{UserId}": the common case
        (name,) = names

        def fill_one(item: Mapping[str, Any]) -> str | None:
            value = item.get(name, _ABSENT)
            if type(value) is str:
                return value
            return format_scalar(value)

        return fill_one
    pairs = tuple(zip(names, literals[1:], strict=True))
    first = literals[0]

    def fill(item: Mapping[str, Any]) -> str | None:
        parts = [first]
        for name, literal in pairs:
            text = format_scalar(item.get(name, _ABSENT))
            if text is None:
                return None
            parts.append(text)
            parts.append(literal)
        return "".join(parts)

    return fill


def parse_template(source: str) -> Template:
    """Parse ``source``; raise ``ValueError`` with a readable reason when it is malformed."""
    literals: list[str] = []
    names: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(source):
        name = match.group(1).strip()
        if not name:
            raise ValueError(f'"{source}" has an empty placeholder {{}} at character {match.start() + 1}')
        literals.append(source[position : match.start()])
        names.append(name)
        position = match.end()
    literals.append(source[position:])
    for literal in literals:
        if "{" in literal or "}" in literal:
            raise ValueError(f'"{source}" has an unbalanced brace; placeholders look like {{Attribute}}')
    return Template(source=source, literals=tuple(literals), names=tuple(names))
