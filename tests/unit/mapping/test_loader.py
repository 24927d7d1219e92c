"""Mapping files: every problem is reported with file, line and key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdcsync.errors import MappingError
from cdcsync.mapping.loader import load_mappings, mapping_files
from cdcsync.mapping.model import MappingModel

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
            ['{file}:4: indx: unknown key (did you mean "index"?)'],
            id="unknown-key-close",
        ),
        pytest.param(
            VALID + "colour: red\n",
            [
                "{file}:4: colour: unknown key (expected one of: table, index, id, routing, filter, where, "
                "fields, skip_unchanged, deletes, version, index_body)"
            ],
            id="unknown-key",
        ),
        pytest.param(
            VALID + "fields:\n  includes: [a]\n",
            ['{file}:5: fields.includes: unknown key (did you mean "include"?)'],
            id="unknown-nested-key",
        ),
        pytest.param(
            VALID + "feilds: {include: [UserId]}\n",
            ['{file}:4: feilds: unknown key (did you mean "fields"?)'],
            id="unknown-key-typo",
        ),
        pytest.param(
            VALID + "deletes: {on_ttl: ignore}\n",
            ['{file}:4: deletes.on_ttl: unknown key (did you mean "on_ttl_expiry"?)'],
            id="unknown-nested-key-typo",
        ),
        pytest.param(
            VALID + 'fields:\n  computed:\n    n: "lenght(Items)"\n',
            [
                '{file}:6: fields.computed.n: "lenght(Items)" calls lenght(), which JMESPath does not have '
                "(did you mean length()?)"
            ],
            id="unknown-jmespath-function",
        ),
        pytest.param(
            VALID + 'fields:\n  computed:\n    n: "Items[?contains(Tags)] | frobnicate(@, `1`)"\n',
            [
                '{file}:6: fields.computed.n: "Items[?contains(Tags)] | frobnicate(@, `1`)" calls '
                "contains() with 1 argument, which takes 2",
                '{file}:6: fields.computed.n: "Items[?contains(Tags)] | frobnicate(@, `1`)" calls '
                "frobnicate(), which JMESPath does not have",
            ],
            id="jmespath-arity-and-unknown",
        ),
        pytest.param(
            VALID + 'fields:\n  computed:\n    n: "not_null(a, b, c)"\n    m: "merge()"\n',
            [
                '{file}:7: fields.computed.m: "merge()" calls merge() with 0 arguments, '
                "which takes at least 1",
            ],
            id="jmespath-variadic",
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


def test_load_reports_problems_of_every_kind_in_one_pass_sorted_by_line(tmp_path: Path) -> None:
    # GIVEN a file with a structural problem after a semantic one, and a duplicate key
    path = write(
        tmp_path,
        "orders.yaml",
        """\
        table: Orders
        index: Orders
        feilds: {}
        where:
          Status: [{prefixx: a}]
        fields:
          computed: {n: "lenght(Items)"}
        skip_unchanged: maybe
        deletes: {on_remove: drop}
        table: Orders
        """,
    )
    # WHEN loaded THEN every problem, of every kind, comes out at once, in line order
    assert problems(path) == [
        f'{path}:2: index: "Orders" is not a valid OpenSearch index name: must be lowercase',
        f'{path}:3: feilds: unknown key (did you mean "fields"?)',
        f'{path}:5: where.Status.0.prefixx: unknown matcher "prefixx" (expected one of: anything-but, '
        "equals-ignore-case, exists, numeric, prefix, suffix, wildcard)",
        f'{path}:7: fields.computed.n: "lenght(Items)" calls lenght(), which JMESPath does not have '
        "(did you mean length()?)",
        f"{path}:8: skip_unchanged: expected true or false, got a string",
        f"{path}:9: deletes.on_remove: expected one of 'delete', 'ignore', got \"drop\"",
        f"{path}:10: table: duplicate key (first set on line 1)",
    ]


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


def test_load_yaml_anchors_shared_by_several_mappings_load_within_the_alias_budget(tmp_path: Path) -> None:
    # GIVEN four mappings sharing a base through merge keys and an index_body of 60 fields through an alias
    properties = "".join(f"        f{n}: {{type: keyword}}\n" for n in range(60))
    text = (
        "mappings:\n"
        "  - &base\n"
        "    table: App\n"
        "    index: a\n"
        '    where: {PK: [{prefix: "USER#"}]}\n'
        "    index_body: &body\n"
        "      mappings:\n"
        "        properties:\n"
        + "".join(f"  {line}\n" for line in properties.splitlines())
        + "  - {<<: *base, index: b}\n"
        "  - {<<: *base, index: c}\n"
        "  - {<<: *base, index: d, index_body: *body}\n"
    )
    path = tmp_path / "app.yaml"
    path.write_text(text)
    # WHEN loaded THEN every mapping has the shared keys, its own index and the whole index_body
    mappings = load_mappings(path)
    assert [(m.table, m.index.source) for m in mappings] == [("App", name) for name in "abcd"]
    bodies = [m.model.index_body for m in mappings]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0] is not None
    assert len(bodies[0].mappings["properties"]) == 60


def configmap_mount(root: Path, files: dict[str, str]) -> Path:
    """The layout kubelet gives a mounted ConfigMap: a timestamped folder, ``..data`` and file links."""
    root.mkdir()
    stamp = root / "..2026_11_28_10_00_00.123"
    stamp.mkdir()
    for name, text in files.items():
        (stamp / name).write_text(text)
        (root / name).symlink_to(f"..data/{name}")
    (root / "..data").symlink_to(stamp.name)
    return root


def test_load_configmap_mount_loads_each_file_once(tmp_path: Path) -> None:
    # GIVEN mappings mounted from a Kubernetes ConfigMap (..data -> ..<timestamp>, users.yaml -> ..data/)
    root = configmap_mount(
        tmp_path / "mappings", {"users.yaml": VALID, "orders.yml": "table: Orders\nindex: orders\n"}
    )
    # WHEN the folder is walked and loaded
    files = mapping_files(root)
    mappings = load_mappings(root)
    # THEN each mapping file counts once, under the name the user gave it
    assert files == [root / "orders.yml", root / "users.yaml"]
    assert [(m.source, m.name) for m in mappings] == [
        (f"{root}/orders.yml:1", "Orders -> orders"),
        (f"{root}/users.yaml:1", "Users -> users"),
    ]


def test_load_folder_links_to_one_file_or_back_to_itself_count_once(tmp_path: Path) -> None:
    # GIVEN a mapping reachable under two names, a folder link back to the root, and a hidden folder
    write(tmp_path, "users.yaml", VALID)
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "users.yaml").symlink_to("../users.yaml")
    (tmp_path / "again").symlink_to(".")
    (tmp_path / ".git").mkdir()
    write(tmp_path / ".git", "old.yaml", VALID)
    # WHEN the folder is walked THEN the file counts once, under its name nearest the top, and the walk ends
    assert mapping_files(tmp_path) == [tmp_path / "users.yaml"]
    assert len(load_mappings(tmp_path)) == 1


def test_load_linked_folder_of_mappings_is_followed(tmp_path: Path) -> None:
    # GIVEN a folder of mappings linked into the mappings folder under a plain name
    shared = tmp_path / "shared"
    shared.mkdir()
    write(shared, "orders.yaml", "table: Orders\nindex: orders\n")
    root = tmp_path / "mappings"
    root.mkdir()
    (root / "team").symlink_to(shared)
    # WHEN walked THEN its files are found under the linked name
    assert mapping_files(root) == [root / "team" / "orders.yaml"]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"a.yaml": VALID, "b.yaml": "# the same again\n" + VALID},
            [
                '{b.yaml}:2: table Users: index "users" is also written by the mapping at {a.yaml}:1; '
                "two mappings writing one index for one table overwrite each other's documents "
                "(merge them into one mapping, or give each its own index)"
            ],
            id="two-files",
        ),
        pytest.param(
            {
                "app.yaml": """\
                mappings:
                  - {table: App, index: "orders-{Region}", where: {SK: [{prefix: "ORDER#"}]}}
                  - {table: App, index: "orders-{Region}", where: {SK: [{prefix: "RETURN#"}]}}
                """
            },
            [
                '{app.yaml}:3: table App: index "orders-{Region}" is also written by the mapping at '
                "{app.yaml}:2; two mappings writing one index for one table overwrite each other's "
                "documents (merge them into one mapping, or give each its own index)"
            ],
            id="one-file-templated",
        ),
    ],
)
def test_load_two_mappings_writing_one_index_of_one_table_are_refused(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    # GIVEN two mappings of one table that write the same index (name or template)
    for name, text in files.items():
        write(tmp_path, name, text)
    # WHEN loaded THEN the second is refused, naming both files and lines
    for name in files:
        expected = [line.replace("{" + name + "}", str(tmp_path / name)) for line in expected]
    assert problems(tmp_path) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("table: Orders\nindex: users\n", id="other-table-same-index"),
        pytest.param("table: Users\nindex: users-{Region}\n", id="same-table-other-template"),
    ],
)
def test_load_mappings_of_other_tables_or_indices_are_not_duplicates(tmp_path: Path, text: str) -> None:
    # GIVEN a second mapping with another table or another index WHEN loaded THEN both load
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "b.yaml", text)
    assert len(load_mappings(tmp_path)) == 2


def _lists(levels: int, inner: str = "") -> str:
    return "[" * levels + inner + "]" * levels


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        pytest.param(
            _lists(19, "*a2"),
            [
                "{path}:4: invalid YAML: alias *a2 nests its node 101 levels deep when expanded, past 100; "
                "a mapping never needs that many"
            ],
            id="past-the-limit",
        ),
        pytest.param(_lists(18, "*a2"), [], id="at-the-limit"),
    ],
)
def test_load_yaml_alias_height_counts_the_aliases_it_contains(
    tmp_path: Path, last: str, expected: list[str]
) -> None:
    # GIVEN anchors each written well under 100 levels, whose aliases chain to 82 levels when expanded
    text = (
        f"a0: &a0 {_lists(40)}\n"  # 40 levels
        f"a1: &a1 {_lists(40, '*a0')}\n"  # 40 + 40
        "a2: &a2 [*a1]\n"  # 1 + 80
        f"a3: {last}\n"  # the mapping, then 19 or 18 lists around *a2's 81 levels
    )
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    # WHEN loaded
    with pytest.raises(MappingError) as caught:
        load_mappings(path)
    # THEN the nesting an alias brings counts where it is used: refused past 100 levels, at its line
    found = [str(p) for p in caught.value.problems]
    assert [p for p in found if "invalid YAML" in p] == [line.format(path=path) for line in expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(VALID + "7: x\n", ["{file}:1: 7: Keys should be strings"], id="number-key"),
        pytest.param(
            VALID + "fields:\n  rename: {5: x, Email: 6}\n",
            [
                "{file}:5: fields.rename.5.[key]: expected a string, got a number",
                "{file}:5: fields.rename.Email: expected a string, got a number",
            ],
            id="rename-number-key-and-value",
        ),
        pytest.param(
            VALID + "where: {true: [a]}\n",
            [
                "{file}:4: where.1.[key]: expected a string, got a boolean",
                "{file}:4: where: a pattern object must name at least one field, got an empty object",
            ],
            id="where-boolean-key",
        ),
        pytest.param(
            VALID + "fields:\ndeletes: []\n",
            [
                "{file}:4: fields: expected a mapping (key: value), got null",
                "{file}:5: deletes: expected a mapping (key: value), got a list",
            ],
            id="null-and-list-for-mapping",
        ),
        pytest.param(
            'table: ""\nindex: 2024-01-01\nid: "{UserId}"\n',
            ["{file}:1: table: must not be empty", "{file}:2: index: expected a string, got a date"],
            id="empty-and-date",
        ),
        pytest.param(
            VALID + "fields: {include: [a, 1], exclude: a}\n",
            [
                "{file}:4: fields.include.1: expected a string, got a number",
                "{file}:4: fields.exclude: expected a list, got a string",
            ],
            id="list-of-strings",
        ),
        pytest.param(
            VALID + "index_body: {settings: [], shards: 1}\n",
            [
                "{file}:4: index_body.settings: expected a mapping (key: value), got a list",
                "{file}:4: index_body.shards: unknown key (expected one of: settings, mappings, aliases)",
            ],
            id="index-body",
        ),
        pytest.param(
            VALID + "deletes: {on_remove: 1}\nversion: 3\n",
            [
                "{file}:4: deletes.on_remove: expected one of 'delete', 'ignore', got \"1\"",
                "{file}:5: version: expected a string, got a number",
            ],
            id="number-for-choice-and-version",
        ),
    ],
)
def test_load_mapping_of_wrong_shape_reports_each_key_as_strict_validation_did(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    # GIVEN a mapping whose keys hold values of the wrong kind (the schema is strict: no coercion)
    path = tmp_path / "users.yaml"
    path.write_text(text)

    # WHEN it is loaded, THEN each problem names its file, line, key path and what was found
    assert problems(path) == [e.replace("{file}", str(path)) for e in expected]


def test_load_mapping_defaults_fill_every_key_left_out(tmp_path: Path) -> None:
    # GIVEN a mapping with only its required keys
    path = tmp_path / "users.yaml"
    path.write_text("table: Users\nindex: users\n")

    # WHEN it is loaded, THEN every other key holds the contract's default
    model = load_mappings(path).mappings[0].model
    assert model == MappingModel(table="Users", index="users")
    assert (model.id, model.routing, model.filter, model.where, model.index_body) == (None,) * 5
    assert (model.skip_unchanged, model.version) == (False, "stream")
    assert (model.deletes.on_remove, model.deletes.on_ttl_expiry) == ("delete", "delete")
    assert (model.fields.include, model.fields.exclude, model.fields.rename, model.fields.computed) == (
        None,
        [],
        {},
        {},
    )
