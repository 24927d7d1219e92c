"""``cdcsync preview EVENT.json``: what cdcsync would do with each record, as text and as JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from cdcsync.entrypoints.cli import main

ROOT = Path(__file__).parents[2]
EVENTS = ROOT / "tests" / "fixtures" / "events"
USERS = "mappings/users.yaml:2 (Users -> users)"  # the shipped mapping, as `--mappings mappings` names it


def _preview(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, list[str], list[str]]:
    monkeypatch.chdir(ROOT)  # mapping sources print as mappings/users.yaml, as in the README
    code = main(["preview", *argv])
    out, err = capsys.readouterr()
    return code, out.split("\n")[:-1], err.split("\n")[:-1]


def _event(tmp_path: Path, *names: str, edit: Any = None) -> str:
    """A Lambda event of the named fixture records (``edit`` may change each one first)."""
    records = [json.loads((EVENTS / f"{name}.json").read_text()) for name in names]
    for record in records:
        if edit is not None:
            edit(record)
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"Records": records}))
    return str(path)


def test_cli_preview_seed_blog_event_prints_document_and_notes_missing_sequence_number(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the seed blog's sample Lambda event, as published (no SequenceNumber, no StreamViewType)
    # WHEN previewed with the shipped mappings
    code, out, err = _preview(["tests/fixtures/events/blog_sample_event.json"], capsys, monkeypatch)
    # THEN the users document is shown, with its target, and the missing sequence number is a note
    assert code == 0
    assert out == [
        'record 1: INSERT Users {"UserId":12345}, no sequence number, 2021-08-03T12:01:20Z',
        "  note: no dynamodb.SequenceNumber: every stream record carries one (cdcsync sends a record "
        "without it to the dead-letter queue as invalid_record); previewed as if it had one",
        f"  {USERS}: index users/12345, version 1627992080000",
        "    {",
        '      "UserId": 12345,',
        '      "username": "john_doe",',
        '      "email": "john.doe@example.com"',
        "    }",
    ]
    assert err == ["1 record: 1 index"]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        pytest.param(
            "modify_leaving_where",
            [
                'record 1: MODIFY Users {"UserId":12345}, seq 111100000000000000000006, 2021-08-03T12:02:10Z',
                f"  {USERS}: delete users/12345, version 1627992130000",
                "    where: the item does not match where now, and may have before",
            ],
            id="modify-leaving-where",
        ),
        pytest.param(
            "remove",
            [
                'record 1: REMOVE Users {"UserId":12345}, seq 111100000000000000000003, 2021-08-03T12:01:40Z',
                f"  {USERS}: delete users/12345, version 1627992100000",
                "    deletes.on_remove: the item was deleted",
            ],
            id="remove",
        ),
        pytest.param(
            "ttl_remove",
            [
                'record 1: REMOVE (TTL expiry) Users {"UserId":12345}, seq 111100000000000000000004, '
                "2021-08-03T12:01:50Z",
                f"  {USERS}: delete users/12345, version 1627992110000",
                "    deletes.on_ttl_expiry: the item expired (TTL)",
            ],
            id="ttl-remove",
        ),
        pytest.param(
            "keys_only",
            [
                'record 1: MODIFY Users {"UserId":12345}, seq 111100000000000000000005, 2021-08-03T12:02:00Z',
                f"  {USERS}: read the item, then plan it",
                "    the record carries no new image (stream view KEYS_ONLY): cdcsync reads the item "
                "(consistent read) and plans what it finds; preview reads nothing: see it with "
                "cdcsync preview --table Users --key UserId=12345",
            ],
            id="keys-only",
        ),
    ],
)
def test_cli_preview_fixture_record_prints_action_and_rule(
    fixture: str,
    expected: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN one fixture record (a single record, not a Lambda event)
    # WHEN previewed with the shipped mappings
    code, out, _ = _preview([f"tests/fixtures/events/{fixture}.json"], capsys, monkeypatch)
    # THEN the action, its target and version, and the rule that decided are printed
    assert (code, out) == (0, expected)


def test_cli_preview_modify_prints_projected_document_exactly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a MODIFY with a nested map and a string set
    # WHEN previewed
    code, out, _ = _preview(["tests/fixtures/events/modify.json"], capsys, monkeypatch)
    # THEN the document is the projection: renamed fields, the set as a sorted list
    assert code == 0
    assert out == [
        'record 1: MODIFY Users {"UserId":12345}, seq 111100000000000000000002, 2021-08-03T12:01:30Z',
        f"  {USERS}: index users/12345, version 1627992090000",
        "    {",
        '      "UserId": 12345,',
        '      "username": "john_doe",',
        '      "email": "john@example.org",',
        '      "Status": "active",',
        '      "Profile": {',
        '        "Age": 41,',
        '        "Tags": [',
        '          "a",',
        '          "b"',
        "        ]",
        "      }",
        "    }",
    ]


def test_cli_preview_json_event_prints_one_object_per_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a Lambda event with an insert, a modify leaving where, a TTL remove and a KEYS_ONLY record
    event = _event(tmp_path, "insert", "modify_leaving_where", "ttl_remove", "keys_only")
    # WHEN previewed as JSON
    code, out, err = _preview([event, "--json"], capsys, monkeypatch)
    # THEN each record is one JSON object with its steps, and nothing else is printed
    assert code == 0
    assert err == []
    header = {"table": "Users", "ttl_expiry": False, "keys": {"UserId": 12345}, "notes": []}
    target = {"mapping": "mappings/users.yaml:2", "name": "Users -> users", "index": "users", "id": "12345"}
    assert [json.loads(line) for line in out] == [
        {
            "record": 1,
            **header,
            "event": "INSERT",
            "sequence_number": "111100000000000000000001",
            "time": "2021-08-03T12:01:20Z",
            "steps": [
                {
                    **target,
                    "action": "index",
                    "routing": None,
                    "version": 1627992080000,
                    "document": {"UserId": 12345, "username": "john_doe", "email": "john.doe@example.com"},
                }
            ],
        },
        {
            "record": 2,
            **header,
            "event": "MODIFY",
            "sequence_number": "111100000000000000000006",
            "time": "2021-08-03T12:02:10Z",
            "steps": [
                {
                    **target,
                    "action": "delete",
                    "rule": "where",
                    "routing": None,
                    "version": 1627992130000,
                    "why": "the item does not match where now, and may have before",
                }
            ],
        },
        {
            "record": 3,
            **header,
            "event": "REMOVE",
            "ttl_expiry": True,
            "sequence_number": "111100000000000000000004",
            "time": "2021-08-03T12:01:50Z",
            "steps": [
                {
                    **target,
                    "action": "delete",
                    "rule": "deletes.on_ttl_expiry",
                    "routing": None,
                    "version": 1627992110000,
                    "why": "the item expired (TTL)",
                }
            ],
        },
        {
            "record": 4,
            **header,
            "event": "MODIFY",
            "sequence_number": "111100000000000000000005",
            "time": "2021-08-03T12:02:00Z",
            "steps": [
                {
                    "mapping": "mappings/users.yaml:2",
                    "name": "Users -> users",
                    "action": "fetch",
                    "why": "the record carries no new image (stream view KEYS_ONLY): cdcsync reads the item "
                    "(consistent read) and plans what it finds",
                    "command": "cdcsync preview --table Users --key UserId=12345",
                }
            ],
        },
    ]


def test_cli_preview_plan_error_prints_dead_letter_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a mapping whose index names an attribute the item lacks, and one that needs none
    mappings = tmp_path / "m.yaml"
    mappings.write_text('table: Users\nindex: "users-{Region}"\n---\ntable: Users\nindex: all-users\n')
    # WHEN an INSERT is previewed, as text and as JSON
    argv = ["tests/fixtures/events/insert.json", "--mappings", str(mappings)]
    code, out, err = _preview(argv, capsys, monkeypatch)
    json_code, json_out, _ = _preview([*argv, "--json"], capsys, monkeypatch)
    # THEN the first mapping's step is a dead letter with the planner's reason, the other goes on, exit 1
    message = (
        'index: "users-{Region}" names Region, which is not in the new image (has: Email, UserId, Username)'
    )
    assert code == 1
    assert out == [
        'record 1: INSERT Users {"UserId":12345}, seq 111100000000000000000001, 2021-08-03T12:01:20Z',
        f"  {mappings}:1 (Users -> users-{{Region}}): dead letter (plan_error)",
        f"    {message}",
        f"  {mappings}:4 (Users -> all-users): index all-users/12345, version 1627992080000",
        "    {",
        '      "UserId": 12345,',
        '      "Username": "john_doe",',
        '      "Email": "john.doe@example.com"',
        "    }",
    ]
    assert err == ["1 record: 1 index, 1 dead letter"]
    assert json_code == 1
    assert json.loads(json_out[0])["steps"][0] == {
        "mapping": f"{mappings}:1",
        "name": "Users -> users-{Region}",
        "action": "dead_letter",
        "reason": "plan_error",
        "why": message,
    }


def test_cli_preview_record_without_keys_is_invalid_record_dead_letter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a record the parser refuses (no Keys) and a good one after it
    event = _event(tmp_path, "remove", "insert")
    data = json.loads(Path(event).read_text())
    del data["Records"][0]["dynamodb"]["Keys"]
    Path(event).write_text(json.dumps(data))
    # WHEN previewed
    code, out, _ = _preview([event], capsys, monkeypatch)
    # THEN the first is the dead letter cdcsync would send, the second is planned, exit 1
    assert code == 1
    assert out[:4] == [
        "record 1:",
        "  dead letter (invalid_record)",
        "    record 111100000000000000000003 of Users: no Keys",
        'record 2: INSERT Users {"UserId":12345}, seq 111100000000000000000001, 2021-08-03T12:01:20Z',
    ]


@pytest.mark.parametrize(
    ("mapping", "fixture", "expected"),
    [
        pytest.param(
            "table: Users\nindex: users\nfilter: {eventName: [INSERT]}\n",
            "modify",
            ["  {path}:1 (Users -> users): skip", "    filter: the record does not match the filter"],
            id="filter",
        ),
        pytest.param(
            "table: Users\nindex: users\nwhere: {Status: [active]}\n",
            "insert",
            [
                "  {path}:1 (Users -> users): skip",
                "    where: the item does not match where, and was not in the index before",
            ],
            id="where",
        ),
        pytest.param(
            "table: Users\nindex: users\ndeletes: {on_ttl_expiry: ignore}\n",
            "ttl_remove",
            [
                "  {path}:1 (Users -> users): skip",
                "    deletes.on_ttl_expiry: the item expired (TTL), and the mapping keeps its document "
                "(ignore)",
            ],
            id="ttl-policy",
        ),
        pytest.param(
            "table: Users\nindex: users\ndeletes: {on_remove: ignore}\n",
            "remove",
            [
                "  {path}:1 (Users -> users): skip",
                "    deletes.on_remove: the item was deleted, and the mapping keeps its document (ignore)",
            ],
            id="remove-policy",
        ),
        pytest.param(
            "table: Orders\nindex: orders\n",
            "insert",
            [
                "  no mapping: skip",
                "    no_mapping: no mapping for table Users (tables with mappings: Orders)",
            ],
            id="no-mapping",
        ),
    ],
)
def test_cli_preview_skip_names_the_rule_that_decided(
    mapping: str,
    fixture: str,
    expected: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a mapping that skips the record
    path = tmp_path / "m.yaml"
    path.write_text(mapping)
    # WHEN previewed
    code, out, _ = _preview(
        [f"tests/fixtures/events/{fixture}.json", "--mappings", str(path)], capsys, monkeypatch
    )
    # THEN the skip names its rule
    assert code == 0
    assert out[1:] == [line.format(path=path) for line in expected]


def test_cli_preview_templated_index_move_deletes_old_place_then_indexes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a templated index and a MODIFY that changes the attribute naming it
    path = tmp_path / "m.yaml"
    path.write_text('table: Users\nindex: "users-{Region}"\nfields: {include: [UserId]}\n')

    def move(record: dict[str, Any]) -> None:
        record["dynamodb"]["OldImage"]["Region"] = {"S": "EU"}
        record["dynamodb"]["NewImage"]["Region"] = {"S": "US"}

    # WHEN previewed
    code, out, _ = _preview(
        [_event(tmp_path, "modify", edit=move), "--mappings", str(path)], capsys, monkeypatch
    )
    # THEN the document is deleted where the old image put it, then indexed where it goes
    assert code == 0
    assert out[1:] == [
        f"  {path}:1 (Users -> users-{{Region}}): delete users-eu/12345, version 1627992090000",
        "    moved: the index or routing changed: deleted where the old image put it",
        f"  {path}:1 (Users -> users-{{Region}}): index users-us/12345, version 1627992090000",
        "    {",
        '      "UserId": 12345',
        "    }",
    ]


def test_cli_preview_new_image_naming_no_index_deletes_old_place_and_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a templated index and a MODIFY whose new image lost the attribute naming it
    path = tmp_path / "m.yaml"
    path.write_text('table: Users\nindex: "users-{Region}"\n')

    def lose_region(record: dict[str, Any]) -> None:
        record["dynamodb"]["OldImage"]["Region"] = {"S": "EU"}

    # WHEN previewed
    event = _event(tmp_path, "modify", edit=lose_region)
    code, out, _ = _preview([event, "--mappings", str(path)], capsys, monkeypatch)
    # THEN the old document is deleted and the record is a dead letter for its new side, exit 1
    assert code == 1
    assert out[1:] == [
        f"  {path}:1 (Users -> users-{{Region}}): delete users-eu/12345, version 1627992090000",
        "    moved: the new image names no index or routing: deleted where the old image put it",
        f"  {path}:1 (Users -> users-{{Region}}): dead letter (plan_error)",
        '    index: "users-{Region}" names Region, which is not in the new image (has: Email, Profile, '
        "Status, UserId, Username); its document was deleted from users-eu",
    ]


def test_cli_preview_get_records_response_needs_table_then_plans_records(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a GetRecords response as the AWS CLI prints it (no eventSourceARN, ISO 8601 times)
    argv = ["tests/fixtures/events/get_records.json"]
    # WHEN previewed without, then with --table
    code, out, err = _preview(argv, capsys, monkeypatch)
    assert (code, out) == (2, [])
    assert err == [
        "cdcsync: preview: tests/fixtures/events/get_records.json: record 1 carries no eventSourceARN "
        "(GetRecords responses do not): name its table with --table T"
    ]
    code, out, _ = _preview([*argv, "--table", "Users"], capsys, monkeypatch)
    # THEN the record is planned for that table, at the time the text names
    assert code == 0
    assert out == [
        'record 1: MODIFY Users {"UserId":12345}, seq 111100000000000000000007, 2021-08-03T12:01:30Z',
        f"  {USERS}: skip",
        "    skip_unchanged: the document and its place would not change",
    ]


def test_cli_preview_dash_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a record on stdin
    stdin = io.TextIOWrapper(io.BytesIO((EVENTS / "remove.json").read_bytes()))
    monkeypatch.setattr("sys.stdin", stdin)
    # WHEN previewed from -
    code, out, _ = _preview(["-"], capsys, monkeypatch)
    # THEN it is read from there
    assert code == 0
    assert out[2] == "    deletes.on_remove: the item was deleted"


def test_cli_preview_control_characters_in_item_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an item whose key and values hold terminal escape sequences and invisible characters
    hostile_key = "a\x1b[2Jb"
    hostile = "evil\x1b]0;pwned\x07\u202egnp.exe\x85\u2028"

    def poison(record: dict[str, Any]) -> None:
        record["dynamodb"]["Keys"]["UserId"] = {"S": hostile_key}
        record["dynamodb"]["NewImage"]["UserId"] = {"S": hostile_key}
        record["dynamodb"]["NewImage"]["Username"] = {"S": hostile}

    event = _event(tmp_path, "insert", edit=poison)
    # WHEN previewed as text and as JSON
    code, out, _ = _preview([event], capsys, monkeypatch)
    json_code, json_out, _ = _preview([event, "--json"], capsys, monkeypatch)
    # THEN no control or invisible character reaches the output raw, and the JSON still means the value
    assert code == json_code == 0
    assert out == [
        'record 1: INSERT Users {"UserId":"a\\u001b[2Jb"}, seq 111100000000000000000001, '
        "2021-08-03T12:01:20Z",
        f"  {USERS}: index users/a\\x1b[2Jb, version 1627992080000",
        "    {",
        '      "UserId": "a\\u001b[2Jb",',
        '      "username": "evil\\u001b]0;pwned\\u0007\\u202egnp.exe\\x85\\u2028",',
        '      "email": "john.doe@example.com"',
        "    }",
    ]
    assert all(character.isprintable() for character in "".join(json_out))
    assert json.loads(json_out[0])["steps"][0]["document"]["username"] == hostile


@pytest.mark.parametrize(
    ("content", "argv", "message"),
    [
        pytest.param(
            b'{"Records": [',
            [],
            "preview: {path} is not JSON: Expecting value: line 1 column 14 (char 13)",
            id="not-json",
        ),
        pytest.param(
            b'{"eventName": "INSERT"}',
            [],
            'preview: {path}: expected a Lambda DynamoDB stream event ({{"Records": [...]}}), one stream '
            "record, a list of records or a GetRecords response; found a JSON object with keys eventName",
            id="no-shape",
        ),
        pytest.param(
            b'{"Records": {}}',
            [],
            "preview: {path}: Records is a JSON object with keys none, not a list of records",
            id="records-object",
        ),
        pytest.param(
            b'{"Records": []}',
            [],
            "preview: {path}: Records is empty: there is nothing to preview",
            id="empty",
        ),
        pytest.param(
            b'{"Records": ["x"]}',
            [],
            "preview: {path}: record 1 is a JSON string, not a stream record",
            id="record-string",
        ),
        pytest.param(
            b"[]",
            ["--key", "UserId=1"],
            "preview: give EVENT.json or --table T --key Name=Value, not both",
            id="both",
        ),
    ],
)
def test_cli_preview_malformed_input_exits_2_with_one_line(
    content: bytes,
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a file that is not stream records, or arguments that contradict each other
    path = tmp_path / "event.json"
    path.write_bytes(content)
    # WHEN previewed
    code, out, err = _preview([str(path), *argv], capsys, monkeypatch)
    # THEN one line says what is wrong, nothing is printed on stdout, exit 2
    assert (code, out) == (2, [])
    assert err == ["cdcsync: " + message.format(path=path)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["missing.json"], "preview: cannot read missing.json: No such file or directory", id="no-file"
        ),
        pytest.param(
            [], "preview: give EVENT.json (- for stdin), or --table T --key Name=Value", id="nothing"
        ),
        pytest.param(
            ["--key", "UserId=1"],
            "preview: give EVENT.json (- for stdin), or --table T --key Name=Value",
            id="no-table",
        ),
    ],
)
def test_cli_preview_missing_input_exits_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = _preview(argv, capsys, monkeypatch)
    assert (code, out, err) == (2, [], [f"cdcsync: {message}"])
