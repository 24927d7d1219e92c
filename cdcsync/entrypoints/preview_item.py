"""``cdcsync preview --table T --key Name=Value``: the document backfill would write for one item.

The item is read with ``GetItem`` (consistent read), its key typed from ``DescribeTable``, and
planned as backfill plans a scanned item: the synthetic INSERT of ``source/synthetic.py``, shaped
like the table's stream records, written with ``read_version`` of the time just before the read.
It also shows the item's ``key_hash``: what record log lines carry instead of the key with
``CDCSYNC_LOG_KEYS=hash``, so an operator can find an item's lines without logging its key.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from cdcsync.aws import aws_client, aws_error, aws_session, session_region
from cdcsync.change import parse_record
from cdcsync.entrypoints.preview_output import Preview, iso_time
from cdcsync.errors import ConfigError
from cdcsync.logs import key_hash
from cdcsync.mapping.compiled import MappingSet
from cdcsync.plan import plan_record
from cdcsync.plan.explain import explain
from cdcsync.source.shards import call_streams, describe_table
from cdcsync.source.synthetic import filter_warnings, insert_record, table_stream
from cdcsync.values import image_to_plain
from cdcsync.versions import read_version

_TYPE_NAMES = {"S": "a string (S)", "N": "a number (N)", "B": "binary (B), given in base64"}


def _typed(table: str, name: str, kind: str, value: str) -> dict[str, Any]:
    """One ``--key`` value as DynamoDB's typed value for a key attribute of type ``kind``."""
    problem = f"preview: --key {name}={value}: key attribute {name} of table {table} is {_TYPE_NAMES[kind]}"
    if kind == "N":
        try:
            if Decimal(value).is_finite():
                return {"N": value}
        except InvalidOperation:
            pass
        raise ConfigError(problem)
    if kind == "B":
        try:
            return {"B": base64.b64decode(value, validate=True)}
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(problem) from exc
    if not value:
        raise ConfigError(f"preview: --key {name}=: a key attribute of DynamoDB is never an empty string")
    return {"S": value}


def typed_key(description: Mapping[str, Any], table: str, pairs: Sequence[str]) -> dict[str, Any]:
    """The item's typed key from ``--key Name=Value`` arguments and the table's ``DescribeTable``."""
    names = [str(key["AttributeName"]) for key in description["KeySchema"]]
    kinds = {str(d["AttributeName"]): str(d["AttributeType"]) for d in description["AttributeDefinitions"]}
    schema = ", ".join(f"{name} ({kinds[name]})" for name in names)
    key: dict[str, Any] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise ConfigError(f"preview: --key {pair}: expected Name=Value (the key of {table}: {schema})")
        if name not in names:
            raise ConfigError(
                f"preview: --key {name}: not a key attribute of table {table} (its key: {schema})"
            )
        if name in key:
            raise ConfigError(f"preview: --key {name} is given twice")
        key[name] = _typed(table, name, kinds[name], value)
    missing = [name for name in names if name not in key]
    if missing:
        raise ConfigError(f"preview: the key of table {table} is {schema}: add --key {missing[0]}=VALUE")
    return key


def _get_item(dynamodb: Any, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        answer = call_streams(
            dynamodb.get_item,
            {"TableName": table, "Key": key, "ConsistentRead": True},
            what=f"GetItem {table}",
        )
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(
            exc, call="GetItem", resource=f"table {table}", permission=f"dynamodb:GetItem on table {table}"
        ) from exc
    item: dict[str, Any] | None = answer.get("Item")
    return item


def preview_item(
    mappings: MappingSet,
    table: str,
    pairs: Sequence[str],
    *,
    session: boto3.Session | None = None,
    clock: Callable[[], float] = time.time,
) -> Preview:
    """Read the item and plan it as backfill would; raises ``ConfigError`` for a wrong table or key."""
    if not mappings.for_table(table):
        known = ", ".join(mappings.tables) or "none"
        raise ConfigError(f"preview: no mapping for table {table} (tables with mappings: {known})")
    session = session or aws_session()
    dynamodb = aws_client(session, "dynamodb")
    description = describe_table(dynamodb, table)
    key = typed_key(description, table, pairs)
    read_ms = int(clock() * 1000)
    item = _get_item(dynamodb, table, key)
    keys = image_to_plain(key)
    header: dict[str, Any] = {
        "table": table,
        "keys": keys,
        "key_hash": key_hash(table, keys),  # what CDCSYNC_LOG_KEYS=hash logs for this item
        "read": iso_time(read_ms),
        "found": item is not None,
    }
    if item is None:
        return Preview(header)
    version = read_version(read_ms)
    stream = table_stream(description, session_region(session))
    raw = insert_record(stream, item, seconds=version // 1000, sequence="preview")
    record = parse_record(raw, version_ms=version)
    notes = [warning for mapping in mappings.for_table(table) for warning in filter_warnings(mapping)]
    return Preview(header, explain(plan_record(record, mappings), tables=mappings.tables), notes)
