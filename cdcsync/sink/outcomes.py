"""What OpenSearch said about one bulk item, and what we do next.

``written``  2xx (and 404 for a delete: the document was already gone; its tombstone is recorded)
``stale``    409 version conflict: a newer write is already there. A success, counted, not logged.
``retry``    429, 5xx, connection errors and timeouts: may succeed later.
``rejected`` any other 4xx (mapping errors, invalid ids...): goes to the dead-letter queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["written", "stale", "retry", "rejected"]

HTTP_NOT_FOUND = 404
HTTP_CONFLICT = 409
HTTP_TOO_LARGE = 413
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500


@dataclass(frozen=True, slots=True)
class ItemError:
    status: int | None
    type: str
    reason: str

    def __str__(self) -> str:
        status = f"status {self.status}" if self.status is not None else "no status"
        return f"{self.type}: {self.reason} ({status})"


def is_transient_status(status: int) -> bool:
    return status == HTTP_TOO_MANY_REQUESTS or status >= HTTP_SERVER_ERROR


def _error_of(item: dict[str, Any], status: int) -> ItemError:
    error = item.get("error")
    if isinstance(error, dict):
        kind = str(error.get("type", "unknown"))
        reason = str(error.get("reason", ""))
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("type"):
            reason = f"{reason} caused by {cause.get('type')}: {cause.get('reason', '')}".strip()
        return ItemError(status, kind, reason)
    return ItemError(status, "unknown", str(error) if error is not None else f"status {status}")


def classify_item(op: str, item: dict[str, Any]) -> tuple[Outcome, ItemError | None]:
    """Classify one entry of a ``_bulk`` response's ``items`` (already unwrapped from its op key)."""
    status = int(item.get("status", 0))
    if 200 <= status < 300:  # noqa: PLR2004 - the 2xx range
        return "written", None
    if status == HTTP_NOT_FOUND and op == "delete" and "error" not in item:
        return "written", None
    if status == HTTP_CONFLICT:
        return "stale", None
    error = _error_of(item, status)
    if is_transient_status(status):
        return "retry", error
    return "rejected", error
