"""External document versions: why a stale write is a no-op and never an overwrite.

Every write carries ``version_type=external_gte``. A stream action's version is the record's
``ApproximateCreationDateTime`` in epoch milliseconds; see ARCHITECTURE.md for the argument that
this converges under at-least-once, in-order-suffix delivery. SequenceNumbers are never used:
they have 21-40 digits and no squeeze into 63 bits keeps their order everywhere.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from cdcsync.errors import PlanError

# OpenSearch external versions are signed 64-bit longs, 0 <= v < 2**63.
MAX_VERSION = 2**63 - 1
BACKFILL_SAFETY_MS = 5000

# Below 1e11 a timestamp is in seconds (1e11 s is the year 5138); below 1e14, in milliseconds;
# above, in microseconds (Kinesis-delivered DynamoDB records can carry µs precision).
_SECONDS_BELOW = 10**11
_MILLISECONDS_BELOW = 10**14
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)


def epoch_ms(value: Any) -> int:
    """Epoch milliseconds from a record time: seconds, ms or µs (number or string), or a datetime."""
    # Fast path: whole seconds as Lambda delivers them (one call per record).
    if type(value) is int and 0 <= value < _SECONDS_BELOW:
        return value * 1000
    if type(value) is float and value.is_integer() and 0 <= value < _SECONDS_BELOW:
        return int(value) * 1000
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return (aware - _EPOCH) // _ONE_MS
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise PlanError(f"ApproximateCreationDateTime: expected a number or a datetime, got {value!r}")
    try:
        # Decimal keeps 1627992080.123 exact where float arithmetic would give ...122.99.
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise PlanError(f"ApproximateCreationDateTime: expected a number, got {value!r}") from exc
    if not number.is_finite() or number < 0:
        raise PlanError(f"ApproximateCreationDateTime: expected a time after 1970, got {value!r}")
    if number < _SECONDS_BELOW:
        return int((number * 1000).to_integral_value())
    if number < _MILLISECONDS_BELOW:
        return int(number.to_integral_value())
    return int((number / 1000).to_integral_value())


def stream_version(approximate_creation: Any) -> int:
    """The version of a stream action: the record's creation time in epoch milliseconds."""
    return epoch_ms(approximate_creation)


def read_version(read_started_ms: int) -> int:
    """The version of a write of what a table read returned (backfill, redrive, repair).

    It must be below every stream record created after the read started, so that a later change
    always wins. Stream times are rounded down to whole seconds, and this host's clock may run
    ahead of DynamoDB's: a change made 0.9 s after a read can carry a time 0.9 s *before* it. The
    5 s margin covers both; a same-second record from before the read that is applied after the
    read's write is followed, in its shard, by every later record of the item.
    """
    return read_started_ms - BACKFILL_SAFETY_MS


def backfill_version(scan_start_ms: int) -> int:
    """The version of a backfill write: ``read_version`` of the scan's start."""
    return read_version(scan_start_ms)


def attribute_version(item: dict[str, Any], name: str) -> int:
    """The item's own monotonic version attribute (``version: attribute:<Name>``)."""
    if name not in item:
        raise PlanError(f"version: attribute:{name}: the item has no {name} attribute")
    value = item[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VERSION:
        raise PlanError(f"version: attribute:{name}: expected a whole number from 0 to 2^63-1, got {value!r}")
    return value
