"""The ``fields`` key compiled: which item attributes become document fields, under which names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.parser

from cdcsync.errors import PlanError


@dataclass(frozen=True, slots=True)
class Projection:
    """Turns a plain item into a document.

    Computed fields are evaluated over the whole item (so ``join(' ', [FirstName, LastName])``
    works even when those attributes are excluded), then include, exclude and rename apply.
    """

    include: frozenset[str] | None
    exclude: frozenset[str]
    rename: Mapping[str, str]
    computed: tuple[tuple[str, jmespath.parser.ParsedResult], ...]

    @property
    def is_identity(self) -> bool:
        return self.include is None and not self.exclude and not self.rename and not self.computed

    def apply(self, item: Mapping[str, Any]) -> dict[str, Any]:
        if self.is_identity:
            return dict(item)
        include, exclude, rename = self.include, self.exclude, self.rename
        document: dict[str, Any] = {}
        for name, value in item.items():
            if (include is not None and name not in include) or name in exclude:
                continue
            document[rename.get(name, name)] = value
        for name, expression in self.computed:
            try:
                value = expression.search(item)
            except jmespath.exceptions.JMESPathError as exc:
                raise PlanError(
                    f'fields.computed.{name}: "{expression.expression}" failed on this item: {exc}'
                ) from exc
            # A computed field with no value is left out, as a missing attribute would be.
            if value is not None:
                document[name] = value
        return document
