"""The bulk writer: coalesced, versioned ``_bulk`` requests with per-item outcomes and retries.

Only failed items are resubmitted, with exponential backoff and full jitter (tenacity), within
``CDCSYNC_MAX_RETRIES`` / ``CDCSYNC_RETRY_MAX_SECONDS`` and, in Lambda, before the invocation's
deadline. A 413 splits the request in halves; so does any other 4xx refusing the whole request
(401/403 aside, which are retried), to reject only the actions it was refused for (see ``_isolate``).
A routing move's steps go out in waves (see ``write``); each wave is sent as requests of one index
each, to ``/{index}/_bulk`` (see ``bulk_requests``). opensearch-py's own helpers are not used: its
``streaming_bulk`` retries only 429 and resends whole chunks, ``parallel_bulk`` never retries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

from cdcsync.errors import CdcsyncError
from cdcsync.logs import document_ids
from cdcsync.metrics import Metrics
from cdcsync.plan.actions import Action
from cdcsync.settings import Settings
from cdcsync.sink.bulk_body import action_lines
from cdcsync.sink.bulk_requests import BulkLimits, bulk_requests
from cdcsync.sink.coalesce import CoalescedAction, coalesce
from cdcsync.sink.copies import IndexCopies
from cdcsync.sink.outcomes import HTTP_TOO_LARGE, ItemError, classify_item, is_transient_status

log = logging.getLogger(__name__)

FinalOutcome = Literal["written", "stale", "rejected", "failed"]
# Whole-request auth failures are retried, not dead-lettered: every record would fail alike, and
# the fix is a permission, after which the retried batch goes through.
_RETRIED_REQUEST_STATUSES = frozenset({401, 403})
# Time kept in hand before a deadline for one more round trip and the handler's answer.
_DEADLINE_MARGIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RetryBudget:
    max_retries: int = 8
    max_seconds: float = 60.0
    first_wait: float = 0.1  # seconds; full jitter draws from [0, first_wait * 2**n]
    longest_wait: float = 10.0


@dataclass(slots=True, eq=False)
class WriteResult:
    """The final outcome of one coalesced action."""

    entry: CoalescedAction
    outcome: FinalOutcome
    error: ItemError | None = None
    attempts: int = 1
    first_failure_at: dt.datetime | None = None


@dataclass(slots=True, eq=False)
class _Pending:
    entry: CoalescedAction
    lines: bytes
    attempts: int = 0
    error: ItemError | None = None
    first_failure_at: dt.datetime | None = None

    @property
    def index(self) -> str:
        return self.entry.action.index

    def failed(self, error: ItemError) -> None:
        self.error = error
        if self.first_failure_at is None:
            self.first_failure_at = dt.datetime.now(dt.UTC)


_Refusal = tuple[list[_Pending], ItemError]  # part of a request refused whole, and the error


class _StopBeforeDeadline(stop_base):
    """Stop when the next wait plus one more round would overrun the caller's deadline."""

    def __init__(self, deadline: float | None, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self.deadline is None:
            return False
        return self.clock() + retry_state.upcoming_sleep + _DEADLINE_MARGIN_SECONDS >= self.deadline


class _StopBeforeBudget(stop_base):
    """Stop when the next wait would end ``max_seconds`` or more after the first attempt.

    tenacity's own ``stop_before_delay`` reads ``time.monotonic`` itself; this one reads the
    writer's clock, so the budget and the deadline are measured on one clock (and tests can fake it).
    """

    def __init__(self, max_seconds: float, clock: Callable[[], float]) -> None:
        self.max_seconds = max_seconds
        self.clock = clock
        self.started = clock()

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.clock() - self.started + retry_state.upcoming_sleep >= self.max_seconds


# What an item's outcome is read from (``outcomes.classify_item``: its op, status and error), whether
# any failed (``errors``, which proxies and tools read) and, for a request refused whole, its error and
# status: a tenth of the answer to send back and to parse.
BULK_FILTER_PATH = "errors,items.*.status,items.*.error,error,status"


@dataclass
class BulkWriter:
    """Writes planned actions to OpenSearch and tells what became of each."""

    client: OpenSearch
    metrics: Metrics
    limits: BulkLimits = field(default_factory=BulkLimits)
    budget: RetryBudget = field(default_factory=RetryBudget)
    request_timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    copies: IndexCopies | None = None  # a rebuild's dual writes (``copies.py``)
    filter_path: str | None = None  # the ``_bulk`` answer's fields kept (``from_settings``: BULK_FILTER_PATH)

    @classmethod
    def from_settings(cls, settings: Settings, client: OpenSearch, metrics: Metrics) -> BulkWriter:
        """The writer every entry point uses: limits and retry budget from CDCSYNC_* settings."""
        return cls(
            client=client,
            metrics=metrics,
            limits=BulkLimits(settings.bulk_max_actions, settings.bulk_max_bytes),
            budget=RetryBudget(settings.max_retries, settings.retry_max_seconds),
            copies=IndexCopies(client, settings.targets_refresh_seconds),
            # OpenSearch and Elasticsearch take filter_path on _bulk; AOSS is left its whole answer.
            filter_path=None if _aoss(settings) else BULK_FILTER_PATH,
        )

    def write(self, actions: Sequence[Action], *, deadline: float | None = None) -> list[WriteResult]:
        """Write ``actions`` (in stream order). ``deadline`` is a ``clock()`` time to answer by.

        A document's steps (see ``coalesce``) go out in waves: the n-th step of every document in
        the n-th wave, once the wave before has ended, so each step is in a later request than the
        one before it. A step after one that failed is not sent but failed too: the records are
        delivered again and the steps replayed in order, never a delete after its index.
        """
        if self.copies is None:
            return self._write(actions, deadline)
        try:
            targets = self.copies.targets()
        except CdcsyncError as exc:  # unknown whether a rebuild needs a copy: write nothing, retry
            log.warning("%s; %d actions not written, to be retried", exc, len(actions))
            error = ItemError(None, "rebuild_aliases_unknown", str(exc))
            return [WriteResult(CoalescedAction(a, [a.record]), "failed", error, 0) for a in actions]
        copies = [
            dataclasses.replace(action, index=targets[action.index])
            for action in actions
            if targets.get(action.index, action.index) != action.index
        ]
        if not copies:
            return self._write(actions, deadline)
        self.metrics.rebuild_copies(len(copies))
        return _merge_copies(self._write([*actions, *copies], deadline), targets)

    def _write(self, actions: Sequence[Action], deadline: float | None) -> list[WriteResult]:
        documents = coalesce(actions)
        results: list[WriteResult] = []
        spent = _StopBeforeBudget(self.budget.max_seconds, self.clock)  # one budget for every wave
        unfinished: set[int] = set()  # id() of steps that ended failed, or were held back
        for wave in range(max(map(len, documents), default=0)):
            entries: list[CoalescedAction] = []
            for steps in documents:
                if wave >= len(steps):
                    continue
                if wave and id(steps[wave - 1]) in unfinished:
                    unfinished.add(id(steps[wave]))
                    results.append(WriteResult(steps[wave], "failed", _held_back(steps[wave - 1]), 0))
                    continue
                entries.append(steps[wave])
            for result in self._write_wave(entries, deadline, spent):
                if result.outcome == "failed":
                    unfinished.add(id(result.entry))
                results.append(result)
        return results

    def _write_wave(
        self, entries: list[CoalescedAction], deadline: float | None, spent: _StopBeforeBudget
    ) -> list[WriteResult]:
        """Write one action per document, retrying what fails transiently within the budget."""
        pending = [_Pending(entry, action_lines(entry.action)) for entry in entries]
        results: list[WriteResult] = []
        if not pending:
            return results
        # The first round is sent before tenacity is set up (~1 us per action in a 100-record batch
        # otherwise): a wave that leaves nothing to retry never builds a Retrying.
        pending = self._round(pending, results, deadline)
        if not pending:
            return results
        first_round = True

        def send_round() -> list[_Pending]:
            nonlocal pending, first_round
            if first_round:  # tenacity's first attempt: the round above
                first_round = False
                return pending
            pending = self._round(pending, results, deadline)
            return pending

        budget = self.budget
        retrying = Retrying(
            retry=retry_if_result(bool),
            stop=(
                stop_after_attempt(budget.max_retries + 1) | spent | _StopBeforeDeadline(deadline, self.clock)
            ),
            wait=wait_random_exponential(multiplier=budget.first_wait, max=budget.longest_wait),
            sleep=self.sleep,
            before_sleep=lambda _: self.metrics.bulk_retries(len(pending)),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else pending,
        )
        leftover: list[_Pending] = retrying(send_round)
        for item in leftover:
            results.append(
                WriteResult(item.entry, "failed", item.error, item.attempts, item.first_failure_at)
            )
        return results

    def _round(
        self, pending: list[_Pending], results: list[WriteResult], deadline: float | None
    ) -> list[_Pending]:
        retry: list[_Pending] = []
        for chunk in bulk_requests(pending, self.limits):
            retry += self._send(chunk, results, deadline)
        return retry

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.request_timeout
        return max(0.1, min(self.request_timeout, deadline - self.clock() - _DEADLINE_MARGIN_SECONDS))

    def _send(
        self,
        chunk: list[_Pending],
        results: list[WriteResult],
        deadline: float | None,
        refused: list[_Refusal] | None = None,
    ) -> list[_Pending]:
        """Send one request (to its index's path: a chunk, and every part of it, holds one index);
        record final outcomes in ``results``; return the items to retry.

        A request refused whole with a client error is split to find the actions it was refused
        for, or, with ``refused``, left there for the caller that is splitting it.
        """
        if deadline is not None and self.clock() + _DEADLINE_MARGIN_SECONDS >= deadline:
            # A request started now could not be answered before the deadline: leave it unsent
            # (reported as failed, so the caller redelivers it) rather than overrun.
            error = ItemError(
                None,
                "deadline_exceeded",
                f"not sent: less than {_DEADLINE_MARGIN_SECONDS:g} s was left before the caller's "
                "deadline; reported as failed for redelivery",
            )
            for item in chunk:
                item.failed(error)
            return chunk
        for item in chunk:
            item.attempts += 1
        params: dict[str, Any] = {"request_timeout": self._timeout(deadline)}
        if self.filter_path is not None:
            params["filter_path"] = self.filter_path
        started = self.clock()
        try:
            response = self.client.bulk(
                body=b"".join(item.lines for item in chunk), index=chunk[0].index, params=params
            )
        except TransportError as exc:
            # Observed before a 413 split sends the halves, which are observed on their own.
            self.metrics.bulk_request(self.clock() - started)
            return self._request_failed(chunk, results, exc, deadline, refused)
        self.metrics.bulk_request(self.clock() - started)
        return self._items(chunk, results, response)

    def _request_failed(
        self,
        chunk: list[_Pending],
        results: list[WriteResult],
        exc: TransportError,
        deadline: float | None,
        refused: list[_Refusal] | None = None,
    ) -> list[_Pending]:
        status = exc.status_code if isinstance(exc.status_code, int) else None
        if status == HTTP_TOO_LARGE:
            for item in chunk:
                item.attempts -= 1  # a split is not a retry
            if len(chunk) == 1:
                (item,) = chunk
                error = ItemError(
                    status,
                    "request_too_large",
                    f"one action of {len(item.lines)} bytes exceeds http.max_content_length",
                )
                item.failed(error)
                results.append(
                    WriteResult(item.entry, "rejected", error, max(item.attempts, 1), item.first_failure_at)
                )
                return []
            half = len(chunk) // 2
            return self._send(chunk[:half], results, deadline) + self._send(chunk[half:], results, deadline)
        error = ItemError(status, _error_type(exc), _error_reason(exc))
        if (
            status is None
            or isinstance(exc, OpenSearchConnectionError)
            or is_transient_status(status)
            or status in _RETRIED_REQUEST_STATUSES
        ):
            log.warning(
                "bulk request of %d actions failed, will retry: %s", len(chunk), error, extra=_ids(chunk)
            )
            for item in chunk:
                item.failed(error)
            return chunk
        if refused is not None:
            refused.append((chunk, error))
            return []
        if len(chunk) > 1:
            log.warning(
                "bulk request of %d actions refused: %s; sending it in halves to find the actions it was "
                "refused for",
                len(chunk),
                error,
                extra=_ids(chunk),
            )
        return self._isolate(chunk, results, error, deadline)

    def _isolate(
        self, chunk: list[_Pending], results: list[WriteResult], error: ItemError, deadline: float | None
    ) -> list[_Pending]:
        """Reject only the actions a request refused whole with ``error`` (a 4xx) was refused for.

        OpenSearch refuses a whole request for one bad action (an id over 512 bytes: 400
        ``action_request_validation_exception``). Each level sends both halves, then splits the
        refused ones, so one bad action of n is found in log2(n) levels of two requests each. When
        both halves are refused exactly as the whole was, the refusal is request-wide (or names
        nothing that tells the halves apart): all of it is rejected there, so splitting always ends.
        """
        if len(chunk) == 1:
            _reject(chunk, results, error)
            return []
        for item in chunk:
            item.attempts -= 1  # a split is not a retry
        half = len(chunk) // 2
        refusals: list[_Refusal] = []
        retry = self._send(chunk[:half], results, deadline, refusals)
        retry += self._send(chunk[half:], results, deadline, refusals)
        if [part_error for _, part_error in refusals] == [error, error]:
            log.warning(
                "both halves of the bulk request of %d actions refused alike: %s; rejecting all %d",
                len(chunk),
                error,
                len(chunk),
                extra=_ids(chunk),
            )
            _reject(chunk, results, error)
            return retry
        for part, part_error in refusals:
            retry += self._isolate(part, results, part_error, deadline)
        return retry

    def _items(
        self, chunk: list[_Pending], results: list[WriteResult], response: dict[str, Any]
    ) -> list[_Pending]:
        items = response.get("items", [])
        if len(items) != len(chunk):
            error = ItemError(
                None, "bulk_response_mismatch", f"{len(items)} items answered {len(chunk)} actions"
            )
            for item in chunk:
                item.failed(error)
            return chunk
        retry: list[_Pending] = []
        for item, answer in zip(chunk, items, strict=True):
            ((op, body),) = answer.items()
            outcome, item_error = classify_item(op, body)
            if outcome == "retry":
                item.failed(item_error or ItemError(None, "unknown", "retry without an error"))
                retry.append(item)
                continue
            if item_error is not None:
                item.failed(item_error)
            results.append(WriteResult(item.entry, outcome, item_error, item.attempts, item.first_failure_at))
        return retry


def _aoss(settings: Settings) -> bool:
    """Whether the target is OpenSearch Serverless (``CDCSYNC_TARGET``, or auto with SigV4 for ``aoss``)."""
    signed = settings.opensearch_auth == "sigv4" and settings.opensearch_sigv4_service == "aoss"
    return settings.target == "aoss" or (settings.target == "auto" and signed)


def _reject(chunk: list[_Pending], results: list[WriteResult], error: ItemError) -> None:
    for item in chunk:
        item.failed(error)
        results.append(WriteResult(item.entry, "rejected", error, item.attempts, item.first_failure_at))


_RANK = {"written": 0, "stale": 0, "rejected": 1, "failed": 2}


def _merge_copies(results: list[WriteResult], targets: dict[str, str]) -> list[WriteResult]:
    """One result per original action: a copy that failed makes its original failed (the records
    are delivered again and both written again); one the new index rejected, rejected."""
    copied_to = {index: name for name, index in targets.items()}
    originals: dict[tuple[str, str, str | None], WriteResult] = {}
    merged: list[WriteResult] = []
    copies: list[WriteResult] = []
    for result in results:
        action = result.entry.action
        if action.index in copied_to:
            copies.append(result)
            continue
        originals[(action.index, action.id, action.routing)] = result
        merged.append(result)
    for copy in copies:
        action = copy.entry.action
        original = originals.get((copied_to[action.index], action.id, action.routing))
        if original is not None and _RANK[copy.outcome] > _RANK[original.outcome]:
            original.outcome, original.error = copy.outcome, copy.error
            original.attempts = max(original.attempts, copy.attempts)
            original.first_failure_at = original.first_failure_at or copy.first_failure_at
    return merged


def _held_back(before: CoalescedAction) -> ItemError:
    action = before.action
    where = "without routing" if action.routing is None else f'at routing "{action.routing}"'
    return ItemError(
        None,
        "held_back",
        f'not sent: the {action.op} of "{action.id}" {where} in "{action.index}" before it failed; '
        "reported as failed for redelivery",
    )


def _error_type(exc: TransportError) -> str:
    if isinstance(exc, OpenSearchConnectionError):
        return "connection_timeout" if "timeout" in type(exc).__name__.lower() else "connection_error"
    info = exc.info
    if isinstance(info, dict) and isinstance(info.get("error"), dict):
        return str(info["error"].get("type", "http_error"))
    return "http_error"


def _error_reason(exc: TransportError) -> str:
    info = exc.info
    if isinstance(info, dict) and isinstance(info.get("error"), dict):
        return str(info["error"].get("reason", ""))
    return str(exc.error)


def _ids(chunk: list[_Pending]) -> dict[str, Any]:
    """``extra=`` for a line about ``chunk``: the ids its reason may quote, hidden below plain keys."""
    return document_ids([item.entry.action.id for item in chunk])
