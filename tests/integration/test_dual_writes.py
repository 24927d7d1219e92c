"""Dual writes during a rebuild: every writer copies each action to the index behind NAME-rebuild."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from cdcsync.sink.copies import IndexCopies
from tests.integration.lambda_world import LambdaWorld, make_world

T0 = 1_700_000_000


@pytest.fixture
def world(
    tmp_path: Path,
    unique_name: str,
    opensearch: OpenSearch,
    opensearch_url: str,
    dynamodb: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> LambdaWorld:
    """The Lambda handler writing NAME (an alias on NAME-000001) while NAME-rebuild names NAME-000002."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    opensearch.indices.create(
        index=f"{unique_name}-000001", body={"aliases": {unique_name: {"is_write_index": True}}}
    )
    opensearch.indices.create(index=f"{unique_name}-000002", body={"aliases": {f"{unique_name}-rebuild": {}}})
    return make_world(
        tmp_path,
        unique_name=unique_name,
        opensearch=opensearch,
        opensearch_url=opensearch_url,
        dynamodb=dynamodb,
    )


def versions(opensearch: OpenSearch, index: str) -> dict[str, tuple[int, dict[str, Any]]]:
    opensearch.indices.refresh(index=index)
    hits = opensearch.search(index=index, body={"query": {"match_all": {}}, "size": 100, "version": True})
    return {hit["_id"]: (hit["_version"], hit["_source"]) for hit in hits["hits"]["hits"]}


def test_dual_writes_each_action_reaches_both_indices_with_its_version(world: LambdaWorld) -> None:
    # GIVEN a rebuild under way (NAME-rebuild -> NAME-000002)
    old, new = f"{world.index}-000001", f"{world.index}-000002"
    # WHEN the handler applies inserts, an update and a delete
    answer = world.invoke(
        world.record("INSERT", 1, {"UserId": 1, "Age": 30}, seconds=T0),
        world.record("INSERT", 2, {"UserId": 2, "Age": 40}, seconds=T0),
        world.record("INSERT", 3, {"UserId": 3, "Age": 50}, seconds=T0),
    )
    answer2 = world.invoke(
        world.record("MODIFY", 2, {"UserId": 2, "Age": 41}, {"UserId": 2, "Age": 40}, seconds=T0 + 1),
        world.record("REMOVE", 3, None, {"UserId": 3, "Age": 50}, seconds=T0 + 1),
    )
    # THEN both indices hold the same documents at the same external versions, each action was
    # copied once (5 actions, 5 copies), and the records count once each
    assert answer == answer2 == {"batchItemFailures": []}
    assert versions(world.opensearch, old) == versions(world.opensearch, new)
    assert set(versions(world.opensearch, new)) == {"1", "2"}
    assert versions(world.opensearch, new)["2"][1] == {"UserId": 2, "Age": 41}
    assert world.metrics.registry.get_sample_value("cdcsync_rebuild_dual_writes_total") == 5
    assert world.counter("INSERT", "indexed") == 3


def test_dual_writes_copy_landing_first_changes_nothing(world: LambdaWorld) -> None:
    # GIVEN the new index already holds a newer version of a document (its copy landed first)
    new = f"{world.index}-000002"
    newer = {"UserId": 1, "Age": 31}
    world.opensearch.index(
        index=new, id="1", body=newer, params={"version": (T0 + 5) * 1000, "version_type": "external_gte"}
    )
    # WHEN an older change of it is written to both
    answer = world.invoke(world.record("INSERT", 1, {"UserId": 1, "Age": 30}, seconds=T0))
    # THEN the old index takes it, the new one keeps the newer version (stale, not an error)
    assert answer == {"batchItemFailures": []}
    assert versions(world.opensearch, new)["1"][1] == newer
    assert versions(world.opensearch, f"{world.index}-000001")["1"][1] == {"UserId": 1, "Age": 30}
    assert world.dead_letters() == []


def test_dual_writes_copy_rejected_by_new_index_dead_letters_record(world: LambdaWorld) -> None:
    # GIVEN a new index whose field mapping refuses a value the old one takes
    new = f"{world.index}-000002"
    world.opensearch.indices.put_mapping(index=new, body={"properties": {"Age": {"type": "long"}}})
    # WHEN a record with such a value is written
    answer = world.invoke(world.record("INSERT", 1, {"UserId": 1, "Age": "thirty"}, seconds=T0))
    # THEN the record is a dead letter (redrive writes it again to both), not silently missing
    assert answer == {"batchItemFailures": []}
    (letter,) = world.dead_letters()
    assert letter.error.type == "mapper_parsing_exception"


def test_index_copies_new_rebuild_alias_seen_after_refresh_period(
    opensearch: OpenSearch, unique_name: str
) -> None:
    # GIVEN a writer that read the aliases before a rebuild began (refresh every 30 s)
    now = [1000.0]
    copies = IndexCopies(opensearch, 30, clock=lambda: now[0])
    opensearch.indices.create(index=f"{unique_name}-000001", body={"aliases": {unique_name: {}}})
    assert unique_name not in copies.targets()
    # WHEN the rebuild points NAME-rebuild at its new index
    opensearch.indices.create(index=f"{unique_name}-000002", body={"aliases": {f"{unique_name}-rebuild": {}}})
    # THEN the writer sees it no later than 30 s after its last read, not before
    now[0] += 29.9
    assert unique_name not in copies.targets()
    now[0] += 0.1
    assert copies.targets()[unique_name] == f"{unique_name}-000002"
