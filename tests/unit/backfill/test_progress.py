"""The progress line on a terminal and as log lines (no sockets)."""

from __future__ import annotations

import io
import logging

import pytest

from cdcsync.backfill.progress import Progress, describe_progress


@pytest.mark.parametrize(
    ("items", "total", "seconds", "dead", "expected"),
    [
        (
            12_345,
            100_000,
            3.0,
            0,
            "backfill of Users: 12,345 of ~100,000 items (12%), 4,115 items/s, ETA 0:00:21, 0 dead letters",
        ),
        (
            120,
            100,
            2.0,
            1,
            "backfill of Users: 120 of ~100 items (99%), 60 items/s, ETA 0:00:00, 1 dead letter",
        ),
        (50, 0, 1.0, 2, "backfill of Users: 50 items, 50 items/s, 2 dead letters"),
        (0, 10, 0.0, 0, "backfill of Users: 0 of ~10 items (0%), 0 items/s, 0 dead letters"),
    ],
)
def test_describe_progress_counts_give_line(
    items: int, total: int, seconds: float, dead: int, expected: str
) -> None:
    # GIVEN counts WHEN described THEN the operator reads this line
    assert describe_progress("Users", items, total, seconds, dead) == expected


@pytest.mark.parametrize(("items", "total"), [(120, 100), (80, 100), (50, 0)])
def test_describe_progress_finished_says_100_percent_whatever_the_estimate(items: int, total: int) -> None:
    # GIVEN a finished backfill and DescribeTable's estimate (above, below or unknown)
    line = describe_progress("Users", items, total, 2.0, 1, finished=True)
    # THEN the line says 100%, with no ETA
    assert line == f"backfill of Users: {items} items (100%), {items // 2} items/s, 1 dead letter"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_terminal_rewrites_one_line() -> None:
    # GIVEN a terminal and a clock
    now = [0.0]
    out = Terminal()
    progress = Progress("Users", out, total=0, clock=lambda: now[0])
    # WHEN pages arrive faster and slower than the refresh interval
    now[0] = 0.1
    progress.add(10, 0)  # too soon: not shown
    now[0] = 1.0
    progress.add(10, 1)
    progress.close(finished=True)
    # THEN the line is redrawn in place, ends at 100% and is ended once
    assert out.getvalue() == (
        "\rbackfill of Users: 20 items, 20 items/s, 1 dead letter"
        "\rbackfill of Users: 20 items (100%), 20 items/s, 1 dead letter\n"
    )


def test_progress_not_on_terminal_logs_every_ten_seconds(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a pipe (not a terminal)
    now = [0.0]
    out = io.StringIO()
    progress = Progress("Users", out, total=100, clock=lambda: now[0])
    # WHEN pages arrive at 5 s and 10 s
    with caplog.at_level(logging.INFO, logger="cdcsync.backfill.progress"):
        now[0] = 5.0
        progress.add(10, 0)
        now[0] = 10.0
        progress.add(10, 0)
    # THEN one log line is written, nothing on the stream
    assert caplog.messages == [
        "backfill of Users: 20 of ~100 items (20%), 2 items/s, ETA 0:00:40, 0 dead letters"
    ]
    assert out.getvalue() == ""
