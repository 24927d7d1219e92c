"""``indices apply`` against an OpenSearch-compatible server: create, keep, warn, race, template."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from cdcsync.errors import ConfigError, IndexTemplateError
from cdcsync.mapping.compiled import CompiledMapping
from cdcsync.settings import load_settings
from cdcsync.sink.client import build_client
from cdcsync.sink.indices import IndexReport, apply_indices, template_priority
from tests.support.records import compiled, mapping_set

BODY = {
    "settings": {"index": {"number_of_shards": 1}},
    "mappings": {"properties": {"username": {"type": "keyword"}}},
}


def mapping(index: str, index_body: dict[str, Any] | None = None, table: str = "Users") -> CompiledMapping:
    options: dict[str, Any] = {"table": table, "index": index}
    if index_body is not None:
        options["index_body"] = index_body
    return compiled(**options)


def gc_deletes(opensearch: OpenSearch, index: str) -> str:
    """Of ``index`` or, for an alias, of its one index."""
    settings = opensearch.indices.get_settings(index=index, params={"flat_settings": "true"})
    (entry,) = settings.values()
    return str(entry["settings"]["index.gc_deletes"])


def created(name: str) -> IndexReport:
    """``name`` created as ``name-000001`` behind the alias ``name``."""
    return IndexReport(name, "created", physical=f"{name}-000001")


def warning_for(index: str, value: str) -> str:
    return (
        f"index.gc_deletes is {value}: a write replayed more than {value} after a delete can resurrect "
        f'the document; run PUT {index}/_settings {{"index.gc_deletes": "24h"}}'
    )


@pytest.fixture
def template_cleanup(opensearch: OpenSearch) -> Iterator[list[str]]:
    """Index templates a test puts; deleted afterwards (unique_name only cleans up indices)."""
    names: list[str] = []
    yield names
    for name in names:
        opensearch.indices.delete_index_template(name=name, ignore=[404])


def test_apply_indices_creates_missing_index_with_body_and_gc_deletes(
    opensearch: OpenSearch, unique_name: str
) -> None:
    # GIVEN a mapping whose index is missing, with settings, field mappings and an alias
    body = {**BODY, "aliases": {f"{unique_name}-read": {}}}
    # WHEN applied
    reports = apply_indices(opensearch, mapping_set(mapping(unique_name, body)))
    # THEN the index is created from index_body as NAME-000001 behind the alias NAME (its write
    # index), with gc_deletes raised to the stream retention
    physical = f"{unique_name}-000001"
    assert reports == [created(unique_name)]
    assert str(reports[0]) == f"{unique_name}: created as {physical} behind the alias {unique_name}"
    assert gc_deletes(opensearch, physical) == "24h"
    props = opensearch.indices.get_mapping(index=unique_name)[physical]["mappings"]["properties"]
    assert props == {"username": {"type": "keyword"}}
    aliases = opensearch.indices.get_alias(index=physical)[physical]["aliases"]
    assert aliases == {f"{unique_name}-read": {}, unique_name: {"is_write_index": True}}


def test_apply_indices_without_index_body_still_raises_gc_deletes(
    opensearch: OpenSearch, unique_name: str
) -> None:
    # GIVEN a mapping with no index_body WHEN applied THEN the index is created with gc_deletes 24h
    assert apply_indices(opensearch, mapping_set(mapping(unique_name))) == [created(unique_name)]
    assert gc_deletes(opensearch, unique_name) == "24h"


@pytest.mark.parametrize(
    "settings",
    [{"index.gc_deletes": "2h"}, {"index": {"gc_deletes": "2h"}}, {"gc_deletes": "2h"}],
    ids=["flat", "nested", "unprefixed"],
)
def test_apply_indices_keeps_gc_deletes_from_index_body(
    opensearch: OpenSearch, unique_name: str, settings: dict[str, Any]
) -> None:
    # GIVEN a mapping that sets gc_deletes itself, in any spelling OpenSearch accepts
    # WHEN applied THEN its value is kept, not overridden by the 24h default
    apply_indices(opensearch, mapping_set(mapping(unique_name, {"settings": settings})))
    assert gc_deletes(opensearch, unique_name) == "2h"


@pytest.mark.parametrize(
    ("existing", "warning"),
    [
        ({}, "60s"),  # the OpenSearch default
        ({"index.gc_deletes": "10s"}, "10s"),
        ({"index.gc_deletes": "1h"}, "1h"),
        ({"index.gc_deletes": "24h"}, None),
        ({"index.gc_deletes": "2d"}, None),
    ],
)
def test_apply_indices_existing_index_left_alone_and_short_gc_deletes_warned(
    opensearch: OpenSearch, unique_name: str, existing: dict[str, str], warning: str | None
) -> None:
    # GIVEN an index that already exists with `existing` settings
    opensearch.indices.create(index=unique_name, body={"settings": existing})
    # WHEN applied with a different index_body
    reports = apply_indices(opensearch, mapping_set(mapping(unique_name, BODY)))
    # THEN the concrete index keeps its name (no alias) and its settings, a gc_deletes shorter than
    # 24h is warned about, and the field index_body adds is added in place (drift: an addition)
    expected = IndexReport(
        unique_name,
        "exists",
        warning_for(unique_name, warning) if warning else None,
        changed=("field username (keyword)",),
    )
    assert reports == [expected]
    if warning:
        assert str(reports[0]) == f"{unique_name}: exists (warning: {warning_for(unique_name, warning)})"
    assert not opensearch.indices.exists_alias(name=unique_name)
    assert opensearch.indices.get_mapping(index=unique_name)[unique_name]["mappings"]["properties"] == {
        "username": {"type": "keyword"}
    }


def test_apply_indices_concurrent_applies_both_succeed(
    opensearch: OpenSearch, opensearch_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two processes that both find the index missing before either creates it (a barrier
    # after the real existence check lines them up; every request is real HTTP)
    client = build_client(load_settings(opensearch_url=opensearch_url))
    both_checked = threading.Barrier(2, timeout=10)
    exists = client.indices.exists

    def exists_then_wait(**kwargs: Any) -> bool:
        found = bool(exists(**kwargs))
        both_checked.wait()
        return found

    monkeypatch.setattr(client.indices, "exists", exists_then_wait)
    mappings = mapping_set(mapping(unique_name, BODY))
    reports: list[list[IndexReport]] = []
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            reports.append(apply_indices(client, mappings))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread to assert on
            errors.append(exc)

    threads = [threading.Thread(target=apply) for _ in range(2)]
    # WHEN both apply at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN neither fails: one created the index, the other lost the race and reports it as existing
    assert errors == []
    assert sorted(r.action for (r,) in reports) == ["created", "exists"]
    assert all(r.warning is None for (r,) in reports)
    assert gc_deletes(opensearch, unique_name) == "24h"


def test_apply_indices_templated_index_puts_index_template(
    opensearch: OpenSearch, unique_name: str, template_cleanup: list[str]
) -> None:
    # GIVEN a mapping with a templated index name (one index per region)
    template_cleanup.append(f"cdcsync-{unique_name}-orders")
    orders = mapping(f"{unique_name}-orders-{{Region}}", BODY, table="Orders")
    # WHEN applied
    reports = apply_indices(opensearch, mapping_set(orders))
    # THEN an index template matches every name the template can give, with the body and gc_deletes
    assert reports == [IndexReport(f"{unique_name}-orders-*", "template")]
    (entry,) = opensearch.indices.get_index_template(name=f"cdcsync-{unique_name}-orders")["index_templates"]
    assert entry["index_template"]["index_patterns"] == [f"{unique_name}-orders-*"]
    # AND an index created later by a write gets them
    opensearch.index(index=f"{unique_name}-orders-eu", id="1", body={"username": "a"})
    assert gc_deletes(opensearch, f"{unique_name}-orders-eu") == "24h"
    props = opensearch.indices.get_mapping(index=f"{unique_name}-orders-eu")[f"{unique_name}-orders-eu"]
    assert props["mappings"]["properties"]["username"] == {"type": "keyword"}


def test_apply_indices_all_placeholder_index_puts_no_template(
    opensearch: OpenSearch, unique_name: str, template_cleanup: list[str]
) -> None:
    # GIVEN a mapping whose index name is nothing but placeholders
    template_cleanup.append("cdcsync-")
    everything = mapping("{Region}{Kind}", BODY, table="Orders")
    # WHEN applied
    (report,) = apply_indices(opensearch, mapping_set(everything))
    # THEN no template over every index is put; the operator is told why and what to do
    assert report == IndexReport(
        "{Region}{Kind}",
        "skipped",
        f'index "{{Region}}{{Kind}}" ({everything.source}) has no literal part, so an index template for '
        "it would match every index; none was put: create its indices yourself with index.gc_deletes = 24h",
    )
    with pytest.raises(NotFoundError):
        opensearch.indices.get_index_template(name="cdcsync-")


def test_apply_indices_same_index_in_two_mappings_applied_once(
    opensearch: OpenSearch, unique_name: str
) -> None:
    # GIVEN two mappings (two tables) writing one index WHEN applied THEN it is created once
    reports = apply_indices(
        opensearch, mapping_set(mapping(unique_name, BODY), mapping(unique_name, table="Orders"))
    )
    assert reports == [created(unique_name)]


V2_BODY = {
    "settings": {"index": {"number_of_shards": 1}},
    "mappings": {"properties": {"username": {"type": "keyword"}, "total": {"type": "long"}}},
}


def test_apply_indices_rebuild_of_templated_index_gets_its_own_template(
    opensearch: OpenSearch, unique_name: str, template_cleanup: list[str]
) -> None:
    # GIVEN a templated index and its rebuild, whose pattern orders-v2-* overlaps orders-*
    template_cleanup += [f"cdcsync-{unique_name}-orders", f"cdcsync-{unique_name}-orders-v2"]
    v1 = mapping(f"{unique_name}-orders-{{Region}}", BODY, table="Orders")
    v2 = mapping(f"{unique_name}-orders-v2-{{Region}}", V2_BODY, table="Orders")
    # WHEN applied
    reports = apply_indices(opensearch, mapping_set(v1, v2))
    # THEN both templates are put, the more specific pattern at the higher priority
    assert reports == [
        IndexReport(f"{unique_name}-orders-*", "template"),
        IndexReport(f"{unique_name}-orders-v2-*", "template"),
    ]
    priorities = {
        entry["name"]: entry["index_template"]["priority"]
        for entry in opensearch.indices.get_index_template(name=f"cdcsync-{unique_name}-orders*")[
            "index_templates"
        ]
    }
    assert priorities[f"cdcsync-{unique_name}-orders-v2"] > priorities[f"cdcsync-{unique_name}-orders"]
    # AND a v2 index created by a write gets the rebuild's field mapping, a v1 index the old one
    for name in (f"{unique_name}-orders-v2-eu", f"{unique_name}-orders-eu"):
        opensearch.index(index=name, id="1", body={"username": "a"})
    props = {
        name: opensearch.indices.get_mapping(index=name)[name]["mappings"]["properties"]
        for name in (f"{unique_name}-orders-v2-eu", f"{unique_name}-orders-eu")
    }
    assert props[f"{unique_name}-orders-v2-eu"]["total"] == {"type": "long"}
    assert "total" not in props[f"{unique_name}-orders-eu"]
    assert gc_deletes(opensearch, f"{unique_name}-orders-v2-eu") == "24h"


def test_apply_indices_refused_template_is_one_line_config_error(
    opensearch: OpenSearch, unique_name: str, template_cleanup: list[str]
) -> None:
    # GIVEN another application's template with the same pattern, at the priority cdcsync would use
    pattern = f"{unique_name}-orders-*"
    template_cleanup += [f"other-{unique_name}", f"cdcsync-{unique_name}-orders"]
    opensearch.indices.put_index_template(
        name=f"other-{unique_name}",
        body={"index_patterns": [pattern], "priority": template_priority(pattern)},
    )
    orders = mapping(f"{unique_name}-orders-{{Region}}", BODY, table="Orders")
    # WHEN applied
    with pytest.raises(IndexTemplateError) as caught:
        apply_indices(opensearch, mapping_set(orders))
    # THEN a configuration error names the mapping, the template, the pattern and what to do, on one line
    assert isinstance(caught.value, ConfigError)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        f'{orders.source}: index "{unique_name}-orders-{{Region}}": OpenSearch refused index template '
        f'cdcsync-{unique_name}-orders for "{pattern}" at priority {template_priority(pattern)}: '
        f"index template [cdcsync-{unique_name}-orders] has index patterns [{pattern}] matching patterns "
        f"from existing templates [other-{unique_name}]"
    )
    assert message.endswith(
        "; rename the index so that no template of the same priority matches the names it can take, "
        "or give the other template another priority"
    )


def test_apply_indices_new_field_and_dynamic_setting_applied_in_place(
    opensearch: OpenSearch, unique_name: str
) -> None:
    # GIVEN an index created from BODY
    apply_indices(opensearch, mapping_set(mapping(unique_name, BODY)))
    # WHEN index_body gains a field, a multi-field and a dynamic setting
    body = {
        "settings": {"index": {"number_of_shards": 1, "refresh_interval": "5s"}},
        "mappings": {
            "properties": {
                "username": {"type": "keyword", "fields": {"text": {"type": "text"}}},
                "total": {"type": "long"},
            }
        },
    }
    diff = apply_indices(opensearch, mapping_set(mapping(unique_name, body)), change=False)
    reports = apply_indices(opensearch, mapping_set(mapping(unique_name, body)))
    # THEN diff lists them without changing anything, apply puts them in place, and nothing needs a rebuild
    changes = (
        "field username.text (text)",
        "field total (long)",
        "setting index.refresh_interval: unset -> 5s",
    )
    physical = f"{unique_name}-000001"
    assert diff == [IndexReport(unique_name, "exists", physical=physical, changed=changes)]
    assert reports == diff
    assert reports[0].lines(applied=True) == [
        f"{unique_name}: exists",
        f"{unique_name}: field username.text (text): applied",
        f"{unique_name}: field total (long): applied",
        f"{unique_name}: setting index.refresh_interval: unset -> 5s: applied",
    ]
    props = opensearch.indices.get_mapping(index=unique_name)[physical]["mappings"]["properties"]
    assert props == body["mappings"]["properties"]
    again = apply_indices(opensearch, mapping_set(mapping(unique_name, body)), change=False)
    assert again == [IndexReport(unique_name, "exists", physical=physical)]


def test_apply_indices_type_change_and_shard_count_need_rebuild(
    opensearch: OpenSearch, unique_name: str
) -> None:
    # GIVEN an index created from BODY (username: keyword, 1 shard)
    apply_indices(opensearch, mapping_set(mapping(unique_name, BODY)))
    # WHEN index_body changes a field's type, adds an analyzer and asks for 2 shards
    body = {
        "settings": {
            "index": {"number_of_shards": 2},
            "analysis": {"analyzer": {"folded": {"type": "custom", "tokenizer": "standard"}}},
        },
        "mappings": {"properties": {"username": {"type": "text"}}},
    }
    (report,) = apply_indices(opensearch, mapping_set(mapping(unique_name, body)))
    # THEN each is reported per field or setting as needing a rebuild of the mapping's table, and
    # nothing was changed
    assert report.changed == ()
    assert report.lines(applied=True) == [
        f"{unique_name}: exists",
        f"{unique_name}: field username: type keyword in the index, text in index_body: "
        "needs `cdcsync rebuild --table Users`",
        f"{unique_name}: setting index.number_of_shards: 1 in the index, 2 in index_body: "
        "needs `cdcsync rebuild --table Users`",
        f"{unique_name}: setting index.analysis.analyzer.folded.type: unset in the index, custom in "
        "index_body: needs `cdcsync rebuild --table Users`",
        f"{unique_name}: setting index.analysis.analyzer.folded.tokenizer: unset in the index, standard "
        "in index_body: needs `cdcsync rebuild --table Users`",
    ]
    physical = f"{unique_name}-000001"
    props = opensearch.indices.get_mapping(index=unique_name)[physical]["mappings"]["properties"]
    assert props == {"username": {"type": "keyword"}}
