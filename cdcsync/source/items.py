"""Consistent item reads: KEYS_ONLY streams, dead-letter redrive and verify read the table now.

``BatchGetItem`` with ``ConsistentRead``, 100 keys per call, unprocessed keys retried with
backoff; a key that stays unprocessed is reported, so its record is retried rather than lost.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from cdcsync.errors import TransientError
from cdcsync.values import image_to_plain

_BATCH = 100
_ATTEMPTS = 6


def key_id(table: str, keys: Mapping[str, Any]) -> bytes:
    """A hashable identity of one item: table plus its key as plain values, in key-name order.

    Plain values make a Lambda key (binary as base64 text) and a boto3 key (bytes) the same.
    """
    return orjson.dumps([table, image_to_plain(keys)], option=orjson.OPT_SORT_KEYS)


def request_key(keys: Mapping[str, Any]) -> dict[str, Any]:
    """A key as boto3 must send it: binary as bytes (Lambda events carry it as base64 text)."""
    return {
        name: {"B": base64.b64decode(value["B"])} if isinstance(value.get("B"), str) else dict(value)
        for name, value in keys.items()
    }


@dataclass
class ItemReader:
    """Reads current items with strongly consistent reads (a low-level boto3 DynamoDB client)."""

    dynamodb: Any
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = field(default=time.time)

    def read(self, table: str, keys: Sequence[Mapping[str, Any]]) -> dict[bytes, dict[str, Any] | None]:
        """Map ``key_id(table, key)`` to the plain item, or None when the item does not exist.

        Raises ``TransientError`` when DynamoDB keeps some keys unprocessed or fails.
        """
        found: dict[bytes, dict[str, Any] | None] = {key_id(table, key): None for key in keys}
        unique = list({key_id(table, key): request_key(key) for key in keys}.values())
        for start in range(0, len(unique), _BATCH):
            self._read_batch(table, unique[start : start + _BATCH], found)
        return found

    def _read_batch(
        self, table: str, keys: Sequence[Mapping[str, Any]], found: dict[bytes, dict[str, Any] | None]
    ) -> None:
        request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
        for attempt in range(_ATTEMPTS):
            try:
                answer = self.dynamodb.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError) as exc:
                raise TransientError(
                    f"cannot read {len(keys)} items of {table} from DynamoDB: {exc}"
                ) from exc
            for item in answer.get("Responses", {}).get(table, []):
                key = {name: item[name] for name in keys[0]}
                found[key_id(table, key)] = image_to_plain(item)
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return
            self.sleep(min(0.05 * 2**attempt, 2.0))
        left = len(request.get(table, {}).get("Keys", []))
        raise TransientError(f"DynamoDB left {left} keys of {table} unprocessed after {_ATTEMPTS} attempts")
