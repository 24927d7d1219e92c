"""Conformance of the in-process evaluator with AWS Lambda event filtering / EventBridge patterns.

Each case is (pattern, event, expected) taken from the AWS documentation section named in the comment
above its group; a few come from LocalStack's event-pattern tests recorded against AWS (marked so).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdcsync.errors import PatternError
from cdcsync.mapping.patterns import Pattern, compile_pattern
from cdcsync.mapping.wildcards import wildcard_complexity

# Seed sample record (Lambda event shape for a DynamoDB stream INSERT).
SEED_RECORD: dict[str, Any] = {
    "eventID": "1",
    "eventName": "INSERT",
    "eventVersion": "1.1",
    "eventSource": "aws:dynamodb",
    "awsRegion": "us-east-1",
    "dynamodb": {
        "Keys": {"UserId": {"N": "12345"}},
        "NewImage": {
            "UserId": {"N": "12345"},
            "Username": {"S": "john_doe"},
            "Email": {"S": "john.doe@example.com"},
        },
        "ApproximateCreationDateTime": 1627992080,
    },
    "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2023-09-01T00:00:00.000",
}

# Lambda developer guide, "Using event filtering with a DynamoDB event source": the documented record.
DDB_DOC_RECORD: dict[str, Any] = {
    "eventID": "1",
    "eventVersion": "1.0",
    "dynamodb": {
        "ApproximateCreationDateTime": "1678831218.0",
        "Keys": {"CustomerName": {"S": "AnyCompany Industries"}},
        "NewImage": {
            "AccountManager": {"S": "Pat Candella"},
            "PaymentTerms": {"S": "60 days"},
            "CustomerName": {"S": "AnyCompany Industries"},
        },
        "SequenceNumber": "111",
        "SizeBytes": 26,
        "StreamViewType": "NEW_IMAGE",
    },
}

# EventBridge event-ruler README / content filtering page: the EC2 sample event.
EC2_EVENT: dict[str, Any] = {
    "version": "0",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "time": "2017-10-02T16:24:49Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
    "detail": {"c-count": 5, "d-count": 3, "x-limit": 301.8, "state": "running"},
}

CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # --- Lambda guide, "Filter rule syntax" comparison-operator table -----------------------------------
    ("null", {"UserID": [None]}, {"UserID": None}, True),
    ("null-not-missing", {"UserID": [None]}, {}, False),
    ("empty", {"LastName": [""]}, {"LastName": ""}, True),
    ("equals", {"Name": ["Alice"]}, {"Name": "Alice"}, True),
    ("equals-is-case-sensitive", {"Name": ["Alice"]}, {"Name": "alice"}, False),
    ("and", {"Location": ["New York"], "Day": ["Monday"]}, {"Location": "New York", "Day": "Monday"}, True),
    ("and-needs-every-field", {"Location": ["New York"], "Day": ["Monday"]}, {"Location": "New York"}, False),
    ("or", {"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Debit"}, True),
    ("or-no-value", {"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Cash"}, False),
    ("not", {"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Sunny"}, True),
    ("not-excluded", {"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Raining"}, False),
    ("numeric-equals", {"Price": [{"numeric": ["=", 100]}]}, {"Price": 100}, True),
    ("numeric-equals-other", {"Price": [{"numeric": ["=", 100]}]}, {"Price": 100.5}, False),
    ("numeric-range-top", {"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20}, True),
    ("numeric-range-open-bottom", {"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 10}, False),
    ("exists", {"ProductName": [{"exists": True}]}, {"ProductName": "Widget"}, True),
    ("exists-missing", {"ProductName": [{"exists": True}]}, {}, False),
    ("does-not-exist", {"ProductName": [{"exists": False}]}, {}, True),
    ("does-not-exist-present", {"ProductName": [{"exists": False}]}, {"ProductName": "Widget"}, False),
    ("begins-with", {"Region": [{"prefix": "us-"}]}, {"Region": "us-east-1"}, True),
    ("begins-with-other", {"Region": [{"prefix": "us-"}]}, {"Region": "eu-west-1"}, False),
    # The same table's note says numbers compare by their string form (300 and 300.0 differ), but AWS
    # matches them: LocalStack's number_comparison_float, recorded on AWS; event-ruler adds a
    # numeric-equality matcher for every number a pattern names (JsonRuleCompiler, ComparableNumber).
    ("number-text-equal", {"a": [300]}, {"a": 300}, True),
    ("number-equal-float", {"a": [300]}, {"a": 300.0}, True),
    ("number-equal-exponent", {"a": [3.0e2]}, {"a": 300}, True),
    ("number-other", {"a": [300]}, {"a": 300.5}, False),
    ("number-not-string", {"a": [300]}, {"a": "300"}, False),
    # Beyond a double (event-ruler's ComparableNumber refuses them): only the same text matches.
    ("number-beyond-double-text", {"a": [2**53 + 1]}, {"a": 2**53 + 1}, True),
    ("number-beyond-double-near", {"a": [2**53 + 1]}, {"a": float(2**53)}, False),
    # --- EventBridge "Considerations when creating event patterns": dots join nested keys -----------
    # LocalStack's dot_joining_pattern / dot_joining_event (and their _NEG), recorded on AWS:
    # event-ruler flattens pattern and event to dot-joined paths, so a key with dots names the path.
    ("dots-pattern-key-nested-event", {"d": {"s.t": ["on"]}}, {"d": {"s": {"t": "on"}}}, True),
    ("dots-event-key-nested-pattern", {"d": {"s": {"t": ["on"]}}}, {"d": {"s.t": "on"}}, True),
    ("dots-pattern-too-deep", {"d": {"s.t": {"t": ["on"]}}}, {"d": {"s": {"t": "on"}}}, False),
    ("dots-event-too-deep", {"d": {"s": {"t": ["on"]}}}, {"d": {"s.t": {"t": "on"}}}, False),
    ("dots-both", {"a.b": {"c": ["x"]}}, {"a": {"b.c": "x"}}, True),
    ("dots-either-shape-any-value", {"a": {"b": ["y"]}}, {"a": {"b": "x"}, "a.b": "y"}, True),
    ("dots-exists-false-sees-dotted", {"a": {"b": [{"exists": False}]}}, {"a.b": "x"}, False),
    ("dots-anything-but-sees-dotted", {"a.b": [{"anything-but": "x"}]}, {"a": {"b": "x"}}, False),
    ("dots-item-attribute", {"state.status": ["on"]}, {"state.status": "on"}, True),
    (
        "dots-dynamodb-attribute-name",
        {"dynamodb": {"NewImage": {"state.status": {"S": ["on"]}}}},
        {"dynamodb": {"NewImage": {"state.status": {"S": "on"}}}},
        True,
    ),
    # --- Lambda guide, "Filtering examples" and "Attaching filter criteria (console)" -------------------
    (
        "kinesis-metadata-and-data",
        {"partitionKey": ["1"], "data": {"Location": ["Los Angeles"]}},
        {"partitionKey": "1", "data": {"Location": "Los Angeles", "State": "CA"}},
        True,
    ),
    (
        "kinesis-numeric-range",
        {"data": {"Temperature": [{"numeric": [">", 50, "<=", 60]}]}},
        {"data": {"Temperature": 55}},
        True,
    ),
    ("console-a-1-or-2", {"a": [1, 2]}, {"a": 2}, True),
    ("console-a-other", {"a": [1, 2]}, {"a": 3}, False),
    (
        "multi-level-dynamodb-key",
        {"dynamodb": {"Keys": {"Id": {"N": ["101"]}}}},
        {"dynamodb": {"Keys": {"Id": {"N": "101"}}, "NewImage": {"Message": {"S": "New item!"}}}},
        True,
    ),
    # --- Lambda guide, "Using event filtering with a DynamoDB event source" -------------------------------
    (
        "ddb-table-key",
        {"dynamodb": {"Keys": {"CustomerName": {"S": ["AnyCompany Industries"]}}}},
        DDB_DOC_RECORD,
        True,
    ),
    (
        "ddb-attribute-or",
        {"dynamodb": {"NewImage": {"AccountManager": {"S": ["Pat Candella", "Shirley Rodriguez"]}}}},
        DDB_DOC_RECORD,
        True,
    ),
    (
        "ddb-boolean-and",
        {
            "dynamodb": {
                "NewImage": {"AccountManager": {"S": ["Pat Candella"]}, "PaymentTerms": {"S": ["60 days"]}}
            }
        },
        DDB_DOC_RECORD,
        True,
    ),
    (
        "ddb-boolean-and-one-differs",
        {
            "dynamodb": {
                "NewImage": {"AccountManager": {"S": ["Pat Candella"]}, "PaymentTerms": {"S": ["30 days"]}}
            }
        },
        DDB_DOC_RECORD,
        False,
    ),
    (
        "ddb-exists-on-typed-leaf",
        {"dynamodb": {"NewImage": {"AccountManager": {"S": [{"exists": True}]}}}},
        DDB_DOC_RECORD,
        True,
    ),
    # exists only works on leaves; the attribute object {"S": ...} is not one (LocalStack, recorded on AWS).
    (
        "ddb-exists-on-attribute-object",
        {"dynamodb": {"NewImage": {"AccountManager": [{"exists": True}]}}},
        DDB_DOC_RECORD,
        False,
    ),
    (
        "ddb-exact-on-attribute-object",
        {"dynamodb": {"NewImage": {"AccountManager": ["Pat Candella"]}}},
        DDB_DOC_RECORD,
        False,
    ),
    # numeric never matches {"N": "..."}: stream numbers are strings
    # (LocalStack test_dynamodb_event_filter, recorded on AWS).
    (
        "ddb-numeric-on-N-string",
        {"dynamodb": {"NewImage": {"UserId": {"N": [{"numeric": [">", 100]}]}}}},
        SEED_RECORD,
        False,
    ),
    # Seed use case and seed record.
    ("seed-insert", {"eventName": ["INSERT"]}, SEED_RECORD, True),
    ("seed-only-modify", {"eventName": ["MODIFY"]}, SEED_RECORD, False),
    (
        "seed-typed-prefix",
        {"dynamodb": {"NewImage": {"Username": {"S": [{"prefix": "john"}]}}}},
        SEED_RECORD,
        True,
    ),
    (
        "seed-typed-suffix",
        {"dynamodb": {"NewImage": {"Email": {"S": [{"suffix": "@example.com"}]}}}},
        SEED_RECORD,
        True,
    ),
    ("seed-N-exact-string", {"dynamodb": {"Keys": {"UserId": {"N": ["12345"]}}}}, SEED_RECORD, True),
    (
        "seed-absent-attribute",
        {"dynamodb": {"NewImage": {"Phone": {"S": [{"exists": False}]}}}},
        SEED_RECORD,
        True,
    ),
    # --- EventBridge guide, "Content filtering in event patterns" ----------------------------------------
    ("eb-prefix", {"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-02T18:43:48Z"}, True),
    (
        "eb-prefix-ignore-case",
        {"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}},
        {"detail": {"service": "eventbridge"}},
        True,
    ),
    ("eb-suffix", {"FileName": [{"suffix": ".png"}]}, {"FileName": "image.png"}, True),
    ("eb-suffix-other", {"FileName": [{"suffix": ".png"}]}, {"FileName": "image.jpg"}, False),
    (
        "eb-suffix-ignore-case",
        {"detail": {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}},
        {"detail": {"FileName": "A.PNG"}},
        True,
    ),
    (
        "eb-anything-but-string",
        {"detail": {"state": [{"anything-but": "initializing"}]}},
        {"detail": {"state": "running"}},
        True,
    ),
    (
        "eb-anything-but-number",
        {"detail": {"x-limit": [{"anything-but": 123}]}},
        {"detail": {"x-limit": 123}},
        False,
    ),
    (
        "eb-anything-but-strings",
        {"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}},
        {"detail": {"state": "stopped"}},
        False,
    ),
    (
        "eb-anything-but-numbers",
        {"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}},
        {"detail": {"x-limit": 150}},
        True,
    ),
    (
        "eb-anything-but-prefix",
        {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}},
        {"detail": {"state": "initializing"}},
        False,
    ),
    (
        "eb-anything-but-suffix",
        {"FileName": [{"anything-but": {"suffix": ".png"}}]},
        {"FileName": "a.jpg"},
        True,
    ),
    (
        "eb-anything-but-ignore-case",
        {"detail": {"state": [{"anything-but": {"equals-ignore-case": ["Stopped", "OverLoaded"]}}]}},
        {"detail": {"state": "STOPPED"}},
        False,
    ),
    (
        "eb-anything-but-wildcard",
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "/usr/lib/a.so"},
        False,
    ),
    (
        "eb-anything-but-wildcard-other",
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "/usr/bin/a"},
        True,
    ),
    (
        "eb-numeric-all-fields",
        {
            "detail": {
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"numeric": ["=", 3.018e2]}],
            }
        },
        EC2_EVENT,
        True,
    ),
    (
        "eb-exists-false-absent",
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail": {"state": ["initializing", "running"]}},
        True,
    ),
    (
        "eb-exists-false-not-a-leaf",
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail": {"state": ["initializing", "running"], "c-count": {"c1": 100}}},
        True,
    ),
    (
        "eb-equals-ignore-case",
        {"detail-type": [{"equals-ignore-case": "ec2 instance state-change notification"}]},
        EC2_EVENT,
        True,
    ),
    (
        "eb-wildcard-arn",
        {"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]},
        {"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/myEventBus"},
        True,
    ),
    ("eb-wildcard-dir-png", {"FilePath": [{"wildcard": "dir/*.png"}]}, {"FilePath": "dir/a/b.png"}, True),
    ("eb-wildcard-dir-jpg", {"FilePath": [{"wildcard": "dir/*.png"}]}, {"FilePath": "dir/b.jpg"}, False),
    ("eb-wildcard-escaped-star", {"k": [{"wildcard": "a\\*b"}]}, {"k": "a*b"}, True),
    ("eb-wildcard-escaped-star-literal", {"k": [{"wildcard": "a\\*b"}]}, {"k": "axb"}, False),
    (
        "eb-or",
        {"detail": {"$or": [{"c-count": [{"numeric": [">", 10]}]}, {"d-count": [{"numeric": ["<", 10]}]}]}},
        EC2_EVENT,
        True,
    ),
    ("eb-or-none", {"$or": [{"source": ["aws.s3"]}, {"region": ["eu-west-1"]}]}, EC2_EVENT, False),
    (
        "eb-complex",
        {
            "time": [{"prefix": "2017-10-02"}],
            "detail": {
                "state": [{"anything-but": "initializing"}],
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"anything-but": [100, 200, 300]}],
            },
        },
        EC2_EVENT,
        True,
    ),
    # --- EventBridge guide, "Matching null values and empty strings" -------------------------------------
    ("eb-null", {"detail": {"responseElements": [None]}}, {"detail": {"responseElements": None}}, True),
    (
        "eb-null-not-string",
        {"detail": {"responseElements": [None]}},
        {"detail": {"responseElements": "null"}},
        False,
    ),
    ("eb-empty-not-null", {"detail": {"eventVersion": [""]}}, {"detail": {"eventVersion": None}}, False),
    # anything-but needs the field present, and null is "anything but" (LocalStack, recorded on AWS).
    (
        "eb-anything-but-missing",
        {"detail": {"state": [{"anything-but": "initializing"}]}},
        {"detail": {}},
        False,
    ),
    (
        "eb-anything-but-null",
        {"detail": {"state": [{"anything-but": "initializing"}]}},
        {"detail": {"state": None}},
        True,
    ),
    (
        "eb-anything-but-prefix-number",
        {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}},
        {"detail": {"state": 12}},
        True,
    ),
    # --- EventBridge guide, "Arrays in event patterns" and event-ruler README "JSON Array Matching" --------
    (
        "eb-array-intersection",
        {
            "resources": [
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
            ]
        },
        {
            "resources": [
                "arn:aws:autoscaling:us-east-1:123456789012:x",
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
            ]
        },
        True,
    ),
    ("eb-empty-array-not-null", {"resources": [None]}, {"resources": []}, False),
    (
        "ruler-array-of-objects",
        {"employees": {"firstName": ["Anna"]}},
        {"employees": [{"firstName": "John", "lastName": "Doe"}, {"firstName": "Anna", "lastName": "Smith"}]},
        True,
    ),
    (
        "ruler-array-consistent",
        {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}},
        {
            "employees": [
                {"firstName": "Anna", "lastName": "Smith"},
                {"firstName": "Peter", "lastName": "Jones"},
            ]
        },
        False,
    ),
    # --- plain items (the mapping's `where` key) ---------------------------------------------------------
    (
        "item-where",
        {"Status": [{"anything-but": ["banned"]}], "PK": [{"prefix": "USER#"}]},
        {"PK": "USER#1", "Status": "ok"},
        True,
    ),
    (
        "item-where-banned",
        {"Status": [{"anything-but": ["banned"]}], "PK": [{"prefix": "USER#"}]},
        {"PK": "USER#1", "Status": "banned"},
        False,
    ),
    (
        "item-where-no-status",
        {"Status": [{"anything-but": ["banned"]}], "PK": [{"prefix": "USER#"}]},
        {"PK": "USER#1"},
        False,
    ),
    ("item-numeric", {"Age": [{"numeric": [">=", 18]}]}, {"Age": 30}, True),
    ("item-numeric-string", {"Age": [{"numeric": [">=", 18]}]}, {"Age": "30"}, False),
    ("item-boolean", {"Active": [True]}, {"Active": True}, True),
    ("item-boolean-not-one", {"Active": [True]}, {"Active": 1}, False),
    ("item-list-attribute", {"Tags": ["vip"]}, {"Tags": ["new", "vip"]}, True),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matches_documented_example_gives_documented_result(
    pattern: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    # GIVEN a pattern and an event from the AWS documentation
    compiled = compile_pattern(pattern)
    # WHEN the event is evaluated
    result = compiled.matches(event)
    # THEN the result is the one AWS documents
    assert result is expected


def test_conformance_table_has_at_least_40_cases_both_ways() -> None:
    # GIVEN the conformance table WHEN counted THEN it is big enough and covers both outcomes
    assert len(CASES) >= 40
    assert {c[3] for c in CASES} == {True, False}


MATCHERS = "anything-but, equals-ignore-case, exists, numeric, prefix, suffix, wildcard"

ERRORS: list[tuple[str, Any, tuple[str | int, ...], str]] = [
    ("not-an-object", ["eventName"], (), "a pattern must be an object of field names, got a list"),
    ("empty-pattern", {}, (), "a pattern object must name at least one field, got an empty object"),
    (
        "empty-nested",
        {"dynamodb": {}},
        ("dynamodb",),
        "a pattern object must name at least one field, got an empty object",
    ),
    ("non-string-key", {1: ["x"]}, (), "field names must be strings, got an integer (1)"),
    (
        "leaf-not-list",
        {"eventName": "MODIFY"},
        ("eventName",),
        "expected a list of values or matchers, got a string",
    ),
    ("leaf-number", {"n": 5}, ("n",), "expected a list of values or matchers, got an integer"),
    (
        "leaf-empty",
        {"eventName": []},
        ("eventName",),
        "expected at least one value or matcher, got an empty list",
    ),
    (
        "nested-list",
        {"a": [["x"]]},
        ("a", 0),
        "a value must be a string, number, boolean, null or matcher object, got a list",
    ),
    ("nan", {"a": [float("nan")]}, ("a", 0), "numbers in a pattern must be finite, got nan"),
    (
        "unknown-matcher",
        {"eventName": [{"prefixx": "MOD"}]},
        ("eventName", 0, "prefixx"),
        f'unknown matcher "prefixx" (expected one of: {MATCHERS})',
    ),
    (
        "matcher-is-case-sensitive",
        {"a": [{"EXISTS": True}]},
        ("a", 0, "EXISTS"),
        f'unknown matcher "EXISTS" (expected one of: {MATCHERS})',
    ),
    (
        "two-keys",
        {"a": [{"prefix": "a", "suffix": "b"}]},
        ("a", 0),
        "a matcher object must have exactly one key, got 2: prefix, suffix "
        "(put each matcher in its own list item)",
    ),
    (
        "no-keys",
        {"a": [{}]},
        ("a", 0),
        "a matcher object must have exactly one key, got 0: none (put each matcher in its own list item)",
    ),
    (
        "prefix-number",
        {"eventName": [{"prefix": 5}]},
        ("eventName", 0, "prefix"),
        'prefix expects a string or {"equals-ignore-case": "..."}, got an integer',
    ),
    (
        "prefix-bad-object",
        {"a": [{"prefix": {"wildcard": "x"}}]},
        ("a", 0, "prefix"),
        'prefix accepts only {"equals-ignore-case": "..."} as an object, got keys: wildcard',
    ),
    (
        "suffix-ignore-case-number",
        {"a": [{"suffix": {"equals-ignore-case": 1}}]},
        ("a", 0, "suffix", "equals-ignore-case"),
        "suffix equals-ignore-case expects a string, got an integer",
    ),
    (
        "equals-ignore-case-list",
        {"a": [{"equals-ignore-case": ["x"]}]},
        ("a", 0, "equals-ignore-case"),
        "equals-ignore-case expects a string, got a list",
    ),
    (
        "exists-string",
        {"a": [{"exists": "true"}]},
        ("a", 0, "exists"),
        "exists expects true or false, got a string",
    ),
    (
        "wildcard-null",
        {"a": [{"wildcard": None}]},
        ("a", 0, "wildcard"),
        "wildcard expects a string, got null",
    ),
    (
        "wildcard-double-star",
        {"a": [{"wildcard": "a**b"}]},
        ("a", 0, "wildcard"),
        'wildcard "a**b" has consecutive "*" at position 1; use a single "*"',
    ),
    # LocalStack's content_wildcard_complex_EXC, recorded on AWS: "Rule is too complex".
    (
        "wildcard-too-complex",
        {"EventBusArn": [{"wildcard": "*:*:*:*:*:event-bus/*"}]},
        ("EventBusArn", 0, "wildcard"),
        'wildcard "*:*:*:*:*:event-bus/*" is too complex for AWS (complexity over 10): use fewer "*", or '
        "fewer repeated characters after one",
    ),
    (
        "anything-but-wildcard-too-complex",
        {"a": [{"anything-but": {"wildcard": ["x", "*:*:*:*:*:*:*:*:*:*"]}}]},
        ("a", 0, "anything-but", "wildcard"),
        'wildcard "*:*:*:*:*:*:*:*:*:*" is too complex for AWS (complexity over 10): use fewer "*", or '
        "fewer repeated characters after one",
    ),
    (
        "wildcard-bad-escape",
        {"a": [{"wildcard": "a\\b"}]},
        ("a", 0, "wildcard"),
        'wildcard "a\\b" has an invalid escape at position 1; only \\* and \\\\ may be escaped',
    ),
    (
        "numeric-not-list",
        {"n": [{"numeric": ">"}]},
        ("n", 0, "numeric"),
        'numeric expects [operator, number] or [">", low, "<=", high], got a string',
    ),
    (
        "numeric-three-items",
        {"n": [{"numeric": [">", 0, "<"]}]},
        ("n", 0, "numeric"),
        'numeric expects [operator, number] or [">", low, "<=", high], got 3 item(s)',
    ),
    (
        "numeric-bad-operator",
        {"n": [{"numeric": ["~", 5]}]},
        ("n", 0, "numeric", 0),
        'unknown numeric operator "~" (expected one of: <, <=, =, >, >=)',
    ),
    (
        "numeric-string-operand",
        {"n": [{"numeric": [">", "5"]}]},
        ("n", 0, "numeric", 1),
        'numeric operand after ">" must be a number, got a string',
    ),
    (
        "numeric-bool-operand",
        {"n": [{"numeric": ["=", True]}]},
        ("n", 0, "numeric", 1),
        'numeric operand after "=" must be a number, got a boolean',
    ),
    (
        "numeric-range-order",
        {"n": [{"numeric": [">", 0, ">", 0]}]},
        ("n", 0, "numeric"),
        'a numeric range is a lower bound (">" or ">=") then an upper bound ("<" or "<="), got ">" then ">"',
    ),
    (
        "numeric-range-empty",
        {"n": [{"numeric": [">=", 10, "<", 5]}]},
        ("n", 0, "numeric"),
        "numeric range is empty: lower bound 10 is not below upper bound 5",
    ),
    (
        "anything-but-null",
        {"a": [{"anything-but": None}]},
        ("a", 0, "anything-but"),
        "anything-but expects a string, a number, a list of strings or of numbers, or an object with one of: "
        "equals-ignore-case, prefix, suffix, wildcard; got null",
    ),
    (
        "anything-but-empty",
        {"a": [{"anything-but": []}]},
        ("a", 0, "anything-but"),
        "anything-but expects at least one value, got an empty list",
    ),
    (
        "anything-but-bool-item",
        {"a": [{"anything-but": ["x", True]}]},
        ("a", 0, "anything-but", 1),
        "anything-but list items must be strings or numbers, got a boolean",
    ),
    (
        "anything-but-mixed",
        {"a": [{"anything-but": ["x", 5]}]},
        ("a", 0, "anything-but", 1),
        "anything-but list must hold only strings or only numbers, got a string and an integer",
    ),
    (
        "anything-but-unknown",
        {"a": [{"anything-but": {"exists": True}}]},
        ("a", 0, "anything-but", "exists"),
        'unknown anything-but matcher "exists" '
        "(expected one of: equals-ignore-case, prefix, suffix, wildcard)",
    ),
    (
        "anything-but-two-keys",
        {"a": [{"anything-but": {"prefix": "a", "suffix": "b"}}]},
        ("a", 0, "anything-but"),
        "an anything-but object must have exactly one key, got 2: prefix, suffix",
    ),
    (
        "anything-but-prefix-number",
        {"a": [{"anything-but": {"prefix": 1}}]},
        ("a", 0, "anything-but", "prefix"),
        "anything-but prefix expects a string or a non-empty list of strings, got an integer",
    ),
    (
        "anything-but-prefix-empty",
        {"a": [{"anything-but": {"prefix": ""}}]},
        ("a", 0, "anything-but", "prefix"),
        "anything-but prefix must not be empty",
    ),
    (
        "or-not-list",
        {"$or": {"a": ["x"]}},
        ("$or",),
        "$or expects a list of at least two pattern objects, got an object",
    ),
    (
        "or-one-item",
        {"$or": [{"a": ["x"]}]},
        ("$or",),
        "$or expects a list of at least two pattern objects, got 1 item(s)",
    ),
    (
        "or-item-not-object",
        {"$or": [{"a": ["x"]}, "b"]},
        ("$or", 1),
        "each $or item must be a pattern object, got a string",
    ),
    (
        "or-nested-error",
        {"$or": [{"a": ["x"]}, {"b": "y"}]},
        ("$or", 1, "b"),
        "expected a list of values or matchers, got a string",
    ),
]


@pytest.mark.parametrize(("pattern", "path", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_compile_pattern_invalid_raises_pattern_error_with_path(
    pattern: Any, path: tuple[str | int, ...], message: str
) -> None:
    # GIVEN an invalid pattern WHEN it is compiled THEN PatternError names the place and the problem
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    assert caught.value.path == path
    assert caught.value.message == message


def test_compile_pattern_error_str_prefixes_dotted_path() -> None:
    # GIVEN a bad prefix operand WHEN compiled THEN str(error) starts with the dotted path
    with pytest.raises(PatternError, match=r"^eventName\.0\.prefix: prefix expects a string"):
        compile_pattern({"eventName": [{"prefix": 5}]})


def test_pattern_source_is_a_copy_so_later_changes_do_not_leak() -> None:
    # GIVEN a pattern compiled from a dict that is then changed
    written = {"eventName": ["MODIFY"]}
    pattern = compile_pattern(written)
    written["eventName"].append("INSERT")
    # WHEN the pattern is used THEN it keeps what was compiled
    assert pattern.source == {"eventName": ["MODIFY"]}
    assert not pattern.matches({"eventName": "INSERT"})


def test_pattern_equal_sources_in_any_key_order_are_equal_and_hash_alike() -> None:
    # GIVEN the same pattern written with keys in two orders WHEN compared THEN they are one pattern
    first = compile_pattern({"a": ["x"], "b": ["y"]})
    second = compile_pattern({"b": ["y"], "a": ["x"]})
    assert first == second
    assert len({first, second}) == 1
    assert first != compile_pattern({"a": ["x"]})


def test_pattern_is_a_pattern_instance_reused_across_events() -> None:
    # GIVEN one compiled pattern WHEN evaluated many times THEN results depend only on the event
    pattern = compile_pattern({"eventName": ["MODIFY"]})
    assert isinstance(pattern, Pattern)
    assert [pattern.matches({"eventName": name}) for name in ("MODIFY", "INSERT", "MODIFY")] == [
        True,
        False,
        True,
    ]


@given(st.text(), st.text())
def test_anything_but_value_on_present_string_is_negation_of_exact(excluded: str, value: str) -> None:
    # GIVEN [x] and [{"anything-but": [x]}] WHEN evaluated on a present string THEN exactly one matches
    exact = compile_pattern({"f": [excluded]})
    anything_but = compile_pattern({"f": [{"anything-but": [excluded]}]})
    event = {"f": value}
    assert exact.matches(event) != anything_but.matches(event)


@given(st.text(min_size=1), st.text())
def test_anything_but_prefix_on_present_string_is_negation_of_prefix(prefix: str, value: str) -> None:
    # GIVEN prefix p and anything-but prefix p WHEN evaluated on a present string THEN exactly one matches
    positive = compile_pattern({"f": [{"prefix": prefix}]})
    negative = compile_pattern({"f": [{"anything-but": {"prefix": prefix}}]})
    event = {"f": value}
    assert positive.matches(event) != negative.matches(event)


@given(
    st.text(alphabet="ab*", max_size=6).filter(lambda s: "**" not in s), st.text(alphabet="ab*", max_size=6)
)
def test_wildcard_without_escapes_agrees_with_fnmatch_star(wildcard: str, value: str) -> None:
    # GIVEN a wildcard of letters and single stars WHEN matched THEN it agrees with a reference regex
    import re  # noqa: PLC0415 - only this property needs it

    reference = re.fullmatch(".*".join(re.escape(part) for part in wildcard.split("*")), value, re.DOTALL)
    assert compile_pattern({"f": [{"wildcard": wildcard}]}).matches({"f": value}) is (reference is not None)


TENTH = Decimal("0.10000000000000000001")  # a DynamoDB number no float holds; float(TENTH) == 0.1
BEYOND_64 = 2**64 + 1  # float(BEYOND_64) == float(2**64)

EXACT_NUMBER_CASES = [
    ("exact-float-text", {"P": [0.1]}, {"P": 0.1}, True),
    ("exact-decimal-is-not-its-float", {"P": [0.1]}, {"P": TENTH}, False),
    ("exact-decimal-itself", {"P": [TENTH]}, {"P": TENTH}, True),
    ("exact-decimal-pattern-float-exact", {"P": [Decimal("0.1")]}, {"P": 0.1}, True),
    ("exact-big-int", {"P": [BEYOND_64]}, {"P": 2**64}, False),
    ("numeric-gt-decimal-above-bound", {"P": [{"numeric": [">", 0.1]}]}, {"P": TENTH}, True),
    ("numeric-eq-decimal-is-not-bound", {"P": [{"numeric": ["=", 0.1]}]}, {"P": TENTH}, False),
    ("numeric-lt-decimal-below-bound", {"P": [{"numeric": ["<", TENTH]}]}, {"P": 0.1}, True),
    ("numeric-le-float-at-bound", {"P": [{"numeric": ["<=", 0.1]}]}, {"P": 0.1}, True),
    ("numeric-lt-float-at-bound", {"P": [{"numeric": ["<", 0.1]}]}, {"P": 0.1}, False),
    ("numeric-gt-big-int", {"P": [{"numeric": [">", 2**64]}]}, {"P": BEYOND_64}, True),
    ("numeric-eq-big-int-other", {"P": [{"numeric": ["=", 2**64]}]}, {"P": BEYOND_64}, False),
    ("numeric-range-decimals", {"P": [{"numeric": [">", 0.1, "<", 0.2]}]}, {"P": TENTH}, True),
    ("numeric-int-vs-float-bound", {"P": [{"numeric": [">=", 1.5]}]}, {"P": 2}, True),
    ("numeric-nan-never", {"P": [{"numeric": ["<", 1]}]}, {"P": float("nan")}, False),
    ("anything-but-float-lets-decimal-through", {"P": [{"anything-but": [0.1]}]}, {"P": TENTH}, True),
    ("anything-but-decimal-excludes-itself", {"P": [{"anything-but": [TENTH]}]}, {"P": TENTH}, False),
    ("anything-but-float-excludes-float", {"P": [{"anything-but": 0.1}]}, {"P": 0.1}, False),
    ("anything-but-big-int-other", {"P": [{"anything-but": [2**64]}]}, {"P": BEYOND_64}, True),
    ("anything-but-int-excludes-equal-float", {"P": [{"anything-but": [1]}]}, {"P": 1.0}, False),
]


@pytest.mark.parametrize(
    ("pattern", "item", "expected"),
    [c[1:] for c in EXACT_NUMBER_CASES],
    ids=[c[0] for c in EXACT_NUMBER_CASES],
)
def test_matches_numbers_beyond_float_precision_compare_exactly(
    pattern: dict[str, Any], item: dict[str, Any], expected: bool
) -> None:
    # GIVEN a where pattern over numbers and a plain item holding a number no float holds exactly
    # WHEN the item is evaluated
    # THEN numbers compare by their exact decimal value (a float by the number its text shows)
    assert compile_pattern(pattern).matches(item) is expected


# event-ruler's MachineComplexityEvaluatorTest: the number of wildcard prefixes a worst-case value is
# matched by at once, for one pattern.
@pytest.mark.parametrize(
    ("wildcard", "expected"),
    [
        ("*", 1),
        ("abc", 1),
        ("*ab", 2),
        ("*aa", 3),
        ("a*b", 2),
        ("aa*", 2),
        ("a*bbb", 4),
        ("*ab*ad", 4),
        ("*aba*", 4),
        ("a*b*bb", 5),
        ("a*b*cd", 3),
        ("a\\*b*b", 2),  # an escaped star is a character
        # LocalStack, recorded on AWS: accepted (content_wildcard_repeating) and refused (_complex_EXC).
        ("/Users/*/dir/dir/dir/dir/dir/doc.txt", 7),
        ("*:*:*:*:*:event-bus/*", 11),
    ],
)
def test_wildcard_complexity_counts_event_ruler_prefixes(wildcard: str, expected: int) -> None:
    # GIVEN a wildcard WHEN its complexity is evaluated THEN it is event-ruler's number
    assert wildcard_complexity([wildcard]) == expected


def test_compile_pattern_accepts_repeating_wildcard_aws_accepts() -> None:
    # GIVEN the repeating wildcard AWS accepts (LocalStack content_wildcard_repeating, recorded on AWS)
    pattern = compile_pattern({"FileName": [{"wildcard": "/Users/*/dir/dir/dir/dir/dir/doc.txt"}]})
    # WHEN matched THEN it matches as AWS does
    assert pattern.matches({"FileName": "/Users/ls_user/dir/dir/dir/dir/dir/doc.txt"})


def test_normalized_pattern_splits_dotted_keys_and_refuses_one_path_twice() -> None:
    # GIVEN a pattern naming one path with dots and nested WHEN compiled THEN it is refused
    with pytest.raises(PatternError) as caught:
        compile_pattern({"a.b": ["x"], "a": {"b": ["y"]}})
    assert caught.value.path == ("a",)
    assert caught.value.message == "names the field a.b twice (once with dots in a key name); write it once"


_WORDS = st.sampled_from(["", "a", "A", "ab", "aB", "b.", "a*"]) | st.text(alphabet="aAb.*", max_size=4)
_STRING_MATCHERS = st.one_of(
    _WORDS,
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
    st.builds(lambda w: {"prefix": w}, _WORDS),
    st.builds(lambda w: {"suffix": w}, _WORDS),
    st.builds(lambda w: {"prefix": {"equals-ignore-case": w}}, _WORDS),
    st.builds(lambda w: {"equals-ignore-case": w}, _WORDS),
    st.builds(lambda w: {"wildcard": w}, _WORDS.filter(lambda w: "**" not in w)),
    st.builds(lambda b: {"exists": b}, st.booleans()),
    st.builds(lambda n: {"numeric": [">", n]}, st.integers(-3, 3)),
    st.builds(lambda ws: {"anything-but": ws}, st.lists(_WORDS, min_size=1, max_size=3)),
    st.builds(lambda ns: {"anything-but": ns}, st.lists(st.integers(-3, 3), min_size=1, max_size=3)),
    st.builds(lambda w: {"anything-but": {"prefix": w}}, _WORDS.filter(bool)),
    st.builds(lambda w: {"anything-but": {"equals-ignore-case": w}}, _WORDS),
)


@settings(max_examples=400)
@given(st.lists(_STRING_MATCHERS, min_size=1, max_size=3), _WORDS)
def test_matches_string_value_agrees_with_the_same_string_in_an_array(leaf: list[Any], value: str) -> None:
    # GIVEN any leaf of matchers WHEN a field holds a string (the string tests) or a one-string array
    # (the general path) THEN both give one answer: event-ruler matches an array by any element
    try:
        pattern = compile_pattern({"f": leaf})
    except PatternError:
        return  # a combination the compiler refuses (e.g. an empty prefix in anything-but)
    assert pattern.matches({"f": value}) is pattern.matches({"f": [value]})
