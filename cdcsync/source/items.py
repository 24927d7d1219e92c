"""Consistent item reads: KEYS_ONLY streams, dead-letter redrive and verify read the table now.

``BatchGetItem`` with ``ConsistentRead``, 100 keys per call, unprocessed keys retried with
backoff; a key that stays unprocessed is reported, so its record is retried rather than lost.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cdcsync.aws import aws_error
from cdcsync.errors import TransientError
from cdcsync.values import image_to_plain

_BATCH = 100
_ATTEMPTS = 6


def key_id(table: str, keys: Mapping[str, Any]) -> bytes:
    """A hashable identity of one item: table plus its typed key values, in key-name order.

    Built from the values as DynamoDB sends them, never through a conversion that can fail: a
    number is its exact decimal value (``1.5`` and ``1.50`` are one item, ``0.10000000000000000001``
    and ``0.10000000000000000002`` two; 38 digits or beyond 2^64 are no different), binary is its
    base64 text (a Lambda key and a boto3 key are one item). A malformed key still gets an identity,
    so one bad key can never fail the reads of a whole batch.
    """
    parts = sorted((str(name), _value_identity(value)) for name, value in keys.items())
    return repr((table, parts)).encode("utf-8", "backslashreplace")


def _value_identity(value: Any) -> tuple[str, str]:
    if isinstance(value, Mapping) and len(value) == 1:
        ((tag, payload),) = value.items()
        if tag == "N" and isinstance(payload, str):
            return "N", _number_identity(payload)
        if tag == "B" and isinstance(payload, bytes | bytearray):
            return "B", base64.b64encode(payload).decode("ascii")
        if tag in ("S", "B") and isinstance(payload, str):
            return tag, payload
    return "?", repr(value)


def _number_identity(text: str) -> str:
    """``text``'s exact value in one spelling: significant digits without trailing zeros, exponent."""
    try:
        number = Decimal(text)
    except ArithmeticError:  # decimal.InvalidOperation: not a number at all
        return repr(text)
    if not number.is_finite():
        return repr(text)
    if number.is_zero():
        return "0"
    sign, digits, exponent = number.as_tuple()
    significant = "".join(map(str, digits)).rstrip("0")
    return f"{'-' if sign else ''}{significant}E{int(exponent) + len(digits) - len(significant)}"


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
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - with the client, on first read

        request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
        for attempt in range(_ATTEMPTS):
            try:
                answer = self.dynamodb.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError) as exc:
                raise aws_error(
                    exc,
                    call="BatchGetItem",
                    resource=f"of {len(keys)} items of table {table}",
                    permission=f"dynamodb:BatchGetItem on table {table}",
                ) from exc
            if "Responses" not in answer and "UnprocessedKeys" not in answer:
                # a garbled 200 reads as {}: never take it as "every item gone"
                raise TransientError(
                    f"BatchGetItem of {len(keys)} items of table {table}: DynamoDB answered without "
                    "Responses; retrying later"
                )
            for item in answer.get("Responses", {}).get(table, []):
                key = {name: item[name] for name in keys[0]}
                found[key_id(table, key)] = image_to_plain(item)
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return
            self.sleep(min(0.05 * 2**attempt, 2.0))
        left = len(request.get(table, {}).get("Keys", []))
        raise TransientError(f"DynamoDB left {left} keys of {table} unprocessed after {_ATTEMPTS} attempts")
