"""YAML parsing that remembers the line of every key and list item.

PyYAML's ``safe_load`` forgets where values came from; errors must say ``file:line``. We compose
the node tree ourselves, record ``path -> line`` while constructing plain Python values, and
refuse duplicate keys (``safe_load`` silently keeps the last one, hiding a typo'd override).

A mapping file may come from anyone who can open a pull request, so composing refuses, at the
line of the alias or the node, with a ``yaml.YAMLError`` the loader reports as ``file:line``:
- aliases that repeat more than ``MAX_ALIAS_NODES`` nodes in one document, counting each alias as
  the nodes it stands for: a 342-byte "billion laughs" file of nine nested aliases stands for
  400 million nodes (12.7 s and 1.5 GB before it was refused). A few merge keys (``<<: *base``)
  repeat a few dozen nodes each;
- a recursive alias (``&a [*a]``, ``&m {<<: *m}``), which has no end when expanded;
- nesting deeper than ``MAX_DEPTH`` levels, which PyYAML's recursive composer would turn into a
  RecursionError; an alias counts as the levels of the node it stands for, so anchors that each
  nest under the limit cannot chain (``&a1 [[... *a0]]``, ``&a2 [[... *a1]]``) past it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

MAX_ALIAS_NODES = 10_000  # nodes that aliases may repeat in one document
MAX_DEPTH = 100  # levels of nesting; a mapping needs about ten


@dataclass
class LocatedDocument:
    """One YAML document: its plain value and the 1-based line of each path inside it."""

    value: Any
    lines: dict[Path, int] = field(default_factory=dict)
    duplicates: list[tuple[Path, int, int]] = field(default_factory=list)  # path, line, first line

    def line_of(self, path: Path) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1


def _walk(node: yaml.Node, path: Path, doc: LocatedDocument, loader: yaml.constructor.SafeConstructor) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        own = {id(key_node) for key_node, _ in node.value}
        loader.flatten_mapping(node)  # expand YAML merge keys (<<: *base) as safe_load does
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        merged: set[Any] = set()  # keys that came from a merge: the mapping's own key overrides them
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                key = str(key)
            line = key_node.start_mark.line + 1
            child = (*path, str(key))
            if key in first_line and key not in merged:
                doc.duplicates.append((child, line, first_line[key]))
                continue
            if id(key_node) not in own:
                merged.add(key)
            else:
                merged.discard(key)
            first_line[key] = line
            doc.lines[child] = line
            result[key] = _walk(value_node, child, doc, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item_node in enumerate(node.value):
            child = (*path, index)
            doc.lines[child] = item_node.start_mark.line + 1
            items.append(_walk(item_node, child, doc, loader))
        return items
    return loader.construct_object(node, deep=True)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class _Bounded:
    """A composer that refuses alias bombs, recursive aliases and deep nesting (mixed into a loader).

    Each node's size (itself and every node below it, aliases expanded) and height (its levels,
    aliases expanded) are known once it is composed, from its children's; an anchored node without
    a size yet is still being composed, so an alias to it is recursive.
    """

    anchors: dict[Any, yaml.Node]

    def _start_bounds(self) -> None:
        self._sizes: dict[int, int] = {}
        self._heights: dict[int, int] = {}
        self._repeated = 0
        self._depth = 0

    def compose_document(self) -> yaml.Node | None:
        self._sizes, self._heights, self._repeated = {}, {}, 0
        node: yaml.Node | None = super().compose_document()  # type: ignore[misc] # the loader's
        return node

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[attr-defined] # the loader's
        if isinstance(event, yaml.AliasEvent):
            anchored = self.anchors.get(event.anchor)
            if anchored is not None:
                self._repeat(event, anchored)
            alias: yaml.Node | None = super().compose_node(parent, index)  # type: ignore[misc]
            return alias
        if self._depth >= MAX_DEPTH:
            raise _refused(f"nested deeper than {MAX_DEPTH} levels; a mapping never needs that many", event)
        self._depth += 1
        try:
            node: yaml.Node | None = super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self._depth -= 1
        if node is not None:
            children = _children(node)
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(child), 1) for child in children)
            self._heights[id(node)] = 1 + max(
                (self._heights.get(id(child), 1) for child in children), default=0
            )
        return node

    def _repeat(self, event: yaml.AliasEvent, node: yaml.Node) -> None:
        size = self._sizes.get(id(node))
        if size is None:
            raise _refused(
                f"alias *{event.anchor} refers to a node that contains it, which never ends when expanded; "
                "remove the alias",
                event,
            )
        levels = self._depth + self._heights.get(id(node), 1)
        if levels > MAX_DEPTH:
            raise _refused(
                f"alias *{event.anchor} nests its node {levels} levels deep when expanded, past {MAX_DEPTH}; "
                "a mapping never needs that many",
                event,
            )
        self._repeated += size
        if self._repeated > MAX_ALIAS_NODES:
            raise _refused(
                f"alias *{event.anchor} takes the nodes aliases repeat in this document past "
                f"{MAX_ALIAS_NODES}; write the values out instead of nesting aliases",
                event,
            )


class _BoundedLoader(_Bounded, yaml.SafeLoader):
    """PyYAML's pure-Python SafeLoader, bounded: its errors (and their lines) are the ones reported."""

    def __init__(self, text: str) -> None:
        yaml.SafeLoader.__init__(self, text)
        self._start_bounds()


class _BoundedCLoader(_Bounded, yaml.composer.Composer, yaml.CSafeLoader):
    """The same composer and constructor over libyaml's scanner and parser (~10x faster to read a
    mapping file: a Lambda cold start reads them all). Only ever used for a text that loads; an
    error is reported by reading the text again with ``_BoundedLoader``."""

    def __init__(self, text: str) -> None:
        yaml.CSafeLoader.__init__(self, text)
        yaml.composer.Composer.__init__(self)
        self._start_bounds()


def _refused(problem: str, event: yaml.Event) -> yaml.YAMLError:
    """A composer error at the event's line, as the loader reports YAML syntax errors."""
    mark = event.start_mark
    return yaml.composer.ComposerError(
        None, None, problem, mark if isinstance(mark, yaml.error.Mark) else None
    )


def load_documents(text: str) -> Iterator[LocatedDocument]:
    """Yield each document of a (possibly multi-document) YAML text with its line map.

    Raises ``yaml.YAMLError`` (with ``problem_mark``) on syntax errors, and on the alias bombs,
    recursive aliases and deep nesting the module docstring lists.
    """
    if yaml.__with_libyaml__:
        try:
            documents = list(_documents(_BoundedCLoader(text)))
        except yaml.YAMLError:
            pass  # read again below, for the pure-Python parser's error and line
        else:
            yield from documents
            return
    yield from _documents(_BoundedLoader(text))


def _documents(loader: _BoundedLoader | _BoundedCLoader) -> Iterator[LocatedDocument]:
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            doc = LocatedDocument(value=None)
            doc.value = _walk(node, (), doc, loader)
            yield doc
    finally:
        loader.dispose()
