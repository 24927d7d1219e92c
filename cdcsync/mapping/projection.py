"""The ``fields`` key compiled: which item attributes become document fields, under which names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.parser

from cdcsync.errors import PlanError
from cdcsync.mapping.expressions import evaluate

_SETS = frozenset({"SS", "NS", "BS"})


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
    # The attribute that last told raw_unchanged "changed": the updates of a table tend to change
    # the same attributes, so looking there first mostly decides at once. Only a hint (shared by
    # threads without a lock): any projected attribute that differs gives the same answer.
    _changed_hint: list[str] = field(default_factory=lambda: [""], init=False, repr=False, compare=False)

    def indexes(self, name: str) -> bool:
        """Whether attribute ``name`` becomes a document field (under its own name or a new one)."""
        return (self.include is None or name in self.include) and name not in self.exclude

    def raw_unchanged(self, new: Mapping[str, Any], old: Mapping[str, Any]) -> bool | None:
        """Decide "same document?" from two DynamoDB-typed images without converting them.

        True: every projected attribute is identical. False: a projected attribute that is not a
        set differs. None: cannot tell cheaply (a set may list its members in another order; a
        computed field may read any attribute): convert and compare the documents.
        """
        if self.computed:
            return True if new == old else None
        include, exclude = self.include, self.exclude
        whole = include is None and not exclude
        get = old.get
        hint = self._changed_hint[0]  # a projected attribute: only the loop below sets it
        if hint in new and (a := new[hint]) != get(hint) and not _same_set_tag(a, get(hint)):
            return False
        undecided = False
        for name, a in new.items():
            if not whole and ((include is not None and name not in include) or name in exclude):
                continue
            b = get(name)
            if a == b:
                continue
            if _same_set_tag(a, b):
                undecided = True
                continue
            self._changed_hint[0] = name
            return False  # changed, added (b is None) or malformed
        if whole:
            # Every name of the new image is in the old one (else the loop said False): an
            # attribute was removed exactly when the old image has more.
            if len(old) > len(new):
                return False
        else:
            for name in old:
                if name not in new and (include is None or name in include) and name not in exclude:
                    return False  # an attribute removed
        return None if undecided else True

    def apply(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The document; the item itself when the projection keeps it whole (documents are never changed)."""
        include, exclude, rename = self.include, self.exclude, self.rename
        # Comprehensions over the item: the cheapest form CPython has for this hot path.
        if include is not None:
            document = {rename.get(k, k): v for k, v in item.items() if k in include and k not in exclude}
        elif exclude:
            document = {rename.get(k, k): v for k, v in item.items() if k not in exclude}
        elif rename:
            document = {rename.get(k, k): v for k, v in item.items()}
        elif not self.computed and type(item) is dict:
            return item
        else:
            document = dict(item)
        for name, expression in self.computed:
            try:
                value = evaluate(expression, item)
            except jmespath.exceptions.JMESPathError as exc:
                raise PlanError(
                    f'fields.computed.{name}: "{expression.expression}" failed on this item: {exc}'
                ) from exc
            # A computed field with no value is left out, as a missing attribute would be.
            if value is not None:
                document[name] = value
        return document


def _same_set_tag(a: Any, b: Any) -> bool:
    """Whether two typed values are sets of one type (equal members may be listed in another order)."""
    # The common answer (a differing S, N, M or L value) after three cheap tests.
    return (
        type(a) is dict
        and len(a) == 1
        and next(iter(a)) in _SETS
        and type(b) is dict
        and a.keys() == b.keys()
    )
