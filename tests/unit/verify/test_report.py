"""The operator's view of a verify run: summary lines and exit codes."""

from __future__ import annotations

import pytest

from cdcsync.verify.compare import Drift
from cdcsync.verify.report import VerifyReport
from tests.support.records import compiled

MAPPING = compiled(table="Users", index="users")


def drifts(kind: str, count: int) -> list[Drift]:
    return [Drift(kind, "users", str(n), None, MAPPING) for n in range(count)]  # type: ignore[arg-type]


def test_report_lists_first_ids_of_each_kind() -> None:
    # GIVEN 7 missing and 1 extra document in a checked table of 10 items
    report = VerifyReport(table="Users", checked=10)
    report.record(
        [*drifts("missing", 7), Drift("extra", "users", "x", None, MAPPING, "item not in the table")]
    )
    # WHEN the report is printed THEN the summary and the first five ids show
    assert report.lines() == [
        "checked 10 items: 7 missing, 0 stale, 1 extra",
        "missing: users/0, users/1, users/2, users/3, users/4 (and 2 more)",
        "extra: users/x (item not in the table)",
    ]


@pytest.mark.parametrize(
    ("repairing", "found", "problems", "unrepairable", "code"),
    [
        (False, 0, 0, 0, 0),
        (False, 1, 0, 0, 1),
        (False, 0, 1, 0, 1),
        (True, 3, 0, 0, 0),
        (True, 3, 1, 0, 1),
        (True, 1, 0, 1, 1),
    ],
)
def test_report_exit_code(repairing: bool, found: int, problems: int, unrepairable: int, code: int) -> None:
    # GIVEN a run with drift, problems (failed repairs) and undeletable extras
    report = VerifyReport(table="Users", repairing=repairing)
    report.record(drifts("stale", found))
    for n in range(problems):
        report.failed(f"repair of users/{n}: rejected")
    report.unrepairable = unrepairable
    # WHEN the exit code is asked THEN drift fails a check; with repair only what is left fails
    assert report.exit_code == code


def test_report_sample_and_repair_lines() -> None:
    report = VerifyReport(table="Users", sample=3, repairing=True, checked=3)
    report.repair["written"] = 2
    report.failed("repair of users/9: rejected: mapper_parsing_exception")
    assert report.lines() == [
        "checked 3 items (random sample; extra documents not looked for): 0 missing, 0 stale",
        "problem: repair of users/9: rejected: mapper_parsing_exception",
        "repaired: 2 written, 0 deleted, 0 superseded by newer changes, 0 gone since the scan, "
        "1 failed, 0 extra not deletable",
    ]
