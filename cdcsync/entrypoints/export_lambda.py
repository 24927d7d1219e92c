"""The Lambda handlers of the backfill state machine (deploy/lambda/template.yaml, ``CdcsyncBackfill``).

A Step Functions execution loads one DynamoDB export, fanned out over Lambda invocations:

1. ``export_check_handler`` (``cdcsync.aws_lambda.export_check_handler``), once: finds the export
   (``backfill/export.py``: DYNAMODB_JSON, full export, of this table), refuses one older than the
   target indices remember deletes (``backfill/export_age.py``, unless ``allowOldExport``), proves the
   target honours external versions, and answers the manifest to read and the export time. The check
   belongs here, before the Map: every file of the export is as old as the export, so a refusal
   must stop the execution before anything is written, not each of thousands of invocations.
2. ``export_handler`` (``cdcsync.aws_lambda.export_handler``), once per data file (Distributed Map
   over ``manifest-files.json``), again while it answers ``finished: false``: ``backfill/export_file.py``.
3. ``verify_handler`` (``cdcsync.aws_lambda.verify_handler``), once: ``cdcsync verify --sample N``.

Errors leave each handler as one of three exception types, named after what the state machine does
next: ``TransientError`` (retried with backoff), ``ConfigError`` and ``FatalError`` (not retried:
the execution fails with the one-line message as its cause). Settings, mappings and clients are
built once per container, as in the stream handler (``entrypoints/aws_lambda.py``).
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from cdcsync.aws import aws_client, session_region
from cdcsync.backfill.export import find_export
from cdcsync.backfill.export_age import check_export_age
from cdcsync.backfill.export_file import answer, load_export_file, parse_event
from cdcsync.entrypoints.aws_lambda import LambdaContext
from cdcsync.errors import CdcsyncError, ConfigError, FatalError, TransientError
from cdcsync.logs import configure_logging
from cdcsync.metrics import EmfMetrics
from cdcsync.services import Services
from cdcsync.settings import load_settings
from cdcsync.source.synthetic import TableStream, table_stream
from cdcsync.source.tables import table_description
from cdcsync.versions import read_version

log = logging.getLogger(__name__)

# Kept in hand before Lambda's deadline to send the answer.
_ANSWER_MARGIN_SECONDS = 1.0
_DEFAULT_SAMPLE = 1000
_BY_KIND: dict[str, type[CdcsyncError]] = {
    "transient": TransientError,
    "configuration": ConfigError,
    "fatal": FatalError,
}


@dataclass
class _Container:
    """What one Lambda container keeps between invocations."""

    services: Services
    streams: dict[str, TableStream] = field(default_factory=dict)

    def stream(self, table: str) -> TableStream:
        """The table as synthetic records describe it (``DescribeTable`` once per container)."""
        if table not in self.streams:
            if not self.services.mappings.for_table(table):
                raise ConfigError(
                    f"export handler: no mapping for table {table} in {self.services.settings.mappings} "
                    f"(tables with mappings: {', '.join(self.services.mappings.tables) or 'none'})"
                )
            region = session_region(self.services.session)
            description = table_description(
                self.services.dynamodb, table, who="export handler",
                missing=f"does not exist in {region} (check the execution's table and AWS_REGION)",
            )  # fmt: skip
            self.streams[table] = table_stream(description, region)
        return self.streams[table]


_container: _Container | None = None


def _built() -> _Container:
    global _container  # noqa: PLW0603 - one container state, built on the first event
    if _container is None:
        settings = load_settings()
        configure_logging(settings.log_format or "json", settings.log_level, keys=settings.log_keys)
        _container = _Container(Services(settings, metrics=EmfMetrics()))
    return _container


def use_services(services: Services | None) -> None:
    """Run the handlers with ``services`` (tests, or a host building its own); None: from the environment."""
    global _container  # noqa: PLW0603 - see _built
    _container = _Container(services) if services is not None else None


def _boundary(exc: CdcsyncError) -> NoReturn:
    """One of the three error types the state machine tells apart, with the one-line message."""
    raise _BY_KIND[exc.kind](str(exc)) from exc


def export_check_handler(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """``{"table": T, "export": "s3://BUCKET/PREFIX", "allowOldExport": false}`` -> the export to load."""
    try:
        return _check(_built(), event)
    except CdcsyncError as exc:
        _boundary(exc)


def _check(container: _Container, event: dict[str, Any]) -> dict[str, Any]:
    table, url = event.get("table"), event.get("export")
    if not isinstance(table, str) or not isinstance(url, str):
        raise ConfigError(
            'export check: expected the execution input {"table": "TABLE", "export": "s3://BUCKET/PREFIX"}, '
            f"got keys {', '.join(sorted(event)) or 'none'}"
        )
    services = container.services
    container.stream(table)
    s3 = aws_client(services.session, "s3")
    manifest = find_export(s3, url, table)
    mappings = services.mappings.for_table(table)
    try:
        check_export_age(
            manifest.url, manifest.export_time_ms, table, [m.index for m in mappings], services.client,
            now_ms=time.time_ns() // 1_000_000, allow_old=event.get("allowOldExport") is True,
        )  # fmt: skip
    except ConfigError as exc:
        hint = '--allow-old-export is "allowOldExport": true in the execution input'
        raise ConfigError(f"{exc} ({hint})") from exc
    services.target.check_reachable(mappings, f"export load of {table}")
    services.target.check_writes(mappings, f"export load of {table}")
    version = read_version(manifest.export_time_ms)
    log.info(
        "export load of %s: %s, %d data files, %d items, version %d",
        table, manifest.url, len(manifest.data_keys), manifest.item_count, version,
    )  # fmt: skip
    return {
        "table": table,
        "export": manifest.url,
        "bucket": manifest.bucket,
        "manifestFilesS3Key": manifest.files_key,
        "exportTimeMs": manifest.export_time_ms,
        "version": version,
        "itemCount": manifest.item_count,
        "dataFiles": len(manifest.data_keys),
    }


def export_handler(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """One data file (from ``itemsDone``): see ``cdcsync/backfill/export_file.py``."""
    container = _built()
    try:
        file, counts = parse_event(event)
        services = container.services
        stream = container.stream(file.table)
        services.target.check_writes(services.mappings.for_table(file.table), "export handler")
        deadline = None
        if context is not None:
            remaining = context.get_remaining_time_in_millis() / 1000
            deadline = time.monotonic() + remaining - _ANSWER_MARGIN_SECONDS
        try:
            load = load_export_file(
                file,
                s3=aws_client(services.session, "s3"),
                stream=stream,
                pipeline=services.pipeline,
                metrics=services.metrics,
                bulk_max_actions=services.settings.bulk_max_actions,
                counts=counts,
                deadline=deadline,
            )
        finally:
            services.metrics.flush()
    except CdcsyncError as exc:
        _boundary(exc)
    return answer(load)


def verify_handler(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """``{"table": T, "sample": N}`` -> ``cdcsync verify --table T --sample N``'s counts and report.

    Drift is an answer (``drift: true``), not an error: the state machine fails the execution on it
    with the report, without retrying.
    """
    from cdcsync.verify.run import run_verify  # noqa: PLC0415 - only this handler needs verify

    container = _built()
    table = event.get("table")
    sample = event.get("sample", _DEFAULT_SAMPLE)
    try:
        if (
            not isinstance(table, str)
            or isinstance(sample, bool)
            or not isinstance(sample, int)
            or sample < 1
        ):
            raise ConfigError(
                f'verify handler: expected {{"table": "TABLE", "sample": N}} with N >= 1, got {event!r}'
            )
        out = io.StringIO()
        services = container.services
        report = run_verify(services.settings, table, sample=sample, services=services, out=out)
    except CdcsyncError as exc:
        _boundary(exc)
    return {
        "table": table,
        "sample": sample,
        "checked": report.checked,
        "counts": dict(report.counts),
        "drift": report.exit_code != 0,
        "report": out.getvalue(),
    }
