"""Items from a DynamoDB export to S3 (``ExportTableToPointInTime``, full export, DYNAMODB_JSON).

Layout (AWS "DynamoDB table export output format")::

    PREFIX/AWSDynamoDB/<export-id>/manifest-summary.json   one JSON object: exportTime, tableArn,
                                                           itemCount, outputFormat, manifestFilesS3Key
    PREFIX/AWSDynamoDB/<export-id>/manifest-files.json     JSON lines: {"dataFileS3Key": ..., "itemCount": n}
    PREFIX/AWSDynamoDB/<export-id>/data/<name>.json.gz     gzipped JSON lines: {"Item": {typed attributes}}

``--from-export s3://BUCKET/PREFIX`` may name the export's own folder (the one holding
``manifest-summary.json``) or the prefix given to the export request, if exactly one export lies
under it. Refused, with the reason: ION exports, incremental exports (their lines are changes, not
items) and exports of another table. Binary values are base64 text in the export, which
``cdcsync.values`` reads like boto3's bytes. An export too old to load safely is refused by
``cdcsync.backfill.export_age``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cdcsync.aws import aws_error, error_code
from cdcsync.errors import CdcsyncError, ConfigError

log = logging.getLogger(__name__)

_SUMMARY = "manifest-summary.json"
_ROOT = "AWSDynamoDB/"


@dataclass(frozen=True, slots=True)
class ExportManifest:
    """What the loader needs of one export."""

    url: str  # s3://bucket/folder of the export
    bucket: str
    export_time_ms: int
    item_count: int
    data_keys: tuple[str, ...]
    files_key: str = ""  # manifest-files.json (a Step Functions Distributed Map reads it)


def parse_export_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` -> (bucket, prefix without trailing slash)."""
    scheme, sep, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not sep or not bucket:
        raise ConfigError(f'--from-export: expected s3://BUCKET/PREFIX, got "{url}"')
    return bucket, prefix.strip("/")


def find_export(s3: Any, url: str, table: str) -> ExportManifest:
    """Read the export's manifests; ``ConfigError`` when ``url`` holds no usable export of ``table``."""
    bucket, prefix = parse_export_url(url)
    folder = _export_folder(s3, bucket, prefix, url)
    summary = json.loads(_get(s3, bucket, f"{folder}/{_SUMMARY}"))
    where = f"s3://{bucket}/{folder}/{_SUMMARY}"
    output_format = summary.get("outputFormat", "DYNAMODB_JSON")
    if output_format != "DYNAMODB_JSON":
        raise ConfigError(f"{where}: outputFormat is {output_format}; export the table as DYNAMODB_JSON")
    export_type = summary.get("exportType", "FULL_EXPORT")
    if export_type != "FULL_EXPORT":
        raise ConfigError(f"{where}: exportType is {export_type}; backfill needs a full export")
    exported_table = str(summary.get("tableArn", "")).rpartition("/")[2]
    if exported_table != table:
        raise ConfigError(f"{where}: the export is of table {exported_table or '?'}, not {table}")
    try:
        export_time = dt.datetime.fromisoformat(str(summary["exportTime"]))
    except (KeyError, ValueError) as exc:
        raise ConfigError(
            f"{where}: expected an ISO 8601 exportTime, got {summary.get('exportTime')!r}"
        ) from exc
    files_key = summary.get("manifestFilesS3Key") or f"{folder}/manifest-files.json"
    data_keys = tuple(
        str(json.loads(line)["dataFileS3Key"])
        for line in _get(s3, bucket, files_key).splitlines()
        if line.strip()
    )
    return ExportManifest(
        url=f"s3://{bucket}/{folder}",
        bucket=bucket,
        export_time_ms=int(export_time.timestamp() * 1000),
        item_count=int(summary.get("itemCount", 0)),
        data_keys=data_keys,
        files_key=files_key,
    )


def export_plan(
    table: str, manifest: ExportManifest, previous: dict[str, Any] | None, *, resume: bool, now_ms: int
) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """The progress record to run with, and the unfinished data files with the items to skip in each."""
    if resume and previous is not None:
        if previous.get("export") != manifest.url:
            raise ConfigError(
                f"--resume: the stored backfill of {table} loads {previous.get('export') or 'a scan'}, "
                f"not {manifest.url}; run without --resume to start over"
            )
        state = previous
    else:
        if previous is not None:
            log.info("backfill of %s: starting over (the stored backfill started at %s is replaced)",
                     table, previous.get("started_at"))  # fmt: skip
        state = {
            "kind": "export",
            "export": manifest.url,
            "export_time_ms": manifest.export_time_ms,
            "started_at": dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).isoformat(timespec="milliseconds"),
            "items_read": 0,
            "finished": False,
            "parts": {str(unit): {"items_done": 0, "done": False} for unit in range(len(manifest.data_keys))},
        }
    todo = [
        (int(unit), int(part.get("items_done", 0)))
        for unit, part in sorted(state["parts"].items(), key=lambda entry: int(entry[0]))
        if not part.get("done")
    ]
    return state, todo


def export_items(s3: Any, bucket: str, key: str, page_size: int) -> Iterator[list[dict[str, Any]]]:
    """The typed items of one data file, ``page_size`` at a time."""
    page: list[dict[str, Any]] = []
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, "GetObject", f"s3://{bucket}/{key}") from exc
    # Streamed, line by line: a data file can hold gigabytes, memory stays at one page.
    stream: Any = gzip.GzipFile(fileobj=body, mode="rb") if key.endswith(".gz") else body.iter_lines()
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)["Item"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f's3://{bucket}/{key}:{number}: expected a line {{"Item": {{...}}}} of a DYNAMODB_JSON export'
            ) from exc
        page.append(item)
        if len(page) >= page_size:
            yield page
            page = []
    if page:
        yield page


def _export_folder(s3: Any, bucket: str, prefix: str, url: str) -> str:
    """The folder holding ``manifest-summary.json``: ``prefix`` itself or its one export."""
    listing = _list(s3, bucket, f"{prefix}/" if prefix else "")
    if f"{prefix}/{_SUMMARY}".lstrip("/") in listing:
        return prefix
    root = f"{prefix}/{_ROOT}" if prefix else _ROOT
    folders = sorted(
        key.removesuffix(f"/{_SUMMARY}")
        for key in listing
        if key.startswith(root) and key.endswith(f"/{_SUMMARY}") and key.count("/") == root.count("/") + 1
    )
    if not folders:
        raise ConfigError(
            f"--from-export: no {_SUMMARY} under {url} (expected PREFIX/AWSDynamoDB/<export-id>/)"
        )
    if len(folders) > 1:
        names = ", ".join(f"s3://{bucket}/{folder}" for folder in folders)
        raise ConfigError(f"--from-export: {len(folders)} exports under {url}; name one of {names}")
    return folders[0]


def _list(s3: Any, bucket: str, prefix: str) -> set[str]:
    keys: set[str] = set()
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.update(entry["Key"] for entry in page.get("Contents", []))
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, "ListObjectsV2", f"s3://{bucket}/{prefix}", permission="s3:ListBucket") from exc
    return keys


def _get(s3: Any, bucket: str, key: str) -> bytes:
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, "GetObject", f"s3://{bucket}/{key}") from exc
    return body


def _s3_error(
    exc: ClientError | BotoCoreError, call: str, url: str, permission: str | None = None
) -> CdcsyncError:
    """A failed S3 call on the export (``cdcsync.aws``): a missing bucket or key, access denied,
    refused credentials are configuration (exit 2); no answer is transient."""
    return aws_error(
        exc,
        call=f"--from-export: {call}",
        resource=url,
        permission=f"{permission or f's3:{call}'} on {url}",
        missing=f"not found ({error_code(exc)}); check --from-export and AWS_REGION",
    )
