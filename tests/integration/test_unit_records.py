"""The dynamodb:// store's compare-and-set records (shared backfill runs' units) against moto."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from cdcsync.backfill.units import UnitClaims
from cdcsync.checkpoint import Record, RecordChangedError, ShardInfo
from cdcsync.checkpoint.open import open_lease_store
from cdcsync.entrypoints.cli import main
from cdcsync.settings import DynamoDbTarget

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ROOT = Path(__file__).parents[2]

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2024-05-01T00:00:00.000"


@pytest.fixture(autouse=True)
def _boto3_endpoint(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)


def test_lease_store_put_record_writes_only_over_the_revision_read(
    aws_session: boto3.Session, unique_name: str
) -> None:
    # GIVEN two processes on one lease table that also holds a shard lease and a progress record
    first = open_lease_store(DynamoDbTarget(f"leases-{unique_name}"), worker_id="a", session=aws_session)
    second = open_lease_store(DynamoDbTarget(f"leases-{unique_name}"), worker_id="b", session=aws_session)
    first.sync_shards("Users", ARN, [ShardInfo("shardId-1")])
    first.save_progress("backfill|Users", {"kind": "scan"})
    # WHEN both create one record, then both update the revision they read
    created = first.put_record("backfill-unit|r|0000000", {"owner": None}, revision=None)
    with pytest.raises(RecordChangedError) as exists:
        second.put_record("backfill-unit|r|0000000", {"owner": "b"}, revision=None)
    updated = second.put_record("backfill-unit|r|0000000", {"owner": "b"}, revision=1)
    with pytest.raises(RecordChangedError) as changed:
        first.put_record("backfill-unit|r|0000000", {"owner": "a"}, revision=1)
    # THEN only the first of each pair is written, and the loser sees the record as it is
    assert created == Record("backfill-unit|r|0000000", 1, {"owner": None})
    assert exists.value.current == created
    assert updated == Record("backfill-unit|r|0000000", 2, {"owner": "b"})
    assert changed.value.current == updated
    # AND a listing by prefix holds the records only (no lease, no progress record)
    assert first.load_records("backfill-unit|r|") == [updated]
    assert first.load_records("backfill-unit|other|") == []
    assert first.load_progress("backfill|Users") == {"kind": "scan"}


def test_unit_claims_over_dynamodb_hold_each_unit_once(aws_session: boto3.Session, unique_name: str) -> None:
    # GIVEN three processes joining one run of 4 units at once
    stores = [
        open_lease_store(DynamoDbTarget(f"leases-{unique_name}"), worker_id=name, session=aws_session)
        for name in "abc"
    ]
    run = {"table": "Users", "kind": "scan", "units": 4, "version_ms": 1, "started_ms": 0, "item_count": 0}
    processes = [UnitClaims(store, "r", worker_id=name) for store, name in zip(stores, "abc", strict=True)]
    joined = [claims.join(run) for claims in processes]
    # WHEN each claims until nothing is left
    taken = [claim for claims in processes for claim in iter(claims.claim, None)]
    # THEN every unit is held by exactly one of them; only the first created the run
    assert [created for _, created in joined] == [True, False, False]
    assert sorted(claim.unit.number for claim in taken) == [0, 1, 2, 3]
    owners = {unit.number: unit.owner for unit in processes[0].units(force=True)}
    assert owners == {claim.unit.number: claim.unit.owner for claim in taken}


def test_cli_backfill_status_missing_lease_table_exits_2_and_creates_no_table(
    dynamodb: DynamoDBClient,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN CDCSYNC_CHECKPOINTS naming a lease table that does not exist (a typo, another account)
    table = f"leases-{unique_name}"
    monkeypatch.setenv("CDCSYNC_CHECKPOINTS", f"dynamodb://{table}")
    monkeypatch.setenv("CDCSYNC_MAPPINGS", str(ROOT / "mappings"))
    monkeypatch.setenv("CDCSYNC_OPENSEARCH_URL", "http://127.0.0.1:9")
    # WHEN the status of a run is asked for (a read-only command)
    code = main(["backfill", "--status", "--run-id", "r1"])
    # THEN it says the table does not exist (exit 2) and creates no table (with deletion protection)
    assert code == 2
    assert capsys.readouterr().err == (
        f"cdcsync: backfill --status: lease table {table} does not exist "
        "(check CDCSYNC_CHECKPOINTS; the first backfill --run-id creates it)\n"
    )
    assert table not in dynamodb.list_tables()["TableNames"]
