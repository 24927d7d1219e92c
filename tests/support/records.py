"""Builders for stream records and mappings in tests (Lambda event shape unless said otherwise)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from cdcsync.change import ChangeRecord, parse_record
from cdcsync.mapping.compiled import CompiledMapping, MappingSet, compile_mapping
from cdcsync.mapping.model import MappingModel

FIXTURES = Path(__file__).parents[1] / "fixtures"
USERS_STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2023-09-01T00:00:00.000"
_serializer = TypeSerializer()


def fixture_event(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((FIXTURES / "events" / f"{name}.json").read_text())
    return result


def typed(item: dict[str, Any]) -> dict[str, Any]:
    """A plain Python item (Decimal for numbers) in DynamoDB JSON."""
    return {k: _serializer.serialize(v) for k, v in item.items()}


def stream_record(
    event: str,
    keys: dict[str, Any],
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    *,
    seconds: float = 1_700_000_000,
    sequence: str = "100000000000000000001",
    view: str = "NEW_AND_OLD_IMAGES",
    ttl: bool = False,
    arn: str = USERS_STREAM_ARN,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Keys": typed(keys),
        "ApproximateCreationDateTime": seconds,
        "SequenceNumber": sequence,
        "SizeBytes": 100,
        "StreamViewType": view,
    }
    if new is not None:
        body["NewImage"] = typed(new)
    if old is not None:
        body["OldImage"] = typed(old)
    record: dict[str, Any] = {
        "eventID": sequence,
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": body,
        "eventSourceARN": arn,
    }
    if ttl:
        record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return record


def change(
    event: str,
    keys: dict[str, Any],
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    **kwargs: Any,
) -> ChangeRecord:
    return parse_record(stream_record(event, keys, new, old, **kwargs))


def compiled(**keys: Any) -> CompiledMapping:
    """A compiled mapping from keyword arguments (the mapping file's keys)."""
    mapping, problems = compile_mapping(MappingModel.model_validate(keys), "test.yaml:1")
    assert mapping is not None, problems
    return mapping


def mapping_set(*mappings: CompiledMapping) -> MappingSet:
    return MappingSet(tuple(mappings))
