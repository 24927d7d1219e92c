"""``DescribeTable`` for the commands that read a table's description once (backfill, verify, the
export handler): its ``Table``, or our error naming the command, the table and the permission.

The worker's own ``describe_table`` (``shards.py``) retries throttling and sorts a gone table from a
denied call for the shard threads; these callers stop at the first failure instead.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cdcsync.aws import aws_error


def table_description(dynamodb: Any, table: str, *, who: str, missing: str | None = None) -> dict[str, Any]:
    """``DescribeTable``'s ``Table``; ``who`` names the caller in the error (``backfill``), ``missing``
    is the phrase for a table that does not exist (default: "does not exist in region R")."""
    try:
        description: dict[str, Any] = dynamodb.describe_table(TableName=table)["Table"]
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(
            exc,
            call=f"{who}: DescribeTable",
            resource=f"table {table}",
            permission=f"dynamodb:DescribeTable on table {table}",
            missing=missing,
        ) from exc
    return description
