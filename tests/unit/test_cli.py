"""The command line: validate and filters (exit codes, output lines)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

import cdcsync
from cdcsync.entrypoints.cli import main

ROOT = Path(__file__).parents[2]


def test_cli_validate_shipped_mappings_prints_one_line_per_mapping(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # WHEN the shipped examples are validated
    code = main(["validate", str(ROOT / "mappings")])
    out = capsys.readouterr().out.splitlines()
    # THEN it exits 0 with a summary per mapping
    assert code == 0
    assert any(
        line.endswith("Users -> users (id {UserId}, filter no, where yes, fields 6 -1, version stream)")
        for line in out
    ), out
    assert len(out) == 3


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
    # THEN every problem is printed as file:line: message, then a count
    assert code == 1
    assert err == [
        f"{path}:6: fields.rename.Email: expected a string, got a list",
        f"{path}:3: skip_unchanged: expected true or false, got a string",
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
    assert err.startswith(
        f"warning: Mapping {path}:5 of table Users has no filter and needs every stream record"
    )


def test_cli_validate_size_bytes_filter_warns_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a mapping whose filter names dynamodb.SizeBytes
    path = tmp_path / "m.yaml"
    path.write_text("table: T\nindex: t\nfilter: {dynamodb: {SizeBytes: [{numeric: ['<', 4000]}]}}\n")
    # WHEN validated THEN it is valid, and the operator is told what synthetic records estimate
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {path}:1: filter names dynamodb.SizeBytes: backfill, verify, redrive and repair "
        "compute it from the item with DynamoDB's documented size rules, which estimate numbers; an item "
        "within a few bytes of the threshold may be judged differently from Lambda"
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
            "skip_unchanged writes; a document moved meanwhile stays in its old place (counted in "
            "cdcsync_unknown_location_writes_total) and a REMOVE is a dead letter (unknown_location)",
        ),
        (
            'id: "{PostId}"\n',
            "warning: filter: an OldImage is trusted to be what the index holds only if the filter would "
            "have passed the record that wrote it (as an INSERT and as a MODIFY); for the others, "
            "a document moved meanwhile stays in its old place (counted in "
            "cdcsync_unknown_location_writes_total) and a REMOVE is a dead letter (unknown_location)",
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
    # THEN it is valid, and a warning on the filter's line says what the filter costs
    assert code == 0
    assert captured.err.splitlines() == [f"{path}:3: {warning}"]
    assert len(captured.out.splitlines()) == 1


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ("filter: {eventName: [INSERT, MODIFY, REMOVE]}\n", []),
        (
            "filter: {eventName: [MODIFY]}\n",
            ["filter: skips INSERT or MODIFY records, and either may have written an OldImage, so no "
             "OldImage is trusted to be what the index holds: skip_unchanged never skips"],
        ),
        (
            "filter: {dynamodb: {OldImage: {Status: {S: [published]}}}}\n",
            ["filter: names what the record that wrote an OldImage need not share (its OldImage, time, "
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


def test_cli_version_prints_installed_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN asked for its version
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    # THEN it prints the installed package's version, which is the one the code declares
    assert done.value.code == 0
    assert capsys.readouterr().out == f"cdcsync {importlib.metadata.version('cdcsync')}\n"
    assert importlib.metadata.version("cdcsync") == cdcsync.__version__
