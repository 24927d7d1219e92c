"""``cdcsync backfill --status --run-id ID``: how far a shared run is, read from the checkpoint store.

Units done, in progress (owner, when claimed, when last written: an owner that died shows a last
write older than the lease period until another process takes its unit), remaining; items so far,
items/s since the run started and the ETA against DescribeTable's (or the export's) item count,
which is approximate, hence the "~". Ages use this host's wall clock against the writers'.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cdcsync.backfill.scan import iso_ms
from cdcsync.backfill.units import RUN_PREFIX, UNIT_PREFIX, Unit
from cdcsync.checkpoint import LeaseStore
from cdcsync.errors import ConfigError


def run_status(store: LeaseStore, run_id: str, *, table: str | None, now_ms: int) -> dict[str, Any]:
    """The run's status as one JSON-able object; ``ConfigError`` if the store has no such run."""
    found = store.load_records(f"{RUN_PREFIX}{run_id}")
    run = next((record.value for record in found if record.key == f"{RUN_PREFIX}{run_id}"), None)
    if run is None:
        raise ConfigError(
            f"backfill --status: no backfill run {run_id} in {store.describe()} "
            "(check --run-id and CDCSYNC_CHECKPOINTS)"
        )
    if table is not None and run.get("table") != table:
        raise ConfigError(f"backfill --status: run {run_id} backfills table {run.get('table')}, not {table}")
    units = [Unit.of(record) for record in store.load_records(f"{UNIT_PREFIX}{run_id}|")]
    items = sum(unit.items for unit in units)
    seconds = max(0.001, (now_ms - int(run["started_ms"])) / 1000)
    rate = items / seconds
    done = sum(unit.done for unit in units)
    finished = done == int(run["units"])
    total = int(run.get("item_count", 0))
    eta = None if finished or rate <= 0 or total <= 0 else max(0.0, total - items) / rate
    return {
        "run_id": run_id,
        "table": run["table"],
        "kind": run["kind"],
        "export": run.get("export"),
        "version_ms": run["version_ms"],
        "started_at": iso_ms(int(run["started_ms"])),
        "units": int(run["units"]),
        "done": done,
        "in_progress": [
            {
                "unit": unit.number,
                "owner": unit.owner,
                "claimed_seconds_ago": _ago(unit.claimed_ms, now_ms),
                "written_seconds_ago": _ago(unit.heartbeat_ms, now_ms),
                "items": unit.items,
            }
            for unit in units
            if unit.owner is not None and not unit.done
        ],
        "remaining": sum(unit.owner is None and not unit.done for unit in units),
        "items": items,
        "item_count": total,
        "items_per_second": round(rate, 1),
        "eta_seconds": None if eta is None else round(eta),
        "finished": finished,
    }


def describe_status(status: dict[str, Any]) -> str:
    """The status for people: a headline, one line per unit in progress, the counts."""
    kind = "segments" if status["kind"] == "scan" else f"data files of {status['export']}"
    lines = [
        f"backfill run {status['run_id']} of table {status['table']} ({status['units']} {kind}, version "
        f"{status['version_ms']}, started {status['started_at']}): {status['done']} done, "
        f"{len(status['in_progress'])} in progress, {status['remaining']} remaining"
    ]
    for unit in status["in_progress"]:
        lines.append(
            f"  unit {unit['unit']}: {unit['owner']}, claimed {_span(unit['claimed_seconds_ago'])} ago, "
            f"last written {_span(unit['written_seconds_ago'])} ago, {unit['items']:,} items"
        )
    counts = f"{status['items']:,} items"
    if status["finished"]:
        counts += " (finished)"
    elif status["item_count"] > 0:
        percent = min(99, status["items"] * 100 // status["item_count"])
        counts += f" of ~{status['item_count']:,} ({percent}%)"
    counts += f", {status['items_per_second']:,.0f} items/s"
    if status["eta_seconds"] is not None:
        counts += f", ETA {dt.timedelta(seconds=status['eta_seconds'])}"
    lines.append(counts)
    return "\n".join(lines)


def _ago(ms: int | None, now_ms: int) -> float | None:
    return None if ms is None else round(max(0, now_ms - ms) / 1000, 1)


def _span(seconds: float | None) -> str:
    return "?" if seconds is None else str(dt.timedelta(seconds=round(seconds)))
