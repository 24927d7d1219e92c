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

    def apply(self, item: Mapping[str, Any]) -> dict[str, Any]:
        include, exclude, rename = self.include, self.exclude, self.rename
        # Comprehensions over the item: the cheapest form CPython has for this hot path.
        if include is not None:
            document = {rename.get(k, k): v for k, v in item.items() if k in include and k not in exclude}
        elif exclude:
            document = {rename.get(k, k): v for k, v in item.items() if k not in exclude}
        elif rename:
            document = {rename.get(k, k): v for k, v in item.items()}
        else:
            document = dict(item)
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
