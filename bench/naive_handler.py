"""The Lambda handler most teams write, as the baseline of ``bench/lambda_e2e.py``.

TypeDeserializer, ``json.dumps(default=...)`` for Decimal and sets, ``opensearchpy.helpers.bulk``
with ``_op_type`` index/delete; whole NewImage, last write wins, no versions, no coalescing. A module
of its own, importing only what such a handler imports, so that its cold start can be timed in a
fresh interpreter: ``handler`` builds the client on the first event from ``NAIVE_OPENSEARCH_URL``
and writes to ``NAIVE_INDEX``.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from opensearchpy import OpenSearch, helpers


def plain(value: Any) -> Any:
    """json.dumps default: DynamoDB numbers to int/float, sets to sorted lists (the naive conversion)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


class NaiveHandler:
    """The handler most teams write: whole NewImage, last write wins, no versions, no coalescing."""

    def __init__(self, client: OpenSearch, index: str) -> None:
        self.client = client
        self.index = index
        self.deserializer = TypeDeserializer()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        deserialize = self.deserializer.deserialize
        actions = []
        for record in event["Records"]:
            body = record["dynamodb"]
            doc_id = str(deserialize(body["Keys"]["UserId"]))
            if record["eventName"] == "REMOVE":
                actions.append({"_op_type": "delete", "_index": self.index, "_id": doc_id})
                continue
            document = {name: deserialize(value) for name, value in body["NewImage"].items()}
            source = json.dumps(document, default=plain)
            actions.append({"_op_type": "index", "_index": self.index, "_id": doc_id, "_source": source})
        # 404: a redelivered delete of a document already gone; raising would retry the batch forever.
        helpers.bulk(self.client, actions, ignore_status=(404,))
        return {"batchItemFailures": []}


_handler: NaiveHandler | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _handler  # noqa: PLW0603 - one client per Lambda container, as such handlers keep it
    if _handler is None:
        _handler = NaiveHandler(
            OpenSearch(hosts=[os.environ["NAIVE_OPENSEARCH_URL"]], timeout=60), os.environ["NAIVE_INDEX"]
        )
    return _handler(event, context)
