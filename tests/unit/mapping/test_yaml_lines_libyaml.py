"""Mapping files read with libyaml's parser give what PyYAML's pure-Python parser gives, line for line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cdcsync.mapping import yaml_lines
from cdcsync.mapping.yaml_lines import LocatedDocument, load_documents

REPO = Path(__file__).resolve().parents[3]

SAMPLES = {
    "anchors and merge keys": (
        "base: &base {index: users, deletes: {on_remove: delete}}\n"
        "mappings:\n  - <<: *base\n    table: Users\n  - <<: [*base]\n    table: Admins\n    index: admins\n"
    ),
    "two documents and a duplicate key": "table: A\nindex: a\n---\ntable: B\nindex: b\nindex: c\n",
    "scalars": (
        "i: 12\nf: 1.5\ne: 1e3\nhex: 0x1F\nb: yes\nt: true\nn: ~\nnull: null\nd: 2024-01-02\n"
        "ts: 2024-01-02T03:04:05Z\ns: '12'\nq: \"a\\tb\\u00e9\"\nbig: 123456789012345678901234567890\n"
        "inf: .inf\nbin: !!binary aGVsbG8=\nstr: !!str 5\n"
    ),
    "block and flow styles": (
        "# a comment\nfields:\n  include: [UserId, 'Name', \"Email\"]\n  computed:\n"
        "    full: |\n      join(' ', [FirstName,\n        LastName])\n    folded: >\n      a\n      b\n"
        "where: {Status: [{anything-but: [banned]}, {exists: false}]}\nlist:\n- - 1\n  - 2\n- {}\n- []\n"
    ),
    "unicode and empty": 'table: Ürün\nindex: "ürün-{Region}"\nempty:\n',
    "empty text": "",
}


def documents(loader_class: type[Any], text: str) -> list[LocatedDocument]:
    return list(yaml_lines._documents(loader_class(text)))


def typed(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize(
    "text",
    [
        *SAMPLES.values(),
        *(path.read_text() for path in sorted((REPO / "mappings").glob("*.yaml"))),
    ],
    ids=[*SAMPLES, *(path.name for path in sorted((REPO / "mappings").glob("*.yaml")))],
)
def test_load_documents_libyaml_same_values_lines_and_duplicates(text: str) -> None:
    # GIVEN a mapping text; WHEN read over libyaml and over the pure-Python parser
    fast = documents(yaml_lines._BoundedCLoader, text)
    slow = documents(yaml_lines._BoundedLoader, text)
    # THEN the values (type for type), the line of every path and the duplicate keys are the same
    assert [(typed(d.value), d.lines, d.duplicates) for d in fast] == [
        (typed(d.value), d.lines, d.duplicates) for d in slow
    ]
    assert [(typed(d.value), d.lines) for d in load_documents(text)] == [
        (typed(d.value), d.lines) for d in slow
    ]


@pytest.mark.parametrize(
    "text",
    [
        "table: [Users\n",  # syntax error
        "a: &a [*a]\n",  # recursive alias
        "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
        + "".join(f"b{n}: [{', '.join(['*a'] * 100)}]\n" for n in range(12)),
        "a: " + "[" * 101 + "]" * 101 + "\n",  # too deep
        "a: 1\n\tb: 2\n",  # a tab where indentation is expected
    ],
    ids=["syntax", "recursive-alias", "alias-bomb", "too-deep", "tab"],
)
def test_load_documents_error_is_the_pure_python_parsers(text: str) -> None:
    # GIVEN a text that does not load; WHEN read
    with pytest.raises(yaml.YAMLError) as raised:
        list(load_documents(text))
    with pytest.raises(yaml.YAMLError) as expected:
        documents(yaml_lines._BoundedLoader, text)
    # THEN the error, and the line it names, are the pure-Python parser's
    assert str(raised.value) == str(expected.value)
    assert type(raised.value) is type(expected.value)


def test_libyaml_is_available() -> None:
    # GIVEN the fast path; THEN the wheel in use has libyaml (else every read takes the slow path)
    assert yaml.__with_libyaml__
