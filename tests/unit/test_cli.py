"""The command line: validate, filters and dlq show (exit codes, output lines)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cdcsync
from cdcsync.dlq import DeadLetter, DeadLetterError
from cdcsync.dlq.file import FileDeadLetterQueue
from cdcsync.entrypoints.cli import main
from cdcsync.errors import (
    ConfigError,
    FatalError,
    MappingError,
    MappingProblem,
    PlanError,
    SettingsError,
    TransientError,
)

ROOT = Path(__file__).parents[2]


def test_cli_validate_shipped_mappings_prints_one_line_per_mapping(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # WHEN the shipped examples are validated
    code = main(["validate", str(ROOT / "mappings")])
    out = capsys.readouterr().out.splitlines()
    # THEN it exits 0 with a readable summary per mapping
    assert code == 0
    app, users = ROOT / "mappings" / "app-single-table.yaml", ROOT / "mappings" / "users.yaml"
    assert out == [
        f"{app}:4: App -> app-users: id {{PK}}; no filter (every record); where on PK, SK; "
        "fields: all, 4 excluded, 2 renamed; version stream",
        f"{app}:14: App -> app-orders-{{Region}}: id {{PK}}|{{SK}}; routing {{PK}}; filter on eventName; "
        "where on SK; fields: 7 included, 1 computed; deletes: TTL expiries ignored; version stream",
        f"{users}:2: Users -> users: id {{UserId}}; no filter (every record); where on Status; "
        "fields: 6 included, 1 excluded, 2 renamed; skip_unchanged; version stream",
    ]


def test_cli_validate_configmap_mount_lists_each_mapping_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the shipped mappings mounted from a Kubernetes ConfigMap (as deploy/kubernetes does)
    root = tmp_path / "mappings"
    stamp = root / "..2026_11_28_10_00_00.123"
    stamp.mkdir(parents=True)
    for file in sorted((ROOT / "mappings").iterdir()):
        (stamp / file.name).write_bytes(file.read_bytes())
        (root / file.name).symlink_to(f"..data/{file.name}")
    (root / "..data").symlink_to(stamp.name)
    # WHEN validated
    code = main(["validate", str(root)])
    out = capsys.readouterr().out.splitlines()
    # THEN each mapping is listed once, under the mounted name
    assert code == 0
    assert len(out) == 3, out
    assert all(line.startswith(f"{root}/") and "..data" not in line and "..2026" not in line for line in out)


def test_cli_validate_broken_mapping_lists_every_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a file with two structural problems and another with a bad index name
    path = tmp_path / "bad.yaml"
    path.write_text("table: Users\nindex: users\nskip_unchanged: 'no'\nfields:\n  rename:\n    Email: [a]\n")
    other = tmp_path / "other.yaml"
    other.write_text("table: Orders\nindex: Orders\n")
    # WHEN the folder is validated
    code = main(["validate", str(tmp_path)])
    err = capsys.readouterr().err.splitlines()
    # THEN every problem is printed as file:line: message, in line order, then a count
    assert code == 1
    assert err == [
        f"{path}:3: skip_unchanged: expected true or false, got a string",
        f"{path}:6: fields.rename.Email: expected a string, got a list",
        f'{other}:2: index: "Orders" is not a valid OpenSearch index name: must be lowercase',
        f"3 problems in {tmp_path}",
    ]


def test_cli_validate_uses_cdcsync_mappings_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.yaml").write_text("table: T\nindex: t\n")
    monkeypatch.setenv("CDCSYNC_MAPPINGS", str(tmp_path))
    assert main(["validate"]) == 0
    assert "T -> t" in capsys.readouterr().out


def test_cli_filters_prints_seed_modify_only_criteria(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the seed blog's use case: only MODIFY events should invoke the function
    path = tmp_path / "users.yaml"
    path.write_text("table: Users\nindex: users\nfilter:\n  eventName: [MODIFY]\n")
    # WHEN the FilterCriteria are printed
    code = main(["filters", "--table", "Users", "--mappings", str(path)])
    # THEN they are the event source mapping's JSON
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"Filters": [{"Pattern": '{"eventName":["MODIFY"]}'}]}


def test_cli_filters_unknown_table_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("table: Users\nindex: users\n")
    assert main(["filters", "--table", "Orders", "--mappings", str(path)]) == 2
    assert capsys.readouterr().err == "no mapping for table Orders (tables with mappings: Users)\n"


def test_cli_filters_mapping_without_filter_prints_nothing_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two mappings of one table, one of which needs every record
    path = tmp_path / "users.yaml"
    path.write_text(
        "table: Users\nindex: users\nfilter: {eventName: [MODIFY]}\n---\ntable: Users\nindex: all\n"
    )
    # WHEN the FilterCriteria are asked for
    code = main(["filters", "--table", "Users", "--mappings", str(path)])
    out, err = capsys.readouterr()
    # THEN nothing is printed to pass on, and the warning names the mapping by file and line
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"warning: Mapping {path}:5 of table Users has no filter (every record), so no FilterCriteria is "
        "exported and Lambda delivers every record; that is right for a mapping that selects items with "
        "where, which needs every REMOVE and MODIFY to delete what leaves it; give a mapping a filter "
        "only for records it never needs."
    ]


_KEEP = (
    "; express membership with where, which deletes an item that stops matching, and filter only records "
    "this mapping never needs"
)
TRAP_REMOVES = f"filter: can skip REMOVE records (a deleted item's document stays in the index){_KEEP}"
TRAP = (
    "filter: can skip REMOVE records (a deleted item's document stays in the index) and MODIFY records "
    f"(the document keeps the item's old values){_KEEP}"
)


def test_cli_validate_docs_old_filter_example_warns_of_the_filter_trap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the filter docs/mappings.md used to show: membership by a filter on the new image
    path = tmp_path / "orders.yaml"
    path.write_text(
        "table: Orders\nindex: orders\nfilter:\n  eventName: [INSERT, MODIFY]\n"
        "  dynamodb:\n    NewImage:\n      Status: {S: [{anything-but: [draft]}]}\n"
    )
    # WHEN validated
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    # THEN it is valid, and the warning says what stays in the index and what to use instead
    assert code == 0
    assert out.splitlines() == [
        f"{path}:1: Orders -> orders: id <key values joined by |>; filter on eventName, "
        "dynamodb.NewImage.Status.S; no where (every item); fields: whole item; version stream"
    ]
    assert err.splitlines() == [f"{path}:3: warning: {TRAP}"]


def test_cli_validate_size_bytes_filter_warns_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a mapping whose filter names dynamodb.SizeBytes
    path = tmp_path / "m.yaml"
    path.write_text("table: T\nindex: t\nfilter: {dynamodb: {SizeBytes: [{numeric: ['<', 4000]}]}}\n")
    # WHEN validated THEN it is valid, and the operator is told what synthetic records estimate
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:3: warning: {TRAP}",
        f"warning: {path}:1: filter names dynamodb.SizeBytes: backfill, verify, redrive and repair "
        "compute it from the item with DynamoDB's documented size rules, which estimate numbers; an item "
        "within a few bytes of the threshold may be judged differently from Lambda",
    ]


POSTS = (
    'table: Posts\nindex: "posts-{Category}"\n'
    "filter:\n  dynamodb:\n    NewImage:\n      Status: {S: [published]}\n"
)


@pytest.mark.parametrize(
    ("extra", "warning"),
    [
        (
            "skip_unchanged: true\n",
            "warning: filter: an OldImage is trusted to be what the index holds only if the filter would "
            "have passed the record that wrote it (as an INSERT and as a MODIFY); for the others, "
            "skip_unchanged writes; a document is deleted where the OldImage puts it, but a copy stays where "
            "an older state put it if the item moved in records the filter skipped (counted in "
            "cdcsync_unknown_location_writes_total)",
        ),
        (
            'id: "{PostId}"\n',
            "warning: filter: an OldImage is trusted to be what the index holds only if the filter would "
            "have passed the record that wrote it (as an INSERT and as a MODIFY); for the others, "
            "a document is deleted where the OldImage puts it, but a copy stays where an older state put it "
            "if the item moved in records the filter skipped (counted in "
            "cdcsync_unknown_location_writes_total)",
        ),
    ],
    ids=["skip-unchanged", "templated-index"],
)
def test_cli_validate_filter_meeting_old_image_rules_warns_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, warning: str
) -> None:
    # GIVEN a valid mapping whose filter meets skip_unchanged or a templated index
    path = tmp_path / "posts.yaml"
    path.write_text(POSTS + extra)
    # WHEN validated
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    # THEN it is valid, and warnings on the filter's line say what the filter costs
    assert code == 0
    assert captured.err.splitlines() == [f"{path}:3: warning: {TRAP}", f"{path}:3: {warning}"]
    assert len(captured.out.splitlines()) == 1


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ("filter: {eventName: [INSERT, MODIFY, REMOVE]}\n", []),
        (
            "filter: {eventName: [MODIFY]}\n",
            [TRAP_REMOVES,
             "filter: skips INSERT or MODIFY records, and either may have written an OldImage, so no "
             "OldImage is trusted to be what the index holds: skip_unchanged never skips"],
        ),
        (
            "filter: {dynamodb: {OldImage: {Status: {S: [published]}}}}\n",
            [TRAP,
             "filter: names what the record that wrote an OldImage need not share (its OldImage, time, "
             "size or id), so no OldImage is trusted to be what the index holds: skip_unchanged never skips"],
        ),
    ],
    ids=["insert-and-modify", "modify-only", "names-old-image"],
)  # fmt: skip
def test_cli_validate_filter_decided_once_warns_only_when_it_never_trusts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], filter_text: str, expected: list[str]
) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("table: Users\nindex: users\nskip_unchanged: true\n" + filter_text)
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().err.splitlines() == [f"{path}:4: warning: {line}" for line in expected]


def test_cli_bug_prints_one_line_and_exits_1_traceback_only_with_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a command that fails on a bug (not a cdcsync error)
    def broken(_args: object) -> int:
        raise KeyError("Items")

    monkeypatch.setattr("cdcsync.entrypoints.cli._filters", broken)
    # WHEN it runs THEN one line says it is a bug and how to get the traceback
    assert main(["filters", "--table", "T"]) == 1
    assert capsys.readouterr().err == (
        "cdcsync: unexpected KeyError: 'Items' (a bug in cdcsync; run again with --debug for the traceback "
        "and report it)\n"
    )
    # AND with --debug the traceback comes first
    assert main(["--debug", "filters", "--table", "T"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith(
        "KeyError: 'Items'\ncdcsync: unexpected KeyError: 'Items' (a bug in cdcsync; run again with --debug "
        "for the traceback and report it)\n"
    )


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (ConfigError("CDCSYNC_X: wrong"), 2, "cdcsync: CDCSYNC_X: wrong"),
        (
            TransientError("OpenSearch busy"),
            1,
            "cdcsync: OpenSearch busy (nothing was lost; run the command again)",
        ),
        (FatalError("stopped; run again with --resume"), 1, "cdcsync: stopped; run again with --resume"),
        (PlanError("no attribute Pk"), 1, "cdcsync: no attribute Pk"),
        (KeyboardInterrupt(), 130, "cdcsync: interrupted"),
    ],
)
def test_cli_error_family_one_line_and_the_promised_exit_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: BaseException,
    code: int,
    line: str,
) -> None:
    def failing(_args: object) -> int:
        raise error

    monkeypatch.setattr("cdcsync.entrypoints.cli._filters", failing)
    assert main(["filters", "--table", "T"]) == code
    assert capsys.readouterr().err == f"{line}\n"


def test_cli_version_prints_installed_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN asked for its version
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    # THEN it prints the installed package's version, which is the one the code declares
    assert done.value.code == 0
    assert capsys.readouterr().out == f"cdcsync {importlib.metadata.version('cdcsync')}\n"
    assert importlib.metadata.version("cdcsync") == cdcsync.__version__


# --- untrusted text ----------------------------------------------------------------------------

# What an attacker who can write an item puts in it: clear the screen, home the cursor, print a
# reassuring line of their own; then C1 CSI, DEL and a right-to-left override.
FORGED = "\x1b[2J\x1b[H2026-11-28T12:00:00Z all dead letters redriven OK\n"
FORGED_SHOWN = "\\x1b[2J\\x1b[H2026-11-28T12:00:00Z all dead letters redriven OK\\n"
HOSTILE_ID = "u\x1b[2J1\x9b\x7f\u202e"


def test_cli_dlq_show_control_characters_from_items_are_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a dead letter whose key, id and reason (OpenSearch quotes the value) carry terminal escapes
    at = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    reason = f"failed to parse field [Age] of type [long]. Preview of field's value: '{FORGED}'"
    letter = DeadLetter(
        record={"dynamodb": {"Keys": {"UserId": {"S": HOSTILE_ID}}, "NewImage": {"Age": {"S": FORGED}}}},
        table="Users",
        keys={"UserId": {"S": HOSTILE_ID}},
        sequence_number="111",
        index="users",
        id=HOSTILE_ID,
        error=DeadLetterError(status=400, type="mapper_parsing_exception", reason=reason),
        attempts=1,
        first_failure_at=at,
        last_failure_at=at,
    )
    FileDeadLetterQueue(tmp_path / "dlq.jsonl").send([letter])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDCSYNC_DLQ", f"file://{tmp_path / 'dlq.jsonl'}")
    # WHEN the operator lists the dead letters, as text and as JSON
    assert main(["dlq", "show"]) == 0
    text = capsys.readouterr().out
    assert main(["dlq", "show", "--json"]) == 0
    json_out = capsys.readouterr().out
    # THEN the text is one line with every non-printable character escaped
    assert text.splitlines() == [
        '2024-05-01T12:30:00Z Users {"UserId":{"S":"u\\u001b[2J1\\x9b\\x7f\\u202e"}} seq 111 '
        "-> users/u\\x1b[2J1\\x9b\\x7f\\u202e: mapper_parsing_exception: failed to parse field [Age] of type "
        f"[long]. Preview of field's value: '{FORGED_SHOWN}' (attempts 1)"
    ]
    # AND the JSON holds no raw control or invisible character, yet reads back as the same letter
    (line,) = json_out.splitlines()
    assert all(character.isprintable() for character in line)
    assert DeadLetter.model_validate_json(line) == letter


BILLION_LAUGHS = (
    "a: &a ["
    + ",".join(['"lol"'] * 9)
    + "]\n"
    + "".join(
        f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
)

# Fifteen anchors, each 90 levels of lists around an alias of the one before: under the alias
# budget (about 9,500 repeated nodes), but 1,350 levels deep once expanded.
CHAINED_ALIASES = (
    "a0: &a0 "
    + "[" * 90
    + "]" * 90
    + "\n"
    + "".join(
        f"a{level}: &a{level} " + "[" * 90 + f"*a{level - 1}" + "]" * 90 + "\n" for level in range(1, 15)
    )
)


def _validate_subprocess(path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """``cdcsync validate PATH`` in its own process: a regression fails the test, never hangs the suite."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cdcsync.entrypoints.cli", "validate", str(path)],
        env={**os.environ, "CDCSYNC_MAPPINGS": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(
            BILLION_LAUGHS,
            "{path}:5: invalid YAML: alias *d takes the nodes aliases repeat in this document past 10000; "
            "write the values out instead of nesting aliases",
            id="billion-laughs",
        ),
        pytest.param(
            "mappings:\n  - &m {table: T, index: i, extra: [*m]}\n",
            "{path}:2: invalid YAML: alias *m refers to a node that contains it, which never ends when "
            "expanded; remove the alias",
            id="recursive-alias",
        ),
        pytest.param(
            "table: T\nindex: i\nfields: &f\n  rename: {a: b}\n  <<: *f\n",
            "{path}:5: invalid YAML: alias *f refers to a node that contains it, which never ends when "
            "expanded; remove the alias",
            id="recursive-merge-key",
        ),
        pytest.param(
            "table: T\nindex: i\nindex_body:\n  " + "[" * 2000 + "]" * 2000 + "\n",
            "{path}:4: invalid YAML: nested deeper than 100 levels; a mapping never needs that many",
            id="deep-nesting",
        ),
        pytest.param(
            CHAINED_ALIASES,
            "{path}:2: invalid YAML: alias *a0 nests its node 181 levels deep when expanded, past 100; "
            "a mapping never needs that many",
            id="chained-aliases",
        ),
    ],
)
def test_cli_validate_hostile_yaml_exits_1_with_file_line_in_bounded_time(
    tmp_path: Path, text: str, line: str
) -> None:
    # GIVEN a small mapping file built to exhaust memory, time or the stack
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    # WHEN validated
    done, seconds = _validate_subprocess(path)
    # THEN it is refused with one file:line problem, quickly
    assert done.stderr == f"{line.format(path=path)}\n1 problem in {path}\n"
    assert (done.returncode, done.stdout) == (1, "")
    assert seconds < 30  # a few hundred milliseconds here; 12.7 s before


# --- secrets ---------------------------------------------------------------------------------------

API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw"  # a fake, to look for


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_cli_api_key_with_line_break_exits_2_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], debug: list[str]
) -> None:
    # GIVEN an API key pasted with base64's line break (nothing listens on port 9: no request may be sent)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_ALLOW_INSECURE", "true")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_AUTH", "apikey")
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_API_KEY", f"{API_KEY}\n==")
    monkeypatch.setenv("CDCSYNC_TARGET", "opensearch")
    monkeypatch.setenv("CDCSYNC_MAPPINGS", str(ROOT / "mappings"))
    # WHEN a command that talks to OpenSearch runs
    code = main([*debug, "indices", "apply"])
    out, err = capsys.readouterr()
    # THEN it stops as a configuration error (exit 2) with one line, the key nowhere in the output
    assert code == 2
    assert err.splitlines()[-1] == (
        "cdcsync: CDCSYNC_OPENSEARCH_API_KEY: expected the API key on one line in visible ASCII (the encoded "
        "value, or ID:KEY), got a hidden value with a line break inside; join the key onto one line"
    )
    assert len(err.splitlines()) == 1 or debug
    for part in (API_KEY[:12], API_KEY[20:32], API_KEY[-12:]):
        assert part not in out + err


# --- untrusted text in the error line ----------------------------------------------------------------


def test_cli_dlq_show_letter_with_hostile_extra_key_prints_one_escaped_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a stored letter with an extra key that clears the screen and forges a line (anyone who can
    # send to the queue can write one)
    at = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    letter = DeadLetter(
        record={},
        table="Users",
        keys={"UserId": {"S": "u1"}},
        sequence_number="111",
        error=DeadLetterError(status=400, type="mapper_parsing_exception", reason="bad"),
        attempts=1,
        first_failure_at=at,
        last_failure_at=at,
    )
    hostile = {**json.loads(letter.to_json()), FORGED: 1}
    (tmp_path / "dlq.jsonl").write_text(json.dumps(hostile) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDCSYNC_DLQ", f"file://{tmp_path / 'dlq.jsonl'}")
    # WHEN the operator lists the dead letters
    code = main(["dlq", "show"])
    # THEN the error is one line with the key's control characters escaped
    assert code == 1
    assert capsys.readouterr().err == (
        f"cdcsync: {tmp_path / 'dlq.jsonl'}:1: not a dead letter ({FORGED_SHOWN}: Extra inputs are not "
        "permitted); fix or delete this entry, then read again\n"
    )


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (FatalError(f"stopped on {FORGED}"), f"cdcsync: stopped on {FORGED_SHOWN}"),
        (
            TransientError(f"busy {FORGED}"),
            f"cdcsync: busy {FORGED_SHOWN} (nothing was lost; run the command again)",
        ),
        (
            ValueError(FORGED),
            f"cdcsync: unexpected ValueError: {FORGED_SHOWN} (a bug in cdcsync; run "
            "again with --debug for the traceback and report it)",
        ),
        (
            # several settings problems: one line each, each escaped (settings escape their values)
            SettingsError("CDCSYNC_X: expected a, got \x1b[8m\nCDCSYNC_Y: expected b, got \x9b"),
            "cdcsync: CDCSYNC_X: expected a, got \\x1b[8m\nCDCSYNC_Y: expected b, got \\x9b",
        ),
        (
            MappingError([MappingProblem("m.yaml", 3, f"bad {FORGED}"), MappingProblem("m.yaml", 4, "x")]),
            f"cdcsync: m.yaml:3: bad {FORGED_SHOWN}\nm.yaml:4: x",
        ),
    ],
)
@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_cli_error_with_control_characters_prints_them_escaped(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    line: str,
    debug: list[str],
) -> None:
    # GIVEN a command failing with a message that quotes hostile text
    def failing(_args: object) -> int:
        raise error

    monkeypatch.setattr("cdcsync.entrypoints.cli._filters", failing)
    # WHEN it runs (with or without --debug)
    main([*debug, "filters", "--table", "T"])
    err = capsys.readouterr().err
    # THEN the error line is the message with every control character escaped, and nothing raw is shown
    assert err.endswith(f"\n{line}\n" if debug else f"{line}\n")
    assert err == f"{line}\n" or debug
    assert all(shown.isprintable() for shown in err.splitlines())
    if debug:
        assert err.startswith("Traceback (most recent call last):\n")
