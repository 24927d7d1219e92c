"""Mapping files: every problem is reported with file, line and key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdcsync.errors import MappingError
from cdcsync.mapping.loader import load_mappings

VALID = """\
table: Users
index: users
id: "{UserId}"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(MappingError) as caught:
        load_mappings(path)
    return [str(p) for p in caught.value.problems]


def test_load_single_mapping_compiles_all_keys(tmp_path: Path) -> None:
    # GIVEN a mapping using every key of the contract
    path = write(
        tmp_path,
        "users.yaml",
        """\
        table: Users
        index: "users-{Region}"
        id: "{UserId}"
        routing: "{TenantId}"
        filter:
          eventName: [INSERT, MODIFY]
        where:
          Status: [{anything-but: [banned]}]
        fields:
          include: [UserId, Username, Email]
          exclude: [PasswordHash]
          rename: {Username: username}
          computed: {full_name: "join(' ', [FirstName, LastName])"}
        skip_unchanged: true
        deletes: {on_remove: delete, on_ttl_expiry: ignore}
        version: "attribute:Version"
        index_body: {settings: {}, mappings: {}}
        """,
    )
    # WHEN it is loaded
    mappings = load_mappings(path)
    # THEN one compiled mapping holds each setting
    (mapping,) = mappings
    assert mapping.source == f"{path}:1"
    assert mapping.name == "Users -> users-{Region}"
    assert mapping.index.names == ("Region",)
    assert mapping.filter is not None
    assert mapping.where is not None
    assert mapping.version_attribute == "Version"
    assert mapping.delete_on_remove
    assert not mapping.delete_on_ttl_expiry
    assert mapping.index_body == {"settings": {}, "mappings": {}, "aliases": {}}
    assert mappings.for_table("Users") == (mapping,)
    assert mappings.for_table("Orders") == ()


def test_load_list_and_documents_gives_several_mappings_per_table(tmp_path: Path) -> None:
    # GIVEN one file with a mappings: list and another with two YAML documents
    write(
        tmp_path,
        "a.yaml",
        """\
        mappings:
          - {table: App, index: users, where: {PK: [{prefix: "USER#"}]}}
          - {table: App, index: orders, where: {PK: [{prefix: "ORDER#"}]}}
        """,
    )
    write(tmp_path, "b.yml", "table: Users\nindex: users\n---\ntable: Orders\nindex: orders\n")
    # WHEN the folder is loaded
    mappings = load_mappings(tmp_path)
    # THEN all four are there, in file order
    assert [m.name for m in mappings] == [
        "App -> users",
        "App -> orders",
        "Users -> users",
        "Orders -> orders",
    ]
    assert [m.source.rsplit(":", 1)[1] for m in mappings] == ["2", "3", "1", "4"]
    assert mappings.tables == ("App", "Users", "Orders")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            VALID + "fields:\n  rename:\n    Email: [a, b]\n",
            ["{file}:6: fields.rename.Email: expected a string, got a list"],
            id="wrong-type",
        ),
        pytest.param(
            VALID + "indx: users\n",
            [
                "{file}:4: indx: unknown key (expected one of: table, index, id, routing, filter, where, "
                "fields, skip_unchanged, deletes, version, index_body)"
            ],
            id="unknown-key",
        ),
        pytest.param(
            VALID + "fields:\n  includes: [a]\n",
            ["{file}:5: fields.includes: unknown key (expected one of: include, exclude, rename, computed)"],
            id="unknown-nested-key",
        ),
        pytest.param("index: users\n", ["{file}:1: table: required key is missing"], id="missing-key"),
        pytest.param(
            VALID + "deletes:\n  on_remove: drop\n",
            ["{file}:5: deletes.on_remove: expected one of 'delete', 'ignore', got \"drop\""],
            id="bad-choice",
        ),
        pytest.param(
            VALID + "skip_unchanged: 'yes'\n",
            ["{file}:4: skip_unchanged: expected true or false, got a string"],
            id="string-for-bool",
        ),
        pytest.param(
            VALID + "version: counter\n",
            ['{file}:4: version: expected "stream" or "attribute:<Name>", got "counter"'],
            id="bad-version",
        ),
        pytest.param(
            "table: Users\nindex: Users\n",
            ['{file}:2: index: "Users" is not a valid OpenSearch index name: must be lowercase'],
            id="uppercase-index",
        ),
        pytest.param(
            VALID.replace('"{UserId}"', '"{UserId"'),
            ['{file}:3: id: "{UserId" has an unbalanced brace; placeholders look like {Attribute}'],
            id="bad-template",
        ),
        pytest.param(
            VALID + 'fields:\n  computed:\n    n: "length("\n',
            [
                '{file}:6: fields.computed.n: "length(" is not valid JMESPath: '
                "incomplete expression at character 8"
            ],
            id="bad-jmespath",
        ),
        pytest.param(
            VALID + "fields:\n  include: [a]\n  exclude: [b, a]\n",
            ["{file}:6: fields.exclude.1: a is both included and excluded"],
            id="include-and-exclude",
        ),
        pytest.param(
            VALID + "table: Orders\n",
            ["{file}:4: table: duplicate key (first set on line 1)"],
            id="duplicate-key",
        ),
        pytest.param(
            "table: [Users\n",
            ["{file}:2: invalid YAML: expected ',' or ']', but got '<stream end>'"],
            id="yaml-syntax",
        ),
        pytest.param(
            "- table: Users\n",
            ["{file}:1: expected a mapping with table and index keys, or a mappings: list, got a list"],
            id="top-level-list",
        ),
        pytest.param("# nothing\n", ["{file}: no mapping found in the file"], id="empty-file"),
        pytest.param(
            VALID + "where:\n  Status: {S: [active]}\n",
            [
                "{file}:5: where.Status.S: where is matched on plain item values, not DynamoDB JSON: "
                "write Status: [...] instead of Status: {S: [...]}"
            ],
            id="typed-where",
        ),
        pytest.param(
            "defaults: {}\nmappings:\n  - {table: T, index: t}\n",
            ["{file}:1: defaults: unknown key next to mappings: (a list file holds only mappings:)"],
            id="extra-key-beside-mappings",
        ),
        pytest.param(
            VALID + "version: 'attribute: '\n",
            ['{file}:4: version: expected "stream" or "attribute:<Name>", got "attribute: "'],
            id="empty-version-attribute",
        ),
    ],
)
def test_load_broken_mapping_reports_file_line_and_key(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    # GIVEN a mapping file with one problem
    path = write(tmp_path, "broken.yaml", text)
    # WHEN it is loaded THEN the error names the file, the line and the key
    assert problems(path) == [e.replace("{file}", str(path)) for e in expected]


def test_load_pattern_error_points_at_the_matcher_line(tmp_path: Path) -> None:
    # GIVEN a where pattern with a misspelt matcher on line 6
    path = write(
        tmp_path,
        "users.yaml",
        """\
        table: Users
        index: users
        where:
          Status:
            - anything-but: [banned]
            - prefixx: a
        """,
    )
    # WHEN loaded THEN the problem is located at that matcher
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:6: where.Status.1")
    assert "prefixx" in problem


def test_load_reports_every_problem_of_every_file(tmp_path: Path) -> None:
    # GIVEN two broken files, one with two problems
    write(tmp_path, "a.yaml", "table: Users\nindex: users\nbogus: 1\nversion: x\n")
    write(tmp_path, "b.yaml", "index: orders\n")
    # WHEN the folder is loaded THEN all three problems are listed, not just the first
    assert len(problems(tmp_path)) == 3


def test_load_missing_path_says_what_to_set(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope") == [
        f"{tmp_path / 'nope'}: no such file or folder (set CDCSYNC_MAPPINGS)"
    ]


def test_load_shipped_mappings_are_valid() -> None:
    # The examples users copy must load.
    mappings = load_mappings(Path(__file__).parents[3] / "mappings")
    assert "Users" in mappings.tables


def test_load_yaml_merge_keys_expand(tmp_path: Path) -> None:
    # GIVEN a list file sharing keys through a YAML anchor and merge key
    path = write(
        tmp_path,
        "app.yaml",
        """\
        mappings:
          - &base {table: App, index: a, where: {PK: [{prefix: "USER#"}]}}
          - <<: *base
            index: b
        """,
    )
    # WHEN loaded THEN the second mapping has the shared keys and its own index
    first, second = load_mappings(path)
    assert (second.table, second.index.source, second.where) == ("App", "b", first.where)
