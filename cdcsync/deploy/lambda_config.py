"""Lambda event source configuration for the mapped tables' streams, generated from the mappings.

``cdcsync lambda-config`` prints what to paste into a ``serverless.yml`` (``events:``), a SAM function
(``Events:`` plus ``Parameters:``) or a CloudFormation template (``Parameters:`` plus
``Resources:``), so nobody copies filters or retry settings by hand. Pure: no I/O, no AWS calls.

Every setting follows from how cdcsync writes (see ARCHITECTURE.md):

- ``StartingPosition: TRIM_HORIZON``: a new mapping starts at the oldest record the stream still holds
  (24 h), so nothing written while the function was being deployed is skipped.
- ``FunctionResponseTypes: [ReportBatchItemFailures]``: the handler names the earliest record whose
  write failed transiently, and Lambda retries the shard from there, in order.
- ``MaximumRetryAttempts: -1`` and ``MaximumRecordAgeInSeconds: -1``: Lambda never discards a batch.
  Records OpenSearch rejects for good are already in cdcsync's dead-letter queue; what is left to
  retry failed transiently (OpenSearch down, throttled), and dropping it would lose changes.
- ``FilterCriteria``: exactly what ``cdcsync filters`` prints; when nothing can be pushed down it is
  left out (every record reaches the function, which filters in-process) and a comment says why.

The output is YAML written here rather than by a YAML library, because it carries comments; every
value is a plain YAML scalar, and ``yaml.safe_load`` of the output gives back the same data.
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from cdcsync.errors import ConfigError
from cdcsync.mapping.compiled import MappingSet
from cdcsync.mapping.filter_criteria import filter_criteria

__all__ = [
    "FAILURE_QUEUE_ID",
    "FAILURE_QUEUE_NAME_SERVERLESS",
    "FORMATS",
    "FUNCTION_ID",
    "Format",
    "lambda_config",
    "logical_id",
]

Format = Literal["serverless", "sam", "cloudformation"]
FORMATS: Final[tuple[Format, ...]] = get_args(Format)

# Logical IDs the generated configuration refers to but does not create (deploy/lambda/ creates both).
FUNCTION_ID: Final = "CdcsyncFunction"
FAILURE_QUEUE_ID: Final = "CdcsyncStreamFailures"
# serverless.yml names the on-failure queue by an ARN built from its QueueName, not by !GetAtt: the
# framework copies the ARN into the function role's policy, and the role must not depend on the queue
# (the queue's KMS key policy names the role; see deploy/lambda/serverless.yml).
FAILURE_QUEUE_NAME_SERVERLESS: Final = "${self:service}-${sls:stage}-stream-failures"
_FAILURE_ARN_SERVERLESS: Final = (
    f"arn:aws:sqs:${{aws:region}}:${{aws:accountId}}:{FAILURE_QUEUE_NAME_SERVERLESS}"
)

# Lambda's limits for DynamoDB stream event source mappings (CreateEventSourceMapping API reference).
_RANGES: Final = {
    "batch size": (1, 10_000, "records per batch"),
    "batching window": (0, 300, "seconds"),
    "parallelization factor": (1, 10, "concurrent batches per shard"),
}
_WIDTH: Final = 100
_PLAIN: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_.:/${}@-]*")
_YAML_WORDS: Final = frozenset({"true", "false", "null", "yes", "no", "on", "off", "y", "n"})

_RETRY_NOTE: Final = (
    "-1: retry until the write succeeds, never discard. Records OpenSearch rejects for good are already "
    "in cdcsync's dead-letter queue (CDCSYNC_DLQ); what Lambda retries failed transiently (OpenSearch "
    "down or throttled), and discarding it would silently lose changes."
)
_AGE_NOTE: Final = "-1: no age limit either; the stream's 24 h retention is the only limit."
_START_NOTE: Final = (
    "Start at the oldest record the stream still holds (24 h): nothing written during the deployment "
    "is skipped. Older items: run `cdcsync backfill` first."
)
_PARALLEL_NOTE: Final = (
    "Above 1, Lambda runs several batches of one shard at once but keeps each item's records in order, "
    "which is all cdcsync's versioned writes need."
)
_RESPONSE_NOTE: Final = "The handler names the earliest record to retry; Lambda resumes the shard there."
_FAILURE_NOTE: Final = (
    "Lambda's on-failure record (which shard and sequence numbers) if a batch is ever discarded, e.g. "
    "after someone sets a retry limit. Keep it apart from CDCSYNC_DLQ, which holds cdcsync's dead letters."
)


@dataclass(frozen=True, slots=True)
class _Commented:
    """A value with comment lines written above its key; ``value`` None writes the comment only."""

    value: Any
    comment: str


def lambda_config(
    mappings: MappingSet,
    *,
    format: Format,
    tables: Sequence[str] = (),
    batch_size: int = 100,
    batching_window: int = 1,
    parallelization: int = 1,
    bisect: bool = True,
) -> str:
    """Return the event source configuration for ``tables`` (default: every mapped table) as YAML.

    Raises ConfigError for a table without mappings, an unknown format or a setting Lambda rejects.
    """
    if format not in FORMATS:
        raise ConfigError(f'lambda-config: unknown format "{format}"; use one of {", ".join(FORMATS)}')
    for name, value in (
        ("batch size", batch_size),
        ("batching window", batching_window),
        ("parallelization factor", parallelization),
    ):
        low, high, unit = _RANGES[name]
        if not low <= value <= high:
            raise ConfigError(
                f"lambda-config: {name} {value} is out of range; Lambda accepts {low} to {high} {unit} "
                "for a DynamoDB stream"
            )
    chosen = list(dict.fromkeys(tables)) or list(mappings.tables)
    unknown = [table for table in chosen if not mappings.for_table(table)]
    if unknown:
        known = ", ".join(mappings.tables) or "none"
        raise ConfigError(f"no mapping for table {', '.join(unknown)} (tables with mappings: {known})")
    ids = _logical_ids(chosen)
    settings = _Settings(batch_size, batching_window, parallelization, bisect)
    if format == "serverless":
        document = _serverless(mappings, chosen, ids, settings)
    else:
        document = _cloudformation(mappings, chosen, ids, settings, sam=format == "sam")
    lines = [f"# {line}" for line in _header(format, chosen, ids)]
    _emit(document, 0, lines)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class _Settings:
    batch_size: int
    batching_window: int
    parallelization: int
    bisect: bool


def logical_id(table: str) -> str:
    """A CloudFormation logical ID for ``table``: its letters and digits, capitalised."""
    cleaned = re.sub(r"[^A-Za-z0-9]", "", table)[:200]
    return cleaned[:1].upper() + cleaned[1:]


def _logical_ids(tables: Sequence[str]) -> dict[str, str]:
    """Logical IDs per table; a hash suffix keeps "my-table" and "my_table" (or "___") apart."""
    plain = [logical_id(table) for table in tables]
    return {
        table: base
        if base and plain.count(base) == 1
        else f"{base or 'Table'}{hashlib.sha256(table.encode()).hexdigest()[:8]}"
        for table, base in zip(tables, plain, strict=True)
    }


def _filters(mappings: MappingSet, table: str) -> tuple[list[dict[str, Any]] | None, str]:
    """The table's filter patterns as objects, or None and the reason nothing is pushed down."""
    table_mappings = mappings.for_table(table)
    export = filter_criteria(
        [m.filter for m in table_mappings], table=table, names=[m.source for m in table_mappings]
    )
    if export.criteria is None:
        return None, "No FilterCriteria: " + " ".join(export.warnings)
    return [json.loads(f["Pattern"]) for f in export.criteria["Filters"]], ""


def _header(format: Format, tables: Sequence[str], ids: Mapping[str, str]) -> list[str]:
    params = ", ".join(f"{ids[t]}StreamArn (stream ARN of table {t})" for t in tables)
    where = {
        "serverless": [
            "Paste `events:` under your function in serverless.yml. It expects:",
            f"  params: {params}",
            f"  resources.Resources.{FAILURE_QUEUE_ID}: an AWS::SQS::Queue for Lambda's on-failure records,",
            f"    with QueueName: {FAILURE_QUEUE_NAME_SERVERLESS}",
        ],
        "sam": [
            "Merge `Parameters:` into your template and paste `Events:` under the Properties of the",
            "AWS::Serverless::Function running cdcsync.aws_lambda.handler. It expects:",
            f"  Resources.{FAILURE_QUEUE_ID}: an AWS::SQS::Queue for Lambda's on-failure records",
        ],
        "cloudformation": [
            "Merge `Parameters:` and `Resources:` into your template. It expects:",
            f"  Resources.{FUNCTION_ID}: the AWS::Lambda::Function running cdcsync.aws_lambda.handler",
            f"  Resources.{FAILURE_QUEUE_ID}: an AWS::SQS::Queue for Lambda's on-failure records",
        ],
    }[format]
    return [f"Generated by `cdcsync lambda-config --format {format}` from the mappings.", *where]


def _stream_properties(
    mappings: MappingSet, table: str, settings: _Settings, *, serverless: bool
) -> dict[str, Any]:
    """One table's event source settings, spelled for CloudFormation/SAM or for serverless.yml."""
    patterns, reason = _filters(mappings, table)
    failure_queue: Any = _FAILURE_ARN_SERVERLESS if serverless else {"Fn::GetAtt": [FAILURE_QUEUE_ID, "Arn"]}
    filters: Any
    if patterns is None:
        filters = _Commented(None, reason)
    elif serverless:
        filters = patterns
    else:
        filters = {
            "Filters": [
                {"Pattern": json.dumps(p, separators=(",", ":"), ensure_ascii=False)} for p in patterns
            ]
        }
    properties: dict[str, Any] = {
        "StartingPosition": _Commented("TRIM_HORIZON", _START_NOTE),
        "BatchSize": settings.batch_size,
        "MaximumBatchingWindowInSeconds": settings.batching_window,
        "ParallelizationFactor": _Commented(settings.parallelization, _PARALLEL_NOTE),
        "FunctionResponseTypes": _Commented(
            "ReportBatchItemFailures" if serverless else ["ReportBatchItemFailures"], _RESPONSE_NOTE
        ),
        "BisectBatchOnFunctionError": settings.bisect,
        "MaximumRetryAttempts": _Commented(-1, _RETRY_NOTE),
        "MaximumRecordAgeInSeconds": _Commented(-1, _AGE_NOTE),
        # serverless.yml needs `type` when the ARN is a CloudFormation function (it cannot infer sqs).
        "DestinationConfig": _Commented(
            {"onFailure": {"arn": failure_queue, "type": "sqs"}}
            if serverless
            else {"OnFailure": {"Destination": failure_queue}},
            _FAILURE_NOTE,
        ),
        "FilterCriteria": filters,
    }
    if not serverless:
        return properties
    return {_SERVERLESS_KEYS[key]: value for key, value in properties.items()}


def _cloudformation(
    mappings: MappingSet, tables: Sequence[str], ids: Mapping[str, str], settings: _Settings, *, sam: bool
) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    entries: dict[str, Any] = {}
    for table in tables:
        arn_parameter = f"{ids[table]}StreamArn"
        parameters[arn_parameter] = {
            "Type": "String",
            "Description": f"Stream ARN of DynamoDB table {table} ({mappings.for_table(table)[0].source})",
            "AllowedPattern": rf"arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:[0-9]{{12}}:table/{re.escape(table)}"
            r"/stream/.+",
            "ConstraintDescription": f"the stream ARN of table {table} (aws dynamodb describe-table "
            f"--table-name {table} --query Table.LatestStreamArn)",
        }
        properties = _stream_properties(mappings, table, settings, serverless=False)
        stream = {"Ref": arn_parameter}
        if sam:
            entries[f"{ids[table]}Stream"] = {
                "Type": "DynamoDB",
                "Properties": {"Stream": stream, **properties},
            }
        else:
            entries[f"{ids[table]}StreamEventSourceMapping"] = {
                "Type": "AWS::Lambda::EventSourceMapping",
                "Properties": {"FunctionName": {"Ref": FUNCTION_ID}, "EventSourceArn": stream, **properties},
            }
    return {"Parameters": parameters, "Events" if sam else "Resources": entries}


# serverless.yml `events: - stream:` keys (Serverless Framework v3/v4 stream event schema).
_SERVERLESS_KEYS: Final = {
    "StartingPosition": "startingPosition",
    "BatchSize": "batchSize",
    "MaximumBatchingWindowInSeconds": "batchWindow",
    "ParallelizationFactor": "parallelizationFactor",
    "FunctionResponseTypes": "functionResponseType",
    "BisectBatchOnFunctionError": "bisectBatchOnFunctionError",
    "MaximumRetryAttempts": "maximumRetryAttempts",
    "MaximumRecordAgeInSeconds": "maximumRecordAgeInSeconds",
    "DestinationConfig": "destinations",
    "FilterCriteria": "filterPatterns",
}


def _serverless(
    mappings: MappingSet, tables: Sequence[str], ids: Mapping[str, str], settings: _Settings
) -> dict[str, Any]:
    events = []
    for table in tables:
        properties = _stream_properties(mappings, table, settings, serverless=True)
        arn = "${param:" + ids[table] + "StreamArn}"
        events.append({"stream": {"type": "dynamodb", "arn": arn, **properties}})
    return {"events": events}


def _emit(node: Any, indent: int, out: list[str]) -> None:
    """Append ``node`` (a mapping or list) as block YAML at ``indent``; comments above their keys."""
    pad = " " * indent
    if isinstance(node, Mapping):
        for key, raw in node.items():
            value = raw.value if isinstance(raw, _Commented) else raw
            if isinstance(raw, _Commented):
                out.extend(
                    f"{pad}# {line}"
                    for line in textwrap.wrap(
                        raw.comment, _WIDTH - indent - 2, break_long_words=False, break_on_hyphens=False
                    )
                )
            if isinstance(raw, _Commented) and value is None:
                continue
            _emit_entry(f"{pad}{_scalar(key)}:", value, indent, out)
        return
    for item in node:
        if isinstance(item, Mapping | list) and item:
            nested: list[str] = []
            _emit(item, indent + 2, nested)
            out.append(f"{pad}- {nested[0][indent + 2 :]}")
            out.extend(nested[1:])
        else:
            out.append(f"{pad}- {_scalar(item)}")


def _emit_entry(prefix: str, value: Any, indent: int, out: list[str]) -> None:
    if isinstance(value, Mapping | list) and value:
        out.append(prefix)
        _emit(value, indent + 2, out)
    else:
        out.append(f"{prefix} {_scalar(value)}")


def _scalar(value: Any) -> str:
    """One value as a YAML flow scalar (or empty collection) that reads back as the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping | list):
        return "{}" if isinstance(value, Mapping) else "[]"
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return "'" + text.replace("'", "''") + "'"
