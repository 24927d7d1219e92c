"""Export of a table's mapping filters as Lambda FilterCriteria (limits from the Lambda developer guide)."""

from __future__ import annotations

import json

import pytest

from cdcsync.mapping.filter_criteria import FilterCriteriaExport, filter_criteria
from cdcsync.mapping.patterns import Pattern, compile_pattern


def test_filter_criteria_only_modify_events_exports_seed_criteria() -> None:
    # GIVEN the seed use case: only MODIFY events invoke the function
    pattern = compile_pattern({"eventName": ["MODIFY"]})
    # WHEN the table's criteria are exported
    export = filter_criteria([pattern], table="Users")
    # THEN it is exactly the FilterCriteria Lambda expects, with compact JSON
    assert export == FilterCriteriaExport(
        criteria={"Filters": [{"Pattern": '{"eventName":["MODIFY"]}'}]}, warnings=()
    )


def test_filter_criteria_several_mappings_keeps_one_filter_each_in_order() -> None:
    # GIVEN two mappings with different filters (Lambda ORs the filters of one event source mapping)
    first = compile_pattern({"eventName": ["INSERT", "MODIFY"]})
    second = compile_pattern({"dynamodb": {"NewImage": {"Status": {"S": ["active"]}}}})
    # WHEN exported
    export = filter_criteria([first, second], table="Users")
    # THEN both filters are there, in mapping order
    assert export.warnings == ()
    assert export.criteria == {
        "Filters": [
            {"Pattern": '{"eventName":["INSERT","MODIFY"]}'},
            {"Pattern": '{"dynamodb":{"NewImage":{"Status":{"S":["active"]}}}}'},
        ]
    }


def test_filter_criteria_identical_patterns_are_deduplicated() -> None:
    # GIVEN three mappings, two with the same filter written in a different key order
    a = compile_pattern({"eventName": ["MODIFY"], "eventSource": ["aws:dynamodb"]})
    b = compile_pattern({"eventSource": ["aws:dynamodb"], "eventName": ["MODIFY"]})
    c = compile_pattern({"eventName": ["REMOVE"]})
    # WHEN exported
    export = filter_criteria([a, b, c], table="Users")
    # THEN the duplicate is exported once, as the first mapping wrote it
    assert export.criteria == {
        "Filters": [
            {"Pattern": '{"eventName":["MODIFY"],"eventSource":["aws:dynamodb"]}'},
            {"Pattern": '{"eventName":["REMOVE"]}'},
        ]
    }


@pytest.mark.parametrize(
    ("has_filter", "warning"),
    [
        (
            [True, False],
            "Mapping 2 of table Users has no filter (every record), so no FilterCriteria is exported and "
            "Lambda delivers every record; that is right for a mapping that selects items with where, "
            "which needs every REMOVE and MODIFY to delete what leaves it; give a mapping a filter only "
            "for records it never needs.",
        ),
        (
            [False, True, False],
            "Mappings 1 and 3 of table Users have no filter (every record), so no FilterCriteria is "
            "exported and Lambda delivers every record; that is right for a mapping that selects items "
            "with where, which needs every REMOVE and MODIFY to delete what leaves it; give a mapping a "
            "filter only for records it never needs.",
        ),
    ],
)
def test_filter_criteria_mapping_without_filter_exports_nothing(has_filter: list[bool], warning: str) -> None:
    # GIVEN mappings of which some have no filter (they need every record)
    pattern = compile_pattern({"eventName": ["MODIFY"]})
    patterns = [pattern if present else None for present in has_filter]
    # WHEN exported
    export = filter_criteria(patterns, table="Users")
    # THEN nothing is pushed down and the warning says which mappings and why
    assert export == FilterCriteriaExport(criteria=None, warnings=(warning,))


def test_filter_criteria_no_mappings_exports_nothing() -> None:
    # GIVEN a table without mappings WHEN exported THEN nothing is pushed down, with a reason
    export = filter_criteria([], table="Orders")
    assert export == FilterCriteriaExport(
        None, ("Table Orders has no mappings, so there is no filter to export.",)
    )


def _distinct(count: int) -> list[Pattern | None]:
    return [compile_pattern({"dynamodb": {"Keys": {"PK": {"S": [f"TENANT#{n}"]}}}}) for n in range(count)]


def test_filter_criteria_five_filters_is_within_default_quota() -> None:
    # GIVEN exactly 5 distinct filters (Lambda's default quota) WHEN exported THEN all 5 are pushed down
    export = filter_criteria(_distinct(5), table="Users")
    assert export.warnings == ()
    assert export.criteria is not None
    assert len(export.criteria["Filters"]) == 5


def test_filter_criteria_more_than_five_filters_exports_nothing() -> None:
    # GIVEN 6 distinct filters WHEN exported THEN AWS would reject them, so nothing is pushed down
    export = filter_criteria(_distinct(6), table="Users")
    assert export == FilterCriteriaExport(
        None,
        (
            "Table Users needs 6 distinct filters, more than the 5 filters per event source mapping that "
            "Lambda allows, so no FilterCriteria is exported; merge filters with $or, or request a Lambda "
            "quota increase (up to 10 filters) and pass the raised limit.",
        ),
    )


def test_filter_criteria_raised_quota_allows_more_filters() -> None:
    # GIVEN 6 distinct filters and a quota raised to 10 WHEN exported THEN all 6 are pushed down
    export = filter_criteria(_distinct(6), table="Users", max_filters=10)
    assert export.warnings == ()
    assert export.criteria is not None
    assert len(export.criteria["Filters"]) == 6


def _pattern_of_length(length: int) -> Pattern:
    skeleton = json.dumps({"k": [""]}, separators=(",", ":"))
    pattern = compile_pattern({"k": ["x" * (length - len(skeleton))]})
    assert len(json.dumps(pattern.source, separators=(",", ":"))) == length
    return pattern


def test_filter_criteria_pattern_of_4096_characters_is_exported() -> None:
    # GIVEN a filter whose JSON is exactly Lambda's 4096-character limit WHEN exported THEN it is pushed down
    export = filter_criteria([_pattern_of_length(4096)], table="Users")
    assert export.warnings == ()
    assert export.criteria is not None


def test_filter_criteria_pattern_over_4096_characters_exports_nothing() -> None:
    # GIVEN a filter of 4097 characters of JSON
    # WHEN exported THEN nothing is pushed down and the size is named
    export = filter_criteria([_pattern_of_length(4097)], table="Users")
    assert export == FilterCriteriaExport(
        None,
        (
            "Filter 1 of table Users is 4097 characters of JSON, over Lambda's 4096-character limit for a "
            "filter pattern, so no FilterCriteria is exported; shorten the filter.",
        ),
    )


@pytest.mark.parametrize(
    ("pattern", "operator"),
    [
        ({"k": [{"wildcard": "a*"}]}, "wildcard"),
        (
            {"$or": [{"a": ["x"]}, {"k": [{"anything-but": {"prefix": "a"}}]}]},
            "anything-but with an object (prefix, suffix, equals-ignore-case, wildcard)",
        ),
    ],
)
def test_filter_criteria_operator_lambda_does_not_support_exports_nothing(
    pattern: dict[str, object], operator: str
) -> None:
    # GIVEN a filter using an operator Lambda event source mappings do not support
    export = filter_criteria([compile_pattern(pattern)], table="Users")
    # WHEN exported THEN nothing is pushed down and the operator is named
    assert export == FilterCriteriaExport(
        None,
        (
            f"Filter 1 of table Users uses {operator}, which Lambda event source mappings do not support, "
            "so no FilterCriteria is exported; the filter still applies in-process.",
        ),
    )
