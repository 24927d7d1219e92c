"""The NDJSON lines of one ``_bulk`` action, with its external version.

The lines name no ``_index``: every request is posted to ``/{index}/_bulk`` (``bulk_requests``), and
a domain with ``rest.action.multi.allow_explicit_index: false`` refuses an ``_index`` in the body.

Documents are written by ``values.dump_json`` (orjson): every DynamoDB number exactly, integers
beyond 64 bits and fractions no float holds (``Decimal``) included.
"""

from __future__ import annotations

from typing import Any

import orjson

from cdcsync.plan.actions import Action
from cdcsync.values import dump_json

VERSION_TYPE = "external_gte"


def action_metadata(action: Action) -> dict[str, Any]:
    """The action line's metadata: which document (in the request's index) and the version that guards it."""
    meta: dict[str, Any] = {
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
    return header + b"\n" + dump_json(action.document) + b"\n"
