"""The Lambda handler behind a DynamoDB stream event source mapping.

Settings, mappings and clients are built once per container (cold start) and reused; what the
configuration does not use is never imported or built (no boto3 unless an AWS service is used: a
``file://`` dead-letter queue and a stream with images need none; the DynamoDB client only on the
first KEYS_ONLY item read), and what is built is then frozen out of the garbage collector's passes.
The answer uses partial batch responses (``FunctionResponseTypes: [ReportBatchItemFailures]``): the
SequenceNumber of the earliest record whose work failed transiently, from which Lambda retries the
batch in order. Records sent to the dead-letter queue count as processed.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cdcsync.errors import TransientError
from cdcsync.logs import configure_logging
from cdcsync.metrics import EmfMetrics, Metrics
from cdcsync.pipeline import BatchResult, Pipeline
from cdcsync.services import Services
from cdcsync.settings import Settings, load_settings
from cdcsync.sink.target import Target

if TYPE_CHECKING:
    import boto3

log = logging.getLogger(__name__)

# Kept in hand before Lambda's deadline to send the answer.
_ANSWER_MARGIN_SECONDS = 0.5


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


@dataclass
class LambdaRuntime:
    """What one Lambda container keeps between invocations."""

    pipeline: Pipeline
    metrics: Metrics
    target: Target | None = None  # checked before the first write (external versions)

    def handle(self, event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        if self.target is not None:
            try:
                self.target.check_writes(self.pipeline.mappings, "Lambda handler")
            except TransientError as exc:  # not answered now: write nothing, Lambda delivers it again
                log.warning("%s", exc)
                return _retry_all(event)
        deadline = None
        if context is not None:
            remaining = context.get_remaining_time_in_millis() / 1000
            deadline = time.monotonic() + remaining - _ANSWER_MARGIN_SECONDS
        try:
            result = self.pipeline.process(event.get("Records", []), deadline=deadline)
            # Lag as the handler sees it: how old the newest record of the batch is. (Lambda's own
            # IteratorAge metric measures the same from the poller's side.)
            now_ms = time.time_ns() // 1_000_000
            for table, newest in result.newest_ms.items():
                self.metrics.replication_lag(table, max(0.0, (now_ms - newest) / 1000))
        finally:
            self.metrics.flush()
        return batch_response(result)


def _retry_all(event: dict[str, Any]) -> dict[str, Any]:
    """The batch failed whole: Lambda retries it from its first record."""
    records = event.get("Records") or [{}]
    first = records[0].get("dynamodb", {}).get("SequenceNumber") or records[0].get("kinesis", {}).get(
        "sequenceNumber", ""
    )
    return {"batchItemFailures": [{"itemIdentifier": first}]}


def batch_response(result: BatchResult) -> dict[str, Any]:
    """Lambda's partial batch response. An empty identifier makes Lambda retry the whole batch."""
    if result.ok:
        return {"batchItemFailures": []}
    return {"batchItemFailures": [{"itemIdentifier": result.retry_sequence_number or ""}]}


def build_runtime(
    settings: Settings, *, session: boto3.Session | None = None, metrics: Metrics | None = None
) -> LambdaRuntime:
    services = Services(settings, session=session, metrics=metrics or EmfMetrics())
    target = services.target
    return LambdaRuntime(services.pipeline, services.metrics, target)


_runtime: LambdaRuntime | None = None


def handler(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """``cdcsync.aws_lambda.handler``: configured by the CDCSYNC_* environment."""
    global _runtime  # noqa: PLW0603 - one runtime per Lambda container, built on the first event
    if _runtime is None:
        settings = load_settings()
        # JSON unless set: CloudWatch Logs parses it, and nobody reads Lambda's stderr at a terminal.
        configure_logging(settings.log_format or "json", settings.log_level, keys=settings.log_keys)
        _runtime = build_runtime(settings)
        # Settings, mappings and clients live as long as the container: out of the collector's way.
        gc.freeze()
    return _runtime.handle(event, context)
