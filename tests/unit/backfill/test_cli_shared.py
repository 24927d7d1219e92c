"""``cdcsync backfill --run-id / --workers / --status``: arguments refused with one line, and the status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdcsync.backfill.units import UnitClaims
from cdcsync.checkpoint.file import FileLeaseStore
from cdcsync.entrypoints.cli import main

ROOT = Path(__file__).parents[3]


@pytest.fixture
def checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "checkpoints.json"
    monkeypatch.setenv("CDCSYNC_CHECKPOINTS", f"file://{path}")
    monkeypatch.setenv("CDCSYNC_MAPPINGS", str(ROOT / "mappings"))
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", "http://127.0.0.1:9")
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--table", "Users", "--workers", "2"],
         "--workers: only meaningful with --run-id (without it every segment runs at once)"),
        (["--table", "Users", "--run-id", "r1", "--resume"],
         "--resume: not with --run-id; joining run r1 again continues it"),
        (["--table", "Users", "--run-id", "a b"],
         '--run-id: expected 1 to 100 letters, digits, "-", "_" or ".", got "a b"'),
        (["--table", "Users", "--run-id", "r1", "--workers", "0"],
         "--workers: expected a whole number from 1 to 256, got 0"),
        (["--table", "Users", "--page-items", "0"],
         "--page-items: expected a whole number from 1 to 10000, got 0"),
        (["--run-id", "r1"], "backfill: --table is required (only --status --run-id ID can do without it)"),
        (["--status"], "backfill --status: name the run with --run-id ID"),
        (["--status", "--run-id", "nope"],
         "backfill --status: no backfill run nope in file://{path} (check --run-id and CDCSYNC_CHECKPOINTS)"),
    ],
)  # fmt: skip
def test_cli_backfill_shared_run_bad_arguments_exit_2_with_one_line(
    checkpoints: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["backfill", *args])
    assert code == 2
    assert capsys.readouterr().err == f"cdcsync: {message.format(path=checkpoints)}\n"


def test_cli_backfill_status_prints_the_run_and_its_json(
    checkpoints: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run of 2 segments, one claimed by a process with 40 items written
    claims = UnitClaims(FileLeaseStore(checkpoints, worker_id="x"), "r1", worker_id="backfill-h-1")
    run = {"table": "Users", "kind": "scan", "units": 2, "version_ms": 7, "started_ms": 0, "item_count": 0}
    claims.join(run)
    claim = claims.claim()
    assert claim is not None
    claims.save(claim, {"next_key": {"UserId": {"N": "4"}}}, 40, done=False)
    # WHEN its status is asked for, as text and as JSON
    assert main(["backfill", "--status", "--run-id", "r1"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert main(["backfill", "--status", "--run-id", "r1", "--table", "Users", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    # THEN both say 0 done, 1 in progress (its owner), 1 remaining, 40 items
    assert text[0] == (
        "backfill run r1 of table Users (2 segments, version 7, started 1970-01-01T00:00:00.000+00:00): "
        "0 done, 1 in progress, 1 remaining"
    )
    assert text[1].startswith(f"  unit {claim.unit.number}: backfill-h-1, claimed ")
    assert text[2].startswith("40 items, ")
    assert (status["done"], status["remaining"], status["items"], status["finished"]) == (0, 1, 40, False)
    assert [unit["owner"] for unit in status["in_progress"]] == ["backfill-h-1"]
