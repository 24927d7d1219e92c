"""Bulk NDJSON lines carry the external version; big integers stay exact."""

from __future__ import annotations

import json
from decimal import Decimal

from cdcsync.plan import DeleteAction, IndexAction
from cdcsync.sink.bulk_body import action_lines
from tests.support.records import change, compiled

MAPPING = compiled(table="Users", index="users")
RECORD = change("INSERT", {"UserId": 1}, {"UserId": 1})


def test_action_lines_index_carries_external_gte_version_and_no_index_name() -> None:
    # The index is the request's path (/users/_bulk): with rest.action.multi.allow_explicit_index
    # false, OpenSearch refuses any _index in the body.
    action = IndexAction("users", "1", "t1", 1627992080000, {"a": 1}, MAPPING, RECORD)
    header, body, end = action_lines(action).split(b"\n")
    assert json.loads(header) == {
        "index": {
            "_id": "1",
            "version": 1627992080000,
            "version_type": "external_gte",
            "routing": "t1",
        }
    }
    assert (json.loads(body), end) == ({"a": 1}, b"")


def test_action_lines_delete_has_no_body() -> None:
    action = DeleteAction("users", "1", None, 5, MAPPING, RECORD)
    assert action_lines(action) == b'{"delete":{"_id":"1","version":5,"version_type":"external_gte"}}\n'


def test_action_lines_integer_beyond_64_bits_stays_exact() -> None:
    big = 12345678901234567890123456789012345678
    action = IndexAction("users", "1", None, 1, {"n": big}, MAPPING, RECORD)
    assert action_lines(action).split(b"\n")[1] == b'{"n":12345678901234567890123456789012345678}'


def test_action_lines_numbers_beyond_float_precision_stay_exact() -> None:
    # GIVEN a document with a fraction no float holds, next to a float, an integer beyond 64 bits
    document = {
        "p": Decimal("12345678901234567.89"),
        "f": 0.1,
        "l": [2**64, Decimal("-0.10000000000000000001")],
    }
    action = IndexAction("users", "1", None, 1, document, MAPPING, RECORD)
    # WHEN its bulk lines are written
    body = action_lines(action).split(b"\n")[1]
    # THEN every number is its exact text
    assert body == b'{"p":12345678901234567.89,"f":0.1,"l":[18446744073709551616,-0.10000000000000000001]}'
