"""``cdcsync verify`` against moto and the local OpenSearch: drift found, reported, repaired."""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from opensearchpy import OpenSearch

from cdcsync.settings import Settings, load_settings
from cdcsync.source.items import ItemReader
from cdcsync.verify.run import build_verifier, run_verify, verify
from tests.support.tables import create_users_table

STATUS_ACTIVE = "active"


@dataclass
class World:
    table: str
    index: str
    settings: Settings
    dynamodb: Any
    opensearch: OpenSearch
    session: boto3.Session

    def put(self, key: int, name: str, status: str = STATUS_ACTIVE) -> None:
        item = {"UserId": {"N": str(key)}, "Name": {"S": name}, "Status": {"S": status}}
        self.dynamodb.put_item(TableName=self.table, Item=item)

    def index_doc(self, key: int | str, name: str, status: str = STATUS_ACTIVE, version: int = 1) -> None:
        body = {"UserId": int(key), "Name": name, "Status": status}
        self.opensearch.index(
            index=self.index, id=str(key), body=body, params={"version": version, "version_type": "external"}
        )

    def doc(self, doc_id: str) -> dict[str, Any] | None:
        answer = self.opensearch.get(index=self.index, id=doc_id, ignore=[404])  # type: ignore[call-arg]
        return answer["_source"] if answer.get("found") else None

    def verify(self, *args: Any, **kwargs: Any) -> tuple[int, list[str]]:
        self.opensearch.indices.refresh(index=self.index)
        out = io.StringIO()
        report = run_verify(self.settings, self.table, *args, session=self.session, out=out, **kwargs)
        return report.exit_code, out.getvalue().splitlines()


@pytest.fixture
def world(
    tmp_path: Path,
    unique_name: str,
    opensearch: OpenSearch,
    opensearch_url: str,
    dynamodb: Any,
    aws_session: boto3.Session,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    table = f"Users-{unique_name}"
    create_users_table(dynamodb, table)
    mapping = tmp_path / "mappings.yaml"
    mapping.write_text(
        f'table: {table}\nindex: {unique_name}\nid: "{{UserId}}"\n'
        "where:\n  Status: [{anything-but: [banned]}]\n"
    )
    settings = load_settings(
        mappings=mapping,
        opensearch_url=opensearch_url,
        dlq=f"file://{tmp_path / 'dlq.jsonl'}",
        _env_file=None,
    )
    opensearch.indices.create(index=unique_name)
    world = World(table, unique_name, settings, dynamodb, opensearch, aws_session)
    # Five items, each indexed as the stream would have indexed it.
    for key, name in enumerate("abcde", start=1):
        world.put(key, name)
        world.index_doc(key, name)
    return world


def test_verify_clean_index_reports_no_drift(world: World) -> None:
    # GIVEN an index that matches the table
    # WHEN verify runs
    code, lines = world.verify()
    # THEN it says so and exits 0
    assert (code, lines) == (0, ["checked 5 items: 0 missing, 0 stale, 0 extra"])


def _delete_doc(world: World) -> None:
    world.opensearch.delete(index=world.index, id="3")


def _change_doc(world: World) -> None:
    world.index_doc(4, "x", version=2)


def _orphan_doc(world: World) -> None:
    world.index_doc(99, "ghost")


def _excluded_item(world: World) -> None:
    world.put(6, "f", status="banned")
    world.index_doc(6, "f")


@pytest.mark.parametrize(
    ("make_drift", "summary", "detail"),
    [
        (_delete_doc, "checked 5 items: 1 missing, 0 stale, 0 extra", "missing: {index}/3"),
        (
            _change_doc,
            "checked 5 items: 0 missing, 1 stale, 0 extra",
            "stale: {index}/4 (Name: expected 'd', found 'x')",
        ),
        (
            _orphan_doc,
            "checked 5 items: 0 missing, 0 stale, 1 extra",
            "extra: {index}/99 (item not in the table)",
        ),
        (
            _excluded_item,
            "checked 6 items: 0 missing, 0 stale, 1 extra",
            "extra: {index}/6 (item excluded by the mapping)",
        ),
    ],
    ids=["missing", "stale", "extra-gone", "extra-excluded"],
)
def test_verify_drift_is_reported_then_repaired(
    world: World, make_drift: Any, summary: str, detail: str
) -> None:
    # GIVEN one kind of drift
    make_drift(world)
    # WHEN verify runs
    code, lines = world.verify()
    # THEN it is reported with its id and verify exits 1
    assert (code, lines) == (1, [summary, detail.format(index=world.index)])
    # WHEN verify --repair runs
    code, lines = world.verify(repair=True)
    # THEN it reports the same drift, repairs it (exit 0), and a second verify is clean
    assert code == 0
    assert lines[:2] == [summary, detail.format(index=world.index)]
    assert lines[2].startswith("repaired: ")
    assert lines[2].endswith(
        "0 superseded by newer changes, 0 gone since the scan, 0 failed, 0 extra not deletable"
    )
    assert world.verify()[0] == 0


def test_verify_repair_writes_item_as_table_holds_it(world: World) -> None:
    # GIVEN a stale document and a missing one
    _change_doc(world)
    _delete_doc(world)
    # WHEN verify --repair runs
    code, lines = world.verify(repair=True)
    # THEN both are written from the table, with a read version (read time - 5 s)
    assert code == 0
    assert lines[-1] == (
        "repaired: 2 written, 0 deleted, 0 superseded by newer changes, 0 gone since the scan, "
        "0 failed, 0 extra not deletable"
    )
    assert world.doc("4") == {"UserId": 4, "Name": "d", "Status": STATUS_ACTIVE}
    assert world.doc("3") == {"UserId": 3, "Name": "c", "Status": STATUS_ACTIVE}
    version = world.opensearch.get(index=world.index, id="4")["_version"]
    assert time.time() * 1000 - 5000 - 10_000 < version <= time.time() * 1000 - 5000


@pytest.mark.parametrize("size", [1, 3, 5])
def test_verify_sample_checks_n_items_and_never_extras(world: World, size: int) -> None:
    # GIVEN an extra document (which a sample cannot see)
    _orphan_doc(world)
    # WHEN verify --sample N runs
    code, lines = world.verify(sample=size)
    # THEN exactly N items are checked, extras are not looked for, and it exits 0
    assert (code, lines) == (
        0,
        [
            f"checked {size} item{'s' if size > 1 else ''} (random sample; extra documents not looked for): "
            "0 missing, 0 stale"
        ],
    )


def test_verify_sample_finds_missing_document(world: World) -> None:
    # GIVEN every document gone
    for key in range(1, 6):
        world.opensearch.delete(index=world.index, id=str(key))
    # WHEN a sample of 2 is verified
    code, lines = world.verify(sample=2)
    # THEN both sampled items are missing
    assert code == 1
    assert lines[0] == "checked 2 items (random sample; extra documents not looked for): 2 missing, 0 stale"


@dataclass
class RacingReader:
    """Reads like ItemReader, then a stream change to the same item lands before the repair writes."""

    inner: ItemReader
    world: World

    def read(self, table: str, keys: Sequence[Mapping[str, Any]]) -> dict[bytes, dict[str, Any] | None]:
        found = self.inner.read(table, keys)
        # A change made just after the read, as the stream path writes it: its creation time in
        # whole seconds (rounded down), in ms.
        self.world.index_doc(4, "newer", version=int(time.time()) * 1000)
        return found


def test_verify_repair_loses_to_a_stream_change_after_its_read(world: World) -> None:
    # GIVEN a stale document, and a stream change to its item landing right after the repair read
    _change_doc(world)
    world.opensearch.indices.refresh(index=world.index)
    verifier, count = build_verifier(world.settings, world.table, repair=True, session=world.session)
    verifier.items = RacingReader(ItemReader(verifier.dynamodb), world)
    # WHEN verify --repair runs
    out = io.StringIO()
    report = verify(verifier, count, out)
    # THEN the repair write is stale (superseded) and the newer change stays
    assert report.exit_code == 0
    assert out.getvalue().splitlines()[-1] == (
        "repaired: 0 written, 0 deleted, 1 superseded by newer changes, 0 gone since the scan, "
        "0 failed, 0 extra not deletable"
    )
    assert world.doc("4") == {"UserId": 4, "Name": "newer", "Status": STATUS_ACTIVE}


def test_verify_extra_created_after_the_scan_is_not_extra(world: World) -> None:
    # GIVEN a document whose item is created after the scan read the table (simulated: the item
    # exists only when the confirming read happens)
    world.index_doc(7, "g")
    world.opensearch.indices.refresh(index=world.index)
    verifier, count = build_verifier(world.settings, world.table, session=world.session)
    inner = ItemReader(verifier.dynamodb)

    @dataclass
    class CreatingReader:
        def read(self, table: str, keys: Sequence[Mapping[str, Any]]) -> dict[bytes, dict[str, Any] | None]:
            world.put(7, "g")
            return inner.read(table, keys)

    verifier.items = CreatingReader()
    # WHEN verify runs
    out = io.StringIO()
    report = verify(verifier, count, out)
    # THEN the document is not called extra
    assert (report.exit_code, out.getvalue().splitlines()) == (
        0,
        ["checked 5 items: 0 missing, 0 stale, 0 extra"],
    )


def test_verify_parallel_segments_find_drift_once(world: World) -> None:
    # GIVEN a missing and an extra document
    _delete_doc(world)
    _orphan_doc(world)
    world.opensearch.indices.refresh(index=world.index)
    verifier, _ = build_verifier(world.settings, world.table, session=world.session)
    # WHEN the table is verified with three parallel scan segments
    verifier.verify_all(3)
    # THEN every item is checked once and each drift counted once
    assert verifier.report.lines() == [
        "checked 5 items: 1 missing, 0 stale, 1 extra",
        f"missing: {world.index}/3",
        f"extra: {world.index}/99 (item not in the table)",
    ]


def _remap(world: World, text: str) -> None:
    Path(world.settings.mappings).write_text(text)


def test_verify_filter_on_size_bytes_finds_missing_documents(world: World) -> None:
    # GIVEN a filter every real INSERT passes (SizeBytes > 0), and one document missing
    _remap(
        world,
        f'table: {world.table}\nindex: {world.index}\nid: "{{UserId}}"\n'
        "filter: {eventVersion: ['1.1'], dynamodb: {SizeBytes: [{numeric: ['>', 0]}]}}\n",
    )
    _delete_doc(world)
    # WHEN verify runs THEN the synthetic INSERTs pass the filter and the missing document is found,
    # and the report says SizeBytes is DynamoDB's estimate
    assert world.verify() == (
        1,
        [
            "checked 5 items: 1 missing, 0 stale, 0 extra",
            f"missing: {world.index}/3",
            f"note: {world.settings.mappings}:1: filter names dynamodb.SizeBytes: backfill, verify, "
            "redrive and repair compute it from the item with DynamoDB's documented size rules, which "
            "estimate numbers; an item within a few bytes of the threshold may be judged differently "
            "from Lambda",
        ],
    )


@pytest.mark.parametrize(
    ("rules", "detail"),
    [
        ("deletes: {on_ttl_expiry: ignore}\n", "deletes.on_ttl_expiry: ignore"),
        ("deletes: {on_remove: ignore}\n", "deletes.on_remove: ignore"),
        (
            "filter: {eventName: [INSERT, MODIFY]}\n",
            "the filter skips its REMOVE; the filter skips its TTL expiry",
        ),
    ],
    ids=["ttl-ignored", "remove-ignored", "filter-skips-remove"],
)
def test_verify_document_the_mapping_keeps_is_kept_not_extra_and_never_deleted(
    world: World, rules: str, detail: str
) -> None:
    # GIVEN a mapping that keeps the documents of deleted items, and such a document
    _remap(world, f'table: {world.table}\nindex: {world.index}\nid: "{{UserId}}"\n{rules}')
    _orphan_doc(world)
    # WHEN verify runs THEN the document is counted as kept, not drift (exit 0)
    kept = f"kept: {world.index}/99 (item not in the table; {detail})"
    assert world.verify() == (0, ["checked 5 items: 0 missing, 0 stale, 0 extra, 1 kept", kept])
    # WHEN verify --repair runs THEN the document stays
    code, lines = world.verify(repair=True)
    assert (code, lines[:2]) == (0, ["checked 5 items: 0 missing, 0 stale, 0 extra, 1 kept", kept])
    assert world.doc("99") == {"UserId": 99, "Name": "ghost", "Status": STATUS_ACTIVE}


def test_verify_repair_templated_index_leaves_indices_other_mappings_claim(world: World) -> None:
    # GIVEN index "<name>-{Status}" (documents in <name>-active), and another table's mapping
    # writing "<name>-v2-{Status}", which the walk "<name>-*" also matches
    prefix = world.index
    _remap(
        world,
        "mappings:\n"
        f'  - {{table: {world.table}, index: "{prefix}-{{Status}}", id: "{{UserId}}"}}\n'
        f'  - {{table: Other-{prefix}, index: "{prefix}-v2-{{Status}}", id: "{{UserId}}"}}\n',
    )
    world.index = f"{prefix}-active"
    for key, name in enumerate("abcde", start=1):
        world.index_doc(key, name)
    world.index_doc(99, "ghost")  # a real extra
    world.opensearch.index(index=f"{prefix}-v2-active", id="42", body={"UserId": 42}, refresh=True)
    # WHEN verify --repair runs
    code, lines = world.verify(repair=True)
    # THEN only the real extra is deleted; the other mapping's index is named as not looked at
    assert code == 0
    assert lines == [
        "checked 5 items: 0 missing, 0 stale, 1 extra",
        f"extra: {prefix}-active/99 (item not in the table)",
        f"note: extra documents not looked for in {prefix}-v2-active: "
        f"Other-{prefix} -> {prefix}-v2-{{Status}} ({world.settings.mappings}:3) writes there",
        "repaired: 0 written, 1 deleted, 0 superseded by newer changes, 0 gone since the scan, "
        "0 failed, 0 extra not deletable",
    ]
    assert world.opensearch.get(index=f"{prefix}-v2-active", id="42")["found"]


def test_verify_index_template_without_literal_prefix_walks_nothing(world: World) -> None:
    # GIVEN index "{Name}" (it could be any index) and a where no item matches
    _remap(
        world,
        f'table: {world.table}\nindex: "{{Name}}"\nid: "{{UserId}}"\nwhere: {{Status: [nobody]}}\n',
    )
    # WHEN verify runs THEN no index is walked, and the report says why
    assert world.verify() == (
        0,
        [
            "checked 5 items: 0 missing, 0 stale, 0 extra",
            'note: extra documents not looked for in "{Name}": an index template that starts with a '
            "placeholder could name any index; give it a literal prefix",
        ],
    )


def test_verify_repair_id_with_separator_in_keys_never_deletes_a_live_document(
    world: World, dynamodb: Any
) -> None:
    # GIVEN a table keyed PK/SK, id "{PK}#{SK}", documents without key attributes, and a document
    # "CUST#1#ORDER#7" whose item (PK "CUST#1", SK "ORDER#7") is created after the scan: read
    # back naively the id says PK "CUST", SK "1#ORDER#7", an item that does not exist
    table = f"Orders-{world.index}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    world.index = f"{world.index}-orders"
    _remap(
        world, f'table: {table}\nindex: {world.index}\nid: "{{PK}}#{{SK}}"\nfields: {{include: [Total]}}\n'
    )
    world.opensearch.index(index=world.index, id="CUST#1#ORDER#7", body={"Total": 5}, refresh=True)
    verifier, count = build_verifier(world.settings, table, repair=True, session=world.session)
    inner = ItemReader(verifier.dynamodb)

    @dataclass
    class CreatingReader:
        def read(self, name: str, keys: Sequence[Mapping[str, Any]]) -> dict[bytes, dict[str, Any] | None]:
            item = {"PK": {"S": "CUST#1"}, "SK": {"S": "ORDER#7"}, "Total": {"N": "5"}}
            dynamodb.put_item(TableName=table, Item=item)
            return inner.read(name, keys)

    verifier.items = CreatingReader()
    # WHEN verify --repair runs
    out = io.StringIO()
    report = verify(verifier, count, out)
    # THEN the document is not an extra (its item exists under one reading of the id) and stays
    assert (report.exit_code, out.getvalue().splitlines()[0]) == (
        0,
        "checked 0 items: 0 missing, 0 stale, 0 extra",
    )
    assert world.doc("CUST#1#ORDER#7") == {"Total": 5}


def test_verify_repair_id_with_several_readings_is_not_deletable(world: World, dynamodb: Any) -> None:
    # GIVEN id "{PK}#{SK}", a document "A#B#C" and an item (PK "A#B", SK "C") that exists but the
    # mapping's where excludes: the document may be that item's, or a gone item (PK "A", SK "B#C")
    table = f"Orders-{world.index}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    world.index = f"{world.index}-orders"
    _remap(
        world,
        f'table: {table}\nindex: {world.index}\nid: "{{PK}}#{{SK}}"\nfields: {{include: [Total]}}\n'
        "where: {Total: [{numeric: ['>', 10]}]}\n",
    )
    dynamodb.put_item(TableName=table, Item={"PK": {"S": "A#B"}, "SK": {"S": "C"}, "Total": {"N": "5"}})
    world.opensearch.index(index=world.index, id="A#B#C", body={"Total": 5}, refresh=True)
    # WHEN verify --repair runs
    out = io.StringIO()
    report = run_verify(world.settings, table, repair=True, session=world.session, out=out)
    # THEN it is reported as not deletable (exit 1) and stays
    assert (report.exit_code, out.getvalue().splitlines()) == (
        1,
        [
            "checked 1 item: 0 missing, 0 stale, 1 extra",
            f"extra: {world.index}/A#B#C (the id reads as 2 different keys: "
            "PK='A', SK='B#C' or PK='A#B', SK='C'; not deleted)",
            "repaired: 0 written, 0 deleted, 0 superseded by newer changes, 0 gone since the scan, "
            "0 failed, 1 extra not deletable",
        ],
    )
    assert world.doc("A#B#C") == {"Total": 5}


def test_verify_repair_item_the_mapping_cannot_plan_is_not_deletable(world: World) -> None:
    # GIVEN documents of live items, and a mapping whose computed field fails on every item (no
    # Prices): the stream keeps such documents and dead-letters the records
    _remap(
        world,
        f'table: {world.table}\nindex: {world.index}\nid: "{{UserId}}"\n'
        'fields: {computed: {total: "sum(Prices)"}}\n',
    )
    # WHEN verify --repair runs
    code, lines = world.verify(repair=True)
    # THEN the documents are extras that are not deletable (exit 1), and every one stays
    assert code == 1
    assert lines[0] == "checked 5 items: 0 missing, 0 stale, 5 extra"
    error = (
        'fields.computed.total: "sum(Prices)" failed on this item: In function sum(), invalid type for '
        "value: None, expected one of: ['array-number'], received: \"null\""
    )
    reason = f"the mapping cannot plan the item now: {error}; not deleted"
    assert lines[1] == f"extra: {', '.join(f'{world.index}/{key} ({reason})' for key in range(1, 6))}"
    problem = f"problem: {world.table} [UserId=1] seq verify-0-0-0: {world.table} -> {world.index}: {error}"
    assert lines[2] == problem
    assert lines[-1] == (
        "repaired: 0 written, 0 deleted, 0 superseded by newer changes, 0 gone since the scan, "
        "0 failed, 5 extra not deletable"
    )
    assert [world.doc(str(key)) is not None for key in range(1, 6)] == [True] * 5


def _two_tables(world: World, mine: str, other: str) -> str:
    """This table writes ``mine``, table Other-<prefix> writes ``other`` ({p}: the prefix)."""
    prefix = world.index
    _remap(
        world,
        "mappings:\n"
        f'  - {{table: {world.table}, index: "{mine.format(p=prefix)}", id: "{{UserId}}"}}\n'
        f'  - {{table: Other-{prefix}, index: "{other.format(p=prefix)}", id: "{{OrderId}}"}}\n',
    )
    return prefix


def test_verify_repair_literal_index_another_tables_template_renders_is_not_walked(world: World) -> None:
    # GIVEN this table writes "<p>-eu", and another table's "<p>-{Region}" renders that name too,
    # so its order 42 (Region "eu") lives there
    prefix = _two_tables(world, "{p}-eu", "{p}-{{Region}}")
    world.index = f"{prefix}-eu"
    for key, name in enumerate("abcde", start=1):
        world.index_doc(key, name)
    world.opensearch.index(index=world.index, id="42", body={"OrderId": 42, "Region": "eu"}, refresh=True)
    # WHEN verify --repair runs
    code, lines = world.verify(repair=True)
    # THEN the index is not walked, the report says why, and the other table's document stays
    assert (code, lines) == (
        0,
        [
            "checked 5 items: 0 missing, 0 stale, 0 extra",
            f"note: extra documents not looked for in {prefix}-eu: "
            f"Other-{prefix} -> {prefix}-{{Region}} ({world.settings.mappings}:3) writes there",
            "repaired: 0 written, 0 deleted, 0 superseded by newer changes, 0 gone since the scan, "
            "0 failed, 0 extra not deletable",
        ],
    )
    assert world.doc("42") is not None


def test_verify_repair_templated_walk_leaves_index_behind_another_tables_alias(world: World) -> None:
    # GIVEN this table writes "<p>-{Status}" (documents in <p>-active); another table writes the
    # alias "<p>-archive", whose index "<p>-archive-000001" the template would also render
    prefix = _two_tables(world, "{p}-{{Status}}", "{p}-archive")
    world.index = f"{prefix}-active"
    for key, name in enumerate("abcde", start=1):
        world.index_doc(key, name)
    world.index_doc(99, "ghost")  # a real extra
    archive = f"{prefix}-archive-000001"
    world.opensearch.indices.create(index=archive, body={"aliases": {f"{prefix}-archive": {}}})
    world.opensearch.index(index=f"{prefix}-archive", id="42", body={"OrderId": 42}, refresh=True)
    # WHEN verify --repair runs
    code, lines = world.verify(repair=True)
    # THEN only the real extra is deleted; the index behind the alias is named as not looked at
    assert (code, lines) == (
        0,
        [
            "checked 5 items: 0 missing, 0 stale, 1 extra",
            f"extra: {prefix}-active/99 (item not in the table)",
            f"note: extra documents not looked for in {archive}: "
            f"Other-{prefix} -> {prefix}-archive ({world.settings.mappings}:3) writes there",
            "repaired: 0 written, 1 deleted, 0 superseded by newer changes, 0 gone since the scan, "
            "0 failed, 0 extra not deletable",
        ],
    )
    assert world.opensearch.get(index=archive, id="42")["found"]


def test_verify_repair_index_the_template_fits_but_no_item_uses_is_not_walked(world: World) -> None:
    # GIVEN this table writes "<p>-{Status}" (documents in <p>-active), and an index
    # "<p>-archive-2019" that no mapping names but whose name the template fits (Status
    # "archive-2019"), holding a document with an id like this table's
    prefix = world.index
    _remap(world, f'table: {world.table}\nindex: "{prefix}-{{Status}}"\nid: "{{UserId}}"\n')
    world.index = f"{prefix}-active"
    for key, name in enumerate("abcde", start=1):
        world.index_doc(key, name)
    archive = f"{prefix}-archive-2019"
    world.opensearch.index(index=archive, id="42", body={"UserId": 42}, refresh=True)
    # WHEN verify --repair runs
    code, lines = world.verify(repair=True)
    # THEN that index is not walked (nothing proves it is this mapping's) and the report says so
    assert (code, lines) == (
        0,
        [
            "checked 5 items: 0 missing, 0 stale, 0 extra",
            f"note: extra documents not looked for in {archive}: its name fits "
            f'"{prefix}-{{Status}}", but no item of {world.table} is indexed there now, so it may be '
            "another application's index; delete its documents by hand if they are this mapping's",
            "repaired: 0 written, 0 deleted, 0 superseded by newer changes, 0 gone since the scan, "
            "0 failed, 0 extra not deletable",
        ],
    )
    assert world.opensearch.get(index=archive, id="42")["found"]


def test_verify_repair_literal_alias_walks_the_indices_behind_it(world: World) -> None:
    # GIVEN this table writes the alias "<p>-users" over "<p>-users-000001", which holds an extra
    prefix = world.index
    concrete = f"{prefix}-users-000001"
    world.opensearch.indices.create(index=concrete, body={"aliases": {f"{prefix}-users": {}}})
    _remap(world, f'table: {world.table}\nindex: {prefix}-users\nid: "{{UserId}}"\n')
    world.index = f"{prefix}-users"
    for key, name in enumerate("abcde", start=1):
        world.index_doc(key, name)
    world.index_doc(99, "ghost")
    # WHEN verify --repair runs THEN the extra is found behind the alias and deleted
    code, lines = world.verify(repair=True)
    assert (code, lines) == (
        0,
        [
            "checked 5 items: 0 missing, 0 stale, 1 extra",
            f"extra: {concrete}/99 (item not in the table)",
            "repaired: 0 written, 1 deleted, 0 superseded by newer changes, 0 gone since the scan, "
            "0 failed, 0 extra not deletable",
        ],
    )
    assert world.doc("99") is None


def _routed(world: World, shards: int) -> None:
    """Documents routed by Name, in a fresh index of ``shards`` shards (items a..e as indexed)."""
    world.index = f"{world.index}-routed"
    world.opensearch.indices.create(index=world.index, body={"settings": {"index.number_of_shards": shards}})
    _remap(world, f'table: {world.table}\nindex: {world.index}\nid: "{{UserId}}"\nrouting: "{{Name}}"\n')
    for key, name in enumerate("abcde", start=1):
        body = {"UserId": key, "Name": name, "Status": STATUS_ACTIVE}
        world.opensearch.index(index=world.index, id=str(key), body=body, params={"routing": name})


def _other_shard_routing(world: World, routing: str) -> str:
    """A routing value whose shard is not ``routing``'s (probed with a throwaway document)."""
    world.opensearch.index(index=world.index, id="probe", body={}, params={"routing": routing}, refresh=True)
    try:
        for candidate in (f"r{n}" for n in range(100)):
            params = {"routing": candidate}
            answer = world.opensearch.get(index=world.index, id="probe", params=params, ignore=[404])  # type: ignore[call-arg]
            if not answer.get("found"):
                return candidate
    finally:
        world.opensearch.delete(index=world.index, id="probe", params={"routing": routing, "refresh": "true"})
    raise AssertionError(f"no routing lands on another shard than {routing!r} in {world.index}")


def test_verify_copy_at_a_routing_the_item_left_in_a_many_shard_index_is_extra(world: World) -> None:
    # GIVEN a three-shard index routed by Name, and item 1 (Name "a") whose document sits at a
    # routing on another shard, where an earlier Name put it (its move's delete was lost)
    _routed(world, shards=3)
    stray = _other_shard_routing(world, "a")
    world.opensearch.delete(index=world.index, id="1", params={"routing": "a"})
    body = {"UserId": 1, "Name": "a", "Status": STATUS_ACTIVE}
    world.opensearch.index(index=world.index, id="1", body=body, params={"routing": stray})
    # WHEN verify runs
    code, lines = world.verify()
    # THEN the document is missing at its routing, and the copy at the other is an extra
    assert (code, lines) == (
        1,
        [
            "checked 5 items: 1 missing, 0 stale, 1 extra",
            f"missing: {world.index}/1",
            f"extra: {world.index}/1 (at routing {stray!r}; the item's document belongs at routing 'a')",
        ],
    )
    # WHEN verify --repair runs THEN a second verify is clean
    assert world.verify(repair=True)[0] == 0
    assert world.verify() == (0, ["checked 5 items: 0 missing, 0 stale, 0 extra"])


def test_verify_document_at_a_routing_the_item_left_in_a_one_shard_index_is_stale(world: World) -> None:
    # GIVEN a one-shard index routed by Name, and item 1 (Name "a") whose document was written at
    # routing "x" (one shard: every routing finds it, but it is not where the stream puts it)
    _routed(world, shards=1)
    body = {"UserId": 1, "Name": "a", "Status": STATUS_ACTIVE}
    world.opensearch.index(index=world.index, id="1", body=body, params={"routing": "x"})
    # WHEN verify runs THEN it is stale (one document, at the wrong routing), not an extra copy
    assert world.verify() == (
        1,
        [
            "checked 5 items: 0 missing, 1 stale, 0 extra",
            f"stale: {world.index}/1 (_routing: expected 'a', found 'x')",
        ],
    )
    # WHEN verify --repair runs THEN it is written at its routing, and a second verify is clean
    code, lines = world.verify(repair=True)
    assert (code, lines[-1]) == (
        0,
        "repaired: 1 written, 0 deleted, 0 superseded by newer changes, 0 gone since the scan, "
        "0 failed, 0 extra not deletable",
    )
    assert world.opensearch.get(index=world.index, id="1", params={"routing": "a"})["_routing"] == "a"
    assert world.verify() == (0, ["checked 5 items: 0 missing, 0 stale, 0 extra"])


@pytest.mark.parametrize(
    ("item", "detail", "problem"),
    [
        ({"Status": {"S": "inactive"}}, "the item's document is in {prefix}-inactive now", False),
        ({}, "the item names no index or routing now", True),
    ],
    ids=["moved-to-another-index", "names-no-index"],
)
def test_verify_repair_document_in_an_index_its_item_left_is_deleted(
    world: World, item: dict[str, Any], detail: str, problem: bool
) -> None:
    # GIVEN index "<p>-{Status}" and item 6's document in <p>-active, while the item now has Status
    # "inactive" (a move whose delete was lost) or no Status at all (the stream deletes it then)
    prefix = world.index
    _remap(world, f'table: {world.table}\nindex: "{prefix}-{{Status}}"\nid: "{{UserId}}"\n')
    world.index = f"{prefix}-active"
    for key, name in enumerate("abcdef", start=1):
        world.index_doc(key, name)
    world.dynamodb.put_item(TableName=world.table, Item={"UserId": {"N": "6"}, "Name": {"S": "f"}, **item})
    # WHEN verify --repair runs
    code, lines = world.verify(repair=True)
    # THEN the document there is an extra, deleted
    assert f"extra: {prefix}-active/6 ({detail.format(prefix=prefix)})" in lines
    assert world.doc("6") is None
    assert code == (1 if problem else 0)  # an item that names no index is a problem of its own


def test_verify_control_characters_in_ids_and_documents_are_escaped(world: World) -> None:
    # GIVEN documents made to clear the operator's screen and print a clean report of their own:
    # one with no item whose id holds the escapes, and a stale one with such a field name
    forged = "\x1b[2J\x1b[H\nchecked 5 items: 0 missing, 0 stale, 0 extra\u202e"
    world.opensearch.index(
        index=world.index,
        id=f"7{forged}",
        body={"UserId": 7},
        params={"version": 1, "version_type": "external"},
    )
    world.opensearch.index(
        index=world.index,
        id="4",
        body={"UserId": 4, "Name": "d", "Status": STATUS_ACTIVE, forged: 1},
        params={"version": 2, "version_type": "external"},
    )
    # WHEN verify runs
    code, lines = world.verify()
    # THEN the report keeps its own lines, with every non-printable character escaped
    shown = "\\x1b[2J\\x1b[H\\nchecked 5 items: 0 missing, 0 stale, 0 extra\\u202e"
    assert (code, lines) == (
        1,
        [
            "checked 5 items: 0 missing, 1 stale, 1 extra",
            f"stale: {world.index}/4 ({shown}: expected nothing, found 1)",
            f"extra: {world.index}/7{shown} "
            "(the item key cannot be told from the id or the document; not deleted)",
        ],
    )
