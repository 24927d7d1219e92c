"""``{Attribute}`` templates for document ids, index names and routing values.

A template is literal text with ``{Name}`` placeholders naming top-level item attributes.
Rendering never raises on data: a missing or non-scalar attribute is reported as a ``PlanError``
so that the one record goes to the dead-letter queue and the batch goes on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    """A parsed template: alternating literal text and attribute names."""

    source: str
    literals: tuple[str, ...]
    names: tuple[str, ...]

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
        names = self.names
        if len(names) == 1 and not self.literals[0] and not self.literals[1]:
            text = format_scalar(item.get(names[0], _ABSENT))  # "{UserId}": the common case
            if text is not None:
                return text
        elif not names:
            return self.source
        else:
            parts = [self.literals[0]]
            for name, literal in zip(names, self.literals[1:], strict=True):
                text = format_scalar(item.get(name, _ABSENT))
                if text is None:
                    break
                parts.append(text)
                parts.append(literal)
            else:
                return "".join(parts)
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
