"""Dead-letter redrive and the CLI verbs around it, against moto and the local OpenSearch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from cdcsync.entrypoints.cli import main
from tests.integration.lambda_world import LambdaWorld, WorldFactory, make_world
from tests.support.fault_proxy import FaultProxy, fault_proxy, is_bulk

T0 = 1_700_000_000


@pytest.fixture
def world(
    world_factory: WorldFactory,
    tmp_path: Path,
    opensearch: OpenSearch,
    opensearch_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> LambdaWorld:
    world = world_factory()
    # The CLI reads the same settings from the environment.
    monkeypatch.setenv("CDCSYNC_MAPPINGS", str(tmp_path / "mappings.yaml"))
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", opensearch_url)
    monkeypatch.setenv("CDCSYNC_DLQ", f"file://{world.dlq_path}")
    monkeypatch.chdir(tmp_path)
    opensearch.indices.create(index=world.index, body={"mappings": {"properties": {"Age": {"type": "long"}}}})
    return world


def put(world: LambdaWorld, key: int, age: str) -> dict[str, Any]:
    item = {"UserId": {"N": str(key)}, "Age": {"N": age} if age.isdigit() else {"S": age}}
    world.dynamodb.put_item(TableName=world.table, Item=item)
    return {"UserId": key, "Age": int(age) if age.isdigit() else age}


def test_redrive_fixed_item_is_written_and_entry_removed(
    world: LambdaWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN three dead letters: an item since fixed, one since deleted, one still broken
    bad = [put(world, key, "thirty") for key in (1, 2, 3)]
    world.invoke(*(world.record("INSERT", item["UserId"], item, seconds=T0) for item in bad))
    assert len(world.dead_letters()) == 3
    put(world, 1, "30")
    world.dynamodb.delete_item(TableName=world.table, Key={"UserId": {"N": "2"}})
    world.opensearch.index(
        index=world.index, id="2", body={"UserId": 2}, params={"version": 1, "version_type": "external"}
    )
    # WHEN the operator lists and redrives them
    assert main(["dlq", "show"]) == 0
    shown = capsys.readouterr()
    assert shown.err.strip() == f"3 dead letters in file://{world.dlq_path}"
    assert "mapper_parsing_exception" in shown.out
    code = main(["dlq", "redrive"])
    out, err = capsys.readouterr()
    # THEN the fixed item is indexed as the table holds it, the deleted one's document is gone,
    # the broken one stays in the queue with the reason, and the command says so (exit 1)
    assert code == 1
    assert out.strip() == f"redriven 2, left 1 in file://{world.dlq_path}"
    assert "mapper_parsing_exception" in err
    (problem,) = err.splitlines()
    assert problem.startswith(f'{world.table} {{"UserId":{{"N":"3"}}}} (letter ')  # keys as JSON, as dlq show
    assert world.doc("1") == {"UserId": 1, "Age": 30}
    assert world.doc("2") is None
    (left,) = world.dead_letters()
    assert left.keys == {"UserId": {"N": "3"}}


def test_redrive_version_is_below_a_change_made_after_the_read(world: LambdaWorld) -> None:
    # GIVEN a dead letter for an item that has since been fixed
    item = put(world, 1, "thirty")
    world.invoke(world.record("INSERT", 1, item, seconds=T0))
    put(world, 1, "30")
    assert main(["dlq", "redrive"]) == 0
    version = world.opensearch.get(index=world.index, id="1")["_version"]
    # WHEN a stream change of the same whole second as the read arrives afterwards
    read_second = version + 5000  # read_version = read time - 5 s
    newer = world.record(
        "MODIFY", 1, {"UserId": 1, "Age": 31}, {"UserId": 1, "Age": 30}, seconds=read_second // 1000
    )
    world.invoke(newer)
    # THEN it wins: the redrive write never hides a later change
    assert world.doc("1") == {"UserId": 1, "Age": 31}


def test_cli_dlq_show_json_prints_letters(world: LambdaWorld, capsys: pytest.CaptureFixture[str]) -> None:
    item = put(world, 1, "thirty")
    world.invoke(world.record("INSERT", 1, item, seconds=T0))
    assert main(["dlq", "show", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    letter = json.loads(line)
    assert (letter["table"], letter["id"], letter["error"]["status"]) == (world.table, "1", 400)


def test_cli_indices_apply_creates_index_with_gc_deletes(
    world: LambdaWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"{world.index}-applied"
    mapping = tmp_path / "applied.yaml"
    mapping.write_text(
        f"table: T\nindex: {name}\nindex_body:\n  mappings: {{properties: {{n: {{type: long}}}}}}\n"
    )
    assert main(["indices", "apply", "--mappings", str(mapping)]) == 0
    assert capsys.readouterr().out.strip() == f"{name}: created as {name}-000001 behind the alias {name}"
    settings = world.opensearch.indices.get_settings(index=name, params={"flat_settings": "true"})
    assert settings[f"{name}-000001"]["settings"]["index.gc_deletes"] == "24h"


def test_cli_indices_diff_and_apply_report_drift_exit_1_on_rebuild(
    world: LambdaWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an index applied from a mapping, whose index_body then changes a type and adds a field
    name = f"{world.index}-drift"
    mapping = tmp_path / "drift.yaml"
    mapping.write_text(
        f"table: T\nindex: {name}\nindex_body:\n  mappings: {{properties: {{n: {{type: long}}}}}}\n"
    )
    assert main(["indices", "apply", "--mappings", str(mapping)]) == 0
    capsys.readouterr()
    mapping.write_text(
        f"table: T\nindex: {name}\nindex_body:\n"
        "  mappings: {properties: {n: {type: keyword}, m: {type: long}}}\n"
    )
    rebuild = (
        f"{name}: field n: type long in the index, keyword in index_body: needs `cdcsync rebuild --table T`"
    )
    # WHEN diffed THEN both are listed, nothing changes, exit 1
    assert main(["indices", "diff", "--mappings", str(mapping)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{name}: exists",
        f"{name}: field m (long): can be applied in place",
        rebuild,
    ]
    # WHEN applied THEN the new field is added, the type change is left for a rebuild, exit 1
    assert main(["indices", "apply", "--mappings", str(mapping)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{name}: exists",
        f"{name}: field m (long): applied",
        rebuild,
    ]
    props = world.opensearch.indices.get_mapping(index=name)[f"{name}-000001"]["mappings"]["properties"]
    assert (props["n"], props["m"]) == ({"type": "long"}, {"type": "long"})  # (+ the version check's field)


def test_cli_verify_reports_drift_and_repair_fixes_it(
    world: LambdaWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an item in the table whose document is missing from the index
    put(world, 5, "40")
    # WHEN verified THEN the drift is reported with exit 1, and --repair fixes it (exit 0, clean after)
    assert main(["verify", "--table", world.table]) == 1
    assert "1 missing" in capsys.readouterr().out
    assert main(["verify", "--table", world.table, "--repair"]) == 0
    assert world.doc("5") == {"UserId": 5, "Age": 40}
    assert main(["verify", "--table", world.table]) == 0


def test_cli_backfill_loads_existing_items(
    world: LambdaWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN items that were in the table before any stream record was read
    monkeypatch.setenv("CDCSYNC_CHECKPOINTS", f"file://{tmp_path / 'checkpoints.json'}")
    for key in (1, 2, 3):
        put(world, key, str(20 + key))
    # WHEN they are backfilled THEN each is indexed and the summary says so
    assert main(["backfill", "--table", world.table, "--segments", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"backfill of {world.table}: 3 items read, 3 written")
    assert world.docs() == {str(k): {"UserId": k, "Age": 20 + k} for k in (1, 2, 3)}


def _index_doc(world: LambdaWorld, index: str, key: int) -> None:
    world.opensearch.index(
        index=index, id=str(key), body={"UserId": key}, params={"version": 1, "version_type": "external"}
    )


def test_redrive_letter_of_removed_item_deletes_only_its_own_mappings_document(
    world: LambdaWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a dead letter of mapping "users" for an item since removed, and a second mapping of the
    # table, "users-archive", whose deletes say on_remove: ignore, holding the item's document
    item = put(world, 1, "thirty")
    world.invoke(world.record("INSERT", 1, item, seconds=T0))
    (letter,) = world.dead_letters()
    archive = f"{world.index}-archive"
    (tmp_path / "mappings.yaml").write_text(
        "mappings:\n"
        f'  - {{table: {world.table}, index: {world.index}, id: "{{UserId}}"}}\n'
        f'  - {{table: {world.table}, index: {archive}, id: "{{UserId}}", deletes: {{on_remove: ignore}}}}\n'
    )
    _index_doc(world, world.index, 1)
    _index_doc(world, archive, 1)
    world.dynamodb.delete_item(TableName=world.table, Key={"UserId": {"N": "1"}})
    # WHEN the letter is redriven
    assert main(["dlq", "redrive"]) == 0
    # THEN the letter's own mapping's document is deleted, the archive's stays, the letter is gone
    assert capsys.readouterr().out.strip() == f"redriven 1, left 0 in file://{world.dlq_path}"
    assert letter.mapping == f"{world.table} -> {world.index}"
    assert world.doc("1") is None
    assert world.opensearch.get(index=archive, id="1")["_source"] == {"UserId": 1}
    assert world.dead_letters() == []


@pytest.mark.parametrize("rule", ["on_remove: ignore", "on_ttl_expiry: ignore"])
def test_redrive_letter_of_gone_item_keeps_document_its_mapping_keeps(
    world: LambdaWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str], rule: str
) -> None:
    # GIVEN a dead letter for an item since gone (removed or expired: the table cannot tell), and
    # a mapping whose deletes keep the documents of one of the two
    item = put(world, 1, "thirty")
    world.invoke(world.record("INSERT", 1, item, seconds=T0))
    (tmp_path / "mappings.yaml").write_text(
        f'table: {world.table}\nindex: {world.index}\nid: "{{UserId}}"\ndeletes: {{{rule}}}\n'
    )
    _index_doc(world, world.index, 1)
    world.dynamodb.delete_item(TableName=world.table, Key={"UserId": {"N": "1"}})
    # WHEN the letter is redriven
    assert main(["dlq", "redrive"]) == 0
    # THEN the document stays, and the letter is done
    assert capsys.readouterr().out.strip() == f"redriven 1, left 0 in file://{world.dlq_path}"
    assert world.doc("1") == {"UserId": 1}
    assert world.dead_letters() == []


def test_redrive_letter_of_mapping_no_longer_configured_stays_in_queue(
    world: LambdaWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a dead letter of mapping "users", and mappings that now write only another index
    item = put(world, 1, "thirty")
    world.invoke(world.record("INSERT", 1, item, seconds=T0))
    (letter,) = world.dead_letters()
    (tmp_path / "mappings.yaml").write_text(
        f'table: {world.table}\nindex: {world.index}-new\nid: "{{UserId}}"\n'
    )
    # WHEN redriven THEN nothing is written for another mapping, and the letter stays (exit 1)
    assert main(["dlq", "redrive"]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == f"redriven 0, left 1 in file://{world.dlq_path}"
    assert err.strip() == (
        f'{world.table} {{"UserId":{{"N":"1"}}}} (letter {letter.letter_id}): '
        f"no mapping {world.table} -> {world.index} any more; left in the queue"
    )
    assert not world.opensearch.indices.exists(index=f"{world.index}-new")


@pytest.fixture
def proxy(opensearch_url: str) -> Iterator[FaultProxy]:
    with fault_proxy(opensearch_url) as running:
        yield running


OPS = {"index", "create", "update", "delete"}


def bulk_actions(proxy: FaultProxy, since: int = 0) -> list[list[tuple[str, str | None]]]:
    """(op, routing) of each action of each _bulk request the proxy saw, from request ``since`` on."""
    requests = []
    for _, path, body in proxy.requests[since:]:
        if is_bulk(path):
            metas = [json.loads(line) for line in body.splitlines() if line.strip()]
            requests.append(
                [(op, meta.get("routing")) for entry in metas for op, meta in entry.items() if op in OPS]
            )
    return [actions for actions in requests if actions]


@pytest.mark.parametrize("kept", [True, False], ids=["letter-keeps-routing", "older-letter-derives-it"])
def test_redrive_letter_of_a_rejected_routing_move_delete_deletes_at_the_old_routing(
    kept: bool,
    tmp_path: Path,
    unique_name: str,
    opensearch: OpenSearch,
    dynamodb: Any,
    proxy: FaultProxy,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a three-shard index routed by Tenant, and item 1 indexed at routing "a"
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    world = make_world(
        tmp_path,
        unique_name=unique_name,
        opensearch=opensearch,
        opensearch_url=proxy.url,
        dynamodb=dynamodb,
        mapping='routing: "{Tenant}"\n',
    )
    monkeypatch.setenv("CDCSYNC_MAPPINGS", str(tmp_path / "mappings.yaml"))
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", proxy.url)
    monkeypatch.setenv("CDCSYNC_DLQ", f"file://{world.dlq_path}")
    monkeypatch.chdir(tmp_path)
    opensearch.indices.create(index=world.index, body={"settings": {"index.number_of_shards": 3}})
    world.invoke(world.record("INSERT", 1, {"UserId": 1, "Tenant": "a"}, seconds=T0))
    # AND a move to routing "b" whose delete at "a" OpenSearch rejects (400: a dead letter), so in
    # a many-shard index the copy at "a" stays beside the new one at "b"
    world.dynamodb.put_item(TableName=world.table, Item={"UserId": {"N": "1"}, "Tenant": {"S": "b"}})
    proxy.reject_bulk_items(
        times=1, item_status=400, every=1, operation="delete", error_type="illegal_argument_exception"
    )
    world.invoke(
        world.record("MODIFY", 1, {"UserId": 1, "Tenant": "b"}, {"UserId": 1, "Tenant": "a"}, seconds=T0 + 1)
    )
    (letter,) = world.dead_letters()
    if not kept:  # as letters were written before they kept op and routing
        older = json.loads(world.dlq_path.read_text())
        del older["op"], older["routing"]
        world.dlq_path.write_text(json.dumps(older) + "\n")
    # WHEN the letter is redriven
    before = len(proxy.requests)
    assert main(["dlq", "redrive"]) == 0
    # THEN the document is deleted at the old routing first, then written at the item's routing,
    # and the letter is done
    assert bulk_actions(proxy, before) == [[("delete", "a")], [("index", "b")]]
    assert capsys.readouterr().out.strip() == f"redriven 1, left 0 in file://{world.dlq_path}"
    assert opensearch.get(index=world.index, id="1", params={"routing": "b"})["_source"] == {
        "UserId": 1,
        "Tenant": "b",
    }
    assert world.dead_letters() == []
    # AND the letter kept where the rejected delete was aimed
    assert (letter.op, letter.index, letter.id, letter.routing) == ("delete", world.index, "1", "a")


def test_cli_dlq_redrive_control_characters_in_reasons_are_escaped(
    world: LambdaWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a dead letter for an item whose value OpenSearch rejects and quotes in its reason, made
    # to clear the screen and print the line of a clean redrive
    forged = f"x\x1b[2J\x1b[H\nredriven 1, left 0 in file://{world.dlq_path}"
    item = put(world, 1, forged)
    world.invoke(world.record("INSERT", 1, item, seconds=T0))
    # WHEN the operator redrives it and it is rejected again
    code = main(["dlq", "redrive"])
    out, err = capsys.readouterr()
    # THEN the problem is one line with no control character, and the real summary follows
    assert code == 1
    assert out == f"redriven 0, left 1 in file://{world.dlq_path}\n"
    (problem,) = err.splitlines()
    assert problem.isprintable()
    assert problem.startswith("Users")
