"""The pieces of the export age check that need no server: time values, durations, flag use."""

from __future__ import annotations

import pytest

from cdcsync.backfill import run_backfill
from cdcsync.backfill.export_age import duration
from cdcsync.errors import ConfigError
from cdcsync.settings import load_settings
from cdcsync.sink.indices import time_value_seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("60s", 60.0), ("24h", 86400.0), ("7d", 604800.0), ("500ms", 0.5), ("1.5m", 90.0), (" 2h ", 7200.0),
     ("-1", None), ("forever", None), ("60", None), ("", None)],
)  # fmt: skip
def test_time_value_seconds_reads_opensearch_time_values(value: str, seconds: float | None) -> None:
    assert time_value_seconds(value) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-5, "0s"), (59.6, "1m"), (120, "2m"), (3 * 3600 + 59, "3h"), (3725, "1h 2m"),
     (25 * 3600, "1d 1h"), (90061, "1d 1h")],
)  # fmt: skip
def test_duration_shows_the_two_largest_units(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_backfill_allow_old_export_without_export_is_a_config_error() -> None:
    # GIVEN --allow-old-export without --from-export WHEN the backfill starts THEN it is refused first
    with pytest.raises(ConfigError) as caught:
        run_backfill(load_settings(_env_file=None), "Users", allow_old_export=True)
    assert str(caught.value) == "--allow-old-export: only meaningful with --from-export s3://BUCKET/PREFIX"
