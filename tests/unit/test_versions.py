"""External versions: units, monotonicity, and the backfill margin."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdcsync.errors import PlanError
from cdcsync.versions import attribute_version, backfill_version, epoch_ms, stream_version

# 2001 .. 2100 in epoch seconds: every realistic ApproximateCreationDateTime.
SECONDS = st.integers(min_value=1_000_000_000, max_value=4_102_444_800)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1627992080, 1627992080000),  # Lambda event: whole seconds
        (1627992080.0, 1627992080000),
        (1627992080.123, 1627992080123),  # exact, not 1627992080122
        (Decimal("1627992080.5"), 1627992080500),
        ("1627992080", 1627992080000),
        (1627992080123, 1627992080123),  # Kinesis: milliseconds
        (1627992080123456, 1627992080123),  # Kinesis: microseconds (rounded to ms)
        (dt.datetime(2021, 8, 3, 12, 1, 20, 250000, tzinfo=dt.UTC), 1627992080250),  # GetRecords
        (dt.datetime(2021, 8, 3, 12, 1, 20), 1627992080000),  # naive: taken as UTC
    ],
)
def test_epoch_ms_detects_unit(value: Any, expected: int) -> None:
    assert epoch_ms(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "ApproximateCreationDateTime: expected a number, got 'soon'"),
        (True, "ApproximateCreationDateTime: expected a number or a datetime, got True"),
        (None, "ApproximateCreationDateTime: expected a number or a datetime, got None"),
        (-1, "ApproximateCreationDateTime: expected a time after 1970, got -1"),
    ],
)
def test_epoch_ms_bad_value_raises_plan_error(value: Any, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        epoch_ms(value)
    assert str(caught.value) == message


@given(SECONDS, st.integers(min_value=0, max_value=999))
def test_epoch_ms_same_instant_in_every_unit_agrees(seconds: int, millis: int) -> None:
    ms = seconds * 1000 + millis
    instant = dt.datetime.fromtimestamp(seconds, tz=dt.UTC) + dt.timedelta(milliseconds=millis)
    assert epoch_ms(ms) == epoch_ms(ms * 1000) == epoch_ms(instant) == epoch_ms(Decimal(ms) / 1000) == ms


@given(SECONDS, SECONDS)
def test_stream_version_is_monotonic_in_time(a: int, b: int) -> None:
    # Later records never get lower versions, whatever unit each arrives in.
    low, high = sorted((a, b))
    assert stream_version(low) <= stream_version(high * 1000) <= stream_version(high * 1_000_000)


@given(
    st.integers(min_value=1_000_000_000_000, max_value=4_102_444_800_000),
    st.integers(min_value=-4999, max_value=10**12),
)
def test_backfill_version_is_below_every_record_after_the_margin(scan_start_ms: int, offset: int) -> None:
    # A stream record created after (scan start - 5 s) always outranks the backfill copy.
    record_ms = scan_start_ms + offset
    assert backfill_version(scan_start_ms) < stream_version(record_ms)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({}, "version: attribute:V: the item has no V attribute"),
        ({"V": "3"}, "version: attribute:V: expected a whole number from 0 to 2^63-1, got '3'"),
        ({"V": 1.5}, "version: attribute:V: expected a whole number from 0 to 2^63-1, got 1.5"),
        ({"V": -1}, "version: attribute:V: expected a whole number from 0 to 2^63-1, got -1"),
        ({"V": 2**63}, f"version: attribute:V: expected a whole number from 0 to 2^63-1, got {2**63}"),
    ],
)
def test_attribute_version_bad_value_raises_plan_error(item: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError) as caught:
        attribute_version(item, "V")
    assert str(caught.value) == message


def test_attribute_version_reads_whole_number() -> None:
    assert attribute_version({"V": 42}, "V") == 42
