"""YAML parsing that remembers the line of every key and list item.

PyYAML's ``safe_load`` forgets where values came from; errors must say ``file:line``. We compose
the node tree ourselves, record ``path -> line`` while constructing plain Python values, and
refuse duplicate keys (``safe_load`` silently keeps the last one, hiding a typo'd override).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


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


def _walk(node: yaml.Node, path: Path, doc: LocatedDocument, loader: yaml.SafeLoader) -> Any:
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


def load_documents(text: str) -> Iterator[LocatedDocument]:
    """Yield each document of a (possibly multi-document) YAML text with its line map.

    Raises ``yaml.YAMLError`` (with ``problem_mark``) on syntax errors.
    """
    loader = yaml.SafeLoader(text)
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
