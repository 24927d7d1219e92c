"""Tables the integration tests create on moto_server."""

from __future__ import annotations

from typing import Any


def create_items_table(dynamodb: Any, table: str, *, stream_view: str | None = None) -> None:
    """A table keyed by ``Pk`` (S) and ``Sk`` (B), on demand; with a stream of ``stream_view`` if given.

    A binary sort key on purpose: binaries are where the Lambda and boto3 shapes differ.
    """
    request: dict[str, Any] = {
        "TableName": table,
        "KeySchema": [
            {"AttributeName": "Pk", "KeyType": "HASH"},
            {"AttributeName": "Sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "Pk", "AttributeType": "S"},
            {"AttributeName": "Sk", "AttributeType": "B"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream_view is not None:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream_view}
    dynamodb.create_table(**request)


def create_users_table(dynamodb: Any, table: str, *, stream_view: str | None = None) -> str:
    """A table keyed by ``UserId`` (N), on demand; with a stream of ``stream_view`` if given. Its name."""
    request: dict[str, Any] = {
        "TableName": table,
        "KeySchema": [{"AttributeName": "UserId", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "UserId", "AttributeType": "N"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream_view is not None:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream_view}
    dynamodb.create_table(**request)
    return table
