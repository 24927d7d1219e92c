"""log_repeats: alike warnings while one cause lasts are logged once per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from cdcsync.log_repeats import RepeatedLines, collapsed


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_repeated_lines_alike_within_interval_logged_once_then_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a logger whose alike lines are collapsed over 30 s
    clock = Clock()
    log = logging.getLogger("cdcsync.test.repeats")
    repeats = RepeatedLines(30.0, clock)
    log.addFilter(repeats)
    try:
        with caplog.at_level(logging.WARNING, logger="cdcsync.test.repeats"):
            # WHEN the same failure is logged for requests of different sizes, and another failure too
            for size in (1, 3, 1, 2):
                log.warning("bulk request of %d actions failed, will retry: %s", size, "connection refused")
                clock.now += 5
            log.warning("bulk request of %d actions failed, will retry: %s", 1, "503 unavailable")
            clock.now += 30
            log.warning("bulk request of %d actions failed, will retry: %s", 4, "connection refused")
    finally:
        log.removeFilter(repeats)
    # THEN each kind is logged once, and the next after the interval says how many were left out
    assert caplog.messages == [
        "bulk request of 1 actions failed, will retry: connection refused",
        "bulk request of 1 actions failed, will retry: 503 unavailable",
        "bulk request of 4 actions failed, will retry: connection refused "
        "(and 3 more like it in the last 50 s)",
    ]


def test_collapsed_filter_ends_with_the_block(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("cdcsync.test.collapsed")
    with caplog.at_level(logging.WARNING, logger="cdcsync.test.collapsed"):
        with collapsed("cdcsync.test.collapsed"):
            log.warning("down")
            log.warning("down")
        log.warning("down")
    assert caplog.messages == ["down", "down"]
