"""``{Attribute}`` templates for document ids, index names and routing values.

A template is literal text with ``{Name}`` placeholders naming top-level item attributes.
Rendering never raises on data: a missing or non-scalar attribute is reported as a ``PlanError``
so that the one record goes to the dead-letter queue and the batch goes on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdcsync.errors import PlanError

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def format_scalar(value: Any) -> str | None:
    # bool before int: bool is an int subclass, and True must not render as "1".
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
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

    def render(self, item: Mapping[str, Any], *, what: str, scope: str = "the item") -> str:
        """Fill the placeholders from ``item``.

        ``what`` names the mapping key in errors (``id``, ``index``); ``scope`` says what ``item`` is.
        """
        if not self.names:
            return self.source
        parts = [self.literals[0]]
        for name, literal in zip(self.names, self.literals[1:], strict=True):
            if name not in item:
                raise PlanError(
                    f'{what}: "{self.source}" names {name}, which is not in {scope} '
                    f"(has: {', '.join(sorted(item)) or 'nothing'})"
                )
            text = format_scalar(item[name])
            if text is None:
                kind = type(item[name]).__name__
                raise PlanError(
                    f'{what}: "{self.source}" needs a string, number or boolean in {name}, got a {kind}'
                )
            parts.append(text)
            parts.append(literal)
        return "".join(parts)


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
