"""The NDJSON lines of one ``_bulk`` action, with its external version.

orjson is several times faster than ``json`` but refuses integers beyond 64 bits, which
DynamoDB numbers (38 digits) can hold; those documents fall back to ``json``, which keeps them exact.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from cdcsync.plan.actions import Action

VERSION_TYPE = "external_gte"


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def action_metadata(action: Action) -> dict[str, Any]:
    """The action line's metadata: where the document goes and the version that guards it."""
    meta: dict[str, Any] = {
        "_index": action.index,
        "_id": action.id,
        "version": action.version,
        "version_type": VERSION_TYPE,
    }
    if action.routing is not None:
        meta["routing"] = action.routing
    return meta


def action_lines(action: Action) -> bytes:
    """The bulk body lines for one action, newline-terminated."""
    header = orjson.dumps({action.op: action_metadata(action)})
    if action.op == "delete":
        return header + b"\n"
    return header + b"\n" + _dumps(action.document) + b"\n"
